//! Taking the figures: every target's metrics scraped at once, and the work queues read
//! from the broker; each side as one step (for `--once`) and as a loop of its own that
//! publishes its readings (for the live view), so a slow broker never holds up the
//! workers' figures, nor the other way round.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use jiff::Timestamp;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use warren_ops::queue_stats::{QueueState, QueueStats};
use warren_runtime::config::redact_secret_in;
use warren_runtime::reconnect_delays;
use warren_runtime::topology::{check_worker_name, work_queue_name};

use super::counts::Counts;
use super::scrape::get_metrics;
use super::state::{BrokerReading, MetricsReading, MetricsState, Scrape};
use super::targets::{self, Target};

/// Scrapes every target at once, each within `timeout`.
pub(super) async fn scrape_all(targets: &[Target], timeout: Duration) -> Vec<Scrape> {
    join_all(targets.iter().map(|target| async move {
        let result = get_metrics(&target.address, timeout)
            .await
            .map(|body| Counts::read(&body));
        Scrape {
            target: target.clone(),
            at: Instant::now(),
            result,
        }
    }))
    .await
}

/// Lists the targets of `folder` and scrapes them all: the workers' figures since the
/// last refresh of `state`.
pub(super) async fn refresh_metrics(
    folder: &Path,
    state: &mut MetricsState,
    timeout: Duration,
) -> MetricsReading {
    let listing = targets::list(folder);
    let scrapes = scrape_all(&listing.targets, timeout).await;
    state.update(listing, scrapes, Timestamp::now())
}

/// Reads the work queue of each of `workers` (those whose name can be a worker's; the
/// others are not asked for).
pub(super) async fn read_queues(
    queues: &mut QueueStats,
    workers: &[String],
    amqp_url: &str,
) -> BrokerReading {
    let workers: Vec<&String> = workers
        .iter()
        .filter(|worker| check_worker_name(worker).is_ok())
        .collect();
    let names: Vec<String> = workers
        .iter()
        .map(|worker| work_queue_name(worker))
        .collect();
    match queues.read_all(&names).await {
        Ok(states) => BrokerReading::Read(
            workers
                .into_iter()
                .cloned()
                .zip(states)
                .collect::<BTreeMap<String, QueueState>>(),
        ),
        Err(error) => BrokerReading::Unreachable(redact_secret_in(&error.to_string(), amqp_url)),
    }
}

/// The workers of a reading, by name.
pub(super) fn worker_names(reading: Option<&MetricsReading>) -> Vec<String> {
    reading
        .map(|reading| {
            reading
                .workers
                .iter()
                .map(|worker| worker.worker.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Refreshes the workers' figures every `interval` until `stop`, publishing each
/// reading.
pub(super) async fn watch_metrics(
    folder: std::path::PathBuf,
    interval: Duration,
    timeout: Duration,
    readings: watch::Sender<Option<MetricsReading>>,
    stop: CancellationToken,
) {
    let mut state = MetricsState::default();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let reading = tokio::select! {
            () = stop.cancelled() => return,
            reading = refresh_metrics(&folder, &mut state, timeout) => reading,
        };
        readings.send_replace(Some(reading));
    }
}

/// Reads the work queues of the workers in the latest of `metrics` every `interval`,
/// and at once when the workers listed change, until `stop`, publishing each reading.
/// After a failed reading it waits with back-off before trying again (the last reading
/// says the broker is unreachable meanwhile).
pub(super) async fn watch_broker(
    mut queues: QueueStats,
    amqp_url: String,
    interval: Duration,
    mut metrics: watch::Receiver<Option<MetricsReading>>,
    readings: watch::Sender<BrokerReading>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut delays = reconnect_delays();
    let mut metrics_open = true;
    let mut last_read: Option<Vec<String>> = None;
    loop {
        let workers = tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => worker_names(metrics.borrow_and_update().as_ref()),
            changed = metrics.changed(), if metrics_open => {
                metrics_open = changed.is_ok();
                let workers = worker_names(metrics.borrow_and_update().as_ref());
                if last_read.as_ref() == Some(&workers) {
                    continue;
                }
                workers
            }
        };
        let reading = tokio::select! {
            () = stop.cancelled() => break,
            reading = read_queues(&mut queues, &workers, &amqp_url) => reading,
        };
        let failed = matches!(reading, BrokerReading::Unreachable(_));
        readings.send_replace(reading);
        if failed {
            last_read = None;
            let delay = delays.next().unwrap_or(interval);
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        } else {
            last_read = Some(workers);
            delays = reconnect_delays();
        }
    }
    queues.close().await;
}
