//! The tally worker against the real broker: totals add up, a redelivered add is counted
//! once and answered with the same reply, and the store survives a restart.

use std::time::Duration;

use serde_json::{Value, json};
use warren_e2e::{EXIT_TIMEOUT, Request, StoreFolder, Vhost, WarrenProcess, attribute};

const ADD: &str = "dev.warren.tally.add.v1";
const ADDED: &str = "dev.warren.tally.added.v1";
const GET: &str = "dev.warren.tally.get.v1";
const TOTAL: &str = "dev.warren.tally.total.v1";
const FAULT: &str = "dev.warren.fault.v1";

/// Starts `warren-tally` in `vhost` with its store in `store` and waits until it consumes.
async fn start_tally(vhost: &Vhost, store: &StoreFolder) -> WarrenProcess {
    vhost.worker("warren-tally").store(store).start().await
}

/// Sends SIGTERM to `tally` and asserts a clean exit.
async fn stop_tally(mut tally: WarrenProcess) {
    let status = tally.stop().await;
    assert!(
        status.success(),
        "warren-tally exits 0 on SIGTERM, not {status}"
    );
}

/// Asserts that `envelope` is a result of `message_type` and returns its data.
fn result_data(envelope: &Value, message_type: &str) -> Value {
    assert_eq!(
        attribute(envelope, "type"),
        Some(message_type),
        "{envelope}"
    );
    envelope["data"].clone()
}

/// The total of `key`, asked through `warren request`.
async fn total(vhost: &Vhost, key: &str) -> i64 {
    let output = vhost
        .warren(&["request", GET, &json!({ "key": key }).to_string()])
        .await;
    assert_eq!(output.code(), Some(0), "stdout: {}", output.stdout);
    let envelopes = output.envelopes();
    assert_eq!(envelopes.len(), 1, "{}", output.stdout);
    let data = result_data(&envelopes[0], TOTAL);
    assert_eq!(data["key"], key, "{data}");
    data["total"]
        .as_i64()
        .unwrap_or_else(|| panic!("a total is an integer: {data}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_add_up_and_a_redelivered_add_counts_once() {
    let vhost = Vhost::create().await;
    let store = StoreFolder::new();
    let broker = vhost.connect().await;
    let tally = start_tally(&vhost, &store).await;

    // Ten requests, each its own message: ten additions, each seeing the one before.
    let output = vhost
        .warren(&["request", ADD, r#"{"key":"k","amount":5}"#, "--count", "10"])
        .await;
    assert_eq!(output.code(), Some(0), "stdout: {}", output.stdout);
    let envelopes = output.envelopes();
    assert_eq!(envelopes.len(), 10, "{}", output.stdout);
    let mut totals: Vec<i64> = envelopes
        .iter()
        .map(|envelope| {
            let data = result_data(envelope, ADDED);
            assert_eq!(data["key"], "k", "{data}");
            data["total"].as_i64().expect("an integer total")
        })
        .collect();
    totals.sort_unstable();
    assert_eq!(totals, (1..=10).map(|n| n * 5).collect::<Vec<i64>>());
    assert_eq!(total(&vhost, "k").await, 50);

    // The same envelope (same id) twice, as a redelivery would bring it.
    let replies = broker.reply_queue().await;
    let request = Request::new(ADD, r#"{"key":"k","amount":5}"#, Some(replies.name()));
    broker
        .publish_all([request.message.clone(), request.message.clone()])
        .await;
    let first = replies.next(&broker).await;
    let second = replies.next(&broker).await;
    for reply in [&first, &second] {
        assert_eq!(
            attribute(reply, "correlationid"),
            Some(request.correlation_id()),
            "{reply}"
        );
        assert_eq!(result_data(reply, ADDED), json!({"key": "k", "total": 55}));
    }
    assert_eq!(
        attribute(&first, "id"),
        attribute(&second, "id"),
        "the duplicate is answered with the recorded reply, same id"
    );
    assert_eq!(total(&vhost, "k").await, 55, "the duplicate added nothing");

    // The inbox is in the store file: after a restart the same message is still a
    // duplicate.
    stop_tally(tally).await;
    let tally = start_tally(&vhost, &store).await;
    broker.publish(request.message.clone()).await;
    let third = replies.next(&broker).await;
    assert_eq!(attribute(&third, "id"), attribute(&first, "id"), "{third}");
    assert_eq!(result_data(&third, ADDED), json!({"key": "k", "total": 55}));
    assert_eq!(total(&vhost, "k").await, 55);
    stop_tally(tally).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflow_faults_the_originator_and_changes_nothing() {
    let vhost = Vhost::create().await;
    let store = StoreFolder::new();
    let _tally = start_tally(&vhost, &store).await;

    let largest = json!({"key": "big", "amount": i64::MAX}).to_string();
    let output = vhost.warren(&["request", ADD, &largest]).await;
    assert_eq!(output.code(), Some(0), "stdout: {}", output.stdout);

    let output = vhost
        .warren(&["request", ADD, r#"{"key":"big","amount":1}"#])
        .await;
    assert_eq!(
        output.code(),
        Some(1),
        "a fault exits 1; stdout: {}",
        output.stdout
    );
    let envelopes = output.envelopes();
    assert_eq!(envelopes.len(), 1, "{}", output.stdout);
    let fault = result_data(&envelopes[0], FAULT);
    assert_eq!(fault["code"], "overflow", "{fault}");
    assert_eq!(fault["worker"], "tally", "{fault}");
    assert_eq!(fault["retryable"], false, "{fault}");

    let output = vhost
        .warren(&["request", ADD, r#"{"key":"big","amount":1,"unit":"kg"}"#])
        .await;
    assert_eq!(output.code(), Some(1), "stdout: {}", output.stdout);
    let fault = result_data(&output.envelopes()[0], FAULT);
    assert_eq!(
        fault["code"], "invalid_payload",
        "unknown fields are rejected: {fault}"
    );

    assert_eq!(total(&vhost, "big").await, i64::MAX);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_the_commit_is_redelivered_and_counted_once() {
    use std::os::unix::process::ExitStatusExt;

    let vhost = Vhost::create().await;
    let store = StoreFolder::new();
    let broker = vhost.connect().await;
    let mut crashing = vhost
        .worker("warren-tally")
        .store(&store)
        .failpoints("crash_after_commit:1")
        .start()
        .await;
    let replies = broker.reply_queue().await;
    let request = Request::new(ADD, r#"{"key":"k","amount":5}"#, Some(replies.name()));
    broker.publish(request.message.clone()).await;

    // The addition is committed, then the process aborts: no reply, no ack.
    let status = crashing.wait(EXIT_TIMEOUT).await;
    assert_eq!(status.signal(), Some(6), "SIGABRT, not {status}");
    assert!(
        replies.next_within(&broker, Duration::ZERO).await.is_none(),
        "nothing was published before the crash"
    );

    // The broker hands the unacked message to the next instance, which finds it in the
    // inbox: it re-sends the recorded reply and adds nothing.
    let tally = start_tally(&vhost, &store).await;
    let reply = replies.next(&broker).await;
    assert_eq!(
        attribute(&reply, "correlationid"),
        Some(request.correlation_id()),
        "{reply}"
    );
    assert_eq!(result_data(&reply, ADDED), json!({"key": "k", "total": 5}));
    assert_eq!(total(&vhost, "k").await, 5, "the redelivery added nothing");
    stop_tally(tally).await;
}
