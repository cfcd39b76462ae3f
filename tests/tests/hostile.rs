//! Hostile input, published as an attacker or a careless client would: straight to the
//! broker, with a bare AMQP client of the test's own ([`RawPublisher`], which writes its
//! frames by hand) or lapin, never through warren's publisher, which refuses to produce
//! any of it. Bodies, AMQP properties and headers, sizes between hops, binary mode and
//! message identity are each tried.
//!
//! For every class the same is asserted: the worker is the same process afterwards and
//! answers again within 5 s; the message is dead-lettered with its reason and its body
//! unchanged; the sender gets a fault when it named a reply queue; nothing else happens
//! (a tally total stays as it was). docs/reliability.md ("Hostile input") lists them.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use warren_e2e::raw_amqp::{PublishAnswer, RawProperties, RawPublisher, RawValue};
use warren_e2e::{
    BrokerClient, ECHO_DLQ, EXIT_TIMEOUT, MESSAGE_TIMEOUT, ReceivedMessage, ReplyQueue, Request,
    StoreFolder, TALLY_DLQ, Vhost, WarrenCommand, WarrenProcess, attribute,
};

const ECHO: &str = "dev.warren.echo.v1";
const ECHO_REPLIED: &str = "dev.warren.echo.replied.v1";
const TALLY_ADD: &str = "dev.warren.tally.add.v1";
const TALLY_GET: &str = "dev.warren.tally.get.v1";
const FAULT: &str = "dev.warren.fault.v1";
const COMMANDS: &str = "warren.commands";

/// How soon a worker must answer again after a hostile message.
const SERVING_AGAIN_WITHIN: Duration = Duration::from_secs(5);

/// The shared broker's AMQP port.
const BROKER_PORT: u16 = 5672;

/// echo and tally in a vhost of their own, a connection and a reply queue of the test's,
/// and a bare publisher. The vhost and the store folder are dropped last.
struct Fleet {
    echo: WarrenProcess,
    tally: WarrenProcess,
    echo_pid: u32,
    tally_pid: u32,
    broker: BrokerClient,
    replies: ReplyQueue,
    raw: RawPublisher,
    _store: StoreFolder,
    vhost: Vhost,
}

impl Fleet {
    async fn start() -> Fleet {
        Self::start_with_env(&[]).await
    }

    /// The fleet with environment variables `env` set for both workers.
    async fn start_with_env(env: &[(&str, &str)]) -> Fleet {
        let vhost = Vhost::create().await;
        let store = StoreFolder::new();
        let echo = vhost.worker("warren-echo").envs(env).start().await;
        let tally = vhost
            .worker("warren-tally")
            .envs(env)
            .store(&store)
            .start()
            .await;
        let broker = vhost.connect().await;
        let replies = broker.reply_queue().await;
        let raw = RawPublisher::connect(BROKER_PORT, vhost.name()).await;
        Fleet {
            echo_pid: echo.pid(),
            tally_pid: tally.pid(),
            vhost,
            echo,
            tally,
            broker,
            replies,
            raw,
            _store: store,
        }
    }

    /// Publishes `body` with `properties` as a command of `message_type`, through the
    /// bare client; the broker must take it.
    async fn publish_raw(&mut self, message_type: &str, properties: &RawProperties, body: &[u8]) {
        let answer = self
            .raw
            .publish(COMMANDS, message_type, properties, body)
            .await;
        assert_eq!(answer, PublishAnswer::Acked, "the broker took the message");
    }

    /// Publishes, through the bare client, a structured-mode tally add of `amount` to
    /// `key`, replying to the test's queue, with `overrides` over its attributes; returns
    /// its body.
    async fn add(&mut self, key: &str, amount: i64, overrides: Value) -> Vec<u8> {
        let body = envelope(
            TALLY_ADD,
            json!({ "key": key, "amount": amount }),
            self.replies.name(),
            overrides,
        );
        self.publish_raw(TALLY_ADD, &RawProperties::structured(), &body)
            .await;
        body
    }

    /// Both workers are the processes they were, with no session lost, and each
    /// answers a request within [`SERVING_AGAIN_WITHIN`].
    async fn assert_serving(&mut self) {
        for (worker, pid) in [
            (&mut self.echo, self.echo_pid),
            (&mut self.tally, self.tally_pid),
        ] {
            assert_eq!(worker.pid(), pid);
            assert!(
                worker.try_exit_status().is_none(),
                "worker {pid} exited on hostile input"
            );
            let lost = worker
                .output_lines()
                .into_iter()
                .filter(|line| line.contains("session lost"))
                .collect::<Vec<_>>();
            assert!(
                lost.is_empty(),
                "a hostile message cost a session: {lost:?}"
            );
        }
        let probe = Request::new(ECHO, r#"{"probe":true}"#, Some(self.replies.name()));
        self.broker.publish(probe.message.clone()).await;
        let answer = self.outcome_within(SERVING_AGAIN_WITHIN).await;
        assert_eq!(attribute(&answer, "type"), Some(ECHO_REPLIED), "{answer}");
        assert_eq!(
            attribute(&answer, "correlationid"),
            Some(probe.correlation_id())
        );
        let probe = Request::new(TALLY_GET, r#"{"key":"probe"}"#, Some(self.replies.name()));
        self.broker.publish(probe.message.clone()).await;
        let answer = self.outcome_within(SERVING_AGAIN_WITHIN).await;
        assert_eq!(
            attribute(&answer, "correlationid"),
            Some(probe.correlation_id()),
            "{answer}"
        );
    }

    async fn outcome_within(&self, timeout: Duration) -> Value {
        self.replies
            .next_within(&self.broker, timeout)
            .await
            .unwrap_or_else(|| panic!("no outcome within {timeout:?}"))
    }

    /// The next outcome, which must be a fault with `code` from `worker`; returned whole.
    async fn fault(&self, code: &str, worker: &str) -> Value {
        let fault = self.outcome_within(MESSAGE_TIMEOUT).await;
        assert_eq!(attribute(&fault, "type"), Some(FAULT), "{fault}");
        assert_eq!(fault["data"]["code"], code, "{fault}");
        assert_eq!(fault["data"]["worker"], worker, "{fault}");
        assert_eq!(fault["data"]["retryable"], false, "{fault}");
        fault
    }

    /// No outcome is waiting.
    async fn assert_no_outcome(&self) {
        let extra = self.replies.next_within(&self.broker, Duration::ZERO).await;
        assert!(extra.is_none(), "an outcome nobody asked for: {extra:?}");
    }

    /// The next dead letter in `queue`, which must carry `reason` and `body` unchanged.
    async fn dead_letter(&self, queue: &str, reason: &str, body: &[u8]) -> ReceivedMessage {
        let letter = self
            .broker
            .get_within(queue, MESSAGE_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("no dead letter in {queue} (expected {reason})"));
        assert_eq!(
            letter.header("x-warren-reason").as_deref(),
            Some(reason),
            "{:?}",
            letter.headers_debug()
        );
        assert!(
            letter
                .header("x-warren-error")
                .is_some_and(|error| !error.is_empty()),
            "{:?}",
            letter.headers_debug()
        );
        assert!(
            letter.body == body,
            "the dead letter's body changed: {} bytes, sent {}",
            letter.body.len(),
            body.len()
        );
        letter
    }

    /// The tally total of `key`, asked through the broker.
    async fn total(&self, key: &str) -> i64 {
        let request = Request::new(
            TALLY_GET,
            &json!({ "key": key }).to_string(),
            Some(self.replies.name()),
        );
        self.broker.publish(request.message.clone()).await;
        let answer = self.outcome_within(MESSAGE_TIMEOUT).await;
        assert_eq!(
            attribute(&answer, "correlationid"),
            Some(request.correlation_id())
        );
        answer["data"]["total"]
            .as_i64()
            .unwrap_or_else(|| panic!("a total: {answer}"))
    }
}

/// A structured-mode envelope of `message_type` with `data`, replying to `replyto`, with
/// `overrides` set over its attributes (a JSON `null` removes one).
fn envelope(message_type: &str, data: Value, replyto: &str, overrides: Value) -> Vec<u8> {
    let mut envelope = json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": "/hostile",
        "type": message_type,
        "replyto": replyto,
        "data": data,
    });
    let object = envelope.as_object_mut().expect("an object");
    for (name, value) in overrides.as_object().expect("overrides are an object") {
        if value.is_null() {
            object.remove(name);
        } else {
            object.insert(name.clone(), value.clone());
        }
    }
    serde_json::to_vec(&envelope).expect("JSON")
}

/// Any attribute that is copied into an AMQP property or a routing key (ids, type,
/// source, reply queue) or into a log line, when it is too long for a short string or
/// holds a control character, is refused as bad input: dead-lettered, the sender
/// faulted, no side effect. (Before: a `correlationid` over 255 bytes made the worker
/// panic on every delivery, a crash loop until the delivery limit.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_that_do_not_fit_amqp_or_forge_logs_are_refused() {
    let mut fleet = Fleet::start().await;
    let replyto = fleet.replies.name().to_owned();
    let long = "x".repeat(300);
    let cases = [
        json!({ "correlationid": long }),
        json!({ "causationid": long }),
        json!({ "source": format!("/{long}") }),
        json!({ "type": format!("dev.warren.tally.add.{long}") }),
        json!({ "id": long }),
        json!({ "id": "m-1\n[tally] forged line" }),
        json!({ "correlationid": "c\u{1b}[31m" }),
        json!({ "subject": "s".repeat(2000) }),
    ];
    for overrides in cases {
        let body = envelope(
            TALLY_ADD,
            json!({"key": "victim", "amount": 1}),
            &replyto,
            overrides.clone(),
        );
        fleet
            .publish_raw(TALLY_ADD, &RawProperties::structured(), &body)
            .await;
        fleet
            .dead_letter(TALLY_DLQ, "invalid_attribute", &body)
            .await;
        let fault = fleet.fault("invalid_envelope", "tally").await;
        assert!(
            fault["data"]["message"]
                .as_str()
                .is_some_and(|message| message.contains("attribute")),
            "{overrides}: {fault}"
        );
        fleet.assert_serving().await;
    }
    // The same for echo, whose reply is the one the crash came from.
    let body = envelope(
        ECHO,
        json!({"a": 1}),
        &replyto,
        json!({ "correlationid": long }),
    );
    fleet
        .publish_raw(ECHO, &RawProperties::structured(), &body)
        .await;
    fleet
        .dead_letter(ECHO_DLQ, "invalid_attribute", &body)
        .await;
    fleet.fault("invalid_envelope", "echo").await;
    // A replyto that is too long names no reply queue: dead-lettered, nobody to tell.
    let body = envelope(
        ECHO,
        json!({"a": 1}),
        &format!("warren.reply.{long}"),
        json!({}),
    );
    fleet
        .publish_raw(ECHO, &RawProperties::structured(), &body)
        .await;
    fleet
        .dead_letter(ECHO_DLQ, "invalid_attribute", &body)
        .await;
    fleet.assert_serving().await;
    assert_eq!(fleet.total("victim").await, 0, "no add was applied");
    fleet.assert_no_outcome().await;
}

/// AMQP properties and header names that are not UTF-8. (Before: lapin could not parse
/// the delivery and dropped the connection; the broker handed the same message out again,
/// about 3.5 minutes until the delivery limit, with nothing else served.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_that_are_not_utf8_are_refused_without_losing_the_connection() {
    let mut fleet = Fleet::start().await;
    let replyto = fleet.replies.name().to_owned();
    let not_utf8 = b"id-\xff\xfe".to_vec();
    let cases: Vec<(&str, RawProperties)> = vec![
        (
            "message_id",
            RawProperties {
                message_id: Some(not_utf8.clone()),
                ..RawProperties::structured()
            },
        ),
        (
            "correlation_id",
            RawProperties {
                correlation_id: Some(not_utf8.clone()),
                ..RawProperties::structured()
            },
        ),
        (
            "type",
            RawProperties {
                kind: Some(vec![0xff; 255]),
                ..RawProperties::structured()
            },
        ),
        (
            "a header name",
            RawProperties {
                headers: Some(vec![(b"x-\xc3\x28".to_vec(), RawValue::text("v"))]),
                ..RawProperties::structured()
            },
        ),
        (
            "reply_to",
            RawProperties {
                reply_to: Some(b"warren.reply.\xff".to_vec()),
                ..RawProperties::structured()
            },
        ),
    ];
    for (property, properties) in cases {
        let body = envelope(
            TALLY_ADD,
            json!({"key": "victim", "amount": 1}),
            &replyto,
            json!({}),
        );
        fleet.publish_raw(TALLY_ADD, &properties, &body).await;
        let letter = fleet
            .dead_letter(TALLY_DLQ, "invalid_property", &body)
            .await;
        assert!(
            letter
                .header("x-warren-error")
                .is_some_and(|error| error.contains(property)),
            "{property}: {:?}",
            letter.headers_debug()
        );
        // The sender named its reply queue in the envelope: it is told.
        fleet.fault("invalid_envelope", "tally").await;
        fleet.assert_serving().await;
    }
    assert_eq!(fleet.total("victim").await, 0, "no add was applied");
}

/// A message whose header frame is nearly as large as the broker takes, with a body that
/// must be dead-lettered: the copy adds warren's headers, so some of the message's own
/// must give way. (Before: the broker refused the copy with FRAME_ERROR, the worker lost
/// its connection, got the message again, and so on.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_copy_of_a_message_with_a_frame_sized_header_fits() {
    let mut fleet = Fleet::start().await;
    let frame_max = usize::try_from(fleet.raw.frame_max()).expect("fits");
    let replyto = fleet.replies.name().to_owned();
    // The frame around the table: 8 + 14 bytes, the other properties ~70 bytes.
    let filler = "h".repeat(frame_max - 300);
    let properties = RawProperties {
        headers: Some(vec![
            (b"x-filler".to_vec(), RawValue::text(&filler)),
            (b"x-kept".to_vec(), RawValue::text("small")),
        ]),
        reply_to: Some(replyto.as_bytes().to_vec()),
        message_id: Some(b"frame-sized".to_vec()),
        ..RawProperties::structured()
    };
    let body = b"this is not JSON".to_vec();
    fleet.publish_raw(ECHO, &properties, &body).await;
    let letter = fleet.dead_letter(ECHO_DLQ, "not_json", &body).await;
    assert_eq!(
        letter.header("x-warren-dropped-headers").as_deref(),
        Some("x-filler"),
        "{:?}",
        letter.headers_debug()
    );
    assert_eq!(letter.header("x-kept").as_deref(), Some("small"));
    // The body could not be read, so the AMQP properties tie the fault to the message.
    let fault = fleet.fault("invalid_envelope", "echo").await;
    assert_eq!(
        attribute(&fault, "causationid"),
        Some("frame-sized"),
        "{fault}"
    );
    fleet.assert_serving().await;
}

/// Writes `data` into a file of its own under the temp folder, for `@file`.
struct DataFile(PathBuf);

impl DataFile {
    fn new(data: &Value) -> DataFile {
        let path = std::env::temp_dir().join(format!("warren-e2e-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&path, data.to_string()).expect("write the data file");
        DataFile(path)
    }

    fn argument(&self) -> String {
        format!("@{}", self.0.display())
    }
}

impl Drop for DataFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A request just under the body limit is answered by a reply just over it (the reply's
/// envelope has more attributes): the worker faults `output_too_large` instead of
/// publishing what the originator would refuse. (Before: the reply was published,
/// `warren request` dropped it as unreadable and reported a timeout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_over_the_receivers_limit_is_a_fault_not_a_lost_reply() {
    let mut fleet = Fleet::start().await;
    let limit = 1024 * 1024;
    let replyto = fleet.replies.name().to_owned();
    // The fewest attributes, and the padding that makes the request 10 bytes under the
    // limit; the reply adds a time, a schema, a causation id and a trace.
    let sized = |padding: usize| {
        envelope(
            ECHO,
            json!({ "p": "p".repeat(padding) }),
            &replyto,
            json!({}),
        )
    };
    let overhead = sized(0).len();
    let body = sized(limit - 10 - overhead);
    assert_eq!(body.len(), limit - 10);
    fleet
        .publish_raw(ECHO, &RawProperties::structured(), &body)
        .await;
    let fault = fleet.fault("output_too_large", "echo").await;
    assert!(
        fault["data"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("dev.warren.echo.replied.v1")),
        "{fault}"
    );
    fleet.dead_letter(ECHO_DLQ, "output_too_large", &body).await;
    fleet.assert_serving().await;
    fleet.assert_no_outcome().await;
}

/// An outcome the originator cannot read (here: a worker configured with a larger limit
/// than the CLI) is reported as a fault line tied to its request, never dropped and
/// reported as a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_the_originator_cannot_read_is_reported_as_a_fault() {
    let fleet = Fleet::start_with_env(&[("WARREN_LIMITS__MAX_BODY_BYTES", "4194304")]).await;
    let data = json!({ "padding": "p".repeat(1_500_000) });
    let file = DataFile::new(&data);
    let output = fleet
        .vhost
        .warren_with_env(
            &["request", ECHO, &file.argument(), "--timeout", "20s"],
            &[("WARREN_LIMITS__MAX_BODY_BYTES", "4194304")],
        )
        .await;
    assert_eq!(
        output.code(),
        Some(0),
        "the CLI with the same limit reads it"
    );
    let output = fleet
        .vhost
        .warren(&["request", ECHO, &file.argument(), "--timeout", "20s"])
        .await;
    assert_eq!(
        output.code(),
        Some(1),
        "a fault, not a timeout (3): {}",
        output.stderr
    );
    let lines = output.envelopes();
    assert_eq!(lines.len(), 1, "{}", output.stdout);
    assert_eq!(
        lines[0]["data"]["code"], "unreadable_outcome",
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[0]["data"]["details"]["reason"], "too_large",
        "{}",
        lines[0]
    );
    assert!(
        attribute(&lines[0], "correlationid").is_some(),
        "tied to the request: {}",
        lines[0]
    );
}

/// Binary mode (`ce-` headers, body = data): a message that cannot be decoded faults its
/// sender at `ce-replyto`. (Before: only the AMQP `reply_to` property was looked at.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_faults_go_to_ce_replyto() {
    let mut fleet = Fleet::start().await;
    let replyto = fleet.replies.name().to_owned();
    let headers = |overrides: Vec<(&str, Option<RawValue>)>| {
        let mut headers: Vec<(Vec<u8>, RawValue)> = vec![
            (b"ce-specversion".to_vec(), RawValue::text("1.0")),
            (
                b"ce-id".to_vec(),
                RawValue::text(&uuid::Uuid::now_v7().to_string()),
            ),
            (b"ce-source".to_vec(), RawValue::text("/hostile/sdk")),
            (b"ce-type".to_vec(), RawValue::text(TALLY_ADD)),
            (b"ce-replyto".to_vec(), RawValue::text(&replyto)),
            (
                b"ce-correlationid".to_vec(),
                RawValue::text("binary-correlation"),
            ),
        ];
        for (name, value) in overrides {
            headers.retain(|(existing, _)| existing != name.as_bytes());
            if let Some(value) = value {
                headers.push((name.as_bytes().to_vec(), value));
            }
        }
        RawProperties {
            content_type: Some(b"application/json".to_vec()),
            delivery_mode: Some(2),
            headers: Some(headers),
            ..RawProperties::default()
        }
    };
    let good_body = br#"{"key":"victim","amount":1}"#.to_vec();
    let cases: Vec<(&str, &str, RawProperties, Vec<u8>)> = vec![
        (
            "not_json",
            "invalid_envelope",
            headers(vec![]),
            b"{not json".to_vec(),
        ),
        (
            "missing_attribute",
            "invalid_envelope",
            headers(vec![("ce-type", None)]),
            good_body.clone(),
        ),
        (
            "unknown_specversion",
            "invalid_envelope",
            headers(vec![("ce-specversion", Some(RawValue::text("0.3")))]),
            good_body.clone(),
        ),
        (
            "invalid_attribute",
            "invalid_envelope",
            headers(vec![("ce-type", Some(RawValue::LongLong(7)))]),
            good_body.clone(),
        ),
        (
            "invalid_attribute",
            "invalid_envelope",
            headers(vec![(
                "ce-source",
                Some(RawValue::LongString(b"/\xff".to_vec())),
            )]),
            good_body.clone(),
        ),
        (
            "invalid_data",
            "invalid_payload",
            headers(vec![]),
            br#"{"key":"victim","amount":"one"}"#.to_vec(),
        ),
    ];
    for (reason, code, properties, body) in cases {
        fleet.publish_raw(TALLY_ADD, &properties, &body).await;
        fleet.dead_letter(TALLY_DLQ, reason, &body).await;
        let fault = fleet.fault(code, "tally").await;
        assert_eq!(
            attribute(&fault, "correlationid"),
            Some("binary-correlation"),
            "{reason}: {fault}"
        );
        fleet.assert_serving().await;
    }
    assert_eq!(fleet.total("victim").await, 0, "no add was applied");
}

/// Two different messages under one identity (`source` + `id`): the second is refused
/// with `reused_id`, never answered with the first one's result; the same id from another
/// source is another message; the same message again is a redelivery, answered as
/// before. (Before: the second add was answered with the first one's total.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_identity_is_refused_not_answered_with_another_result() {
    let mut fleet = Fleet::start().await;
    let id = uuid::Uuid::now_v7().to_string();
    let first = fleet.add("a", 5, json!({ "id": id })).await;
    let answer = fleet.outcome_within(MESSAGE_TIMEOUT).await;
    assert_eq!(answer["data"], json!({"key": "a", "total": 5}), "{answer}");

    let reused = fleet.add("b", 7, json!({ "id": id })).await;
    let fault = fleet.fault("reused_id", "tally").await;
    assert_eq!(attribute(&fault, "correlationid"), Some(id.as_str()));
    fleet.dead_letter(TALLY_DLQ, "reused_id", &reused).await;
    assert_eq!(fleet.total("b").await, 0);

    // The first message again: a redelivery, answered with the same reply.
    fleet
        .publish_raw(TALLY_ADD, &RawProperties::structured(), &first)
        .await;
    let again = fleet.outcome_within(MESSAGE_TIMEOUT).await;
    assert_eq!(again["data"], answer["data"]);
    assert_eq!(again["id"], answer["id"], "the recorded reply, same id");
    assert_eq!(fleet.total("a").await, 5);

    fleet
        .add("b", 7, json!({ "id": id, "source": "/elsewhere" }))
        .await;
    let answer = fleet.outcome_within(MESSAGE_TIMEOUT).await;
    assert_eq!(answer["data"], json!({"key": "b", "total": 7}), "{answer}");
    fleet.assert_serving().await;
    fleet.assert_no_outcome().await;
}

/// A value from a message that reaches a log line (here the decoder's error, which
/// quotes the unknown field's name) cannot start a line of its own in the human format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_fields_from_messages_cannot_forge_lines() {
    let mut fleet = Fleet::start().await;
    let replyto = fleet.replies.name().to_owned();
    let forged = "x\n[tally] 2026-11-30T00:00:00Z  INFO forged: all is well";
    let body = envelope(
        TALLY_ADD,
        json!({"key": "k", "amount": 1, forged: 1}),
        &replyto,
        json!({}),
    );
    fleet
        .publish_raw(TALLY_ADD, &RawProperties::structured(), &body)
        .await;
    fleet.dead_letter(TALLY_DLQ, "invalid_data", &body).await;
    fleet.fault("invalid_payload", "tally").await;
    fleet.assert_serving().await;
    let lines = fleet.tally.output_lines();
    assert!(
        lines
            .iter()
            .any(|line| line.contains(r"unknown field `x\n[tally]")),
        "the error is logged, escaped: {lines:#?}"
    );
    assert!(
        !lines.iter().any(|line| line.starts_with("[tally]")),
        "a forged line: {lines:#?}"
    );
}

/// Hostile shapes that are not bad input at all: headers of every type RabbitMQ's tables
/// carry, forged broker headers on a first delivery, a header that is not a trace. The
/// message is served as usual. A type tag RabbitMQ does not know never reaches a worker:
/// the broker closes the publisher's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_but_valid_properties_are_served() {
    let mut fleet = Fleet::start().await;
    let replyto = fleet.replies.name().to_owned();
    let tagged: Vec<(Vec<u8>, RawValue)> = [
        (b's', vec![0, 5]),
        (b'x', vec![0, 0, 0, 2, 0xff, 0xfe]),
        (b'V', vec![]),
        (b'D', vec![2, 0, 0, 0, 5]),
        (b'T', vec![0; 8]),
        (b'f', vec![0; 4]),
        (b'd', vec![0; 8]),
        (b'b', vec![1]),
        (b'B', vec![1]),
        (b'u', vec![0, 1]),
        (b'I', vec![0; 4]),
        (b'i', vec![0; 4]),
        (b'L', vec![0; 8]),
    ]
    .into_iter()
    .map(|(tag, bytes)| {
        (
            format!("x-tag-{}", char::from(tag)).into_bytes(),
            RawValue::Tagged(tag, bytes),
        )
    })
    .collect();
    let mut headers = vec![
        (
            b"x-table".to_vec(),
            RawValue::Table(vec![(b"k".to_vec(), RawValue::Bool(true))]),
        ),
        (
            b"x-array".to_vec(),
            RawValue::Array(vec![RawValue::LongLong(-1), RawValue::text("a")]),
        ),
        (b"x-delivery-count".to_vec(), RawValue::text("not a number")),
        (b"x-death".to_vec(), RawValue::text("forged")),
        (b"traceparent".to_vec(), RawValue::text("not a trace")),
    ];
    headers.extend(tagged);
    let properties = RawProperties {
        headers: Some(headers),
        message_id: Some(b"odd-1".to_vec()),
        ..RawProperties::structured()
    };
    let body = envelope(ECHO, json!({"odd": true}), &replyto, json!({}));
    fleet.publish_raw(ECHO, &properties, &body).await;
    let answer = fleet.outcome_within(MESSAGE_TIMEOUT).await;
    assert_eq!(attribute(&answer, "type"), Some(ECHO_REPLIED), "{answer}");
    assert_eq!(answer["data"], json!({"odd": true}));
    fleet.assert_serving().await;

    let unknown_type = RawProperties {
        headers: Some(vec![(
            b"x-odd".to_vec(),
            RawValue::Tagged(b'Z', vec![1, 2, 3]),
        )]),
        ..RawProperties::structured()
    };
    let mut raw = RawPublisher::connect(BROKER_PORT, fleet.vhost.name()).await;
    let answer = raw.publish(COMMANDS, ECHO, &unknown_type, &body).await;
    assert!(matches!(answer, PublishAnswer::Closed(_)), "{answer:?}");
    fleet.assert_serving().await;
    fleet.assert_no_outcome().await;
}

/// A URL the broker settings cannot parse is reported without its password, by the CLI
/// and by a worker. (Before: a password with an unescaped `/` was printed whole.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_an_unparsable_url_is_never_printed() {
    let vhost = Vhost::create().await;
    let url = "amqp://user:se/cret@127.0.0.1/vhost";
    let output = vhost
        .warren_with_env(&["request", ECHO, "{}"], &[("WARREN_AMQP_URL", url)])
        .await;
    assert_eq!(output.code(), Some(2), "{}", output.stderr);
    assert!(output.stderr.contains("amqp.url"), "{}", output.stderr);
    assert!(!output.stderr.contains("cret"), "{}", output.stderr);
    let mut worker = WarrenCommand::new("warren-echo", url).spawn();
    let status = worker.wait(EXIT_TIMEOUT).await;
    let printed = worker.stderr();
    assert_eq!(status.code(), Some(2), "{printed}");
    assert!(
        printed.contains("amqp.url") && !printed.contains("cret"),
        "{printed}"
    );
}

/// A listener that accepts the connection and never speaks AMQP does not hold the CLI
/// past its `--timeout`. (Before: 30 s, whatever the timeout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_listener_does_not_hold_the_cli_past_its_timeout() {
    let vhost = Vhost::create().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = listener.local_addr().expect("its address").port();
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            connections.push(connection);
        }
    });
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    for args in [
        vec!["request", ECHO, "{}", "--timeout", "2s"],
        vec!["publish", ECHO, "{}", "--timeout", "2s"],
    ] {
        let started = Instant::now();
        let output = vhost
            .warren_with_env(&args, &[("WARREN_AMQP_URL", url.as_str())])
            .await;
        let took = started.elapsed();
        assert_eq!(output.code(), Some(2), "{}", output.stderr);
        assert!(
            took < Duration::from_secs(10),
            "`warren {}` took {took:?}",
            args[0]
        );
        assert!(
            output.stderr.contains("cannot connect"),
            "{}",
            output.stderr
        );
    }
    held.abort();
}
