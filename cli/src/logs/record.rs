//! One line of a log file: what filtering and merging read of it ([`Head`]), and a line
//! kept to be printed ([`Record`]).

use std::borrow::Cow;
use std::rc::Rc;

use jiff::Timestamp;
use serde::Deserialize;

/// A log level, the least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(super) enum Level {
    // No doc comments: clap would show them as the help of each value.
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    /// The level a log line names (`"INFO"`; any case), if it is one of the five.
    pub(super) fn of_line(text: &str) -> Option<Level> {
        [
            ("TRACE", Level::Trace),
            ("DEBUG", Level::Debug),
            ("INFO", Level::Info),
            ("WARN", Level::Warn),
            ("ERROR", Level::Error),
        ]
        .into_iter()
        .find_map(|(name, level)| text.eq_ignore_ascii_case(name).then_some(level))
    }
}

/// What filtering and merging need of a line, borrowed from it where it has no escapes.
/// Every other field is skipped (but must be valid JSON). A field that comes twice
/// counts by its last value, as most JSON readers take it.
#[derive(Debug, Default)]
pub(super) struct Head<'line> {
    /// RFC 3339, UTC.
    pub(super) timestamp: Option<Cow<'line, str>>,
    pub(super) level: Option<Cow<'line, str>>,
    pub(super) worker: Option<Cow<'line, str>>,
    pub(super) trace_id: Option<Cow<'line, str>>,
    pub(super) correlation_id: Option<Cow<'line, str>>,
}

impl<'de> Deserialize<'de> for Head<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(HeadVisitor)
    }
}

struct HeadVisitor;

impl<'de> serde::de::Visitor<'de> for HeadVisitor {
    type Value = Head<'de>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a log record (a JSON object)")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Head<'de>, A::Error> {
        let mut head = Head::default();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let slot = match &*key {
                "timestamp" => &mut head.timestamp,
                "level" => &mut head.level,
                "worker" => &mut head.worker,
                "trace_id" => &mut head.trace_id,
                "correlation_id" => &mut head.correlation_id,
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value::<Text<'de>>()?.0);
        }
        Ok(head)
    }
}

/// A JSON string, borrowed from the line when it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> serde::de::Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(text)))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(text)))
    }
}

/// A line read as a log record: its head, and its time.
#[derive(Debug)]
pub(super) struct ParsedLine<'line> {
    pub(super) head: Head<'line>,
    pub(super) timestamp: Timestamp,
}

/// What one line of a log file is.
#[derive(Debug)]
pub(super) enum Line<'line> {
    /// Empty, or only white space: nothing.
    Blank,
    /// Not a log record: not UTF-8, not a JSON object (a line cut short by a killed
    /// writer), or without a `timestamp` that parses.
    Bad,
    /// A record.
    Record(ParsedLine<'line>),
}

/// Reads `bytes`, one line of a log file without its line end.
pub(super) fn parse_line(bytes: &[u8]) -> Line<'_> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Line::Bad;
    };
    if text.trim().is_empty() {
        return Line::Blank;
    }
    let Ok(head) = serde_json::from_str::<Head<'_>>(text) else {
        return Line::Bad;
    };
    let Some(Ok(timestamp)) = head.timestamp.as_deref().map(str::parse::<Timestamp>) else {
        return Line::Bad;
    };
    Line::Record(ParsedLine { head, timestamp })
}

/// A line kept to be printed: its time (the merge's order), the line itself, and the
/// worker of the file it came from (for a line that does not name its worker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) timestamp: Timestamp,
    /// Exactly as in the file, without its line end.
    pub(super) line: String,
    pub(super) file_worker: Rc<str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_read_with_its_head() {
        let line = br#"{"timestamp":"2026-11-30T11:30:00.123456Z","level":"INFO","worker":"orders","target":"warren_runtime::message","message":"handled","attempts":2,"message_id":"m1","correlation_id":"c\"1","trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331"}"#;
        let Line::Record(parsed) = parse_line(line) else {
            panic!("a record");
        };
        assert_eq!(
            parsed.timestamp,
            "2026-11-30T11:30:00.123456Z"
                .parse::<Timestamp>()
                .expect("a time")
        );
        assert_eq!(parsed.head.level.as_deref(), Some("INFO"));
        assert_eq!(parsed.head.worker.as_deref(), Some("orders"));
        assert_eq!(parsed.head.correlation_id.as_deref(), Some("c\"1"));
        assert_eq!(
            parsed.head.trace_id.as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
    }

    #[test]
    fn a_record_needs_only_a_timestamp() {
        let Line::Record(parsed) = parse_line(br#"{"timestamp":"2026-11-30T11:30:00Z"}"#) else {
            panic!("a record");
        };
        assert_eq!(parsed.head.level, None);
        assert_eq!(parsed.head.worker, None);
    }

    #[test]
    fn bad_lines_are_told_from_blank_ones() {
        for bad in [
            &br#"{"timestamp":"2026-11-30T11:30:00.123456Z","level":"INFO","mess"#[..],
            b"thread 'main' panicked at src/main.rs:1:1",
            b"[1,2,3]",
            b"42",
            br#"{"level":"INFO","message":"no time"}"#,
            br#"{"timestamp":"yesterday","level":"INFO"}"#,
            br#"{"timestamp":12,"level":"INFO"}"#,
            br#"{"timestamp":"2026-11-30T11:30:00Z","level":5}"#,
            b"{\"timestamp\":\"2026-11-30T11:30:00Z\",\"message\":\"\xff\"}",
            b"{\"timestamp\":\"2026-11-30T11:30:00Z\",\"message\":\"raw\nnewline\"}",
        ] {
            assert!(
                matches!(parse_line(bad), Line::Bad),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for blank in [&b""[..], b"   ", b"\r", b"\t "] {
            assert!(matches!(parse_line(blank), Line::Blank), "{blank:?}");
        }
    }

    #[test]
    fn a_field_that_comes_twice_counts_by_its_last_value() {
        let line = br#"{"timestamp":"2026-11-30T11:30:00Z","trace_id":"a","trace_id":"b"}"#;
        let Line::Record(parsed) = parse_line(line) else {
            panic!("a record");
        };
        assert_eq!(parsed.head.trace_id.as_deref(), Some("b"));
    }

    #[test]
    fn fields_without_escapes_are_borrowed() {
        let line =
            br#"{"timestamp":"2026-11-30T11:30:00Z","worker":"orders","correlation_id":"a\nb"}"#;
        let Line::Record(parsed) = parse_line(line) else {
            panic!("a record");
        };
        assert!(matches!(parsed.head.worker, Some(Cow::Borrowed("orders"))));
        assert_eq!(parsed.head.correlation_id.as_deref(), Some("a\nb"));
    }

    #[test]
    fn levels_are_ordered_and_read_in_any_case() {
        assert!(Level::Trace < Level::Debug && Level::Debug < Level::Info);
        assert!(Level::Info < Level::Warn && Level::Warn < Level::Error);
        assert_eq!(Level::of_line("WARN"), Some(Level::Warn));
        assert_eq!(Level::of_line("error"), Some(Level::Error));
        assert_eq!(Level::of_line("WARNING"), None);
        assert_eq!(Level::of_line(""), None);
    }
}
