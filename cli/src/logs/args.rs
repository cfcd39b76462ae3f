//! The arguments of `warren logs`, and the parsers of their values.

use std::path::PathBuf;

use crate::common::parse_worker_name;
use jiff::{SignedDuration, Span, SpanRelativeTo, Timestamp};
use warren_messages::TraceParent;

use super::record::Level;

/// Arguments of `warren logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Only the lines of this trace: its 32 hex digits (the `trace_id` that `warren
    /// request` prints with each outcome), or a whole `traceparent`.
    #[arg(long = "trace", value_name = "ID", value_parser = parse_trace_id)]
    pub(super) trace_id: Option<String>,
    /// Only the lines about messages of this correlation id (the id of the request they
    /// belong to).
    #[arg(long = "correlation", value_name = "ID", value_parser = parse_correlation_id)]
    pub(super) correlation_id: Option<String>,
    /// Only these workers' lines; repeat it, or give a comma-separated list.
    #[arg(
        long = "worker",
        value_name = "W",
        value_delimiter = ',',
        value_parser = parse_worker_name
    )]
    pub(super) workers: Vec<String>,
    /// Only the lines of this level and above: trace, debug, info, warn or error.
    #[arg(long, value_name = "L", ignore_case = true)]
    pub(super) level: Option<Level>,
    /// Only the lines from this long ago on (e.g. 30s, 10m, 2h, 1d), or from this RFC 3339
    /// time on (e.g. 2026-11-30T11:30:00Z).
    #[arg(long, value_name = "D", value_parser = parse_since)]
    pub(super) since: Option<Since>,
    /// After what is there, keep printing lines as they are written (new files too)
    /// until Ctrl-C.
    #[arg(long, short)]
    pub(super) follow: bool,
    /// Print each line as the JSON record it is in its file.
    #[arg(long)]
    pub(super) json: bool,
    /// The folder of the log files [default: $WARREN_LOG__DIR if set, else
    /// $WARREN_RUN_DIR/logs, where WARREN_RUN_DIR defaults to .warren].
    #[arg(long, value_name = "PATH")]
    pub(super) dir: Option<PathBuf>,
}

/// Where `--since` starts: a time, or a duration back from when the command starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Since {
    /// This long before now.
    Ago(SignedDuration),
    /// This time.
    At(Timestamp),
}

impl Since {
    /// The time it names, counted from `now`.
    pub(super) fn resolve(self, now: Timestamp) -> Timestamp {
        match self {
            Since::At(time) => time,
            // Further back than jiff's earliest time is everything.
            Since::Ago(duration) => now.checked_sub(duration).unwrap_or(Timestamp::MIN),
        }
    }
}

/// Parses `--since`: an RFC 3339 time (`2026-11-30T11:30:00Z`), or a duration back from
/// now (`30s`, `10m`, `2h`, `1d`, `1h30m`; a day is 24 hours).
pub(super) fn parse_since(text: &str) -> Result<Since, String> {
    if let Ok(time) = text.parse::<Timestamp>() {
        return Ok(Since::At(time));
    }
    let not_understood = || {
        format!(
            "{text:?} is neither a duration like 30s, 10m, 2h or 1d, nor an RFC 3339 time \
             like 2026-11-30T11:30:00Z"
        )
    };
    let span: Span = text.parse().map_err(|_| not_understood())?;
    let duration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| not_understood())?;
    if duration.is_negative() {
        return Err(format!("{text:?} must not be negative"));
    }
    Ok(Since::Ago(duration))
}

/// Parses `--trace`: 32 hex digits (either case, kept in lowercase as the logs write
/// them), or a whole W3C `traceparent`, of which the trace id is taken.
pub(super) fn parse_trace_id(text: &str) -> Result<String, String> {
    if let Some(trace_parent) = TraceParent::parse(text) {
        return Ok(format!("{:032x}", trace_parent.trace_id));
    }
    if text.len() == 32 && text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Ok(text.to_ascii_lowercase());
    }
    Err(format!(
        "{text:?} is not a trace id: 32 hex digits, as in the trace_id of a log line or of \
         what `warren request` prints"
    ))
}

/// Parses `--correlation`: any id but an empty one.
fn parse_correlation_id(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("the correlation id must not be empty".to_owned());
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: LogsArgs,
    }

    #[test]
    fn since_takes_durations_back_from_now() {
        let now: Timestamp = "2026-11-30T12:00:00Z".parse().expect("a time");
        for (text, expected) in [
            ("30s", "2026-11-30T11:59:30Z"),
            ("10m", "2026-11-30T11:50:00Z"),
            ("2h", "2026-11-30T10:00:00Z"),
            ("1h30m", "2026-11-30T10:30:00Z"),
            ("1d", "2026-11-29T12:00:00Z"),
            ("PT5M", "2026-11-30T11:55:00Z"),
            ("0s", "2026-11-30T12:00:00Z"),
        ] {
            let since = parse_since(text).unwrap_or_else(|error| panic!("{text}: {error}"));
            assert!(matches!(since, Since::Ago(_)), "{text}: {since:?}");
            let expected: Timestamp = expected.parse().expect("a time");
            assert_eq!(since.resolve(now), expected, "{text}");
        }
    }

    #[test]
    fn since_takes_rfc_3339_times() {
        let now: Timestamp = "2026-11-30T12:00:00Z".parse().expect("a time");
        let since = parse_since("2026-11-30T11:30:00.123456Z").expect("a time");
        assert_eq!(
            since.resolve(now),
            "2026-11-30T11:30:00.123456Z"
                .parse::<Timestamp>()
                .expect("a time")
        );
        let offset = parse_since("2026-11-30T12:30:00+01:00").expect("a time with an offset");
        assert_eq!(
            offset.resolve(now),
            "2026-11-30T11:30:00Z".parse::<Timestamp>().expect("a time")
        );
    }

    #[test]
    fn since_refuses_what_is_neither() {
        for text in ["", "soon", "10", "-5m", "1 month", "2026-11-30", "1mo"] {
            assert!(parse_since(text).is_err(), "{text:?} was taken");
        }
        let error = parse_since("soon").expect_err("not a duration");
        assert!(error.contains("30s"), "{error}");
    }

    #[test]
    fn a_far_past_since_is_everything() {
        let now: Timestamp = "2026-11-30T12:00:00Z".parse().expect("a time");
        let since = parse_since("175000000h").expect("twenty thousand years");
        assert_eq!(since.resolve(now), Timestamp::MIN);
    }

    #[test]
    fn trace_ids_are_32_hex_digits_or_a_traceparent() {
        let id = "0af7651916cd43dd8448eb211c80319c";
        assert_eq!(parse_trace_id(id), Ok(id.to_owned()));
        assert_eq!(parse_trace_id(&id.to_ascii_uppercase()), Ok(id.to_owned()));
        assert_eq!(
            parse_trace_id(&format!("00-{id}-b7ad6b7169203331-01")),
            Ok(id.to_owned())
        );
        for bad in [
            "",
            "0af7651916cd43dd",
            "0af7651916cd43dd8448eb211c80319g",
            "x",
        ] {
            assert!(parse_trace_id(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn workers_repeat_or_come_as_a_list() {
        let cli = Cli::try_parse_from(["logs", "--worker", "orders,payments", "--worker", "echo"])
            .expect("three workers");
        assert_eq!(cli.args.workers, ["orders", "payments", "echo"]);
        assert!(Cli::try_parse_from(["logs", "--worker", "Orders"]).is_err());
        assert!(Cli::try_parse_from(["logs", "--worker", "orders,,echo"]).is_err());
    }

    #[test]
    fn every_flag_parses() {
        let cli = Cli::try_parse_from([
            "logs",
            "--trace",
            "0af7651916cd43dd8448eb211c80319c",
            "--correlation",
            "0190a1b2-c3d4",
            "--level",
            "WARN",
            "--since",
            "10m",
            "--follow",
            "--json",
            "--dir",
            "/tmp/logs",
        ])
        .expect("every flag");
        assert_eq!(cli.args.level, Some(Level::Warn));
        assert_eq!(cli.args.correlation_id.as_deref(), Some("0190a1b2-c3d4"));
        assert!(cli.args.follow && cli.args.json);
        assert!(Cli::try_parse_from(["logs", "--level", "loud"]).is_err());
        assert!(Cli::try_parse_from(["logs", "--correlation", ""]).is_err());
    }
}
