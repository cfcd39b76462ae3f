//! Load shapes: closed loop, open loop, bursts, prefill; when each request is due, and
//! where its latency starts.

use std::time::Duration;

use jiff::SignedDuration;
use serde::Serialize;
use tokio::time::Instant;

use super::args::LoadArgs;

/// The latest a request can be due, from the start: a hundred years.
const LATEST_DUE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How requests are sent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Shape {
    /// Keep this many in flight.
    Inflight { inflight: u32 },
    /// Open loop at this many a second.
    Rate { per_second: f64 },
    /// `size` at once every `interval`.
    Burst {
        size: u32,
        #[serde(rename = "interval_ms", serialize_with = "as_millis")]
        interval: Duration,
    },
    /// Everything at once.
    Prefill,
}

fn as_millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64() * 1000.0)
}

impl Shape {
    pub(super) fn of(args: &LoadArgs) -> anyhow::Result<Shape> {
        Ok(
            match (args.inflight, args.rate, args.burst, args.interval) {
                (Some(inflight), ..) => Shape::Inflight { inflight },
                (_, Some(per_second), ..) => Shape::Rate { per_second },
                (_, _, Some(size), Some(interval)) => Shape::Burst { size, interval },
                _ if args.prefill => Shape::Prefill,
                _ => anyhow::bail!("choose a load shape: --inflight, --rate, --burst or --prefill"),
            },
        )
    }

    /// When request `index` (from 0) is due, counted from the start; `None` for the
    /// shapes that send as fast as they may, whose latency starts at the publish.
    pub(super) fn intended_offset(&self, index: u64) -> Option<Duration> {
        let seconds = match *self {
            Shape::Rate { per_second } => index as f64 / per_second,
            Shape::Burst { size, interval } => {
                interval.as_secs_f64() * (index / u64::from(size)) as f64
            }
            Shape::Inflight { .. } | Shape::Prefill => return None,
        };
        // A schedule beyond any run's end (a rate of 1e-300) is capped, not a panic.
        Some(Duration::try_from_secs_f64(seconds).map_or(LATEST_DUE, |due| due.min(LATEST_DUE)))
    }

    pub(super) fn describe(&self) -> String {
        match *self {
            Shape::Inflight { inflight } => format!("closed loop, {inflight} in flight"),
            Shape::Rate { per_second } => format!("open loop, {per_second} requests/s"),
            Shape::Burst { size, interval } => {
                format!(
                    "bursts of {size} every {}",
                    SignedDuration::try_from(interval)
                        .map(|interval| format!("{interval:#}"))
                        .unwrap_or_else(|_| format!("{interval:?}"))
                )
            }
            Shape::Prefill => "prefill, then drain".to_owned(),
        }
    }
}

/// When a request's latency starts: when it was due (open loop) or when it was
/// published, whichever is earlier. Measuring from the due time is the correction for
/// coordinated omission: a sender held back by a stalled system still charges the stall
/// to every request that should have gone out during it.
pub(super) fn latency_start(due: Option<Instant>, published: Instant) -> Instant {
    due.map_or(published, |due| due.min(published))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loops_schedule_each_request() {
        let rate = Shape::Rate { per_second: 500.0 };
        assert_eq!(rate.intended_offset(0), Some(Duration::ZERO));
        assert_eq!(rate.intended_offset(1), Some(Duration::from_millis(2)));
        assert_eq!(rate.intended_offset(500), Some(Duration::from_secs(1)));
        let burst = Shape::Burst {
            size: 200,
            interval: Duration::from_millis(100),
        };
        assert_eq!(burst.intended_offset(0), Some(Duration::ZERO));
        assert_eq!(burst.intended_offset(199), Some(Duration::ZERO));
        assert_eq!(burst.intended_offset(200), Some(Duration::from_millis(100)));
        assert_eq!(burst.intended_offset(999), Some(Duration::from_millis(400)));
        let glacial = Shape::Rate { per_second: 1e-300 };
        assert_eq!(glacial.intended_offset(1), Some(LATEST_DUE));
        assert_eq!(Shape::Inflight { inflight: 3 }.intended_offset(7), None);
        assert_eq!(Shape::Prefill.intended_offset(7), None);
    }

    #[test]
    fn latency_starts_when_due_or_when_published() {
        let published = Instant::now();
        let due = published - Duration::from_millis(40);
        assert_eq!(latency_start(Some(due), published), due);
        assert_eq!(latency_start(None, published), published);
        // A timer that fires a little early never makes latency start after the publish.
        let early = published + Duration::from_millis(1);
        assert_eq!(latency_start(Some(early), published), published);
    }
}
