//! The envelope: CloudEvents 1.0 attributes apart from the payload.

use jiff::Timestamp;
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::value::RawValue;

use crate::payload::Payload;
use crate::trace::TraceParent;

/// The only CloudEvents `specversion` warren speaks: envelope v1.
pub const SPEC_VERSION: &str = "1.0";

/// The metadata of one message: every CloudEvents attribute warren uses.
///
/// `id`, `source` and `type` are required on the wire; the rest are optional there, and
/// warren sets `time`, `datacontenttype`, `dataschema`, `correlationid` and
/// `traceparent` on everything it publishes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    /// Unique message id (UUID v7 for messages warren makes).
    pub id: String,
    /// Who produced the message: `/warren/<worker>` or `/warren/cli/<host>`.
    pub source: String,
    /// Reverse-DNS type with its payload version, e.g. `dev.warren.echo.v1`.
    pub message_type: String,
    /// When the message was made.
    pub time: Option<Timestamp>,
    /// The media type of `data`.
    pub datacontenttype: Option<String>,
    /// The schema of `data` for this type and version.
    pub dataschema: Option<String>,
    /// The business key, e.g. an order id.
    pub subject: Option<String>,
    /// The id of the originator's request, the same on every hop.
    pub correlationid: Option<String>,
    /// The id of the message that caused this one.
    pub causationid: Option<String>,
    /// W3C trace context.
    pub traceparent: Option<String>,
    /// W3C vendor trace state.
    pub tracestate: Option<String>,
    /// The reply queue that outcomes go to.
    pub replyto: Option<String>,
    /// Nobody should start the work after this time.
    pub deadline: Option<Timestamp>,
    /// Extension `progress`: the originator asks every hop for `dev.warren.progress.v1`
    /// news before the outcome.
    pub progress: bool,
}

impl Attributes {
    /// The correlation id, or the message's own id for a message that started the work.
    pub fn correlation_id(&self) -> &str {
        self.correlationid.as_deref().unwrap_or(&self.id)
    }

    /// The parsed trace context, if the message carries a valid one.
    pub fn trace_parent(&self) -> Option<TraceParent> {
        self.traceparent.as_deref().and_then(TraceParent::parse)
    }

    /// True when the message has a deadline and it is before `now`.
    pub fn is_past_deadline(&self, now: Timestamp) -> bool {
        self.deadline.is_some_and(|deadline| deadline < now)
    }

    /// Attributes for a message of payload type `P` caused by this one (see
    /// [`Attributes::child_of_type`]).
    pub fn child<P: Payload>(&self, source: &str) -> Attributes {
        self.child_of_type(P::TYPE, Some(P::SCHEMA), source)
    }

    /// Attributes for a message caused by this one: a new id, the same correlation id,
    /// reply queue, deadline, subject and `progress`, the same trace with a new span,
    /// and `causationid` set to this message's id.
    pub fn child_of_type(
        &self,
        message_type: &str,
        dataschema: Option<&str>,
        source: &str,
    ) -> Attributes {
        self.child_with_id(new_message_id(), message_type, dataschema, source)
    }

    /// Like [`Attributes::child_of_type`], with the id given: for a message whose id
    /// was fixed earlier (an output recorded in an inbox and re-sent).
    pub fn child_with_id(
        &self,
        id: String,
        message_type: &str,
        dataschema: Option<&str>,
        source: &str,
    ) -> Attributes {
        self.child_in_trace(self.hop_trace(), id, message_type, dataschema, source)
    }

    /// The trace context of the work this message starts: its trace with a new span id,
    /// or a new trace when it carries none. A worker takes one per message it handles
    /// and sends everything that work produces with it ([`Attributes::child_in_trace`]),
    /// so the next hops' spans are children of this one.
    pub fn hop_trace(&self) -> TraceParent {
        TraceParent::next_hop(self.trace_parent())
    }

    /// Like [`Attributes::child_with_id`], sent from within `trace` (see
    /// [`Attributes::hop_trace`]).
    pub fn child_in_trace(
        &self,
        trace: TraceParent,
        id: String,
        message_type: &str,
        dataschema: Option<&str>,
        source: &str,
    ) -> Attributes {
        let traceparent = trace;
        Attributes {
            id,
            source: source.to_owned(),
            message_type: message_type.to_owned(),
            time: Some(Timestamp::now()),
            datacontenttype: Some(crate::JSON_CONTENT_TYPE.to_owned()),
            dataschema: dataschema.map(str::to_owned),
            subject: self.subject.clone(),
            correlationid: Some(self.correlation_id().to_owned()),
            causationid: Some(self.id.clone()),
            traceparent: Some(traceparent.to_string()),
            tracestate: self.tracestate.clone(),
            replyto: self.replyto.clone(),
            deadline: self.deadline,
            progress: self.progress,
        }
    }

    /// Attributes for a new request of payload type `P` (see
    /// [`Attributes::request_of_type`]).
    pub fn request<P: Payload>(source: &str) -> Attributes {
        Self::request_of_type(P::TYPE, Some(P::SCHEMA), source)
    }

    /// Attributes for a new request that starts its own correlation and trace: its
    /// correlation id is its own id.
    pub fn request_of_type(
        message_type: &str,
        dataschema: Option<&str>,
        source: &str,
    ) -> Attributes {
        let id = new_message_id();
        Attributes {
            correlationid: Some(id.clone()),
            id,
            source: source.to_owned(),
            message_type: message_type.to_owned(),
            time: Some(Timestamp::now()),
            datacontenttype: Some(crate::JSON_CONTENT_TYPE.to_owned()),
            dataschema: dataschema.map(str::to_owned),
            traceparent: Some(TraceParent::new_root().to_string()),
            ..Attributes::default()
        }
    }
}

/// A new message id: a UUID v7, so ids sort by creation time.
pub fn new_message_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// One message: its attributes and its payload.
///
/// `D` is the payload's representation: `&RawValue` for a received message before its
/// type is decoded, `Box<RawValue>` for one about to be sent, or a typed payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<D> {
    /// The CloudEvents attributes.
    pub attributes: Attributes,
    /// The payload.
    pub data: D,
}

/// An envelope whose payload is already serialized, ready to publish.
pub type OutgoingEnvelope = Envelope<Box<RawValue>>;

impl OutgoingEnvelope {
    /// A new request carrying `payload`, from `source`, starting its own correlation.
    pub fn request<P: Payload>(source: &str, payload: &P) -> Result<Self, serde_json::Error> {
        Ok(Envelope {
            attributes: Attributes::request::<P>(source),
            data: serde_json::value::to_raw_value(payload)?,
        })
    }

    /// A message caused by the one with `parent` attributes (see [`Attributes::child`]).
    pub fn child_of<P: Payload>(
        parent: &Attributes,
        source: &str,
        payload: &P,
    ) -> Result<Self, serde_json::Error> {
        Ok(Envelope {
            attributes: parent.child::<P>(source),
            data: serde_json::value::to_raw_value(payload)?,
        })
    }
}

impl<D: Serialize> Envelope<D> {
    /// The structured-mode JSON body of this message.
    pub fn to_json_vec(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

impl<D: Serialize> Serialize for Envelope<D> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let a = &self.attributes;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("specversion", SPEC_VERSION)?;
        map.serialize_entry("id", &a.id)?;
        map.serialize_entry("source", &a.source)?;
        map.serialize_entry("type", &a.message_type)?;
        if let Some(time) = &a.time {
            map.serialize_entry("time", time)?;
        }
        let optional = [
            ("datacontenttype", &a.datacontenttype),
            ("dataschema", &a.dataschema),
            ("subject", &a.subject),
            ("correlationid", &a.correlationid),
            ("causationid", &a.causationid),
            ("traceparent", &a.traceparent),
            ("tracestate", &a.tracestate),
            ("replyto", &a.replyto),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                map.serialize_entry(name, value)?;
            }
        }
        if let Some(deadline) = &a.deadline {
            map.serialize_entry("deadline", deadline)?;
        }
        if a.progress {
            map.serialize_entry("progress", &true)?;
        }
        map.serialize_entry("data", &self.data)?;
        map.end()
    }
}
