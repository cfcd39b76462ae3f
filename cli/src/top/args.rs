//! The arguments of `warren top`.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::parse_duration;

/// The shortest refresh interval.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The longest refresh interval.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// Arguments of `warren top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// The fleet's run folder, whose prometheus/targets*.json list the workers' metrics
    /// endpoints [default: $WARREN_RUN_DIR if set, else .warren].
    #[arg(long, value_name = "PATH")]
    pub(super) run_dir: Option<PathBuf>,
    /// How often to refresh, e.g. 1s or 500ms; rates, errors and p99 are over this
    /// window.
    #[arg(long, value_name = "D", default_value = "1s", value_parser = parse_interval)]
    pub(super) interval: Duration,
    /// Print one snapshot and exit instead of the live view (two scrapes one interval
    /// apart); needs no terminal.
    #[arg(long)]
    pub(super) once: bool,
    /// With --once: print the snapshot as one JSON object.
    #[arg(long, requires = "once")]
    pub(super) json: bool,
    /// How long connecting to the broker, and each of its answers, may take.
    #[arg(long, value_name = "D", default_value = "5s", value_parser = parse_duration)]
    pub(super) timeout: Duration,
}

impl TopArgs {
    /// How long one target's scrape may take: the interval (a target slower than that
    /// shows as down), at least a second, at most `--timeout`.
    pub(super) fn scrape_timeout(&self) -> Duration {
        self.interval
            .max(Duration::from_secs(1))
            .min(self.timeout.max(Duration::from_secs(1)))
    }
}

/// Parses `--interval`: a duration from 100ms to 1h.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_duration(text)?;
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
        return Err(format!("{text:?} is not between 100ms and 1h"));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        top: TopArgs,
    }

    #[test]
    fn defaults_and_checks() {
        let parsed = Cli::try_parse_from(["top"]).expect("no arguments");
        assert_eq!(parsed.top.interval, Duration::from_secs(1));
        assert_eq!(parsed.top.timeout, Duration::from_secs(5));
        assert_eq!(parsed.top.scrape_timeout(), Duration::from_secs(1));
        assert!(!parsed.top.once && !parsed.top.json);
        assert_eq!(parsed.top.run_dir, None);

        let parsed = Cli::try_parse_from([
            "top",
            "--once",
            "--json",
            "--interval",
            "3s",
            "--run-dir",
            "/srv/w",
        ])
        .expect("every flag");
        assert!(parsed.top.once && parsed.top.json);
        assert_eq!(parsed.top.scrape_timeout(), Duration::from_secs(3));
        assert_eq!(parsed.top.run_dir, Some(PathBuf::from("/srv/w")));

        let slow = Cli::try_parse_from(["top", "--interval", "1h"]).expect("an hour");
        assert_eq!(slow.top.scrape_timeout(), Duration::from_secs(5));

        assert!(
            Cli::try_parse_from(["top", "--json"]).is_err(),
            "--json needs --once"
        );
        for bad in ["0s", "50ms", "2h", "soon"] {
            assert!(
                Cli::try_parse_from(["top", "--interval", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
