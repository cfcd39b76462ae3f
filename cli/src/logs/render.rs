//! How a record is printed: a human line, or its JSON.
//!
//! Everything in a log line may come from a message (ids, types, error texts), so the
//! human line escapes every control character (`\n`, `\u{1b}`): a hostile message id must
//! not start a forged line or send the terminal an escape sequence. The JSON form keeps
//! the record as it is, but writes the control characters JSON lets through unescaped
//! (DEL and the C1 set, U+0080 to U+009F, some of which terminals obey) as `\u` escapes.

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::Value;

use super::record::Record;

/// The fields the human line shows in its own places, not as `key=value`; `target`
/// (where in the code the line was logged) only in `--json`.
const PLACED_FIELDS: [&str; 5] = ["timestamp", "level", "worker", "message", "target"];

/// The fields that say which message a line is about, shown after the event's own
/// fields and in this order, wherever the line has them.
const IDENTITY_FIELDS: [&str; 6] = [
    "message_id",
    "correlation_id",
    "message_type",
    "trace_id",
    "span_id",
    "parent_span_id",
];

/// Appends `record` as a human line (without its line end) to `out`:
/// `<time> <LEVEL> [<worker>] <message> key=value ...`: the event's own fields in the
/// record's order, then those of [`IDENTITY_FIELDS`] it has.
pub(super) fn human(record: &Record, out: &mut String) {
    let Ok(Fields(fields)) = serde_json::from_str::<Fields>(&record.line) else {
        // A record read as one when it was kept: only a change under our feet gets here.
        push_escaped(out, &record.line);
        return;
    };
    let field = |name: &str| {
        fields
            .iter()
            .rev()
            .find_map(|(key, value)| (key == name).then_some(value))
    };
    let _ = write!(out, "{:.6} ", record.timestamp);
    match field("level") {
        Some(Value::String(level)) => {
            let start = out.len();
            push_escaped(out, level);
            let width = out[start..].chars().count();
            out.extend(std::iter::repeat_n(' ', 5_usize.saturating_sub(width)));
        }
        Some(other) => push_escaped(out, &other.to_string()),
        None => out.push_str("-    "),
    }
    out.push_str(" [");
    match field("worker") {
        Some(Value::String(worker)) => push_escaped(out, worker),
        Some(other) => push_escaped(out, &other.to_string()),
        None => push_escaped(out, &record.file_worker),
    }
    out.push(']');
    match field("message") {
        Some(Value::String(message)) => {
            out.push(' ');
            push_escaped(out, message);
        }
        Some(other) => {
            out.push(' ');
            push_escaped(out, &other.to_string());
        }
        None => {}
    }
    for (index, (key, value)) in fields.iter().enumerate() {
        let key = key.as_str();
        // A field that comes twice is shown once, by its last value.
        let shown_later = fields[index + 1..].iter().any(|(later, _)| later == key);
        if PLACED_FIELDS.contains(&key) || IDENTITY_FIELDS.contains(&key) || shown_later {
            continue;
        }
        push_field(out, key, value);
    }
    for key in IDENTITY_FIELDS {
        if let Some(value) = field(key) {
            push_field(out, key, value);
        }
    }
}

/// Appends ` key=value`.
fn push_field(out: &mut String, key: &str, value: &Value) {
    out.push(' ');
    push_escaped(out, key);
    out.push('=');
    match value {
        Value::String(text) => push_value(out, text),
        other => push_escaped(out, &other.to_string()),
    }
}

/// Appends `record` as its JSON line (without its line end) to `out`, with DEL and the C1
/// control characters written as `\u` escapes: the same JSON value, safe on a terminal.
pub(super) fn json(record: &Record, out: &mut String) {
    for character in record.line.chars() {
        if character.is_control() {
            // JSON forbids the C0 set raw, so a record holds none: only DEL and C1 here.
            let _ = write!(out, "\\u{:04x}", u32::from(character));
        } else {
            out.push(character);
        }
    }
}

/// Appends a string value of a field: bare when it is one word, quoted (`"`, `\`
/// escaped) when it is empty or has white space, `"` or `=` in it.
fn push_value(out: &mut String, text: &str) {
    let needs_quotes = text.is_empty()
        || text
            .chars()
            .any(|character| character.is_whitespace() || matches!(character, '"' | '='));
    if !needs_quotes {
        push_escaped(out, text);
        return;
    }
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            character if character.is_control() => push_control(out, character),
            character => out.push(character),
        }
    }
    out.push('"');
}

/// Appends `text` with every control character escaped (`\n`, `\u{1b}`).
fn push_escaped(out: &mut String, text: &str) {
    for character in text.chars() {
        if character.is_control() {
            push_control(out, character);
        } else {
            out.push(character);
        }
    }
}

fn push_control(out: &mut String, character: char) {
    out.extend(character.escape_default());
}

/// A JSON object's fields in the order they are written.
struct Fields(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> serde::de::Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(12));
        while let Some(entry) = map.next_entry::<String, Value>()? {
            fields.push(entry);
        }
        Ok(Fields(fields))
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    fn record(line: &str) -> Record {
        let timestamp = serde_json::from_str::<Value>(line).expect("JSON")["timestamp"]
            .as_str()
            .expect("a timestamp")
            .parse()
            .expect("a time");
        Record {
            timestamp,
            line: line.to_owned(),
            file_worker: Rc::from("orders"),
        }
    }

    fn human_line(line: &str) -> String {
        let mut out = String::new();
        human(&record(line), &mut out);
        out
    }

    fn json_line(line: &str) -> String {
        let mut out = String::new();
        json(&record(line), &mut out);
        out
    }

    #[test]
    fn a_human_line_has_time_level_worker_message_then_fields_in_order() {
        let line = r#"{"timestamp":"2026-11-30T11:30:00.1234Z","level":"WARN","worker":"payments","target":"warren_runtime::message","message":"refused: card_declined","reason":"card declined","attempts":1,"retryable":false,"details":{"last4":"0002"},"message_id":"m-1","correlation_id":"c-1","message_type":"dev.warren.payments.charge.v1","trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331"}"#;
        assert_eq!(
            human_line(line),
            "2026-11-30T11:30:00.123400Z WARN  [payments] refused: card_declined \
             reason=\"card declined\" attempts=1 retryable=false details={\"last4\":\"0002\"} \
             message_id=m-1 correlation_id=c-1 message_type=dev.warren.payments.charge.v1 \
             trace_id=0af7651916cd43dd8448eb211c80319c span_id=b7ad6b7169203331"
        );
    }

    #[test]
    fn the_message_identity_comes_after_the_event_fields_whatever_the_file_order() {
        // As the worker's file writer has it: span fields first, then the event's own.
        let line = r#"{"timestamp":"2026-11-30T11:30:00Z","level":"INFO","worker":"echo","target":"warren_runtime::message","correlation_id":"c-1","message_id":"m-1","message_type":"dev.warren.echo.v1","parent_span_id":"9d3805441e593f2d","span_id":"8ed6f6937f3a6f8f","trace_id":"0af7651916cd43dd8448eb211c80319c","message":"handled","elapsed_ms":3}"#;
        assert_eq!(
            human_line(line),
            "2026-11-30T11:30:00.000000Z INFO  [echo] handled elapsed_ms=3 message_id=m-1 \
             correlation_id=c-1 message_type=dev.warren.echo.v1 \
             trace_id=0af7651916cd43dd8448eb211c80319c span_id=8ed6f6937f3a6f8f \
             parent_span_id=9d3805441e593f2d"
        );
    }

    #[test]
    fn missing_places_are_filled_or_left_out() {
        assert_eq!(
            human_line(r#"{"timestamp":"2026-11-30T11:30:00Z"}"#),
            "2026-11-30T11:30:00.000000Z -     [orders]"
        );
        assert_eq!(
            human_line(
                r#"{"timestamp":"2026-11-30T11:30:00Z","level":"ERROR","message":7,"note":"","n":null}"#
            ),
            "2026-11-30T11:30:00.000000Z ERROR [orders] 7 note=\"\" n=null"
        );
    }

    #[test]
    fn hostile_values_cannot_forge_lines_or_send_escapes() {
        let line = r#"{"timestamp":"2026-11-30T11:30:00Z","level":"INFO","worker":"echo","message":"bad input\n2026-11-30T11:30:01.000000Z ERROR [orders] forged","message_id":"m1\u001b[31mred\u0007","error":"a \"quoted\" \\ thing\r\n","weird\nkey":"\u009b2J"}"#;
        let out = human_line(line);
        assert!(!out.chars().any(char::is_control), "{out:?}");
        assert_eq!(
            out,
            "2026-11-30T11:30:00.000000Z INFO  [echo] bad input\\n2026-11-30T11:30:01.000000Z \
             ERROR [orders] forged error=\"a \\\"quoted\\\" \\\\ thing\\r\\n\" \
             weird\\nkey=\\u{9b}2J message_id=m1\\u{1b}[31mred\\u{7}"
        );
    }

    #[test]
    fn a_field_that_comes_twice_is_shown_once_by_its_last_value() {
        assert_eq!(
            human_line(
                r#"{"timestamp":"2026-11-30T11:30:00Z","level":"INFO","message":"m","id":"a","level":"DEBUG","id":"b"}"#
            ),
            "2026-11-30T11:30:00.000000Z DEBUG [orders] m id=b"
        );
    }

    #[test]
    fn json_is_the_record_as_it_is_but_for_c1_controls() {
        let plain = r#"{"timestamp":"2026-11-30T11:30:00Z","message":"caf\u00e9 é \n"}"#;
        assert_eq!(json_line(plain), plain);
        let c1 = "{\"timestamp\":\"2026-11-30T11:30:00Z\",\"message\":\"\u{9b}2J\u{7f}\"}";
        let out = json_line(c1);
        assert_eq!(
            out,
            r#"{"timestamp":"2026-11-30T11:30:00Z","message":"\u009b2J\u007f"}"#
        );
        let before: Value = serde_json::from_str(c1).expect("JSON");
        let after: Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(before, after, "the same value");
    }
}
