//! `warren up` from start to end: find, lock, broker, supervise, stop.

use std::ffi::OsString;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use warren_ops::local_broker::LocalBrokerError;
use warren_runtime::shutdown::SUPERVISOR_PID_VARIABLE;
use warren_runtime::{AMQP_URL_VARIABLES, Overrides, Settings};

use super::backoff::BackoffPolicy;
use super::broker::{self, BrokerOptions, FleetBroker};
use super::discovery::{
    directory_of_current_executable, find_workers, select_workers, use_credentials, worker_programs,
};
use super::events::human_duration;
use super::lock::{Claim, RunFolder};
use super::observe;
use super::output::{OutputSinks, start_output_writers, write_line};
use super::signals::StopSignals;
use super::supervise::{FleetShutdown, SupervisionOptions, supervise_fleet};
use super::{UpArgs, UpError};

/// Runs the fleet until Ctrl-C, SIGTERM or SIGHUP, then stops it (and the fleet's own
/// broker node, if it started one).
///
/// Exits with 0 when every worker stopped cleanly (status 0 within the grace period)
/// and nothing was left running, and with 1 otherwise.
pub async fn run(args: UpArgs, overrides: &Overrides) -> anyhow::Result<ExitCode> {
    // The workers load the same layers, so this is the URL they will use.
    let settings = Settings::load(overrides)?;
    let binary_directory = match args.bin_dir {
        Some(directory) => directory,
        None => directory_of_current_executable()?,
    };
    let found = find_workers(&binary_directory)?;
    let workers = select_workers(found, args.only.as_ref(), &binary_directory)?;
    let (environment, removed_environment) = worker_environment(overrides);
    let mut programs = worker_programs(workers, args.prefetch, &environment, &removed_environment);
    if let Some(credentials) = &args.credentials {
        use_credentials(&mut programs, credentials)?;
    }

    let run_folder = RunFolder::from_environment()?;
    // A log folder of the user's own choosing stays theirs.
    let log_folder = if args.no_observability {
        observe::without_observability(&mut programs);
        None
    } else if settings.log.dir.as_os_str().is_empty() {
        let folder = observe::log_folder(&run_folder);
        observe::log_to(&mut programs, &folder);
        Some(folder)
    } else {
        Some(settings.log.dir.clone())
    };
    let metrics_targets = if args.no_observability {
        Vec::new()
    } else {
        observe::assign_metrics_ports(&mut programs)?
    };
    let claim = run_folder.claim(args.add_instances)?;
    let mut stop_signals = StopSignals::listen()?;
    let (output, output_writers) = start_output_writers();
    let targets_file = observe::targets_file(&run_folder, claim.is_sole());
    match observe::write_targets(&targets_file, &metrics_targets) {
        Ok(()) if log_folder.is_none() => {
            say(&output, "no log files, no metrics endpoints".to_owned()).await;
        }
        Ok(()) => {
            say(
                &output,
                format!(
                    "logs in {}; metrics of {} worker(s) listed in {}",
                    log_folder
                        .as_deref()
                        .map(|folder| observe::shown(&run_folder, folder))
                        .unwrap_or_default()
                        .display(),
                    metrics_targets.len(),
                    observe::shown(&run_folder, &targets_file).display()
                ),
            )
            .await;
        }
        Err(error) => {
            say(
                &output,
                format!(
                    "cannot write {} ({error}): Prometheus will not find the workers",
                    targets_file.display()
                ),
            )
            .await;
        }
    }
    if let Claim::Beside { holder_pid } = &claim {
        let holder =
            holder_pid.map_or_else(|| "pid unknown".to_owned(), |pid| format!("pid {pid}"));
        say(
            &output,
            format!("adding instances beside the warren up of this run folder ({holder})"),
        )
        .await;
    }

    let broker_options = BrokerOptions {
        holds_run_folder: claim.is_sole(),
        no_local_broker: args.no_local_broker,
    };
    let broker = prepare_broker(
        &settings.amqp.url,
        broker_options,
        &run_folder,
        &output,
        &mut stop_signals,
    )
    .await;
    let broker = match broker {
        Ok(broker) => broker,
        Err(UpError::LocalBroker {
            source: LocalBrokerError::Cancelled { .. },
            ..
        }) => {
            say(
                &output,
                "stopped before the fleet started; nothing left running".to_owned(),
            )
            .await;
            drop(output);
            output_writers.finish().await;
            return Ok(ExitCode::SUCCESS);
        }
        Err(error) => {
            drop(output);
            output_writers.finish().await;
            return Err(error.into());
        }
    };

    let worker_count = programs.len();
    let shutdown = FleetShutdown::new();
    let options = SupervisionOptions {
        grace_period: args.grace,
        backoff_policy: BackoffPolicy::default(),
    };
    let fleet = supervise_fleet(programs, options, output.clone(), shutdown.clone());
    tokio::pin!(fleet);
    let report = loop {
        tokio::select! {
            report = &mut fleet => break report,
            signal_name = stop_signals.next() => {
                let message = if shutdown.stop_requested.is_cancelled() {
                    shutdown.kill_requested.cancel();
                    format!("{signal_name} received again; killing the workers now")
                } else {
                    shutdown.stop_requested.cancel();
                    format!(
                        "{signal_name} received; stopping {worker_count} worker(s) \
                         (grace {}; send it again to kill them now)",
                        human_duration(args.grace),
                    )
                };
                say(&output, message).await;
            }
        }
    };

    let unclean_workers = report.unclean_worker_names();
    let workers_clean = unclean_workers.is_empty();
    let summary = if workers_clean {
        "every worker stopped cleanly".to_owned()
    } else {
        format!("did not stop cleanly: {}", unclean_workers.join(", "))
    };
    say(&output, summary).await;
    if let Err(error) = observe::withdraw_targets(&targets_file) {
        say(
            &output,
            format!("cannot empty {}: {error}", targets_file.display()),
        )
        .await;
    }
    let broker_stopped = broker.stop(&output.stderr).await;
    // The writers end once the last sender is gone; wait so no line is lost.
    drop(output);
    output_writers.finish().await;
    Ok(if workers_clean && broker_stopped {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The variables `warren up` sets for every worker, and those of its own environment it
/// takes out of theirs.
///
/// Without `--amqp-url` a worker inherits whatever set `warren up`'s URL
/// (`WARREN_AMQP_URL`, or `WARREN_AMQP_URL_FILE` and the like, the file read by each
/// worker at each start) and loads the same layers. With it, the URL goes in
/// `WARREN_AMQP_URL` (the environment rather than a flag: no password on a command line)
/// and every other variable of the URL is removed, so that the flag wins for the workers
/// as it does for `warren up`, and an inherited `WARREN_AMQP_URL_FILE` is not refused
/// beside it.
fn worker_environment(overrides: &Overrides) -> (Vec<(OsString, OsString)>, Vec<OsString>) {
    let mut environment = vec![(
        OsString::from(SUPERVISOR_PID_VARIABLE),
        OsString::from(std::process::id().to_string()),
    )];
    let mut removed_environment = Vec::new();
    if let Some(amqp_url) = &overrides.amqp_url {
        environment.push((OsString::from("WARREN_AMQP_URL"), OsString::from(amqp_url)));
        removed_environment.extend(
            AMQP_URL_VARIABLES
                .iter()
                .filter(|variable| **variable != "WARREN_AMQP_URL")
                .map(OsString::from),
        );
    }
    (environment, removed_environment)
}

/// [`broker::prepare`], abandoned (and the node it was starting stopped) on a stop
/// signal.
async fn prepare_broker(
    amqp_url: &str,
    options: BrokerOptions,
    run_folder: &RunFolder,
    output: &OutputSinks,
    stop_signals: &mut StopSignals,
) -> Result<FleetBroker, UpError> {
    let cancel = CancellationToken::new();
    let prepared = broker::prepare(amqp_url, options, run_folder, &output.stderr, &cancel);
    tokio::pin!(prepared);
    loop {
        tokio::select! {
            prepared = &mut prepared => return prepared,
            signal_name = stop_signals.next() => {
                cancel.cancel();
                say(output, format!("{signal_name} received; stopping the broker node being started")).await;
            }
        }
    }
}

/// Prints one line of `warren up`'s own.
async fn say(output: &OutputSinks, message: String) {
    write_line(&output.stderr, format!("warren up: {message}\n")).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a worker's settings load from: `warren up`'s environment without what it
    /// removes, with what it sets on top (as `Command::env_remove` then `envs`).
    fn worker_settings(
        up_environment: &[(&str, &str)],
        overrides: &Overrides,
    ) -> Result<Settings, warren_runtime::ConfigError> {
        let (environment, removed_environment) = worker_environment(overrides);
        let inherited = up_environment
            .iter()
            .filter(|(key, _)| !removed_environment.iter().any(|removed| removed == key))
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()));
        let set = environment.into_iter().map(|(key, value)| {
            (
                key.into_string().expect("UTF-8"),
                value.into_string().expect("UTF-8"),
            )
        });
        let mut variables: Vec<(String, String)> = inherited.chain(set).collect();
        variables.push((
            "WARREN_CONFIG_DIR".to_owned(),
            "/nonexistent/warren/config".to_owned(),
        ));
        Settings::load_from(variables, &Overrides::default())
    }

    #[test]
    fn a_url_file_of_warren_ups_own_serves_every_worker_and_the_flag_wins_over_it() {
        let folder = std::env::temp_dir().join(format!("warren-up-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&folder).expect("a temp folder");
        let url_file = folder.join("amqp_url");
        std::fs::write(&url_file, "amqp://app:from-file@broker:5672/%2f\n").expect("the file");
        let url_file = url_file.display().to_string();

        // Inherited: each worker reads the file itself.
        let up_environment = [("WARREN_AMQP_URL_FILE", url_file.as_str())];
        let settings =
            worker_settings(&up_environment, &Overrides::default()).expect("inherited file");
        assert_eq!(settings.amqp.url, "amqp://app:from-file@broker:5672/%2f");
        let (environment, removed) = worker_environment(&Overrides::default());
        assert!(removed.is_empty());
        assert!(!environment.iter().any(|(key, _)| key == "WARREN_AMQP_URL"));

        // `--amqp-url`: the flag's URL, not refused beside the inherited file, and over
        // any other variable of the URL.
        let flag = Overrides {
            amqp_url: Some("amqp://app:from-flag@other:5672/%2f".to_owned()),
            ..Overrides::default()
        };
        for up_environment in [
            vec![("WARREN_AMQP_URL_FILE", url_file.as_str())],
            vec![("WARREN_AMQP__URL_FILE", url_file.as_str())],
            vec![("WARREN_AMQP__URL", "amqp://long:form@broker/%2f")],
            vec![("WARREN_AMQP_URL", "amqp://short:form@broker/%2f")],
        ] {
            let settings = worker_settings(&up_environment, &flag).expect("the flag's URL");
            assert_eq!(
                settings.amqp.url, "amqp://app:from-flag@other:5672/%2f",
                "{up_environment:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&folder);
    }
}
