//! The tally worker against the real broker: totals add up, a redelivered add is counted
//! once and answered with the same reply, and the store survives a restart.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use warren_e2e::{Broker, EXIT_TIMEOUT, READY_TIMEOUT, Request, Vhost, attribute, bin_path};

const ADD: &str = "dev.warren.tally.add.v1";
const ADDED: &str = "dev.warren.tally.added.v1";
const GET: &str = "dev.warren.tally.get.v1";
const TOTAL: &str = "dev.warren.tally.total.v1";
const FAULT: &str = "dev.warren.fault.v1";
const TALLY_QUEUE: &str = "warren.tally";

/// A fresh store folder under the system's temp folder, removed when dropped.
struct StoreFolder {
    path: PathBuf,
}

impl StoreFolder {
    fn new() -> StoreFolder {
        StoreFolder {
            path: std::env::temp_dir().join(format!("warren-e2e-tally-{}", uuid::Uuid::new_v4())),
        }
    }
}

impl Drop for StoreFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Copies each line `reader` produces to the test's stderr, prefixed by `prefix`.
fn forward_lines(prefix: String, reader: impl AsyncRead + Unpin + Send + 'static) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{prefix} {line}");
        }
    });
}

/// A running `warren-tally` with its store in `store_dir`. Killed when dropped.
///
/// The harness's `Worker` sets no environment beyond the broker URL and the log filter,
/// and the store folder must be the test's own: this starts the binary itself.
struct Tally {
    child: Child,
}

impl Tally {
    /// Starts `warren-tally` in `vhost` with `WARREN_STORE__DIR=store_dir`, and waits
    /// until it consumes its work queue.
    async fn start(vhost: &Vhost, broker: &Broker, store_dir: &Path) -> Tally {
        Self::start_with_failpoints(vhost, broker, store_dir, "").await
    }

    /// [`Tally::start`] with `WARREN_FAILPOINTS=failpoints`.
    async fn start_with_failpoints(
        vhost: &Vhost,
        broker: &Broker,
        store_dir: &Path,
        failpoints: &str,
    ) -> Tally {
        let mut child = Command::new(bin_path("warren-tally"))
            .env("WARREN_AMQP_URL", vhost.amqp_url())
            .env("WARREN_LOG", "info")
            .env("WARREN_STORE__DIR", store_dir)
            .env("WARREN_FAILPOINTS", failpoints)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start warren-tally: {error}"));
        let pid = child.id().expect("a process just started has an id");
        let prefix = format!("[warren-tally:{pid}]");
        if let Some(stdout) = child.stdout.take() {
            forward_lines(prefix.clone(), stdout);
        }
        if let Some(stderr) = child.stderr.take() {
            forward_lines(prefix, stderr);
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut poll = tokio::time::interval(Duration::from_millis(20));
        loop {
            poll.tick().await;
            if let Some(status) = child.try_wait().expect("poll warren-tally") {
                panic!("warren-tally exited with {status} before consuming {TALLY_QUEUE}");
            }
            let state = broker.queue_state(TALLY_QUEUE).await;
            if state.is_some_and(|state| state.consumers > 0) {
                return Tally { child };
            }
            assert!(
                Instant::now() < deadline,
                "warren-tally does not consume {TALLY_QUEUE} after {READY_TIMEOUT:?} \
                 (last state: {state:?})"
            );
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    async fn stop(mut self) {
        let pid = self.child.id().expect("warren-tally still runs");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pids fit in an i32")),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("send SIGTERM to warren-tally");
        let status = tokio::time::timeout(EXIT_TIMEOUT, self.child.wait())
            .await
            .expect("warren-tally exits after SIGTERM")
            .expect("wait for warren-tally");
        assert!(
            status.success(),
            "warren-tally exits 0 on SIGTERM, not {status}"
        );
    }

    /// Waits for the process to exit by itself.
    async fn exited(mut self) -> std::process::ExitStatus {
        tokio::time::timeout(EXIT_TIMEOUT, self.child.wait())
            .await
            .expect("warren-tally exits by itself")
            .expect("wait for warren-tally")
    }
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
    let tally = Tally::start(&vhost, &broker, &store.path).await;

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
    tally.stop().await;
    let tally = Tally::start(&vhost, &broker, &store.path).await;
    broker.publish(request.message.clone()).await;
    let third = replies.next(&broker).await;
    assert_eq!(attribute(&third, "id"), attribute(&first, "id"), "{third}");
    assert_eq!(result_data(&third, ADDED), json!({"key": "k", "total": 55}));
    assert_eq!(total(&vhost, "k").await, 55);
    tally.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflow_faults_the_originator_and_changes_nothing() {
    let vhost = Vhost::create().await;
    let store = StoreFolder::new();
    let broker = vhost.connect().await;
    let _tally = Tally::start(&vhost, &broker, &store.path).await;

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
    let crashing =
        Tally::start_with_failpoints(&vhost, &broker, &store.path, "crash_after_commit:1").await;
    let replies = broker.reply_queue().await;
    let request = Request::new(ADD, r#"{"key":"k","amount":5}"#, Some(replies.name()));
    broker.publish(request.message.clone()).await;

    // The addition is committed, then the process aborts: no reply, no ack.
    let status = crashing.exited().await;
    assert_eq!(status.signal(), Some(6), "SIGABRT, not {status}");
    assert!(
        replies.next_within(&broker, Duration::ZERO).await.is_none(),
        "nothing was published before the crash"
    );

    // The broker hands the unacked message to the next instance, which finds it in the
    // inbox: it re-sends the recorded reply and adds nothing.
    let tally = Tally::start(&vhost, &broker, &store.path).await;
    let reply = replies.next(&broker).await;
    assert_eq!(
        attribute(&reply, "correlationid"),
        Some(request.correlation_id()),
        "{reply}"
    );
    assert_eq!(result_data(&reply, ADDED), json!({"key": "k", "total": 5}));
    assert_eq!(total(&vhost, "k").await, 5, "the redelivery added nothing");
    tally.stop().await;
}
