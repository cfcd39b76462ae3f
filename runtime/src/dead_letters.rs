//! Dead-letter queues: reading, replaying and purging `warren.<worker>.dlq`.
//!
//! A dead letter arrives in one of two ways:
//! - a worker publishes it (bad input, a permanent failure, retries used up), with the
//!   `x-warren-*` headers of [`crate::dead_letter_header`];
//! - the broker dead-letters it itself (the work queue's delivery limit, a rejection, an
//!   expiry), with its `x-death` table and the `x-first-death-*` headers.
//!
//! [`DeadLetter`] sums up either kind. Nothing here removes a message it was not asked
//! to remove: reading takes messages with manual acks and puts every one back, in order,
//! when it is done (and closing the channel puts back whatever an error left behind).
//!
//! The dead-letter queues are quorum queues, whose requeueing shapes the code (all of
//! it seen on RabbitMQ 3.10): a requeued message does not go back where it was, so a
//! read takes every message and puts them all back in order; the messages of one
//! `multiple` nack go back in an order of their own, so they are nacked one by one; and
//! a channel with more than 32 unapplied settlements holds the rest back and drops them
//! if it closes first, so settling pauses every few commands until the broker has
//! applied them.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use jiff::{SignedDuration, Timestamp};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Acker, BasicProperties, Channel, Connection, ErrorKind};

use crate::connection::{CLOSE_TIMEOUT, close_channel};
use crate::error::RuntimeError;
use crate::headers::{dead_letter_header as header, deaths, header_count};
use crate::publisher::{Delivered, PendingConfirm, Publisher};
use crate::topology::dead_letter_queue_name;

pub use crate::headers::{
    X_DEATH, X_DELIVERY_COUNT, is_dead_letter_header, strip_dead_letter_headers,
};

/// How many replayed messages may wait for their confirms at once.
const REPLAY_CONFIRM_WINDOW: usize = 64;

/// Who put a message into the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterSource {
    /// A warren worker, with `x-warren-*` headers.
    Worker,
    /// The broker, with an `x-death` header.
    Broker,
    /// Neither header is there (someone published it to the queue by hand).
    Unknown,
}

impl DeadLetterSource {
    /// `worker`, `broker` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterSource::Worker => "worker",
            DeadLetterSource::Broker => "broker",
            DeadLetterSource::Unknown => "unknown",
        }
    }
}

/// One message of a dead-letter queue, summed up for people.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its 0-based index in the queue when it was read.
    pub position: usize,
    /// The AMQP `message_id`, or the envelope's `id`.
    pub message_id: Option<String>,
    /// The AMQP `type`, or the envelope's `type`.
    pub message_type: Option<String>,
    /// The AMQP `correlation_id`, or the envelope's `correlationid`.
    pub correlation_id: Option<String>,
    /// Who dead-lettered it.
    pub source: DeadLetterSource,
    /// Why: `x-warren-reason`, or the broker's reason (`delivery_limit`, `rejected`,
    /// `expired`, `maxlen`).
    pub reason: Option<String>,
    /// The error in words (`x-warren-error`).
    pub error: Option<String>,
    /// The worker that dead-lettered it (`x-warren-worker`).
    pub worker: Option<String>,
    /// The queue the broker dead-lettered it from (the newest `x-death` entry).
    pub dead_lettered_from_queue: Option<String>,
    /// Attempts (`x-warren-attempts`) or the sum of the `x-death` counts.
    pub death_count: Option<u64>,
    /// When it was dead-lettered (`x-warren-failed-at`, the newest `x-death` time, or
    /// the AMQP timestamp).
    pub dead_lettered_at: Option<Timestamp>,
    /// How long ago that was, when it was read.
    pub age: Option<SignedDuration>,
    /// The exchange it was published to before it died.
    pub original_exchange: Option<String>,
    /// The routing key it was published with before it died.
    pub original_routing_key: Option<String>,
    /// The AMQP properties other than headers, as `(name, value)` text.
    pub properties: Vec<(String, String)>,
    /// Every header, as `(name, value)` text, sorted by name.
    pub headers: Vec<(String, String)>,
    /// The body, as it is in the queue.
    pub body: Vec<u8>,
    amqp_properties: BasicProperties,
}

impl DeadLetter {
    /// Sums up a message read from a dead-letter queue at `position`, `now`.
    pub fn summarise(
        position: usize,
        body: Vec<u8>,
        properties: BasicProperties,
        now: Timestamp,
    ) -> DeadLetter {
        let headers = properties.headers().as_ref();
        let header_text = |name: &str| headers.and_then(|table| table_text(table, name));
        let deaths = deaths(headers);
        let newest_death = deaths.first();
        let from_worker = header_text(header::REASON).is_some();
        let source = if from_worker {
            DeadLetterSource::Worker
        } else if newest_death.is_some() {
            DeadLetterSource::Broker
        } else {
            DeadLetterSource::Unknown
        };

        let (reason, death_count, original_exchange, original_routing_key) =
            if source == DeadLetterSource::Broker {
                let reason = newest_death
                    .and_then(|death| death.reason.clone())
                    .or_else(|| header_text("x-last-death-reason"))
                    .or_else(|| header_text("x-first-death-reason"));
                let count = deaths.iter().map(|death| death.count).sum::<u64>();
                (
                    reason,
                    Some(count),
                    newest_death
                        .and_then(|death| death.exchange.clone())
                        .or_else(|| header_text("x-first-death-exchange")),
                    newest_death.and_then(|death| death.routing_key.clone()),
                )
            } else {
                (
                    header_text(header::REASON),
                    header_count(headers, header::ATTEMPTS).map(u64::from),
                    header_text(header::ORIGINAL_EXCHANGE),
                    header_text(header::ORIGINAL_ROUTING_KEY),
                )
            };

        let failed_at = header_text(header::FAILED_AT).and_then(|text| text.parse().ok());
        let amqp_time = properties
            .timestamp()
            .and_then(|seconds| i64::try_from(seconds).ok())
            .and_then(|seconds| Timestamp::from_second(seconds).ok());
        let dead_lettered_at = failed_at
            .or_else(|| newest_death.and_then(|death| death.time))
            .or(amqp_time);

        let mut envelope = LazyEnvelope::new(&body);
        let short = |value: &Option<ShortString>| value.as_ref().map(|v| v.as_str().to_owned());
        let message_id = short(properties.message_id())
            .or_else(|| header_text("ce-id"))
            .or_else(|| envelope.get("id"));
        let message_type = short(properties.kind())
            .or_else(|| header_text("ce-type"))
            .or_else(|| envelope.get("type"));
        let correlation_id = short(properties.correlation_id())
            .or_else(|| header_text("ce-correlationid"))
            .or_else(|| envelope.get("correlationid"));

        DeadLetter {
            position,
            message_id,
            message_type,
            correlation_id,
            source,
            reason,
            error: header_text(header::ERROR),
            worker: header_text(header::WORKER),
            dead_lettered_from_queue: newest_death.and_then(|death| death.queue.clone()),
            death_count,
            dead_lettered_at,
            age: dead_lettered_at.map(|at| now.duration_since(at)),
            original_exchange,
            original_routing_key,
            properties: describe_properties(&properties),
            headers: headers
                .map(|table| {
                    table
                        .inner()
                        .iter()
                        .map(|(name, value)| (name.as_str().to_owned(), display_value(value)))
                        .collect()
                })
                .unwrap_or_default(),
            body,
            amqp_properties: properties,
        }
    }

    /// Where a replay sends it: its original exchange and routing key, when known.
    pub fn original_route(&self) -> Option<(&str, &str)> {
        Some((
            self.original_exchange.as_deref()?,
            self.original_routing_key.as_deref()?,
        ))
    }

    /// The properties a replay publishes it with: its own, without the dead-letter
    /// headers (see [`strip_dead_letter_headers`]).
    pub fn replay_properties(&self) -> BasicProperties {
        strip_dead_letter_headers(&self.amqp_properties)
    }
}

fn table_text(table: &FieldTable, name: &str) -> Option<String> {
    table
        .inner()
        .get(name)
        .and_then(crate::headers::text_lossy)
        .map(std::borrow::Cow::into_owned)
}

/// An AMQP field value as text: strings as they are, timestamps in RFC 3339, arrays
/// and tables spelled out, bytes in hex.
pub fn display_value(value: &AMQPValue) -> String {
    match value {
        AMQPValue::Boolean(value) => value.to_string(),
        AMQPValue::ShortShortInt(value) => value.to_string(),
        AMQPValue::ShortShortUInt(value) => value.to_string(),
        AMQPValue::ShortInt(value) => value.to_string(),
        AMQPValue::ShortUInt(value) => value.to_string(),
        AMQPValue::LongInt(value) => value.to_string(),
        AMQPValue::LongUInt(value) => value.to_string(),
        AMQPValue::LongLongInt(value) => value.to_string(),
        AMQPValue::Float(value) => value.to_string(),
        AMQPValue::Double(value) => value.to_string(),
        AMQPValue::DecimalValue(decimal) => {
            let value = f64::from(decimal.value) / 10f64.powi(i32::from(decimal.scale));
            value.to_string()
        }
        AMQPValue::ShortString(text) => text.as_str().to_owned(),
        AMQPValue::LongString(text) => match std::str::from_utf8(text.as_bytes()) {
            Ok(text) => text.to_owned(),
            Err(_) => hex(text.as_bytes()),
        },
        AMQPValue::FieldArray(values) => {
            let items: Vec<String> = values.as_slice().iter().map(display_value).collect();
            format!("[{}]", items.join(", "))
        }
        AMQPValue::Timestamp(seconds) => i64::try_from(*seconds)
            .ok()
            .and_then(|seconds| Timestamp::from_second(seconds).ok())
            .map_or_else(|| seconds.to_string(), |time| time.to_string()),
        AMQPValue::FieldTable(table) => {
            let items: Vec<String> = table
                .inner()
                .iter()
                .map(|(name, value)| format!("{}: {}", name.as_str(), display_value(value)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        AMQPValue::ByteArray(bytes) => hex(bytes.as_slice()),
        AMQPValue::Void => "(void)".to_owned(),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(2 + bytes.len() * 2);
    text.push_str("0x");
    for byte in bytes {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// The AMQP properties other than headers, as `(name, value)` text.
fn describe_properties(properties: &BasicProperties) -> Vec<(String, String)> {
    let mut described = Vec::new();
    let mut short = |name: &str, value: &Option<ShortString>| {
        if let Some(value) = value {
            described.push((name.to_owned(), value.as_str().to_owned()));
        }
    };
    short("content_type", properties.content_type());
    short("content_encoding", properties.content_encoding());
    short("correlation_id", properties.correlation_id());
    short("reply_to", properties.reply_to());
    short("expiration", properties.expiration());
    short("message_id", properties.message_id());
    short("type", properties.kind());
    short("user_id", properties.user_id());
    short("app_id", properties.app_id());
    short("cluster_id", properties.cluster_id());
    if let Some(mode) = properties.delivery_mode() {
        described.push(("delivery_mode".to_owned(), mode.to_string()));
    }
    if let Some(priority) = properties.priority() {
        described.push(("priority".to_owned(), priority.to_string()));
    }
    if let Some(seconds) = properties.timestamp() {
        described.push((
            "timestamp".to_owned(),
            display_value(&AMQPValue::Timestamp(*seconds)),
        ));
    }
    described.sort();
    described
}

/// A structured-mode body's top-level string attributes, parsed only when asked for.
struct LazyEnvelope<'a> {
    body: &'a [u8],
    parsed: Option<Option<serde_json::Map<String, serde_json::Value>>>,
}

impl<'a> LazyEnvelope<'a> {
    fn new(body: &'a [u8]) -> Self {
        LazyEnvelope { body, parsed: None }
    }

    fn get(&mut self, attribute: &str) -> Option<String> {
        let body = self.body;
        self.parsed
            .get_or_insert_with(|| serde_json::from_slice(body).ok())
            .as_ref()?
            .get(attribute)?
            .as_str()
            .map(str::to_owned)
    }
}

/// Whether `error` says a queue does not exist (for a dead-letter queue: its worker
/// never started in this vhost).
pub fn is_queue_missing(error: &RuntimeError) -> bool {
    matches!(
        error,
        RuntimeError::Amqp(error) if matches!(
            error.kind(),
            ErrorKind::ProtocolError(amqp_error)
                if *amqp_error.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
        )
    )
}

/// The ready messages of `queue`, by a passive declare on `channel` (which the broker
/// closes if the queue does not exist).
async fn ready_count(channel: &Channel, queue: &str) -> Result<u32, RuntimeError> {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(declared.message_count())
}

/// How many dead letters wait in `worker`'s dead-letter queue (not counting any that a
/// reader holds right now). An error when the queue does not exist
/// ([`is_queue_missing`]).
pub async fn count(connection: &Connection, worker: &str) -> Result<u32, RuntimeError> {
    // A passive declare of a missing queue closes its channel: use one of its own.
    let channel = connection.create_channel().await?;
    let ready = ready_count(&channel, &dead_letter_queue_name(worker)).await?;
    close_channel(&channel, "counted").await;
    Ok(ready)
}

/// What becomes of a message taken from the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settlement {
    /// Back into the queue (`basic.nack` with `requeue`).
    Requeue,
    /// Out of the queue (`basic.ack`): it was replayed.
    Ack,
}

/// A message taken from the queue with a manual ack, not yet settled.
struct Held {
    acker: Acker,
    settlement: Settlement,
    settled: bool,
}

/// How long reading waits for the next message before deciding there is none (the
/// queue held fewer than counted: someone else took some meanwhile).
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads a queue in order through a consumer with manual acks and a prefetch of
/// exactly the number of messages wanted, so it is given no more.
///
/// A consumer rather than `basic.get`: a quorum queue settles each message taken by
/// `basic.get` on its own (acking 47 of them with one `multiple` ack was 47 commands,
/// and the 14 beyond the channel's limit of 32 unapplied ones were dropped when the
/// channel closed, so those messages came back). The deliveries of one consumer are
/// settled together: one command per `multiple` ack.
struct Reader {
    consumer: lapin::Consumer,
    consumer_tag: String,
    wanted: usize,
    read: usize,
    now: Timestamp,
}

impl Reader {
    /// Starts consuming `queue` on `channel` for up to `waiting` messages (at most
    /// 65,535: a prefetch is 16 bits).
    async fn open(channel: &Channel, queue: &str, waiting: usize) -> Result<Reader, RuntimeError> {
        let wanted = waiting.clamp(1, usize::from(u16::MAX));
        let prefetch = u16::try_from(wanted).unwrap_or(u16::MAX);
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let consumer_tag = format!("warren-dlq-{}", uuid::Uuid::new_v4());
        let consumer = channel
            .basic_consume(
                queue.into(),
                consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Reader {
            consumer,
            consumer_tag,
            wanted,
            read: 0,
            now: Timestamp::now(),
        })
    }

    /// The next message, summed up with its position; `None` once `wanted` were read,
    /// or when none comes for [`READ_IDLE_TIMEOUT`].
    async fn next(&mut self) -> Result<Option<(DeadLetter, Held)>, RuntimeError> {
        if self.read >= self.wanted {
            return Ok(None);
        }
        let delivery = match tokio::time::timeout(READ_IDLE_TIMEOUT, self.consumer.next()).await {
            Err(_) | Ok(None) => return Ok(None),
            Ok(Some(delivery)) => delivery?,
        };
        let position = self.read;
        self.read += 1;
        let held = Held {
            acker: delivery.acker,
            settlement: Settlement::Requeue,
            settled: false,
        };
        let dead_letter =
            DeadLetter::summarise(position, delivery.data, delivery.properties, self.now);
        Ok(Some((dead_letter, held)))
    }

    /// Stops the consumer, so that requeued messages are not delivered to it again.
    async fn cancel(&self, channel: &Channel) -> Result<(), RuntimeError> {
        channel
            .basic_cancel(
                self.consumer_tag.as_str().into(),
                BasicCancelOptions::default(),
            )
            .await?;
        Ok(())
    }
}

/// The most messages one requeueing `basic.nack` covers: one. A quorum queue puts the
/// messages of a `multiple` nack back in an order of its own (RabbitMQ 3.10 put 50
/// back rotated, and 18 reversed), while single nacks go back in the order they are
/// sent.
const MAX_REQUEUE_RUN: usize = 1;

/// How many acks and nacks are sent before waiting for the broker to have applied
/// them. A quorum queue's channel stops sending settlements beyond 32 unapplied ones
/// and later sends the rest as one batch (out of order), or drops them if the channel
/// closes first (the broker then requeues those messages itself: acked ones come back
/// as duplicates, and the order is lost).
const SETTLEMENTS_BETWEEN_SYNCS: usize = 16;

/// How long to wait for the broker to apply requeues before going on regardless.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// How often to look whether the broker applied the requeues.
const SYNC_POLL: Duration = Duration::from_millis(5);

/// Settles every held message in queue order (all of them are unsettled when this
/// starts), oldest first: each run of neighbours to ack is one `basic.ack` with
/// `multiple` on its last delivery tag; each message to requeue is one `basic.nack`
/// (`requeue`, see [`MAX_REQUEUE_RUN`]). Requeued messages therefore go back in their
/// order.
///
/// Every [`SETTLEMENTS_BETWEEN_SYNCS`] settlements, and at the end, it waits until the
/// queue's ready count shows the requeues applied (settlements from one channel are
/// applied in the order they were sent, so the acks before them are applied too).
async fn settle_in_order(
    channel: &Channel,
    queue: &str,
    held: &mut [Held],
) -> Result<(), RuntimeError> {
    if held.is_empty() {
        return Ok(());
    }
    let baseline = ready_count(channel, queue).await?;
    let mut requeued: u32 = 0;
    let mut unsynced = 0usize;
    let mut start = 0;
    while start < held.len() {
        let settlement = held[start].settlement;
        let mut end = start + 1;
        while end < held.len()
            && held[end].settlement == settlement
            && (settlement == Settlement::Ack || end - start < MAX_REQUEUE_RUN)
        {
            end += 1;
        }
        let last = &held[end - 1].acker;
        let sent = match settlement {
            Settlement::Ack => last.ack(BasicAckOptions { multiple: true }).await?,
            Settlement::Requeue => {
                last.nack(BasicNackOptions {
                    multiple: true,
                    requeue: true,
                })
                .await?
            }
        };
        if !sent {
            return Err(RuntimeError::ChannelGone);
        }
        for one in &mut held[start..end] {
            one.settled = true;
        }
        if settlement == Settlement::Requeue {
            requeued = requeued.saturating_add(u32::try_from(end - start).unwrap_or(u32::MAX));
        }
        unsynced += 1;
        if unsynced >= SETTLEMENTS_BETWEEN_SYNCS {
            wait_for_requeues(channel, queue, baseline.saturating_add(requeued)).await?;
            unsynced = 0;
        }
        start = end;
    }
    if unsynced > 0 && requeued > 0 {
        wait_for_requeues(channel, queue, baseline.saturating_add(requeued)).await?;
    }
    Ok(())
}

/// Waits until `queue` has at least `ready` ready messages, or [`SYNC_TIMEOUT`] passed
/// (someone else took messages meanwhile: going on risks only the order).
async fn wait_for_requeues(channel: &Channel, queue: &str, ready: u32) -> Result<(), RuntimeError> {
    let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
    loop {
        let now_ready = ready_count(channel, queue).await?;
        if now_ready >= ready {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                queue,
                expected = ready,
                ready = now_ready,
                "the broker has not shown the requeued dead letters yet; going on"
            );
            return Ok(());
        }
        tokio::time::sleep(SYNC_POLL).await;
    }
}

/// Stops `reader`, settles what is held (see [`settle_in_order`]) and closes the
/// channel. If anything fails, closing the channel makes the broker requeue whatever
/// is still unsettled: nothing is lost, though the order of those messages may change.
async fn settle_and_close(
    channel: &Channel,
    queue: &str,
    reader: &Reader,
    held: &mut [Held],
) -> Result<(), RuntimeError> {
    let settled = match reader.cancel(channel).await {
        Ok(()) => settle_in_order(channel, queue, held).await,
        Err(error) => Err(error),
    };
    // Bounded: a close that gets no answer leaves the messages held until the connection
    // closes, and that gives them back too.
    let closed = tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, "done".into())).await;
    settled?;
    // A channel that already failed cannot be closed again; its messages are back.
    if let Ok(Err(error)) = closed
        && channel.status().connected()
    {
        return Err(error.into());
    }
    Ok(())
}

/// Reads up to `limit` dead letters of `worker`, oldest first, without removing them.
///
/// The messages are taken by a consumer with manual acks (and a prefetch of exactly the
/// number waiting), held unacked while they are read, then put back with `basic.nack`
/// (`requeue`), one by one, oldest first, so they stay in the queue in their order.
/// Nothing is lost on an error: the channel is closed, and the broker requeues whatever
/// it still held.
///
/// Every message waiting is read, even beyond `limit` (up to 65,535, the most a
/// prefetch allows): a quorum queue puts a requeued message behind those not taken, so
/// putting back only the first `limit` would move them to the end. A dead letter that
/// arrives during a read, or two reads at the same time, can still change the order.
///
/// Each read counts as a delivery of every message: on RabbitMQ 4.0 to 4.2, whose
/// quorum queues count requeues against a default delivery limit of 20, a dead-letter
/// queue without its own `x-delivery-limit` would drop a message read 20 times.
pub async fn browse(
    connection: &Connection,
    worker: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, RuntimeError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    read_then_requeue(connection, worker, |dead_letter| {
        dead_letter.position < limit
    })
    .await
}

/// The first dead letter of `worker` whose message id is `message_id`, read without
/// removing anything (as [`browse`] does).
pub async fn find(
    connection: &Connection,
    worker: &str,
    message_id: &str,
) -> Result<Option<DeadLetter>, RuntimeError> {
    let mut found = false;
    let read = read_then_requeue(connection, worker, |dead_letter| {
        let first_match = !found && dead_letter.message_id.as_deref() == Some(message_id);
        found |= first_match;
        first_match
    })
    .await?;
    Ok(read.into_iter().next())
}

/// Reads every message waiting in `worker`'s dead-letter queue, keeps those `keep`
/// picks, and puts them all back.
async fn read_then_requeue(
    connection: &Connection,
    worker: &str,
    mut keep: impl FnMut(&DeadLetter) -> bool,
) -> Result<Vec<DeadLetter>, RuntimeError> {
    let waiting = usize::try_from(count(connection, worker).await?).unwrap_or(usize::MAX);
    if waiting == 0 {
        return Ok(Vec::new());
    }
    let queue = dead_letter_queue_name(worker);
    let channel = connection.create_channel().await?;
    let mut reader = match Reader::open(&channel, &queue, waiting).await {
        Ok(reader) => reader,
        Err(error) => {
            close_channel(&channel, "done").await;
            return Err(error);
        }
    };
    let mut held = Vec::new();
    let mut kept = Vec::new();
    let taken = loop {
        match reader.next().await {
            Ok(Some((dead_letter, one))) => {
                held.push(one);
                if keep(&dead_letter) {
                    kept.push(dead_letter);
                }
            }
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        }
    };
    let settled = settle_and_close(&channel, &queue, &reader, &mut held).await;
    taken?;
    settled?;
    Ok(kept)
}

/// Which dead letters to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaySelection {
    /// Every dead letter in the queue when the replay starts.
    All,
    /// Those whose message id is one of these (every copy of each).
    Ids(Vec<String>),
}

/// A dead letter that was republished.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Replayed {
    /// Its position in the queue when the replay read it.
    pub position: usize,
    /// Its message id.
    pub message_id: Option<String>,
    /// Its message type.
    pub message_type: Option<String>,
    /// The exchange it was republished to.
    pub exchange: String,
    /// The routing key it was republished with.
    pub routing_key: String,
    /// Whether its dead-letter copy was acked away. `false` only when the replay was
    /// interrupted between the confirm and the ack: the copy is still in the queue.
    pub removed_from_queue: bool,
}

/// Why a selected dead letter was not replayed. It stays in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotReplayedReason {
    /// Neither `x-warren-original-*` nor `x-death` says where it came from.
    NoOriginalRoute,
    /// The broker returned it: no queue is bound for its original route any more.
    Unroutable {
        /// The exchange it was published to.
        exchange: String,
        /// The routing key.
        routing_key: String,
    },
    /// The broker did not take it (a nack, or no confirm in time).
    Failed(String),
}

impl std::fmt::Display for NotReplayedReason {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReplayedReason::NoOriginalRoute => formatter.write_str(
                "its original exchange and routing key are unknown (no x-warren-original-* \
                 or x-death header)",
            ),
            NotReplayedReason::Unroutable {
                exchange,
                routing_key,
            } => write!(
                formatter,
                "unroutable: no queue is bound to exchange {exchange:?} for key \
                 {routing_key:?}, so the broker returned it"
            ),
            NotReplayedReason::Failed(error) => formatter.write_str(error),
        }
    }
}

/// A selected dead letter that was not replayed, and why.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NotReplayed {
    /// Its position in the queue when the replay read it.
    pub position: usize,
    /// Its message id.
    pub message_id: Option<String>,
    /// Its message type.
    pub message_type: Option<String>,
    /// Why it was not replayed.
    pub reason: NotReplayedReason,
}

/// What a replay did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ReplayReport {
    /// How many dead letters the replay read.
    pub read: usize,
    /// Those republished, in queue order.
    pub replayed: Vec<Replayed>,
    /// Those selected but left in the queue, in queue order.
    pub not_replayed: Vec<NotReplayed>,
    /// Asked-for message ids that no dead letter has.
    pub missing_ids: Vec<String>,
    /// The broker error that stopped the replay early, if one did. Every message not
    /// listed in `replayed` is still in the queue.
    pub interrupted: Option<RuntimeError>,
}

impl ReplayReport {
    /// Whether everything selected was replayed and removed from the queue.
    pub fn is_complete(&self) -> bool {
        self.not_replayed.is_empty()
            && self.missing_ids.is_empty()
            && self.interrupted.is_none()
            && self
                .replayed
                .iter()
                .all(|replayed| replayed.removed_from_queue)
    }
}

/// Republishes the selected dead letters of `worker` to their original exchange and
/// routing key, and removes them from the dead-letter queue.
///
/// Every message waiting in the queue is taken in order by a consumer with manual acks
/// (see [`browse`] for why all of them). Each selected message is published with its own
/// body and properties (without the dead-letter headers, see
/// [`strip_dead_letter_headers`]), `mandatory` and with a publisher confirm. Once every
/// confirm is in, the messages are settled in queue order: the dead-letter copy of each
/// message the broker confirmed is acked; everything else is put back, in order. A
/// message the broker returns (its original route has no queue any more), nacks or
/// does not confirm in time is not acked and is reported in
/// [`ReplayReport::not_replayed`].
///
/// Interrupted at any point, nothing is lost: a message is still in the dead-letter
/// queue, or confirmed republished, or both. "Both" (a duplicate) happens when the
/// replay dies between a confirm and its ack; warren's workers are idempotent (they
/// record processed message ids), so a duplicate repeats no side effect.
///
/// An error is returned only when the replay could not start (the queue does not
/// exist, the broker is unreachable); an error during the replay is reported in
/// [`ReplayReport::interrupted`] with what was done before it.
pub async fn replay(
    connection: &Connection,
    worker: &str,
    selection: &ReplaySelection,
    confirm_timeout: Duration,
) -> Result<ReplayReport, RuntimeError> {
    let waiting = usize::try_from(count(connection, worker).await?).unwrap_or(usize::MAX);
    let mut report = ReplayReport::default();
    if waiting == 0 {
        if let ReplaySelection::Ids(ids) = selection {
            let mut seen = HashSet::new();
            report.missing_ids = ids
                .iter()
                .filter(|id| seen.insert(id.as_str()))
                .cloned()
                .collect();
        }
        return Ok(report);
    }
    let publisher = Publisher::open(connection, confirm_timeout).await?;
    let channel = connection.create_channel().await?;
    let queue = dead_letter_queue_name(worker);
    let reader = match Reader::open(&channel, &queue, waiting).await {
        Ok(reader) => reader,
        Err(error) => {
            close_channel(&channel, "done").await;
            close_channel(publisher.channel(), "done").await;
            return Err(error);
        }
    };

    let mut walk = ReplayWalk {
        reader,
        publisher: &publisher,
        selected_ids: match selection {
            ReplaySelection::All => None,
            ReplaySelection::Ids(ids) => Some(ids.iter().map(String::as_str).collect()),
        },
        held: Vec::new(),
        in_flight: Vec::with_capacity(REPLAY_CONFIRM_WINDOW),
        found_ids: HashSet::new(),
        report,
    };
    let walked = walk.run().await;
    let settled = settle_and_close(&channel, &queue, &walk.reader, &mut walk.held).await;
    close_channel(publisher.channel(), "replayed").await;
    let mut report = walk.report;
    for replayed in &mut report.replayed {
        let held = &walk.held[replayed.position];
        replayed.removed_from_queue = held.settled && held.settlement == Settlement::Ack;
    }
    report.read = walk.held.len();
    // Ids are known to be missing only when the whole queue was read.
    if let (ReplaySelection::Ids(ids), Ok(())) = (selection, &walked) {
        let mut seen = HashSet::new();
        report.missing_ids = ids
            .iter()
            .filter(|id| !walk.found_ids.contains(id.as_str()) && seen.insert(id.as_str()))
            .cloned()
            .collect();
    }
    report.interrupted = walked.err().or(settled.err());
    Ok(report)
}

/// A replayed message waiting for its confirm.
struct InFlight {
    /// Its index in [`ReplayWalk::held`], which is also its position.
    position: usize,
    message_id: Option<String>,
    message_type: Option<String>,
    exchange: String,
    routing_key: String,
    confirm: PendingConfirm,
}

/// The state of one replay: what was taken, what waits for a confirm, what was done.
struct ReplayWalk<'a> {
    reader: Reader,
    publisher: &'a Publisher,
    /// `None` for every message.
    selected_ids: Option<HashSet<&'a str>>,
    held: Vec<Held>,
    in_flight: Vec<InFlight>,
    found_ids: HashSet<String>,
    report: ReplayReport,
}

impl ReplayWalk<'_> {
    /// Reads the messages in order, republishes the selected ones, and marks those the
    /// broker confirmed to be acked.
    async fn run(&mut self) -> Result<(), RuntimeError> {
        while let Some((dead_letter, held)) = self.reader.next().await? {
            let position = dead_letter.position;
            self.held.push(held);
            let selected = match (&self.selected_ids, dead_letter.message_id.as_deref()) {
                (None, _) => true,
                (Some(ids), Some(id)) if ids.contains(id) => {
                    self.found_ids.insert(id.to_owned());
                    true
                }
                (Some(_), _) => false,
            };
            if !selected {
                continue;
            }
            let Some((exchange, routing_key)) = dead_letter.original_route() else {
                self.report.not_replayed.push(NotReplayed {
                    position,
                    message_id: dead_letter.message_id.clone(),
                    message_type: dead_letter.message_type.clone(),
                    reason: NotReplayedReason::NoOriginalRoute,
                });
                continue;
            };
            let confirm = self
                .publisher
                .publish_raw(
                    exchange,
                    routing_key,
                    &dead_letter.body,
                    dead_letter.replay_properties(),
                )
                .await?;
            self.in_flight.push(InFlight {
                position,
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
                message_id: dead_letter.message_id,
                message_type: dead_letter.message_type,
                confirm,
            });
            if self.in_flight.len() >= REPLAY_CONFIRM_WINDOW {
                self.wait_for_confirms().await?;
            }
        }
        self.wait_for_confirms().await
    }

    /// Waits for the confirms in flight, in order; a message the broker routed is to
    /// be acked, any other stays.
    async fn wait_for_confirms(&mut self) -> Result<(), RuntimeError> {
        for flight in std::mem::take(&mut self.in_flight) {
            let reason = match flight.confirm.wait().await {
                Ok(Delivered::Routed) => {
                    self.held[flight.position].settlement = Settlement::Ack;
                    self.report.replayed.push(Replayed {
                        position: flight.position,
                        message_id: flight.message_id,
                        message_type: flight.message_type,
                        exchange: flight.exchange,
                        routing_key: flight.routing_key,
                        removed_from_queue: false,
                    });
                    continue;
                }
                Ok(Delivered::Returned) => NotReplayedReason::Unroutable {
                    exchange: flight.exchange,
                    routing_key: flight.routing_key,
                },
                Err(error @ (RuntimeError::Nacked { .. } | RuntimeError::ConfirmTimeout(_))) => {
                    NotReplayedReason::Failed(error.to_string())
                }
                Err(error) => return Err(error),
            };
            self.report.not_replayed.push(NotReplayed {
                position: flight.position,
                message_id: flight.message_id,
                message_type: flight.message_type,
                reason,
            });
        }
        Ok(())
    }
}

/// Deletes every dead letter waiting in `worker`'s dead-letter queue (not those a
/// reader holds right now) and returns how many there were.
pub async fn purge(connection: &Connection, worker: &str) -> Result<u32, RuntimeError> {
    let queue = dead_letter_queue_name(worker);
    let channel = connection.create_channel().await?;
    let purged = channel
        .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
        .await?;
    close_channel(&channel, "purged").await;
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldArray, LongString};

    fn text(value: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(value))
    }

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut table = FieldTable::default();
        for (key, value) in entries {
            table.insert((*key).into(), value.clone());
        }
        table
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    fn death(
        reason: &str,
        queue: &str,
        exchange: &str,
        key: &str,
        count: i64,
        time: &str,
    ) -> AMQPValue {
        AMQPValue::FieldTable(table(&[
            ("reason", text(reason)),
            ("queue", text(queue)),
            ("exchange", text(exchange)),
            (
                "routing-keys",
                AMQPValue::FieldArray(FieldArray::from(vec![text(key)])),
            ),
            ("count", AMQPValue::LongLongInt(count)),
            (
                "time",
                AMQPValue::Timestamp(at(time).as_second().unsigned_abs()),
            ),
        ]))
    }

    #[test]
    fn broker_dead_letters_are_summed_up_from_x_death() {
        let headers = table(&[
            (
                X_DEATH,
                AMQPValue::FieldArray(FieldArray::from(vec![
                    death(
                        "delivery_limit",
                        "warren.echo",
                        "warren.retries",
                        "warren.echo",
                        1,
                        "2030-01-01T00:10:00Z",
                    ),
                    death(
                        "expired",
                        "warren.echo.retry.1000ms",
                        "",
                        "warren.echo.retry.1000ms",
                        3,
                        "2030-01-01T00:05:00Z",
                    ),
                ])),
            ),
            ("x-first-death-reason", text("expired")),
            ("x-first-death-queue", text("warren.echo.retry.1000ms")),
            ("x-first-death-exchange", text("")),
            ("x-delivery-count", AMQPValue::LongLongInt(4)),
        ]);
        let properties = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_type("dev.warren.echo.v1".into())
            .with_headers(headers);
        let dead_letter =
            DeadLetter::summarise(3, b"{}".to_vec(), properties, at("2030-01-01T00:10:30Z"));
        assert_eq!(dead_letter.position, 3);
        assert_eq!(dead_letter.source, DeadLetterSource::Broker);
        assert_eq!(dead_letter.reason.as_deref(), Some("delivery_limit"));
        assert_eq!(dead_letter.death_count, Some(4));
        assert_eq!(
            dead_letter.dead_lettered_from_queue.as_deref(),
            Some("warren.echo")
        );
        assert_eq!(
            dead_letter.original_route(),
            Some(("warren.retries", "warren.echo"))
        );
        assert_eq!(
            dead_letter.dead_lettered_at,
            Some(at("2030-01-01T00:10:00Z"))
        );
        assert_eq!(dead_letter.age, Some(SignedDuration::from_secs(30)));
        assert_eq!(dead_letter.message_id.as_deref(), Some("m-1"));
        assert_eq!(
            dead_letter.message_type.as_deref(),
            Some("dev.warren.echo.v1")
        );
        assert_eq!(dead_letter.error, None);
        let shown: std::collections::BTreeMap<_, _> = dead_letter.headers.iter().cloned().collect();
        assert!(
            shown[X_DEATH].contains("reason: delivery_limit"),
            "{shown:?}"
        );
        assert!(shown[X_DEATH].contains("2030-01-01T00:10:00Z"), "{shown:?}");
    }

    #[test]
    fn worker_dead_letters_prefer_the_warren_headers() {
        let headers = table(&[
            (header::REASON, text("invalid_data")),
            (header::ERROR, text("data is not an object")),
            (header::WORKER, text("echo")),
            (header::ORIGINAL_EXCHANGE, text("warren.commands")),
            (header::ORIGINAL_ROUTING_KEY, text("dev.warren.echo.v1")),
            (header::ATTEMPTS, AMQPValue::LongLongInt(2)),
            (header::FAILED_AT, text("2030-01-01T00:00:00Z")),
            // An earlier trip through a delay queue: not why it is here.
            (
                X_DEATH,
                AMQPValue::FieldArray(FieldArray::from(vec![death(
                    "expired",
                    "warren.echo.retry.1000ms",
                    "",
                    "warren.echo.retry.1000ms",
                    1,
                    "2029-12-31T23:59:59Z",
                )])),
            ),
        ]);
        // No AMQP ids: they come from the structured-mode body.
        let body = br#"{"specversion":"1.0","id":"e-1","type":"dev.warren.echo.v1","source":"/t","correlationid":"c-1","data":[1]}"#;
        let dead_letter = DeadLetter::summarise(
            0,
            body.to_vec(),
            BasicProperties::default().with_headers(headers),
            at("2030-01-01T00:01:00Z"),
        );
        assert_eq!(dead_letter.source, DeadLetterSource::Worker);
        assert_eq!(dead_letter.reason.as_deref(), Some("invalid_data"));
        assert_eq!(dead_letter.error.as_deref(), Some("data is not an object"));
        assert_eq!(dead_letter.worker.as_deref(), Some("echo"));
        assert_eq!(dead_letter.death_count, Some(2));
        assert_eq!(
            dead_letter.original_route(),
            Some(("warren.commands", "dev.warren.echo.v1"))
        );
        assert_eq!(dead_letter.age, Some(SignedDuration::from_secs(60)));
        assert_eq!(dead_letter.message_id.as_deref(), Some("e-1"));
        assert_eq!(
            dead_letter.message_type.as_deref(),
            Some("dev.warren.echo.v1")
        );
        assert_eq!(dead_letter.correlation_id.as_deref(), Some("c-1"));
    }

    #[test]
    fn a_message_without_dead_letter_headers_has_no_route() {
        let dead_letter = DeadLetter::summarise(
            0,
            b"not json".to_vec(),
            BasicProperties::default().with_timestamp(1_000),
            Timestamp::from_second(1_010).expect("a timestamp"),
        );
        assert_eq!(dead_letter.source, DeadLetterSource::Unknown);
        assert_eq!(dead_letter.reason, None);
        assert_eq!(dead_letter.message_id, None);
        assert_eq!(dead_letter.original_route(), None);
        assert_eq!(dead_letter.age, Some(SignedDuration::from_secs(10)));
        assert!(dead_letter.headers.is_empty());
    }

    #[test]
    fn replay_strips_only_the_dead_letter_headers() {
        let headers = table(&[
            (header::REASON, text("test")),
            (header::ORIGINAL_EXCHANGE, text("warren.commands")),
            ("X-Warren-Attempts", AMQPValue::LongLongInt(1)),
            (X_DEATH, AMQPValue::FieldArray(FieldArray::default())),
            ("x-first-death-reason", text("rejected")),
            ("x-first-death-queue", text("warren.echo")),
            ("x-last-death-exchange", text("warren.commands")),
            (X_DELIVERY_COUNT, AMQPValue::LongLongInt(3)),
            (
                "traceparent",
                text("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ),
            ("ce-source", text("/sdk")),
        ]);
        let properties = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_delivery_mode(2)
            .with_headers(headers);
        let dead_letter = DeadLetter::summarise(0, Vec::new(), properties, Timestamp::now());
        let replayed = dead_letter.replay_properties();
        let kept: Vec<&str> = replayed
            .headers()
            .as_ref()
            .expect("headers")
            .inner()
            .keys()
            .map(ShortString::as_str)
            .collect();
        assert_eq!(kept, ["ce-source", "traceparent"]);
        assert_eq!(
            replayed.message_id().as_ref().map(ShortString::as_str),
            Some("m-1")
        );
        assert_eq!(*replayed.delivery_mode(), Some(2));

        let bare = BasicProperties::default().with_message_id("m-2".into());
        assert_eq!(strip_dead_letter_headers(&bare), bare);
    }

    #[test]
    fn values_are_shown_as_text() {
        assert_eq!(display_value(&text("plain")), "plain");
        assert_eq!(
            display_value(&AMQPValue::LongString(LongString::from(vec![0xff, 0x00]))),
            "0xff00"
        );
        assert_eq!(
            display_value(&AMQPValue::Timestamp(0)),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            display_value(&AMQPValue::FieldArray(FieldArray::from(vec![
                text("a"),
                AMQPValue::Boolean(true)
            ]))),
            "[a, true]"
        );
        assert_eq!(
            display_value(&AMQPValue::FieldTable(table(&[(
                "k",
                AMQPValue::LongInt(-1)
            )]))),
            "{k: -1}"
        );
    }
}
