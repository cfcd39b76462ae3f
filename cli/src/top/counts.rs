//! What one scrape of a worker's `/metrics` says that `warren top` shows, and what
//! happened between two scrapes: messages processed, errors, the processing-time
//! buckets, and what is in flight.

use warren_runtime::metrics::{IN_FLIGHT, OUTCOME_ERROR as ERROR_OUTCOME, PROCESS_DURATION};

use super::exposition::{Sample, parse_value, samples};
use super::quantile::Bucket;

/// The totals of one scrape, every series of a family added up (all message types and
/// outcomes).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Counts {
    /// Deliveries processed to their ack: the histogram's count.
    pub(super) processed: f64,
    /// Of those, the ones whose outcome was `error`.
    pub(super) errors: f64,
    /// The histogram's cumulative buckets, by upper bound.
    pub(super) buckets: Vec<Bucket>,
    /// Deliveries being worked on now; `None` when the gauge is not there.
    pub(super) in_flight: Option<f64>,
    /// Lines that were not samples.
    pub(super) unreadable_lines: usize,
}

impl Counts {
    /// The totals of an exposition in the Prometheus text format. Samples with a value
    /// that cannot be a count (negative, not finite) are left out.
    pub(super) fn read(exposition: &str) -> Counts {
        let bucket_name = format!("{PROCESS_DURATION}_bucket");
        let count_name = format!("{PROCESS_DURATION}_count");
        let mut counts = Counts::default();
        for sample in samples(exposition) {
            let Some(sample) = sample else {
                counts.unreadable_lines += 1;
                continue;
            };
            if !(sample.value.is_finite() && sample.value >= 0.0) {
                continue;
            }
            if sample.name == count_name {
                counts.processed += sample.value;
                if sample.label("outcome") == Some(ERROR_OUTCOME) {
                    counts.errors += sample.value;
                }
            } else if sample.name == bucket_name {
                counts.add_bucket(&sample);
            } else if sample.name == IN_FLIGHT {
                *counts.in_flight.get_or_insert(0.0) += sample.value;
            }
        }
        counts
    }

    fn add_bucket(&mut self, sample: &Sample<'_>) {
        let Some(upper_bound) = sample.label("le").and_then(parse_value) else {
            return;
        };
        if upper_bound.is_nan() {
            return;
        }
        add_to_bucket(&mut self.buckets, upper_bound, sample.value);
    }
}

/// Adds `count` to the bucket of `upper_bound` in `buckets` (kept sorted), making it
/// if there is none.
fn add_to_bucket(buckets: &mut Vec<Bucket>, upper_bound: f64, count: f64) {
    match buckets.binary_search_by(|bucket| bucket.upper_bound.total_cmp(&upper_bound)) {
        Ok(index) => buckets[index].count += count,
        Err(index) => buckets.insert(index, Bucket { upper_bound, count }),
    }
}

/// What happened between two scrapes of one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Window {
    /// The time between the two scrapes.
    pub(super) seconds: f64,
    pub(super) processed: f64,
    pub(super) errors: f64,
    /// The buckets' increase (each still cumulative over the window).
    pub(super) buckets: Vec<Bucket>,
}

impl Window {
    /// What happened from `earlier` to `later`, `seconds` apart. A count that fell
    /// means the worker restarted in between (as Prometheus's `rate` reads a counter
    /// reset): then the window is what `later` counted since its start.
    pub(super) fn between(earlier: &Counts, later: &Counts, seconds: f64) -> Window {
        let before = |upper_bound: f64| {
            earlier
                .buckets
                .iter()
                .find(|bucket| bucket.upper_bound == upper_bound)
                .map_or(0.0, |bucket| bucket.count)
        };
        let reset = later.processed < earlier.processed
            || later.errors < earlier.errors
            || later
                .buckets
                .iter()
                .any(|bucket| bucket.count < before(bucket.upper_bound));
        if reset {
            return Window {
                seconds,
                processed: later.processed,
                errors: later.errors,
                buckets: later.buckets.clone(),
            };
        }
        Window {
            seconds,
            processed: later.processed - earlier.processed,
            errors: later.errors - earlier.errors,
            buckets: later
                .buckets
                .iter()
                .map(|bucket| Bucket {
                    upper_bound: bucket.upper_bound,
                    count: bucket.count - before(bucket.upper_bound),
                })
                .collect(),
        }
    }

    /// Messages processed per second.
    pub(super) fn processed_per_second(&self) -> f64 {
        per_second(self.processed, self.seconds)
    }

    /// Errors per second.
    pub(super) fn errors_per_second(&self) -> f64 {
        per_second(self.errors, self.seconds)
    }
}

fn per_second(count: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { count / seconds } else { 0.0 }
}

/// The windows of several instances of one worker, added up: counts and buckets
/// summed, and rates summed (each instance's over its own window).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Combined {
    pub(super) processed: f64,
    pub(super) errors: f64,
    pub(super) processed_per_second: f64,
    pub(super) errors_per_second: f64,
    pub(super) buckets: Vec<Bucket>,
    /// The longest of the windows.
    pub(super) seconds: f64,
}

impl Combined {
    pub(super) fn add(&mut self, window: &Window) {
        self.processed += window.processed;
        self.errors += window.errors;
        self.processed_per_second += window.processed_per_second();
        self.errors_per_second += window.errors_per_second();
        self.seconds = self.seconds.max(window.seconds);
        for bucket in &window.buckets {
            add_to_bucket(&mut self.buckets, bucket.upper_bound, bucket.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exposition of one worker: `ok` and `error` deliveries of one type, each with
    /// the given cumulative counts at 5 ms, 100 ms and +Inf.
    fn exposition(ok: [u32; 3], error: [u32; 3], in_flight: u32) -> String {
        let mut text = String::from(
            "# HELP messaging_process_duration_seconds Time.\n\
             # TYPE messaging_process_duration_seconds histogram\n",
        );
        for (outcome, counts) in [("ok", ok), ("error", error)] {
            let labels = format!(
                "worker=\"echo\",message_type=\"dev.warren.echo.v1\",outcome=\"{outcome}\""
            );
            for (le, count) in ["0.005", "0.1", "+Inf"].iter().zip(counts) {
                text.push_str(&format!(
                    "messaging_process_duration_seconds_bucket{{{labels},le=\"{le}\"}} {count}\n"
                ));
            }
            text.push_str(&format!(
                "messaging_process_duration_seconds_sum{{{labels}}} 0.5\n\
                 messaging_process_duration_seconds_count{{{labels}}} {}\n",
                counts[2]
            ));
        }
        text.push_str(&format!(
            "warren_messages_in_flight{{worker=\"echo\"}} {in_flight}\n\
             warren_messages_consumed_total{{worker=\"echo\",message_type=\"dev.warren.echo.v1\"}} 99\n"
        ));
        text
    }

    fn bucket(upper_bound: f64, count: f64) -> Bucket {
        Bucket { upper_bound, count }
    }

    #[test]
    fn a_scrape_adds_up_every_series() {
        let counts = Counts::read(&exposition([3, 4, 5], [0, 1, 2], 1));
        assert_eq!(counts.processed, 7.0);
        assert_eq!(counts.errors, 2.0);
        assert_eq!(counts.in_flight, Some(1.0));
        assert_eq!(
            counts.buckets,
            [
                bucket(0.005, 3.0),
                bucket(0.1, 5.0),
                bucket(f64::INFINITY, 7.0)
            ]
        );
        assert_eq!(counts.unreadable_lines, 0);
    }

    #[test]
    fn garbage_is_counted_and_bad_values_left_out() {
        let counts = Counts::read(
            "not a sample at all\n\
             messaging_process_duration_seconds_count{outcome=\"ok\"} -4\n\
             messaging_process_duration_seconds_count{outcome=\"ok\"} NaN\n\
             messaging_process_duration_seconds_count{outcome=\"error\"} 2\n\
             messaging_process_duration_seconds_bucket{le=\"soon\"} 2\n\
             messaging_process_duration_seconds_bucket{le=\"NaN\"} 2\n\
             messaging_process_duration_seconds_bucket 2\n\
             \u{1b}[31m red\n",
        );
        assert_eq!(counts.processed, 2.0);
        assert_eq!(counts.errors, 2.0);
        assert!(counts.buckets.is_empty());
        assert_eq!(counts.in_flight, None);
        assert_eq!(counts.unreadable_lines, 2);
        assert_eq!(Counts::read(""), Counts::default());
    }

    #[test]
    fn a_window_is_the_difference_and_its_rates() {
        let earlier = Counts::read(&exposition([3, 4, 5], [0, 1, 2], 0));
        let later = Counts::read(&exposition([13, 24, 25], [0, 1, 4], 0));
        let window = Window::between(&earlier, &later, 2.0);
        assert_eq!(window.processed, 22.0);
        assert_eq!(window.errors, 2.0);
        assert_eq!(window.processed_per_second(), 11.0);
        assert_eq!(window.errors_per_second(), 1.0);
        assert_eq!(
            window.buckets,
            [
                bucket(0.005, 10.0),
                bucket(0.1, 20.0),
                bucket(f64::INFINITY, 22.0)
            ]
        );
        let idle = Window::between(&later, &later, 1.0);
        assert_eq!(idle.processed, 0.0);
        assert_eq!(idle.processed_per_second(), 0.0);
        assert_eq!(
            Window::between(&later, &later, 0.0).processed_per_second(),
            0.0
        );
    }

    #[test]
    fn a_count_that_fell_is_a_restart() {
        let before_restart = Counts::read(&exposition([30, 40, 50], [0, 0, 0], 0));
        let after_restart = Counts::read(&exposition([2, 3, 3], [0, 0, 0], 0));
        let window = Window::between(&before_restart, &after_restart, 1.0);
        assert_eq!(window.processed, 3.0);
        assert_eq!(window.buckets, after_restart.buckets);
    }

    #[test]
    fn instances_add_up() {
        let mut combined = Combined::default();
        combined.add(&Window {
            seconds: 1.0,
            processed: 4.0,
            errors: 1.0,
            buckets: vec![bucket(0.1, 3.0), bucket(f64::INFINITY, 4.0)],
        });
        combined.add(&Window {
            seconds: 2.0,
            processed: 6.0,
            errors: 0.0,
            buckets: vec![
                bucket(0.005, 1.0),
                bucket(0.1, 5.0),
                bucket(f64::INFINITY, 6.0),
            ],
        });
        assert_eq!(combined.processed, 10.0);
        assert_eq!(combined.processed_per_second, 7.0);
        assert_eq!(combined.errors_per_second, 1.0);
        assert_eq!(combined.seconds, 2.0);
        assert_eq!(
            combined.buckets,
            [
                bucket(0.005, 1.0),
                bucket(0.1, 8.0),
                bucket(f64::INFINITY, 10.0)
            ]
        );
    }
}
