//! What a worker author writes: a [`Handler`] and a [`Manifest`]. No AMQP here.

use std::borrow::Cow;
use std::future::Future;

use serde_json::value::RawValue;
use warren_messages::{Attributes, DecodeError, Envelope, Inbound, Payload, Progress, fault_code};

use crate::auth::Claims;

/// A worker's identity and the message types it consumes and produces.
#[derive(Debug, Clone, Copy)]
pub struct Manifest {
    /// The worker's name: its queue is `warren.<name>`, its binary `warren-<name>`.
    pub name: &'static str,
    /// Command types consumed from `warren.commands`.
    pub commands: &'static [&'static str],
    /// Event types consumed from `warren.events`.
    pub events: &'static [&'static str],
    /// Types the worker publishes (results, events, commands).
    pub produces: &'static [&'static str],
}

impl Manifest {
    /// The manifest as one line of JSON (`name`, `commands`, `events`, `produces`): what
    /// a worker binary prints for `--manifest`, read by `warren topology`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "name": self.name,
            "commands": self.commands,
            "events": self.events,
            "produces": self.produces,
        })
        .to_string()
    }

    /// Checks that the manifest consumes exactly the types the handler's input decodes.
    pub fn check_against<I: Inbound>(&self) -> Result<(), String> {
        let consumed: Vec<&str> = self.commands.iter().chain(self.events).copied().collect();
        crate::topology::check_worker_name(self.name)?;
        for message_type in I::types() {
            if !consumed.contains(message_type) {
                return Err(format!(
                    "the handler decodes {message_type} but the manifest does not consume it"
                ));
            }
        }
        for message_type in consumed {
            if !I::types().contains(&message_type) {
                return Err(format!(
                    "the manifest consumes {message_type} but the handler cannot decode it"
                ));
            }
        }
        Ok(())
    }
}

/// One received message, decoded: its attributes and its typed payload.
#[derive(Debug)]
pub struct Incoming<'a, I> {
    /// The envelope's attributes.
    pub attributes: &'a Attributes,
    /// The decoded payload.
    pub payload: I,
    /// How many times the broker handed this message out before (0 the first time).
    pub delivery_count: u32,
    /// The payload as it arrived, for [`Incoming::identity`].
    data: &'a RawValue,
    /// Who sent it, as its verified token says; `None` when the worker does not require
    /// tokens (`auth.required`).
    claims: Option<&'a Claims>,
}

impl<'a, I: Inbound> Incoming<'a, I> {
    /// Decodes `data` as a message with `attributes`, as the runtime does before it
    /// calls a handler: for a handler's unit tests, and anything else that hands a
    /// handler a message of its own making.
    pub fn decode(attributes: &'a Attributes, data: &'a RawValue) -> Result<Self, DecodeError> {
        let envelope = Envelope {
            attributes: attributes.clone(),
            data,
        };
        Ok(Incoming {
            attributes,
            payload: envelope.decode_data::<I>()?,
            delivery_count: 0,
            data,
            claims: None,
        })
    }

    /// Like [`Incoming::decode`], for a payload already decoded from `data`, sent by
    /// whom `claims` say.
    pub(crate) fn new(
        attributes: &'a Attributes,
        payload: I,
        data: &'a RawValue,
        delivery_count: u32,
        claims: Option<&'a Claims>,
    ) -> Self {
        Incoming {
            attributes,
            payload,
            delivery_count,
            data,
            claims,
        }
    }
}

impl<'a, I> Incoming<'a, I> {
    /// The message's identity, for de-duplication (a worker's inbox keys on it).
    pub fn identity(&self) -> MessageIdentity<'a> {
        MessageIdentity::of(self.attributes, self.data)
    }

    /// Who sent the message, as its verified token says (subject, scopes): `Some` on
    /// every message when the worker requires tokens (`auth.required`), whose runtime
    /// has already refused a message without a valid one, or without the scope its
    /// type requires (`[auth.scopes]`); `None` when it does not.
    pub fn claims(&self) -> Option<&'a Claims> {
        self.claims
    }

    /// This message as sent by whom `claims` say: for a handler's unit tests.
    pub fn with_claims(mut self, claims: &'a Claims) -> Self {
        self.claims = Some(claims);
        self
    }
}

/// Who a message is, for de-duplication: its CloudEvents identity (`source` and `id`,
/// which together name one event), and a fingerprint of what it says, to tell a
/// redelivery of the same message from another message that reuses its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageIdentity<'a> {
    /// The producer, the CloudEvents `source`.
    pub source: &'a str,
    /// The message id, unique within its source.
    pub id: &'a str,
    /// SHA-256, in hex, of the type, subject, correlation id, reply queue and data.
    pub fingerprint: String,
}

impl<'a> MessageIdentity<'a> {
    /// The identity of the message with `attributes` and payload `data`.
    pub fn of(attributes: &'a Attributes, data: &RawValue) -> Self {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        let parts = [
            Some(attributes.message_type.as_str()),
            attributes.subject.as_deref(),
            Some(attributes.correlation_id()),
            attributes.replyto.as_deref(),
            Some(data.get()),
        ];
        for part in parts {
            // Length-prefixed, and absent told apart from empty, so no two different
            // messages hash the same input.
            match part {
                Some(text) => {
                    hasher.update([1]);
                    hasher.update((text.len() as u64).to_le_bytes());
                    hasher.update(text.as_bytes());
                }
                None => hasher.update([0]),
            }
        }
        let digest = hasher.finalize();
        let mut fingerprint = String::with_capacity(64);
        for byte in digest {
            fingerprint.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
            fingerprint.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
        }
        MessageIdentity {
            source: &attributes.source,
            id: &attributes.id,
            fingerprint,
        }
    }
}

/// A worker's business logic: a pure function of the message (and the worker's own
/// store) to its outputs.
///
/// The runtime decodes and validates the message first, and alone acks, publishes,
/// replies, dead-letters and retries.
pub trait Handler: Send + Sync + 'static {
    /// What the handler consumes: one [`Payload`] type, or an enum of several.
    type Input: Inbound;

    /// Handles one message.
    fn handle<'a>(
        &'a self,
        message: Incoming<'a, Self::Input>,
    ) -> impl Future<Output = Result<Outputs, HandlerError>> + Send + 'a;
}

/// Where an output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// To the originator's reply queue, as the request's result.
    Reply,
    /// To `warren.events`.
    Event,
    /// To `warren.commands`.
    Command,
    /// To the originator's reply queue, as news before the outcome, only when the
    /// request asked for it (the `progress` attribute).
    Progress,
}

/// One message a handler asks the runtime to publish. Its id is fixed when it is
/// made, so outputs recorded in a worker's inbox are re-sent with the same ids.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Output {
    pub(crate) id: String,
    pub(crate) route: Route,
    pub(crate) message_type: Cow<'static, str>,
    pub(crate) schema: Cow<'static, str>,
    pub(crate) data: Box<RawValue>,
    /// The output's `subject`, when the handler named one; otherwise the handled
    /// message's. (Absent from outputs recorded before it existed.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) subject: Option<String>,
}

impl Output {
    /// Where it goes.
    pub fn route(&self) -> Route {
        self.route
    }

    /// Its message type, e.g. `dev.warren.echo.replied.v1`.
    pub fn message_type(&self) -> &str {
        &self.message_type
    }

    /// Its message id, fixed when the handler made it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its payload as JSON text.
    pub fn data(&self) -> &RawValue {
        &self.data
    }

    /// Its `subject`, when the handler named one (see [`Outputs::with_subject`]).
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// Its payload as `P`, when it is a `P`: for a handler's unit tests.
    pub fn decode<P: Payload>(&self) -> Option<P> {
        if self.message_type != P::TYPE {
            return None;
        }
        serde_json::from_str(self.data.get()).ok()
    }
}

/// What a handler produced: messages to publish as children of the one it handled.
/// They are published together, and the message is acked once all are confirmed.
///
/// `Outputs` serializes to JSON, so a worker's inbox can record what a message
/// produced and re-send exactly that when the message is redelivered.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Outputs {
    pub(crate) items: Vec<Output>,
}

impl Outputs {
    /// Nothing to publish.
    pub fn none() -> Self {
        Self::default()
    }

    /// The request's result, sent to the originator's reply queue.
    pub fn reply<P: Payload>(payload: &P) -> Result<Self, HandlerError> {
        Self::none().and_reply(payload)
    }

    /// Adds the request's result.
    pub fn and_reply<P: Payload>(self, payload: &P) -> Result<Self, HandlerError> {
        self.push(Route::Reply, payload)
    }

    /// Adds an event, published to `warren.events`.
    pub fn and_event<P: Payload>(self, payload: &P) -> Result<Self, HandlerError> {
        self.push(Route::Event, payload)
    }

    /// Adds a command, published to `warren.commands`.
    pub fn and_command<P: Payload>(self, payload: &P) -> Result<Self, HandlerError> {
        self.push(Route::Command, payload)
    }

    /// Adds news for the originator, `dev.warren.progress.v1` with this step's `status`
    /// (e.g. `reserved`), sent only when the request asked for progress. The runtime
    /// fills in the stage and the worker.
    pub fn and_progress(self, status: &str) -> Result<Self, HandlerError> {
        self.push(
            Route::Progress,
            &Progress {
                stage: String::new(),
                status: status.to_owned(),
                worker: String::new(),
            },
        )
    }

    fn push<P: Payload>(mut self, route: Route, payload: &P) -> Result<Self, HandlerError> {
        let data = serde_json::value::to_raw_value(payload).map_err(|error| {
            HandlerError::permanent(
                fault_code::INTERNAL,
                format!("cannot encode {}: {error}", P::TYPE),
            )
        })?;
        self.items.push(Output {
            id: warren_messages::new_message_id(),
            route,
            message_type: Cow::Borrowed(P::TYPE),
            schema: Cow::Borrowed(P::SCHEMA),
            data,
            subject: None,
        });
        Ok(self)
    }

    /// Names the business key of everything added so far (an order id): their
    /// `subject`, which the next hops carry on, and which a failure anywhere later is
    /// announced with (`dev.warren.request.failed.v1`), so that the work done for it can
    /// be undone. Without it, outputs carry the handled message's subject. Call it last.
    pub fn with_subject(mut self, subject: &str) -> Self {
        for output in &mut self.items {
            output.subject = Some(subject.to_owned());
        }
        self
    }

    /// What will be published, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Output> {
        self.items.iter()
    }

    /// The payload of the result sent to the originator, as `P`, when there is one of
    /// that type: for a handler's unit tests.
    pub fn reply_payload<P: Payload>(&self) -> Option<P> {
        self.items
            .iter()
            .filter(|output| output.route == Route::Reply)
            .find_map(Output::decode)
    }

    /// How many messages will be published.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing will be published.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Why a handler did not produce outputs, sorted by what the runtime must do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// Trying again will not help: fault the originator and dead-letter the message.
    #[error("{code}: {message}")]
    Permanent {
        /// A stable snake_case code, e.g. `out_of_stock`.
        code: Cow<'static, str>,
        /// What went wrong, for a person.
        message: String,
        /// Anything else that helps the originator, as JSON.
        details: serde_json::Value,
    },
    /// The request is refused for a reason of the domain (out of stock, card
    /// declined): nothing is wrong with the message, so it is not dead-lettered. The
    /// originator gets a fault with the code, like every fault announced as
    /// `dev.warren.request.failed.v1` so that earlier hops undo their work.
    #[error("refused, {code}: {message}")]
    Refused {
        /// A stable snake_case code, e.g. `card_declined`.
        code: Cow<'static, str>,
        /// Why, for a person.
        message: String,
        /// Anything else that helps the originator, as JSON.
        details: serde_json::Value,
    },
    /// Trying again later may help (a dependency was down): retry.
    #[error("transient: {message}")]
    Transient {
        /// What went wrong, for a person.
        message: String,
    },
}

impl HandlerError {
    /// A permanent error with a fault code and a message.
    pub fn permanent(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        HandlerError::Permanent {
            code: code.into(),
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }

    /// A refusal for a reason of the domain, with a fault code and a message.
    pub fn refused(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        HandlerError::Refused {
            code: code.into(),
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }

    /// A transient error.
    pub fn transient(message: impl Into<String>) -> Self {
        HandlerError::Transient {
            message: message.into(),
        }
    }

    /// Adds details to a permanent error or a refusal (a transient one is returned
    /// unchanged).
    pub fn with_details(mut self, new_details: serde_json::Value) -> Self {
        if let HandlerError::Permanent { details, .. } | HandlerError::Refused { details, .. } =
            &mut self
        {
            *details = new_details;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_messages::{EchoReplied, EchoRequest, Fault};

    const ECHO: Manifest = Manifest {
        name: "echo",
        commands: &["dev.warren.echo.v1"],
        events: &[],
        produces: &["dev.warren.echo.replied.v1"],
    };

    #[test]
    fn a_manifest_prints_as_one_line_of_json() {
        let json: serde_json::Value =
            serde_json::from_str(&ECHO.to_json()).expect("the manifest is JSON");
        assert_eq!(
            json,
            serde_json::json!({
                "name": "echo",
                "commands": ["dev.warren.echo.v1"],
                "events": [],
                "produces": ["dev.warren.echo.replied.v1"],
            })
        );
        assert!(!ECHO.to_json().contains('\n'));
    }

    #[test]
    fn manifest_must_match_the_handler_input() {
        assert_eq!(ECHO.check_against::<EchoRequest>(), Ok(()));
        assert!(ECHO.check_against::<Fault>().is_err());
        let extra = Manifest {
            commands: &["dev.warren.echo.v1", "dev.warren.other.v1"],
            ..ECHO
        };
        assert!(extra.check_against::<EchoRequest>().is_err());
        let bad_name = Manifest {
            name: "Echo Worker",
            ..ECHO
        };
        assert!(bad_name.check_against::<EchoRequest>().is_err());
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("JSON")
    }

    #[test]
    fn identity_is_source_and_id_with_a_fingerprint_of_the_content() {
        let attributes = Attributes::request::<EchoRequest>("/test");
        let data = raw(r#"{"a":1}"#);
        let incoming = Incoming::<EchoRequest>::decode(&attributes, &data).expect("decode");
        let identity = incoming.identity();
        assert_eq!(identity.source, "/test");
        assert_eq!(identity.id, attributes.id);
        assert_eq!(identity.fingerprint.len(), 64);
        assert_eq!(identity, MessageIdentity::of(&attributes, &data), "stable");

        let other_data = raw(r#"{"a":2}"#);
        assert_ne!(
            MessageIdentity::of(&attributes, &other_data).fingerprint,
            identity.fingerprint
        );
        let mut other_reply = attributes.clone();
        other_reply.replyto = Some("warren.reply.other".into());
        assert_ne!(
            MessageIdentity::of(&other_reply, &data).fingerprint,
            identity.fingerprint
        );
        // A new trace or time is the same message sent again.
        let mut resent = attributes.clone();
        resent.traceparent = None;
        resent.time = None;
        assert_eq!(MessageIdentity::of(&resent, &data), identity);

        let not_an_object = raw("[1]");
        assert!(Incoming::<EchoRequest>::decode(&attributes, &not_an_object).is_err());
    }

    #[test]
    fn claims_reach_the_handler_when_there_are_some() {
        let attributes = Attributes::request::<EchoRequest>("/test");
        let data = raw("{}");
        let incoming = Incoming::<EchoRequest>::decode(&attributes, &data).expect("decode");
        assert!(incoming.claims().is_none());
        let claims = Claims::new("alice", &["tally:write"]);
        let incoming = incoming.with_claims(&claims);
        let seen = incoming.claims().expect("claims");
        assert_eq!(seen.subject, "alice");
        assert!(seen.has_scope("tally:write"));
    }

    #[test]
    fn outputs_keep_their_route_and_type() {
        let reply: EchoReplied = serde_json::from_str(r#"{"a":1}"#).expect("payload");
        let outputs = Outputs::reply(&reply)
            .and_then(|outputs| outputs.and_event(&reply))
            .expect("outputs");
        assert_eq!(outputs.len(), 2);
        assert_eq!(outputs.items[0].route, Route::Reply);
        assert_eq!(outputs.items[1].route, Route::Event);
        assert_eq!(outputs.items[0].message_type, "dev.warren.echo.replied.v1");
        assert_eq!(outputs.items[0].data.get(), r#"{"a":1}"#);
        assert_ne!(outputs.items[0].id, outputs.items[1].id);
    }

    #[test]
    fn outputs_can_be_read_back_in_tests() {
        let reply: EchoReplied = serde_json::from_str(r#"{"a":1}"#).expect("payload");
        let outputs = Outputs::reply(&reply)
            .and_then(|outputs| outputs.and_event(&reply))
            .expect("outputs");
        let routes: Vec<Route> = outputs.iter().map(Output::route).collect();
        assert_eq!(routes, [Route::Reply, Route::Event]);
        assert_eq!(outputs.reply_payload::<EchoReplied>(), Some(reply));
        assert_eq!(outputs.reply_payload::<Fault>(), None, "not that type");
        assert_eq!(Outputs::none().reply_payload::<EchoReplied>(), None);
    }

    #[test]
    fn progress_is_an_output_of_its_own_route() {
        let outputs = Outputs::none().and_progress("reserved").expect("progress");
        let progress: Vec<&Output> = outputs.iter().collect();
        assert_eq!(progress[0].route(), Route::Progress);
        let data: Progress = progress[0].decode().expect("a progress");
        assert_eq!(data.status, "reserved");
        assert_eq!(outputs.reply_payload::<Progress>(), None, "not a reply");
    }

    #[test]
    fn outputs_survive_a_round_trip_through_json() {
        let reply: EchoReplied = serde_json::from_str(r#"{"a":1}"#).expect("payload");
        let outputs = Outputs::reply(&reply).expect("outputs");
        let stored = serde_json::to_string(&outputs).expect("serialize");
        let restored: Outputs = serde_json::from_str(&stored).expect("deserialize");
        assert_eq!(restored.items[0].id, outputs.items[0].id);
        assert_eq!(restored.items[0].route, Route::Reply);
        assert_eq!(restored.items[0].message_type, "dev.warren.echo.replied.v1");
        assert_eq!(restored.items[0].data.get(), r#"{"a":1}"#);
    }
}
