//! An originator's reply queues, as the tests read them.
//!
//! Every reply queue is declared by [`ReplyQueue::declare`]: `warren.reply.<uuid>`, bound to
//! [`REPLIES_EXCHANGE`] under its own name, exclusive to the test's connection or durable
//! ([`ReplyQueueLifetime`]). A test reads it by polling ([`ReplyQueue::next`]), or through a
//! [`ReplyReader`]: a consumer that records each outcome before acking it and connects again
//! whenever its connection dies or a step takes longer than [`READER_STEP`], as an
//! originator that must not lose outcomes does. [`ReplyCollector`] is a reader that keeps
//! every outcome it read.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::Connection;
use lapin::options::{BasicAckOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use warren_messages::{Limits, decode_structured};

use crate::{
    BrokerClient, MESSAGE_TIMEOUT, POLL_INTERVAL, READER_STEP, REPLIES_EXCHANGE, ReceivedMessage,
    Vhost, close_channel, within_broker_timeout, within_step,
};

/// How long a reader waits for a delivery before it looks at its queue (to stop, or to
/// find a stalled consumer).
const READER_TICK: Duration = Duration::from_millis(100);

/// How long a reader may go without a delivery while outcomes wait in its queue before it
/// takes its consumer for stalled (a consume registered while a node was still recovering)
/// and starts over.
const READER_STALL: Duration = Duration::from_secs(5);

/// The pause before a reader connects again after losing its connection.
const RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// The prefetch of a [`ReplyCollector`]'s consumer.
const COLLECTOR_PREFETCH: u16 = 1000;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long a reply queue lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyQueueLifetime {
    /// Exclusive to the connection that declared it: it goes with the test.
    Connection,
    /// Durable and not exclusive: it outlives a closed connection and a restart of the
    /// broker (the vhost, or the private node, goes with the test).
    Durable,
}

/// An originator's reply queue, bound to [`REPLIES_EXCHANGE`] under its own name.
#[derive(Debug, Clone)]
pub struct ReplyQueue {
    name: String,
}

impl ReplyQueue {
    /// Declares a fresh reply queue `warren.reply.<uuid>` on `client`'s connection.
    ///
    /// The exchange is the workers' to declare: start a worker before calling this.
    ///
    /// # Panics
    /// When the queue cannot be declared or bound within
    /// [`crate::BROKER_ANSWER_TIMEOUT`].
    pub async fn declare(client: &BrokerClient, lifetime: ReplyQueueLifetime) -> ReplyQueue {
        Self::declare_named(
            client,
            format!("warren.reply.{}", uuid::Uuid::new_v4()),
            lifetime,
        )
        .await
    }

    /// Declares a fresh reply queue in the namespace of the originator `owner`,
    /// `warren.reply.<owner>.<uuid>`: the only reply queues an originator under a user of
    /// its own may declare (`warren topology apply --originator`).
    ///
    /// # Panics
    /// As [`ReplyQueue::declare`].
    pub async fn declare_owned(
        client: &BrokerClient,
        owner: &str,
        lifetime: ReplyQueueLifetime,
    ) -> ReplyQueue {
        let name = format!("warren.reply.{owner}.{}", uuid::Uuid::new_v4());
        Self::declare_named(client, name, lifetime).await
    }

    async fn declare_named(
        client: &BrokerClient,
        name: String,
        lifetime: ReplyQueueLifetime,
    ) -> ReplyQueue {
        within_broker_timeout(
            &format!("declare reply queue {name}"),
            declare_and_bind(client.connection(), &name, lifetime),
        )
        .await
        .unwrap_or_else(|error| panic!("cannot declare reply queue {name}: {error}"));
        ReplyQueue { name }
    }

    /// The queue name: the `replyto` to put on requests.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next outcome, polling for up to `timeout`.
    ///
    /// # Panics
    /// When one arrives that is not a valid envelope.
    pub async fn next_within(&self, client: &BrokerClient, timeout: Duration) -> Option<Value> {
        let message = client.get_within(&self.name, timeout).await?;
        Some(message.envelope())
    }

    /// The next outcome.
    ///
    /// # Panics
    /// When none arrives within [`MESSAGE_TIMEOUT`].
    pub async fn next(&self, client: &BrokerClient) -> Value {
        self.next_within(client, MESSAGE_TIMEOUT)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "no outcome on reply queue {} within {MESSAGE_TIMEOUT:?}",
                    self.name
                )
            })
    }

    /// Every outcome waiting in the queue now.
    pub async fn drain(&self, client: &BrokerClient) -> Vec<Value> {
        client
            .drain(&self.name)
            .await
            .iter()
            .map(ReceivedMessage::envelope)
            .collect()
    }
}

/// Declares the reply queue `name` with `lifetime` and binds it to [`REPLIES_EXCHANGE`]
/// under its own name, on a channel of its own.
async fn declare_and_bind(
    connection: &Connection,
    name: &str,
    lifetime: ReplyQueueLifetime,
) -> Result<(), lapin::Error> {
    let options = match lifetime {
        ReplyQueueLifetime::Connection => QueueDeclareOptions {
            exclusive: true,
            ..QueueDeclareOptions::default()
        },
        ReplyQueueLifetime::Durable => QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
    };
    let channel = connection.create_channel().await?;
    channel
        .queue_declare(name.into(), options, FieldTable::default())
        .await?;
    channel
        .queue_bind(
            name.into(),
            REPLIES_EXCHANGE.into(),
            name.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    close_channel(&channel, "declared").await;
    Ok(())
}

/// What a [`ReplyReader`] did so far.
#[derive(Debug, Clone, Default)]
pub struct ReaderStats {
    /// Connections it opened.
    pub connections: usize,
    /// Sessions (a connection and a consumer) it started consuming in: more than 1 means
    /// it recovered from a lost connection.
    pub sessions: usize,
    /// Why its last session ended, if one did.
    pub last_error: Option<String>,
}

/// A consumer of one reply queue that reconnects, in a task of its own. Aborted when
/// dropped; [`ReplyReader::finish`] stops it once the queue is empty.
///
/// Each outcome is recorded before it is acked, so none is lost with a connection: one
/// that was recorded but not acked comes again, and is recorded twice.
#[derive(Debug)]
pub struct ReplyReader {
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<ReaderStats>>,
    task: JoinHandle<()>,
}

impl ReplyReader {
    /// Starts consuming `queue` at `amqp_url` with at most `prefetch` unacked deliveries,
    /// handing each body to `record` before acking it. A panic in `record` ends the reader
    /// ([`ReplyReader::finish`] reports it).
    pub fn spawn(
        amqp_url: &str,
        queue: &str,
        prefetch: u16,
        record: impl FnMut(&[u8]) + Send + 'static,
    ) -> ReplyReader {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(ReaderStats::default()));
        let task = tokio::spawn(read_until_stopped(
            amqp_url.to_owned(),
            queue.to_owned(),
            prefetch,
            record,
            Arc::clone(&stop),
            Arc::clone(&stats),
        ));
        ReplyReader { stop, stats, task }
    }

    /// What the reader did so far.
    pub fn stats(&self) -> ReaderStats {
        lock(&self.stats).clone()
    }

    /// Asks the reader to stop once nothing waits in its queue, and waits up to `timeout`
    /// for it; returns what it did.
    ///
    /// # Panics
    /// When it does not finish within `timeout`, or its `record` panicked.
    pub async fn finish(mut self, timeout: Duration) -> ReaderStats {
        self.stop.store(true, Ordering::SeqCst);
        tokio::time::timeout(timeout, &mut self.task)
            .await
            .expect("the reply reader finishes")
            .expect("the reply reader does not panic");
        self.stats()
    }
}

impl Drop for ReplyReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why a session of a reader ended, recorded, and printed unless it is why the last one
/// ended too (a node that is down refuses every attempt alike).
fn session_ended(stats: &Mutex<ReaderStats>, queue: &str, why: String) {
    let mut stats = lock(stats);
    if stats.last_error.as_ref() != Some(&why) {
        eprintln!("reply reader of {queue}: {why}; reconnecting");
    }
    stats.last_error = Some(why);
}

/// Consumes `queue` until stopped (and the queue is empty) or aborted, connecting again
/// after every failure.
async fn read_until_stopped(
    amqp_url: String,
    queue: String,
    prefetch: u16,
    mut record: impl FnMut(&[u8]) + Send + 'static,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<ReaderStats>>,
) {
    let mut first_attempt = true;
    'connection: loop {
        if !std::mem::take(&mut first_attempt) {
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
        let client = match within_step(BrokerClient::try_connect(&amqp_url)).await {
            Some(Ok(client)) => client,
            Some(Err(error)) => {
                session_ended(&stats, &queue, format!("cannot connect: {error}"));
                continue 'connection;
            }
            None => {
                let why = format!("no connection within {READER_STEP:?}");
                session_ended(&stats, &queue, why);
                continue 'connection;
            }
        };
        lock(&stats).connections += 1;
        let mut consumer = match within_step(client.consume(&queue, prefetch)).await {
            Some(Ok(consumer)) => consumer,
            Some(Err(error)) => {
                session_ended(&stats, &queue, format!("cannot consume: {error}"));
                continue 'connection;
            }
            None => {
                let why = format!("no consume-ok within {READER_STEP:?}");
                session_ended(&stats, &queue, why);
                continue 'connection;
            }
        };
        lock(&stats).sessions += 1;
        let mut idle_since = Instant::now();
        loop {
            match tokio::time::timeout(READER_TICK, consumer.next()).await {
                Ok(Some(Ok(delivery))) => {
                    idle_since = Instant::now();
                    record(&delivery.data);
                    // Recorded first: if this ack is lost with the connection, the outcome
                    // comes again and is recorded twice, never missing.
                    match within_step(delivery.acker.ack(BasicAckOptions::default())).await {
                        Some(Ok(true)) => {}
                        Some(Ok(false)) => {
                            let why = "ack refused: the channel is gone".to_owned();
                            session_ended(&stats, &queue, why);
                            continue 'connection;
                        }
                        Some(Err(error)) => {
                            session_ended(&stats, &queue, format!("ack failed: {error}"));
                            continue 'connection;
                        }
                        None => {
                            let why = format!("ack not sent within {READER_STEP:?}");
                            session_ended(&stats, &queue, why);
                            continue 'connection;
                        }
                    }
                }
                Ok(Some(Err(error))) => {
                    session_ended(&stats, &queue, format!("consumer failed: {error}"));
                    continue 'connection;
                }
                Ok(None) => {
                    session_ended(&stats, &queue, "the consumer ended".to_owned());
                    continue 'connection;
                }
                // Nothing arrived for a while: done when asked to stop and the queue is
                // empty (deliveries sent before the answer came first).
                Err(_) if stop.load(Ordering::SeqCst) => {
                    if !client.is_connected() {
                        continue 'connection;
                    }
                    let Some(Ok(state)) = within_step(client.try_queue_state(&queue)).await else {
                        continue 'connection;
                    };
                    if state.map_or(0, |state| state.messages) == 0 {
                        match tokio::time::timeout(READER_TICK, consumer.next()).await {
                            Ok(Some(Ok(delivery))) => {
                                record(&delivery.data);
                                let ack = delivery.acker.ack(BasicAckOptions::default());
                                let _ = within_step(ack).await;
                            }
                            _ => {
                                client.close().await;
                                return;
                            }
                        }
                    }
                }
                // Idle for a while with outcomes waiting: the consumer stalled. Start over.
                Err(_) if idle_since.elapsed() > READER_STALL => {
                    idle_since = Instant::now();
                    let waiting = within_step(client.try_queue_state(&queue))
                        .await
                        .and_then(Result::ok)
                        .flatten()
                        .map_or(0, |state| state.messages);
                    if waiting > 0 {
                        let why = format!("{waiting} outcomes waiting but none delivered");
                        session_ended(&stats, &queue, why);
                        client.close().await;
                        continue 'connection;
                    }
                }
                Err(_) => {}
            }
        }
    }
}

/// What a [`ReplyCollector`] received so far.
#[derive(Debug, Default)]
struct Collected {
    /// Every outcome as it arrived, duplicates included; a body that is not a valid
    /// envelope is kept as a JSON string of its text.
    outcomes: Vec<Value>,
    /// The distinct correlation ids among them.
    correlation_ids: HashSet<String>,
}

/// An originator's durable reply queue read by a [`ReplyReader`] that keeps every outcome:
/// an outcome that was recorded but not acked when a connection died comes again, and
/// shows as a duplicate outcome.
#[derive(Debug)]
pub struct ReplyCollector {
    queue: ReplyQueue,
    collected: Arc<Mutex<Collected>>,
    reader: ReplyReader,
}

impl ReplyCollector {
    /// Declares a fresh durable reply queue in `vhost` and starts reading it. A worker must
    /// have declared `warren.replies` first.
    ///
    /// # Panics
    /// When the queue cannot be declared.
    pub async fn start(vhost: &Vhost) -> ReplyCollector {
        // Declared before returning, so that outcomes of requests sent right after are
        // routed, whenever the consumer gets going.
        let client = vhost.connect().await;
        let queue = client.durable_reply_queue().await;
        client.close().await;
        let collected = Arc::new(Mutex::new(Collected::default()));
        let keep = Arc::clone(&collected);
        let reader = ReplyReader::spawn(
            vhost.amqp_url(),
            queue.name(),
            COLLECTOR_PREFETCH,
            move |body| {
                let outcome = outcome_of(body);
                let mut collected = lock(&keep);
                if let Some(correlation_id) = outcome.get("correlationid").and_then(Value::as_str) {
                    collected.correlation_ids.insert(correlation_id.to_owned());
                }
                collected.outcomes.push(outcome);
            },
        );
        ReplyCollector {
            queue,
            collected,
            reader,
        }
    }

    /// The queue name: the `replyto` of the requests.
    pub fn name(&self) -> &str {
        self.queue.name()
    }

    /// Every outcome received so far, duplicates included.
    pub fn outcomes(&self) -> Vec<Value> {
        lock(&self.collected).outcomes.clone()
    }

    /// How many sessions the collector's reader started: more than 1 means it recovered
    /// from a lost connection.
    pub fn sessions(&self) -> usize {
        self.reader.stats().sessions
    }

    /// How many of `correlation_ids` have at least one outcome.
    pub fn count_answered(&self, correlation_ids: &HashSet<String>) -> usize {
        let collected = lock(&self.collected);
        if collected.correlation_ids.len() < correlation_ids.len() {
            collected
                .correlation_ids
                .iter()
                .filter(|id| correlation_ids.contains(*id))
                .count()
        } else {
            correlation_ids
                .iter()
                .filter(|id| collected.correlation_ids.contains(*id))
                .count()
        }
    }

    /// Waits until at least `count` of `correlation_ids` are answered, or `timeout`
    /// passes; returns how many are answered then. Does not panic: the checker says what
    /// is missing.
    pub async fn wait_until_answered(
        &self,
        correlation_ids: &HashSet<String>,
        count: usize,
        timeout: Duration,
    ) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let answered = self.count_answered(correlation_ids);
            if answered >= count || Instant::now() >= deadline {
                if answered < count {
                    let stats = self.reader.stats();
                    eprintln!(
                        "reply queue {}: {answered} of {count} answered within {timeout:?} \
                         ({} sessions, last error: {:?})",
                        self.name(),
                        stats.sessions,
                        stats.last_error
                    );
                }
                return answered;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// `body` as an outcome envelope, or as a JSON string of its text when it is not a valid
/// CloudEvents envelope (the checker counts that as unexpected).
fn outcome_of(body: &[u8]) -> Value {
    if decode_structured(body, &Limits::default()).is_ok()
        && let Ok(envelope) = serde_json::from_slice(body)
    {
        return envelope;
    }
    Value::String(String::from_utf8_lossy(body).into_owned())
}
