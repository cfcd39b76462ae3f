//! Publishing with publisher confirms and `mandatory`.
//!
//! [`Publisher::publish`] sends a message and returns at once with a
//! [`PendingConfirm`]; several can be in flight on one channel, so a message with
//! several outputs waits for one round trip, not one per output.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};
use serde::Serialize;
use warren_messages::{Envelope, STRUCTURED_CONTENT_TYPE};

use crate::auth::Token;
use crate::error::RuntimeError;
use crate::headers::{TRACEPARENT, X_WARREN_TOKEN, short_string};

/// AMQP `delivery_mode` for a message the broker writes to disk.
const PERSISTENT: u8 = 2;

/// AMQP `delivery_mode` for a message the broker keeps in memory only.
const TRANSIENT: u8 = 1;

/// A channel in confirm mode, for publishing.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    confirm_timeout: Duration,
}

/// Where a published message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The broker routed it to at least one queue and took responsibility for it.
    Routed,
    /// It matched no queue and the broker returned it (a mandatory publish).
    Returned,
}

/// A published message whose confirm has not yet arrived.
#[must_use = "a publish is not done until its confirm arrives"]
pub struct PendingConfirm {
    confirm: PublisherConfirm,
    exchange: String,
    routing_key: String,
    timeout: Duration,
}

impl PendingConfirm {
    /// Waits for the broker's confirm. A nack or a timeout is an error; a returned
    /// message is [`Delivered::Returned`], for the caller to judge.
    ///
    /// A `basic.return` carries no delivery tag, and lapin hands it to whichever confirm
    /// of the channel it completes next, which with several publishes in flight may be
    /// another one's (RabbitMQ only promises the return comes before its own ack). So a
    /// return counts as this publish's when it has this publish's exchange and routing
    /// key: whether a message routes depends on those alone, so a message on the same
    /// route was returned means this one would be too. Another route's return is logged,
    /// never taken for this publish's.
    pub async fn wait(self) -> Result<Delivered, RuntimeError> {
        let confirmation = tokio::time::timeout(self.timeout, self.confirm)
            .await
            .map_err(|_elapsed| RuntimeError::ConfirmTimeout(self.timeout))??;
        match confirmation {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(Delivered::Routed),
            Confirmation::Ack(Some(returned)) => {
                let delivery = &returned.delivery;
                if delivery.exchange.as_str() == self.exchange
                    && delivery.routing_key.as_str() == self.routing_key
                {
                    Ok(Delivered::Returned)
                } else {
                    tracing::warn!(
                        exchange = %delivery.exchange,
                        routing_key = %delivery.routing_key,
                        message_id = ?delivery.properties.message_id(),
                        reply_text = %returned.reply_text,
                        "the broker returned a message that no queue takes"
                    );
                    Ok(Delivered::Routed)
                }
            }
            Confirmation::Nack(_) => Err(RuntimeError::Nacked {
                exchange: self.exchange,
                routing_key: self.routing_key,
            }),
        }
    }

    /// Waits for the confirm and treats a returned message as an error.
    pub async fn wait_routed(self) -> Result<(), RuntimeError> {
        let (exchange, routing_key) = (self.exchange.clone(), self.routing_key.clone());
        match self.wait().await? {
            Delivered::Routed => Ok(()),
            Delivered::Returned => Err(RuntimeError::Unroutable {
                exchange,
                routing_key,
            }),
        }
    }
}

impl Publisher {
    /// Opens a channel on `connection` and puts it in confirm mode.
    pub async fn open(
        connection: &Connection,
        confirm_timeout: Duration,
    ) -> Result<Self, RuntimeError> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            confirm_timeout,
        })
    }

    /// How long a publish waits for its confirm (`amqp.confirm_timeout_ms`).
    pub fn confirm_timeout(&self) -> Duration {
        self.confirm_timeout
    }

    /// The underlying channel, e.g. to declare topology on it.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes `envelope` in structured mode, mandatory and persistent, with its key
    /// attributes mirrored into AMQP properties.
    pub async fn publish<D: Serialize>(
        &self,
        exchange: &str,
        routing_key: &str,
        envelope: &Envelope<D>,
    ) -> Result<PendingConfirm, RuntimeError> {
        self.publish_with_token(exchange, routing_key, envelope, None)
            .await
    }

    /// Like [`Publisher::publish`], with `token` (if any) in the `x-warren-token` header:
    /// a request of an originator that proves who it is (docs/security.md, "Tokens").
    pub async fn publish_with_token<D: Serialize>(
        &self,
        exchange: &str,
        routing_key: &str,
        envelope: &Envelope<D>,
        token: Option<&Token>,
    ) -> Result<PendingConfirm, RuntimeError> {
        let body = envelope.to_json_vec()?;
        let properties = properties_with_token(envelope, token.map(Token::as_str));
        self.publish_raw(exchange, routing_key, &body, properties)
            .await
    }

    /// Publishes `body` with `properties` as they are, mandatory.
    pub async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<PendingConfirm, RuntimeError> {
        self.publish_with(exchange, routing_key, body, properties, true)
            .await
    }

    /// Publishes `body` with `properties` as they are; `mandatory` asks the broker to
    /// return it when no queue takes it (otherwise it drops it).
    pub async fn publish_with(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<PendingConfirm, RuntimeError> {
        let name = |text: &str| {
            short_string(text)
                .ok_or_else(|| RuntimeError::NameTooLong(truncate(text, 64).to_owned()))
        };
        // Sending waits until the frames are written; a broker that stopped reading
        // (a blocked connection) must not hang the caller past the confirm timeout.
        let send = self.channel.basic_publish(
            name(exchange)?,
            name(routing_key)?,
            BasicPublishOptions {
                mandatory,
                immediate: false,
            },
            body,
            properties,
        );
        let confirm = tokio::time::timeout(self.confirm_timeout, send)
            .await
            .map_err(|_elapsed| RuntimeError::ConfirmTimeout(self.confirm_timeout))??;
        Ok(PendingConfirm {
            confirm,
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            timeout: self.confirm_timeout,
        })
    }
}

/// The properties of an outcome to reply queue `reply_to`: [`properties_of`], transient
/// when its originator re-sends what a broker restart loses
/// ([`crate::topology::outcomes_are_transient`]).
pub fn outcome_properties_of<D>(envelope: &Envelope<D>, reply_to: &str) -> BasicProperties {
    let properties = properties_of(envelope);
    if crate::topology::outcomes_are_transient(reply_to) {
        properties.with_delivery_mode(TRANSIENT)
    } else {
        properties
    }
}

/// The AMQP properties that mirror an envelope's attributes, so broker tools see them.
///
/// They are a mirror: an attribute too long for its property (over 255 bytes, which
/// decoding never lets in) is left out of it, never cut or panicked on.
pub fn properties_of<D>(envelope: &Envelope<D>) -> BasicProperties {
    properties_with_token(envelope, None)
}

/// [`properties_of`], with `token` (if any) in the `x-warren-token` header.
pub fn properties_with_token<D>(envelope: &Envelope<D>, token: Option<&str>) -> BasicProperties {
    let attributes = &envelope.attributes;
    let mut properties = BasicProperties::default()
        .with_content_type(ShortString::from(STRUCTURED_CONTENT_TYPE))
        .with_delivery_mode(PERSISTENT);
    if let Some(id) = short_string(&attributes.id) {
        properties = properties.with_message_id(id);
    }
    if let Some(correlation_id) = short_string(attributes.correlation_id()) {
        properties = properties.with_correlation_id(correlation_id);
    }
    if let Some(message_type) = short_string(&attributes.message_type) {
        properties = properties.with_type(message_type);
    }
    if let Some(source) = short_string(&attributes.source) {
        properties = properties.with_app_id(source);
    }
    if let Some(time) = attributes.time {
        properties = properties.with_timestamp(time.as_second().max(0).unsigned_abs());
    }
    if let Some(reply_to) = attributes.replyto.as_deref().and_then(short_string) {
        properties = properties.with_reply_to(reply_to);
    }
    if attributes.traceparent.is_some() || token.is_some() {
        let mut headers = FieldTable::default();
        if let Some(traceparent) = &attributes.traceparent {
            headers.insert(
                TRACEPARENT.into(),
                AMQPValue::LongString(LongString::from(traceparent.as_str())),
            );
        }
        if let Some(token) = token {
            headers.insert(
                X_WARREN_TOKEN.into(),
                AMQPValue::LongString(LongString::from(token)),
            );
        }
        properties = properties.with_headers(headers);
    }
    properties
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_messages::{EchoRequest, OutgoingEnvelope};

    #[test]
    fn properties_mirror_the_envelope() {
        let payload: EchoRequest = serde_json::from_str("{}").expect("payload");
        let mut envelope = OutgoingEnvelope::request("/warren/test", &payload).expect("envelope");
        envelope.attributes.replyto = Some("warren.reply.x".into());
        let properties = properties_of(&envelope);
        assert_eq!(
            properties.message_id().as_ref().map(|id| id.as_str()),
            Some(envelope.attributes.id.as_str())
        );
        assert_eq!(
            properties.correlation_id().as_ref().map(|id| id.as_str()),
            Some(envelope.attributes.id.as_str())
        );
        assert_eq!(
            properties.kind().as_ref().map(|kind| kind.as_str()),
            Some("dev.warren.echo.v1")
        );
        assert_eq!(*properties.delivery_mode(), Some(PERSISTENT));
        assert_eq!(
            properties.reply_to().as_ref().map(|queue| queue.as_str()),
            Some("warren.reply.x")
        );
        let headers = properties.headers().as_ref().expect("headers");
        assert!(headers.inner().contains_key("traceparent"));
    }

    #[test]
    fn a_token_travels_in_its_header_beside_the_trace() {
        let payload: EchoRequest = serde_json::from_str("{}").expect("payload");
        let envelope = OutgoingEnvelope::request("/warren/test", &payload).expect("envelope");
        let properties = properties_with_token(&envelope, Some("a.b.c"));
        let headers = properties.headers().as_ref().expect("headers");
        assert_eq!(
            crate::headers::header_text(Some(headers), X_WARREN_TOKEN),
            Some("a.b.c")
        );
        assert!(headers.inner().contains_key(TRACEPARENT));
        // Without a token, the same properties as ever.
        assert_eq!(
            properties_with_token(&envelope, None),
            properties_of(&envelope)
        );
        assert_eq!(
            properties.clone().with_headers(FieldTable::default()),
            properties_of(&envelope).with_headers(FieldTable::default())
        );
    }

    #[test]
    fn attributes_too_long_for_a_property_are_left_out_of_it() {
        let payload: EchoRequest = serde_json::from_str("{}").expect("payload");
        let mut envelope = OutgoingEnvelope::request("/warren/test", &payload).expect("envelope");
        envelope.attributes.correlationid = Some("c".repeat(256));
        envelope.attributes.source = "s".repeat(300);
        envelope.attributes.replyto = Some(format!("warren.reply.{}", "r".repeat(300)));
        let properties = properties_of(&envelope);
        assert_eq!(*properties.correlation_id(), None);
        assert_eq!(*properties.app_id(), None);
        assert_eq!(*properties.reply_to(), None);
        assert!(properties.message_id().is_some());
    }

    #[test]
    fn outcomes_are_transient_to_a_resending_originator_and_persistent_otherwise() {
        use crate::topology::{new_reply_queue_name, new_resend_reply_queue_name};
        use warren_messages::EchoReplied;

        let payload: EchoRequest = serde_json::from_str(r#"{"n":1}"#).expect("payload");
        let result: EchoReplied = serde_json::from_str(r#"{"n":1}"#).expect("result");
        for (reply_queue, delivery_mode) in [
            (new_resend_reply_queue_name(), TRANSIENT),
            (new_reply_queue_name(), PERSISTENT),
        ] {
            let mut request =
                OutgoingEnvelope::request("/warren/test", &payload).expect("envelope");
            request.attributes.replyto = Some(reply_queue.clone());
            let outcome = OutgoingEnvelope::child_of(&request.attributes, "/warren/echo", &result)
                .expect("outcome");
            let properties = outcome_properties_of(&outcome, &reply_queue);
            assert_eq!(
                *properties.delivery_mode(),
                Some(delivery_mode),
                "{reply_queue}"
            );
            // The delivery mode is the only difference from any other message's.
            assert_eq!(
                properties,
                properties_of(&outcome).with_delivery_mode(delivery_mode),
                "{reply_queue}"
            );
        }
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("h\u{e9}llo", 2), "h");
        assert_eq!(truncate("hello", 10), "hello");
    }
}
