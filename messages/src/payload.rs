//! Payload types: one Rust type per message type and version.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A payload type: the `data` of one message type at one version.
///
/// `TYPE` is the CloudEvents `type` (with its version) and `SCHEMA` the `dataschema`.
/// Changing a payload means adding a new type with a new version, never editing one.
///
/// Its JSON Schema (`docs/schemas/<TYPE>.json`, see [`crate::schema`]) is generated from
/// the type; decoding ([`decode_data`]) accepts exactly what that schema accepts: the
/// shape serde reads, then [`Payload::check`] for the bounds the schema states and serde
/// does not (lengths, ranges, patterns).
pub trait Payload: Serialize + DeserializeOwned + JsonSchema + Send + 'static {
    /// The CloudEvents `type`, e.g. `dev.warren.echo.v1`.
    const TYPE: &'static str;
    /// The CloudEvents `dataschema` of this type.
    const SCHEMA: &'static str;

    /// The schema's bounds that serde's shape does not enforce, as the first one broken.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Decodes `data` as a `P`: its shape, then its bounds ([`Payload::check`]). A worker
/// whose [`Inbound`] is an enum decodes each type with this.
pub fn decode_data<P: Payload>(data: &RawValue) -> Result<P, serde_json::Error> {
    let payload: P = serde_json::from_str(data.get())?;
    payload.check().map_err(serde::de::Error::custom)?;
    Ok(payload)
}

/// An older version of a payload that is still accepted: on receipt it is turned into
/// the next version (upcast), so a worker handles the newest version only and producers
/// of the older one keep working. The versioning policy is in docs/messages.md.
pub trait Upcast: Payload {
    /// The version this one becomes.
    type Next: Payload;

    /// This payload as the next version, with what it did not say filled in as the older
    /// version meant it.
    fn upcast(self) -> Self::Next;
}

/// What a worker accepts: decides, from the message type, whether it is one of ours and
/// how to decode its `data`.
///
/// Every [`Payload`] is an `Inbound` for its own type; a worker that consumes several
/// types implements it for an enum.
pub trait Inbound: Sized + Send + 'static {
    /// The message types this accepts.
    fn types() -> &'static [&'static str];

    /// Decodes `data` of a message whose type is one of [`Inbound::types`].
    fn decode(message_type: &str, data: &RawValue) -> Result<Self, serde_json::Error>;
}

impl<P: Payload> Inbound for P {
    fn types() -> &'static [&'static str] {
        std::slice::from_ref(&P::TYPE)
    }

    fn decode(_message_type: &str, data: &RawValue) -> Result<Self, serde_json::Error> {
        decode_data(data)
    }
}

/// Implements [`Payload`] for a type: its CloudEvents `type` and the schema URN.
/// With `check = f`, decoding also checks the type's bounds with `f(&self)`.
macro_rules! payload {
    ($ty:ty, $name:literal) => {
        impl $crate::payload::Payload for $ty {
            const TYPE: &'static str = $name;
            const SCHEMA: &'static str = concat!("urn:warren:schema:", $name);
        }
    };
    ($ty:ty, $name:literal, check = $check:path) => {
        impl $crate::payload::Payload for $ty {
            const TYPE: &'static str = $name;
            const SCHEMA: &'static str = concat!("urn:warren:schema:", $name);

            fn check(&self) -> Result<(), String> {
                $check(self)
            }
        }
    };
}
pub(crate) use payload;

/// Any JSON object, kept as the exact text it arrived as.
///
/// Decoding checks that the value is an object and copies it once; encoding writes it
/// back unchanged, so relaying one costs no re-serialization.
#[derive(Debug, Clone)]
pub struct JsonObject(Box<RawValue>);

impl JsonObject {
    /// The object's JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for JsonObject {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for JsonObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        if raw.get().trim_start().starts_with('{') {
            Ok(JsonObject(raw))
        } else {
            Err(serde::de::Error::custom("expected a JSON object"))
        }
    }
}

impl JsonSchema for JsonObject {
    fn schema_name() -> Cow<'static, str> {
        "JsonObject".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Any JSON object.",
            "type": "object"
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

impl TryFrom<serde_json::Value> for JsonObject {
    type Error = serde_json::Error;

    fn try_from(value: serde_json::Value) -> Result<Self, Self::Error> {
        serde_json::from_value(value)
    }
}

/// Stable fault codes. Originators match on these, so they never change meaning.
pub mod fault_code {
    /// The payload failed its type's schema.
    pub const INVALID_PAYLOAD: &str = "invalid_payload";
    /// The envelope itself is unreadable: not UTF-8, not JSON, too deep, too large,
    /// an unknown `specversion` or a missing attribute.
    pub const INVALID_ENVELOPE: &str = "invalid_envelope";
    /// No worker here handles this message type.
    pub const UNKNOWN_TYPE: &str = "unknown_type";
    /// The message arrived after its deadline; the work was not started.
    pub const DEADLINE_EXCEEDED: &str = "deadline_exceeded";
    /// The sender is not allowed to ask for this: the worker requires a token and the
    /// message's is missing or refused, or lacks the scope its type requires (the dead
    /// letter's `x-warren-reason` says which; docs/security.md, "Tokens").
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// Something failed inside the worker.
    pub const INTERNAL: &str = "internal";
    /// Another message with other content was already processed under this message's
    /// identity (`source` and `id`); the message was not processed.
    pub const REUSED_ID: &str = "reused_id";
    /// The message produced an output larger than its receiver accepts; nothing was
    /// published.
    pub const OUTPUT_TOO_LARGE: &str = "output_too_large";
}

/// `dev.warren.fault.v1`: the terminal outcome of a request that failed, at any hop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Fault {
    /// A stable snake_case code (see [`fault_code`]).
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// Whether sending the same request again may succeed.
    pub retryable: bool,
    /// The worker that failed the request.
    pub worker: String,
    /// Where in that worker it failed: `decode`, `handle`, `publish`, ….
    pub stage: String,
    /// How many times the work was attempted.
    pub attempts: u32,
    /// Anything else that helps, as JSON.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}
payload!(Fault, "dev.warren.fault.v1");

/// `dev.warren.progress.v1`: optional news of a request before its terminal outcome,
/// sent when the request asked for it (the `progress` extension attribute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Progress {
    /// The step the work reached, e.g. `inventory`.
    pub stage: String,
    /// How that step went, e.g. `reserved`.
    pub status: String,
    /// The worker that sent it. Optional on the wire: progress sent before it was
    /// added carries none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub worker: String,
}
payload!(Progress, "dev.warren.progress.v1");

/// `dev.warren.request.failed.v1`: a request failed at some hop. Published to
/// `warren.events` by the runtime of the worker that faulted it, with every fault it
/// sends (the same code, worker and stage), so that earlier hops can undo what they did
/// for it. The request's business key (an order id) is the event's `subject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RequestFailed {
    /// The fault's code.
    pub code: String,
    /// The worker that failed the request.
    pub worker: String,
    /// Where in that worker it failed.
    pub stage: String,
    /// What went wrong, for a person.
    pub message: String,
}
payload!(RequestFailed, "dev.warren.request.failed.v1");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_object_accepts_objects_only() {
        let object: JsonObject = serde_json::from_str(r#" {"a":[1,2]}"#).expect("object");
        assert_eq!(object.get(), r#"{"a":[1,2]}"#);
        for not_object in ["[1]", "1", "\"x\"", "null", "true"] {
            assert!(
                serde_json::from_str::<JsonObject>(not_object).is_err(),
                "{not_object}"
            );
        }
    }

    #[test]
    fn fault_omits_null_details() {
        let fault = Fault {
            code: fault_code::INTERNAL.into(),
            message: "boom".into(),
            retryable: false,
            worker: "echo".into(),
            stage: "handle".into(),
            attempts: 1,
            details: serde_json::Value::Null,
        };
        let text = serde_json::to_string(&fault).expect("serialize");
        assert!(!text.contains("details"));
        assert_eq!(
            serde_json::from_str::<Fault>(&text).expect("deserialize"),
            fault
        );
    }
}
