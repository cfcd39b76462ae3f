//! The messages a test publishes and the ones it takes from queues: [`Request`] (a request
//! envelope and its AMQP message), [`OutgoingMessage`], [`ReceivedMessage`], and reading an
//! outcome envelope ([`parse_envelope`], [`attribute`]).

use std::collections::BTreeMap;

use lapin::BasicProperties;
use lapin::types::AMQPValue;
use serde_json::Value;
use warren_messages::{Limits, decode_structured};

use crate::{CLOUDEVENTS_CONTENT_TYPE, COMMANDS_EXCHANGE};

/// Parses `body` as a structured-mode CloudEvents 1.0 envelope: first checked with warren's
/// own decoder, then returned as plain JSON for assertions.
///
/// # Panics
/// When `body` is not a valid envelope.
pub fn parse_envelope(body: &[u8]) -> Value {
    if let Err(error) = decode_structured(body, &Limits::default()) {
        panic!(
            "not a valid CloudEvents envelope ({error}): {}",
            String::from_utf8_lossy(body)
        );
    }
    serde_json::from_slice(body).expect("a decoded envelope is JSON")
}

/// The string attribute `name` of an envelope, if it has one.
pub fn attribute<'a>(envelope: &'a Value, name: &str) -> Option<&'a str> {
    envelope.get(name).and_then(Value::as_str)
}

/// A message to publish.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// The exchange (`""` is the default exchange, which routes by queue name).
    pub exchange: String,
    /// The routing key.
    pub routing_key: String,
    /// The body, sent as is.
    pub body: Vec<u8>,
    /// The AMQP properties.
    pub properties: BasicProperties,
}

impl OutgoingMessage {
    /// A message straight into `queue` through the default exchange, with content type
    /// [`CLOUDEVENTS_CONTENT_TYPE`] and persistent delivery.
    pub fn to_queue(queue: &str, body: impl Into<Vec<u8>>) -> OutgoingMessage {
        OutgoingMessage {
            exchange: String::new(),
            routing_key: queue.to_owned(),
            body: body.into(),
            properties: cloudevents_properties(),
        }
    }

    /// A command published to [`COMMANDS_EXCHANGE`], routed by its message type.
    pub fn command(message_type: &str, body: impl Into<Vec<u8>>) -> OutgoingMessage {
        OutgoingMessage {
            exchange: COMMANDS_EXCHANGE.to_owned(),
            routing_key: message_type.to_owned(),
            body: body.into(),
            properties: cloudevents_properties(),
        }
    }

    /// The same message with `properties` instead.
    pub fn with_properties(mut self, properties: BasicProperties) -> OutgoingMessage {
        self.properties = properties;
        self
    }
}

/// Properties of a structured-mode CloudEvent: content type
/// [`CLOUDEVENTS_CONTENT_TYPE`], persistent.
pub fn cloudevents_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type(CLOUDEVENTS_CONTENT_TYPE.into())
        .with_delivery_mode(2)
}

/// Properties that mirror a request envelope's attributes, as warren's own publishers set
/// them: `message_id`, `correlation_id`, and `reply_to` when there is one.
pub fn request_properties(attributes: &warren_messages::Attributes) -> BasicProperties {
    let properties = cloudevents_properties()
        .with_message_id(attributes.id.as_str().into())
        .with_correlation_id(attributes.correlation_id().into())
        .with_type(attributes.message_type.as_str().into());
    match &attributes.replyto {
        Some(replyto) => properties.with_reply_to(replyto.as_str().into()),
        None => properties,
    }
}

/// A request envelope the test built, and the message that carries it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The envelope's attributes (its id is also its correlation id).
    pub attributes: warren_messages::Attributes,
    /// The message to publish: a command to [`COMMANDS_EXCHANGE`], routed by type.
    pub message: OutgoingMessage,
}

impl Request {
    /// A new request of `message_type` from `/test` whose `data` is the JSON text `data`
    /// (any JSON, so tests can send payloads that fail their schema), with `replyto` when
    /// given. Its AMQP properties mirror the envelope (see [`request_properties`]).
    ///
    /// # Panics
    /// When `data` is not JSON.
    pub fn new(message_type: &str, data: &str, replyto: Option<&str>) -> Request {
        let schema = warren_messages::catalogue::lookup(message_type).map(|entry| entry.schema);
        let mut attributes =
            warren_messages::Attributes::request_of_type(message_type, schema, "/test");
        attributes.replyto = replyto.map(str::to_owned);
        let data = serde_json::value::RawValue::from_string(data.to_owned())
            .unwrap_or_else(|error| panic!("request data is not JSON ({error}): {data}"));
        let envelope = warren_messages::Envelope {
            attributes: attributes.clone(),
            data,
        };
        let body = envelope
            .to_json_vec()
            .expect("an envelope of valid JSON serializes");
        let message = OutgoingMessage::command(message_type, body)
            .with_properties(request_properties(&attributes));
        Request {
            attributes,
            message,
        }
    }

    /// The correlation id the outcome must carry.
    pub fn correlation_id(&self) -> &str {
        self.attributes.correlation_id()
    }
}

/// A message taken from a queue.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// The body.
    pub body: Vec<u8>,
    /// The AMQP properties.
    pub properties: BasicProperties,
    /// The exchange it was last published to.
    pub exchange: String,
    /// The routing key it was last published with.
    pub routing_key: String,
}

impl ReceivedMessage {
    /// The header `name` as text, when it is a string header.
    pub fn header(&self, name: &str) -> Option<String> {
        let value = self.properties.headers().as_ref()?.inner().get(name)?;
        match value {
            AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into()),
            AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
            _ => None,
        }
    }

    /// The integer header `name` (e.g. `x-warren-attempts`), whatever its integer type.
    pub fn integer_header(&self, name: &str) -> Option<i64> {
        let value = self.properties.headers().as_ref()?.inner().get(name)?;
        match value {
            AMQPValue::LongLongInt(number) => Some(*number),
            AMQPValue::LongInt(number) => Some(i64::from(*number)),
            AMQPValue::LongUInt(number) => Some(i64::from(*number)),
            AMQPValue::ShortInt(number) => Some(i64::from(*number)),
            AMQPValue::ShortUInt(number) => Some(i64::from(*number)),
            AMQPValue::ShortShortInt(number) => Some(i64::from(*number)),
            AMQPValue::ShortShortUInt(number) => Some(i64::from(*number)),
            _ => None,
        }
    }

    /// The `message_id` property.
    pub fn message_id(&self) -> Option<String> {
        self.properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
    }

    /// Every header, as its debug form (for failure messages).
    pub fn headers_debug(&self) -> BTreeMap<String, String> {
        self.properties
            .headers()
            .as_ref()
            .map(|headers| {
                headers
                    .inner()
                    .iter()
                    .map(|(name, value)| {
                        let shown = match value {
                            AMQPValue::LongString(text) => {
                                format!("{:?}", String::from_utf8_lossy(text.as_bytes()))
                            }
                            other => format!("{other:?}"),
                        };
                        (name.as_str().to_owned(), shown)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The body as an outcome envelope.
    ///
    /// # Panics
    /// When it is not a valid CloudEvents envelope.
    pub fn envelope(&self) -> Value {
        parse_envelope(&self.body)
    }
}
