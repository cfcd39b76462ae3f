//! `warren tail` end to end: it prints what flows through the fleet's exchanges (a body
//! that is not JSON too, with nothing reaching the terminal as it is), only the types its
//! pattern matches, and takes nothing from anyone: a worker still answers its request
//! and another subscriber still gets its events. Its queue goes with it; Ctrl-C exits 0;
//! a dropped connection is rebuilt.
//!
//! Every test waits for tail's "listening" line on stderr before publishing: its queue is
//! bound by then, so nothing published afterwards can miss it.

use std::time::Duration;

use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::Value;
use tokio::time::Instant;
use warren_e2e::vhost::rabbitmqctl;
use warren_e2e::{
    BrokerClient, CLI_TIMEOUT, EXIT_TIMEOUT, MESSAGE_TIMEOUT, OutgoingMessage, READY_TIMEOUT,
    Request, Vhost, WarrenProcess, attribute, parse_envelope,
};

const ECHO: &str = "dev.warren.echo.v1";
const ECHO_REPLIED: &str = "dev.warren.echo.replied.v1";
const TALLY_ADD: &str = "dev.warren.tally.add.v1";
const PLACE_ORDER: &str = "dev.warren.orders.place.v1";
const ORDER_PLACED: &str = "dev.warren.orders.placed.v1";
const CARD_CHARGED: &str = "dev.warren.payments.charged.v1";
const EVENTS_EXCHANGE: &str = "warren.events";

/// What tail prints on stderr once its queue is bound and consumed.
const LISTENING: &str = "listening for types matching";

/// A body that is not JSON and would forge a log line and recolour a terminal.
const HOSTILE_BODY: &[u8] = b"not json\n2026-01-01 [echo] forged \x1b[31mred";

/// Starts `warren tail` with `args` in `vhost` and waits until it listens.
async fn start_tail(vhost: &Vhost, args: &[&str]) -> WarrenProcess {
    let mut tail = vhost
        .worker("warren")
        .args(&[&["tail"], args].concat())
        .spawn();
    tail.wait_for_lines(&[LISTENING], 1, READY_TIMEOUT).await;
    tail
}

/// Waits for `tail` to exit and asserts it exited 0; returns its stdout lines.
async fn stdout_after_exit(tail: &mut WarrenProcess) -> Vec<String> {
    let status = tail.wait(CLI_TIMEOUT).await;
    assert_eq!(
        status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        tail.stdout(),
        tail.stderr()
    );
    tail.stdout().lines().map(str::to_owned).collect()
}

/// `message` published to `warren.events` instead, under the same routing key.
fn as_event(message: OutgoingMessage) -> OutgoingMessage {
    OutgoingMessage {
        exchange: EVENTS_EXCHANGE.to_owned(),
        ..message
    }
}

/// The queues of `vhost` whose name the broker made up (`amq.gen-…`), with whether each
/// is exclusive and auto-delete, and its arguments, as `rabbitmqctl` prints them.
async fn server_named_queues(vhost: &Vhost) -> Vec<String> {
    let listing = rabbitmqctl(&[
        "list_queues",
        "--quiet",
        "--no-table-headers",
        "-p",
        vhost.name(),
        "name",
        "exclusive",
        "auto_delete",
        "arguments",
    ])
    .await;
    listing
        .lines()
        .filter(|line| line.starts_with("amq.gen-"))
        .map(str::to_owned)
        .collect()
}

/// A queue of the test's own that gets a copy of every event: another subscriber.
async fn event_witness(broker: &BrokerClient) -> String {
    let channel = broker.create_channel().await;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare the witness queue");
    let name = queue.name().as_str().to_owned();
    channel
        .queue_bind(
            name.as_str().into(),
            EVENTS_EXCHANGE.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind the witness queue");
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_every_message_and_the_worker_still_gets_its_own() {
    let vhost = Vhost::create().await;
    let _echo = vhost.start_worker("warren-echo").await;
    let broker = vhost.connect().await;
    let replies = broker.reply_queue().await;
    let mut tail = start_tail(&vhost, &["--count", "3"]).await;

    let request = Request::new(ECHO, r#"{"text":"seen by two"}"#, Some(replies.name()));
    broker.publish(request.message.clone()).await;
    // No worker consumes tally commands here: only tail's queue takes it.
    broker
        .publish(OutgoingMessage::command(TALLY_ADD, HOSTILE_BODY))
        .await;
    let event = Request::new(ORDER_PLACED, r#"{"order_id":"o-1"}"#, None);
    broker.publish(as_event(event.message.clone())).await;

    let lines = stdout_after_exit(&mut tail).await;
    assert_eq!(lines.len(), 3, "one line per message: {lines:#?}");
    let expected_request = format!(
        " warren.commands {ECHO} type={ECHO} id={} correlationid={} data={{\"text\":\"seen by two\"}}",
        request.attributes.id,
        request.correlation_id()
    );
    assert!(lines[0].ends_with(&expected_request), "{}", lines[0]);
    assert!(
        lines[1].contains(&format!(
            " warren.commands {TALLY_ADD} unreadable=not_json "
        )),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].ends_with(&format!(
            r#"body="not json\n2026-01-01 [echo] forged \u{{1b}}[31mred" ({} bytes)"#,
            HOSTILE_BODY.len()
        )),
        "the body is shown, escaped: {}",
        lines[1]
    );
    assert!(
        !tail.stdout().contains('\u{1b}'),
        "no raw escape reaches the terminal"
    );
    assert!(
        lines[2].contains(&format!(
            " warren.events {ORDER_PLACED} type={ORDER_PLACED} id={} ",
            event.attributes.id
        )),
        "{}",
        lines[2]
    );

    // The worker got its request as if tail were not there.
    let outcome = replies.next(&broker).await;
    assert_eq!(attribute(&outcome, "type"), Some(ECHO_REPLIED), "{outcome}");
    assert_eq!(
        attribute(&outcome, "correlationid"),
        Some(request.correlation_id())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_json_shows_only_the_types_its_pattern_matches() {
    let vhost = Vhost::create().await;
    let _echo = vhost.start_worker("warren-echo").await;
    let broker = vhost.connect().await;
    let replies = broker.reply_queue().await;
    let witness = event_witness(&broker).await;
    let mut tail = start_tail(
        &vhost,
        &["--type", "dev.warren.orders.#", "--json", "--count", "2"],
    )
    .await;

    // Not matching: a command the echo worker takes, an event another subscriber takes.
    let echo = Request::new(ECHO, r#"{"text":"not for tail"}"#, Some(replies.name()));
    broker.publish(echo.message.clone()).await;
    let charged = Request::new(CARD_CHARGED, r#"{"order_id":"o-1"}"#, None);
    broker.publish(as_event(charged.message.clone())).await;
    // Matching: a command no worker here consumes, an event whose body is not JSON.
    let place = Request::new(PLACE_ORDER, r#"{"order_id":"o-1"}"#, None);
    broker.publish(place.message.clone()).await;
    let mut placed = OutgoingMessage::command(ORDER_PLACED, HOSTILE_BODY);
    placed.exchange = EVENTS_EXCHANGE.to_owned();
    broker.publish(placed).await;

    let lines = stdout_after_exit(&mut tail).await;
    assert_eq!(lines.len(), 2, "only the matching messages: {lines:#?}");
    let envelope = parse_envelope(lines[0].as_bytes());
    assert_eq!(
        attribute(&envelope, "type"),
        Some(PLACE_ORDER),
        "{envelope}"
    );
    assert_eq!(
        attribute(&envelope, "id"),
        Some(place.attributes.id.as_str())
    );
    let described: Value = serde_json::from_str(&lines[1])
        .unwrap_or_else(|error| panic!("not a JSON line ({error}): {}", lines[1]));
    let unreadable = &described["unreadable"];
    assert_eq!(unreadable["reason"], "not_json", "{described}");
    assert_eq!(unreadable["exchange"], EVENTS_EXCHANGE, "{described}");
    assert_eq!(unreadable["routing_key"], ORDER_PLACED, "{described}");
    assert_eq!(
        unreadable["body"],
        String::from_utf8_lossy(HOSTILE_BODY).as_ref(),
        "{described}"
    );
    assert!(
        !tail.stdout().contains('\u{1b}'),
        "no raw escape reaches the terminal"
    );

    // Nobody else lost anything: the worker answered, the other subscriber got both
    // events.
    let outcome = replies.next(&broker).await;
    assert_eq!(
        attribute(&outcome, "correlationid"),
        Some(echo.correlation_id())
    );
    let first = broker.get_within(&witness, MESSAGE_TIMEOUT).await;
    let second = broker.get_within(&witness, MESSAGE_TIMEOUT).await;
    let keys: Vec<Option<String>> = [first, second]
        .into_iter()
        .map(|message| message.map(|message| message.routing_key))
        .collect();
    assert_eq!(
        keys,
        [Some(CARD_CHARGED.to_owned()), Some(ORDER_PLACED.to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_tail_with_code_0_and_its_bounded_queue_goes_with_it() {
    let vhost = Vhost::create().await;
    let mut tail = start_tail(&vhost, &[]).await;

    let queues = server_named_queues(&vhost).await;
    assert_eq!(queues.len(), 1, "tail's own queue: {queues:?}");
    let queue = &queues[0];
    let fields: Vec<&str> = queue.split_whitespace().collect();
    assert_eq!(
        fields.get(1..3),
        Some(&["true", "true"][..]),
        "exclusive, auto-delete: {queue}"
    );
    for argument in [
        r#""x-overflow","drop-head""#,
        r#""x-max-length","#,
        r#""x-message-ttl","#,
    ] {
        assert!(queue.contains(argument), "{argument} in {queue}");
    }

    let pid = i32::try_from(tail.pid()).expect("process ids fit in an i32");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("send SIGINT to tail");
    let status = tail.wait(EXIT_TIMEOUT).await;
    assert_eq!(status.code(), Some(0), "stderr: {}", tail.stderr());
    assert!(tail.stdout().is_empty(), "{}", tail.stdout());

    let deadline = Instant::now() + MESSAGE_TIMEOUT;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        poll.tick().await;
        let left = server_named_queues(&vhost).await;
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tail's queue is still there: {left:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_rebuilds_a_dropped_connection_and_goes_on() {
    let vhost = Vhost::create().await;
    let broker = vhost.connect().await;
    let mut tail = start_tail(&vhost, &["--type", ECHO, "--count", "1"]).await;

    assert!(
        vhost
            .close_connection_named("warren-cli tail", "test: dropping tail")
            .await,
        "tail's connection is listed"
    );
    tail.wait_for_lines(&["reconnected; listening"], 1, READY_TIMEOUT)
        .await;

    // Only tail's queue is bound for the type: the publish is routed only if it is back.
    let request = Request::new(ECHO, r#"{"after":"reconnecting"}"#, None);
    broker.publish(request.message.clone()).await;
    let lines = stdout_after_exit(&mut tail).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains(&format!("id={}", request.attributes.id)),
        "{}",
        lines[0]
    );
}
