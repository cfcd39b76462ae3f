//! The summary of a run: the table, and the `--json` object.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;
use warren_runtime::OutcomeRecovery;

use super::args::LoadArgs;
use super::run_state::Run;
use super::shape::Shape;
use super::stats::{ms, quantile_ms, rate, round};
use super::timeline::Bucket;

/// Latency percentiles in milliseconds; `None` when no outcome came.
#[derive(Debug, Serialize)]
pub(super) struct Latency {
    pub(super) count: u64,
    pub(super) p50: Option<f64>,
    pub(super) p90: Option<f64>,
    pub(super) p99: Option<f64>,
    pub(super) p999: Option<f64>,
    pub(super) max: Option<f64>,
    pub(super) min: Option<f64>,
    pub(super) mean: Option<f64>,
}

impl Latency {
    pub(super) fn of(histogram: &Histogram<u64>) -> Latency {
        let some = !histogram.is_empty();
        Latency {
            count: histogram.len(),
            p50: quantile_ms(histogram, 0.5),
            p90: quantile_ms(histogram, 0.9),
            p99: quantile_ms(histogram, 0.99),
            p999: quantile_ms(histogram, 0.999),
            max: some.then(|| ms(histogram.max())),
            min: some.then(|| ms(histogram.min())),
            mean: some.then(|| round(histogram.mean() / 1000.0, 3)),
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Outcomes {
    pub(super) result: u64,
    pub(super) fault: u64,
    pub(super) timeout: u64,
}

/// What a prefill run adds: how fast the requests were queued and drained.
#[derive(Debug, Serialize)]
pub(super) struct Prefill {
    /// From the start to the last confirm.
    pub(super) publish_s: f64,
    pub(super) publish_rate_per_s: f64,
    /// From the first outcome to the last.
    pub(super) drain_s: f64,
    pub(super) drain_rate_per_s: f64,
}

/// The summary: the table's content, and the `--json` object.
#[derive(Debug, Serialize)]
pub(super) struct Summary {
    pub(super) messages: u64,
    pub(super) message_type: String,
    pub(super) shape: Shape,
    pub(super) data_bytes: usize,
    pub(super) envelope_bytes: usize,
    /// From the start to the end of the run (the last outcome or timeout).
    pub(super) elapsed_s: f64,
    /// Outcomes per second, from the start to the last outcome.
    pub(super) throughput_per_s: f64,
    pub(super) outcomes: Outcomes,
    pub(super) duplicates: u64,
    pub(super) late: u64,
    pub(super) unreadable: u64,
    pub(super) progress: u64,
    pub(super) republished: u64,
    pub(super) reconnects: u64,
    /// How an outcome lost with a broker restart comes back: `originator_resends`
    /// (transient outcomes; every request still waiting is sent again after a
    /// reconnect) or `broker_keeps` (`--durable-outcomes`).
    pub(super) outcome_recovery: &'static str,
    pub(super) latency_ms: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) latency_uncorrected_ms: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) prefill: Option<Prefill>,
    pub(super) per_second: Vec<Bucket>,
}

impl Summary {
    pub(super) fn of(
        run: Run,
        args: &LoadArgs,
        envelope_bytes: usize,
        data_bytes: usize,
        recovery: OutcomeRecovery,
        ended: Instant,
    ) -> Summary {
        let started = run.started;
        let completed = run.counts.results + run.counts.faults;
        let active = run
            .last_outcome
            .map_or(Duration::ZERO, |last| last - started)
            .as_secs_f64();
        let prefill = (run.shape == Shape::Prefill).then(|| {
            let publish_s = run
                .all_confirmed
                .map_or(Duration::ZERO, |confirmed| confirmed - started)
                .as_secs_f64();
            let drain_s = match (run.first_outcome, run.last_outcome) {
                (Some(first), Some(last)) => (last - first).as_secs_f64(),
                _ => 0.0,
            };
            Prefill {
                publish_s: round(publish_s, 6),
                publish_rate_per_s: round(rate(run.made, publish_s), 2),
                drain_s: round(drain_s, 6),
                // From the first outcome to the last are one fewer gaps than outcomes.
                drain_rate_per_s: round(rate(completed.saturating_sub(1), drain_s), 2),
            }
        });
        Summary {
            messages: run.messages,
            message_type: args.message_type.clone(),
            shape: run.shape,
            data_bytes,
            envelope_bytes,
            elapsed_s: round((ended - started).as_secs_f64(), 6),
            throughput_per_s: round(rate(completed, active), 2),
            outcomes: Outcomes {
                result: run.counts.results,
                fault: run.counts.faults,
                timeout: run.counts.timeouts,
            },
            duplicates: run.counts.duplicates,
            late: run.counts.late,
            unreadable: run.counts.unreadable,
            progress: run.counts.progress,
            republished: run.counts.republished,
            reconnects: run.counts.reconnects,
            outcome_recovery: match recovery {
                OutcomeRecovery::BrokerKeeps => "broker_keeps",
                OutcomeRecovery::OriginatorResends => "originator_resends",
            },
            latency_ms: Latency::of(&run.latency),
            latency_uncorrected_ms: run.uncorrected.as_ref().map(Latency::of),
            prefill,
            per_second: run.timeline.finish(ended - started),
        }
    }

    /// One line saying what ran.
    pub(super) fn headline(&self) -> String {
        format!(
            "{} × {}, {}",
            self.messages,
            self.message_type,
            self.shape.describe()
        )
    }

    /// The readable summary.
    pub(super) fn table(&self) -> String {
        let number =
            |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
        let mut out = String::new();
        let _ = writeln!(out, "warren load: {}", self.headline());
        let _ = writeln!(
            out,
            "  {:<12}{} bytes of data, {} bytes a message",
            "payload", self.data_bytes, self.envelope_bytes
        );
        let _ = writeln!(out, "  {:<12}{:.3} s", "elapsed", self.elapsed_s);
        let _ = writeln!(
            out,
            "  {:<12}{:.1} outcomes/s",
            "throughput", self.throughput_per_s
        );
        if let Some(prefill) = &self.prefill {
            let _ = writeln!(
                out,
                "  {:<12}queued in {:.3} s ({:.1}/s), drained in {:.3} s ({:.1}/s)",
                "prefill",
                prefill.publish_s,
                prefill.publish_rate_per_s,
                prefill.drain_s,
                prefill.drain_rate_per_s
            );
        }
        let _ = writeln!(
            out,
            "  {:<12}{} results, {} faults, {} timeouts",
            "outcomes", self.outcomes.result, self.outcomes.fault, self.outcomes.timeout
        );
        let _ = writeln!(
            out,
            "  {:<12}{} duplicates, {} late, {} unreadable, {} reconnects, {} published again",
            "also", self.duplicates, self.late, self.unreadable, self.reconnects, self.republished
        );
        let _ = writeln!(
            out,
            "  {:<12}{}",
            "recovery",
            if self.outcome_recovery == "broker_keeps" {
                "the broker keeps outcomes (persistent, acked)"
            } else {
                "outcomes transient; what a reconnect leaves unanswered is sent again"
            }
        );
        let _ = writeln!(
            out,
            "  {:<12}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "latency ms", "p50", "p90", "p99", "p99.9", "max"
        );
        let rows = match &self.latency_uncorrected_ms {
            // An open loop: from when each request was due (corrected for coordinated
            // omission), and from when it was actually published.
            Some(uncorrected) => vec![
                ("  from due", &self.latency_ms),
                ("  from sent", uncorrected),
            ],
            None => vec![("", &self.latency_ms)],
        };
        for (label, latency) in rows {
            let _ = writeln!(
                out,
                "  {label:<12}{:>10}{:>10}{:>10}{:>10}{:>10}",
                number(latency.p50),
                number(latency.p90),
                number(latency.p99),
                number(latency.p999),
                number(latency.max)
            );
        }
        out
    }
}
