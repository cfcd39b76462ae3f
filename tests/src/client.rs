//! The test's own AMQP client: [`BrokerClient`], one connection to any AMQP URL (a vhost of
//! the shared broker, a private node, or a proxy in front of either).
//!
//! Publishing goes through one channel in confirm mode, every message `mandatory`; gets
//! through one channel of their own; every other operation (a passive declare, a consume,
//! a reply queue's declaration) opens a channel of its own, since the broker closes a
//! channel on which a declare fails. Every wait on the broker is bounded: the panicking
//! operations by [`crate::BROKER_ANSWER_TIMEOUT`] (or [`PUBLISH_TIMEOUT`]), the `try_` ones are
//! left for the caller to bound (a reader of outcomes gives each step [`crate::READER_STEP`]).

use std::time::Duration;

use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer, ErrorKind};
use tokio::time::Instant;

use crate::replies::{ReplyQueue, ReplyQueueLifetime};
use crate::{
    OutgoingMessage, POLL_INTERVAL, READER_STEP, ReceivedMessage, close_channel, close_connection,
    within_broker_timeout,
};

/// How long publishing a batch may take, confirms included: longer than any resource alarm
/// a test holds, since a blocked connection confirms nothing until the alarm clears.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(120);

/// The pause between two attempts of [`BrokerClient::connect_within`].
const RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// What a passive declare says about a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueState {
    /// Messages ready for delivery (not counting delivered, unacked ones).
    pub messages: u32,
    /// Consumers attached.
    pub consumers: u32,
}

/// A connection of the test's own, with a publisher-confirm channel and a channel for gets.
pub struct BrokerClient {
    amqp_url: String,
    connection: Connection,
    publisher: Channel,
    getter: Channel,
}

impl BrokerClient {
    /// Connects to `amqp_url` and opens its channels, without a deadline of its own: the
    /// caller bounds it.
    pub async fn try_connect(amqp_url: &str) -> Result<BrokerClient, lapin::Error> {
        let properties = ConnectionProperties::default().with_connection_name("warren-e2e".into());
        let connection = Connection::connect(amqp_url, properties).await?;
        let publisher = connection.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let getter = connection.create_channel().await?;
        Ok(BrokerClient {
            amqp_url: amqp_url.to_owned(),
            connection,
            publisher,
            getter,
        })
    }

    /// Connects to `amqp_url`.
    ///
    /// # Panics
    /// When the broker cannot be reached or does not answer within
    /// [`crate::BROKER_ANSWER_TIMEOUT`].
    pub async fn connect(amqp_url: &str) -> BrokerClient {
        within_broker_timeout("connect", Self::try_connect(amqp_url))
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {amqp_url}: {error}"))
    }

    /// Connects to `amqp_url`, trying again (each attempt given [`READER_STEP`]) until it
    /// works or `timeout` passes: what an originator does after its broker went away.
    ///
    /// # Panics
    /// When no connection works within `timeout`.
    pub async fn connect_within(amqp_url: &str, timeout: Duration) -> BrokerClient {
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout(READER_STEP, Self::try_connect(amqp_url)).await {
                Ok(Ok(client)) => return client,
                Ok(Err(error)) => assert!(
                    Instant::now() < deadline,
                    "cannot connect to {amqp_url} within {timeout:?}: {error}"
                ),
                Err(_) => assert!(
                    Instant::now() < deadline,
                    "cannot connect to {amqp_url} within {timeout:?}: the attempt hung"
                ),
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    }

    /// The underlying connection.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Whether the connection is still up.
    pub fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    /// Closes the connection, best effort (bounded by [`crate::CLOSE_TIMEOUT`]).
    pub async fn close(&self) {
        close_connection(&self.connection, "done").await;
    }

    /// A new channel of its own.
    ///
    /// # Panics
    /// When it cannot be opened within [`crate::BROKER_ANSWER_TIMEOUT`].
    pub async fn create_channel(&self) -> Channel {
        within_broker_timeout("open a channel", self.connection.create_channel())
            .await
            .unwrap_or_else(|error| panic!("cannot open a channel: {error}"))
    }

    /// The state of `queue`, or `None` when it does not exist; without a deadline of its
    /// own.
    pub async fn try_queue_state(&self, queue: &str) -> Result<Option<QueueState>, lapin::Error> {
        let channel = self.connection.create_channel().await?;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(declared) => {
                close_channel(&channel, "inspected").await;
                Ok(Some(QueueState {
                    messages: declared.message_count(),
                    consumers: declared.consumer_count(),
                }))
            }
            // The broker closed the channel already.
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The state of `queue`, or `None` when it does not exist.
    ///
    /// # Panics
    /// When the broker cannot be asked, or does not answer within
    /// [`crate::BROKER_ANSWER_TIMEOUT`].
    pub async fn queue_state(&self, queue: &str) -> Option<QueueState> {
        within_broker_timeout(
            &format!("inspect queue {queue}"),
            self.try_queue_state(queue),
        )
        .await
        .unwrap_or_else(|error| panic!("cannot inspect queue {queue}: {error}"))
    }

    /// Polls `queue` until `condition` holds, and returns its state then.
    ///
    /// # Panics
    /// When the condition does not hold within `timeout`; `what` says what was awaited.
    pub async fn wait_for_queue(
        &self,
        queue: &str,
        timeout: Duration,
        what: &str,
        condition: impl Fn(&QueueState) -> bool,
    ) -> QueueState {
        let deadline = Instant::now() + timeout;
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        loop {
            poll.tick().await;
            let state = self.queue_state(queue).await;
            if let Some(state) = state.filter(&condition) {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "queue {queue}: {what} did not happen within {timeout:?} (last state: {state:?})"
            );
        }
    }

    /// Publishes one message as `mandatory` and waits for the broker to confirm it.
    ///
    /// # Panics
    /// When the publish fails, or the broker nacks or returns the message.
    pub async fn publish(&self, message: OutgoingMessage) {
        self.publish_all([message]).await;
    }

    /// Publishes every message as `mandatory`, pipelined, then waits for all the confirms.
    ///
    /// # Panics
    /// When a publish fails, or the broker nacks or returns a message.
    pub async fn publish_all(&self, messages: impl IntoIterator<Item = OutgoingMessage>) {
        if let Err(error) = self.try_publish_all(messages).await {
            panic!("{error}");
        }
    }

    /// [`BrokerClient::publish_all`] that reports a failure instead of panicking: `Ok` when
    /// the broker confirmed every message as routed within [`PUBLISH_TIMEOUT`].
    pub async fn try_publish_all(
        &self,
        messages: impl IntoIterator<Item = OutgoingMessage>,
    ) -> Result<(), String> {
        tokio::time::timeout(PUBLISH_TIMEOUT, self.publish_and_confirm(messages))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "publishing to {} not confirmed within {PUBLISH_TIMEOUT:?}",
                    self.amqp_url
                ))
            })
    }

    async fn publish_and_confirm(
        &self,
        messages: impl IntoIterator<Item = OutgoingMessage>,
    ) -> Result<(), String> {
        let mut pending = Vec::new();
        for message in messages {
            let confirm = self
                .publisher
                .basic_publish(
                    message.exchange.as_str().into(),
                    message.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message.body,
                    message.properties,
                )
                .await
                .map_err(|error| {
                    format!(
                        "cannot publish to exchange {:?} with key {:?}: {error}",
                        message.exchange, message.routing_key
                    )
                })?;
            pending.push((message.exchange, message.routing_key, confirm));
        }
        for (exchange, routing_key, confirm) in pending {
            let confirmation = confirm.await.map_err(|error| {
                format!("no confirm for exchange {exchange:?} key {routing_key:?}: {error}")
            })?;
            if !confirmation.is_ack() {
                return Err(format!(
                    "the broker nacked a message to exchange {exchange:?} key {routing_key:?}"
                ));
            }
            if let Some(returned) = confirmation.take_message() {
                return Err(format!(
                    "the broker returned a message to exchange {exchange:?} key \
                     {routing_key:?} as unroutable: {} {}",
                    returned.reply_code, returned.reply_text
                ));
            }
        }
        Ok(())
    }

    /// Takes one message from `queue` (acknowledged at once), if one is ready.
    ///
    /// # Panics
    /// When the queue does not exist, or the broker does not answer within
    /// [`crate::BROKER_ANSWER_TIMEOUT`].
    pub async fn try_get(&self, queue: &str) -> Option<ReceivedMessage> {
        let get = self
            .getter
            .basic_get(queue.into(), BasicGetOptions { no_ack: true });
        let message = within_broker_timeout(&format!("get from queue {queue}"), get)
            .await
            .unwrap_or_else(|error| panic!("cannot get from queue {queue}: {error}"))?;
        Some(ReceivedMessage {
            body: message.delivery.data,
            properties: message.delivery.properties,
            exchange: message.delivery.exchange.as_str().to_owned(),
            routing_key: message.delivery.routing_key.as_str().to_owned(),
        })
    }

    /// Takes the next message from `queue`, polling until one is there or `timeout` passes.
    pub async fn get_within(&self, queue: &str, timeout: Duration) -> Option<ReceivedMessage> {
        let deadline = Instant::now() + timeout;
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        loop {
            if let Some(message) = self.try_get(queue).await {
                return Some(message);
            }
            if Instant::now() >= deadline {
                return None;
            }
            poll.tick().await;
        }
    }

    /// Takes exactly `count` messages from `queue`, waiting up to `timeout` for them all.
    ///
    /// # Panics
    /// When fewer arrive in time.
    pub async fn get_messages(
        &self,
        queue: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<ReceivedMessage> {
        let deadline = Instant::now() + timeout;
        let mut messages = Vec::with_capacity(count);
        while messages.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.get_within(queue, left).await {
                Some(message) => messages.push(message),
                None => panic!(
                    "queue {queue}: only {} of {count} messages within {timeout:?}",
                    messages.len()
                ),
            }
        }
        messages
    }

    /// Takes every message that is ready in `queue` now.
    pub async fn drain(&self, queue: &str) -> Vec<ReceivedMessage> {
        let mut messages = Vec::new();
        while let Some(message) = self.try_get(queue).await {
            messages.push(message);
        }
        messages
    }

    /// Consumes `queue` with manual acknowledgements and at most `prefetch` unacked
    /// deliveries, on a channel of its own; without a deadline of its own.
    pub async fn consume(&self, queue: &str, prefetch: u16) -> Result<Consumer, lapin::Error> {
        let channel = self.connection.create_channel().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        channel
            .basic_consume(
                queue.into(),
                format!("warren-test-{}", uuid::Uuid::new_v4())
                    .as_str()
                    .into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
    }

    /// Declares a reply queue exclusive to this connection, so it goes with the test
    /// (see [`ReplyQueue::declare`]).
    pub async fn reply_queue(&self) -> ReplyQueue {
        ReplyQueue::declare(self, ReplyQueueLifetime::Connection).await
    }

    /// Declares a durable reply queue that outlives this connection and a restart of the
    /// broker (see [`ReplyQueue::declare`]).
    pub async fn durable_reply_queue(&self) -> ReplyQueue {
        ReplyQueue::declare(self, ReplyQueueLifetime::Durable).await
    }
}

fn is_not_found(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ProtocolError(amqp_error)
            if *amqp_error.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
    )
}
