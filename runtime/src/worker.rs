//! Running a worker: the recovery loop around sessions, and the `main` of every worker
//! binary.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{CommandFactory, FromArgMatches, Parser};
use tokio_util::sync::CancellationToken;

use crate::auth::Verifier;
use crate::config::{ConfigError, Overrides, Settings};
use crate::connection::reconnect_delays;
use crate::error::RuntimeError;
use crate::handler::{Handler, Manifest};
use crate::session::{WorkerCore, run_session};

/// A session that stayed up this long counts as healthy: the next failure starts the
/// back-off from its shortest delay again.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// Runs `handler` as the worker `manifest` describes until `shutdown` is cancelled,
/// reconnecting (with back-off) after every broker failure.
pub async fn run_worker<H: Handler>(
    handler: H,
    manifest: Manifest,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    manifest
        .check_against::<H::Input>()
        .map_err(RuntimeError::Manifest)?;
    crate::metrics::register(&manifest);
    let auth = token_verifier(&settings, &manifest)?;
    let core = WorkerCore {
        handler,
        manifest,
        limits: settings.limits.decode_limits(),
        source: format!("/warren/{}", manifest.name),
        retry_queue_prefix: crate::topology::retry_queue_prefix(manifest.name),
        settings,
        auth,
    };
    let mut delays = reconnect_delays();
    loop {
        let started = Instant::now();
        let error = match run_session(&core, &shutdown).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if shutdown.is_cancelled() {
            tracing::warn!(%error, "broker failure during shutdown");
            return Ok(());
        }
        if started.elapsed() >= HEALTHY_SESSION || is_unparsable_frame(&error) {
            delays = reconnect_delays();
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(10));
        tracing::warn!(%error, ?delay, "session lost; reconnecting");
        ::metrics::counter!(crate::metrics::RECONNECTS).increment(1);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// The verifier of the worker's messages' tokens when `auth.required` is set, with its
/// key set read now; `None` otherwise.
fn token_verifier(
    settings: &Settings,
    manifest: &Manifest,
) -> Result<Option<Verifier>, RuntimeError> {
    let auth = &settings.auth;
    if !auth.required {
        return Ok(None);
    }
    let consumed: Vec<&str> = manifest
        .commands
        .iter()
        .chain(manifest.events)
        .copied()
        .collect();
    let verifier = Verifier::new(auth, &consumed).map_err(|reason| {
        RuntimeError::Config(ConfigError::Invalid {
            key: "auth.keys_file",
            reason,
        })
    })?;
    tracing::info!(
        issuer = %auth.issuer,
        audience = %auth.audience,
        keys_file = %auth.keys_file.display(),
        kids = ?verifier.key_ids(),
        scopes = ?verifier.scopes(),
        "tokens required on every message"
    );
    Ok(Some(verifier))
}

/// Whether `error` ended the session because lapin could not parse a frame the broker
/// sent. The broker then hands out the same message again, so the back-off starts over
/// instead of growing: each loop costs a reconnect (~0.2 s), and the work queue's
/// delivery limit ends it after `worker.delivery_limit` deliveries, seconds in all. (The
/// one such frame known, a short string that is not UTF-8, is read since warren patched
/// the parser; this bounds what is not known.)
fn is_unparsable_frame(error: &RuntimeError) -> bool {
    matches!(error, RuntimeError::Amqp(error) if matches!(error.kind(), lapin::ErrorKind::ParsingError(_)))
}

/// Command-line flags every worker binary takes.
#[derive(Debug, Parser)]
struct WorkerArgs {
    /// How many unacknowledged deliveries to hold at once (overrides worker.prefetch).
    #[arg(long)]
    prefetch: Option<u16>,
    /// The broker URL (overrides WARREN_AMQP_URL and amqp.url).
    #[arg(long)]
    amqp_url: Option<String>,
    /// Print this worker's manifest (name, consumed and produced types) as one line of
    /// JSON and exit, without reading settings or connecting (`warren topology` reads
    /// it).
    #[arg(long)]
    manifest: bool,
}

/// The whole `main` of a worker binary: parse flags, load and validate settings, set up
/// logging, build the handler, run until SIGTERM, Ctrl-C or SIGHUP, or until the
/// `warren up` that started it is gone ([`crate::shutdown::follow_supervisor`]).
///
/// Exit codes: 0 after a clean shutdown, 1 when the worker fails, 2 for bad flags or
/// settings.
pub fn worker_main<H, F>(manifest: Manifest, build_handler: F) -> ExitCode
where
    H: Handler,
    F: FnOnce(&Settings) -> Result<H, Box<dyn std::error::Error + Send + Sync>>,
{
    let binary = format!("warren-{}", manifest.name);
    let matches = WorkerArgs::command()
        .name(binary.clone())
        .about(format!("The warren {} worker.", manifest.name))
        .get_matches();
    let args = match WorkerArgs::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    if args.manifest {
        println!("{}", manifest.to_json());
        return ExitCode::SUCCESS;
    }
    let overrides = Overrides {
        amqp_url: args.amqp_url,
        prefetch: args.prefetch,
    };
    let settings = match Settings::load(&overrides) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{binary}: {error}");
            return ExitCode::from(2);
        }
    };
    let _log_guard = crate::telemetry::init(&settings.log, manifest.name);
    // Before the async runtime: the span exporter's HTTP client is a blocking one.
    let _trace_guard = crate::otel::init(&binary);
    // On the main thread, before the runtime's threads exist (see `follow_supervisor`).
    let supervisor = match crate::shutdown::follow_supervisor() {
        Ok(supervisor) => supervisor,
        Err(error) => {
            tracing::error!(%error, "not starting");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = crate::shutdown::on_signals_or_orphaned(supervisor);
        if let Some(address) = settings.metrics.address() {
            crate::metrics::serve(address, manifest.name).await;
        }
        let handler = build_handler(&settings).map_err(|error| error.to_string())?;
        // In a task of the runtime's, not on `block_on`'s thread: a task's yield is
        // woken only after the session has taken the deliveries already ready, so the
        // messages that reach a store together share its commit (warren-store's group
        // commit; docs/performance.md). On `block_on` each would commit alone.
        tokio::spawn(run_worker(handler, manifest, settings, shutdown))
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| error.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "worker failed");
            ExitCode::FAILURE
        }
    }
}
