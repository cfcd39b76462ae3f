//! `warren load`'s outcome recovery end to end (docs/reliability.md, "Outcome recovery").
//!
//! By default the load reads its outcomes from a `warren.reply.resend.<uuid>` queue: the
//! echo worker publishes them there transient, the load reads them without acks, and after
//! every reconnect it sends again, under the same ids, every request it has no outcome
//! for. Each test breaks a run in the middle and passes only when every request of the
//! load got its result: none lost, none timed out, none faulted.
//!
//! - Every connection of the vhost closed on the shared broker, while outcomes flow.
//!   [`HELD`] of the load's requests are held unacknowledged on the test's own connection
//!   until then, so the load cannot finish before the fault.
//! - A private node restarted while the load's outcomes wait in its reply queue, which
//!   loses them all: the load is cut off from the node first (a [`Proxy`] blackhole, its
//!   connection closed on the node), so the outcomes of every request it has in flight
//!   pile up in the reply queue, where the test counts them before and after the
//!   restart. The load must send those requests again. With `--durable-outcomes` the
//!   same outcomes are persistent: they outlive the restart and the load reads them.
//!
//! Each fault waits until the worker has sent [`OUTCOMES_BEFORE_FAULT`] outcomes (its
//! `/metrics`), so it strikes mid-run, and each test checks a copy of one outcome sent to
//! the load's reply queue for its delivery mode ([`Onlooker`]).

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::Consumer;
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::time::Instant;
use warren_e2e::broker_node::{NodeOptions, PrivateNode};
use warren_e2e::metrics::{http_get, metrics_address, sample};
use warren_e2e::proxy::Proxy;
use warren_e2e::{
    BrokerClient, ECHO_QUEUE, MESSAGE_TIMEOUT, REPLIES_EXCHANGE, ReceivedMessage, Vhost,
    WarrenCommand, WarrenProcess, close_channel, within_broker_timeout,
};

/// Requests per run: at ~3,000 a second here, several seconds of traffic.
const MESSAGES: u64 = 20_000;

/// The load's closed loop: requests in flight at once.
const INFLIGHT: u64 = 250;

/// Requests the connection test holds unacknowledged until the fault: work certainly
/// left for after it, however fast the load and the worker are.
const HELD: usize = 50;

/// Outcomes the worker has sent when the fault strikes, at the least.
const OUTCOMES_BEFORE_FAULT: f64 = 1_000.0;

/// The series of the worker's `/metrics` that counts the echo results it sent.
const OUTCOMES_SENT: &str =
    r#"warren_messages_published_total{worker="echo",message_type="dev.warren.echo.replied.v1"}"#;

/// The start of a re-sending originator's reply queue name (`RESEND_REPLY_QUEUE_PREFIX`).
const RESEND_REPLY_QUEUE_PREFIX: &str = "warren.reply.resend.";

/// The start of every reply queue name.
const REPLY_QUEUE_PREFIX: &str = "warren.reply.";

/// What `warren load` calls its connection.
const LOAD_CONNECTION_NAME: &str = "warren-cli load";

/// How long the worker may take to send its first outcomes, to consume again after a
/// fault, and the queues to reach a state the test waits for.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a load may run in all.
const LOAD_EXIT_TIMEOUT: Duration = Duration::from_secs(180);

/// AMQP `delivery_mode` of a message kept in memory only.
const TRANSIENT: u8 = 1;

/// AMQP `delivery_mode` of a message written to disk.
const PERSISTENT: u8 = 2;

/// How the load gets back the outcomes a fault lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// The default: transient outcomes, every waiting request sent again.
    OriginatorResends,
    /// `--durable-outcomes`: persistent outcomes, acked; only unconfirmed publishes sent
    /// again.
    BrokerKeeps,
}

impl Recovery {
    /// What the load's JSON summary calls it.
    fn summary_name(self) -> &'static str {
        match self {
            Recovery::OriginatorResends => "originator_resends",
            Recovery::BrokerKeeps => "broker_keeps",
        }
    }

    /// The `delivery_mode` the worker gives the load's outcomes.
    fn delivery_mode(self) -> u8 {
        match self {
            Recovery::OriginatorResends => TRANSIENT,
            Recovery::BrokerKeeps => PERSISTENT,
        }
    }
}

/// An echo worker on `amqp_url` that serves its metrics, to be started. Its heartbeat is
/// long enough that a broker keeps its connection while the test pauses it (SIGSTOP) for
/// a few `rabbitmqctl` calls; every fault here closes or resets its connection anyway.
fn echo_worker(amqp_url: &str) -> WarrenCommand {
    WarrenCommand::new("warren-echo", amqp_url).envs(&[
        ("WARREN_METRICS__LISTEN", "127.0.0.1:0"),
        ("WARREN_AMQP__HEARTBEAT_SECS", "60"),
    ])
}

/// Starts `warren load` on `amqp_url`: [`MESSAGES`] echo requests, [`INFLIGHT`] at a
/// time, each given `timeout`, with a JSON summary.
fn start_load(amqp_url: &str, recovery: Recovery, timeout: &str) -> WarrenProcess {
    let messages = MESSAGES.to_string();
    let inflight = INFLIGHT.to_string();
    let mut args = vec![
        "load",
        "--messages",
        &messages,
        "--inflight",
        &inflight,
        "--timeout",
        timeout,
        "--json",
    ];
    if recovery == Recovery::BrokerKeeps {
        args.push("--durable-outcomes");
    }
    WarrenCommand::new("warren", amqp_url).args(&args).spawn()
}

/// The echo results `worker` has sent so far, by its `/metrics`.
async fn outcomes_sent(worker: &WarrenProcess) -> f64 {
    let (status, body) = http_get(&metrics_address(worker), "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    sample(&body, OUTCOMES_SENT).unwrap_or(0.0)
}

/// Waits until `worker` has sent `at_least` echo results, and returns how many it had.
///
/// # Panics
/// When the worker exits first, or does not get there within [`PROGRESS_TIMEOUT`].
async fn wait_for_outcomes_sent(worker: &mut WarrenProcess, at_least: f64) -> f64 {
    let deadline = Instant::now() + PROGRESS_TIMEOUT;
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        let sent = outcomes_sent(worker).await;
        if sent >= at_least {
            return sent;
        }
        if let Some(status) = worker.try_exit_status() {
            panic!("the echo worker exited with {status} after sending {sent} outcomes");
        }
        assert!(
            Instant::now() < deadline,
            "the echo worker sent only {sent} outcomes within {PROGRESS_TIMEOUT:?}, expected \
             {at_least}"
        );
    }
}

/// Sends `signal` (SIGSTOP, SIGCONT) to `process`.
fn signal(process: &WarrenProcess, signal: Signal) {
    let pid = i32::try_from(process.pid()).expect("process ids fit in an i32");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .unwrap_or_else(|error| panic!("cannot send {signal} to pid {pid}: {error}"));
}

/// The test's own connection beside the load: it may hold [`HELD`] of the load's
/// requests unacknowledged (they go back to the work queue only when the connection
/// dies), and checks a copy of an outcome sent to the load's reply queue.
struct Onlooker {
    client: BrokerClient,
    held: Option<Consumer>,
}

impl Onlooker {
    /// Connects to `amqp_url`.
    async fn connect(amqp_url: &str) -> Onlooker {
        let client = BrokerClient::connect_within(amqp_url, Duration::from_secs(10)).await;
        Onlooker { client, held: None }
    }

    /// Connects to `amqp_url` and consumes the echo work queue beside the worker, with
    /// room for [`HELD`] deliveries: to be done before the load starts.
    async fn holding(amqp_url: &str) -> Onlooker {
        let mut onlooker = Onlooker::connect(amqp_url).await;
        let prefetch = u16::try_from(HELD).expect("the held requests fit in a prefetch");
        let held = within_broker_timeout(
            "consume the work queue",
            onlooker.client.consume(ECHO_QUEUE, prefetch),
        )
        .await
        .expect("consume the work queue");
        onlooker.held = Some(held);
        onlooker
    }

    /// Waits until it holds [`HELD`] of the load's requests, and returns the load's reply
    /// queue, which all of them name.
    ///
    /// # Panics
    /// When they do not come within [`PROGRESS_TIMEOUT`], or name several reply queues.
    async fn hold_requests(&mut self) -> String {
        let held = self.held.as_mut().expect("an onlooker made by `holding`");
        let mut reply_queues = BTreeSet::new();
        for taken in 0..HELD {
            let delivery = tokio::time::timeout(PROGRESS_TIMEOUT, held.next())
                .await
                .unwrap_or_else(|_| panic!("only {taken} of {HELD} requests reached the test"));
            let delivery = match delivery {
                Some(Ok(delivery)) => delivery,
                other => panic!("cannot hold request {taken}: {other:?}"),
            };
            let reply_to = delivery
                .properties
                .reply_to()
                .as_ref()
                .map(|queue| queue.as_str().to_owned());
            reply_queues.insert(reply_to.expect("a request names its reply queue"));
        }
        assert_eq!(
            reply_queues.len(),
            1,
            "one load, one reply queue: {reply_queues:?}"
        );
        reply_queues.pop_first().expect("one reply queue")
    }

    /// Binds a queue of its own (exclusive, one message long: the newest) to the
    /// outcomes routed to `reply_queue`, and returns the first copy of one.
    ///
    /// # Panics
    /// When no outcome is routed there within [`MESSAGE_TIMEOUT`].
    async fn copy_of_an_outcome_to(&self, reply_queue: &str) -> ReceivedMessage {
        let channel = self.client.create_channel().await;
        let mut arguments = FieldTable::default();
        arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        let copies = within_broker_timeout(
            "declare the copy queue",
            channel.queue_declare("".into(), options, arguments),
        )
        .await
        .expect("declare the copy queue");
        let copies = copies.name().as_str().to_owned();
        within_broker_timeout(
            "bind the copy queue",
            channel.queue_bind(
                copies.as_str().into(),
                REPLIES_EXCHANGE.into(),
                reply_queue.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .expect("bind the copy queue");
        close_channel(&channel, "declared").await;
        self.client
            .get_within(&copies, MESSAGE_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("no outcome to {reply_queue} within {MESSAGE_TIMEOUT:?}"))
    }

    /// Checks that the load's `reply_queue` is named as `recovery` calls for, and that
    /// the worker publishes the outcomes routed there with its delivery mode.
    async fn check_outcomes_to(&self, reply_queue: &str, recovery: Recovery) {
        match recovery {
            Recovery::OriginatorResends => assert!(
                reply_queue.starts_with(RESEND_REPLY_QUEUE_PREFIX),
                "the load re-sends by default, so its reply queue says so: {reply_queue}"
            ),
            Recovery::BrokerKeeps => assert!(
                reply_queue.starts_with(REPLY_QUEUE_PREFIX)
                    && !reply_queue.starts_with(RESEND_REPLY_QUEUE_PREFIX),
                "with --durable-outcomes the reply queue is a plain one: {reply_queue}"
            ),
        }
        let copy = self.copy_of_an_outcome_to(reply_queue).await;
        assert_eq!(
            *copy.properties.delivery_mode(),
            Some(recovery.delivery_mode()),
            "the worker's outcomes to {reply_queue} ({recovery:?}): {:?}",
            copy.properties
        );
    }
}

/// The one JSON object `warren load --json` printed.
fn json_summary(load: &WarrenProcess) -> Value {
    let stdout = load.stdout();
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "exactly one JSON line: {stdout}");
    serde_json::from_str(lines[0])
        .unwrap_or_else(|error| panic!("the summary is not JSON ({error}): {}", lines[0]))
}

fn count(summary: &Value, pointer: &str) -> u64 {
    summary
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no count at {pointer}: {summary}"))
}

/// Asserts that the load exited 0 with a result for every one of its requests, that it
/// reconnected and recovered as `recovery` says; returns its summary.
///
/// Duplicates are allowed, and expected when the load re-sends: every request still
/// waiting at a reconnect is sent again, also those whose request or outcome survived the
/// fault (a held request the broker hands to the worker again, an outcome that waited in
/// the durable reply queue, a request the worker had not acked when its connection
/// closed). The echo worker keeps no inbox and answers each copy; the load counts the
/// second outcome of a request as a duplicate and drops it. What may not happen is a
/// request without its result.
fn assert_nothing_lost(
    load: &WarrenProcess,
    status: std::process::ExitStatus,
    recovery: Recovery,
) -> Value {
    let summary = json_summary(load);
    assert_eq!(status.code(), Some(0), "the load exits 0: {summary}");
    assert_eq!(count(&summary, "/messages"), MESSAGES, "{summary}");
    assert_eq!(
        count(&summary, "/outcomes/result"),
        MESSAGES,
        "every request a result: {summary}"
    );
    assert_eq!(count(&summary, "/outcomes/fault"), 0, "{summary}");
    assert_eq!(
        count(&summary, "/outcomes/timeout"),
        0,
        "no request lost: {summary}"
    );
    assert_eq!(count(&summary, "/latency_ms/count"), MESSAGES, "{summary}");
    assert_eq!(count(&summary, "/unreadable"), 0, "{summary}");
    assert_eq!(
        summary["outcome_recovery"],
        recovery.summary_name(),
        "{summary}"
    );
    let reconnects = count(&summary, "/reconnects");
    assert!(
        reconnects >= 1,
        "the fault struck the load mid-run: {summary}"
    );
    assert!(
        load.stderr().contains("reconnected"),
        "the load says it reconnected: {}",
        load.stderr()
    );
    // Only requests still waiting are sent again, and no more wait than are in flight.
    assert!(
        count(&summary, "/republished") <= reconnects * INFLIGHT,
        "more sent again than were in flight: {summary}"
    );
    summary
}

/// Asserts `worker` is still running: it recovered from the fault, it did not exit.
fn assert_worker_survived(worker: &mut WarrenProcess) {
    assert_eq!(
        worker.try_exit_status(),
        None,
        "the echo worker must live through the fault"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_every_connection_mid_run_loses_no_outcome() {
    let test_started = Instant::now();
    let vhost = Vhost::create().await;
    let mut worker = echo_worker(vhost.amqp_url()).start().await;
    let mut onlooker = Onlooker::holding(vhost.amqp_url()).await;

    let mut load = start_load(vhost.amqp_url(), Recovery::OriginatorResends, "60s");
    let reply_queue = onlooker.hold_requests().await;
    onlooker
        .check_outcomes_to(&reply_queue, Recovery::OriginatorResends)
        .await;
    let sent_at_fault = wait_for_outcomes_sent(&mut worker, OUTCOMES_BEFORE_FAULT).await;
    // Every connection: the load's (outcomes on their way to it are gone with it), the
    // worker's (its unacked requests go back to the queue), and the test's own (so do
    // the held requests).
    vhost
        .close_all_connections("warren-e2e: outcome recovery")
        .await;
    worker.wait_for_sessions(2, PROGRESS_TIMEOUT).await;
    drop(onlooker);

    let status = load.wait(LOAD_EXIT_TIMEOUT).await;
    let summary = assert_nothing_lost(&load, status, Recovery::OriginatorResends);
    // The held requests were still waiting when the load reconnected (the fault had
    // just handed them back to the worker, and the load sends again before it reads).
    assert!(
        count(&summary, "/republished") >= HELD as u64,
        "every request waiting at the reconnect is sent again, the {HELD} held ones at \
         least: {summary}"
    );
    assert_worker_survived(&mut worker);
    eprintln!(
        "closing_every_connection_mid_run_loses_no_outcome: {sent_at_fault} outcomes sent \
         when the connections were closed, {} in all (the worker's count); load: {} \
         reconnects, {} republished, \
         {} duplicates, {} late, {} s; whole test {:?}",
        outcomes_sent(&worker).await,
        count(&summary, "/reconnects"),
        count(&summary, "/republished"),
        count(&summary, "/duplicates"),
        count(&summary, "/late"),
        summary["elapsed_s"],
        test_started.elapsed()
    );
}

/// Messages of one queue as `rabbitmqctl list_queues` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    ready: u64,
    unacked: u64,
    /// Of all its messages, the persistent ones; quorum queues (every message
    /// persistent) leave it out.
    persistent: Option<u64>,
}

/// The counts of every queue of `node`'s default vhost, by name.
async fn queue_counts(node: &PrivateNode) -> HashMap<String, Counts> {
    let listing = node
        .rabbitmqctl(&[
            "list_queues",
            "--quiet",
            "--no-table-headers",
            "name",
            "messages_ready",
            "messages_unacknowledged",
            "messages_persistent",
        ])
        .await;
    listing
        .lines()
        .filter_map(|line| {
            // Tab-separated, with an empty column where a count does not apply.
            let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
            match fields.as_slice() {
                [name, ready, unacked, persistent] => Some((
                    (*name).to_owned(),
                    Counts {
                        ready: ready.parse().ok()?,
                        unacked: unacked.parse().ok()?,
                        persistent: persistent.parse().ok(),
                    },
                )),
                _ => None,
            }
        })
        .collect()
}

/// Polls `node`'s queues until `ready` holds for them, and returns them.
///
/// # Panics
/// When it does not hold within [`PROGRESS_TIMEOUT`]; `what` says what was awaited.
async fn wait_for_queues(
    node: &PrivateNode,
    what: &str,
    ready: impl Fn(&HashMap<String, Counts>) -> bool,
) -> HashMap<String, Counts> {
    let deadline = Instant::now() + PROGRESS_TIMEOUT;
    loop {
        let counts = queue_counts(node).await;
        if ready(&counts) {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {PROGRESS_TIMEOUT:?}: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The name of the one reply queue on `node`, once the load has declared it.
async fn load_reply_queue(node: &PrivateNode) -> String {
    let reply_queues = |counts: &HashMap<String, Counts>| -> Vec<String> {
        counts
            .keys()
            .filter(|name| name.starts_with(REPLY_QUEUE_PREFIX))
            .cloned()
            .collect()
    };
    let counts = wait_for_queues(node, "the load's reply queue", |counts| {
        !reply_queues(counts).is_empty()
    })
    .await;
    let names = reply_queues(&counts);
    assert_eq!(names.len(), 1, "one load, one reply queue: {names:?}");
    names[0].clone()
}

/// Has `node` close the connection of `warren load`.
///
/// # Panics
/// When there is none.
async fn close_load_connection(node: &PrivateNode) {
    let marker = format!(r#"{{"connection_name","{LOAD_CONNECTION_NAME}"}}"#);
    let listing = node
        .rabbitmqctl(&["list_connections", "--quiet", "pid", "client_properties"])
        .await;
    let pid = listing
        .lines()
        .find(|line| line.contains(&marker))
        .and_then(|line| line.split('\t').next())
        .unwrap_or_else(|| panic!("no connection {LOAD_CONNECTION_NAME} on the node: {listing}"))
        .to_owned();
    node.rabbitmqctl(&["close_connection", &pid, "warren-e2e: the load is cut off"])
        .await;
}

/// Runs the load with `recovery` through a proxy against an echo worker on a private
/// node, and restarts the node while every outcome of the requests the load has in flight
/// waits in its reply queue. Asserts that the restart lost those outcomes (transient) or
/// kept them (persistent), and that the load got a result for every request anyway.
async fn restart_with_outcomes_waiting(test: &str, recovery: Recovery) {
    let test_started = Instant::now();
    let mut node = PrivateNode::start(NodeOptions::new()).await;
    let amqp_url = node.amqp_url();
    let mut worker = echo_worker(&amqp_url).start().await;
    let onlooker = Onlooker::connect(&amqp_url).await;
    let proxy = Proxy::start(SocketAddr::from((Ipv4Addr::LOCALHOST, node.amqp_port()))).await;
    let load_url = format!("amqp://guest:guest@{}/%2f", proxy.addr());

    // Long enough for a restart: each request times out this long after it was first
    // sent, and a reconnect gives up after it.
    let mut load = start_load(&load_url, recovery, "120s");
    let reply_queue = load_reply_queue(&node).await;
    onlooker.check_outcomes_to(&reply_queue, recovery).await;
    let sent_at_fault = wait_for_outcomes_sent(&mut worker, OUTCOMES_BEFORE_FAULT).await;

    // Cut the load off with every request it has in flight waiting in the work queue:
    // the worker is paused until the outcomes of all of them have reached the load (a
    // new request goes out for each), then the load hears nothing more (the blackhole)
    // and the node drops its connection, and with it the reply queue's consumer.
    signal(&worker, Signal::SIGSTOP);
    wait_for_queues(
        &node,
        "every request in flight waiting for the worker",
        |counts| {
            counts
                .get(ECHO_QUEUE)
                .is_some_and(|echo| echo.ready + echo.unacked >= INFLIGHT)
        },
    )
    .await;
    proxy.blackhole();
    close_load_connection(&node).await;
    signal(&worker, Signal::SIGCONT);
    // The worker answers them all into the reply queue, which nobody reads now.
    wait_for_queues(
        &node,
        "every outcome waiting in the reply queue",
        |counts| {
            let worker_done = counts
                .get(ECHO_QUEUE)
                .is_some_and(|echo| echo.ready == 0 && echo.unacked == 0);
            worker_done
                && counts
                    .get(&reply_queue)
                    .is_some_and(|reply| reply.ready > 0)
        },
    )
    .await;
    // Listed again: one listing is no snapshot, and nothing comes to the queues now.
    let waiting = queue_counts(&node).await[&reply_queue];
    let expected_persistent = match recovery {
        Recovery::OriginatorResends => Some(0),
        Recovery::BrokerKeeps => Some(waiting.ready),
    };
    assert_eq!(
        waiting.persistent, expected_persistent,
        "{recovery:?}: the outcomes waiting in {reply_queue}: {waiting:?}"
    );

    let downtime = node.restart().await;
    drop(onlooker);
    // The worker has nothing left to answer and the load is still cut off: what the
    // reply queue holds now is what outlived the restart.
    let after = queue_counts(&node).await;
    let kept = after
        .get(&reply_queue)
        .unwrap_or_else(|| panic!("the reply queue is durable: {after:?}"))
        .ready;
    match recovery {
        Recovery::OriginatorResends => assert_eq!(
            kept, 0,
            "the restart lost the {} transient outcomes",
            waiting.ready
        ),
        Recovery::BrokerKeeps => assert_eq!(
            kept, waiting.ready,
            "the {} persistent outcomes outlived the restart",
            waiting.ready
        ),
    }
    // The load hears of its lost connection, reconnects and recovers; the worker
    // consumes again by itself.
    proxy.restore();
    worker.wait_for_sessions(2, PROGRESS_TIMEOUT).await;

    let status = load.wait(LOAD_EXIT_TIMEOUT).await;
    let summary = assert_nothing_lost(&load, status, recovery);
    let republished = count(&summary, "/republished");
    match recovery {
        Recovery::OriginatorResends => assert!(
            republished >= waiting.ready,
            "the {} requests whose outcomes the restart lost were sent again: {summary}",
            waiting.ready
        ),
        // Only publishes left unconfirmed by the cut are sent again: the outcomes came
        // from the reply queue.
        Recovery::BrokerKeeps => assert!(
            republished < waiting.ready,
            "the {} outcomes that outlived the restart were read, not asked for again: \
             {summary}",
            waiting.ready
        ),
    }
    assert_worker_survived(&mut worker);
    eprintln!(
        "{test}: {sent_at_fault} outcomes sent when the load was cut off, {} in all (the \
         worker's count); {} \
         outcomes waited in the reply queue, {kept} after the restart, which took \
         {downtime:?} (boots: {:?}); load: {} reconnects, {} republished, {} duplicates, {} \
         late, {} s; whole test {:?}",
        outcomes_sent(&worker).await,
        waiting.ready,
        node.boot_times(),
        count(&summary, "/reconnects"),
        count(&summary, "/republished"),
        count(&summary, "/duplicates"),
        count(&summary, "/late"),
        summary["elapsed_s"],
        test_started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_waiting_outcomes_and_the_load_sends_again() {
    restart_with_outcomes_waiting(
        "a_broker_restart_loses_waiting_outcomes_and_the_load_sends_again",
        Recovery::OriginatorResends,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_outcomes_outlive_a_broker_restart() {
    restart_with_outcomes_waiting(
        "durable_outcomes_outlive_a_broker_restart",
        Recovery::BrokerKeeps,
    )
    .await;
}
