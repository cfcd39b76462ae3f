//! AMQP headers and properties: every header name warren reads or writes, reading them
//! (strings, counts, the broker's `x-death`), and writing them within the protocol's
//! bounds.
//!
//! Two bounds matter when a value from a message goes into a property or a header: an
//! AMQP short string (every property but the headers, and every header name) holds at
//! most 255 bytes, and a message's properties travel in one frame of at most the
//! connection's `frame_max`. lapin panics on the first and the broker closes the
//! connection on the second, so nothing here lets either happen.

use std::collections::BTreeMap;

use jiff::Timestamp;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use warren_messages::HeaderValue;

/// The headers warren adds to a dead letter (the original message, as it arrived).
pub mod dead_letter_header {
    /// A stable snake_case reason, e.g. `not_json`, `invalid_data`, `out_of_stock`.
    pub const REASON: &str = "x-warren-reason";
    /// The error in words.
    pub const ERROR: &str = "x-warren-error";
    /// The worker that dead-lettered it.
    pub const WORKER: &str = "x-warren-worker";
    /// The exchange it was first published to.
    pub const ORIGINAL_EXCHANGE: &str = "x-warren-original-exchange";
    /// The routing key it was first published with.
    pub const ORIGINAL_ROUTING_KEY: &str = "x-warren-original-routing-key";
    /// How many times it was attempted.
    pub const ATTEMPTS: &str = "x-warren-attempts";
    /// When it was dead-lettered (RFC 3339).
    pub const FAILED_AT: &str = "x-warren-failed-at";
    /// The names of the message's own headers left out of the copy so that it fits in
    /// one frame, comma-separated (present only when some were).
    pub const DROPPED_HEADERS: &str = "x-warren-dropped-headers";
    /// The subject of the message's token, when the worker verified it: who sent it.
    /// The token itself ([`super::X_WARREN_TOKEN`]) is never kept in the copy.
    pub const TOKEN_SUBJECT: &str = "x-warren-token-subject";
}

/// The broker's record of each time a message was dead-lettered (newest first).
pub const X_DEATH: &str = "x-death";
/// The broker's count of earlier deliveries of a message (quorum queues).
pub const X_DELIVERY_COUNT: &str = "x-delivery-count";
/// The W3C trace context, mirrored from the envelope.
pub const TRACEPARENT: &str = "traceparent";
/// A message's token: the compact JWT that says who sent it (docs/security.md, "Tokens").
/// An originator sets it on a request; the runtime copies it onto every command and event
/// the work produces (and the announcement of its failure), never onto an outcome, and
/// never keeps it in a dead-letter copy.
pub const X_WARREN_TOKEN: &str = "x-warren-token";

/// The message's token (`x-warren-token`, by that exact name): `None` when it has none,
/// [`TokenError::NotText`](crate::auth::TokenError::NotText) when it is not a string.
pub fn token(headers: Option<&FieldTable>) -> Result<Option<&str>, crate::auth::TokenError> {
    match headers.and_then(|table| table.inner().get(X_WARREN_TOKEN)) {
        None => Ok(None),
        Some(value) => text(value)
            .map(Some)
            .ok_or(crate::auth::TokenError::NotText),
    }
}

/// Whether `name` is the token's header, in any case: what no copy warren makes keeps.
pub fn is_token_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(X_WARREN_TOKEN)
}

/// The text of a string header value: a long string that is UTF-8, or a short string.
pub fn text(value: &AMQPValue) -> Option<&str> {
    match value {
        AMQPValue::LongString(text) => std::str::from_utf8(text.as_bytes()).ok(),
        AMQPValue::ShortString(text) => Some(text.as_str()),
        _ => None,
    }
}

/// The text of a string header value, with U+FFFD for bytes that are not UTF-8: for
/// showing to a person.
pub fn text_lossy(value: &AMQPValue) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes())),
        AMQPValue::ShortString(text) => Some(std::borrow::Cow::Borrowed(text.as_str())),
        _ => None,
    }
}

/// The header `name` of `headers` as text, when it is a string.
pub fn header_text<'a>(headers: Option<&'a FieldTable>, name: &str) -> Option<&'a str> {
    headers?.inner().get(name).and_then(text)
}

/// The header `name` as a count, when it is a non-negative integer of any width.
pub fn header_count(headers: Option<&FieldTable>, name: &str) -> Option<u32> {
    let value = headers?.inner().get(name)?;
    let number: i64 = match value {
        AMQPValue::ShortShortInt(v) => (*v).into(),
        AMQPValue::ShortShortUInt(v) => (*v).into(),
        AMQPValue::ShortInt(v) => (*v).into(),
        AMQPValue::ShortUInt(v) => (*v).into(),
        AMQPValue::LongInt(v) => (*v).into(),
        AMQPValue::LongUInt(v) => (*v).into(),
        AMQPValue::LongLongInt(v) => *v,
        _ => return None,
    };
    u32::try_from(number).ok()
}

/// A header value as binary-mode decoding sees it: text, or what it is instead.
pub fn binary_value(value: &AMQPValue) -> HeaderValue<'_> {
    match value {
        AMQPValue::LongString(bytes) => match std::str::from_utf8(bytes.as_bytes()) {
            Ok(text) => HeaderValue::Text(text),
            Err(_) => HeaderValue::NotText("bytes that are not UTF-8"),
        },
        AMQPValue::ShortString(text) => HeaderValue::Text(text.as_str()),
        AMQPValue::Boolean(_) => HeaderValue::NotText("a boolean"),
        AMQPValue::ShortShortInt(_)
        | AMQPValue::ShortShortUInt(_)
        | AMQPValue::ShortInt(_)
        | AMQPValue::ShortUInt(_)
        | AMQPValue::LongInt(_)
        | AMQPValue::LongUInt(_)
        | AMQPValue::LongLongInt(_) => HeaderValue::NotText("an integer"),
        AMQPValue::Float(_) | AMQPValue::Double(_) | AMQPValue::DecimalValue(_) => {
            HeaderValue::NotText("a number")
        }
        AMQPValue::FieldArray(_) => HeaderValue::NotText("an array"),
        AMQPValue::Timestamp(_) => HeaderValue::NotText("a timestamp"),
        AMQPValue::FieldTable(_) => HeaderValue::NotText("a table"),
        AMQPValue::ByteArray(_) => HeaderValue::NotText("a byte array"),
        AMQPValue::Void => HeaderValue::NotText("void"),
    }
}

/// A long-string header value.
pub fn long_text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// `text` as an AMQP short string, or `None` when it is over 255 bytes (lapin's own
/// conversion panics then).
pub fn short_string(text: &str) -> Option<ShortString> {
    ShortString::try_new(text).ok()
}

/// Whether `name` is a header the broker writes when it dead-letters a message:
/// `x-death`, `x-first-death-*`, `x-last-death-*`.
pub fn is_death_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(X_DEATH)
        || starts_with_ignoring_case(name, "x-first-death-")
        || starts_with_ignoring_case(name, "x-last-death-")
}

/// Whether `name` is a header that dead-lettering added: warren's `x-warren-*`, or the
/// broker's death headers and `x-delivery-count`.
pub fn is_dead_letter_header(name: &str) -> bool {
    starts_with_ignoring_case(name, "x-warren-")
        || is_death_header(name)
        || name.eq_ignore_ascii_case(X_DELIVERY_COUNT)
}

fn starts_with_ignoring_case(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// `properties` without the headers dead-lettering added, so a replayed message looks
/// as it did before it died (and its `x-death` counts start again).
pub fn strip_dead_letter_headers(properties: &BasicProperties) -> BasicProperties {
    let Some(headers) = properties.headers() else {
        return properties.clone();
    };
    let kept: BTreeMap<ShortString, AMQPValue> = headers
        .inner()
        .iter()
        .filter(|(name, _)| !is_dead_letter_header(name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    properties.clone().with_headers(FieldTable::from(kept))
}

/// One entry of the broker's `x-death` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Death {
    /// Why: `rejected`, `expired`, `maxlen`, `delivery_limit`.
    pub reason: Option<String>,
    /// The queue it was dead-lettered from.
    pub queue: Option<String>,
    /// The exchange it had been published to.
    pub exchange: Option<String>,
    /// The first routing key it had been published with.
    pub routing_key: Option<String>,
    /// How many times it died this way in this queue.
    pub count: u64,
    /// When it last did.
    pub time: Option<Timestamp>,
}

/// The `x-death` entries, newest first, as the broker writes them: the one parser of
/// that header.
pub fn deaths(headers: Option<&FieldTable>) -> Vec<Death> {
    let Some(AMQPValue::FieldArray(entries)) = headers.and_then(|table| table.inner().get(X_DEATH))
    else {
        return Vec::new();
    };
    let owned_text =
        |table: &FieldTable, name: &str| table.inner().get(name).and_then(text).map(str::to_owned);
    entries
        .as_slice()
        .iter()
        .filter_map(|entry| match entry {
            AMQPValue::FieldTable(table) => Some(table),
            _ => None,
        })
        .map(|table| Death {
            reason: owned_text(table, "reason"),
            queue: owned_text(table, "queue"),
            exchange: owned_text(table, "exchange"),
            routing_key: match table.inner().get("routing-keys") {
                Some(AMQPValue::FieldArray(keys)) => {
                    keys.as_slice().first().and_then(text).map(str::to_owned)
                }
                Some(other) => text(other).map(str::to_owned),
                None => None,
            },
            count: header_count(Some(table), "count").map_or(1, u64::from),
            time: match table.inner().get("time") {
                Some(AMQPValue::Timestamp(seconds)) => i64::try_from(*seconds)
                    .ok()
                    .and_then(|seconds| Timestamp::from_second(seconds).ok()),
                _ => None,
            },
        })
        .collect()
}

/// The first property that did not arrive as valid UTF-8, by name.
///
/// warren's AMQP parser reads a short string that is not UTF-8 with U+FFFD in place of
/// each bad sequence (see `vendor/amq-protocol-types`) rather than dropping the
/// connection; such a property no longer says what its sender wrote, so the message is
/// refused as bad input.
pub fn unreadable_property(properties: &BasicProperties) -> Option<&'static str> {
    let mangled = |value: &Option<ShortString>| {
        value
            .as_ref()
            .is_some_and(|value| value.as_str().contains(char::REPLACEMENT_CHARACTER))
    };
    let named = [
        ("content_type", properties.content_type()),
        ("content_encoding", properties.content_encoding()),
        ("correlation_id", properties.correlation_id()),
        ("reply_to", properties.reply_to()),
        ("expiration", properties.expiration()),
        ("message_id", properties.message_id()),
        ("type", properties.kind()),
        ("user_id", properties.user_id()),
        ("app_id", properties.app_id()),
        ("cluster_id", properties.cluster_id()),
    ];
    if let Some((name, _)) = named.into_iter().find(|(_, value)| mangled(value)) {
        return Some(name);
    }
    let header_names_mangled = properties.headers().as_ref().is_some_and(|headers| {
        headers
            .inner()
            .keys()
            .any(|name| name.as_str().contains(char::REPLACEMENT_CHARACTER))
    });
    header_names_mangled.then_some("a header name")
}

/// The bytes a content header frame takes beyond its property list: the frame's own
/// header and end (8), class, weight and body size (12), the property flags (2).
const HEADER_FRAME_OVERHEAD: usize = 22;

/// The encoded size of `value`, its type byte included.
fn value_size(value: &AMQPValue) -> usize {
    1 + match value {
        AMQPValue::Boolean(_) | AMQPValue::ShortShortInt(_) | AMQPValue::ShortShortUInt(_) => 1,
        AMQPValue::ShortInt(_) | AMQPValue::ShortUInt(_) => 2,
        AMQPValue::LongInt(_) | AMQPValue::LongUInt(_) | AMQPValue::Float(_) => 4,
        AMQPValue::LongLongInt(_) | AMQPValue::Double(_) | AMQPValue::Timestamp(_) => 8,
        AMQPValue::DecimalValue(_) => 5,
        AMQPValue::ShortString(text) => 1 + text.as_str().len(),
        AMQPValue::LongString(bytes) => 4 + bytes.len(),
        AMQPValue::ByteArray(bytes) => 4 + bytes.as_slice().len(),
        AMQPValue::FieldArray(values) => {
            4 + values.as_slice().iter().map(value_size).sum::<usize>()
        }
        AMQPValue::FieldTable(table) => table_size(table),
        AMQPValue::Void => 0,
    }
}

/// The size of one table entry: its name and its value.
fn entry_size(name: &ShortString, value: &AMQPValue) -> usize {
    1 + name.as_str().len() + value_size(value)
}

/// The encoded size of a field table, its length prefix included.
fn table_size(table: &FieldTable) -> usize {
    4 + table
        .inner()
        .iter()
        .map(|(name, value)| entry_size(name, value))
        .sum::<usize>()
}

/// The size of the content header frame that carries `properties`.
pub fn header_frame_size(properties: &BasicProperties) -> usize {
    let short =
        |value: &Option<ShortString>| value.as_ref().map_or(0, |text| 1 + text.as_str().len());
    HEADER_FRAME_OVERHEAD
        + short(properties.content_type())
        + short(properties.content_encoding())
        + properties.headers().as_ref().map_or(0, table_size)
        + properties.delivery_mode().map_or(0, |_| 1)
        + properties.priority().map_or(0, |_| 1)
        + short(properties.correlation_id())
        + short(properties.reply_to())
        + short(properties.expiration())
        + short(properties.message_id())
        + properties.timestamp().map_or(0, |_| 8)
        + short(properties.kind())
        + short(properties.user_id())
        + short(properties.app_id())
        + short(properties.cluster_id())
}

/// Why and where a message was dead-lettered: what its copy's `x-warren-*` headers say.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterFacts<'a> {
    /// A stable snake_case reason.
    pub reason: &'a str,
    /// The error in words.
    pub error: &'a str,
    /// The worker that dead-letters it.
    pub worker: &'a str,
    /// The exchange it was delivered from.
    pub exchange: &'a str,
    /// The routing key it was delivered with.
    pub routing_key: &'a str,
    /// How many times it was attempted.
    pub attempts: u32,
    /// The subject of its token, when the worker verified one.
    pub token_subject: Option<&'a str>,
}

/// The properties of a dead letter's copy: the original's, without its token, with the
/// [`dead_letter_header`]s of `facts`, made to fit a frame of `frame_max` bytes (see
/// [`with_added_headers`]).
pub fn dead_letter_properties(
    original: &BasicProperties,
    facts: &DeadLetterFacts<'_>,
    frame_max: usize,
) -> BasicProperties {
    use dead_letter_header as header;
    let mut added = vec![
        (header::REASON, long_text(facts.reason)),
        (header::ERROR, long_text(facts.error)),
        (header::WORKER, long_text(facts.worker)),
        (header::ORIGINAL_EXCHANGE, long_text(facts.exchange)),
        (header::ORIGINAL_ROUTING_KEY, long_text(facts.routing_key)),
        (
            header::ATTEMPTS,
            AMQPValue::LongLongInt(facts.attempts.into()),
        ),
        (header::FAILED_AT, long_text(&Timestamp::now().to_string())),
    ];
    if let Some(subject) = facts.token_subject {
        added.push((header::TOKEN_SUBJECT, long_text(subject)));
    }
    with_added_headers(original, added, frame_max)
}

/// The longest text kept in one header that warren writes about a message.
const MAX_ADDED_HEADER_TEXT: usize = 2048;

/// `original`'s properties without its token ([`X_WARREN_TOKEN`]: a copy is no store of
/// credentials to replay) and with `added` headers set (over any of the same name),
/// made to fit a content header frame of `frame_max` bytes: when they do not, the
/// original's own headers are left out, largest first, until they do, and their names
/// are listed in [`dead_letter_header::DROPPED_HEADERS`]. Added text is cut to 2 KiB.
///
/// What is added is small and bounded, and the original fitted a frame when it arrived,
/// so the result always fits.
pub fn with_added_headers(
    original: &BasicProperties,
    added: Vec<(&'static str, AMQPValue)>,
    frame_max: usize,
) -> BasicProperties {
    let mut headers: BTreeMap<ShortString, AMQPValue> = original
        .headers()
        .clone()
        .unwrap_or_default()
        .inner()
        .clone();
    headers.retain(|name, _| !is_token_header(name.as_str()));
    for (name, value) in added {
        let value = match value {
            AMQPValue::LongString(bytes) if bytes.len() > MAX_ADDED_HEADER_TEXT => {
                let text = String::from_utf8_lossy(bytes.as_bytes());
                long_text(crate::publisher::truncate(&text, MAX_ADDED_HEADER_TEXT))
            }
            other => other,
        };
        headers.insert(name.into(), value);
    }
    let properties = original
        .clone()
        .with_headers(FieldTable::from(headers.clone()));
    let mut size = header_frame_size(&properties);
    if size <= frame_max {
        return properties;
    }
    // The message's own headers, largest first.
    let mut own: Vec<(ShortString, usize)> = headers
        .iter()
        .filter(|(name, _)| !starts_with_ignoring_case(name.as_str(), "x-warren-"))
        .map(|(name, value)| (name.clone(), entry_size(name, value)))
        .collect();
    own.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    // The list of dropped names takes an entry of its own.
    size += 1 + dead_letter_header::DROPPED_HEADERS.len() + 1 + 4;
    let mut dropped: Vec<&str> = Vec::new();
    let mut list_bytes = 0;
    for (name, entry) in &own {
        if size + list_bytes.min(MAX_ADDED_HEADER_TEXT) <= frame_max {
            break;
        }
        headers.remove(name);
        size -= entry;
        list_bytes += name.as_str().len() + 1;
        dropped.push(name.as_str());
    }
    let list = dropped.join(",");
    headers.insert(
        dead_letter_header::DROPPED_HEADERS.into(),
        long_text(crate::publisher::truncate(&list, MAX_ADDED_HEADER_TEXT)),
    );
    original.clone().with_headers(FieldTable::from(headers))
}

/// A header table of `entries`, for tests.
#[cfg(test)]
pub(crate) fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert((*key).into(), value.clone());
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::FieldArray;

    #[test]
    fn counts_accept_every_integer_width() {
        for value in [
            AMQPValue::LongLongInt(3),
            AMQPValue::LongInt(3),
            AMQPValue::ShortShortUInt(3),
        ] {
            let headers = table(&[(X_DELIVERY_COUNT, value)]);
            assert_eq!(header_count(Some(&headers), X_DELIVERY_COUNT), Some(3));
        }
        let negative = table(&[(X_DELIVERY_COUNT, AMQPValue::LongLongInt(-1))]);
        assert_eq!(header_count(Some(&negative), X_DELIVERY_COUNT), None);
        assert_eq!(header_count(None, X_DELIVERY_COUNT), None);
    }

    #[test]
    fn deaths_are_read_newest_first() {
        let death = table(&[
            ("queue", long_text("warren.tally")),
            ("reason", long_text("delivery_limit")),
            ("count", AMQPValue::LongLongInt(2)),
            ("time", AMQPValue::Timestamp(1_700_000_000)),
            (
                "routing-keys",
                AMQPValue::FieldArray(FieldArray::from(vec![long_text("dev.warren.tally.add.v1")])),
            ),
        ]);
        let headers = table(&[(
            X_DEATH,
            AMQPValue::FieldArray(FieldArray::from(vec![
                AMQPValue::FieldTable(death),
                AMQPValue::LongString("not a table".into()),
            ])),
        )]);
        let deaths = deaths(Some(&headers));
        assert_eq!(deaths.len(), 1);
        assert_eq!(deaths[0].queue.as_deref(), Some("warren.tally"));
        assert_eq!(deaths[0].reason.as_deref(), Some("delivery_limit"));
        assert_eq!(deaths[0].count, 2);
        assert_eq!(
            deaths[0].routing_key.as_deref(),
            Some("dev.warren.tally.add.v1")
        );
        assert!(deaths[0].time.is_some());
        assert!(super::deaths(None).is_empty());
    }

    #[test]
    fn dead_letter_headers_are_told_apart() {
        for name in [
            "x-warren-reason",
            "x-death",
            "X-Death",
            "x-first-death-queue",
            "x-delivery-count",
        ] {
            assert!(is_dead_letter_header(name), "{name}");
        }
        for name in ["traceparent", "x-deathly", "ce-id"] {
            assert!(!is_dead_letter_header(name), "{name}");
        }
    }

    #[test]
    fn short_strings_over_255_bytes_are_refused_not_panicked_on() {
        assert!(short_string(&"a".repeat(255)).is_some());
        assert!(short_string(&"a".repeat(256)).is_none());
    }

    #[test]
    fn mangled_properties_are_named() {
        let clean = BasicProperties::default().with_message_id("m1".into());
        assert_eq!(unreadable_property(&clean), None);
        let mangled = BasicProperties::default().with_message_id("m\u{fffd}".into());
        assert_eq!(unreadable_property(&mangled), Some("message_id"));
        let header = BasicProperties::default()
            .with_headers(table(&[("x-\u{fffd}", AMQPValue::Boolean(true))]));
        assert_eq!(unreadable_property(&header), Some("a header name"));
    }

    #[test]
    fn frame_size_counts_every_property() {
        let bare = BasicProperties::default();
        assert_eq!(header_frame_size(&bare), HEADER_FRAME_OVERHEAD);
        let properties = BasicProperties::default()
            .with_message_id("abc".into())
            .with_delivery_mode(2)
            .with_headers(table(&[("k", long_text("vv"))]));
        // message_id 1+3, delivery_mode 1, headers 4 + (1+1) + (1+4+2).
        assert_eq!(
            header_frame_size(&properties),
            HEADER_FRAME_OVERHEAD + 4 + 1 + 13
        );
    }

    #[test]
    fn a_dead_letter_copy_keeps_no_token_only_its_verified_subject() {
        let original = BasicProperties::default().with_headers(table(&[
            (X_WARREN_TOKEN, long_text("a.b.c")),
            ("X-Warren-Token", long_text("d.e.f")),
            (TRACEPARENT, long_text("00-1-2-01")),
        ]));
        let facts = |token_subject| DeadLetterFacts {
            reason: "token_expired",
            error: "the token has expired",
            worker: "tally",
            exchange: "warren.commands",
            routing_key: "dev.warren.tally.add.v1",
            attempts: 1,
            token_subject,
        };
        for subject in [None, Some("alice")] {
            let copy = dead_letter_properties(&original, &facts(subject), 131_072);
            let headers = copy.headers().clone().expect("headers");
            assert!(
                headers
                    .inner()
                    .keys()
                    .all(|name| !is_token_header(name.as_str())),
                "{headers:?}"
            );
            assert_eq!(
                header_text(Some(&headers), dead_letter_header::TOKEN_SUBJECT),
                subject
            );
            assert!(header_text(Some(&headers), TRACEPARENT).is_some());
        }
        assert_eq!(token(original.headers().as_ref()), Ok(Some("a.b.c")));
        assert_eq!(token(None), Ok(None));
        let not_text = table(&[(X_WARREN_TOKEN, AMQPValue::Boolean(true))]);
        assert_eq!(
            token(Some(&not_text)),
            Err(crate::auth::TokenError::NotText)
        );
    }

    #[test]
    fn added_headers_fit_the_frame_by_dropping_the_largest_own_ones() {
        let frame_max = 131_072;
        let original = BasicProperties::default().with_headers(table(&[
            ("small", long_text("s")),
            ("huge", long_text(&"h".repeat(frame_max - 200))),
            ("traceparent", long_text("00-1-2-01")),
        ]));
        assert!(header_frame_size(&original) <= frame_max);
        let added = vec![
            (dead_letter_header::REASON, long_text("not_json")),
            (dead_letter_header::ERROR, long_text(&"e".repeat(10_000))),
        ];
        let copy = with_added_headers(&original, added, frame_max);
        assert!(header_frame_size(&copy) <= frame_max);
        let headers = copy.headers().clone().expect("headers");
        let get = |name: &str| header_text(Some(&headers), name).map(str::to_owned);
        assert_eq!(get("huge"), None);
        assert_eq!(get("small").as_deref(), Some("s"));
        assert_eq!(get(dead_letter_header::REASON).as_deref(), Some("not_json"));
        assert_eq!(
            get(dead_letter_header::DROPPED_HEADERS).as_deref(),
            Some("huge")
        );
        assert_eq!(
            get(dead_letter_header::ERROR).map(|text| text.len()),
            Some(2048)
        );

        // What fits keeps everything and says nothing was dropped.
        let small = with_added_headers(
            &BasicProperties::default(),
            vec![(dead_letter_header::REASON, long_text("x"))],
            frame_max,
        );
        let headers = small.headers().clone().expect("headers");
        assert_eq!(
            header_text(Some(&headers), dead_letter_header::DROPPED_HEADERS),
            None
        );
    }
}
