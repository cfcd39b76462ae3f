//! Faults of the broker itself, each test on a private RabbitMQ node of its own
//! ([`PrivateNode`]): a restart in the middle of a stream of requests, a memory alarm that
//! blocks every publisher, and a handler slower than the broker's consumer timeout.
//!
//! Each test counts every request it got a publisher confirm for as answered, lost or
//! duplicated, and passes only at zero lost. The originator's reply queue is durable and
//! not exclusive, and the originator reads it with a [`ReplyReader`], which reconnects
//! when the broker goes away, as an originator that must not lose outcomes does. The echo
//! tests share one prelude ([`EchoOnNode`]): a node, the echo topology, the test's client
//! with its reply queue, and the ledger.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use warren_e2e::broker_node::{NodeOptions, PrivateNode};
use warren_e2e::{
    BrokerClient, ECHO_DLQ, ECHO_QUEUE, OutgoingMessage, ReplyQueue, ReplyReader, Request,
    SESSION_LOST_LOG, StoreFolder, TALLY_DLQ, TALLY_QUEUE, WarrenCommand, attribute,
    parse_envelope, within_broker_timeout,
};

const ECHO: &str = "dev.warren.echo.v1";
const ECHO_REPLIED: &str = "dev.warren.echo.replied.v1";
const TALLY_ADD: &str = "dev.warren.tally.add.v1";
const TALLY_ADDED: &str = "dev.warren.tally.added.v1";
const TALLY_GET: &str = "dev.warren.tally.get.v1";
const TALLY_TOTAL: &str = "dev.warren.tally.total.v1";

/// What a worker logs when its connection is blocked by a resource alarm.
const BLOCKED_LOG: &str = "the broker blocked publishing";

/// What a worker logs when the broker unblocks its connection.
const UNBLOCKED_LOG: &str = "the broker unblocked publishing";

/// The text of the runtime's confirm timeout error.
const CONFIRM_TIMEOUT_ERROR: &str = "did not confirm a publish within";

/// The text of the broker's consumer timeout (a channel close with PRECONDITION_FAILED).
const CONSUMER_TIMEOUT_ERROR: &str = "delivery acknowledgement on channel";

/// Wall-clock milliseconds since the Unix epoch.
fn unix_millis_now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds fit in an i64")
}

/// Milliseconds since the Unix epoch of an RFC 3339 UTC time such as
/// `2026-11-27T06:10:34.352555Z` (the form warren writes `time` in).
fn rfc3339_utc_millis(text: &str) -> Option<i64> {
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (
        date_parts.next()?.ok()?,
        date_parts.next()?.ok()?,
        date_parts.next()?.ok()?,
    );
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock_parts = clock.splitn(3, ':').map(str::parse::<i64>);
    let (hour, minute, second) = (
        clock_parts.next()?.ok()?,
        clock_parts.next()?.ok()?,
        clock_parts.next()?.ok()?,
    );
    let millis: i64 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Every request an originator sent and every outcome it read, sorted into what a
/// reliability count needs.
#[derive(Debug, Default)]
struct Ledger {
    /// The data of each request published, by correlation id (recorded before the
    /// publish, so an outcome can never be for a request the ledger does not know).
    published: HashMap<String, Value>,
    /// The requests the broker confirmed: the ones that must be answered.
    confirmed: HashSet<String>,
    /// The id of every outcome read. The broker hands the originator an outcome again
    /// when the ack of it was lost with a connection: that is no duplicate of the worker.
    reply_ids: HashSet<String>,
    /// Distinct outcomes per correlation id.
    outcomes: HashMap<String, usize>,
    /// Outcomes read a second time (the same reply id).
    read_again: usize,
    /// Outcomes the worker produced (their `time`) after this many Unix milliseconds.
    produced_after: Option<i64>,
    /// How many outcomes were produced after `produced_after`.
    produced_after_count: usize,
    /// Outcomes that match no request, or not its data.
    unexpected: Vec<Value>,
}

impl Ledger {
    /// Records one echo result read from the reply queue.
    fn record(&mut self, reply: Value) {
        let reply_id = attribute(&reply, "id").unwrap_or_default().to_owned();
        if !self.reply_ids.insert(reply_id) {
            self.read_again += 1;
            return;
        }
        let correlation_id = attribute(&reply, "correlationid").map(str::to_owned);
        let expected = correlation_id
            .as_deref()
            .and_then(|id| self.published.get(id));
        match (correlation_id, expected) {
            (Some(correlation_id), Some(data))
                if attribute(&reply, "type") == Some(ECHO_REPLIED) && reply["data"] == *data =>
            {
                let produced = attribute(&reply, "time").and_then(rfc3339_utc_millis);
                if let (Some(after), Some(produced)) = (self.produced_after, produced)
                    && produced >= after
                {
                    self.produced_after_count += 1;
                }
                *self.outcomes.entry(correlation_id).or_default() += 1;
            }
            _ => self.unexpected.push(reply),
        }
    }

    /// Confirmed requests with at least one outcome.
    fn answered(&self) -> usize {
        self.confirmed
            .iter()
            .filter(|id| self.outcomes.contains_key(*id))
            .count()
    }

    /// Confirmed requests without an outcome.
    fn lost(&self) -> usize {
        self.confirmed.len() - self.answered()
    }

    /// Outcomes beyond the first of each request.
    fn duplicates(&self) -> usize {
        self.outcomes.values().map(|count| count - 1).sum()
    }

    fn summary(&self) -> String {
        format!(
            "{} published, {} confirmed, {} answered, {} lost, {} duplicates, {} read again, \
             {} unexpected",
            self.published.len(),
            self.confirmed.len(),
            self.answered(),
            self.lost(),
            self.duplicates(),
            self.read_again,
            self.unexpected.len()
        )
    }
}

type SharedLedger = Arc<Mutex<Ledger>>;

fn lock(ledger: &SharedLedger) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().expect("the ledger lock")
}

/// Polls `ledger` until `condition` holds.
///
/// # Panics
/// When it does not hold within `timeout`; `what` says what was awaited.
async fn wait_for_ledger(
    ledger: &SharedLedger,
    timeout: Duration,
    what: &str,
    condition: impl Fn(&Ledger) -> bool,
) {
    let deadline = Instant::now() + timeout;
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        {
            let ledger = lock(ledger);
            if condition(&ledger) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not happen within {timeout:?}: {}",
                ledger.summary()
            );
        }
    }
}

/// The prefetch of the originator's reader of outcomes.
const REPLY_READER_PREFETCH: u16 = 500;

/// The echo worker on a private node of its own, with the test's client, its durable
/// reply queue and the ledger of what was sent and read. The node is dropped last.
struct EchoOnNode {
    client: BrokerClient,
    replies: ReplyQueue,
    ledger: SharedLedger,
    amqp_url: String,
    /// The settings of every echo worker of the test.
    environment: Vec<(&'static str, &'static str)>,
    node: PrivateNode,
}

impl EchoOnNode {
    /// Starts a node, declares the echo topology with a first worker run (with
    /// [`echo_environment`] and `settings`) that leaves at once, then connects the test's
    /// client and declares its durable reply queue. Requests published now wait in the
    /// work queue until a worker runs.
    async fn start(settings: &[(&'static str, &'static str)]) -> EchoOnNode {
        let node = PrivateNode::start(NodeOptions::new()).await;
        let amqp_url = node.amqp_url();
        let environment = echo_environment(settings);
        let mut first = WarrenCommand::new("warren-echo", &amqp_url)
            .envs(&environment)
            .start()
            .await;
        let status = first.stop().await;
        assert!(status.success(), "the idle worker exits 0, not {status}");
        let client = BrokerClient::connect_within(&amqp_url, Duration::from_secs(10)).await;
        let replies = client.durable_reply_queue().await;
        EchoOnNode {
            node,
            amqp_url,
            environment,
            client,
            replies,
            ledger: SharedLedger::default(),
        }
    }

    /// An echo worker on the node with the test's settings, to be started.
    fn echo_worker(&self) -> WarrenCommand {
        WarrenCommand::new("warren-echo", &self.amqp_url).envs(&self.environment)
    }

    /// Publishes `count` echo requests numbered from `first` on the test's client and
    /// records them in the ledger as published, then, once the broker confirmed them
    /// all, as confirmed.
    async fn publish_confirmed(&self, first: usize, count: usize) {
        let requests = echo_requests(&self.ledger, self.replies.name(), first, count);
        self.client
            .publish_all(requests.iter().map(|request| request.message.clone()))
            .await;
        lock(&self.ledger).confirmed.extend(
            requests
                .iter()
                .map(|request| request.correlation_id().to_owned()),
        );
    }

    /// Starts the originator's reader of outcomes: each one is recorded in the ledger
    /// before it is acked.
    fn read_replies(&self) -> ReplyReader {
        let ledger = Arc::clone(&self.ledger);
        ReplyReader::spawn(
            &self.amqp_url,
            self.replies.name(),
            REPLY_READER_PREFETCH,
            move |body| lock(&ledger).record(parse_envelope(body)),
        )
    }

    /// Takes `count` requests from the echo work queue on a connection of its own and
    /// holds them unacknowledged: they go back to the queue only when that connection
    /// closes (closing is no publish, so it works during a memory alarm too) or dies with
    /// the node.
    async fn hold_requests(&self, count: usize) -> (BrokerClient, lapin::Consumer) {
        let hoarder = BrokerClient::connect_within(&self.amqp_url, Duration::from_secs(10)).await;
        let prefetch = u16::try_from(count).expect("the held requests fit in a prefetch");
        let mut held = within_broker_timeout(
            "consume the work queue",
            hoarder.consume(ECHO_QUEUE, prefetch),
        )
        .await
        .expect("consume the work queue");
        for taken in 0..count {
            let delivery = tokio::time::timeout(Duration::from_secs(15), held.next())
                .await
                .unwrap_or_else(|_| panic!("only {taken} of {count} requests reached the test"));
            assert!(
                matches!(delivery, Some(Ok(_))),
                "cannot hold request {taken}: {delivery:?}"
            );
        }
        (hoarder, held)
    }

    /// Asserts, on a new connection, that every request was acked and none was
    /// dead-lettered.
    async fn assert_echo_queues_empty(&self) {
        let client = BrokerClient::connect_within(&self.amqp_url, Duration::from_secs(10)).await;
        let work = client
            .queue_state(ECHO_QUEUE)
            .await
            .expect("the work queue exists");
        assert_eq!(work.messages, 0, "every request was acked");
        let dlq = client.queue_state(ECHO_DLQ).await.expect("the DLQ exists");
        assert_eq!(dlq.messages, 0, "no request was dead-lettered");
        client.close().await;
    }

    /// The state (`running`, `blocked`, …) of each connection the echo worker has open
    /// on the node.
    async fn worker_connections(&self) -> Vec<String> {
        self.node
            .rabbitmqctl(&["list_connections", "-q", "client_properties", "state"])
            .await
            .lines()
            .filter(|line| line.contains(r#"{"connection_name","warren-echo"}"#))
            .filter_map(|line| line.rsplit('\t').next())
            .map(str::to_owned)
            .collect()
    }
}

/// The common settings of an echo worker in these tests, then `extra`.
fn echo_environment(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut environment = vec![
        ("WARREN_AMQP__HEARTBEAT_SECS", "5"),
        ("WARREN_RETRY__INITIAL_DELAY_MS", "200"),
    ];
    environment.extend_from_slice(extra);
    environment
}

/// `count` echo requests answering to `reply_queue`, each with data `{"n": <number>}`
/// numbered from `first`, recorded in `ledger` as published.
fn echo_requests(
    ledger: &SharedLedger,
    reply_queue: &str,
    first: usize,
    count: usize,
) -> Vec<Request> {
    let requests: Vec<Request> = (first..first + count)
        .map(|n| Request::new(ECHO, &json!({ "n": n }).to_string(), Some(reply_queue)))
        .collect();
    let mut ledger = lock(ledger);
    for (n, request) in (first..).zip(&requests) {
        ledger
            .published
            .insert(request.correlation_id().to_owned(), json!({ "n": n }));
    }
    requests
}

/// What the steady publisher of the memory-alarm test saw.
#[derive(Debug, Default)]
struct StreamReport {
    published: usize,
    confirmed: usize,
    blocked_events: usize,
    unblocked_events: usize,
}

/// Publishes echo requests in batches of `batch` every `pace`, each batch waiting for
/// its confirms, until `stop` is set or `cap` requests are out. Counts the times the
/// broker blocked and unblocked its connection.
fn spawn_steady_publisher(
    scenario: &EchoOnNode,
    stop: Arc<AtomicBool>,
    blocked: Arc<AtomicBool>,
) -> JoinHandle<Result<StreamReport, String>> {
    const BATCH: usize = 10;
    const CAP: usize = 20_000;
    let amqp_url = scenario.amqp_url.clone();
    let reply_queue = scenario.replies.name().to_owned();
    let ledger = Arc::clone(&scenario.ledger);
    tokio::spawn(async move {
        let client = BrokerClient::connect_within(&amqp_url, Duration::from_secs(30)).await;
        let report = Arc::new(Mutex::new(StreamReport::default()));
        let mut events = client.connection().events_listener();
        let events_report = Arc::clone(&report);
        let events_blocked = Arc::clone(&blocked);
        let watcher = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let mut report = events_report.lock().expect("the report lock");
                match event {
                    lapin::Event::ConnectionBlocked(_) => {
                        report.blocked_events += 1;
                        events_blocked.store(true, Ordering::SeqCst);
                    }
                    lapin::Event::ConnectionUnblocked => report.unblocked_events += 1,
                    _ => {}
                }
            }
        });
        let mut pace = tokio::time::interval(Duration::from_millis(10));
        let mut published = 0;
        while !stop.load(Ordering::SeqCst) && published < CAP {
            pace.tick().await;
            let requests = echo_requests(&ledger, &reply_queue, published, BATCH);
            published += BATCH;
            report.lock().expect("the report lock").published = published;
            let messages: Vec<OutgoingMessage> = requests
                .iter()
                .map(|request| request.message.clone())
                .collect();
            client.try_publish_all(messages).await?;
            let mut ledger = lock(&ledger);
            for request in &requests {
                ledger.confirmed.insert(request.correlation_id().to_owned());
            }
            report.lock().expect("the report lock").confirmed += requests.len();
        }
        client.close().await;
        watcher.abort();
        let report = std::mem::take(&mut *report.lock().expect("the report lock"));
        Ok(report)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_stream_loses_nothing() {
    const REQUESTS: usize = 5_000;
    // Requests the test holds unacknowledged until the node goes down with its
    // connection: work that is certainly left for after the restart, however fast the
    // worker is.
    const HELD: usize = 500;
    let test_started = Instant::now();
    let mut scenario = EchoOnNode::start(&[
        ("WARREN_WORKER__PREFETCH", "10"),
        ("WARREN_AMQP__CONFIRM_TIMEOUT_MS", "10000"),
    ])
    .await;
    let ledger = Arc::clone(&scenario.ledger);

    // The requests wait in the queue until the worker runs.
    scenario.publish_confirmed(0, REQUESTS).await;
    scenario
        .client
        .wait_for_queue(
            ECHO_QUEUE,
            Duration::from_secs(15),
            "all requests queued",
            |state| state.messages as usize == REQUESTS,
        )
        .await;
    scenario.client.close().await;
    let (hoarder, hoard) = scenario.hold_requests(HELD).await;

    let reader = scenario.read_replies();
    let mut worker = scenario.echo_worker().start().await;
    wait_for_ledger(
        &ledger,
        Duration::from_secs(30),
        "a first reply",
        |ledger| !ledger.outcomes.is_empty(),
    )
    .await;

    // Restart the broker under the worker's feet.
    let answered_before_restart = lock(&ledger).answered();
    let restart_started = Instant::now();
    scenario.node.stop().await;
    // Whatever the worker produced from now on went to the restarted node.
    lock(&ledger).produced_after = Some(unix_millis_now());
    let stopped_after = restart_started.elapsed();
    // The held requests went back to the queue when the node closed their connection.
    drop(hoard);
    drop(hoarder);
    scenario.node.start_again().await;
    let downtime = restart_started.elapsed();
    eprintln!(
        "restart: {answered_before_restart} answered when the stop began; the node was gone \
         after {stopped_after:?} and served again after {downtime:?}"
    );

    // The worker notices, and builds a new session by itself.
    worker
        .wait_for_lines(&[SESSION_LOST_LOG], 1, Duration::from_secs(30))
        .await;
    worker.wait_for_sessions(2, Duration::from_secs(60)).await;
    // Wait for every outcome, saying every 10 s what the restarted node reports, so a
    // failure shows whether the queues recovered.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut report = tokio::time::interval(Duration::from_secs(10));
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    while lock(&ledger).lost() > 0 {
        tokio::select! {
            _ = poll.tick() => {}
            _ = report.tick() => {
                let queues = scenario
                    .node
                    .try_rabbitmqctl(&[
                        "list_queues", "name", "type", "state", "messages_ready",
                        "messages_unacknowledged", "consumers",
                    ])
                    .await;
                eprintln!(
                    "after restart, {}; queues:\n{}",
                    lock(&ledger).summary(),
                    String::from_utf8_lossy(&queues.stdout)
                );
            }
        }
        if Instant::now() > deadline {
            eprintln!("node log:\n{}", scenario.node.log_tail(80));
            panic!(
                "an outcome for every confirmed request did not come within 120 s: {}",
                lock(&ledger).summary()
            );
        }
    }
    assert!(
        worker.try_exit_status().is_none(),
        "the worker must live through the restart"
    );

    // Count the late duplicates too: every reply the worker sent before it exits.
    let status = worker.stop().await;
    assert!(
        status.success(),
        "the worker exits 0 on SIGTERM, not {status}"
    );
    let reader_connections = reader.finish(Duration::from_secs(60)).await.connections;

    let ledger = std::mem::take(&mut *lock(&ledger));
    eprintln!(
        "broker_restart_mid_stream_loses_nothing: {REQUESTS} requests ({HELD} held by the \
         test until the node stopped): {}; {} answered \
         before the restart, {} outcomes produced after the node stopped, stop and start \
         took {downtime:?} (boots: {:?}), reply reader connected {reader_connections} times, \
         {} worker sessions, whole test {:?}",
        ledger.summary(),
        answered_before_restart,
        ledger.produced_after_count,
        scenario.node.boot_times(),
        worker.sessions_ready(),
        test_started.elapsed()
    );
    assert_eq!(ledger.lost(), 0, "confirmed requests without an outcome");
    assert!(
        ledger.unexpected.is_empty(),
        "unexpected outcomes: {:?}",
        &ledger.unexpected[..ledger.unexpected.len().min(5)]
    );
    assert!(
        ledger.produced_after_count >= HELD,
        "the {HELD} held requests can only be answered after the restart, yet only {} \
         outcomes were produced after it",
        ledger.produced_after_count
    );
    assert!(
        reader_connections >= 2,
        "the originator reconnected after the restart"
    );
    scenario.assert_echo_queues_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_alarm_blocks_publishers_then_resumes() {
    // Requests the test holds back, unacknowledged, until the alarm is on: the worker
    // must then publish while blocked, whatever the timing of the steady stream.
    const HELD: usize = 100;
    // Shorter than the alarm is held below: the worker's session fails on the confirm
    // timeout while the broker blocks it, and must recover once the alarm clears.
    const CONFIRM_TIMEOUT_MS: &str = "2000";
    let test_started = Instant::now();
    let scenario = EchoOnNode::start(&[
        ("WARREN_WORKER__PREFETCH", "50"),
        ("WARREN_AMQP__CONFIRM_TIMEOUT_MS", CONFIRM_TIMEOUT_MS),
    ])
    .await;
    let ledger = Arc::clone(&scenario.ledger);
    scenario.publish_confirmed(1_000_000, HELD).await;
    let (hoarder, hoard) = scenario.hold_requests(HELD).await;

    let mut worker = scenario.echo_worker().start().await;
    let reader = scenario.read_replies();
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let publisher_blocked = Arc::new(AtomicBool::new(false));
    let publisher = spawn_steady_publisher(
        &scenario,
        Arc::clone(&stop_publishing),
        Arc::clone(&publisher_blocked),
    );
    wait_for_ledger(
        &ledger,
        Duration::from_secs(30),
        "requests flowing",
        |ledger| ledger.answered() >= 100,
    )
    .await;

    // The alarm: every connection that publishes is blocked, the originator's first.
    let alarm_started = Instant::now();
    scenario
        .node
        .rabbitmqctl(&["set_vm_memory_high_watermark", "0.0000001"])
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !publisher_blocked.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the originator's publishing connection was never blocked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answered_at_alarm = lock(&ledger).answered();
    // Back to the queue with the held requests (closing a channel is no publish): the
    // worker takes them and its replies are blocked.
    hoarder.close().await;
    drop(hoard);
    worker
        .wait_for_lines(&[BLOCKED_LOG], 1, Duration::from_secs(30))
        .await;
    // Held longer than the worker's confirm timeout: its session fails on it, and it
    // builds a new one while the alarm still holds.
    worker
        .wait_for_lines(
            &[SESSION_LOST_LOG, CONFIRM_TIMEOUT_ERROR],
            1,
            Duration::from_secs(30),
        )
        .await;
    worker.wait_for_sessions(2, Duration::from_secs(30)).await;
    assert!(
        worker.try_exit_status().is_none(),
        "the worker must live through the alarm"
    );
    let answered_during_alarm = lock(&ledger).answered() - answered_at_alarm;
    let worker_connections_in_alarm = scenario.worker_connections().await;
    let confirmed_at_release = lock(&ledger).confirmed.len();
    scenario
        .node
        .rabbitmqctl(&["set_vm_memory_high_watermark", "0.4"])
        .await;
    let alarm_held = alarm_started.elapsed();

    // Publishing resumes on both sides; then the originator stops and waits for the rest.
    wait_for_ledger(
        &ledger,
        Duration::from_secs(60),
        "publishing resumed after the alarm",
        |ledger| ledger.confirmed.len() >= confirmed_at_release + 200,
    )
    .await;
    stop_publishing.store(true, Ordering::SeqCst);
    let stream = tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .expect("the publisher finishes")
        .expect("the publisher does not panic")
        .unwrap_or_else(|error| panic!("the originator's publishing failed: {error}"));
    let release_to_done = Instant::now();
    wait_for_ledger(
        &ledger,
        Duration::from_secs(120),
        "an outcome for every confirmed request",
        |ledger| ledger.lost() == 0,
    )
    .await;
    let release_to_done = release_to_done.elapsed();
    assert!(
        worker.try_exit_status().is_none(),
        "the worker must live through the alarm"
    );
    // The connections of the sessions given up while blocked are closed once the
    // broker reads from them again: the worker keeps one.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connections = scenario.worker_connections().await;
        if connections.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker still has {} connections 30 s after the alarm: {connections:?}",
            connections.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = worker.stop().await;
    assert!(
        status.success(),
        "the worker exits 0 on SIGTERM, not {status}"
    );
    reader.finish(Duration::from_secs(60)).await;

    let ledger = std::mem::take(&mut *lock(&ledger));
    eprintln!(
        "memory_alarm_blocks_publishers_then_resumes: {} ({HELD} of them held back until \
         the alarm); alarm held {alarm_held:?} ({answered_during_alarm} answered meanwhile), \
         all answered {release_to_done:?} after the originator stopped publishing; worker \
         sessions {}, worker blocked {} times and unblocked {} times, confirm timeouts {}, \
         worker connections during the alarm {worker_connections_in_alarm:?}; originator \
         {stream:?}; node boot {:?}, whole test {:?}",
        ledger.summary(),
        worker.sessions_ready(),
        worker.count_lines_with(&[BLOCKED_LOG]),
        worker.count_lines_with(&[UNBLOCKED_LOG]),
        worker.count_lines_with(&[SESSION_LOST_LOG, CONFIRM_TIMEOUT_ERROR]),
        scenario.node.boot_times(),
        test_started.elapsed()
    );
    assert_eq!(ledger.lost(), 0, "confirmed requests without an outcome");
    assert!(
        ledger.unexpected.is_empty(),
        "unexpected outcomes: {:?}",
        &ledger.unexpected[..ledger.unexpected.len().min(5)]
    );
    assert!(stream.blocked_events >= 1, "{stream:?}");
    scenario.assert_echo_queues_empty().await;
    scenario.client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_exceeding_the_consumer_timeout_is_redelivered_and_completed() {
    const CONSUMER_TIMEOUT: Duration = Duration::from_secs(3);
    let test_started = Instant::now();
    let node = PrivateNode::start(
        NodeOptions::new()
            .consumer_timeout(CONSUMER_TIMEOUT)
            .channel_tick_interval(Duration::from_secs(1)),
    )
    .await;
    let amqp_url = node.amqp_url();
    let store = StoreFolder::new();
    let tally = || {
        WarrenCommand::new("warren-tally", &amqp_url)
            .store(&store)
            .envs(&[
                ("WARREN_AMQP__HEARTBEAT_SECS", "5"),
                ("WARREN_WORKER__SHUTDOWN_GRACE_MS", "1000"),
            ])
    };

    // The first instance takes a minute over keys `slow-…`: far beyond the timeout.
    let mut slow = tally().failpoints("slow_keys:slow-:60000").start().await;
    let client = BrokerClient::connect_within(&amqp_url, Duration::from_secs(10)).await;
    let replies = client.durable_reply_queue().await;
    let add = Request::new(
        TALLY_ADD,
        r#"{"key":"slow-1","amount":5}"#,
        Some(replies.name()),
    );
    let published_at = Instant::now();
    client.publish(add.message.clone()).await;

    // The broker closes the channel holding the unacked delivery; the worker builds a
    // new session, gets the message again, and times out again.
    let timed_out = [SESSION_LOST_LOG, CONSUMER_TIMEOUT_ERROR];
    slow.wait_for_lines(&timed_out, 1, Duration::from_secs(30))
        .await;
    let first_timeout = published_at.elapsed();
    slow.wait_for_sessions(2, Duration::from_secs(30)).await;
    slow.wait_for_lines(&timed_out, 2, Duration::from_secs(30))
        .await;
    let second_timeout = published_at.elapsed();
    assert!(
        first_timeout >= CONSUMER_TIMEOUT,
        "the broker timed the delivery out after {first_timeout:?}, before its timeout"
    );
    assert!(
        client.try_get(replies.name()).await.is_none(),
        "the slow handler never finished, so nothing was answered"
    );

    // Hand the message to an instance that handles it at normal speed.
    let status = slow.stop().await;
    assert!(
        status.success(),
        "the slow worker exits 0 on SIGTERM, not {status}"
    );
    let mut fast = tally().start().await;
    let reply = replies
        .next_within(&client, Duration::from_secs(30))
        .await
        .expect("the redelivered add is answered");
    let completed = published_at.elapsed();
    assert_eq!(attribute(&reply, "type"), Some(TALLY_ADDED), "{reply}");
    assert_eq!(
        attribute(&reply, "correlationid"),
        Some(add.correlation_id()),
        "{reply}"
    );
    assert_eq!(
        reply["data"],
        json!({"key": "slow-1", "total": 5}),
        "{reply}"
    );

    // Counted once: the total is the amount, and the add had one outcome.
    let get = Request::new(TALLY_GET, r#"{"key":"slow-1"}"#, Some(replies.name()));
    client.publish(get.message.clone()).await;
    let total = replies
        .next_within(&client, Duration::from_secs(30))
        .await
        .expect("the get is answered");
    assert_eq!(attribute(&total, "type"), Some(TALLY_TOTAL), "{total}");
    assert_eq!(
        attribute(&total, "correlationid"),
        Some(get.correlation_id()),
        "an outcome of the add came twice: {total}"
    );
    assert_eq!(
        total["data"],
        json!({"key": "slow-1", "total": 5}),
        "{total}"
    );
    let status = fast.stop().await;
    assert!(
        status.success(),
        "the worker exits 0 on SIGTERM, not {status}"
    );
    assert!(
        client.try_get(replies.name()).await.is_none(),
        "exactly one outcome per request"
    );
    let work = client
        .queue_state(TALLY_QUEUE)
        .await
        .expect("the work queue exists");
    assert_eq!(work.messages, 0, "the add was acked");
    let dlq = client.queue_state(TALLY_DLQ).await.expect("the DLQ exists");
    assert_eq!(dlq.messages, 0, "nothing was dead-lettered");
    client.close().await;
    eprintln!(
        "handler_exceeding_the_consumer_timeout_is_redelivered_and_completed: 1 add, \
         consumer timeout {CONSUMER_TIMEOUT:?}: first timeout after {first_timeout:?}, \
         second after {second_timeout:?}, completed after {completed:?} by the second \
         instance, total 5 (counted once), 1 outcome, 0 lost; node boot {:?}, whole test \
         {:?}",
        node.boot_times(),
        test_started.elapsed()
    );
}
