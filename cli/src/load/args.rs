//! The arguments of `warren load`, and the data every request carries.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::value::RawValue;

use crate::common::parse_duration;

/// `{"pad":""}`: the size of the smallest `--payload-bytes` data.
const PAD_OVERHEAD: usize = 10;
/// The largest `--payload-bytes`: a worker refuses a larger body (`limits.max_body_bytes`,
/// 1 MiB by default), so more could only measure faults.
const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Arguments of `warren load`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("shape").required(true).multiple(false)))]
pub struct LoadArgs {
    /// The request type.
    #[arg(
        long = "type",
        value_name = "TYPE",
        default_value = "dev.warren.echo.v1"
    )]
    pub message_type: String,
    /// The data of every request: inline JSON, @file, or - for stdin [default: {}].
    #[arg(long, value_name = "JSON")]
    pub data: Option<String>,
    /// Instead of --data: {"pad":"xxx…"}, exactly N bytes of JSON.
    #[arg(long, value_name = "N", conflicts_with = "data", allow_negative_numbers = true,
          value_parser = parse_payload_bytes)]
    pub payload_bytes: Option<usize>,
    /// How many requests to send.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: u64,
    /// Closed loop: keep W requests in flight; the next goes when one is answered.
    #[arg(long, value_name = "W", group = "shape",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub inflight: Option<u32>,
    /// Open loop: R requests a second, whatever comes back. Latency counts from when each
    /// request was due, so a stall is not hidden (coordinated omission).
    #[arg(long, value_name = "R", group = "shape", allow_negative_numbers = true,
          value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Queued bursts: B requests at once, every --interval.
    #[arg(long, value_name = "B", group = "shape", requires = "interval",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: Option<u32>,
    /// The time between two bursts, e.g. 100ms.
    // The other shapes are named as conflicts: clap waives a `requires` whose target
    // conflicts with an argument given, so `--inflight 5 --interval 1s` would pass.
    #[arg(long, value_name = "D", requires = "burst", value_parser = parse_duration,
          conflicts_with_all = ["inflight", "rate", "prefill"])]
    pub interval: Option<Duration>,
    /// Queue every request first, then let the workers drain them; reports the drain
    /// rate.
    #[arg(long, group = "shape")]
    pub prefill: bool,
    /// How long to wait for each outcome, e.g. 30s; also each request's deadline.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Ask every hop for progress notes (`dev.warren.progress.v1`); they are counted.
    #[arg(long)]
    pub progress: bool,
    /// Have the broker keep every outcome (persistent, acked) rather than send again
    /// the requests a reconnect left without one; more broker work per request
    /// (docs/reliability.md, "Outcome recovery"). Only a closed loop (--inflight)
    /// re-sends: the other shapes always have the broker keep outcomes.
    #[arg(long)]
    pub durable_outcomes: bool,
    #[command(flatten)]
    pub token: crate::token::TokenArg,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Draw throughput and latency percentiles per second into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

impl LoadArgs {
    /// The data of every request: `--data`, else `--payload-bytes` of padding, else `{}`.
    pub(super) fn request_data(&self) -> anyhow::Result<Box<RawValue>> {
        Ok(match (&self.data, self.payload_bytes) {
            (Some(argument), _) => crate::input::read_data(argument)?,
            (None, Some(bytes)) => padded_data(bytes).map_err(anyhow::Error::msg)?,
            (None, None) => RawValue::from_string("{}".to_owned())?,
        })
    }
}

/// Parses `--payload-bytes`.
fn parse_payload_bytes(text: &str) -> Result<usize, String> {
    let bytes: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of bytes"))?;
    if bytes < PAD_OVERHEAD {
        return Err(format!(
            "must be at least {PAD_OVERHEAD}: the smallest padded data, {{\"pad\":\"\"}}, is \
             {PAD_OVERHEAD} bytes"
        ));
    }
    if bytes > MAX_PAYLOAD_BYTES {
        return Err(format!(
            "must be at most {MAX_PAYLOAD_BYTES}: workers refuse larger messages"
        ));
    }
    Ok(bytes)
}

/// Parses `--rate`: requests per second, a positive finite number.
fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of requests per second"))?;
    if !rate.is_finite() || rate <= 0.0 {
        return Err(format!(
            "{text:?} must be a positive number of requests per second"
        ));
    }
    Ok(rate)
}

/// `{"pad":"xxx…"}` whose JSON text is exactly `bytes` long.
pub(super) fn padded_data(bytes: usize) -> Result<Box<RawValue>, String> {
    let pad = bytes
        .checked_sub(PAD_OVERHEAD)
        .ok_or_else(|| format!("padded data is at least {PAD_OVERHEAD} bytes, not {bytes}"))?;
    let mut text = String::with_capacity(bytes);
    text.push_str(r#"{"pad":""#);
    text.extend(std::iter::repeat_n('x', pad));
    text.push_str(r#""}"#);
    RawValue::from_string(text).map_err(|error| error.to_string())
}

/// Parses `args` as the flags of `warren load`.
#[cfg(test)]
pub(super) fn parse_args(args: &[&str]) -> Result<LoadArgs, clap::Error> {
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    Cli::try_parse_from(std::iter::once("load").chain(args.iter().copied())).map(|cli| cli.load)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::shape::Shape;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<LoadArgs, clap::Error> {
        parse_args(args)
    }

    fn shape(args: &[&str]) -> Shape {
        Shape::of(&parse(args).expect("valid flags")).expect("a shape")
    }

    fn error_kind(args: &[&str]) -> ErrorKind {
        parse(args).expect_err("invalid flags").kind()
    }

    #[test]
    fn padded_data_is_exactly_the_asked_size() {
        for bytes in [10, 11, 64, 256, 1000, 65_536] {
            let data = padded_data(bytes).expect("padded data");
            let serialized = serde_json::to_string(&data).expect("serialize");
            assert_eq!(serialized.len(), bytes, "{serialized}");
            let value: serde_json::Value = serde_json::from_str(&serialized).expect("JSON");
            let pad = value["pad"].as_str().expect("a pad string");
            assert_eq!(pad.len(), bytes - PAD_OVERHEAD);
            assert!(pad.bytes().all(|byte| byte == b'x'));
        }
        assert!(padded_data(9).is_err());
    }

    #[test]
    fn payload_bytes_are_validated() {
        assert_eq!(
            parse(&["--prefill", "--payload-bytes", "10"])
                .expect("ok")
                .payload_bytes,
            Some(10)
        );
        for bad in ["9", "0", "-1", "lots", "2000000"] {
            assert_eq!(
                error_kind(&["--prefill", "--payload-bytes", bad]),
                ErrorKind::ValueValidation,
                "{bad}"
            );
        }
        assert_eq!(
            error_kind(&["--prefill", "--payload-bytes", "100", "--data", "{}"]),
            ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn exactly_one_shape_is_required() {
        assert_eq!(error_kind(&[]), ErrorKind::MissingRequiredArgument);
        assert_eq!(
            error_kind(&["--messages", "5"]),
            ErrorKind::MissingRequiredArgument
        );
        for both in [
            &["--inflight", "10", "--rate", "5"][..],
            &["--prefill", "--inflight", "3"],
            &["--rate", "5", "--burst", "10", "--interval", "1s"],
            &["--prefill", "--burst", "10", "--interval", "1s"],
        ] {
            assert_eq!(error_kind(both), ErrorKind::ArgumentConflict, "{both:?}");
        }
        assert_eq!(
            shape(&["--inflight", "10"]),
            Shape::Inflight { inflight: 10 }
        );
        assert_eq!(shape(&["--rate", "2.5"]), Shape::Rate { per_second: 2.5 });
        assert_eq!(
            shape(&["--burst", "200", "--interval", "100ms"]),
            Shape::Burst {
                size: 200,
                interval: Duration::from_millis(100)
            }
        );
        assert_eq!(shape(&["--prefill"]), Shape::Prefill);
    }

    #[test]
    fn impossible_numbers_are_rejected() {
        for bad in [
            &["--inflight", "0"][..],
            &["--prefill", "--messages", "0"],
            &["--rate", "0"],
            &["--rate", "-5"],
            &["--rate", "inf"],
            &["--rate", "NaN"],
            &["--burst", "0", "--interval", "1s"],
            &["--burst", "5", "--interval", "0s"],
            &["--prefill", "--timeout", "0s"],
        ] {
            assert_eq!(error_kind(bad), ErrorKind::ValueValidation, "{bad:?}");
        }
    }

    #[test]
    fn burst_and_interval_go_together() {
        assert_eq!(
            error_kind(&["--burst", "10"]),
            ErrorKind::MissingRequiredArgument
        );
        for other in [&["--inflight", "10"][..], &["--rate", "5"], &["--prefill"]] {
            let args: Vec<&str> = other.iter().copied().chain(["--interval", "1s"]).collect();
            assert_eq!(error_kind(&args), ErrorKind::ArgumentConflict, "{args:?}");
        }
    }

    #[test]
    fn defaults_are_an_echo_of_empty_data_with_a_30s_timeout() {
        let args = parse(&["--inflight", "1"]).expect("valid");
        assert_eq!(args.message_type, "dev.warren.echo.v1");
        assert_eq!(args.messages, 1000);
        assert_eq!(args.timeout, Duration::from_secs(30));
        assert!(args.data.is_none() && args.payload_bytes.is_none());
        assert!(!args.json && args.plot.is_none());
    }
}
