//! `warren load` end to end against the echo worker: every load shape gets every result,
//! the JSON summary is one object with consistent numbers, `--plot` draws an SVG,
//! timeouts are counted rather than hidden, and a lost connection is survived.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use warren_e2e::{CliOutput, Vhost};

/// How long the reconnect test waits for the load's connection to show up.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The one JSON object `warren load --json` printed.
fn json_summary(output: &CliOutput) -> Value {
    let lines = output.stdout_lines();
    assert_eq!(lines.len(), 1, "exactly one JSON line: {}", output.stdout);
    serde_json::from_str(lines[0]).unwrap_or_else(|error| {
        panic!("the summary is not JSON ({error}): {}", lines[0]);
    })
}

fn number(summary: &Value, pointer: &str) -> f64 {
    summary
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number at {pointer}: {summary}"))
}

fn count(summary: &Value, pointer: &str) -> u64 {
    summary
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no count at {pointer}: {summary}"))
}

/// Asserts that every one of `messages` requests got a result, exactly once, and that
/// the numbers of the summary agree with each other.
fn assert_all_results(summary: &Value, messages: u64) {
    assert_eq!(count(summary, "/messages"), messages, "{summary}");
    assert_eq!(count(summary, "/outcomes/result"), messages, "{summary}");
    assert_eq!(count(summary, "/outcomes/fault"), 0, "{summary}");
    assert_eq!(count(summary, "/outcomes/timeout"), 0, "{summary}");
    assert_eq!(count(summary, "/latency_ms/count"), messages, "{summary}");
    let (p50, p90, p99, p999, max) = (
        number(summary, "/latency_ms/p50"),
        number(summary, "/latency_ms/p90"),
        number(summary, "/latency_ms/p99"),
        number(summary, "/latency_ms/p999"),
        number(summary, "/latency_ms/max"),
    );
    assert!(
        0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
        "percentiles out of order: {summary}"
    );
    assert!(number(summary, "/elapsed_s") > 0.0, "{summary}");
    assert!(number(summary, "/throughput_per_s") > 0.0, "{summary}");
    let buckets = summary["per_second"]
        .as_array()
        .unwrap_or_else(|| panic!("no per_second buckets: {summary}"));
    let completed: u64 = buckets
        .iter()
        .map(|bucket| bucket["completed"].as_u64().unwrap_or(0))
        .sum();
    let sent: u64 = buckets
        .iter()
        .map(|bucket| bucket["sent"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        completed, messages,
        "the buckets hold every outcome: {summary}"
    );
    assert_eq!(sent, messages, "the buckets hold every request: {summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_gets_every_result_and_reports_json() {
    let vhost = Vhost::create().await;
    let _worker = vhost.start_worker("warren-echo").await;

    let output = vhost
        .warren(&[
            "load",
            "--messages",
            "2000",
            "--inflight",
            "100",
            "--payload-bytes",
            "256",
            "--json",
        ])
        .await;
    assert_eq!(output.code(), Some(0), "stdout: {}", output.stdout);
    let summary = json_summary(&output);
    assert_all_results(&summary, 2000);
    assert_eq!(count(&summary, "/duplicates"), 0, "{summary}");
    assert_eq!(count(&summary, "/data_bytes"), 256, "{summary}");
    assert!(count(&summary, "/envelope_bytes") > 256, "{summary}");
    assert_eq!(summary["shape"]["kind"], "inflight", "{summary}");
    assert_eq!(count(&summary, "/shape/inflight"), 100, "{summary}");
    assert!(
        summary.get("latency_uncorrected_ms").is_none(),
        "a closed loop has nothing to correct: {summary}"
    );

    // Without --json: the table, on stdout.
    let output = vhost
        .warren(&["load", "--messages", "50", "--inflight", "10"])
        .await;
    assert_eq!(output.code(), Some(0), "stdout: {}", output.stdout);
    assert!(
        output.stdout.contains("50 results, 0 faults, 0 timeouts"),
        "{}",
        output.stdout
    );
    assert!(output.stdout.contains("p99.9"), "{}", output.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefill_queues_everything_and_reports_the_drain_rate() {
    let vhost = Vhost::create().await;
    let _worker = vhost.start_worker("warren-echo").await;

    let output = vhost
        .warren(&["load", "--messages", "2000", "--prefill", "--json"])
        .await;
    assert_eq!(output.code(), Some(0), "stdout: {}", output.stdout);
    let summary = json_summary(&output);
    assert_all_results(&summary, 2000);
    assert_eq!(summary["shape"]["kind"], "prefill", "{summary}");
    assert!(number(&summary, "/prefill/publish_s") > 0.0, "{summary}");
    assert!(
        number(&summary, "/prefill/publish_rate_per_s") > 0.0,
        "{summary}"
    );
    assert!(number(&summary, "/prefill/drain_s") > 0.0, "{summary}");
    assert!(
        number(&summary, "/prefill/drain_rate_per_s") > 0.0,
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_and_an_open_loop_get_every_result_and_plot() {
    let vhost = Vhost::create().await;
    let _worker = vhost.start_worker("warren-echo").await;

    let output = vhost
        .warren(&[
            "load",
            "--messages",
            "1000",
            "--burst",
            "200",
            "--interval",
            "100ms",
            "--json",
        ])
        .await;
    assert_eq!(output.code(), Some(0), "stdout: {}", output.stdout);
    let summary = json_summary(&output);
    assert_all_results(&summary, 1000);
    assert_eq!(summary["shape"]["kind"], "burst", "{summary}");
    assert_eq!(count(&summary, "/shape/size"), 200, "{summary}");
    // Five bursts 100 ms apart: the last goes out 400 ms after the first.
    assert!(number(&summary, "/elapsed_s") >= 0.4, "{summary}");

    let plot = std::env::temp_dir().join(format!("warren-load-{}.svg", uuid::Uuid::new_v4()));
    let plot_argument = plot.to_string_lossy().into_owned();
    let output = vhost
        .warren(&[
            "load",
            "--messages",
            "1000",
            "--rate",
            "500",
            "--json",
            "--plot",
            &plot_argument,
        ])
        .await;
    assert_eq!(output.code(), Some(0), "stdout: {}", output.stdout);
    let summary = json_summary(&output);
    assert_all_results(&summary, 1000);
    // 1000 requests at 500 a second: the last is due after 1.998 s.
    assert!(number(&summary, "/elapsed_s") >= 1.998, "{summary}");
    // Measured from when each was due, latency is never shorter than from its publish.
    assert!(
        number(&summary, "/latency_ms/max") >= number(&summary, "/latency_uncorrected_ms/max"),
        "{summary}"
    );
    let svg = std::fs::read_to_string(&plot)
        .unwrap_or_else(|error| panic!("no plot at {}: {error}", plot.display()));
    let _ = std::fs::remove_file(&plot);
    assert!(svg.contains("<svg"), "{svg}");
    assert!(
        svg.contains("<polyline") || svg.contains("<path"),
        "the plot has no line: {svg}"
    );
    assert!(svg.contains("p99") && svg.contains("p50"), "{svg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_counted_with_exit_3() {
    let vhost = Vhost::create().await;
    // A worker declares the topology, then leaves: requests queue and are never answered.
    let mut worker = vhost.start_worker("warren-echo").await;
    let status = worker.stop().await;
    assert!(
        status.success(),
        "the worker exits 0 on SIGTERM, not {status}"
    );

    let output = vhost
        .warren(&[
            "load",
            "--messages",
            "20",
            "--inflight",
            "20",
            "--timeout",
            "1s",
            "--json",
        ])
        .await;
    assert_eq!(output.code(), Some(3), "stdout: {}", output.stdout);
    let summary = json_summary(&output);
    assert_eq!(count(&summary, "/outcomes/timeout"), 20, "{summary}");
    assert_eq!(count(&summary, "/outcomes/result"), 0, "{summary}");
    assert_eq!(count(&summary, "/latency_ms/count"), 0, "{summary}");
    assert!(summary["latency_ms"]["p50"].is_null(), "{summary}");
    assert!(
        output.stderr.contains("20 of 20 requests got no outcome"),
        "{}",
        output.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_are_usage_errors() {
    let vhost = Vhost::create().await;
    for (args, complaint) in [
        (&["load"][..], "required"),
        (
            &["load", "--inflight", "5", "--rate", "10"],
            "cannot be used",
        ),
        (&["load", "--prefill", "--messages", "0"], "--messages"),
        (&["load", "--inflight", "0"], "--inflight"),
        (&["load", "--rate", "0"], "positive"),
        (&["load", "--burst", "10"], "--interval"),
        (
            &["load", "--prefill", "--payload-bytes", "5"],
            "at least 10",
        ),
    ] {
        let output = vhost.warren(args).await;
        assert_eq!(output.code(), Some(2), "{args:?}: {}", output.stderr);
        assert!(
            output.stderr.contains(complaint),
            "{args:?} should say {complaint:?}: {}",
            output.stderr
        );
    }
}

/// Waits for the connection named `connection_name` in `vhost`, then has the broker
/// close it.
async fn close_connection_when_it_appears(vhost: &Vhost, connection_name: &str) {
    let deadline = Instant::now() + CONNECTION_TIMEOUT;
    while !vhost
        .close_connection_named(connection_name, "warren-e2e: a lost connection")
        .await
    {
        assert!(
            Instant::now() < deadline,
            "no connection {connection_name} in {} within {CONNECTION_TIMEOUT:?}",
            vhost.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_survived_and_nothing_is_hidden() {
    let vhost = Vhost::create().await;
    let _worker = vhost.start_worker("warren-echo").await;

    // Ten seconds of load; the broker closes its connection as soon as it is seen.
    let (output, ()) = tokio::join!(
        vhost.warren(&[
            "load",
            "--messages",
            "2000",
            "--rate",
            "200",
            "--timeout",
            "20s",
            "--json",
        ]),
        close_connection_when_it_appears(&vhost, "warren-cli load"),
    );
    let summary = json_summary(&output);
    assert!(count(&summary, "/reconnects") >= 1, "{summary}");
    assert!(output.stderr.contains("reconnected"), "{}", output.stderr);
    // Every request is accounted for: the reply queue outlived the connection, and what
    // was not confirmed went out again.
    assert_eq!(output.code(), Some(0), "stdout: {}", output.stdout);
    assert_all_results(&summary, 2000);
}
