//! What `warren top` knows: the last scrape of each target (to take the next one's
//! difference from), each worker's figures over the last window, what the broker said
//! of each work queue, and the rows they make together.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use jiff::Timestamp;
use warren_ops::queue_stats::QueueState;

use super::counts::{Combined, Counts, Window};
use super::quantile::{Quantile, histogram_quantile};
use super::scrape::ScrapeError;
use super::targets::{Listing, Target};

/// The quantile shown.
pub(super) const SHOWN_QUANTILE: f64 = 0.99;

/// One scrape of one target.
#[derive(Debug)]
pub(super) struct Scrape {
    pub(super) target: Target,
    /// When the answer was read.
    pub(super) at: Instant,
    pub(super) result: Result<Counts, ScrapeError>,
}

/// One worker's figures from its metrics, all its instances together.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct WorkerMetrics {
    pub(super) worker: String,
    /// Targets listed for it.
    pub(super) instances: usize,
    /// Of those, the ones that answered this time.
    pub(super) up: usize,
    /// In flight now, over the instances that answered.
    pub(super) in_flight: Option<f64>,
    /// The last window, over the instances that answered this time and the time
    /// before; `None` until one has.
    pub(super) window: Option<Combined>,
    /// Why an instance did not answer (the first one's reason).
    pub(super) down_reason: Option<String>,
}

impl WorkerMetrics {
    /// The processing time's quantile over the window; `None` when nothing was
    /// processed in it.
    pub(super) fn p99(&self) -> Option<Quantile> {
        let window = self.window.as_ref()?;
        histogram_quantile(SHOWN_QUANTILE, &window.buckets)
    }
}

/// The workers' figures after one refresh.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct MetricsReading {
    pub(super) at: Timestamp,
    /// By worker name.
    pub(super) workers: Vec<WorkerMetrics>,
    /// What could not be read: targets files, entries, garbled lines.
    pub(super) problems: Vec<String>,
}

/// The last scrape of every target, to take differences from.
#[derive(Debug, Default)]
pub(super) struct MetricsState {
    last: HashMap<Target, (Instant, Counts)>,
}

impl MetricsState {
    /// Takes in the scrapes of one refresh of the targets in `listing`, and returns each
    /// worker's figures since the refresh before.
    pub(super) fn update(
        &mut self,
        listing: Listing,
        scrapes: Vec<Scrape>,
        at: Timestamp,
    ) -> MetricsReading {
        let mut workers: BTreeMap<String, WorkerMetrics> = BTreeMap::new();
        for target in &listing.targets {
            workers
                .entry(target.worker.clone())
                .or_insert_with(|| WorkerMetrics {
                    worker: target.worker.clone(),
                    instances: 0,
                    up: 0,
                    in_flight: None,
                    window: None,
                    down_reason: None,
                })
                .instances += 1;
        }
        let mut problems = listing.problems;
        let mut next = HashMap::new();
        for scrape in scrapes {
            let Some(worker) = workers.get_mut(&scrape.target.worker) else {
                continue;
            };
            match scrape.result {
                Ok(counts) => {
                    worker.up += 1;
                    if let Some(in_flight) = counts.in_flight {
                        *worker.in_flight.get_or_insert(0.0) += in_flight;
                    }
                    if counts.unreadable_lines > 0 {
                        problems.push(format!(
                            "{} ({}): {} lines were not metrics",
                            scrape.target.worker, scrape.target.address, counts.unreadable_lines
                        ));
                    }
                    if let Some((earlier_at, earlier)) = self.last.get(&scrape.target) {
                        let seconds = scrape.at.duration_since(*earlier_at).as_secs_f64();
                        let window = Window::between(earlier, &counts, seconds);
                        worker
                            .window
                            .get_or_insert_with(Combined::default)
                            .add(&window);
                    }
                    next.insert(scrape.target, (scrape.at, counts));
                }
                Err(error) => {
                    worker
                        .down_reason
                        .get_or_insert_with(|| format!("{}: {error}", scrape.target.address));
                }
            }
        }
        // A target that did not answer starts over when it does: its last counts are
        // forgotten, so its first window after is not one across the gap.
        self.last = next;
        MetricsReading {
            at,
            workers: workers.into_values().collect(),
            problems,
        }
    }
}

/// What the broker said of the work queues.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum BrokerReading {
    /// Not read yet.
    Connecting,
    /// Each work queue read, by worker name.
    Read(BTreeMap<String, QueueState>),
    /// The broker could not be read (the error, its secrets redacted).
    Unreachable(String),
}

/// The queue cell of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QueueCell {
    /// Not known (the broker is not read, or not yet).
    Unknown,
    /// No work queue of that name.
    Missing,
    Found {
        messages: u32,
        consumers: u32,
    },
}

/// One row of the view: one worker.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Row {
    pub(super) worker: String,
    pub(super) instances: usize,
    pub(super) up: usize,
    /// Messages processed per second over the window; `None` before a window.
    pub(super) messages_per_second: Option<f64>,
    /// Processing time's p99 over the window; `None` when nothing was processed.
    pub(super) p99: Option<Quantile>,
    pub(super) errors_per_second: Option<f64>,
    /// Messages processed in the window, and errors.
    pub(super) processed: Option<f64>,
    pub(super) errors: Option<f64>,
    pub(super) window_seconds: Option<f64>,
    pub(super) in_flight: Option<f64>,
    pub(super) queue: QueueCell,
    pub(super) down_reason: Option<String>,
}

/// The rows of `metrics` with the queues of `broker`, by worker name.
pub(super) fn rows(metrics: &MetricsReading, broker: &BrokerReading) -> Vec<Row> {
    metrics
        .workers
        .iter()
        .map(|worker| {
            let queue = match broker {
                BrokerReading::Read(queues) => match queues.get(&worker.worker) {
                    Some(QueueState::Found {
                        messages,
                        consumers,
                    }) => QueueCell::Found {
                        messages: *messages,
                        consumers: *consumers,
                    },
                    Some(QueueState::Missing) => QueueCell::Missing,
                    None => QueueCell::Unknown,
                },
                BrokerReading::Connecting | BrokerReading::Unreachable(_) => QueueCell::Unknown,
            };
            let window = worker.window.as_ref();
            Row {
                worker: worker.worker.clone(),
                instances: worker.instances,
                up: worker.up,
                messages_per_second: window.map(|window| window.processed_per_second),
                p99: worker.p99(),
                errors_per_second: window.map(|window| window.errors_per_second),
                processed: window.map(|window| window.processed),
                errors: window.map(|window| window.errors),
                window_seconds: window.map(|window| window.seconds),
                in_flight: worker.in_flight,
                queue,
                down_reason: worker.down_reason.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn target(worker: &str, address: &str) -> Target {
        Target::new(worker, address)
    }

    fn counts(processed: f64, errors: f64, fast: f64, in_flight: f64) -> Counts {
        Counts {
            processed,
            errors,
            buckets: vec![
                super::super::quantile::Bucket {
                    upper_bound: 0.01,
                    count: fast,
                },
                super::super::quantile::Bucket {
                    upper_bound: f64::INFINITY,
                    count: processed,
                },
            ],
            in_flight: Some(in_flight),
            unreadable_lines: 0,
        }
    }

    fn listing(targets: &[Target]) -> Listing {
        Listing {
            targets: targets.to_vec(),
            problems: Vec::new(),
        }
    }

    #[test]
    fn instances_are_summed_and_a_silent_one_is_down() {
        let echo_1 = target("echo", "127.0.0.1:1");
        let echo_2 = target("echo", "127.0.0.1:2");
        let tally = target("tally", "127.0.0.1:3");
        let all = listing(&[echo_1.clone(), echo_2.clone(), tally.clone()]);
        let start = Instant::now();
        let later = start + Duration::from_secs(2);
        let mut state = MetricsState::default();
        let first = state.update(
            all.clone(),
            vec![
                Scrape {
                    target: echo_1.clone(),
                    at: start,
                    result: Ok(counts(10.0, 0.0, 10.0, 1.0)),
                },
                Scrape {
                    target: echo_2.clone(),
                    at: start,
                    result: Ok(counts(0.0, 0.0, 0.0, 0.0)),
                },
                Scrape {
                    target: tally.clone(),
                    at: start,
                    result: Err(ScrapeError::Io("refused".to_owned())),
                },
            ],
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(first.workers.len(), 2);
        let echo = &first.workers[0];
        assert_eq!((echo.instances, echo.up), (2, 2));
        assert_eq!(echo.in_flight, Some(1.0));
        assert_eq!(echo.window, None, "one scrape makes no window");
        assert_eq!(first.workers[1].up, 0);
        assert_eq!(
            first.workers[1].down_reason.as_deref(),
            Some("127.0.0.1:3: refused")
        );

        let second = state.update(
            all,
            vec![
                Scrape {
                    target: echo_1,
                    at: later,
                    result: Ok(counts(30.0, 2.0, 30.0, 0.0)),
                },
                Scrape {
                    target: echo_2,
                    at: later,
                    result: Ok(counts(4.0, 0.0, 0.0, 2.0)),
                },
                Scrape {
                    target: tally,
                    at: later,
                    result: Ok(counts(5.0, 0.0, 5.0, 0.0)),
                },
            ],
            Timestamp::UNIX_EPOCH,
        );
        let broker = BrokerReading::Read(BTreeMap::from([
            (
                "echo".to_owned(),
                QueueState::Found {
                    messages: 7,
                    consumers: 2,
                },
            ),
            ("tally".to_owned(), QueueState::Missing),
        ]));
        let rows = rows(&second, &broker);
        let echo = &rows[0];
        assert_eq!(echo.processed, Some(24.0));
        assert_eq!(echo.messages_per_second, Some(12.0));
        assert_eq!(echo.errors_per_second, Some(1.0));
        assert_eq!(echo.in_flight, Some(2.0));
        // 20 of 24 within 10 ms, 4 beyond: rank 23.76 is in the +Inf bucket.
        let p99 = echo.p99.expect("a p99");
        assert!(p99.beyond_last_bound);
        assert_eq!(
            echo.queue,
            QueueCell::Found {
                messages: 7,
                consumers: 2
            }
        );
        // Tally answered for the first time: no window yet, and no p99.
        let tally = &rows[1];
        assert_eq!(
            (tally.up, tally.messages_per_second, tally.p99),
            (1, None, None)
        );
        assert_eq!(tally.queue, QueueCell::Missing);
        let unread = super::rows(&second, &BrokerReading::Unreachable("down".to_owned()));
        assert_eq!(unread[0].queue, QueueCell::Unknown);
    }

    #[test]
    fn nothing_processed_has_a_rate_of_zero_and_no_p99() {
        let echo = target("echo", "127.0.0.1:1");
        let start = Instant::now();
        let mut state = MetricsState::default();
        for at in [start, start + Duration::from_secs(1)] {
            let reading = state.update(
                listing(std::slice::from_ref(&echo)),
                vec![Scrape {
                    target: echo.clone(),
                    at,
                    result: Ok(counts(3.0, 0.0, 3.0, 0.0)),
                }],
                Timestamp::UNIX_EPOCH,
            );
            let rows = rows(&reading, &BrokerReading::Connecting);
            if at > start {
                assert_eq!(rows[0].messages_per_second, Some(0.0));
                assert_eq!(rows[0].p99, None);
            }
        }
    }

    #[test]
    fn a_target_no_longer_listed_is_forgotten() {
        let echo = target("echo", "127.0.0.1:1");
        let mut state = MetricsState::default();
        let start = Instant::now();
        state.update(
            listing(std::slice::from_ref(&echo)),
            vec![Scrape {
                target: echo.clone(),
                at: start,
                result: Ok(counts(3.0, 0.0, 3.0, 0.0)),
            }],
            Timestamp::UNIX_EPOCH,
        );
        let reading = state.update(Listing::default(), Vec::new(), Timestamp::UNIX_EPOCH);
        assert!(reading.workers.is_empty());
        assert!(state.last.is_empty());
    }
}
