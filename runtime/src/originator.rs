//! The originator's side: send requests with a reply queue, read their outcomes.
//!
//! The CLI and load tester use this; so can any Rust service that starts work.

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use serde::Serialize;
use serde_json::value::RawValue;
use warren_messages::{DecodeError, Envelope, Limits};

use crate::config::Settings;
use crate::connection::{CLOSE_TIMEOUT, close_connection, connect, within_setup_timeout};
use crate::delivery::{ack_within, decode_delivery};
use crate::error::RuntimeError;
use crate::publisher::{PendingConfirm, Publisher};
use crate::topology::{declare_exchanges, declare_reply_queue, new_reply_queue_name};

/// How long the broker keeps a reply queue nobody consumes.
const REPLY_QUEUE_EXPIRY_MS: u32 = 10 * 60 * 1000;

/// A connection that sends requests and owns one reply queue.
///
/// The reply queue is durable and outlives the connection (it expires after ten idle
/// minutes), so after a lost connection [`Originator::reconnect`] picks up the outcomes
/// that arrived meanwhile.
pub struct Originator {
    connection_name: String,
    prefetch: u16,
    connection: Connection,
    publisher: Publisher,
    consume_channel: Channel,
    reply_queue: String,
    consumer: Consumer,
}

/// One outcome read from the reply queue.
#[derive(Debug)]
pub struct Outcome {
    /// The body exactly as it arrived.
    pub body: Vec<u8>,
    /// The decoded envelope, or why it could not be decoded.
    pub envelope: Result<Envelope<Box<RawValue>>, DecodeError>,
}

impl Originator {
    /// Connects, declares the shared exchanges and a fresh reply queue, and starts
    /// consuming it with `prefetch` outcomes in flight.
    pub async fn connect(
        settings: &Settings,
        connection_name: &str,
        prefetch: u16,
    ) -> Result<Self, RuntimeError> {
        Self::open(settings, connection_name, prefetch, new_reply_queue_name()).await
    }

    /// Replaces the connection with a new one, keeping the reply queue (declared
    /// again in case it expired). Call it after any error from this originator.
    pub async fn reconnect(&mut self, settings: &Settings) -> Result<(), RuntimeError> {
        let fresh = Self::open(
            settings,
            &self.connection_name,
            self.prefetch,
            self.reply_queue.clone(),
        )
        .await?;
        let stale = std::mem::replace(self, fresh);
        close_connection(&stale.connection, "reconnected").await;
        Ok(())
    }

    async fn open(
        settings: &Settings,
        connection_name: &str,
        prefetch: u16,
        reply_queue: String,
    ) -> Result<Self, RuntimeError> {
        within_setup_timeout(Self::set_up(
            settings,
            connection_name,
            prefetch,
            reply_queue,
        ))
        .await
    }

    async fn set_up(
        settings: &Settings,
        connection_name: &str,
        prefetch: u16,
        reply_queue: String,
    ) -> Result<Self, RuntimeError> {
        let connection = connect(&settings.amqp, connection_name).await?;
        let publisher = Publisher::open(&connection, settings.amqp.confirm_timeout()).await?;
        declare_exchanges(publisher.channel()).await?;
        declare_reply_queue(publisher.channel(), &reply_queue, REPLY_QUEUE_EXPIRY_MS).await?;
        let consume_channel = connection.create_channel().await?;
        consume_channel
            .basic_qos(prefetch.max(1), BasicQosOptions::default())
            .await?;
        let consumer = consume_channel
            .basic_consume(
                reply_queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Self {
            connection_name: connection_name.to_owned(),
            prefetch,
            connection,
            publisher,
            consume_channel,
            reply_queue,
            consumer,
        })
    }

    /// The reply queue's name, to put in a request's `replyto`.
    pub fn reply_queue(&self) -> &str {
        &self.reply_queue
    }

    /// Publishes `envelope` to `exchange` with its type as routing key. Await the
    /// returned confirm: [`crate::Delivered::Returned`] means no worker consumes the type.
    pub async fn send<D: Serialize>(
        &self,
        exchange: &str,
        envelope: &Envelope<D>,
    ) -> Result<PendingConfirm, RuntimeError> {
        self.publisher
            .publish(exchange, &envelope.attributes.message_type, envelope)
            .await
    }

    /// A handle on this connection's confirm-mode publisher, for publishes that run
    /// while [`Originator::next_delivery`] borrows the originator (the load tester). It
    /// dies with the connection: take a new one after [`Originator::reconnect`].
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// The next delivery from the reply queue as it arrived: neither decoded nor acked.
    /// For a reader of many outcomes that parses only what it needs and acks several at
    /// once (`multiple`). Unlike [`Originator::next_outcome`] it is cancel-safe, so it
    /// can be a branch of a `select!`. An error means the connection or the consumer is
    /// gone: [`Originator::reconnect`].
    pub async fn next_delivery(&mut self) -> Result<lapin::message::Delivery, RuntimeError> {
        match self.consumer.next().await {
            Some(delivery) => Ok(delivery?),
            None => Err(RuntimeError::ConsumerCancelled(self.reply_queue.clone())),
        }
    }

    /// The next outcome from the reply queue, acked. An error means the connection or
    /// the consumer is gone: [`Originator::reconnect`].
    pub async fn next_outcome(&mut self) -> Result<Outcome, RuntimeError> {
        let delivery = self.next_delivery().await?;
        let envelope = decode_delivery(&delivery.data, &delivery.properties, &Limits::default())
            .map(|envelope| Envelope {
                attributes: envelope.attributes,
                data: envelope.data.to_owned(),
            });
        ack_within(&delivery.acker, false, self.publisher.confirm_timeout()).await?;
        Ok(Outcome {
            body: delivery.data,
            envelope,
        })
    }

    /// Deletes the reply queue and closes the connection, each bounded by
    /// [`CLOSE_TIMEOUT`]: a reply queue left behind expires by itself.
    pub async fn close(self) -> Result<(), RuntimeError> {
        let delete = self.consume_channel.queue_delete(
            self.reply_queue.as_str().into(),
            QueueDeleteOptions::default(),
        );
        let deleted = tokio::time::timeout(CLOSE_TIMEOUT, delete).await;
        close_connection(&self.connection, "done").await;
        if let Ok(result) = deleted {
            result?;
        }
        Ok(())
    }
}
