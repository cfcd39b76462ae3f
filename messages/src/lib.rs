//! warren's wire contract.
//!
//! Every message warren sends or accepts is a CloudEvents 1.0 event: metadata
//! ([`Attributes`]) apart from the payload (`data`). This crate holds the envelope, its
//! decoder with the input limits, the W3C trace context, and every payload type with its
//! version. It does no I/O and knows nothing of AMQP: every `Serialize` type here is a
//! contract with other processes, changed only by adding a version.

mod bounds;
mod decode;
mod envelope;
mod payload;
mod trace;
mod types;

pub mod catalogue;
pub mod schema;

pub use decode::{
    DecodeError, HeaderValue, Limits, MAX_LONG_ATTRIBUTE_BYTES, MAX_SHORT_ATTRIBUTE_BYTES,
    check_attribute, decode_binary, decode_structured, find_control_character, salvage_attributes,
};
pub use envelope::{Attributes, Envelope, OutgoingEnvelope, SPEC_VERSION, new_message_id};
pub use payload::{
    Fault, Inbound, JsonObject, Payload, Progress, RequestFailed, Upcast, decode_data, fault_code,
};
pub use trace::TraceParent;
pub use types::*;

/// The AMQP `content_type` of a structured-mode CloudEvent, which warren publishes.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// The `datacontenttype` of every payload warren produces.
pub const JSON_CONTENT_TYPE: &str = "application/json";
