//! Payload types: one Rust type per message type and version.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A payload type: the `data` of one message type at one version.
///
/// `TYPE` is the CloudEvents `type` (with its version) and `SCHEMA` the `dataschema`.
/// Changing a payload means adding a new type with a new version, never editing one.
pub trait Payload: Serialize + DeserializeOwned + Send + 'static {
    /// The CloudEvents `type`, e.g. `dev.warren.echo.v1`.
    const TYPE: &'static str;
    /// The CloudEvents `dataschema` of this type.
    const SCHEMA: &'static str;
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
        serde_json::from_str(data.get())
    }
}

macro_rules! payload {
    ($ty:ty, $name:literal) => {
        impl Payload for $ty {
            const TYPE: &'static str = $name;
            const SCHEMA: &'static str = concat!("urn:warren:schema:", $name);
        }
    };
}

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

impl TryFrom<serde_json::Value> for JsonObject {
    type Error = serde_json::Error;

    fn try_from(value: serde_json::Value) -> Result<Self, Self::Error> {
        serde_json::from_value(value)
    }
}

/// `dev.warren.echo.v1`: ask the echo worker to reply with this object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EchoRequest(pub JsonObject);
payload!(EchoRequest, "dev.warren.echo.v1");

/// `dev.warren.echo.replied.v1`: the echo worker's result, the request's object unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EchoReplied(pub JsonObject);
payload!(EchoReplied, "dev.warren.echo.replied.v1");

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
    /// The sender is not allowed to ask for this.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// `dev.warren.progress.v1`: optional news of a request before its terminal outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The step the work reached, e.g. `inventory`.
    pub stage: String,
    /// How that step went, e.g. `reserved`.
    pub status: String,
}
payload!(Progress, "dev.warren.progress.v1");

/// `dev.warren.tally.add.v1`: add `amount` to the running total of `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TallyAdd {
    /// The total to add to (not empty).
    pub key: String,
    /// What to add; negative to subtract.
    pub amount: i64,
}
payload!(TallyAdd, "dev.warren.tally.add.v1");

/// `dev.warren.tally.added.v1`: the tally worker's result for a [`TallyAdd`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TallyAdded {
    /// The key that was added to.
    pub key: String,
    /// Its total after the addition.
    pub total: i64,
}
payload!(TallyAdded, "dev.warren.tally.added.v1");

/// `dev.warren.tally.get.v1`: ask for the running total of `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TallyGet {
    /// The total asked for (not empty).
    pub key: String,
}
payload!(TallyGet, "dev.warren.tally.get.v1");

/// `dev.warren.tally.total.v1`: the tally worker's result for a [`TallyGet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TallyTotal {
    /// The key asked for.
    pub key: String,
    /// Its total: 0 for a key nothing was ever added to.
    pub total: i64,
}
payload!(TallyTotal, "dev.warren.tally.total.v1");

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
    fn echo_relays_the_exact_text() {
        let request: EchoRequest =
            serde_json::from_str(r#"{"hello":"world","n":1.50}"#).expect("echo request");
        let reply = EchoReplied(request.0);
        assert_eq!(
            serde_json::to_string(&reply).expect("serialize"),
            r#"{"hello":"world","n":1.50}"#
        );
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

    #[test]
    fn tally_commands_reject_unknown_fields_and_non_integers() {
        let add: TallyAdd = serde_json::from_str(r#"{"key":"k","amount":-5}"#).expect("tally add");
        assert_eq!(
            add,
            TallyAdd {
                key: "k".into(),
                amount: -5
            }
        );
        for bad in [
            r#"{"key":"k","amount":5,"extra":1}"#,
            r#"{"key":"k","amount":1.5}"#,
            r#"{"key":"k","amount":"5"}"#,
            r#"{"key":"k","amount":9223372036854775808}"#,
            r#"{"key":"k"}"#,
        ] {
            assert!(serde_json::from_str::<TallyAdd>(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<TallyGet>(r#"{"key":"k","amount":1}"#).is_err());
        let total = TallyTotal {
            key: "k".into(),
            total: 50,
        };
        assert_eq!(
            serde_json::to_string(&total).expect("serialize"),
            r#"{"key":"k","total":50}"#
        );
    }
}
