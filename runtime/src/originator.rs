//! The originator's side: send requests with a reply queue, read their outcomes.
//!
//! The CLI and load tester use this; so can any Rust service that starts work.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use serde::Serialize;
use serde_json::value::RawValue;
use warren_messages::{
    Attributes, DecodeError, Envelope, Fault, Limits, OutgoingEnvelope, Payload,
};

use crate::config::Settings;
use crate::connection::{CLOSE_TIMEOUT, SETUP_TIMEOUT, close_connection, connect};
use crate::delivery::{ack_within, decode_delivery, salvage};
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
    /// How long connecting may take, to consume-ok.
    setup_timeout: Duration,
    /// What an outcome may be: the limits workers check their outputs against.
    limits: Limits,
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
    /// For an outcome that could not be decoded, what could still be read of its
    /// attributes: its correlation id ties it to its request. Default otherwise.
    pub salvaged: Attributes,
}

impl Outcome {
    /// For an outcome that could not be decoded, a fault standing in for it: code
    /// [`UNREADABLE_OUTCOME`], the decode error as its message, tied to the request by
    /// the correlation id that could be read (if any). An originator reports it like any
    /// fault, so no outcome is dropped in silence. `None` for a readable outcome.
    pub fn unreadable_fault(&self, source: &str) -> Option<OutgoingEnvelope> {
        let error = self.envelope.as_ref().err()?;
        let fault = Fault {
            code: UNREADABLE_OUTCOME.to_owned(),
            message: format!("an outcome arrived that could not be read: {error}"),
            retryable: false,
            worker: self
                .salvaged
                .source
                .strip_prefix("/warren/")
                .unwrap_or("unknown")
                .to_owned(),
            stage: "receive".to_owned(),
            attempts: 1,
            details: serde_json::json!({
                "reason": error.reason_code(),
                "size": self.body.len(),
                "type": self.salvaged.message_type,
            }),
        };
        let mut attributes = Attributes::request_of_type(Fault::TYPE, Some(Fault::SCHEMA), source);
        attributes.correlationid = self.salvaged.correlationid.clone();
        attributes.causationid = Some(self.salvaged.id.clone()).filter(|id| !id.is_empty());
        Some(Envelope {
            attributes,
            data: serde_json::value::to_raw_value(&fault).ok()?,
        })
    }
}

/// The fault code an originator reports for an outcome it could not read.
pub const UNREADABLE_OUTCOME: &str = "unreadable_outcome";

impl Originator {
    /// Connects, declares the shared exchanges and a fresh reply queue, and starts
    /// consuming it with `prefetch` outcomes in flight.
    pub async fn connect(
        settings: &Settings,
        connection_name: &str,
        prefetch: u16,
    ) -> Result<Self, RuntimeError> {
        Self::connect_within(settings, connection_name, prefetch, SETUP_TIMEOUT).await
    }

    /// Like [`Originator::connect`], giving up after `setup_timeout` (from the TCP
    /// connect to consume-ok) instead of [`SETUP_TIMEOUT`]: for a caller with a deadline
    /// of its own, such as a command's `--timeout`. Reconnects use it too.
    pub async fn connect_within(
        settings: &Settings,
        connection_name: &str,
        prefetch: u16,
        setup_timeout: Duration,
    ) -> Result<Self, RuntimeError> {
        Self::open(
            settings,
            connection_name,
            prefetch,
            setup_timeout,
            new_reply_queue_name(),
        )
        .await
    }

    /// Replaces the connection with a new one, keeping the reply queue (declared
    /// again in case it expired). Call it after any error from this originator.
    pub async fn reconnect(&mut self, settings: &Settings) -> Result<(), RuntimeError> {
        let fresh = Self::open(
            settings,
            &self.connection_name,
            self.prefetch,
            self.setup_timeout,
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
        setup_timeout: Duration,
        reply_queue: String,
    ) -> Result<Self, RuntimeError> {
        let set_up = Self::set_up(
            settings,
            connection_name,
            prefetch,
            setup_timeout,
            reply_queue,
        );
        tokio::time::timeout(setup_timeout, set_up)
            .await
            .map_err(|_elapsed| RuntimeError::SetupTimeout(setup_timeout))?
    }

    async fn set_up(
        settings: &Settings,
        connection_name: &str,
        prefetch: u16,
        setup_timeout: Duration,
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
            setup_timeout,
            limits: settings.limits.decode_limits(),
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
        let envelope =
            decode_delivery(&delivery.data, &delivery.properties, &self.limits).map(|envelope| {
                Envelope {
                    attributes: envelope.attributes,
                    data: envelope.data.to_owned(),
                }
            });
        let salvaged = match &envelope {
            Ok(_) => Attributes::default(),
            Err(_) => salvage(&delivery.data, &delivery.properties, &self.limits),
        };
        ack_within(&delivery.acker, false, self.publisher.confirm_timeout()).await?;
        Ok(Outcome {
            body: delivery.data,
            envelope,
            salvaged,
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
