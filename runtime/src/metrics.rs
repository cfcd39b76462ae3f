//! A worker's Prometheus metrics: what it counts on the per-message path, and the
//! `GET /metrics` endpoint that serves them (`metrics.listen`).
//!
//! Names follow the OpenTelemetry messaging conventions where they have one
//! (`messaging_process_duration_seconds`, a histogram with the conventions' buckets) and
//! are `warren_*` otherwise; every series carries `worker`. Label values are the
//! worker's own vocabulary (its manifest's types, the runtime's reasons, its handler's
//! fault codes), never text from a message: a sender cannot make a series per message.
//!
//! Without an endpoint no recorder is installed and every call here does nothing.
//!
//! The endpoint is a small HTTP/1.1 responder on a tokio listener rather than an HTTP
//! server crate: it answers one GET, closes the connection, and needs `SO_REUSEADDR`
//! (which a tokio listener sets), so a worker restarted by `warren up` gets its port
//! back at once instead of failing while the last scrape's connection waits out
//! TIME_WAIT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::handler::Manifest;

/// The time from a delivery's arrival to its ack, by `message_type` and `outcome`.
pub const PROCESS_DURATION: &str = "messaging_process_duration_seconds";
/// Deliveries taken from the work queue, by `message_type`.
pub const CONSUMED: &str = "warren_messages_consumed_total";
/// Messages published and confirmed: outputs, faults and failure announcements, by
/// `message_type`.
pub const PUBLISHED: &str = "warren_messages_published_total";
/// Deliveries acked.
pub const ACKED: &str = "warren_messages_acked_total";
/// Deliveries sent to a delay queue to be tried again, by `message_type`.
pub const RETRIED: &str = "warren_messages_retried_total";
/// Deliveries dead-lettered, by `reason`.
pub const DEAD_LETTERED: &str = "warren_messages_dead_lettered_total";
/// Faults sent to originators, by `code`.
pub const FAULTS: &str = "warren_faults_total";
/// Sessions lost and started again.
pub const RECONNECTS: &str = "warren_reconnects_total";
/// Deliveries being worked on.
pub const IN_FLIGHT: &str = "warren_messages_in_flight";
/// Always 1, with the runtime's `version`.
pub const BUILD_INFO: &str = "warren_build_info";

/// Every metric name a worker exports (the dashboard's test checks its queries
/// against these).
pub const NAMES: [&str; 10] = [
    PROCESS_DURATION,
    CONSUMED,
    PUBLISHED,
    ACKED,
    RETRIED,
    DEAD_LETTERED,
    FAULTS,
    RECONNECTS,
    IN_FLIGHT,
    BUILD_INFO,
];

/// The histogram's buckets, in seconds: those the OpenTelemetry messaging conventions
/// advise for `messaging.process.duration`.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// How often the recorder folds recorded durations into the histogram's buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Scrapes answered at once; more wait for the listener's backlog.
const CONCURRENT_SCRAPES: usize = 4;
/// The largest request head read before answering 400.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a scraper may take to send its request and read the answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// The histogram's `outcome` of a delivery handled and acked.
pub const OUTCOME_OK: &str = "ok";
/// The histogram's `outcome` of a delivery the handler refused for a reason of the
/// domain (a declined card): faulted, not dead-lettered, and not an error.
pub const OUTCOME_REFUSED: &str = "refused";
/// The histogram's `outcome` of a delivery sent to a delay queue.
pub const OUTCOME_RETRY: &str = "retry";
/// The histogram's `outcome` of a delivery dead-lettered, or faulted for anything but a
/// refusal.
pub const OUTCOME_ERROR: &str = "error";

/// How a delivery ended, the histogram's `outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Handled: its outputs published, then acked.
    Ok,
    /// Refused for a reason of the domain: faulted, not dead-lettered.
    Refused,
    /// Sent to a delay queue to be tried again.
    Retry,
    /// Dead-lettered, or faulted for anything but a refusal.
    Error,
}

impl Outcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Ok => OUTCOME_OK,
            Outcome::Refused => OUTCOME_REFUSED,
            Outcome::Retry => OUTCOME_RETRY,
            Outcome::Error => OUTCOME_ERROR,
        }
    }
}

/// Installs the recorder and serves `/metrics` on `address`, on the current tokio
/// runtime. Metrics are never worth a worker: a port that cannot be bound is logged
/// and the worker runs without them.
pub async fn serve(address: SocketAddr, worker: &'static str) {
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%address, %error, "cannot serve metrics; running without them");
            return;
        }
    };
    let builder = PrometheusBuilder::new()
        .add_global_label("worker", worker)
        .set_buckets_for_metric(
            Matcher::Full(PROCESS_DURATION.to_owned()),
            &DURATION_BUCKETS,
        );
    let handle = match builder.and_then(PrometheusBuilder::install_recorder) {
        Ok(handle) => handle,
        Err(error) => {
            tracing::warn!(%error, "cannot record metrics; running without them");
            return;
        }
    };
    describe();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            ticks.tick().await;
            upkeep.run_upkeep();
        }
    });
    let bound = listener.local_addr().unwrap_or(address);
    tracing::info!(address = %bound, "serving metrics at /metrics");
    tokio::spawn(accept_scrapes(listener, handle));
}

fn describe() {
    metrics::describe_histogram!(
        PROCESS_DURATION,
        metrics::Unit::Seconds,
        "Time from a delivery's arrival to its ack."
    );
    metrics::describe_counter!(CONSUMED, "Deliveries taken from the work queue.");
    metrics::describe_counter!(PUBLISHED, "Messages published and confirmed.");
    metrics::describe_counter!(ACKED, "Deliveries acked.");
    metrics::describe_counter!(RETRIED, "Deliveries sent to a delay queue to be retried.");
    metrics::describe_counter!(DEAD_LETTERED, "Deliveries dead-lettered.");
    metrics::describe_counter!(FAULTS, "Faults sent to originators.");
    metrics::describe_counter!(RECONNECTS, "Broker sessions lost and started again.");
    metrics::describe_gauge!(IN_FLIGHT, "Deliveries being worked on.");
    metrics::describe_gauge!(BUILD_INFO, "Always 1, labelled with the runtime's version.");
}

async fn accept_scrapes(listener: TcpListener, handle: PrometheusHandle) {
    let permits = Arc::new(Semaphore::new(CONCURRENT_SCRAPES));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::debug!(%error, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(SCRAPE_TIMEOUT, answer(stream, &handle)).await;
            drop(permit);
        });
    }
}

/// Reads one request head and answers it: the metrics for `GET /metrics`, 404 for any
/// other path, 405 for any other method, 400 for what is not HTTP; then closes.
async fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0_u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        if head.len() >= MAX_REQUEST_HEAD {
            break;
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let (status, body) = match request_line(&head) {
        Some(("GET" | "HEAD", "/metrics")) => ("200 OK", handle.render()),
        Some(("GET" | "HEAD", _)) => ("404 Not Found", "see /metrics\n".to_owned()),
        Some(_) => ("405 Method Not Allowed", String::new()),
        None => ("400 Bad Request", String::new()),
    };
    let is_head = head.starts_with(b"HEAD ");
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    if !is_head {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

/// The method and path (without its query) of an HTTP request head.
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line_end = head.windows(2).position(|window| window == b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return None;
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    Some((method, path))
}

/// Creates the series a worker always has, at zero, before its first message: so a
/// scrape finds the histogram of each type it consumes, and a rate or an increase sees
/// the first message too. Does nothing without an endpoint.
pub(crate) fn register(manifest: &Manifest) {
    for &message_type in manifest.commands.iter().chain(manifest.events) {
        for outcome in [
            Outcome::Ok,
            Outcome::Refused,
            Outcome::Retry,
            Outcome::Error,
        ] {
            let _ = metrics::histogram!(
                PROCESS_DURATION,
                "message_type" => message_type,
                "outcome" => outcome.label()
            );
        }
        metrics::counter!(CONSUMED, "message_type" => message_type).absolute(0);
        metrics::counter!(RETRIED, "message_type" => message_type).absolute(0);
    }
    for &message_type in manifest.produces {
        metrics::counter!(PUBLISHED, "message_type" => message_type).absolute(0);
    }
    metrics::counter!(ACKED).absolute(0);
    metrics::counter!(RECONNECTS).absolute(0);
    metrics::gauge!(IN_FLIGHT).set(0.0);
}

/// The manifest's own name for `message_type`, or `unknown`: a label value a sender
/// cannot choose.
pub(crate) fn consumed_type(manifest: &Manifest, message_type: &str) -> &'static str {
    manifest
        .commands
        .iter()
        .chain(manifest.events)
        .find(|known| **known == message_type)
        .copied()
        .unwrap_or("unknown")
}

/// Like [`consumed_type`] for a type the worker publishes (`other` when its manifest
/// does not list it).
pub(crate) fn produced_type(manifest: &Manifest, message_type: &str) -> &'static str {
    manifest
        .produces
        .iter()
        .find(|known| **known == message_type)
        .copied()
        .unwrap_or("other")
}

/// One delivery being worked on: counted in flight from [`InFlight::start`] until
/// dropped, and its duration recorded by [`InFlight::finish`].
pub(crate) struct InFlight {
    started: Instant,
    message_type: &'static str,
}

impl InFlight {
    pub(crate) fn start(message_type: &'static str) -> InFlight {
        metrics::counter!(CONSUMED, "message_type" => message_type).increment(1);
        metrics::gauge!(IN_FLIGHT).increment(1.0);
        InFlight {
            started: Instant::now(),
            message_type,
        }
    }

    /// How long since the delivery arrived.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub(crate) fn finish(self, outcome: Outcome) {
        metrics::histogram!(
            PROCESS_DURATION,
            "message_type" => self.message_type,
            "outcome" => outcome.label()
        )
        .record(self.started.elapsed());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(IN_FLIGHT).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_read_strictly() {
        assert_eq!(
            request_line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            request_line(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(request_line(b"GET /metrics\r\n\r\n"), None);
        assert_eq!(request_line(b"GET /metrics HTTP/1.1"), None, "no line end");
        assert_eq!(request_line(b"\xff\xfe HTTP/1.1\r\n"), None);
        assert_eq!(request_line(b"GET / metrics HTTP/1.1\r\n"), None);
    }

    #[test]
    fn label_values_come_from_the_manifest() {
        let manifest = Manifest {
            name: "w",
            commands: &["dev.warren.a.v1"],
            events: &["dev.warren.b.v1"],
            produces: &["dev.warren.c.v1"],
        };
        assert_eq!(
            consumed_type(&manifest, "dev.warren.b.v1"),
            "dev.warren.b.v1"
        );
        assert_eq!(consumed_type(&manifest, "dev.warren.c.v1"), "unknown");
        assert_eq!(
            produced_type(&manifest, "dev.warren.c.v1"),
            "dev.warren.c.v1"
        );
        assert_eq!(produced_type(&manifest, "attacker.chosen"), "other");
    }
}
