//! The arguments of `warren up` and their parsers.

use std::path::PathBuf;
use std::time::Duration;

use warren_runtime::topology::check_worker_name;

use super::UpError;

/// How long children may take to stop after SIGTERM, unless `--grace` says otherwise.
pub const DEFAULT_GRACE_PERIOD: &str = "30s";

/// Arguments of `warren up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Run only these workers: a comma-separated list of names among the worker binaries
    /// found, e.g. `echo,tally`.
    #[arg(long, value_name = "WORKERS", value_parser = parse_worker_names)]
    pub only: Option<WorkerNames>,

    /// Passed to every worker as `--prefetch N`: how many unacked deliveries each holds.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: Option<u16>,

    /// How long workers may take to stop after SIGTERM before they are killed, e.g. `30s`,
    /// `500ms`, `2m`.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_GRACE_PERIOD,
          value_parser = parse_grace_period)]
    pub grace: Duration,

    /// The folder holding the `warren-<worker>` binaries: every executable named so is a
    /// worker. Default: the folder of the running `warren` executable.
    #[arg(long, value_name = "DIR", env = "WARREN_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,

    /// Never start a broker. Without it, when the broker URL is the built-in one
    /// (127.0.0.1:5672) and nothing answers there, `warren up` starts a RabbitMQ node of
    /// the fleet's own (data and logs in `$WARREN_RUN_DIR/broker/`) and stops it with
    /// the fleet.
    #[arg(long, env = "WARREN_NO_LOCAL_BROKER", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub no_local_broker: bool,

    /// Run even when another `warren up` runs for this run folder (`$WARREN_RUN_DIR`,
    /// default `.warren`): this one's workers are more instances beside that one's.
    #[arg(long)]
    pub add_instances: bool,

    /// Run the workers without log files and metrics endpoints (stderr only), e.g. to
    /// measure what they cost.
    #[arg(long)]
    pub no_observability: bool,

    /// Run each worker under its own broker user: the folder where `warren topology
    /// apply` wrote one URL file per worker (`<worker>.url`, its `--password-dir`). Each
    /// worker reads its URL from its file (`WARREN_AMQP_URL_FILE`) and only checks the
    /// shared exchanges (`amqp.declare_exchanges = false`), which its user may not
    /// declare. A worker without a file there is an error.
    #[arg(long, value_name = "DIR")]
    pub credentials: Option<PathBuf>,
}

/// The workers chosen with `--only`, in the order given, without duplicates; each a
/// valid worker name, not yet checked against the binaries found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerNames {
    /// The names.
    pub names: Vec<String>,
}

/// Parses a comma-separated list of worker names by the one rule for them
/// ([`check_worker_name`]).
pub fn parse_worker_names(text: &str) -> Result<WorkerNames, UpError> {
    let mut names: Vec<String> = Vec::new();
    let given_names = text
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty());
    for given_name in given_names {
        check_worker_name(given_name).map_err(UpError::InvalidWorkerName)?;
        if !names.iter().any(|name| name == given_name) {
            names.push(given_name.to_owned());
        }
    }
    if names.is_empty() {
        return Err(UpError::NoWorkerSelected);
    }
    Ok(WorkerNames { names })
}

/// Parses `--grace`: a friendly (`30s`, `1m 30s`, `500ms`) or ISO 8601 duration.
pub fn parse_grace_period(text: &str) -> Result<Duration, UpError> {
    let signed_duration: jiff::SignedDuration =
        text.trim()
            .parse()
            .map_err(|error: jiff::Error| UpError::InvalidGracePeriod {
                text: text.to_owned(),
                reason: error.to_string(),
            })?;
    Duration::try_from(signed_duration).map_err(|_| UpError::NegativeGracePeriod {
        text: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keeps_the_given_order_and_drops_duplicates() {
        let selection = parse_worker_names(" tally, echo ,tally,").expect("valid list");
        assert_eq!(selection.names, vec!["tally", "echo"]);
    }

    #[test]
    fn only_takes_names_by_the_one_worker_name_rule() {
        let selection = parse_worker_names("orders2,a-b").expect("digits and dashes");
        assert_eq!(selection.names, vec!["orders2", "a-b"]);
        for bad in ["Echo", "2fast", "echo.d", "-echo", "ec ho"] {
            let error = parse_worker_names(bad).expect_err(bad);
            assert!(matches!(error, UpError::InvalidWorkerName(_)), "{bad}");
            assert!(
                error.to_string().contains("is not a worker name"),
                "{error}"
            );
        }
    }

    #[test]
    fn only_rejects_an_empty_list() {
        for text in ["", " ", ",", " , ,"] {
            let error = parse_worker_names(text).expect_err("empty list");
            assert!(matches!(error, UpError::NoWorkerSelected), "{text:?}");
        }
    }

    #[test]
    fn grace_accepts_friendly_and_iso_durations() {
        let cases = [
            ("30s", Duration::from_secs(30)),
            ("500ms", Duration::from_millis(500)),
            ("1m 30s", Duration::from_secs(90)),
            ("PT2M", Duration::from_secs(120)),
            ("0s", Duration::ZERO),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_grace_period(text).expect(text), expected, "{text}");
        }
    }

    #[test]
    fn grace_rejects_nonsense_and_negative_durations() {
        assert!(matches!(
            parse_grace_period("soon"),
            Err(UpError::InvalidGracePeriod { .. })
        ));
        assert!(matches!(
            parse_grace_period("-5s"),
            Err(UpError::NegativeGracePeriod { .. })
        ));
    }

    #[test]
    fn the_default_grace_period_parses() {
        assert_eq!(
            parse_grace_period(DEFAULT_GRACE_PERIOD).expect("default"),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn arguments_parse_through_clap() {
        use clap::Parser;

        #[derive(Debug, clap::Parser)]
        struct TestCli {
            #[command(flatten)]
            up: UpArgs,
        }

        let parsed = TestCli::try_parse_from(["warren", "--only", "echo", "--prefetch", "7"])
            .expect("valid arguments");
        assert_eq!(parsed.up.prefetch, Some(7));
        assert_eq!(parsed.up.grace, Duration::from_secs(30));
        assert!(!parsed.up.add_instances);
        assert!(TestCli::try_parse_from(["warren", "--prefetch", "0"]).is_err());
        assert!(TestCli::try_parse_from(["warren", "--only", "No-Such"]).is_err());
        assert!(TestCli::try_parse_from(["warren", "--grace", "-1s"]).is_err());
        let flags = TestCli::try_parse_from(["warren", "--no-local-broker", "--add-instances"])
            .expect("valid flags");
        assert!(flags.up.no_local_broker && flags.up.add_instances);
    }
}
