//! Decoding received bytes into an [`Envelope`], with the input limits.
//!
//! Every way a message can be unreadable has its own [`DecodeError`] variant, so the
//! runtime can dead-letter it with a precise reason and fault the originator. Cheap
//! checks come first: the size before anything is read, UTF-8 and nesting depth before
//! the JSON parser runs.

use std::borrow::Cow;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::envelope::{Attributes, Envelope, SPEC_VERSION};
use crate::payload::{Inbound, fault_code};

/// Input limits, checked before a body is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The deepest nesting of JSON arrays and objects accepted, the envelope included.
    pub max_depth: usize,
}

impl Limits {
    /// The deepest nesting that can be configured: below the JSON parser's own
    /// recursion limit, so the precise [`DecodeError::TooDeep`] is what fires.
    pub const MAX_DEPTH_CEILING: usize = 120;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// The longest value, in bytes, of an attribute that warren mirrors into an AMQP
/// short-string property or uses as a routing key (`id`, `source`, `type`,
/// `correlationid`, `causationid`, `replyto`, `datacontenttype`): an AMQP short string
/// holds at most 255 bytes.
pub const MAX_SHORT_ATTRIBUTE_BYTES: usize = 255;

/// The longest `subject`, `dataschema`, `traceparent` or `tracestate`, in bytes.
pub const MAX_LONG_ATTRIBUTE_BYTES: usize = 1024;

/// Why a received message could not be read. All of these are bad input: never
/// retried, dead-lettered with [`DecodeError::reason_code`] and the text of the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body is larger than [`Limits::max_body_bytes`].
    #[error("body is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// The body's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The body is not UTF-8.
    #[error("body is not UTF-8 (invalid byte at offset {valid_up_to})")]
    NotUtf8 {
        /// The offset of the first invalid byte.
        valid_up_to: usize,
    },
    /// The body nests arrays and objects deeper than [`Limits::max_depth`].
    #[error("body nests JSON deeper than the limit of {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// The body is not JSON.
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not a CloudEvents envelope.
    #[error("body is not a CloudEvents envelope: {0}")]
    InvalidEnvelope(String),
    /// The envelope has a `specversion` other than `1.0`.
    #[error("unknown specversion {0:?}; warren speaks CloudEvents 1.0")]
    UnknownSpecVersion(String),
    /// A required attribute is missing or empty.
    #[error("required attribute `{0}` is missing")]
    MissingAttribute(&'static str),
    /// An attribute has a value of the wrong form.
    #[error("attribute `{name}` is invalid: {reason}")]
    InvalidAttribute {
        /// The attribute.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A property of the transport around the message (an AMQP property or header
    /// name) is unreadable.
    #[error("the transport property {name} is invalid: {reason}")]
    InvalidProperty {
        /// The property.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Nobody here handles this message type.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// The `data` does not decode into the message type's payload.
    #[error("data does not match {message_type}: {reason}")]
    InvalidData {
        /// The message type.
        message_type: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl DecodeError {
    /// A stable snake_case name of the error, for dead-letter headers and metrics.
    pub fn reason_code(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::NotUtf8 { .. } => "not_utf8",
            DecodeError::TooDeep { .. } => "too_deep",
            DecodeError::NotJson(_) => "not_json",
            DecodeError::InvalidEnvelope(_) => "invalid_envelope",
            DecodeError::UnknownSpecVersion(_) => "unknown_specversion",
            DecodeError::MissingAttribute(_) => "missing_attribute",
            DecodeError::InvalidAttribute { .. } => "invalid_attribute",
            DecodeError::InvalidProperty { .. } => "invalid_property",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::InvalidData { .. } => "invalid_data",
        }
    }

    /// The fault code the originator receives for this error.
    pub fn fault_code(&self) -> &'static str {
        match self {
            DecodeError::InvalidData { .. } => fault_code::INVALID_PAYLOAD,
            DecodeError::UnknownType(_) => fault_code::UNKNOWN_TYPE,
            _ => fault_code::INVALID_ENVELOPE,
        }
    }
}

/// The envelope as it appears on the wire, every attribute optional so that a missing
/// one is reported by name.
#[derive(Deserialize)]
struct WireEnvelope<'a> {
    #[serde(borrow)]
    specversion: Option<Cow<'a, str>>,
    id: Option<String>,
    source: Option<String>,
    #[serde(rename = "type")]
    message_type: Option<String>,
    #[serde(borrow)]
    time: Option<Cow<'a, str>>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    subject: Option<String>,
    correlationid: Option<String>,
    causationid: Option<String>,
    traceparent: Option<String>,
    tracestate: Option<String>,
    replyto: Option<String>,
    #[serde(borrow)]
    deadline: Option<Cow<'a, str>>,
    progress: Option<bool>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// Decodes a structured-mode CloudEvent (`application/cloudevents+json`).
///
/// The returned envelope borrows its `data` from `body`; decode it into a payload with
/// [`Envelope::decode_data`].
pub fn decode_structured<'a>(
    body: &'a [u8],
    limits: &Limits,
) -> Result<Envelope<&'a RawValue>, DecodeError> {
    let text = check_text(body, limits)?;
    let wire: WireEnvelope<'a> = serde_json::from_str(text).map_err(|error| {
        if error.is_data() {
            DecodeError::InvalidEnvelope(error.to_string())
        } else {
            DecodeError::NotJson(error.to_string())
        }
    })?;
    match wire.specversion.as_deref() {
        Some(SPEC_VERSION) => {}
        Some(other) => return Err(DecodeError::UnknownSpecVersion(other.to_owned())),
        None => return Err(DecodeError::MissingAttribute("specversion")),
    }
    let attributes = Attributes {
        id: required("id", wire.id)?,
        source: required("source", wire.source)?,
        message_type: required("type", wire.message_type)?,
        time: timestamp("time", wire.time.as_deref())?,
        datacontenttype: wire.datacontenttype,
        dataschema: wire.dataschema,
        subject: wire.subject,
        correlationid: wire.correlationid,
        causationid: wire.causationid,
        traceparent: wire.traceparent,
        tracestate: wire.tracestate,
        replyto: wire.replyto,
        deadline: timestamp("deadline", wire.deadline.as_deref())?,
        progress: wire.progress.unwrap_or(false),
    };
    check_attributes(&attributes)?;
    check_content_type(attributes.datacontenttype.as_deref())?;
    Ok(Envelope {
        attributes,
        data: wire.data.unwrap_or(RawValue::NULL),
    })
}

/// The value of one AMQP header, as binary-mode decoding sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderValue<'a> {
    /// A string (an AMQP long or short string that is UTF-8).
    Text(&'a str),
    /// Anything else; the text names what it is (`"a long-long-int"`, `"bytes that are
    /// not UTF-8"`, …).
    NotText(&'static str),
}

/// The attributes binary mode reads from `ce-` headers.
const BINARY_ATTRIBUTES: [&str; 14] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "dataschema",
    "subject",
    "correlationid",
    "causationid",
    "traceparent",
    "tracestate",
    "replyto",
    "deadline",
    "progress",
];

/// The `ce-` headers of a binary-mode message, by attribute.
struct BinaryHeaders<'h> {
    values: [Option<HeaderValue<'h>>; BINARY_ATTRIBUTES.len()],
}

impl<'h> BinaryHeaders<'h> {
    /// Picks the `ce-` headers out of `headers`, matching names without regard to case.
    /// A header given twice (in two spellings) is an error: which one is meant?
    fn read(headers: &[(&str, HeaderValue<'h>)]) -> Result<Self, DecodeError> {
        let mut values = [None; BINARY_ATTRIBUTES.len()];
        for (key, value) in headers {
            let Some(name) = key
                .get(..3)
                .filter(|prefix| prefix.eq_ignore_ascii_case("ce-"))
                .map(|_| &key[3..])
            else {
                continue;
            };
            let Some(index) = BINARY_ATTRIBUTES
                .iter()
                .position(|attribute| attribute.eq_ignore_ascii_case(name))
            else {
                continue;
            };
            if values[index].replace(*value).is_some() {
                return Err(DecodeError::InvalidAttribute {
                    name: BINARY_ATTRIBUTES[index],
                    reason: format!(
                        "the header ce-{} is given more than once",
                        BINARY_ATTRIBUTES[index]
                    ),
                });
            }
        }
        Ok(Self { values })
    }

    /// The attribute's text, or an error when its header is not a string.
    fn text(&self, name: &'static str) -> Result<Option<&'h str>, DecodeError> {
        let index = BINARY_ATTRIBUTES
            .iter()
            .position(|attribute| *attribute == name)
            .unwrap_or(0);
        match self.values[index] {
            None => Ok(None),
            Some(HeaderValue::Text(text)) => Ok(Some(text)),
            Some(HeaderValue::NotText(kind)) => Err(DecodeError::InvalidAttribute {
                name: BINARY_ATTRIBUTES[index],
                reason: format!("the header ce-{name} is {kind}, not a string"),
            }),
        }
    }

    fn owned(&self, name: &'static str) -> Result<Option<String>, DecodeError> {
        Ok(self.text(name)?.map(str::to_owned))
    }
}

/// Decodes a binary-mode CloudEvent, as the CloudEvents RabbitMQ binding sends it: the
/// attributes in `ce-`-prefixed headers, `content_type` as `datacontenttype`, and the
/// body as `data`. Header names are matched without regard to case; an attribute's
/// header must be a string.
pub fn decode_binary<'a>(
    headers: &[(&str, HeaderValue<'_>)],
    content_type: Option<&str>,
    body: &'a [u8],
    limits: &Limits,
) -> Result<Envelope<&'a RawValue>, DecodeError> {
    let header = BinaryHeaders::read(headers)?;
    match header.text("specversion")? {
        Some(SPEC_VERSION) => {}
        Some(other) => return Err(DecodeError::UnknownSpecVersion(other.to_owned())),
        None => return Err(DecodeError::MissingAttribute("specversion")),
    }
    let attributes = Attributes {
        id: required("id", header.owned("id")?)?,
        source: required("source", header.owned("source")?)?,
        message_type: required("type", header.owned("type")?)?,
        time: timestamp("time", header.text("time")?)?,
        datacontenttype: content_type.map(str::to_owned),
        dataschema: header.owned("dataschema")?,
        subject: header.owned("subject")?,
        correlationid: header.owned("correlationid")?,
        causationid: header.owned("causationid")?,
        traceparent: header.owned("traceparent")?,
        tracestate: header.owned("tracestate")?,
        replyto: header.owned("replyto")?,
        deadline: timestamp("deadline", header.text("deadline")?)?,
        progress: match header.text("progress")? {
            None => false,
            Some(text) if text.eq_ignore_ascii_case("true") => true,
            Some(text) if text.eq_ignore_ascii_case("false") => false,
            Some(text) => {
                return Err(DecodeError::InvalidAttribute {
                    name: "progress",
                    reason: format!("{text:?} is not true or false"),
                });
            }
        },
    };
    check_attributes(&attributes)?;
    check_content_type(attributes.datacontenttype.as_deref())?;
    let text = check_text(body, limits)?;
    let data = if text.trim().is_empty() {
        RawValue::NULL
    } else {
        serde_json::from_str::<&RawValue>(text)
            .map_err(|error| DecodeError::NotJson(error.to_string()))?
    };
    Ok(Envelope { attributes, data })
}

impl Envelope<&RawValue> {
    /// Decodes `data` into the payload `I`, checking first that `I` accepts the type.
    pub fn decode_data<I: Inbound>(&self) -> Result<I, DecodeError> {
        let message_type = self.attributes.message_type.as_str();
        if !I::types().contains(&message_type) {
            return Err(DecodeError::UnknownType(message_type.to_owned()));
        }
        I::decode(message_type, self.data).map_err(|error| DecodeError::InvalidData {
            message_type: message_type.to_owned(),
            reason: error.to_string(),
        })
    }
}

/// What can still be read of a message that failed to decode, to tell its sender: the
/// attributes that are valid on their own (`id`, `source` and `type` empty when not).
///
/// Binary mode when `headers` hold a `ce-specversion` and the message is not labelled
/// structured, as [`decode_binary`] reads it; structured mode otherwise, from a body
/// within the limits that is a JSON object. Nothing is salvaged from a body over the
/// limits: it is not parsed.
pub fn salvage_attributes(
    headers: &[(&str, HeaderValue<'_>)],
    binary: bool,
    body: &[u8],
    limits: &Limits,
) -> Attributes {
    let pick = |name: &'static str, value: Option<&str>| {
        value
            .filter(|value| check_attribute(name, value).is_ok())
            .map(str::to_owned)
    };
    let mut attributes = Attributes::default();
    let mut set = |name: &'static str, value: Option<&str>| {
        let value = pick(name, value);
        match name {
            "id" => attributes.id = value.unwrap_or_default(),
            "source" => attributes.source = value.unwrap_or_default(),
            "type" => attributes.message_type = value.unwrap_or_default(),
            "correlationid" => attributes.correlationid = value,
            "causationid" => attributes.causationid = value,
            "traceparent" => attributes.traceparent = value,
            "tracestate" => attributes.tracestate = value,
            "replyto" => attributes.replyto = value,
            "subject" => attributes.subject = value,
            _ => {}
        }
    };
    const SALVAGED: [&str; 9] = [
        "id",
        "source",
        "type",
        "correlationid",
        "causationid",
        "traceparent",
        "tracestate",
        "replyto",
        "subject",
    ];
    if binary {
        let found: Vec<(String, &str)> = headers
            .iter()
            .filter_map(|(key, value)| match value {
                HeaderValue::Text(text) => Some((key.to_ascii_lowercase(), *text)),
                HeaderValue::NotText(_) => None,
            })
            .collect();
        for name in SALVAGED {
            let mut matching = found
                .iter()
                .filter(|(key, _)| key.strip_prefix("ce-") == Some(name));
            // A header given twice is ambiguous: neither is used.
            if let (Some((_, value)), None) = (matching.next(), matching.next()) {
                set(name, Some(value));
            }
        }
    } else if let Ok(text) = check_text(body, limits)
        && let Ok(object) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
    {
        for name in SALVAGED {
            set(name, object.get(name).and_then(serde_json::Value::as_str));
        }
    }
    attributes
}

/// The most bytes an attribute may have (see [`MAX_SHORT_ATTRIBUTE_BYTES`]).
fn max_attribute_bytes(name: &str) -> usize {
    match name {
        "subject" | "dataschema" | "traceparent" | "tracestate" => MAX_LONG_ATTRIBUTE_BYTES,
        _ => MAX_SHORT_ATTRIBUTE_BYTES,
    }
}

/// Checks one string attribute `name`: within its length, and free of the control characters
/// CloudEvents forbids in strings (U+0000-U+001F, U+007F-U+009F), which would also let a
/// value forge lines in a log.
pub fn check_attribute(name: &'static str, value: &str) -> Result<(), DecodeError> {
    let limit = max_attribute_bytes(name);
    if value.len() > limit {
        return Err(DecodeError::InvalidAttribute {
            name,
            reason: format!("{} bytes, over the limit of {limit}", value.len()),
        });
    }
    if let Some(position) = find_control_character(value) {
        return Err(DecodeError::InvalidAttribute {
            name,
            reason: format!("a control character at byte {position}"),
        });
    }
    Ok(())
}

/// The byte offset of the first control character (U+0000-U+001F, U+007F-U+009F).
pub fn find_control_character(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().find_map(|(index, &byte)| {
        let control = byte < 0x20
            || byte == 0x7f
            // U+0080-U+009F are 0xC2 0x80-0x9F in UTF-8.
            || (byte == 0xc2 && bytes.get(index + 1).is_some_and(|next| (0x80..=0x9f).contains(next)));
        control.then_some(index)
    })
}

/// Checks every string attribute with [`check_attribute`].
fn check_attributes(attributes: &Attributes) -> Result<(), DecodeError> {
    check_attribute("id", &attributes.id)?;
    check_attribute("source", &attributes.source)?;
    check_attribute("type", &attributes.message_type)?;
    let optional = [
        ("datacontenttype", &attributes.datacontenttype),
        ("dataschema", &attributes.dataschema),
        ("subject", &attributes.subject),
        ("correlationid", &attributes.correlationid),
        ("causationid", &attributes.causationid),
        ("traceparent", &attributes.traceparent),
        ("tracestate", &attributes.tracestate),
        ("replyto", &attributes.replyto),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            check_attribute(name, value)?;
        }
    }
    Ok(())
}

fn required(name: &'static str, value: Option<String>) -> Result<String, DecodeError> {
    value
        .filter(|value| !value.is_empty())
        .ok_or(DecodeError::MissingAttribute(name))
}

fn timestamp(name: &'static str, value: Option<&str>) -> Result<Option<Timestamp>, DecodeError> {
    value
        .map(|text| {
            text.parse::<Timestamp>()
                .map_err(|error| DecodeError::InvalidAttribute {
                    name,
                    reason: format!("{text:?} is not an RFC 3339 time: {error}"),
                })
        })
        .transpose()
}

fn check_content_type(content_type: Option<&str>) -> Result<(), DecodeError> {
    match content_type {
        None => Ok(()),
        Some(value) => {
            let media_type = value.split(';').next().unwrap_or("").trim();
            if media_type.eq_ignore_ascii_case("application/json")
                || media_type.to_ascii_lowercase().ends_with("+json")
            {
                Ok(())
            } else {
                Err(DecodeError::InvalidAttribute {
                    name: "datacontenttype",
                    reason: format!("{value:?} is not JSON; warren payloads are JSON"),
                })
            }
        }
    }
}

/// The size, UTF-8 and depth checks every body passes before it is parsed.
fn check_text<'a>(body: &'a [u8], limits: &Limits) -> Result<&'a str, DecodeError> {
    if body.len() > limits.max_body_bytes {
        return Err(DecodeError::TooLarge {
            size: body.len(),
            limit: limits.max_body_bytes,
        });
    }
    let text = std::str::from_utf8(body).map_err(|error| DecodeError::NotUtf8 {
        valid_up_to: error.valid_up_to(),
    })?;
    check_depth(body, limits.max_depth)?;
    Ok(text)
}

/// Scans the nesting depth of arrays and objects without parsing, skipping strings.
fn check_depth(body: &[u8], limit: usize) -> Result<(), DecodeError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return Err(DecodeError::TooDeep { limit });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Payload;
    use crate::types::EchoRequest;

    const VALID: &str = r#"{"specversion":"1.0","id":"m1","source":"/test","type":"dev.warren.echo.v1","correlationid":"c1","replyto":"warren.reply.x","data":{"hello":"world"}}"#;

    fn decode(body: &str) -> Result<Envelope<&RawValue>, DecodeError> {
        decode_structured(body.as_bytes(), &Limits::default())
    }

    fn with(field: &str, value: &str) -> String {
        let mut json: serde_json::Value = serde_json::from_str(VALID).expect("valid json");
        json[field] = serde_json::from_str(value).expect("value");
        json.to_string()
    }

    fn without(field: &str) -> String {
        let mut json: serde_json::Value = serde_json::from_str(VALID).expect("valid json");
        json.as_object_mut().expect("object").remove(field);
        json.to_string()
    }

    #[test]
    fn decodes_a_valid_envelope() {
        let envelope = decode(VALID).expect("valid");
        assert_eq!(envelope.attributes.id, "m1");
        assert_eq!(envelope.attributes.correlation_id(), "c1");
        assert_eq!(
            envelope.attributes.replyto.as_deref(),
            Some("warren.reply.x")
        );
        let request: EchoRequest = envelope.decode_data().expect("echo data");
        assert_eq!(request.0.get(), r#"{"hello":"world"}"#);
    }

    #[test]
    fn rejects_each_kind_of_bad_input_with_its_own_error() {
        let limits = Limits {
            max_body_bytes: 4096,
            max_depth: 8,
        };
        let deep = format!("{}{}", "[".repeat(1_000), "]".repeat(1_000));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![b'{'; 5000], "too_large"),
            (b"{\"a\":\"\xff\"}".to_vec(), "not_utf8"),
            (deep.into_bytes(), "too_deep"),
            (b"not json".to_vec(), "not_json"),
            (b"[1,2]".to_vec(), "invalid_envelope"),
            (
                with("specversion", "\"0.3\"").into_bytes(),
                "unknown_specversion",
            ),
            (without("specversion").into_bytes(), "missing_attribute"),
            (without("id").into_bytes(), "missing_attribute"),
            (with("source", "\"\"").into_bytes(), "missing_attribute"),
            (with("id", "7").into_bytes(), "invalid_envelope"),
            (
                with("deadline", "\"tomorrow\"").into_bytes(),
                "invalid_attribute",
            ),
            (
                with("datacontenttype", "\"text/plain\"").into_bytes(),
                "invalid_attribute",
            ),
        ];
        for (body, expected) in cases {
            let error = decode_structured(&body, &limits).expect_err(expected);
            assert_eq!(error.reason_code(), expected, "{error}");
        }
    }

    #[test]
    fn depth_scan_ignores_brackets_inside_strings() {
        let body = format!(
            r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{{"s":"{}\"["}}}}"#,
            "[".repeat(500)
        );
        assert!(decode(&body).is_ok());
    }

    #[test]
    fn unknown_type_and_invalid_data_are_told_apart() {
        let unknown = with("type", "\"dev.warren.nope.v1\"");
        let envelope = decode(&unknown).expect("envelope");
        let error = envelope.decode_data::<EchoRequest>().expect_err("unknown");
        assert_eq!(error, DecodeError::UnknownType("dev.warren.nope.v1".into()));
        assert_eq!(error.fault_code(), fault_code::UNKNOWN_TYPE);

        let not_object = with("data", "[1]");
        let envelope = decode(&not_object).expect("envelope");
        let error = envelope.decode_data::<EchoRequest>().expect_err("invalid");
        assert_eq!(error.reason_code(), "invalid_data");
        assert_eq!(error.fault_code(), fault_code::INVALID_PAYLOAD);

        let missing = without("data");
        let envelope = decode(&missing).expect("envelope");
        assert!(envelope.decode_data::<EchoRequest>().is_err());
    }

    #[test]
    fn decodes_binary_mode() {
        let headers = text_headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "b1"),
            ("CE-Source", "/sdk"),
            ("ce-type", EchoRequest::TYPE),
            ("ce-replyto", "warren.reply.sdk"),
            ("ce-time", "2026-11-27T10:00:00+01:00"),
            ("other", "ignored"),
        ]);
        let envelope = decode_binary(
            &headers,
            Some("application/json"),
            br#"{"k":1}"#,
            &Limits::default(),
        )
        .expect("binary");
        assert_eq!(envelope.attributes.id, "b1");
        assert_eq!(envelope.attributes.source, "/sdk");
        assert_eq!(
            envelope.attributes.replyto.as_deref(),
            Some("warren.reply.sdk")
        );
        assert_eq!(envelope.data.get(), r#"{"k":1}"#);
        assert!(envelope.attributes.time.is_some());

        let error = decode_binary(&headers[1..], None, b"{}", &Limits::default())
            .expect_err("no specversion");
        assert_eq!(error, DecodeError::MissingAttribute("specversion"));
        let error = decode_binary(&headers, None, b"{", &Limits::default()).expect_err("bad");
        assert_eq!(error.reason_code(), "not_json");
    }

    fn text_headers<'a>(headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, HeaderValue<'a>)> {
        headers
            .iter()
            .map(|(key, value)| (*key, HeaderValue::Text(value)))
            .collect()
    }

    const BINARY: [(&str, &str); 5] = [
        ("ce-specversion", "1.0"),
        ("ce-id", "b1"),
        ("ce-source", "/sdk"),
        ("ce-type", "dev.warren.echo.v1"),
        ("ce-replyto", "warren.reply.sdk"),
    ];

    #[test]
    fn binary_headers_of_the_wrong_type_or_given_twice_are_invalid() {
        let mut headers = text_headers(&BINARY);
        headers[3].1 = HeaderValue::NotText("a long-long-int");
        let error = decode_binary(&headers, None, b"{}", &Limits::default()).expect_err("type");
        assert_eq!(error.reason_code(), "invalid_attribute");
        assert!(
            error.to_string().contains("ce-type is a long-long-int"),
            "{error}"
        );

        let mut headers = text_headers(&BINARY);
        headers.push(("CE-ID", HeaderValue::Text("b2")));
        let error = decode_binary(&headers, None, b"{}", &Limits::default()).expect_err("twice");
        assert_eq!(error.reason_code(), "invalid_attribute");
        // A header of another type that is not an attribute is no concern of warren's.
        let mut headers = text_headers(&BINARY);
        headers.push(("x-count", HeaderValue::NotText("a long-int")));
        assert!(decode_binary(&headers, None, b"{}", &Limits::default()).is_ok());
    }

    #[test]
    fn attributes_too_long_for_amqp_or_with_control_characters_are_invalid() {
        let long = format!("\"{}\"", "c".repeat(MAX_SHORT_ATTRIBUTE_BYTES + 1));
        let cases = [
            with("correlationid", &long),
            with("id", &long),
            with("type", &long),
            with("source", &long),
            with("replyto", &long),
            with("causationid", &long),
            with("id", "\"forged\\n[echo] line\""),
            with("source", "\"/s\\u001b[31m\""),
            with("subject", "\"a\\u0085b\""),
            with(
                "tracestate",
                &format!("\"{}\"", "t".repeat(MAX_LONG_ATTRIBUTE_BYTES + 1)),
            ),
        ];
        for body in cases {
            let error = decode(&body).expect_err(&body);
            assert_eq!(error.reason_code(), "invalid_attribute", "{body}: {error}");
        }
        let at_limit = format!("\"{}\"", "c".repeat(MAX_SHORT_ATTRIBUTE_BYTES));
        assert!(decode(&with("correlationid", &at_limit)).is_ok());
        assert!(decode(&with("subject", "\"caf\u{e9} \u{1f600}\"")).is_ok());

        let mut headers = text_headers(&BINARY);
        let long_id = "i".repeat(300);
        headers[1].1 = HeaderValue::Text(&long_id);
        let error = decode_binary(&headers, None, b"{}", &Limits::default()).expect_err("long");
        assert_eq!(error.reason_code(), "invalid_attribute");
    }

    #[test]
    fn the_progress_extension_is_read_in_both_modes_and_carried_to_children() {
        assert!(!decode(VALID).expect("valid").attributes.progress);
        let asked_body = with("progress", "true");
        let asked = decode(&asked_body).expect("progress");
        assert!(asked.attributes.progress);
        let child = asked
            .attributes
            .child_of_type("dev.warren.x.v1", None, "/w");
        assert!(child.progress, "children carry it");
        let body = Envelope {
            attributes: child,
            data: RawValue::NULL,
        }
        .to_json_vec()
        .expect("encodes");
        assert!(String::from_utf8_lossy(&body).contains(r#""progress":true"#));
        let error = decode(&with("progress", "\"yes\"")).expect_err("not a boolean");
        assert_eq!(error.reason_code(), "invalid_envelope");

        let mut headers = text_headers(&BINARY);
        headers.push(("ce-progress", HeaderValue::Text("true")));
        let binary = decode_binary(&headers, None, b"{}", &Limits::default()).expect("binary");
        assert!(binary.attributes.progress);
        headers.pop();
        headers.push(("ce-progress", HeaderValue::Text("maybe")));
        let error = decode_binary(&headers, None, b"{}", &Limits::default()).expect_err("maybe");
        assert_eq!(error.reason_code(), "invalid_attribute");
    }

    #[test]
    fn control_characters_are_found_in_every_range() {
        assert_eq!(find_control_character("plain text \u{e9}\u{a0}"), None);
        assert_eq!(find_control_character("a\nb"), Some(1));
        assert_eq!(find_control_character("ab\u{7f}"), Some(2));
        assert_eq!(find_control_character("\u{e9}\u{9f}"), Some(2));
        assert_eq!(find_control_character("\u{0}"), Some(0));
    }

    #[test]
    fn salvage_keeps_only_valid_attributes() {
        let long = format!("\"{}\"", "c".repeat(300));
        let body = with("correlationid", &long);
        let salvaged = salvage_attributes(&[], false, body.as_bytes(), &Limits::default());
        assert_eq!(salvaged.id, "m1");
        assert_eq!(salvaged.replyto.as_deref(), Some("warren.reply.x"));
        assert_eq!(salvaged.correlationid, None);

        let not_json = salvage_attributes(&[], false, b"{nope", &Limits::default());
        assert_eq!(not_json, Attributes::default());

        let mut headers = text_headers(&BINARY);
        headers[3].1 = HeaderValue::NotText("a long-long-int");
        let salvaged = salvage_attributes(&headers, true, b"{", &Limits::default());
        assert_eq!(salvaged.id, "b1");
        assert_eq!(salvaged.message_type, "");
        assert_eq!(salvaged.replyto.as_deref(), Some("warren.reply.sdk"));
        headers.push(("CE-REPLYTO", HeaderValue::Text("warren.reply.other")));
        let salvaged = salvage_attributes(&headers, true, b"{", &Limits::default());
        assert_eq!(
            salvaged.replyto, None,
            "a replyto given twice is not trusted"
        );
    }
}
