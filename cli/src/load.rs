//! `warren load`: send many requests in a chosen shape and measure what comes back.
//!
//! Every request is a real request envelope (its own id, which is also its correlation
//! id, the originator's reply queue, a deadline). The latency of a request runs from its
//! publish (or, in an open loop, from when it was due) to its outcome, and goes into an
//! HDR histogram; outcomes are counted as results, faults and timeouts, and per-second
//! buckets feed the `--plot` picture.
//!
//! Everything runs in one task, a `select!` over: the reply queue's deliveries, the
//! publishes in flight (a bounded `FuturesUnordered`, each a publish and its confirm),
//! the shape's pacing, and a housekeeping tick (timeouts, acks, progress). Nothing on the
//! per-message path takes a lock or crosses a channel; an outcome is read from its AMQP
//! properties alone (`correlation_id`, `type`, which warren's publishers mirror from the
//! envelope), and outcomes are acked in batches (`multiple`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::future::Future;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiff::{SignedDuration, Timestamp};
use lapin::BasicProperties;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::time::Instant;
use uuid::Uuid;
use uuid::timestamp::context::ContextV7;
use warren_messages::catalogue;
use warren_messages::{
    Attributes, Envelope, Fault, Limits, Payload, Progress, TraceParent, decode_structured,
};
use warren_runtime::{Delivered, Originator, Publisher, RuntimeError, Settings};

use crate::send::{exchange_for, parse_duration, reconnect, source};

/// The reply queue's prefetch: outcomes the broker may push before they are acked.
const REPLY_PREFETCH: u16 = 2000;
/// Outcomes are acked (`multiple`) once this many are unacked, or at the next tick.
const ACK_BATCH: u32 = 256;
/// The most publishes whose confirm has not arrived: what is published again after a
/// lost connection.
const PUBLISH_WINDOW: usize = 2000;
/// The most requests made in one turn of the loop, so outcomes are read in between.
const PUBLISH_BATCH: usize = 256;
/// How often timeouts are counted, acks flushed and the progress bar drawn.
const TICK: Duration = Duration::from_millis(50);
/// The latest a request can be due, from the start: a hundred years.
const LATEST_DUE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// `{"pad":""}`: the size of the smallest `--payload-bytes` data.
const PAD_OVERHEAD: usize = 10;
/// The largest `--payload-bytes`: a worker refuses a larger body (`limits.max_body_bytes`,
/// 1 MiB by default), so more could only measure faults.
const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// The highest latency the histograms hold, in microseconds (an hour); longer ones are
/// recorded as this.
const HIGHEST_LATENCY_US: u64 = 3_600_000_000;
/// A last, partial second narrower than this is left out of the plot (not of the JSON):
/// it holds too few events to say anything.
const MIN_PLOTTED_WIDTH_S: f64 = 0.25;

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
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Draw throughput and latency percentiles per second into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
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
fn padded_data(bytes: usize) -> Result<Box<RawValue>, String> {
    let pad = bytes
        .checked_sub(PAD_OVERHEAD)
        .ok_or_else(|| format!("padded data is at least {PAD_OVERHEAD} bytes, not {bytes}"))?;
    let mut text = String::with_capacity(bytes);
    text.push_str(r#"{"pad":""#);
    text.extend(std::iter::repeat_n('x', pad));
    text.push_str(r#""}"#);
    RawValue::from_string(text).map_err(|error| error.to_string())
}

/// How requests are sent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Shape {
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
    fn of(args: &LoadArgs) -> anyhow::Result<Shape> {
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
    fn intended_offset(&self, index: u64) -> Option<Duration> {
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

    fn describe(&self) -> String {
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
fn latency_start(due: Option<Instant>, published: Instant) -> Instant {
    due.map_or(published, |due| due.min(published))
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_LATENCY_US, 3).expect("constant bounds are valid")
}

fn quantile_ms(histogram: &Histogram<u64>, quantile: f64) -> Option<f64> {
    (!histogram.is_empty()).then(|| ms(histogram.value_at_quantile(quantile)))
}

/// `count` events in `seconds`, as a rate; 0 over no time.
fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// `value` rounded to `places` decimals, so the JSON reads well.
fn round(value: f64, places: i32) -> f64 {
    let scale = 10_f64.powi(places);
    (value * scale).round() / scale
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// One second of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Bucket {
    /// Seconds from the start to the bucket's start.
    second: u64,
    /// How much of the second the run covered: 1 but for the last.
    width_s: f64,
    /// Requests made in it.
    sent: u64,
    /// Outcomes (results and faults) received in it.
    completed: u64,
    /// Requests that timed out in it.
    timeouts: u64,
    /// `completed / width_s`.
    completed_per_s: f64,
    /// Percentiles of the latencies of the outcomes received in it.
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
}

impl Bucket {
    /// `count` events in this bucket, as a rate.
    fn per_second(&self, count: u64) -> Option<f64> {
        (self.width_s > 0.0).then(|| count as f64 / self.width_s)
    }
}

/// Per-second buckets, filled as events happen (in time order) and closed as time moves
/// on; one histogram is reused, so a second costs no allocation but its bucket.
struct Timeline {
    open_second: u64,
    sent: u64,
    completed: u64,
    timeouts: u64,
    latencies: Histogram<u64>,
    closed: Vec<Bucket>,
}

impl Timeline {
    fn new() -> Timeline {
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
    fn advance(&mut self, at: Duration) {
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

    fn record_sent(&mut self, at: Duration) {
        self.advance(at);
        self.sent += 1;
    }

    fn record_outcome(&mut self, at: Duration, latency: Duration) {
        self.advance(at);
        self.completed += 1;
        self.latencies.saturating_record(micros(latency));
    }

    fn record_timeout(&mut self, at: Duration) {
        self.advance(at);
        self.timeouts += 1;
    }

    /// Every bucket, the last one cut at `end`.
    fn finish(mut self, end: Duration) -> Vec<Bucket> {
        self.advance(end);
        let width_s = end.as_secs_f64() - self.open_second as f64;
        if width_s > 0.0 || self.sent + self.completed + self.timeouts > 0 {
            self.close(width_s.max(0.0));
        }
        self.closed
    }
}

/// What an outcome delivery is, read from as little of it as possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Classified {
    /// A result or a fault for the request with this id.
    Outcome { id: u128, fault: bool },
    /// A progress report: not an outcome.
    Progress,
    /// Neither readable nor one of ours.
    Unreadable,
}

/// Classifies an outcome by its AMQP `correlation_id` and `type` (warren's publishers
/// mirror them from the envelope), decoding the body only when they are missing.
fn classify(properties: &BasicProperties, body: &[u8]) -> Classified {
    if let (Some(correlation_id), Some(message_type)) =
        (properties.correlation_id(), properties.kind())
    {
        return classify_attributes(correlation_id.as_str(), message_type.as_str());
    }
    match decode_structured(body, &Limits::default()) {
        Ok(envelope) => classify_attributes(
            envelope.attributes.correlation_id(),
            &envelope.attributes.message_type,
        ),
        Err(_) => Classified::Unreadable,
    }
}

fn classify_attributes(correlation_id: &str, message_type: &str) -> Classified {
    if message_type == Progress::TYPE {
        return Classified::Progress;
    }
    match Uuid::try_parse(correlation_id) {
        Ok(id) => Classified::Outcome {
            id: id.as_u128(),
            fault: message_type == Fault::TYPE,
        },
        Err(_) => Classified::Unreadable,
    }
}

/// Makes a run's request envelopes: one type, data and reply queue; each its own id,
/// time, trace and deadline.
struct Requests<'a> {
    /// Its own id clock, so making an id takes no lock (`Uuid::now_v7` shares one).
    ids: ContextV7,
    template: Attributes,
    data: &'a RawValue,
    exchange: &'static str,
    timeout: SignedDuration,
}

impl<'a> Requests<'a> {
    fn new(message_type: &str, data: &'a RawValue, reply_queue: &str, timeout: Duration) -> Self {
        let schema = catalogue::lookup(message_type).map(|entry| entry.schema);
        let mut template = Attributes::request_of_type(message_type, schema, &source());
        // Set per request; empty here so cloning the template copies nothing of them.
        template.id = String::new();
        template.correlationid = None;
        template.traceparent = None;
        template.replyto = Some(reply_queue.to_owned());
        Requests {
            ids: ContextV7::new(),
            template,
            data,
            exchange: exchange_for(message_type),
            timeout: SignedDuration::try_from(timeout).unwrap_or(SignedDuration::MAX),
        }
    }

    /// A new request id: a UUID v7, so ids sort by time.
    fn new_id(&self) -> Uuid {
        Uuid::new_v7(uuid::Timestamp::now(&self.ids))
    }

    /// A new request's deadline, when made at `now`.
    fn deadline(&self, now: Timestamp) -> Option<Timestamp> {
        now.checked_add(self.timeout).ok()
    }

    /// The envelope of request `id` made at `now`.
    fn envelope(
        &self,
        id: Uuid,
        deadline: Option<Timestamp>,
        now: Timestamp,
    ) -> Envelope<&'a RawValue> {
        let mut buffer = Uuid::encode_buffer();
        let id_text: &str = id.hyphenated().encode_lower(&mut buffer);
        let mut attributes = self.template.clone();
        attributes.id = id_text.to_owned();
        attributes.correlationid = Some(id_text.to_owned());
        attributes.time = Some(now);
        attributes.traceparent = Some(TraceParent::new_root().to_string());
        attributes.deadline = deadline;
        Envelope {
            attributes,
            data: self.data,
        }
    }
}

/// What became of one publish.
struct Published {
    id: Uuid,
    deadline: Option<Timestamp>,
    result: Result<Delivered, RuntimeError>,
}

/// Publishes `envelope` and waits for its confirm.
async fn publish_request(
    publisher: Publisher,
    exchange: &'static str,
    envelope: Envelope<&RawValue>,
    id: Uuid,
) -> Published {
    let result = match publisher
        .publish(exchange, &envelope.attributes.message_type, &envelope)
        .await
    {
        Ok(confirm) => confirm.wait().await,
        Err(error) => Err(error),
    };
    Published {
        id,
        deadline: envelope.attributes.deadline,
        result,
    }
}

/// A request waiting for its outcome.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// Where its latency starts ([`latency_start`]).
    latency_from: Instant,
    /// When it was first published; it times out `--timeout` after.
    published: Instant,
}

/// The run's counters.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    results: u64,
    faults: u64,
    timeouts: u64,
    duplicates: u64,
    late: u64,
    unreadable: u64,
    progress: u64,
    republished: u64,
    reconnects: u64,
}

/// The state of one run.
struct Run {
    shape: Shape,
    messages: u64,
    timeout: Duration,
    started: Instant,
    made: u64,
    in_flight: HashMap<u128, Sent>,
    /// Ids in publish order, for timeouts: popped once answered or timed out.
    publish_order: VecDeque<u128>,
    /// Ids that timed out, so an outcome arriving later counts as late.
    timed_out: HashSet<u128>,
    latency: Histogram<u64>,
    /// For open loops, latency from the actual publish, to show what the correction
    /// added.
    uncorrected: Option<Histogram<u64>>,
    timeline: Timeline,
    counts: Counts,
    first_outcome: Option<Instant>,
    last_outcome: Option<Instant>,
    all_confirmed: Option<Instant>,
    unacked: Option<lapin::Acker>,
    unacked_count: u32,
    to_publish_again: Vec<(Uuid, Option<Timestamp>)>,
    unroutable: bool,
}

impl Run {
    fn new(shape: Shape, messages: u64, timeout: Duration, started: Instant) -> Run {
        let open_loop = shape.intended_offset(0).is_some();
        let capacity = match shape {
            Shape::Inflight { inflight } => u64::from(inflight),
            _ => messages,
        };
        Run {
            shape,
            messages,
            timeout,
            started,
            made: 0,
            in_flight: HashMap::with_capacity(usize::try_from(capacity.min(1 << 16)).unwrap_or(0)),
            publish_order: VecDeque::new(),
            timed_out: HashSet::new(),
            latency: new_histogram(),
            uncorrected: open_loop.then(new_histogram),
            timeline: Timeline::new(),
            counts: Counts::default(),
            first_outcome: None,
            last_outcome: None,
            all_confirmed: None,
            unacked: None,
            unacked_count: 0,
            to_publish_again: Vec::new(),
            unroutable: false,
        }
    }

    fn due_at(&self, index: u64) -> Option<Instant> {
        self.shape
            .intended_offset(index)
            .map(|offset| self.started + offset)
    }

    /// Whether the shape lets a request go out now or later, with `room` more publishes
    /// allowed in flight.
    fn wants_to_publish(&self, room: usize) -> bool {
        self.made < self.messages
            && room > 0
            && match self.shape {
                Shape::Inflight { inflight } => self.in_flight.len() < inflight as usize,
                _ => true,
            }
    }

    /// When the next request is due: `None` means now.
    fn next_due(&self) -> Option<Instant> {
        self.due_at(self.made)
    }

    /// How many requests to make now, with `room` more publishes allowed in flight.
    fn due_now(&self, now: Instant, room: usize) -> usize {
        let left = usize::try_from(self.messages - self.made).unwrap_or(usize::MAX);
        let limit = left.min(room).min(PUBLISH_BATCH);
        match self.shape {
            Shape::Inflight { inflight } => {
                limit.min((inflight as usize).saturating_sub(self.in_flight.len()))
            }
            Shape::Prefill => limit,
            Shape::Rate { .. } | Shape::Burst { .. } => (0..limit)
                .take_while(|&k| {
                    self.due_at(self.made + k as u64)
                        .is_some_and(|due| due <= now)
                })
                .count(),
        }
    }

    /// Records request `id`, made and handed to the publisher at `now`.
    fn record_made(&mut self, id: u128, now: Instant) {
        let sent = Sent {
            latency_from: latency_start(self.due_at(self.made), now),
            published: now,
        };
        self.made += 1;
        self.in_flight.insert(id, sent);
        self.publish_order.push_back(id);
        self.timeline.record_sent(now - self.started);
    }

    /// Counts an outcome received at `now`.
    fn record_outcome(&mut self, id: u128, fault: bool, now: Instant) {
        let Some(sent) = self.in_flight.remove(&id) else {
            if self.timed_out.remove(&id) {
                self.counts.late += 1;
            } else {
                self.counts.duplicates += 1;
            }
            return;
        };
        if fault {
            self.counts.faults += 1;
        } else {
            self.counts.results += 1;
        }
        let latency = now - sent.latency_from;
        self.latency.saturating_record(micros(latency));
        if let Some(uncorrected) = &mut self.uncorrected {
            uncorrected.saturating_record(micros(now - sent.published));
        }
        self.timeline.record_outcome(now - self.started, latency);
        self.first_outcome.get_or_insert(now);
        self.last_outcome = Some(now);
    }

    fn record_delivery(&mut self, delivery: lapin::message::Delivery, now: Instant) {
        match classify(&delivery.properties, &delivery.data) {
            Classified::Outcome { id, fault } => self.record_outcome(id, fault, now),
            Classified::Progress => self.counts.progress += 1,
            Classified::Unreadable => self.counts.unreadable += 1,
        }
        self.unacked = Some(delivery.acker);
        self.unacked_count += 1;
    }

    /// Counts the requests whose time ran out by `now`.
    fn expire(&mut self, now: Instant) {
        while let Some(&id) = self.publish_order.front() {
            match self.in_flight.get(&id) {
                Some(sent) if now < sent.published + self.timeout => break,
                Some(_) => {
                    self.in_flight.remove(&id);
                    self.timed_out.insert(id);
                    self.counts.timeouts += 1;
                    self.timeline.record_timeout(now - self.started);
                }
                None => {}
            }
            self.publish_order.pop_front();
        }
    }

    /// Acks every outcome delivered so far, bounded by `limit`.
    async fn flush_acks(&mut self, limit: Duration) -> Result<(), RuntimeError> {
        self.unacked_count = 0;
        match self.unacked.take() {
            Some(acker) => warren_runtime::ack_within(&acker, true, limit).await,
            None => Ok(()),
        }
    }

    /// Forgets the acks of a dead channel: its unacked outcomes come again, and count as
    /// duplicates.
    fn forget_acks(&mut self) {
        self.unacked = None;
        self.unacked_count = 0;
    }

    /// Records what became of a publish; a failed one is published again after the
    /// reconnect its error calls for.
    fn record_published(
        &mut self,
        published: Published,
        now: Instant,
        publishing: usize,
    ) -> Option<RuntimeError> {
        if self.made == self.messages && publishing == 0 {
            self.all_confirmed.get_or_insert(now);
        }
        match published.result {
            Ok(Delivered::Routed) => None,
            Ok(Delivered::Returned) => {
                self.unroutable = true;
                None
            }
            Err(error) => {
                self.to_publish_again
                    .push((published.id, published.deadline));
                Some(error)
            }
        }
    }

    fn is_done(&self, publishing: usize) -> bool {
        self.made == self.messages && self.in_flight.is_empty() && publishing == 0
    }

    fn finished(&self) -> u64 {
        self.counts.results + self.counts.faults + self.counts.timeouts
    }
}

/// Waits until `at`, or not at all.
async fn wait_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// What one turn of the loop ended with.
enum Step {
    Continue,
    Failed(RuntimeError),
}

/// `warren load`: runs the load, prints the summary (and draws the plot), and exits 0
/// when every request got a result, 1 when any got a fault (or could not be routed), 3
/// when any timed out and none faulted.
pub async fn run(settings: &Settings, args: LoadArgs) -> anyhow::Result<ExitCode> {
    let shape = Shape::of(&args)?;
    let data = match (&args.data, args.payload_bytes) {
        (Some(argument), _) => crate::input::read_data(argument)?,
        (None, Some(bytes)) => padded_data(bytes).map_err(anyhow::Error::msg)?,
        (None, None) => RawValue::from_string("{}".to_owned())?,
    };
    // Opened first, so a plot that cannot be written stops the run before it starts.
    let plot_file = match &args.plot {
        Some(path) => Some(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write the plot to {}", path.display()))?,
        ),
        None => None,
    };
    let mut originator =
        Originator::connect_within(settings, "warren-cli load", REPLY_PREFETCH, args.timeout)
            .await
            .context("cannot connect to the broker")?;
    let requests = Requests::new(
        &args.message_type,
        &data,
        originator.reply_queue(),
        args.timeout,
    );
    let envelope_bytes = requests
        .envelope(
            requests.new_id(),
            requests.deadline(Timestamp::now()),
            Timestamp::now(),
        )
        .to_json_vec()?
        .len();
    let progress = progress_bar(args.messages);

    let started = Instant::now();
    let mut run = Run::new(shape, args.messages, args.timeout, started);
    let mut publisher = originator.publisher();
    let mut publishing = FuturesUnordered::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    while !run.is_done(publishing.len()) && !run.unroutable {
        let room = PUBLISH_WINDOW.saturating_sub(publishing.len());
        let wants_to_publish = run.wants_to_publish(room);
        let next_due = run.next_due();
        let step = tokio::select! {
            delivery = originator.next_delivery() => match delivery {
                Ok(delivery) => {
                    run.record_delivery(delivery, Instant::now());
                    if run.unacked_count >= ACK_BATCH {
                        run.flush_acks(settings.amqp.confirm_timeout()).await.map_or_else(Step::Failed, |()| Step::Continue)
                    } else {
                        Step::Continue
                    }
                }
                Err(error) => Step::Failed(error),
            },
            Some(published) = publishing.next(), if !publishing.is_empty() => {
                let published: Published = published;
                let left = publishing.len();
                match run.record_published(published, Instant::now(), left) {
                    Some(error) => Step::Failed(error),
                    None => Step::Continue,
                }
            }
            () = wait_until(next_due), if wants_to_publish => {
                let now = Instant::now();
                let timestamp = Timestamp::now();
                let deadline = requests.deadline(timestamp);
                for _ in 0..run.due_now(now, room) {
                    let id = requests.new_id();
                    let envelope = requests.envelope(id, deadline, timestamp);
                    run.record_made(id.as_u128(), now);
                    let publisher = publisher.clone();
                    publishing.push(publish_request(publisher, requests.exchange, envelope, id));
                }
                Step::Continue
            }
            _ = tick.tick() => {
                let now = Instant::now();
                run.expire(now);
                run.timeline.advance(now - started);
                if !progress.is_hidden() {
                    progress.set_position(run.finished());
                    progress.set_message(format!(
                        "{} in flight, {} faults, {} timeouts",
                        run.in_flight.len(),
                        run.counts.faults,
                        run.counts.timeouts
                    ));
                }
                if run.unacked_count > 0 {
                    run.flush_acks(settings.amqp.confirm_timeout()).await.map_or_else(Step::Failed, |()| Step::Continue)
                } else {
                    Step::Continue
                }
            }
        };
        if let Step::Failed(error) = step {
            let give_up_at = Instant::now() + args.timeout;
            recover(
                &error,
                &mut originator,
                settings,
                &mut run,
                &mut publishing,
                give_up_at,
            )
            .await?;
            publisher = originator.publisher();
            let timestamp = Timestamp::now();
            for (id, deadline) in std::mem::take(&mut run.to_publish_again) {
                // Only the ones still waiting: an outcome may have come without a confirm.
                if run.in_flight.contains_key(&id.as_u128()) {
                    run.counts.republished += 1;
                    let envelope = requests.envelope(id, deadline, timestamp);
                    publishing.push(publish_request(
                        publisher.clone(),
                        requests.exchange,
                        envelope,
                        id,
                    ));
                }
            }
        }
    }
    let ended = Instant::now();
    progress.finish_and_clear();
    if let Err(error) = run.flush_acks(settings.amqp.confirm_timeout()).await {
        eprintln!("warren: could not ack the last outcomes ({error})");
    }
    if let Err(error) = originator.close().await {
        eprintln!("warren: could not delete the reply queue ({error}); it expires by itself");
    }
    if run.unroutable {
        eprintln!(
            "warren: no worker consumes {}: no queue is bound for it (is the type right, and \
             has its worker ever started?)",
            args.message_type
        );
        return Ok(ExitCode::FAILURE);
    }

    let summary = Summary::of(run, &args, envelope_bytes, data.get().len(), ended);
    if args.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &summary)?;
        out.write_all(b"\n")?;
        out.flush()?;
    } else {
        print!("{}", summary.table());
    }
    if let (Some(mut file), Some(path)) = (plot_file, &args.plot) {
        let svg = render_plot(&summary).context("cannot draw the plot")?;
        file.write_all(svg.as_bytes())
            .with_context(|| format!("cannot write the plot to {}", path.display()))?;
    }
    if summary.outcomes.timeout > 0 {
        eprintln!(
            "warren: {} of {} requests got no outcome within {:?}",
            summary.outcomes.timeout, summary.messages, args.timeout
        );
    }
    Ok(if summary.outcomes.fault > 0 {
        ExitCode::FAILURE
    } else if summary.outcomes.timeout > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// After an error: reconnects, and collects the publishes the broker did not confirm.
async fn recover<F: Future<Output = Published>>(
    error: &RuntimeError,
    originator: &mut Originator,
    settings: &Settings,
    run: &mut Run,
    publishing: &mut FuturesUnordered<F>,
    give_up_at: Instant,
) -> anyhow::Result<()> {
    eprintln!("warren: lost the broker ({error}); reconnecting");
    run.forget_acks();
    reconnect(originator, settings, give_up_at).await?;
    run.counts.reconnects += 1;
    // The stale connection is closed, so every publish still waiting on it ends now.
    while let Some(published) = publishing.next().await {
        // Their errors are the one being recovered from.
        let _ = run.record_published(published, Instant::now(), publishing.len());
    }
    Ok(())
}

fn progress_bar(messages: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(messages), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} {per_sec} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Latency percentiles in milliseconds; `None` when no outcome came.
#[derive(Debug, Serialize)]
struct Latency {
    count: u64,
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    max: Option<f64>,
    min: Option<f64>,
    mean: Option<f64>,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Latency {
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
struct Outcomes {
    result: u64,
    fault: u64,
    timeout: u64,
}

/// What a prefill run adds: how fast the requests were queued and drained.
#[derive(Debug, Serialize)]
struct Prefill {
    /// From the start to the last confirm.
    publish_s: f64,
    publish_rate_per_s: f64,
    /// From the first outcome to the last.
    drain_s: f64,
    drain_rate_per_s: f64,
}

/// The summary: the table's content, and the `--json` object.
#[derive(Debug, Serialize)]
struct Summary {
    messages: u64,
    message_type: String,
    shape: Shape,
    data_bytes: usize,
    envelope_bytes: usize,
    /// From the start to the end of the run (the last outcome or timeout).
    elapsed_s: f64,
    /// Outcomes per second, from the start to the last outcome.
    throughput_per_s: f64,
    outcomes: Outcomes,
    duplicates: u64,
    late: u64,
    unreadable: u64,
    progress: u64,
    republished: u64,
    reconnects: u64,
    latency_ms: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_uncorrected_ms: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefill: Option<Prefill>,
    per_second: Vec<Bucket>,
}

impl Summary {
    fn of(
        run: Run,
        args: &LoadArgs,
        envelope_bytes: usize,
        data_bytes: usize,
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
            latency_ms: Latency::of(&run.latency),
            latency_uncorrected_ms: run.uncorrected.as_ref().map(Latency::of),
            prefill,
            per_second: run.timeline.finish(ended - started),
        }
    }

    /// One line saying what ran.
    fn headline(&self) -> String {
        format!(
            "{} × {}, {}",
            self.messages,
            self.message_type,
            self.shape.describe()
        )
    }

    /// The readable summary.
    fn table(&self) -> String {
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

/// The SVG picture: requests and outcomes per second above, latency percentiles per
/// second below.
fn render_plot(summary: &Summary) -> anyhow::Result<String> {
    use plotters::prelude::*;

    let dark_green = RGBColor(0, 140, 60);
    let grey = RGBColor(150, 150, 150);
    let all = &summary.per_second;
    let buckets = match all.split_last() {
        Some((last, rest)) if !rest.is_empty() && last.width_s < MIN_PLOTTED_WIDTH_S => rest,
        _ => all.as_slice(),
    };
    let end_s = all
        .last()
        .map_or(1.0, |last| last.second as f64 + last.width_s)
        .max(1.0);
    let series = |value: fn(&Bucket) -> Option<f64>| -> Vec<(f64, f64)> {
        buckets
            .iter()
            .filter_map(|bucket| {
                let middle = bucket.second as f64 + bucket.width_s / 2.0;
                value(bucket).map(|value| (middle, value))
            })
            .collect()
    };
    let completed = series(|bucket| (bucket.width_s > 0.0).then_some(bucket.completed_per_s));
    let sent = series(|bucket| bucket.per_second(bucket.sent));
    let timeouts = series(|bucket| bucket.per_second(bucket.timeouts));
    let p50 = series(|bucket| bucket.p50_ms);
    let p99 = series(|bucket| bucket.p99_ms);
    let top = |lines: &[&[(f64, f64)]]| {
        lines
            .iter()
            .flat_map(|line| line.iter().map(|&(_, y)| y))
            .fold(0.0_f64, f64::max)
            .max(1.0)
            * 1.1
    };
    let throughput_top = top(&[&completed, &sent, &timeouts]);
    let latency_top = top(&[&p50, &p99]);
    let title = format!(
        "warren load: {} ({:.0} outcomes/s, p99 {} ms)",
        summary.headline(),
        summary.throughput_per_s,
        summary
            .latency_ms
            .p99
            .map_or_else(|| "-".to_owned(), |p99| format!("{p99:.1}"))
    );
    let legend = |color: RGBColor| {
        move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
    };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 720)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(&title, ("sans-serif", 18))?;
        let (upper, lower) = root.split_vertically(340);

        let mut chart = ChartBuilder::on(&upper)
            .caption("requests and outcomes per second", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..end_s, 0.0..throughput_top)?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_desc("per second")
            .y_label_formatter(&|value| format!("{value:.0}"))
            .light_line_style(WHITE)
            .draw()?;
        chart
            .draw_series(LineSeries::new(sent, grey.stroke_width(2)).point_size(2))?
            .label("sent")
            .legend(legend(grey));
        chart
            .draw_series(LineSeries::new(completed, BLUE.stroke_width(2)).point_size(3))?
            .label("outcomes")
            .legend(legend(BLUE));
        if summary.outcomes.timeout > 0 {
            chart
                .draw_series(LineSeries::new(timeouts, RED.stroke_width(2)).point_size(3))?
                .label("timeouts")
                .legend(legend(RED));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()?;

        let mut chart = ChartBuilder::on(&lower)
            .caption("latency, publish to outcome", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..end_s, 0.0..latency_top)?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_desc("milliseconds")
            .light_line_style(WHITE)
            .draw()?;
        chart
            .draw_series(LineSeries::new(p99, RED.stroke_width(2)).point_size(3))?
            .label("p99")
            .legend(legend(RED));
        chart
            .draw_series(LineSeries::new(p50, dark_green.stroke_width(2)).point_size(3))?
            .label("p50")
            .legend(legend(dark_green));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use clap::error::ErrorKind;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    fn parse(args: &[&str]) -> Result<LoadArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("load").chain(args.iter().copied())).map(|cli| cli.load)
    }

    fn shape(args: &[&str]) -> Shape {
        Shape::of(&parse(args).expect("valid flags")).expect("a shape")
    }

    /// `value` is `expected` to within the histograms' precision (3 digits).
    fn assert_close(value: Option<f64>, expected: f64) {
        let value = value.expect("a value");
        assert!(
            (value - expected).abs() <= expected * 0.002,
            "{value} is not {expected}"
        );
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
    fn padded_data_goes_into_the_envelope_as_is() {
        let data = padded_data(256).expect("padded data");
        let requests = Requests::new(
            "dev.warren.echo.v1",
            &data,
            "warren.reply.x",
            Duration::from_secs(30),
        );
        let now = Timestamp::now();
        let id = Uuid::now_v7();
        let envelope = requests.envelope(id, requests.deadline(now), now);
        let body = String::from_utf8(envelope.to_json_vec().expect("serialize")).expect("utf-8");
        assert!(
            body.contains(&format!(r#""data":{}"#, data.get())),
            "{body}"
        );
        let attributes = &envelope.attributes;
        assert_eq!(attributes.id, id.to_string());
        assert_eq!(attributes.correlation_id(), attributes.id);
        assert_eq!(attributes.replyto.as_deref(), Some("warren.reply.x"));
        assert_eq!(
            attributes.deadline,
            now.checked_add(SignedDuration::from_secs(30)).ok()
        );
        assert!(attributes.trace_parent().is_some());
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

    /// A sender at 1000 requests/s stalls for 100 ms (the system held it back), then
    /// sends the 101 requests that came due meanwhile at once; each is answered 1 ms
    /// later. Measured from the publish, every request took 1 ms and the stall vanishes;
    /// measured from when each was due, the stall shows, up to 101 ms.
    #[test]
    fn coordinated_omission_is_corrected_in_open_loops() {
        let started = Instant::now();
        let mut run = Run::new(
            Shape::Rate { per_second: 1000.0 },
            1000,
            Duration::from_secs(30),
            started,
        );
        let stalled_until = started + Duration::from_millis(100);
        let due = run.due_now(stalled_until, PUBLISH_WINDOW);
        assert_eq!(due, 101, "requests 0 to 100 are due after 100 ms");
        for index in 0..due {
            run.record_made(index as u128, stalled_until);
        }
        assert_eq!(run.next_due(), Some(started + Duration::from_millis(101)));
        let answered = stalled_until + Duration::from_millis(1);
        for index in 0..due {
            run.record_outcome(index as u128, false, answered);
        }
        assert_eq!(run.counts.results, 101);
        let corrected = Latency::of(&run.latency);
        let uncorrected = Latency::of(run.uncorrected.as_ref().expect("an open loop"));
        assert_close(uncorrected.max, 1.0);
        assert_close(uncorrected.p50, 1.0);
        assert_close(corrected.max, 101.0);
        assert_close(corrected.p50, 51.0);
        assert_close(corrected.min, 1.0);
    }

    #[test]
    fn closed_loops_keep_the_window_full_and_no_more() {
        let started = Instant::now();
        let mut run = Run::new(
            Shape::Inflight { inflight: 3 },
            10,
            Duration::from_secs(30),
            started,
        );
        assert!(run.wants_to_publish(PUBLISH_WINDOW));
        assert_eq!(run.next_due(), None);
        assert_eq!(run.due_now(started, PUBLISH_WINDOW), 3);
        assert_eq!(
            run.due_now(started, 2),
            2,
            "the confirm window bounds it too"
        );
        for id in 0..3 {
            run.record_made(id, started);
        }
        assert!(!run.wants_to_publish(PUBLISH_WINDOW));
        run.record_outcome(1, false, started + Duration::from_millis(5));
        assert_eq!(run.due_now(started, PUBLISH_WINDOW), 1);
        assert_close(Latency::of(&run.latency).max, 5.0);
    }

    #[test]
    fn duplicates_late_outcomes_and_timeouts_are_counted_apart() {
        let started = Instant::now();
        let timeout = Duration::from_secs(1);
        let mut run = Run::new(Shape::Prefill, 3, timeout, started);
        for id in 0..3 {
            run.record_made(id, started);
        }
        run.record_outcome(0, false, started + Duration::from_millis(10));
        run.record_outcome(0, false, started + Duration::from_millis(11));
        run.record_outcome(1, true, started + Duration::from_millis(12));
        run.expire(started + Duration::from_millis(999));
        assert_eq!(run.counts.timeouts, 0);
        run.expire(started + timeout);
        assert_eq!(run.counts.timeouts, 1);
        assert!(run.publish_order.is_empty());
        run.record_outcome(2, false, started + Duration::from_secs(2));
        run.record_outcome(2, false, started + Duration::from_secs(2));
        let counts = run.counts;
        assert_eq!(
            (counts.results, counts.faults, counts.timeouts),
            (1, 1, 1),
            "{counts:?}"
        );
        assert_eq!((counts.duplicates, counts.late), (2, 1), "{counts:?}");
        assert!(run.is_done(0));
        assert_eq!(run.latency.len(), 2);
    }

    #[test]
    fn outcomes_are_read_from_properties_or_else_the_body() {
        let id = Uuid::now_v7();
        let properties = BasicProperties::default()
            .with_correlation_id(id.to_string().as_str().into())
            .with_type("dev.warren.echo.replied.v1".into());
        assert_eq!(
            classify(&properties, b"not even JSON"),
            Classified::Outcome {
                id: id.as_u128(),
                fault: false
            }
        );
        let fault = properties.clone().with_type(Fault::TYPE.into());
        assert_eq!(
            classify(&fault, b""),
            Classified::Outcome {
                id: id.as_u128(),
                fault: true
            }
        );
        let progress = properties.with_type(Progress::TYPE.into());
        assert_eq!(classify(&progress, b""), Classified::Progress);

        // No AMQP properties: the body is decoded instead.
        let body = serde_json::json!({
            "specversion": "1.0",
            "id": "x",
            "source": "/t",
            "type": Fault::TYPE,
            "correlationid": id.to_string(),
            "data": {},
        })
        .to_string();
        assert_eq!(
            classify(&BasicProperties::default(), body.as_bytes()),
            Classified::Outcome {
                id: id.as_u128(),
                fault: true
            }
        );
        assert_eq!(
            classify(&BasicProperties::default(), b"{}"),
            Classified::Unreadable
        );
        let foreign = BasicProperties::default()
            .with_correlation_id("not-a-uuid".into())
            .with_type("dev.warren.echo.replied.v1".into());
        assert_eq!(classify(&foreign, b""), Classified::Unreadable);
    }

    fn summary_of(buckets: Vec<Bucket>) -> Summary {
        let args = parse(&["--inflight", "10"]).expect("valid");
        let mut run = Run::new(
            Shape::Inflight { inflight: 10 },
            3,
            args.timeout,
            Instant::now(),
        );
        run.counts.results = 3;
        let ended = run.started + Duration::from_secs(2);
        let mut summary = Summary::of(run, &args, 300, 2, ended);
        summary.per_second = buckets;
        summary
    }

    #[test]
    fn the_plot_is_an_svg_with_lines_and_the_table_reads() {
        let mut timeline = Timeline::new();
        for millis in (0..3_000).step_by(10) {
            let at = Duration::from_millis(millis);
            timeline.record_sent(at);
            timeline.record_outcome(at, Duration::from_micros(500 + millis * 7));
        }
        let summary = summary_of(timeline.finish(Duration::from_millis(3_000)));
        let svg = render_plot(&summary).expect("a plot");
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("<polyline"), "{svg}");
        assert!(svg.contains("p99") && svg.contains("outcomes"));

        let table = summary.table();
        assert!(table.contains("3 results, 0 faults, 0 timeouts"), "{table}");
        assert!(table.contains("p99.9"), "{table}");
        let json: serde_json::Value =
            serde_json::to_value(&summary).expect("the summary serializes");
        assert_eq!(json["shape"]["kind"], "inflight");
        assert_eq!(json["outcomes"]["result"], 3);
        assert!(json.get("prefill").is_none());
    }

    #[test]
    fn a_plot_of_a_run_without_outcomes_still_draws() {
        let svg = render_plot(&summary_of(Vec::new())).expect("a plot");
        assert!(svg.contains("<svg"));
    }
}
