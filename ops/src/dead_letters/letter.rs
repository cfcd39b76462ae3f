//! One dead letter, summed up for people: who dead-lettered it, why, when, from where.

use jiff::{SignedDuration, Timestamp};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use warren_runtime::headers::{
    dead_letter_header as header, deaths, header_count, is_token_header, strip_dead_letter_headers,
};

/// Who put a message into the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterSource {
    /// A warren worker, with `x-warren-*` headers.
    Worker,
    /// The broker, with an `x-death` header.
    Broker,
    /// Neither header is there (someone published it to the queue by hand).
    Unknown,
}

impl DeadLetterSource {
    /// `worker`, `broker` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterSource::Worker => "worker",
            DeadLetterSource::Broker => "broker",
            DeadLetterSource::Unknown => "unknown",
        }
    }
}

/// One message of a dead-letter queue, summed up for people.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its 0-based index in the queue when it was read.
    pub position: usize,
    /// The AMQP `message_id`, or the envelope's `id`.
    pub message_id: Option<String>,
    /// The AMQP `type`, or the envelope's `type`.
    pub message_type: Option<String>,
    /// The AMQP `correlation_id`, or the envelope's `correlationid`.
    pub correlation_id: Option<String>,
    /// Who dead-lettered it.
    pub source: DeadLetterSource,
    /// Why: `x-warren-reason`, or the broker's reason (`delivery_limit`, `rejected`,
    /// `expired`, `maxlen`).
    pub reason: Option<String>,
    /// The error in words (`x-warren-error`).
    pub error: Option<String>,
    /// The worker that dead-lettered it (`x-warren-worker`).
    pub worker: Option<String>,
    /// The queue the broker dead-lettered it from (the newest `x-death` entry).
    pub dead_lettered_from_queue: Option<String>,
    /// Attempts (`x-warren-attempts`) or the sum of the `x-death` counts.
    pub death_count: Option<u64>,
    /// When it was dead-lettered (`x-warren-failed-at`, the newest `x-death` time, or
    /// the AMQP timestamp).
    pub dead_lettered_at: Option<Timestamp>,
    /// How long ago that was, when it was read.
    pub age: Option<SignedDuration>,
    /// The exchange it was published to before it died.
    pub original_exchange: Option<String>,
    /// The routing key it was published with before it died.
    pub original_routing_key: Option<String>,
    /// The AMQP properties other than headers, as `(name, value)` text.
    pub properties: Vec<(String, String)>,
    /// Every header, as `(name, value)` text, sorted by name.
    pub headers: Vec<(String, String)>,
    /// The body, as it is in the queue.
    pub body: Vec<u8>,
    amqp_properties: BasicProperties,
}

impl DeadLetter {
    /// Sums up a message read from a dead-letter queue at `position`, `now`.
    pub fn summarise(
        position: usize,
        body: Vec<u8>,
        properties: BasicProperties,
        now: Timestamp,
    ) -> DeadLetter {
        let headers = properties.headers().as_ref();
        let header_text = |name: &str| headers.and_then(|table| table_text(table, name));
        let deaths = deaths(headers);
        let newest_death = deaths.first();
        let from_worker = header_text(header::REASON).is_some();
        let source = if from_worker {
            DeadLetterSource::Worker
        } else if newest_death.is_some() {
            DeadLetterSource::Broker
        } else {
            DeadLetterSource::Unknown
        };

        let (reason, death_count, original_exchange, original_routing_key) =
            if source == DeadLetterSource::Broker {
                let reason = newest_death
                    .and_then(|death| death.reason.clone())
                    .or_else(|| header_text("x-last-death-reason"))
                    .or_else(|| header_text("x-first-death-reason"));
                let count = deaths.iter().map(|death| death.count).sum::<u64>();
                (
                    reason,
                    Some(count),
                    newest_death
                        .and_then(|death| death.exchange.clone())
                        .or_else(|| header_text("x-first-death-exchange")),
                    newest_death.and_then(|death| death.routing_key.clone()),
                )
            } else {
                (
                    header_text(header::REASON),
                    header_count(headers, header::ATTEMPTS).map(u64::from),
                    header_text(header::ORIGINAL_EXCHANGE),
                    header_text(header::ORIGINAL_ROUTING_KEY),
                )
            };

        let failed_at = header_text(header::FAILED_AT).and_then(|text| text.parse().ok());
        let amqp_time = properties
            .timestamp()
            .and_then(|seconds| i64::try_from(seconds).ok())
            .and_then(|seconds| Timestamp::from_second(seconds).ok());
        let dead_lettered_at = failed_at
            .or_else(|| newest_death.and_then(|death| death.time))
            .or(amqp_time);

        let mut envelope = LazyEnvelope::new(&body);
        let short = |value: &Option<ShortString>| value.as_ref().map(|v| v.as_str().to_owned());
        let message_id = short(properties.message_id())
            .or_else(|| header_text("ce-id"))
            .or_else(|| envelope.get("id"));
        let message_type = short(properties.kind())
            .or_else(|| header_text("ce-type"))
            .or_else(|| envelope.get("type"));
        let correlation_id = short(properties.correlation_id())
            .or_else(|| header_text("ce-correlationid"))
            .or_else(|| envelope.get("correlationid"));

        DeadLetter {
            position,
            message_id,
            message_type,
            correlation_id,
            source,
            reason,
            error: header_text(header::ERROR),
            worker: header_text(header::WORKER),
            dead_lettered_from_queue: newest_death.and_then(|death| death.queue.clone()),
            death_count,
            dead_lettered_at,
            age: dead_lettered_at.map(|at| now.duration_since(at)),
            original_exchange,
            original_routing_key,
            properties: describe_properties(&properties),
            headers: headers
                .map(|table| {
                    table
                        .inner()
                        .iter()
                        .map(|(name, value)| {
                            // A broker-made copy (the delivery limit) keeps the message's
                            // token: a credential, never shown.
                            let shown = if is_token_header(name.as_str()) {
                                "***".to_owned()
                            } else {
                                display_value(value)
                            };
                            (name.as_str().to_owned(), shown)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            body,
            amqp_properties: properties,
        }
    }

    /// Where a replay sends it: its original exchange and routing key, when known.
    pub fn original_route(&self) -> Option<(&str, &str)> {
        Some((
            self.original_exchange.as_deref()?,
            self.original_routing_key.as_deref()?,
        ))
    }

    /// The properties a replay publishes it with: its own, without the dead-letter
    /// headers (see [`strip_dead_letter_headers`]).
    pub fn replay_properties(&self) -> BasicProperties {
        strip_dead_letter_headers(&self.amqp_properties)
    }
}

fn table_text(table: &FieldTable, name: &str) -> Option<String> {
    table
        .inner()
        .get(name)
        .and_then(warren_runtime::headers::text_lossy)
        .map(std::borrow::Cow::into_owned)
}

/// An AMQP field value as text: strings as they are, timestamps in RFC 3339, arrays
/// and tables spelled out, bytes in hex.
pub fn display_value(value: &AMQPValue) -> String {
    match value {
        AMQPValue::Boolean(value) => value.to_string(),
        AMQPValue::ShortShortInt(value) => value.to_string(),
        AMQPValue::ShortShortUInt(value) => value.to_string(),
        AMQPValue::ShortInt(value) => value.to_string(),
        AMQPValue::ShortUInt(value) => value.to_string(),
        AMQPValue::LongInt(value) => value.to_string(),
        AMQPValue::LongUInt(value) => value.to_string(),
        AMQPValue::LongLongInt(value) => value.to_string(),
        AMQPValue::Float(value) => value.to_string(),
        AMQPValue::Double(value) => value.to_string(),
        AMQPValue::DecimalValue(decimal) => {
            let value = f64::from(decimal.value) / 10f64.powi(i32::from(decimal.scale));
            value.to_string()
        }
        AMQPValue::ShortString(text) => text.as_str().to_owned(),
        AMQPValue::LongString(text) => match std::str::from_utf8(text.as_bytes()) {
            Ok(text) => text.to_owned(),
            Err(_) => hex(text.as_bytes()),
        },
        AMQPValue::FieldArray(values) => {
            let items: Vec<String> = values.as_slice().iter().map(display_value).collect();
            format!("[{}]", items.join(", "))
        }
        AMQPValue::Timestamp(seconds) => i64::try_from(*seconds)
            .ok()
            .and_then(|seconds| Timestamp::from_second(seconds).ok())
            .map_or_else(|| seconds.to_string(), |time| time.to_string()),
        AMQPValue::FieldTable(table) => {
            let items: Vec<String> = table
                .inner()
                .iter()
                .map(|(name, value)| format!("{}: {}", name.as_str(), display_value(value)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        AMQPValue::ByteArray(bytes) => hex(bytes.as_slice()),
        AMQPValue::Void => "(void)".to_owned(),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(2 + bytes.len() * 2);
    text.push_str("0x");
    for byte in bytes {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// The AMQP properties other than headers, as `(name, value)` text.
fn describe_properties(properties: &BasicProperties) -> Vec<(String, String)> {
    let mut described = Vec::new();
    let mut short = |name: &str, value: &Option<ShortString>| {
        if let Some(value) = value {
            described.push((name.to_owned(), value.as_str().to_owned()));
        }
    };
    short("content_type", properties.content_type());
    short("content_encoding", properties.content_encoding());
    short("correlation_id", properties.correlation_id());
    short("reply_to", properties.reply_to());
    short("expiration", properties.expiration());
    short("message_id", properties.message_id());
    short("type", properties.kind());
    short("user_id", properties.user_id());
    short("app_id", properties.app_id());
    short("cluster_id", properties.cluster_id());
    if let Some(mode) = properties.delivery_mode() {
        described.push(("delivery_mode".to_owned(), mode.to_string()));
    }
    if let Some(priority) = properties.priority() {
        described.push(("priority".to_owned(), priority.to_string()));
    }
    if let Some(seconds) = properties.timestamp() {
        described.push((
            "timestamp".to_owned(),
            display_value(&AMQPValue::Timestamp(*seconds)),
        ));
    }
    described.sort();
    described
}

/// A structured-mode body's top-level string attributes, parsed only when asked for.
struct LazyEnvelope<'a> {
    body: &'a [u8],
    parsed: Option<Option<serde_json::Map<String, serde_json::Value>>>,
}

impl<'a> LazyEnvelope<'a> {
    fn new(body: &'a [u8]) -> Self {
        LazyEnvelope { body, parsed: None }
    }

    fn get(&mut self, attribute: &str) -> Option<String> {
        let body = self.body;
        self.parsed
            .get_or_insert_with(|| serde_json::from_slice(body).ok())
            .as_ref()?
            .get(attribute)?
            .as_str()
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldArray, LongString};
    use warren_runtime::headers::{X_DEATH, X_DELIVERY_COUNT};

    fn text(value: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(value))
    }

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut table = FieldTable::default();
        for (key, value) in entries {
            table.insert((*key).into(), value.clone());
        }
        table
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    fn death(
        reason: &str,
        queue: &str,
        exchange: &str,
        key: &str,
        count: i64,
        time: &str,
    ) -> AMQPValue {
        AMQPValue::FieldTable(table(&[
            ("reason", text(reason)),
            ("queue", text(queue)),
            ("exchange", text(exchange)),
            (
                "routing-keys",
                AMQPValue::FieldArray(FieldArray::from(vec![text(key)])),
            ),
            ("count", AMQPValue::LongLongInt(count)),
            (
                "time",
                AMQPValue::Timestamp(at(time).as_second().unsigned_abs()),
            ),
        ]))
    }

    #[test]
    fn broker_dead_letters_are_summed_up_from_x_death() {
        let headers = table(&[
            (
                X_DEATH,
                AMQPValue::FieldArray(FieldArray::from(vec![
                    death(
                        "delivery_limit",
                        "warren.echo",
                        "warren.retries",
                        "warren.echo",
                        1,
                        "2030-01-01T00:10:00Z",
                    ),
                    death(
                        "expired",
                        "warren.echo.retry.1000ms",
                        "",
                        "warren.echo.retry.1000ms",
                        3,
                        "2030-01-01T00:05:00Z",
                    ),
                ])),
            ),
            ("x-first-death-reason", text("expired")),
            ("x-first-death-queue", text("warren.echo.retry.1000ms")),
            ("x-first-death-exchange", text("")),
            ("x-delivery-count", AMQPValue::LongLongInt(4)),
            (
                "x-warren-token",
                text("eyJhbGciOiJFZERTQSJ9.e30.c2lnbmF0dXJl"),
            ),
        ]);
        let properties = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_type("dev.warren.echo.v1".into())
            .with_headers(headers);
        let dead_letter =
            DeadLetter::summarise(3, b"{}".to_vec(), properties, at("2030-01-01T00:10:30Z"));
        assert_eq!(dead_letter.position, 3);
        assert_eq!(dead_letter.source, DeadLetterSource::Broker);
        assert_eq!(dead_letter.reason.as_deref(), Some("delivery_limit"));
        assert_eq!(dead_letter.death_count, Some(4));
        assert_eq!(
            dead_letter.dead_lettered_from_queue.as_deref(),
            Some("warren.echo")
        );
        assert_eq!(
            dead_letter.original_route(),
            Some(("warren.retries", "warren.echo"))
        );
        assert_eq!(
            dead_letter.dead_lettered_at,
            Some(at("2030-01-01T00:10:00Z"))
        );
        assert_eq!(dead_letter.age, Some(SignedDuration::from_secs(30)));
        assert_eq!(dead_letter.message_id.as_deref(), Some("m-1"));
        assert_eq!(
            dead_letter.message_type.as_deref(),
            Some("dev.warren.echo.v1")
        );
        assert_eq!(dead_letter.error, None);
        let shown: std::collections::BTreeMap<_, _> = dead_letter.headers.iter().cloned().collect();
        assert!(
            shown[X_DEATH].contains("reason: delivery_limit"),
            "{shown:?}"
        );
        assert!(shown[X_DEATH].contains("2030-01-01T00:10:00Z"), "{shown:?}");
        // The broker's copy kept the message's token; it is never shown.
        assert_eq!(shown["x-warren-token"], "***");
    }

    #[test]
    fn worker_dead_letters_prefer_the_warren_headers() {
        let headers = table(&[
            (header::REASON, text("invalid_data")),
            (header::ERROR, text("data is not an object")),
            (header::WORKER, text("echo")),
            (header::ORIGINAL_EXCHANGE, text("warren.commands")),
            (header::ORIGINAL_ROUTING_KEY, text("dev.warren.echo.v1")),
            (header::ATTEMPTS, AMQPValue::LongLongInt(2)),
            (header::FAILED_AT, text("2030-01-01T00:00:00Z")),
            // An earlier trip through a delay queue: not why it is here.
            (
                X_DEATH,
                AMQPValue::FieldArray(FieldArray::from(vec![death(
                    "expired",
                    "warren.echo.retry.1000ms",
                    "",
                    "warren.echo.retry.1000ms",
                    1,
                    "2029-12-31T23:59:59Z",
                )])),
            ),
        ]);
        // No AMQP ids: they come from the structured-mode body.
        let body = br#"{"specversion":"1.0","id":"e-1","type":"dev.warren.echo.v1","source":"/t","correlationid":"c-1","data":[1]}"#;
        let dead_letter = DeadLetter::summarise(
            0,
            body.to_vec(),
            BasicProperties::default().with_headers(headers),
            at("2030-01-01T00:01:00Z"),
        );
        assert_eq!(dead_letter.source, DeadLetterSource::Worker);
        assert_eq!(dead_letter.reason.as_deref(), Some("invalid_data"));
        assert_eq!(dead_letter.error.as_deref(), Some("data is not an object"));
        assert_eq!(dead_letter.worker.as_deref(), Some("echo"));
        assert_eq!(dead_letter.death_count, Some(2));
        assert_eq!(
            dead_letter.original_route(),
            Some(("warren.commands", "dev.warren.echo.v1"))
        );
        assert_eq!(dead_letter.age, Some(SignedDuration::from_secs(60)));
        assert_eq!(dead_letter.message_id.as_deref(), Some("e-1"));
        assert_eq!(
            dead_letter.message_type.as_deref(),
            Some("dev.warren.echo.v1")
        );
        assert_eq!(dead_letter.correlation_id.as_deref(), Some("c-1"));
    }

    #[test]
    fn a_message_without_dead_letter_headers_has_no_route() {
        let dead_letter = DeadLetter::summarise(
            0,
            b"not json".to_vec(),
            BasicProperties::default().with_timestamp(1_000),
            Timestamp::from_second(1_010).expect("a timestamp"),
        );
        assert_eq!(dead_letter.source, DeadLetterSource::Unknown);
        assert_eq!(dead_letter.reason, None);
        assert_eq!(dead_letter.message_id, None);
        assert_eq!(dead_letter.original_route(), None);
        assert_eq!(dead_letter.age, Some(SignedDuration::from_secs(10)));
        assert!(dead_letter.headers.is_empty());
    }

    #[test]
    fn replay_strips_only_the_dead_letter_headers() {
        let headers = table(&[
            (header::REASON, text("test")),
            (header::ORIGINAL_EXCHANGE, text("warren.commands")),
            ("X-Warren-Attempts", AMQPValue::LongLongInt(1)),
            (X_DEATH, AMQPValue::FieldArray(FieldArray::default())),
            ("x-first-death-reason", text("rejected")),
            ("x-first-death-queue", text("warren.echo")),
            ("x-last-death-exchange", text("warren.commands")),
            (X_DELIVERY_COUNT, AMQPValue::LongLongInt(3)),
            (
                "traceparent",
                text("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ),
            ("ce-source", text("/sdk")),
        ]);
        let properties = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_delivery_mode(2)
            .with_headers(headers);
        let dead_letter = DeadLetter::summarise(0, Vec::new(), properties, Timestamp::now());
        let replayed = dead_letter.replay_properties();
        let kept: Vec<&str> = replayed
            .headers()
            .as_ref()
            .expect("headers")
            .inner()
            .keys()
            .map(ShortString::as_str)
            .collect();
        assert_eq!(kept, ["ce-source", "traceparent"]);
        assert_eq!(
            replayed.message_id().as_ref().map(ShortString::as_str),
            Some("m-1")
        );
        assert_eq!(*replayed.delivery_mode(), Some(2));

        let bare = BasicProperties::default().with_message_id("m-2".into());
        assert_eq!(strip_dead_letter_headers(&bare), bare);
    }

    #[test]
    fn values_are_shown_as_text() {
        assert_eq!(display_value(&text("plain")), "plain");
        assert_eq!(
            display_value(&AMQPValue::LongString(LongString::from(vec![0xff, 0x00]))),
            "0xff00"
        );
        assert_eq!(
            display_value(&AMQPValue::Timestamp(0)),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            display_value(&AMQPValue::FieldArray(FieldArray::from(vec![
                text("a"),
                AMQPValue::Boolean(true)
            ]))),
            "[a, true]"
        );
        assert_eq!(
            display_value(&AMQPValue::FieldTable(table(&[(
                "k",
                AMQPValue::LongInt(-1)
            )]))),
            "{k: -1}"
        );
    }
}
