//! Fault injection: warren's delivery guarantee under real faults.
//!
//! Under each fault, with thousands of requests in flight, no message is lost, no side
//! effect happens twice, and every request gets exactly one terminal outcome at its
//! originator (received possibly more than once: at-least-once delivery allows that).
//!
//! The witness is the tally worker: each request adds 1 to a key of its own, so a lost
//! or doubled side effect shows in that key's total, read back at the end through
//! `dev.warren.tally.get.v1`. The originator is the test itself, on a durable reply
//! queue that a reconnecting consumer reads ([`ReplyCollector`]). The checker
//! ([`warren_e2e::checker::Checker`]) classifies every request and prints one line per
//! test: `delivered=… lost=… duplicated=… unexpected=… duplicate_outcomes=…`.
//!
//! Each test is a [`TallyScenario`]: its own vhost, store folder, tally worker and reply
//! collector, so they run in parallel with each other and with the rest of the suite on
//! the shared broker.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::time::Instant;
use warren_e2e::checker::Expectation;
use warren_e2e::proxy::Proxy;
use warren_e2e::scenario::{TallyScenario, tally_add};
use warren_e2e::{
    EXIT_TIMEOUT, MESSAGE_TIMEOUT, ReplyCollector, Request, TALLY_DLQ, TALLY_QUEUE, WarrenProcess,
};
use warren_messages::{Payload, TallyAdded, fault_code};

/// The requests of one run: enough that thousands are queued or in flight when the
/// fault strikes.
const REQUESTS: usize = 2_000;

/// The worker's prefetch: at most this many deliveries are unacked in it.
const PREFETCH: usize = 100;

/// Adds to keys starting with this wait first, so a full prefetch is in flight.
const SLOW_PREFIX: &str = "k-";

/// How long each slow add waits: about `PREFETCH` per this much, i.e. ~1000 a second.
const SLOW_MS: u64 = 100;

/// How long a worker may take to notice a dead link and recover.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The shared broker, which the proxy forwards to.
const BROKER_ADDRESS: &str = "127.0.0.1:5672";

/// [`PREFETCH`], as `WARREN_WORKER__PREFETCH` takes it.
const PREFETCH_SETTING: &str = "100";

/// `settings` for `warren-tally`, with [`PREFETCH`] first.
fn with_prefetch<'a>(settings: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    assert_eq!(PREFETCH_SETTING.parse(), Ok(PREFETCH), "one prefetch");
    let mut all = vec![("WARREN_WORKER__PREFETCH", PREFETCH_SETTING)];
    all.extend_from_slice(settings);
    all
}

/// `slow_keys:k-:100`.
fn slow_keys() -> String {
    format!("slow_keys:{SLOW_PREFIX}:{SLOW_MS}")
}

/// Waits until `count` requests are answered, and says how many are answered when it
/// returns.
///
/// # Panics
/// When the worker makes no such progress within `RECOVERY_TIMEOUT`.
async fn wait_progress(
    outcomes: &ReplyCollector,
    correlation_ids: &HashSet<String>,
    count: usize,
    what: &str,
) -> usize {
    let answered = outcomes
        .wait_until_answered(correlation_ids, count, RECOVERY_TIMEOUT)
        .await;
    assert!(
        answered >= count,
        "{what}: only {answered} of {} requests answered within {RECOVERY_TIMEOUT:?}, \
         expected {count}",
        correlation_ids.len()
    );
    answered
}

/// Asserts the fault struck mid-stream: when it did, only `answered_then` requests were
/// answered, with more than a full prefetch still to go.
fn assert_mid_stream(answered_then: usize, total: usize, fault: &str) {
    eprintln!("{fault}: {answered_then} of {total} requests answered when it struck");
    assert!(
        answered_then + PREFETCH < total,
        "{fault} came too late to hit anything in flight: {answered_then} of {total} were \
         already answered"
    );
}

/// Asserts `worker` is still the process `pid` and running: it recovered, it did not
/// crash and get replaced.
fn assert_still_running(worker: &mut WarrenProcess, pid: u32) {
    assert_eq!(worker.pid(), pid);
    assert_eq!(
        worker.try_exit_status(),
        None,
        "warren-tally (pid {pid}) exited instead of recovering"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_before_ack_redelivers_with_one_side_effect() {
    let slow = slow_keys();
    let mut scenario = TallyScenario::start(&with_prefetch(&[("WARREN_FAILPOINTS", &slow)])).await;
    let requests = scenario.adds_of_one(SLOW_PREFIX, 0..REQUESTS, &Expectation::Applied);
    scenario.publish(requests).await;
    let correlation_ids = scenario.correlation_ids();

    // A quarter through, the worker holds a full prefetch of adds, waiting in the
    // handler, none acked: kill it there.
    let outcomes = &scenario.outcomes;
    wait_progress(outcomes, &correlation_ids, REQUESTS / 4, "before SIGKILL").await;
    let answered_at_kill = outcomes.count_answered(&correlation_ids);
    scenario.worker.sigkill();
    let status = scenario.worker.wait(EXIT_TIMEOUT).await;
    assert_eq!(
        status.signal(),
        Some(Signal::SIGKILL as i32),
        "the worker died of the SIGKILL, not {status}"
    );
    assert_mid_stream(answered_at_kill, REQUESTS, "SIGKILL");

    // A new instance gets the unacked deliveries again, and the rest.
    let _second = scenario.start_another_tally(&with_prefetch(&[])).await;
    let verdict = scenario
        .check_when_settled("sigkill_before_ack_redelivers_with_one_side_effect")
        .await;
    verdict.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_side_effect_before_ack_hits_the_inbox() {
    const CRASH_AFTER_COMMIT: usize = REQUESTS / 2;
    let failpoint = format!("crash_after_commit:{CRASH_AFTER_COMMIT}");
    let mut scenario =
        TallyScenario::start(&with_prefetch(&[("WARREN_FAILPOINTS", &failpoint)])).await;
    let requests = scenario.adds_of_one("k-", 0..REQUESTS, &Expectation::Applied);
    scenario.publish(requests).await;
    let correlation_ids = scenario.correlation_ids();

    // The worker aborts right after its n-th commit: the addition is in the store, its
    // reply not published, its delivery not acked.
    let status = scenario.worker.wait(RECOVERY_TIMEOUT).await;
    let answered_at_crash = scenario.outcomes.count_answered(&correlation_ids);
    assert_eq!(
        status.signal(),
        Some(Signal::SIGABRT as i32),
        "the worker died at its failpoint (abort), not with {status}"
    );
    assert_mid_stream(answered_at_crash, REQUESTS, "the crash after commit");
    let crash_lines = scenario.worker.lines_with(&["reached after message"]);
    let crashed_message = crash_lines
        .first()
        .and_then(|line| line.split("reached after message ").nth(1))
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| {
            panic!("the failpoint names the message it crashed after: {crash_lines:?}")
        })
        .trim()
        .to_owned();
    assert!(
        correlation_ids.contains(&crashed_message),
        "the worker crashed after message {crashed_message}, which the test did not send"
    );

    // A clean instance gets that delivery again: the inbox has it, so it re-sends the
    // recorded reply and adds nothing.
    let _second = scenario.start_another_tally(&with_prefetch(&[])).await;
    let verdict = scenario
        .check_when_settled("sigkill_after_side_effect_before_ack_hits_the_inbox")
        .await;
    let crashed_outcomes: Vec<Value> = scenario
        .outcomes
        .outcomes()
        .into_iter()
        .filter(|outcome| outcome["correlationid"].as_str() == Some(crashed_message.as_str()))
        .collect();
    eprintln!("the message committed before the crash was answered with {crashed_outcomes:?}");
    let from_the_inbox =
        |outcome: &Value| outcome["type"] == TallyAdded::TYPE && outcome["data"]["total"] == 1;
    assert!(
        !crashed_outcomes.is_empty() && crashed_outcomes.iter().all(from_the_inbox),
        "the message committed before the crash is answered from the inbox with total 1: \
         {crashed_outcomes:?}"
    );
    verdict.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_connections_mid_stream_recovers() {
    const ROUND_REQUESTS: usize = REQUESTS + REQUESTS / 4;
    let slow = slow_keys();
    let mut scenario = TallyScenario::start(&with_prefetch(&[("WARREN_FAILPOINTS", &slow)])).await;
    let pid = scenario.worker.pid();
    let requests = scenario.adds_of_one(SLOW_PREFIX, 0..ROUND_REQUESTS, &Expectation::Applied);
    scenario.publish(requests).await;
    let correlation_ids = scenario.correlation_ids();

    // Twice: close every connection of the vhost (the worker's and the test's own) with
    // deliveries in flight, then wait for the worker to consume again and make progress.
    for (round, fraction) in [(1, 4), (2, 2)] {
        wait_progress(
            &scenario.outcomes,
            &correlation_ids,
            ROUND_REQUESTS / fraction,
            "before closing the connections",
        )
        .await;
        let answered_then = scenario.outcomes.count_answered(&correlation_ids);
        scenario
            .vhost
            .close_all_connections("warren fault test")
            .await;
        assert_mid_stream(answered_then, ROUND_REQUESTS, "close_all_connections");
        scenario
            .worker
            .wait_for_sessions(round + 1, RECOVERY_TIMEOUT)
            .await;
        wait_progress(
            &scenario.outcomes,
            &correlation_ids,
            answered_then + PREFETCH,
            "after closing the connections",
        )
        .await;
    }

    let verdict = scenario
        .check_when_settled("closing_connections_mid_stream_recovers")
        .await;
    assert_still_running(&mut scenario.worker, pid);
    assert!(
        scenario.outcomes.sessions() >= 3,
        "the test's own originator lost its connection twice and came back each time: {} \
         sessions",
        scenario.outcomes.sessions()
    );
    verdict.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_and_blackholed_proxy_recovers() {
    const ROUND_REQUESTS: usize = REQUESTS + REQUESTS / 4;
    let upstream: SocketAddr = BROKER_ADDRESS.parse().expect("a socket address");
    let proxy = Proxy::start(upstream).await;
    let slow = slow_keys();
    let settings = [
        ("WARREN_FAILPOINTS", slow.as_str()),
        ("WARREN_AMQP__HEARTBEAT_SECS", "1"),
    ];
    let mut scenario = TallyScenario::start_behind(&proxy, &with_prefetch(&settings)).await;
    let pid = scenario.worker.pid();
    let requests = scenario.adds_of_one(SLOW_PREFIX, 0..ROUND_REQUESTS, &Expectation::Applied);
    scenario.publish(requests).await;
    let correlation_ids = scenario.correlation_ids();
    let outcomes = &scenario.outcomes;

    // Cut: both ends see the connection reset at once.
    wait_progress(
        outcomes,
        &correlation_ids,
        ROUND_REQUESTS / 5,
        "before the cut",
    )
    .await;
    let answered_at_cut = outcomes.count_answered(&correlation_ids);
    proxy.cut();
    assert_mid_stream(answered_at_cut, ROUND_REQUESTS, "the cut");
    scenario.worker.wait_for_sessions(2, RECOVERY_TIMEOUT).await;
    wait_progress(
        outcomes,
        &correlation_ids,
        ROUND_REQUESTS / 2,
        "after the cut",
    )
    .await;

    // Blackhole: nothing gets through, not even a close; only heartbeats tell each end.
    // Hold it until both ends have given up on the connection: the worker closed its
    // end, and the broker dropped the worker's consumer.
    let answered_at_blackhole = outcomes.count_answered(&correlation_ids);
    proxy.blackhole();
    assert_mid_stream(answered_at_blackhole, ROUND_REQUESTS, "the blackhole");
    let blackholed = Instant::now();
    let client = scenario.vhost.connect().await;
    loop {
        let stats = proxy.stats();
        let work_queue = client.queue_state(TALLY_QUEUE).await;
        let broker_gave_up = work_queue.is_some_and(|state| state.consumers == 0);
        if stats.client_closed_in_blackhole >= 1 && broker_gave_up {
            eprintln!(
                "blackhole: both ends gave up after {:?} ({stats:?}, work queue {work_queue:?})",
                blackholed.elapsed()
            );
            break;
        }
        assert!(
            blackholed.elapsed() < RECOVERY_TIMEOUT,
            "with 1 s heartbeats, both ends should give up on a blackholed connection: \
             after {RECOVERY_TIMEOUT:?}, {stats:?}, work queue {work_queue:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.close().await;
    proxy.restore();
    scenario.worker.wait_for_sessions(3, RECOVERY_TIMEOUT).await;

    let verdict = scenario
        .check_when_settled("cut_and_blackholed_proxy_recovers")
        .await;
    assert_still_running(&mut scenario.worker, pid);
    eprintln!("proxy: {:?}", proxy.stats());
    verdict.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_end_in_the_dlq_after_max_attempts() {
    const FLAKY_PREFIX: &str = "flaky-";
    const FLAKY_REQUESTS: usize = 40;
    const MAX_ATTEMPTS: u32 = 3;
    let failpoints = format!("transient_keys:{FLAKY_PREFIX}");
    let max_attempts = MAX_ATTEMPTS.to_string();
    let mut scenario = TallyScenario::start(&with_prefetch(&[
        ("WARREN_FAILPOINTS", &failpoints),
        ("WARREN_RETRY__MAX_ATTEMPTS", &max_attempts),
        ("WARREN_RETRY__INITIAL_DELAY_MS", "100"),
        ("WARREN_RETRY__MAX_DELAY_MS", "1000"),
    ]))
    .await;
    let pid = scenario.worker.pid();
    let steady = scenario.adds_of_one("k-", 0..REQUESTS, &Expectation::Applied);
    let flaky = scenario.adds_of_one(
        FLAKY_PREFIX,
        0..FLAKY_REQUESTS,
        &Expectation::Faulted {
            code: fault_code::INTERNAL.to_owned(),
            retryable: true,
            attempts: MAX_ATTEMPTS,
        },
    );
    let flaky_ids: HashSet<String> = flaky
        .iter()
        .map(|request| request.correlation_id().to_owned())
        .collect();
    // The flaky requests spread through the steady ones.
    let every = REQUESTS / FLAKY_REQUESTS;
    let mut flaky = flaky.into_iter();
    let mixed = steady.into_iter().enumerate().flat_map(|(n, request)| {
        let flaky_one = if n % every == 0 { flaky.next() } else { None };
        std::iter::once(request).chain(flaky_one)
    });
    scenario.publish(mixed).await;

    let verdict = scenario
        .check_when_settled("transient_failures_end_in_the_dlq_after_max_attempts")
        .await;
    verdict.assert_clean();
    assert_still_running(&mut scenario.worker, pid);

    // Each flaky request is in the DLQ once, after its last attempt.
    let client = scenario.vhost.connect().await;
    let dead_letters = client
        .get_messages(TALLY_DLQ, FLAKY_REQUESTS, MESSAGE_TIMEOUT)
        .await;
    let mut dead_lettered = HashSet::new();
    for dead_letter in &dead_letters {
        let id = dead_letter.message_id().unwrap_or_else(|| {
            panic!(
                "a dead letter without a message id: {:?}",
                dead_letter.headers_debug()
            )
        });
        assert!(
            flaky_ids.contains(&id),
            "dead letter {id} is not a flaky request"
        );
        assert!(dead_lettered.insert(id.clone()), "{id} dead-lettered twice");
        assert_eq!(
            dead_letter.header("x-warren-reason").as_deref(),
            Some("transient_failure"),
            "{:?}",
            dead_letter.headers_debug()
        );
        assert_eq!(
            dead_letter.integer_header("x-warren-attempts"),
            Some(i64::from(MAX_ATTEMPTS)),
            "{:?}",
            dead_letter.headers_debug()
        );
    }
    let dlq = client.queue_state(TALLY_DLQ).await.expect("the DLQ exists");
    assert_eq!(dlq.messages, 0, "only the flaky requests are dead-lettered");
    eprintln!(
        "{} flaky requests dead-lettered after {MAX_ATTEMPTS} attempts each",
        dead_lettered.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_goes_to_the_dlq_at_once() {
    const OVERFLOW_PREFIX: &str = "overflow-";
    const OVERFLOW_REQUESTS: usize = 20;
    // Retries would be quick, so that a wrongly retried permanent failure shows in its
    // attempts rather than in a slow test.
    let mut scenario = TallyScenario::start(&with_prefetch(&[
        ("WARREN_RETRY__INITIAL_DELAY_MS", "100"),
        ("WARREN_RETRY__MAX_DELAY_MS", "1000"),
    ]))
    .await;
    let pid = scenario.worker.pid();

    // First fill some keys to the brim, answered on a reply queue of their own.
    let seeds = ReplyCollector::start(&scenario.vhost).await;
    let overflow_keys: Vec<String> = (0..OVERFLOW_REQUESTS)
        .map(|n| format!("{OVERFLOW_PREFIX}{n:05}"))
        .collect();
    let seed_requests: Vec<Request> = overflow_keys
        .iter()
        .map(|key| tally_add(key, i64::MAX, seeds.name()))
        .collect();
    let seed_ids: HashSet<String> = seed_requests
        .iter()
        .map(|request| request.correlation_id().to_owned())
        .collect();
    scenario.publish(seed_requests).await;
    wait_progress(&seeds, &seed_ids, OVERFLOW_REQUESTS, "filling the keys").await;
    for seed in seeds.outcomes() {
        assert_eq!(seed["type"], TallyAdded::TYPE, "{seed}");
        assert_eq!(seed["data"]["total"], i64::MAX, "{seed}");
    }

    // Then one more add to each of them in the middle of a load of ordinary adds.
    let first_half = scenario.adds_of_one("k-", 0..REQUESTS / 2, &Expectation::Applied);
    let overflowing: Vec<Request> = overflow_keys
        .iter()
        .map(|key| {
            let request = tally_add(key, i64::MAX, scenario.outcomes.name());
            scenario.checker.sent_on_top_of(
                request.correlation_id(),
                key,
                i64::MAX,
                Expectation::Faulted {
                    code: "overflow".to_owned(),
                    retryable: false,
                    attempts: 1,
                },
            );
            request
        })
        .collect();
    let overflow_ids: HashSet<String> = overflowing
        .iter()
        .map(|request| request.correlation_id().to_owned())
        .collect();
    let second_half = scenario.adds_of_one("k-", REQUESTS / 2..REQUESTS, &Expectation::Applied);
    scenario
        .publish(first_half.into_iter().chain(overflowing).chain(second_half))
        .await;

    let verdict = scenario
        .check_when_settled("permanent_failure_goes_to_the_dlq_at_once")
        .await;
    verdict.assert_clean();
    assert_still_running(&mut scenario.worker, pid);
    assert_eq!(
        scenario.worker.sessions_ready(),
        1,
        "the worker kept serving on its first session"
    );

    // Each overflowing add is in the DLQ once, after one attempt, straight from the
    // command exchange (it never went through a delay queue).
    let client = scenario.vhost.connect().await;
    let dead_letters = client
        .get_messages(TALLY_DLQ, OVERFLOW_REQUESTS, MESSAGE_TIMEOUT)
        .await;
    let mut dead_lettered = HashSet::new();
    for dead_letter in &dead_letters {
        let headers = dead_letter.headers_debug();
        let id = dead_letter
            .message_id()
            .unwrap_or_else(|| panic!("a dead letter without a message id: {headers:?}"));
        assert!(
            overflow_ids.contains(&id),
            "dead letter {id} is not an overflowing request"
        );
        assert!(dead_lettered.insert(id.clone()), "{id} dead-lettered twice");
        assert_eq!(
            dead_letter.header("x-warren-reason").as_deref(),
            Some("overflow"),
            "{headers:?}"
        );
        assert_eq!(
            dead_letter.integer_header("x-warren-attempts"),
            Some(1),
            "{headers:?}"
        );
        assert_eq!(
            dead_letter.header("x-warren-original-exchange").as_deref(),
            Some("warren.commands"),
            "{headers:?}"
        );
    }
    let dlq = client.queue_state(TALLY_DLQ).await.expect("the DLQ exists");
    assert_eq!(
        dlq.messages, 0,
        "only the overflowing adds are dead-lettered"
    );
}
