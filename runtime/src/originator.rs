//! The originator's side: send requests with a reply queue, read their outcomes.
//!
//! The CLI and load tester use this; so can any Rust service that starts work, without
//! naming a lapin type: an outcome is read either decoded and acked one by one
//! ([`Originator::next_outcome`]), or raw, known by the correlation id and type its AMQP
//! properties carry, and acked in batches ([`Originator::next_raw_outcome`],
//! [`Originator::ack_up_to`]).

use std::borrow::Cow;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Connection, Consumer};
use serde::Serialize;
use serde_json::value::RawValue;
use warren_messages::{
    Attributes, DecodeError, Envelope, Fault, Limits, OutgoingEnvelope, Payload,
};

use crate::auth::Token;
use crate::config::Settings;
use crate::connection::{CLOSE_TIMEOUT, SETUP_TIMEOUT, close_connection, connect};
use crate::delivery::{ack_within, decode_delivery, salvage};
use crate::error::RuntimeError;
use crate::publisher::{PendingConfirm, Publisher};
use crate::topology::{
    check_exchanges, check_originator_name, declare_exchanges, declare_reply_queue,
    new_owned_reply_queue_name, new_reply_queue_name, new_resend_reply_queue_name,
};

/// How long the broker keeps a reply queue nobody consumes.
const REPLY_QUEUE_EXPIRY_MS: u32 = 10 * 60 * 1000;

/// How an originator gets an outcome that a broker restart lost.
///
/// Either way a request gets its outcome as long as the originator lives; they differ in
/// who does the work. docs/reliability.md and docs/performance.md compare them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutcomeRecovery {
    /// The broker keeps outcomes: they are persistent, and each is acked once read. For
    /// an originator that does not re-send (the default).
    #[default]
    BrokerKeeps,
    /// The originator re-sends: outcomes are transient and read without acks, and after
    /// every [`Originator::reconnect`] the originator sends again, under the same message
    /// ids, every request it has no outcome for (workers' inboxes make the repeat
    /// harmless; the originator drops the duplicate outcomes). The broker does less
    /// work per round trip: it writes no outcome to disk and takes no acks.
    OriginatorResends,
}

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
    recovery: OutcomeRecovery,
    /// The token every request carries in its `x-warren-token` header, if any.
    token: Option<Token>,
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

/// One outcome as it arrived on the reply queue: neither decoded nor acked.
///
/// For a reader of many outcomes that needs only which request an outcome answers and
/// its type ([`RawOutcome::correlation_id_and_type`], read from the AMQP properties that
/// warren's publishers mirror from the envelope, so usually without parsing the body),
/// and that acks many at once ([`RawOutcome::into_position`], [`Originator::ack_up_to`]).
/// Reading one costs no allocation beyond the delivery's own.
#[derive(Debug)]
pub struct RawOutcome {
    delivery: Delivery,
    /// The originator's limits, for the rare outcome whose body must be decoded.
    limits: Limits,
}

/// Which request an outcome answers, and what it is: its correlation id and its type.
/// Borrowed from the AMQP properties when they carry both, owned when decoded from the
/// body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationAndType<'a> {
    /// The correlation id: the id of the request the outcome answers.
    pub correlation_id: Cow<'a, str>,
    /// The outcome's message type, e.g. `dev.warren.fault.v1`.
    pub message_type: Cow<'a, str>,
}

impl RawOutcome {
    /// The body exactly as it arrived.
    #[inline]
    pub fn body(&self) -> &[u8] {
        &self.delivery.data
    }

    /// The delivery tag: the outcome's position among those delivered on the current
    /// connection's consumer (from 1, in delivery order).
    #[inline]
    pub fn delivery_tag(&self) -> u64 {
        self.delivery.delivery_tag
    }

    /// The correlation id and type from the AMQP properties when both are there (warren's
    /// publishers mirror them from the envelope), else from the decoded body (its
    /// `correlationid`, or its `id` for a message that started the work). `None` when
    /// the properties lack them and the body cannot be decoded: an unreadable outcome.
    // Inlined into the reader's loop (a cross-crate call otherwise), like the property
    // getters it wraps; decoding the body is the cold path.
    #[inline]
    pub fn correlation_id_and_type(&self) -> Option<CorrelationAndType<'_>> {
        let properties = &self.delivery.properties;
        if let (Some(correlation_id), Some(message_type)) =
            (properties.correlation_id(), properties.kind())
        {
            return Some(CorrelationAndType {
                correlation_id: Cow::Borrowed(correlation_id.as_str()),
                message_type: Cow::Borrowed(message_type.as_str()),
            });
        }
        correlation_id_and_type_of_body(&self.delivery, &self.limits)
    }

    /// Where this outcome stands in the reply queue's delivery order, to ack it and every
    /// outcome before it with [`Originator::ack_up_to`]; the body is dropped.
    #[inline]
    pub fn into_position(self) -> OutcomePosition {
        OutcomePosition {
            acker: self.delivery.acker,
            delivery_tag: self.delivery.delivery_tag,
        }
    }

    /// Decodes the outcome; the position to ack it at is returned beside it.
    fn decode(self) -> (Outcome, OutcomePosition) {
        let Delivery {
            delivery_tag,
            properties,
            data,
            acker,
            ..
        } = self.delivery;
        let envelope = decode_delivery(&data, &properties, &self.limits).map(|envelope| Envelope {
            attributes: envelope.attributes,
            data: envelope.data.to_owned(),
        });
        let salvaged = match &envelope {
            Ok(_) => Attributes::default(),
            Err(_) => salvage(&data, &properties, &self.limits),
        };
        let outcome = Outcome {
            body: data,
            envelope,
            salvaged,
        };
        (
            outcome,
            OutcomePosition {
                acker,
                delivery_tag,
            },
        )
    }
}

/// An outcome's correlation id and type from its decoded body, for one whose AMQP
/// properties do not carry both.
#[cold]
fn correlation_id_and_type_of_body(
    delivery: &Delivery,
    limits: &Limits,
) -> Option<CorrelationAndType<'static>> {
    let envelope = decode_delivery(&delivery.data, &delivery.properties, limits).ok()?;
    let attributes = envelope.attributes;
    let correlation_id = attributes.correlationid.unwrap_or(attributes.id);
    Some(CorrelationAndType {
        correlation_id: Cow::Owned(correlation_id),
        message_type: Cow::Owned(attributes.message_type),
    })
}

/// An outcome's place in the reply queue's delivery order, kept to ack it, and every
/// outcome delivered before it, at once ([`Originator::ack_up_to`]).
///
/// It belongs to the connection that delivered it: after [`Originator::reconnect`] it
/// can no longer be acked (the broker delivers those outcomes again), and acking it
/// fails instead of acking another connection's deliveries.
#[derive(Debug)]
pub struct OutcomePosition {
    acker: Acker,
    delivery_tag: u64,
}

impl OutcomePosition {
    /// The delivery tag of the outcome it was taken from.
    #[inline]
    pub fn delivery_tag(&self) -> u64 {
        self.delivery_tag
    }
}

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
        Self::connect_with(
            settings,
            connection_name,
            prefetch,
            setup_timeout,
            OutcomeRecovery::BrokerKeeps,
        )
        .await
    }

    /// Like [`Originator::connect_within`], with outcomes recovered as `recovery` says.
    /// With [`OutcomeRecovery::OriginatorResends`] the caller must send again every
    /// request still waiting after each [`Originator::reconnect`].
    pub async fn connect_with(
        settings: &Settings,
        connection_name: &str,
        prefetch: u16,
        setup_timeout: Duration,
        recovery: OutcomeRecovery,
    ) -> Result<Self, RuntimeError> {
        Self::connect_with_token(
            settings,
            connection_name,
            prefetch,
            setup_timeout,
            recovery,
            None,
        )
        .await
    }

    /// Like [`Originator::connect_with`], every request carrying `token` (see
    /// [`Originator::set_token`]). When the token's subject is an originator name
    /// ([`check_originator_name`]), the reply queue is named after it
    /// (`warren.reply.<subject>.<uuid>`): the only reply queues a worker that requires
    /// tokens answers for that subject, and the only ones the originator's own broker
    /// user may declare and read (`warren topology apply --originator`;
    /// docs/security.md, "Guarded replies").
    pub async fn connect_with_token(
        settings: &Settings,
        connection_name: &str,
        prefetch: u16,
        setup_timeout: Duration,
        recovery: OutcomeRecovery,
        token: Option<Token>,
    ) -> Result<Self, RuntimeError> {
        let resend = recovery == OutcomeRecovery::OriginatorResends;
        let owner = token
            .as_ref()
            .and_then(Token::claimed_subject)
            .filter(|subject| check_originator_name(subject).is_ok());
        let reply_queue = match (owner, resend) {
            (Some(owner), resend) => new_owned_reply_queue_name(&owner, resend),
            (None, false) => new_reply_queue_name(),
            (None, true) => new_resend_reply_queue_name(),
        };
        let mut originator = Self::open(
            settings,
            connection_name,
            prefetch,
            setup_timeout,
            reply_queue,
            recovery,
        )
        .await?;
        originator.token = token;
        Ok(originator)
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
            self.recovery,
        )
        .await?;
        let mut stale = std::mem::replace(self, fresh);
        self.token = stale.token.take();
        close_connection(&stale.connection, "reconnected").await;
        Ok(())
    }

    async fn open(
        settings: &Settings,
        connection_name: &str,
        prefetch: u16,
        setup_timeout: Duration,
        reply_queue: String,
        recovery: OutcomeRecovery,
    ) -> Result<Self, RuntimeError> {
        let set_up = Self::set_up(
            settings,
            connection_name,
            prefetch,
            setup_timeout,
            reply_queue,
            recovery,
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
        recovery: OutcomeRecovery,
    ) -> Result<Self, RuntimeError> {
        let connection = connect(&settings.amqp, connection_name).await?;
        let publisher = Publisher::open(&connection, settings.amqp.confirm_timeout()).await?;
        if settings.amqp.declare_exchanges {
            declare_exchanges(&connection).await?;
        } else {
            check_exchanges(&connection).await?;
        }
        declare_reply_queue(publisher.channel(), &reply_queue, REPLY_QUEUE_EXPIRY_MS).await?;
        let consume_channel = connection.create_channel().await?;
        consume_channel
            .basic_qos(prefetch.max(1), BasicQosOptions::default())
            .await?;
        let options = BasicConsumeOptions {
            no_ack: recovery == OutcomeRecovery::OriginatorResends,
            ..BasicConsumeOptions::default()
        };
        let consumer = consume_channel
            .basic_consume(
                reply_queue.as_str().into(),
                "".into(),
                options,
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
            recovery,
            token: None,
        })
    }

    /// How this originator recovers outcomes a broker restart lost.
    pub fn recovery(&self) -> OutcomeRecovery {
        self.recovery
    }

    /// The reply queue's name, to put in a request's `replyto`.
    pub fn reply_queue(&self) -> &str {
        &self.reply_queue
    }

    /// Attaches `token` to every request sent from now on (`x-warren-token`), kept
    /// across [`Originator::reconnect`]; `None` sends none. Workers that require tokens
    /// (`auth.required`) refuse a request without a valid one (docs/security.md,
    /// "Tokens").
    pub fn set_token(&mut self, token: Option<Token>) {
        self.token = token;
    }

    /// The token every request carries, if any.
    pub fn token(&self) -> Option<&Token> {
        self.token.as_ref()
    }

    /// Publishes `envelope` to `exchange` with its type as routing key, and the
    /// originator's token, if it has one. Await the returned confirm:
    /// [`crate::Delivered::Returned`] means no worker consumes the type.
    pub async fn send<D: Serialize>(
        &self,
        exchange: &str,
        envelope: &Envelope<D>,
    ) -> Result<PendingConfirm, RuntimeError> {
        self.publisher
            .publish_with_token(
                exchange,
                &envelope.attributes.message_type,
                envelope,
                self.token.as_ref(),
            )
            .await
    }

    /// A handle on this connection's confirm-mode publisher, for publishes that run
    /// while [`Originator::next_raw_outcome`] borrows the originator (the load tester).
    /// It dies with the connection: take a new one after [`Originator::reconnect`]. It
    /// attaches no token by itself: see [`Publisher::publish_with_token`].
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// The next outcome from the reply queue as it arrived: neither decoded nor acked.
    /// For a reader of many outcomes that reads only what it needs and acks several at
    /// once ([`Originator::ack_up_to`]); unacked outcomes count against the prefetch.
    /// Unlike [`Originator::next_outcome`] it is cancel-safe, so it can be a branch of a
    /// `select!`. An error means the connection or the consumer is gone:
    /// [`Originator::reconnect`].
    pub async fn next_raw_outcome(&mut self) -> Result<RawOutcome, RuntimeError> {
        match self.consumer.next().await {
            Some(delivery) => Ok(RawOutcome {
                delivery: delivery?,
                limits: self.limits,
            }),
            None => Err(RuntimeError::ConsumerCancelled(self.reply_queue.clone())),
        }
    }

    /// Acks the outcome at `position` and every outcome delivered before it (`multiple`),
    /// bounded by `amqp.confirm_timeout_ms`. An error means the connection is gone (or
    /// `position` is from one before the last [`Originator::reconnect`]): reconnect, and
    /// the unacked outcomes come again.
    /// With [`OutcomeRecovery::OriginatorResends`] outcomes are read without acks, and
    /// this does nothing.
    pub async fn ack_up_to(&self, position: &OutcomePosition) -> Result<(), RuntimeError> {
        if self.recovery == OutcomeRecovery::OriginatorResends {
            return Ok(());
        }
        ack_within(&position.acker, true, self.publisher.confirm_timeout()).await
    }

    /// The next outcome from the reply queue, decoded and acked. An error means the
    /// connection or the consumer is gone: [`Originator::reconnect`].
    pub async fn next_outcome(&mut self) -> Result<Outcome, RuntimeError> {
        let (outcome, position) = self.next_raw_outcome().await?.decode();
        if self.recovery == OutcomeRecovery::BrokerKeeps {
            ack_within(&position.acker, false, self.publisher.confirm_timeout()).await?;
        }
        Ok(outcome)
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

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::BasicProperties;

    fn raw_outcome(properties: BasicProperties, body: &[u8]) -> RawOutcome {
        let mut delivery = Delivery::mock(7, "".into(), "".into(), false, body.to_vec());
        delivery.properties = properties;
        RawOutcome {
            delivery,
            limits: Limits::default(),
        }
    }

    fn labels(outcome: &RawOutcome) -> Option<(String, String)> {
        outcome.correlation_id_and_type().map(|labels| {
            (
                labels.correlation_id.into_owned(),
                labels.message_type.into_owned(),
            )
        })
    }

    #[test]
    fn outcomes_are_read_from_properties_or_else_the_body() {
        let properties = BasicProperties::default()
            .with_correlation_id("c-1".into())
            .with_type("dev.warren.echo.replied.v1".into());
        let outcome = raw_outcome(properties.clone(), b"not even JSON");
        let read = outcome
            .correlation_id_and_type()
            .expect("from the properties");
        assert!(
            matches!(read.correlation_id, Cow::Borrowed("c-1")),
            "borrowed, not copied: {read:?}"
        );
        assert_eq!(read.message_type, "dev.warren.echo.replied.v1");
        assert_eq!(outcome.body(), b"not even JSON");
        assert_eq!(outcome.delivery_tag(), 7);

        // No AMQP properties: the body is decoded instead.
        let body = serde_json::json!({
            "specversion": "1.0",
            "id": "x",
            "source": "/t",
            "type": Fault::TYPE,
            "correlationid": "c-2",
            "data": {},
        })
        .to_string();
        assert_eq!(
            labels(&raw_outcome(BasicProperties::default(), body.as_bytes())),
            Some(("c-2".to_owned(), Fault::TYPE.to_owned()))
        );
        // Only one of the two properties: the body still decides.
        let only_type = BasicProperties::default().with_type("dev.warren.echo.replied.v1".into());
        assert_eq!(
            labels(&raw_outcome(only_type, body.as_bytes())),
            Some(("c-2".to_owned(), Fault::TYPE.to_owned()))
        );
        // A message that started the work is its own correlation.
        let started = serde_json::json!({
            "specversion": "1.0",
            "id": "x",
            "source": "/t",
            "type": "dev.warren.echo.replied.v1",
            "data": {},
        })
        .to_string();
        assert_eq!(
            labels(&raw_outcome(BasicProperties::default(), started.as_bytes())),
            Some(("x".to_owned(), "dev.warren.echo.replied.v1".to_owned()))
        );
        assert_eq!(
            labels(&raw_outcome(BasicProperties::default(), b"{}")),
            None
        );
    }

    #[test]
    fn a_raw_outcome_decodes_like_next_outcome_and_keeps_its_position() {
        let (outcome, position) = raw_outcome(BasicProperties::default(), b"{").decode();
        assert_eq!(outcome.body, b"{");
        assert!(outcome.envelope.is_err());
        assert!(outcome.unreadable_fault("/warren/cli/test").is_some());
        assert_eq!(position.delivery_tag(), 7);
        let position = raw_outcome(BasicProperties::default(), b"").into_position();
        assert_eq!(position.delivery_tag(), 7);
    }
}
