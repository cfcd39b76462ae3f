//! What `warren tail` prints for a message: one summary line, or one JSON line.
//!
//! Everything printed comes from someone else's message, so nothing in it may act on
//! the terminal: control characters (newlines, escapes, C1 codes), line separators and
//! bidirectional overrides are escaped in every field, and a JSON body is printed with
//! its insignificant whitespace removed and such characters in its strings written as
//! `\uXXXX`, which is the same JSON.

use std::fmt::Write as _;

use jiff::Timestamp;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use warren_messages::{Attributes, DecodeError, Envelope};

use crate::printable::{escape, is_unsafe, truncate};

/// How much of the data (or of an unreadable body) a summary line shows, in characters.
const PREVIEW_CHARS: usize = 120;

/// Where and when a message was seen.
#[derive(Debug, Clone, Copy)]
pub(super) struct Route<'a> {
    /// When tail received it.
    pub(super) received_at: Timestamp,
    /// The exchange it was published to.
    pub(super) exchange: &'a str,
    /// Its routing key.
    pub(super) routing_key: &'a str,
}

/// A message as a worker would read it.
#[derive(Debug)]
pub(super) enum Reading<'a> {
    /// A valid envelope (structured or binary mode).
    Envelope(Envelope<&'a RawValue>),
    /// Not one: why, and what can be trusted of its attributes.
    Unreadable {
        /// Why a worker would refuse it.
        error: DecodeError,
        /// What can still be read of its attributes.
        attributes: Attributes,
    },
}

/// One line: time, exchange, routing key, then `type=`, `id=`, `correlationid=` and a
/// preview of the data; for a message that is not an envelope, `unreadable=` with the
/// reason, the attributes that could be read, the error and a preview of the body.
pub(super) fn summary_line(route: &Route<'_>, body: &[u8], reading: &Reading<'_>) -> String {
    let mut line = format!(
        "{} {} {}",
        format_time(route.received_at),
        escape(or_dash(route.exchange)),
        escape(or_dash(route.routing_key)),
    );
    match reading {
        Reading::Envelope(envelope) => {
            let attributes = &envelope.attributes;
            let _ = write!(
                line,
                " type={} id={} correlationid={} data={}",
                escape(or_dash(&attributes.message_type)),
                escape(or_dash(&attributes.id)),
                escape(or_dash(attributes.correlation_id())),
                escape(&truncate(&compact_json(envelope.data.get()), PREVIEW_CHARS)),
            );
        }
        Reading::Unreadable { error, attributes } => {
            let _ = write!(
                line,
                " unreadable={} type={} id={} correlationid={} error={} body={} ({} bytes)",
                error.reason_code(),
                escape(or_dash(&attributes.message_type)),
                escape(or_dash(&attributes.id)),
                escape(attributes.correlationid.as_deref().unwrap_or("-")),
                quote(&error.to_string()),
                quote(&truncate(&String::from_utf8_lossy(body), PREVIEW_CHARS)),
                body.len(),
            );
        }
    }
    line
}

/// One JSON line: a valid envelope whole (a structured body as received, a binary-mode
/// one in structured form); any other JSON body as received; anything else an object
/// `{"unreadable": {…}}` describing it (reason, error, route, readable attributes,
/// size, the body as text with invalid UTF-8 replaced).
pub(super) fn json_line(route: &Route<'_>, body: &[u8], reading: &Reading<'_>) -> String {
    if let Reading::Envelope(envelope) = reading
        && !is_structured_envelope(body)
        && let Ok(structured) = envelope.to_json_vec()
    {
        return compact_json(&String::from_utf8_lossy(&structured));
    }
    if let Ok(text) = std::str::from_utf8(body)
        && serde_json::from_str::<IgnoredAny>(text).is_ok()
    {
        return compact_json(text);
    }
    let mut description = Map::new();
    let mut put = |name: &str, value: Value| {
        description.insert(name.to_owned(), value);
    };
    if let Reading::Unreadable { error, attributes } = reading {
        put("reason", error.reason_code().into());
        put("error", error.to_string().into());
        for (name, value) in [
            ("id", Some(&attributes.id)),
            ("source", Some(&attributes.source)),
            ("type", Some(&attributes.message_type)),
            ("correlationid", attributes.correlationid.as_ref()),
            ("replyto", attributes.replyto.as_ref()),
        ] {
            if let Some(value) = value.filter(|value| !value.is_empty()) {
                put(name, value.as_str().into());
            }
        }
    }
    put("received_at", format_time(route.received_at).into());
    put("exchange", route.exchange.into());
    put("routing_key", route.routing_key.into());
    put("body_bytes", body.len().into());
    put("body_utf8", std::str::from_utf8(body).is_ok().into());
    put("body", String::from_utf8_lossy(body).into_owned().into());
    let described = serde_json::json!({ "unreadable": description }).to_string();
    compact_json(&described)
}

/// Whether `body` is itself a CloudEvents envelope (structured mode): a JSON object
/// with a `specversion`.
fn is_structured_envelope(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        specversion: Option<IgnoredAny>,
    }
    serde_json::from_slice::<Probe>(body).is_ok_and(|probe| probe.specversion.is_some())
}

/// `2026-01-31T12:00:00.123Z`.
fn format_time(timestamp: Timestamp) -> String {
    timestamp.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

/// `text` in double quotes, with `"` and `\` escaped as well as [`is_unsafe`]
/// characters, so where it ends is plain.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            character if is_unsafe(character) => {
                let _ = write!(out, "{}", character.escape_default());
            }
            character => out.push(character),
        }
    }
    out.push('"');
    out
}

/// Valid JSON `text` on one line and safe to print: whitespace between tokens removed,
/// and [`is_unsafe`] characters inside strings written as `\uXXXX` (JSON itself only
/// requires it below U+0020). The result is the same JSON value.
pub(super) fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut after_backslash = false;
    for character in text.chars() {
        if in_string {
            if after_backslash {
                after_backslash = false;
                out.push(character);
            } else if character == '\\' {
                after_backslash = true;
                out.push(character);
            } else if character == '"' {
                in_string = false;
                out.push(character);
            } else if is_unsafe(character) {
                // Every unsafe character is in the Basic Multilingual Plane.
                let _ = write!(out, "\\u{:04x}", u32::from(character));
            } else {
                out.push(character);
            }
        } else {
            match character {
                ' ' | '\t' | '\n' | '\r' => {}
                '"' => {
                    in_string = true;
                    out.push(character);
                }
                character => out.push(character),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_messages::{Limits, decode_structured};

    const ENVELOPE: &str = r#"{
        "specversion": "1.0", "id": "m-1", "source": "/test", "type": "dev.warren.echo.v1",
        "correlationid": "c-1", "datacontenttype": "application/json",
        "data": {"text": "hi  there", "list": [1, 2]}
    }"#;

    fn route() -> Route<'static> {
        Route {
            received_at: "2026-01-31T12:00:00.1234Z".parse().expect("a timestamp"),
            exchange: "warren.commands",
            routing_key: "dev.warren.echo.v1",
        }
    }

    fn reading(body: &[u8]) -> Reading<'_> {
        match decode_structured(body, &Limits::default()) {
            Ok(envelope) => Reading::Envelope(envelope),
            Err(error) => Reading::Unreadable {
                error,
                attributes: Attributes::default(),
            },
        }
    }

    #[test]
    fn an_envelope_is_summed_up_on_one_line() {
        let line = summary_line(&route(), ENVELOPE.as_bytes(), &reading(ENVELOPE.as_bytes()));
        assert_eq!(
            line,
            "2026-01-31T12:00:00.123Z warren.commands dev.warren.echo.v1 \
             type=dev.warren.echo.v1 id=m-1 correlationid=c-1 \
             data={\"text\":\"hi  there\",\"list\":[1,2]}"
        );
    }

    #[test]
    fn a_hostile_body_cannot_break_the_line_or_reach_the_terminal() {
        let body = b"not json\n2026-01-31 [echo] forged \x1b[31mred\xff";
        let attributes = Attributes {
            message_type: "dev.warren.echo.v1".to_owned(),
            ..Attributes::default()
        };
        let hostile = Route {
            routing_key: "key\u{1b}]0;title\u{7}\u{202e}",
            ..route()
        };
        let reading = Reading::Unreadable {
            error: DecodeError::NotJson("expected ident".to_owned()),
            attributes,
        };
        let line = summary_line(&hostile, body, &reading);
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(!line.chars().any(is_unsafe), "{line:?}");
        assert!(
            line.contains(r"key\u{1b}]0;title\u{7}\u{202e} unreadable=not_json"),
            "{line}"
        );
        assert!(
            line.contains("type=dev.warren.echo.v1 id=- correlationid=-"),
            "{line}"
        );
        assert!(
            line.contains(r#"body="not json\n2026-01-31 [echo] forged \u{1b}[31mred"#),
            "{line}"
        );
        assert!(
            line.ends_with(&format!("\u{fffd}\" ({} bytes)", body.len())),
            "{line}"
        );

        let json = json_line(&hostile, body, &reading);
        assert_eq!(json.lines().count(), 1, "{json}");
        assert!(!json.chars().any(is_unsafe), "{json:?}");
        let value: Value = serde_json::from_str(&json).expect("a JSON line");
        let described = &value["unreadable"];
        assert_eq!(described["reason"], "not_json", "{json}");
        assert_eq!(described["type"], "dev.warren.echo.v1", "{json}");
        assert_eq!(described["routing_key"], hostile.routing_key, "{json}");
        assert_eq!(described["body_bytes"], body.len(), "{json}");
        assert_eq!(described["body_utf8"], false, "{json}");
        assert_eq!(
            described["body"],
            String::from_utf8_lossy(body).as_ref(),
            "the same text, escaped: {json}"
        );
        assert!(described.get("id").is_none(), "{json}");
    }

    #[test]
    fn json_bodies_are_printed_as_received_on_one_line() {
        let envelope = ENVELOPE.as_bytes();
        let json = json_line(&route(), envelope, &reading(envelope));
        assert!(
            json.starts_with(r#"{"specversion":"1.0","id":"m-1""#),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<Value>(&json).expect("JSON"),
            serde_json::from_str::<Value>(ENVELOPE).expect("JSON"),
        );

        // JSON, but no envelope: as received too.
        let other = b"[1, {\"a\": \"\xc2\x9b2J\"}]\n";
        let json = json_line(&route(), other, &reading(other));
        assert_eq!(json, r#"[1,{"a":"\u009b2J"}]"#);
    }

    #[test]
    fn a_binary_mode_envelope_is_printed_in_structured_form() {
        let attributes = Attributes::request_of_type("dev.warren.echo.v1", None, "/sdk");
        let data = RawValue::from_string(r#"{"x": 1}"#.to_owned()).expect("JSON");
        let body = data.get().as_bytes().to_vec();
        let reading = Reading::Envelope(Envelope {
            attributes: attributes.clone(),
            data: &*data,
        });
        let json = json_line(&route(), &body, &reading);
        let value: Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(value["id"], attributes.id.as_str(), "{json}");
        assert_eq!(value["data"], serde_json::json!({"x": 1}), "{json}");
    }

    #[test]
    fn compacting_keeps_strings_and_escapes_what_a_terminal_would_act_on() {
        assert_eq!(
            compact_json(" { \"a b\" : [ 1 , \"x\\\" y\" ] ,\n\"c\":\"\u{7f}\u{2028}\" } "),
            r#"{"a b":[1,"x\" y"],"c":"\u007f\u2028"}"#
        );
        assert_eq!(compact_json(r#""\\" "#), r#""\\""#);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(r#"say "hi" \ bye"#), r#""say \"hi\" \\ bye""#);
    }
}
