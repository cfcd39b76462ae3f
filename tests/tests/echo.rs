//! The echo worker and the `warren` CLI end to end: results, timeouts, bad input, faults
//! and a clean shutdown with work in flight.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use lapin::types::{AMQPValue, LongString};
use serde_json::{Value, json};
use tokio::time::Instant;
use warren_e2e::{
    ECHO_DLQ, ECHO_QUEUE, EXIT_TIMEOUT, MESSAGE_TIMEOUT, OutgoingMessage, READY_TIMEOUT,
    ReceivedMessage, Request, Vhost, attribute, parse_envelope,
};

const ECHO: &str = "dev.warren.echo.v1";
const ECHO_REPLIED: &str = "dev.warren.echo.replied.v1";
const FAULT: &str = "dev.warren.fault.v1";

/// Asserts that `reply` is the echo result of a request with `data`, and returns its
/// correlation id.
fn assert_echo_result<'a>(reply: &'a Value, data: &Value) -> &'a str {
    assert_eq!(attribute(reply, "type"), Some(ECHO_REPLIED), "{reply}");
    assert_eq!(&reply["data"], data, "{reply}");
    let correlation_id = attribute(reply, "correlationid")
        .unwrap_or_else(|| panic!("a result without a correlationid: {reply}"));
    assert!(!correlation_id.is_empty(), "{reply}");
    correlation_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_gets_one_result_with_the_same_correlation_id() {
    let vhost = Vhost::create().await;
    let _worker = vhost.start_worker("warren-echo").await;

    let output = vhost
        .warren(&["request", ECHO, r#"{"hello":"world"}"#])
        .await;
    assert_eq!(output.code(), Some(0), "stdout: {}", output.stdout);
    let lines = output.stdout_lines();
    assert_eq!(lines.len(), 1, "one request, one outcome line: {lines:?}");
    assert_echo_result(
        &parse_envelope(lines[0].as_bytes()),
        &json!({"hello":"world"}),
    );

    let output = vhost
        .warren(&["request", ECHO, r#"{"hello":"world"}"#, "--count", "20"])
        .await;
    assert_eq!(output.code(), Some(0), "stdout: {}", output.stdout);
    let replies = output.envelopes();
    assert_eq!(
        replies.len(),
        20,
        "20 requests, 20 outcome lines: {}",
        output.stdout
    );
    let correlation_ids: HashSet<&str> = replies
        .iter()
        .map(|reply| assert_echo_result(reply, &json!({"hello":"world"})))
        .collect();
    assert_eq!(correlation_ids.len(), 20, "one correlation id per request");

    // The same, from an originator that knows its request's id: the result carries it.
    let broker = vhost.connect().await;
    let replies = broker.reply_queue().await;
    let request = Request::new(
        ECHO,
        r#"{"n":1.50,"nested":{"a":[1,2]}}"#,
        Some(replies.name()),
    );
    broker.publish(request.message.clone()).await;
    let reply = replies.next(&broker).await;
    let correlation_id = assert_echo_result(&reply, &json!({"n":1.50,"nested":{"a":[1,2]}}));
    assert_eq!(correlation_id, request.correlation_id());
    assert!(
        replies.next_within(&broker, Duration::ZERO).await.is_none(),
        "exactly one outcome per request"
    );
}

/// A request whose AMQP header frame is large (100 KB, within the broker's 128 KiB frame
/// limit) is answered like any other: a worker that asked for smaller frames than the
/// broker accepts from publishers would refuse it as a protocol violation, lose its
/// connection on every delivery of it and stall everything else it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_with_a_large_header_frame_is_answered() {
    let vhost = Vhost::create().await;
    let _worker = vhost.start_worker("warren-echo").await;
    let broker = vhost.connect().await;
    let replies = broker.reply_queue().await;
    let request = Request::new(ECHO, r#"{"large":"header"}"#, Some(replies.name()));
    let mut headers = request
        .message
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    headers.insert(
        "x-large".into(),
        AMQPValue::LongString(LongString::from("h".repeat(100_000))),
    );
    let properties = request.message.properties.clone().with_headers(headers);
    broker
        .publish(request.message.clone().with_properties(properties))
        .await;
    let reply = replies.next(&broker).await;
    let correlation_id = assert_echo_result(&reply, &json!({"large":"header"}));
    assert_eq!(correlation_id, request.correlation_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_times_out_with_exit_3_when_no_worker_answers() {
    let vhost = Vhost::create().await;
    // A worker declares the topology, then leaves: the request is queued, never answered.
    let mut worker = vhost.start_worker("warren-echo").await;
    let status = worker.stop().await;
    assert!(
        status.success(),
        "the worker exits 0 on SIGTERM, not {status}"
    );

    let started = Instant::now();
    let output = vhost
        .warren(&["request", ECHO, r#"{"hello":"nobody"}"#, "--timeout", "1s"])
        .await;
    assert_eq!(output.code(), Some(3), "stdout: {}", output.stdout);
    assert!(
        output.envelopes().is_empty(),
        "no outcome arrived, so none is printed: {}",
        output.stdout
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a 1 s timeout took {:?}",
        started.elapsed()
    );
}

/// One bad body per reason the worker must dead-letter it with.
fn bad_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let too_large = {
        let limit = 1024 * 1024;
        let (head, tail) = (br#"{"padding":""#.as_slice(), br#""}"#.as_slice());
        let mut body = head.to_vec();
        body.resize(limit + 1 - tail.len(), b'x');
        body.extend_from_slice(tail);
        assert_eq!(body.len(), limit + 1);
        body
    };
    let depth = 20_000;
    let too_deep = [vec![b'['; depth], vec![b']'; depth]].concat();
    vec![
        ("not_json", b"this is not JSON {".to_vec()),
        (
            "unknown_specversion",
            json!({
                "specversion": "0.3", "id": "bad-1", "source": "/test", "type": ECHO,
                "data": {"hello": "world"}
            })
            .to_string()
            .into_bytes(),
        ),
        (
            "unknown_type",
            json!({
                "specversion": "1.0", "id": "bad-2", "source": "/test",
                "type": "dev.warren.nobody.handles.this.v1", "data": {"hello": "world"}
            })
            .to_string()
            .into_bytes(),
        ),
        ("too_large", too_large),
        ("too_deep", too_deep),
        (
            "not_utf8",
            b"{\"specversion\":\"1.0\",\"id\":\"\xC3\x28\",\"source\":\"/test\"}".to_vec(),
        ),
    ]
}

/// Asserts the headers every dead letter of the echo worker carries, and returns its
/// reason.
fn assert_dead_letter_headers(
    message: &ReceivedMessage,
    original_exchange: &str,
    original_routing_key: &str,
) -> String {
    let headers = message.headers_debug();
    let header = |name: &str| {
        message
            .header(name)
            .unwrap_or_else(|| panic!("dead letter without a string header {name}: {headers:?}"))
    };
    let error = header("x-warren-error");
    assert!(
        !error.trim().is_empty(),
        "an empty x-warren-error: {headers:?}"
    );
    assert_eq!(header("x-warren-worker"), "echo", "{headers:?}");
    assert_eq!(
        header("x-warren-original-exchange"),
        original_exchange,
        "{headers:?}"
    );
    assert_eq!(
        header("x-warren-original-routing-key"),
        original_routing_key,
        "{headers:?}"
    );
    header("x-warren-reason")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_dead_lettered_with_its_reason_and_the_worker_keeps_answering() {
    let vhost = Vhost::create().await;
    let mut worker = vhost.start_worker("warren-echo").await;
    let broker = vhost.connect().await;

    let bad_inputs = bad_inputs();
    broker
        .publish_all(
            bad_inputs
                .iter()
                .map(|(_, body)| OutgoingMessage::to_queue(ECHO_QUEUE, body.clone())),
        )
        .await;

    let dead_letters = broker
        .get_messages(ECHO_DLQ, bad_inputs.len(), MESSAGE_TIMEOUT)
        .await;
    let expected_bodies: HashMap<&str, &Vec<u8>> = bad_inputs
        .iter()
        .map(|(reason, body)| (*reason, body))
        .collect();
    let mut reasons = BTreeSet::new();
    for dead_letter in &dead_letters {
        let reason = assert_dead_letter_headers(dead_letter, "", ECHO_QUEUE);
        let expected_body = expected_bodies.get(reason.as_str()).unwrap_or_else(|| {
            panic!(
                "unexpected reason {reason:?} for a body of {} bytes starting {:?}",
                dead_letter.body.len(),
                String::from_utf8_lossy(&dead_letter.body[..dead_letter.body.len().min(80)])
            )
        });
        // Not assert_eq!: a failure would print a mebibyte.
        assert!(
            dead_letter.body == **expected_body,
            "the {reason} dead letter's body changed: {} bytes, sent {}",
            dead_letter.body.len(),
            expected_body.len()
        );
        assert!(
            reasons.insert(reason.clone()),
            "{reason} dead-lettered twice"
        );
    }
    let expected_reasons: BTreeSet<String> = bad_inputs
        .iter()
        .map(|(reason, _)| (*reason).to_owned())
        .collect();
    assert_eq!(reasons, expected_reasons);
    let dlq = broker.queue_state(ECHO_DLQ).await.expect("the DLQ exists");
    assert_eq!(dlq.messages, 0, "exactly one dead letter per bad message");
    broker
        .wait_for_queue(
            ECHO_QUEUE,
            MESSAGE_TIMEOUT,
            "the work queue empties",
            |state| state.messages == 0,
        )
        .await;

    assert!(
        worker.try_exit_status().is_none(),
        "bad input must not crash the worker"
    );
    let output = vhost
        .warren(&["request", ECHO, r#"{"still":"here"}"#])
        .await;
    assert_eq!(output.code(), Some(0), "stdout: {}", output.stdout);
    let replies = output.envelopes();
    assert_eq!(replies.len(), 1, "{}", output.stdout);
    assert_echo_result(&replies[0], &json!({"still":"here"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payload_with_reply_to_gets_a_fault() {
    let vhost = Vhost::create().await;
    let _worker = vhost.start_worker("warren-echo").await;
    let broker = vhost.connect().await;
    let replies = broker.reply_queue().await;

    // A valid envelope whose data is not the object echo takes.
    let request = Request::new(ECHO, "[1,2]", Some(replies.name()));
    broker.publish(request.message.clone()).await;

    let fault = replies.next(&broker).await;
    assert_eq!(attribute(&fault, "type"), Some(FAULT), "{fault}");
    assert_eq!(
        attribute(&fault, "correlationid"),
        Some(request.correlation_id()),
        "{fault}"
    );
    let data: warren_messages::Fault = serde_json::from_value(fault["data"].clone())
        .unwrap_or_else(|error| panic!("a fault's data has the fault shape ({error}): {fault}"));
    assert_eq!(data.code, "invalid_payload", "{fault}");
    assert_eq!(data.worker, "echo", "{fault}");
    assert!(
        !data.retryable,
        "bad input is never worth retrying: {fault}"
    );
    assert!(!data.message.trim().is_empty(), "{fault}");

    let dead_letters = broker.get_messages(ECHO_DLQ, 1, MESSAGE_TIMEOUT).await;
    let reason = assert_dead_letter_headers(&dead_letters[0], "warren.commands", ECHO);
    assert_eq!(reason, "invalid_data");
    assert!(
        dead_letters[0].body == request.message.body,
        "the dead letter's body changed: {}",
        String::from_utf8_lossy(&dead_letters[0].body)
    );
    assert!(
        replies.next_within(&broker, Duration::ZERO).await.is_none(),
        "exactly one outcome per request"
    );
}

/// Every reply of the shutdown test, sorted into what the reliability count needs.
#[derive(Default)]
struct Tally {
    received: HashSet<String>,
    duplicates: usize,
    unexpected: Vec<Value>,
}

impl Tally {
    fn record(&mut self, reply: Value, expected: &HashMap<String, Value>) {
        let correlation_id = attribute(&reply, "correlationid").map(str::to_owned);
        let expected_data = correlation_id.as_deref().and_then(|id| expected.get(id));
        match (correlation_id, expected_data) {
            (Some(correlation_id), Some(data))
                if attribute(&reply, "type") == Some(ECHO_REPLIED) && reply["data"] == *data =>
            {
                if !self.received.insert(correlation_id) {
                    self.duplicates += 1;
                }
            }
            _ => self.unexpected.push(reply),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_messages_in_flight_loses_none() {
    const REQUESTS: usize = 2_000;
    let vhost = Vhost::create().await;
    let broker = vhost.connect().await;

    // A first run declares the topology and leaves, so the requests wait in the queue.
    let mut first = vhost.start_worker("warren-echo").await;
    let status = first.stop().await;
    assert!(
        status.success(),
        "the idle worker exits 0 on SIGTERM, not {status}"
    );

    let replies = broker.reply_queue().await;
    let requests: Vec<Request> = (0..REQUESTS)
        .map(|n| Request::new(ECHO, &json!({"n": n}).to_string(), Some(replies.name())))
        .collect();
    let expected: HashMap<String, Value> = (0..REQUESTS)
        .zip(&requests)
        .map(|(n, request)| (request.correlation_id().to_owned(), json!({"n": n})))
        .collect();
    broker
        .publish_all(requests.iter().map(|request| request.message.clone()))
        .await;
    broker
        .wait_for_queue(
            ECHO_QUEUE,
            MESSAGE_TIMEOUT,
            "all requests queued",
            |state| state.messages as usize == REQUESTS,
        )
        .await;

    // Stop the second run as soon as it has answered something: the rest is in flight or
    // still queued.
    let mut tally = Tally::default();
    let mut second = vhost.worker("warren-echo").spawn();
    let first_reply = replies
        .next_within(&broker, READY_TIMEOUT)
        .await
        .expect("the worker answers a first request");
    second.sigterm();
    tally.record(first_reply, &expected);
    let status = second.wait(EXIT_TIMEOUT).await;
    assert!(
        status.success(),
        "the busy worker exits 0 on SIGTERM, not {status}"
    );
    let left = broker
        .queue_state(ECHO_QUEUE)
        .await
        .expect("the work queue exists");
    eprintln!(
        "after SIGTERM: {} requests left queued for the next run",
        left.messages
    );

    // A third run finishes the work.
    let mut third = vhost.start_worker("warren-echo").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally.received.len() < REQUESTS {
        let left = deadline.saturating_duration_since(Instant::now());
        match replies.next_within(&broker, left).await {
            Some(reply) => tally.record(reply, &expected),
            None => break,
        }
    }
    let status = third.stop().await;
    assert!(
        status.success(),
        "the worker exits 0 on SIGTERM, not {status}"
    );
    // Every reply the worker sent was confirmed before it acked and exited: count the
    // late duplicates too.
    for reply in replies.drain(&broker).await {
        tally.record(reply, &expected);
    }

    let lost = REQUESTS - tally.received.len();
    eprintln!(
        "{REQUESTS} requests: {} answered, {lost} lost, {} duplicates, {} unexpected",
        tally.received.len(),
        tally.duplicates,
        tally.unexpected.len()
    );
    assert_eq!(lost, 0, "requests without a reply");
    assert!(
        tally.unexpected.is_empty(),
        "unexpected outcomes: {:?}",
        &tally.unexpected[..tally.unexpected.len().min(5)]
    );
    let work = broker
        .queue_state(ECHO_QUEUE)
        .await
        .expect("the work queue exists");
    assert_eq!(work.messages, 0, "every request was acked");
    let dlq = broker.queue_state(ECHO_DLQ).await.expect("the DLQ exists");
    assert_eq!(dlq.messages, 0, "no request was dead-lettered");
}

/// The type of `exchange` in `vhost`, as `rabbitmqctl list_exchanges` gives it.
async fn exchange_type(vhost: &Vhost, exchange: &str) -> Option<String> {
    let listed = warren_e2e::vhost::rabbitmqctl(&[
        "list_exchanges",
        "-q",
        "-p",
        vhost.name(),
        "name",
        "type",
    ])
    .await;
    listed.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next() == Some(exchange)).then(|| fields.next().unwrap_or_default().to_owned())
    })
}

/// What a worker logs when it finds `warren.commands` declared with another type.
const OLD_EXCHANGE_WARNING: &str = "warren.commands exists with another type";

/// `warren.commands` is a direct exchange; one a warren 0.1 fleet left behind as a
/// topic exchange is used as it is, so that fleet's broker keeps routing commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_go_through_a_direct_exchange_or_an_old_topic_one() {
    let fresh = Vhost::create().await;
    let fresh_worker = fresh.start_worker("warren-echo").await;
    assert_eq!(
        exchange_type(&fresh, "warren.commands").await.as_deref(),
        Some("direct")
    );
    assert_eq!(fresh_worker.count_lines_with(&[OLD_EXCHANGE_WARNING]), 0);
    assert_eq!(
        exchange_type(&fresh, "warren.events").await.as_deref(),
        Some("topic")
    );
    let output = fresh.warren(&["request", ECHO, r#"{"fresh":true}"#]).await;
    assert_eq!(output.code(), Some(0), "stdout: {}", output.stdout);

    let old = Vhost::create().await;
    let broker = old.connect().await;
    let channel = broker.create_channel().await;
    channel
        .exchange_declare(
            "warren.commands".into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..lapin::options::ExchangeDeclareOptions::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("declare warren.commands as warren 0.1 did");
    let old_worker = old.start_worker("warren-echo").await;
    assert_eq!(
        old_worker.count_lines_with(&[OLD_EXCHANGE_WARNING, "delete_exchange warren.commands"]),
        1,
        "one warning naming the fix: {:?}",
        old_worker.output_lines()
    );
    let output = old.warren(&["request", ECHO, r#"{"old":true}"#]).await;
    assert_eq!(output.code(), Some(0), "stdout: {}", output.stdout);
    assert_echo_result(
        &parse_envelope(output.stdout_lines()[0].as_bytes()),
        &json!({"old":true}),
    );
    assert_eq!(
        exchange_type(&old, "warren.commands").await.as_deref(),
        Some("topic"),
        "the old exchange is kept, not replaced"
    );
}
