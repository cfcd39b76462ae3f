//! Watching what flows on the bus without taking anything from anyone (`warren tail`).
//!
//! A [`Tap`] is a queue of its own: server-named, exclusive to its connection and
//! deleted with it, bound to the fleet's exchanges with the [`Binding`]s its caller
//! chose. An exchange gives every bound queue its own copy of a message, so the workers'
//! queues still get every message, and the tap's queue is never one a worker reads.
//!
//! It is consumed without acks, so the broker keeps nothing for it once delivered. What
//! a slow reader has not taken yet is bounded twice, and the oldest goes first both
//! times:
//! - on the broker, while the connection does not read (a suspended process, a full
//!   socket): the queue's message TTL ([`TAP_MESSAGE_TTL`]) and its length
//!   ([`TAP_MAX_LENGTH`], overflow `drop-head`);
//! - in this process, while the reader does not keep up: a task takes every delivery
//!   from lapin at once (lapin's own buffer has no bound) into a buffer of at most
//!   [`TAP_BUFFERED_MESSAGES`] messages and [`TAP_BUFFERED_BYTES`] bytes, and each
//!   [`TappedMessage`] says how many were dropped before it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use jiff::Timestamp;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, Consumer};
use serde_json::value::RawValue;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use warren_messages::{Attributes, DecodeError, Envelope, Limits};
use warren_runtime::topology::declare_exchanges;
use warren_runtime::{RuntimeError, Settings, close_connection, connect, delivery};

/// How long a message may wait in the tap's queue on the broker before it is dropped.
pub const TAP_MESSAGE_TTL: Duration = Duration::from_secs(60);
/// The most messages the tap's queue holds on the broker; beyond it the oldest go.
pub const TAP_MAX_LENGTH: u32 = 10_000;
/// The most messages held in this process that the reader has not taken yet.
pub const TAP_BUFFERED_MESSAGES: usize = 10_000;
/// The most body bytes held in this process that the reader has not taken yet (the
/// newest message is kept even when it alone is larger).
pub const TAP_BUFFERED_BYTES: usize = 64 * 1024 * 1024;

/// One binding of the tap's queue: `exchange` with `routing_key` (a topic pattern on a
/// topic exchange, an exact key on a direct one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The exchange, e.g. `warren.events`.
    pub exchange: String,
    /// The binding key.
    pub routing_key: String,
}

/// A message that flowed through a bound exchange, as the tap received it.
#[derive(Debug)]
pub struct TappedMessage {
    exchange: String,
    routing_key: String,
    properties: BasicProperties,
    body: Vec<u8>,
    received_at: Timestamp,
    limits: Limits,
    dropped_before: u64,
}

impl TappedMessage {
    /// The exchange it was published to.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The routing key it was published with.
    pub fn routing_key(&self) -> &str {
        &self.routing_key
    }

    /// Its body, as it arrived.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// When this process received it.
    pub fn received_at(&self) -> Timestamp {
        self.received_at
    }

    /// How many messages were dropped just before this one because the reader fell
    /// behind (0 almost always).
    pub fn dropped_before(&self) -> u64 {
        self.dropped_before
    }

    /// Its envelope, read as a worker reads a delivery (structured or binary mode, with
    /// the configured limits), or why a worker would refuse it.
    pub fn decode(&self) -> Result<Envelope<&RawValue>, DecodeError> {
        delivery::decode_delivery(&self.body, &self.properties, &self.limits)
    }

    /// What can be trusted of its attributes when [`TappedMessage::decode`] fails: from
    /// the body, else from the AMQP properties that mirror them.
    pub fn salvage(&self) -> Attributes {
        delivery::salvage(&self.body, &self.properties, &self.limits)
    }
}

/// What the reading task has taken from lapin and the reader has not taken yet.
#[derive(Debug)]
struct Buffer {
    messages: VecDeque<TappedMessage>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
    /// Dropped since the last message handed out.
    dropped: u64,
    /// Why the consumer ended, until it is handed out.
    end: Option<RuntimeError>,
    ended: bool,
}

impl Buffer {
    fn new(max_messages: usize, max_bytes: usize) -> Buffer {
        Buffer {
            messages: VecDeque::new(),
            bytes: 0,
            max_messages: max_messages.max(1),
            max_bytes,
            dropped: 0,
            end: None,
            ended: false,
        }
    }

    /// Keeps `message`, dropping the oldest while over either bound (never `message`).
    fn push(&mut self, message: TappedMessage) {
        self.bytes += message.body.len();
        self.messages.push_back(message);
        while self.messages.len() > self.max_messages
            || (self.bytes > self.max_bytes && self.messages.len() > 1)
        {
            if let Some(oldest) = self.messages.pop_front() {
                self.bytes -= oldest.body.len();
                self.dropped += 1;
            }
        }
    }

    /// The oldest message kept, carrying the count dropped before it.
    fn pop(&mut self) -> Option<TappedMessage> {
        let mut message = self.messages.pop_front()?;
        self.bytes -= message.body.len();
        message.dropped_before = std::mem::take(&mut self.dropped);
        Some(message)
    }
}

/// The buffer and the signal that something was put in it (or the consumer ended).
#[derive(Debug)]
struct Shared {
    buffer: Mutex<Buffer>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A temporary queue bound to the fleet's exchanges, and its consumer. Dropping it
/// stops reading; [`Tap::close`] also closes the connection (which deletes the queue).
pub struct Tap {
    connection: Connection,
    queue: String,
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
}

impl Tap {
    /// Connects as `connection_name`, declares the fleet's exchanges (as every worker
    /// and originator does), declares the tap's queue, binds it with every one of
    /// `bindings` and starts consuming. The whole set-up is bounded by `setup_timeout`.
    pub async fn open(
        settings: &Settings,
        connection_name: &str,
        bindings: &[Binding],
        setup_timeout: Duration,
    ) -> Result<Tap, RuntimeError> {
        let connection =
            tokio::time::timeout(setup_timeout, connect(&settings.amqp, connection_name))
                .await
                .map_err(|_elapsed| RuntimeError::SetupTimeout(setup_timeout))??;
        let set_up = tokio::time::timeout(setup_timeout, set_up(&connection, bindings)).await;
        let (queue, consumer) = match set_up {
            Ok(Ok(queue_and_consumer)) => queue_and_consumer,
            Ok(Err(error)) => {
                close_connection(&connection, "tap set-up failed").await;
                return Err(error);
            }
            Err(_elapsed) => {
                close_connection(&connection, "tap set-up timed out").await;
                return Err(RuntimeError::SetupTimeout(setup_timeout));
            }
        };
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer::new(TAP_BUFFERED_MESSAGES, TAP_BUFFERED_BYTES)),
            changed: Notify::new(),
        });
        let reader = tokio::spawn(read_into(
            consumer,
            Arc::clone(&shared),
            settings.limits.decode_limits(),
            queue.clone(),
        ));
        Ok(Tap {
            connection,
            queue,
            shared,
            reader,
        })
    }

    /// The tap's queue, as the broker named it.
    pub fn queue_name(&self) -> &str {
        &self.queue
    }

    /// The next message, oldest first. Cancel-safe. An error means the connection or
    /// the consumer is gone: open a new tap.
    pub async fn next(&mut self) -> Result<TappedMessage, RuntimeError> {
        loop {
            {
                let mut buffer = self.shared.lock();
                if let Some(message) = buffer.pop() {
                    return Ok(message);
                }
                if buffer.ended {
                    return Err(buffer
                        .end
                        .take()
                        .unwrap_or_else(|| RuntimeError::ConsumerCancelled(self.queue.clone())));
                }
            }
            self.shared.changed.notified().await;
        }
    }

    /// Stops reading and closes the connection (bounded by
    /// [`warren_runtime::CLOSE_TIMEOUT`]); the broker deletes the queue with it.
    pub async fn close(self) {
        self.reader.abort();
        close_connection(&self.connection, "done").await;
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Declares the exchanges and the tap's queue, binds it and starts consuming.
async fn set_up(
    connection: &Connection,
    bindings: &[Binding],
) -> Result<(String, Consumer), RuntimeError> {
    for binding in bindings {
        for name in [&binding.exchange, &binding.routing_key] {
            if name.len() > 255 {
                return Err(RuntimeError::NameTooLong(name.chars().take(32).collect()));
            }
        }
    }
    declare_exchanges(connection).await?;
    let channel = connection.create_channel().await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            tap_queue_arguments(),
        )
        .await?;
    let queue = queue.name().as_str().to_owned();
    for binding in bindings {
        channel
            .queue_bind(
                queue.as_str().into(),
                binding.exchange.as_str().into(),
                binding.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    let consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((queue, consumer))
}

/// The arguments of the tap's queue: the oldest messages go after [`TAP_MESSAGE_TTL`]
/// or beyond [`TAP_MAX_LENGTH`].
pub fn tap_queue_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(i64::try_from(TAP_MESSAGE_TTL.as_millis()).unwrap_or(i64::MAX)),
    );
    arguments.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(i64::from(TAP_MAX_LENGTH)),
    );
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString(LongString::from("drop-head")),
    );
    arguments
}

/// Takes every delivery of `consumer` into `shared` as it arrives, until the consumer
/// ends; then records why.
async fn read_into(mut consumer: Consumer, shared: Arc<Shared>, limits: Limits, queue: String) {
    let end = loop {
        match consumer.next().await {
            Some(Ok(delivery)) => {
                let message = TappedMessage {
                    exchange: delivery.exchange.as_str().to_owned(),
                    routing_key: delivery.routing_key.as_str().to_owned(),
                    properties: delivery.properties,
                    body: delivery.data,
                    received_at: Timestamp::now(),
                    limits,
                    dropped_before: 0,
                };
                shared.lock().push(message);
                shared.changed.notify_one();
            }
            Some(Err(error)) => break RuntimeError::from(error),
            None => break RuntimeError::ConsumerCancelled(queue),
        }
    };
    {
        let mut buffer = shared.lock();
        buffer.end = Some(end);
        buffer.ended = true;
    }
    shared.changed.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> TappedMessage {
        TappedMessage {
            exchange: "warren.events".to_owned(),
            routing_key: "dev.warren.x.v1".to_owned(),
            properties: BasicProperties::default(),
            body: body.as_bytes().to_vec(),
            received_at: Timestamp::UNIX_EPOCH,
            limits: Limits::default(),
            dropped_before: 0,
        }
    }

    fn bodies(buffer: &mut Buffer) -> Vec<(String, u64)> {
        std::iter::from_fn(|| buffer.pop())
            .map(|message| {
                (
                    String::from_utf8_lossy(message.body()).into_owned(),
                    message.dropped_before(),
                )
            })
            .collect()
    }

    #[test]
    fn the_buffer_drops_the_oldest_beyond_its_count_and_says_so() {
        let mut buffer = Buffer::new(2, usize::MAX);
        for body in ["a", "b", "c", "d"] {
            buffer.push(message(body));
        }
        assert_eq!(
            bodies(&mut buffer),
            [("c".to_owned(), 2), ("d".to_owned(), 0)]
        );
        assert_eq!(buffer.bytes, 0);
        buffer.push(message("e"));
        assert_eq!(bodies(&mut buffer), [("e".to_owned(), 0)]);
    }

    #[test]
    fn the_buffer_drops_the_oldest_beyond_its_bytes_but_keeps_the_newest() {
        let mut buffer = Buffer::new(100, 4);
        buffer.push(message("ab"));
        buffer.push(message("cd"));
        buffer.push(message("efghij"));
        assert_eq!(bodies(&mut buffer), [("efghij".to_owned(), 2)]);
    }

    #[test]
    fn the_queue_is_bounded_with_drop_head() {
        let arguments = tap_queue_arguments();
        let inner = arguments.inner();
        let get = |name: &str| inner.get(name).cloned();
        assert_eq!(get("x-message-ttl"), Some(AMQPValue::LongLongInt(60_000)));
        assert_eq!(get("x-max-length"), Some(AMQPValue::LongLongInt(10_000)));
        assert_eq!(
            get("x-overflow"),
            Some(AMQPValue::LongString(LongString::from("drop-head")))
        );
    }
}
