//! Per-second buckets of a run, for the JSON summary and the plot.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::stats::{micros, ms, new_histogram, quantile_ms, rate, round};

/// One second of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Bucket {
    /// Seconds from the start to the bucket's start.
    pub(super) second: u64,
    /// How much of the second the run covered: 1 but for the last.
    pub(super) width_s: f64,
    /// Requests made in it.
    pub(super) sent: u64,
    /// Outcomes (results and faults) received in it.
    pub(super) completed: u64,
    /// Requests that timed out in it.
    pub(super) timeouts: u64,
    /// `completed / width_s`.
    pub(super) completed_per_s: f64,
    /// Percentiles of the latencies of the outcomes received in it.
    pub(super) p50_ms: Option<f64>,
    pub(super) p99_ms: Option<f64>,
    pub(super) max_ms: Option<f64>,
}

impl Bucket {
    /// `count` events in this bucket, as a rate.
    pub(super) fn per_second(&self, count: u64) -> Option<f64> {
        (self.width_s > 0.0).then(|| count as f64 / self.width_s)
    }
}

/// Per-second buckets, filled as events happen (in time order) and closed as time moves
/// on; one histogram is reused, so a second costs no allocation but its bucket.
pub(super) struct Timeline {
    open_second: u64,
    sent: u64,
    completed: u64,
    timeouts: u64,
    latencies: Histogram<u64>,
    closed: Vec<Bucket>,
}

impl Timeline {
    pub(super) fn new() -> Timeline {
        Timeline {
            open_second: 0,
            sent: 0,
            completed: 0,
            timeouts: 0,
            latencies: new_histogram(),
            closed: Vec::new(),
        }
    }

    /// Closes every bucket that ends at or before `at` (from the start).
    pub(super) fn advance(&mut self, at: Duration) {
        while self.open_second < at.as_secs() {
            self.close(1.0);
        }
    }

    fn close(&mut self, width_s: f64) {
        self.closed.push(Bucket {
            second: self.open_second,
            width_s: round(width_s, 6),
            sent: self.sent,
            completed: self.completed,
            timeouts: self.timeouts,
            completed_per_s: round(rate(self.completed, width_s), 2),
            p50_ms: quantile_ms(&self.latencies, 0.5),
            p99_ms: quantile_ms(&self.latencies, 0.99),
            max_ms: (!self.latencies.is_empty()).then(|| ms(self.latencies.max())),
        });
        self.open_second += 1;
        self.sent = 0;
        self.completed = 0;
        self.timeouts = 0;
        self.latencies.reset();
    }

    pub(super) fn record_sent(&mut self, at: Duration) {
        self.advance(at);
        self.sent += 1;
    }

    pub(super) fn record_outcome(&mut self, at: Duration, latency: Duration) {
        self.advance(at);
        self.completed += 1;
        self.latencies.saturating_record(micros(latency));
    }

    pub(super) fn record_timeout(&mut self, at: Duration) {
        self.advance(at);
        self.timeouts += 1;
    }

    /// Every bucket, the last one cut at `end`.
    pub(super) fn finish(mut self, end: Duration) -> Vec<Bucket> {
        self.advance(end);
        let width_s = end.as_secs_f64() - self.open_second as f64;
        if width_s > 0.0 || self.sent + self.completed + self.timeouts > 0 {
            self.close(width_s.max(0.0));
        }
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::assert_close;

    #[test]
    fn timeline_buckets_by_second() {
        let at = Duration::from_millis;
        let mut timeline = Timeline::new();
        timeline.record_sent(at(0));
        timeline.record_sent(at(10));
        timeline.record_outcome(at(100), at(10));
        timeline.record_outcome(at(900), at(30));
        // Nothing at all in second 1.
        timeline.record_sent(at(2_100));
        timeline.record_timeout(at(2_200));
        timeline.record_outcome(at(2_400), at(50));
        timeline.advance(at(2_450));
        let buckets = timeline.finish(at(2_500));

        assert_eq!(buckets.len(), 3, "{buckets:#?}");
        let seconds: Vec<u64> = buckets.iter().map(|bucket| bucket.second).collect();
        assert_eq!(seconds, [0, 1, 2]);
        let first = &buckets[0];
        assert_eq!((first.sent, first.completed, first.timeouts), (2, 2, 0));
        assert_eq!(first.width_s, 1.0);
        assert_eq!(first.completed_per_s, 2.0);
        assert_close(first.p50_ms, 10.0);
        assert_close(first.p99_ms, 30.0);
        assert_close(first.max_ms, 30.0);

        let empty = &buckets[1];
        assert_eq!((empty.sent, empty.completed, empty.timeouts), (0, 0, 0));
        assert_eq!(
            (empty.p50_ms, empty.p99_ms, empty.max_ms),
            (None, None, None)
        );

        let last = &buckets[2];
        assert_eq!((last.sent, last.completed, last.timeouts), (1, 1, 1));
        assert!((last.width_s - 0.5).abs() < 1e-9, "{}", last.width_s);
        assert!((last.completed_per_s - 2.0).abs() < 1e-9);
        assert_close(last.p50_ms, 50.0);
    }

    #[test]
    fn timeline_of_nothing_is_one_empty_bucket_or_none() {
        assert!(Timeline::new().finish(Duration::ZERO).is_empty());
        let buckets = Timeline::new().finish(Duration::from_millis(1500));
        assert_eq!(buckets.len(), 2);
        assert!(buckets.iter().all(|bucket| bucket.completed == 0));
    }
}
