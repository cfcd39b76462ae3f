//! `warren logs` end to end: the real binary over log files written as the workers
//! write them (two workers, two days each, interleaved, with a line cut short by a
//! killed writer), searched by trace, worker, level, correlation id and time, printed as
//! human lines and as JSON; `--follow` printing lines appended and files created after
//! it started; and `warren request` printing each outcome's trace id, which finds the
//! worker's lines about that request.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::time::Instant;
use warren_e2e::{EXIT_TIMEOUT, MESSAGE_TIMEOUT, Vhost, WarrenCommand, bin_path};

/// The trace of the first request in the fixtures: `orders` then `payments`.
const TRACE_ONE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The trace of the second request: `orders` alone, retried then failed.
const TRACE_TWO: &str = "0af7651916cd43dd8448eb211c80319c";

/// The echo worker's request type.
const ECHO: &str = "dev.warren.echo.v1";

/// How long `warren logs --follow` may take to print a line after it is written.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(30);

// The fixture lines, in the order a worker's file writer puts fields: timestamp, level,
// worker, target, the message span's fields, then the event's own (message first).

const ORDERS_READY: &str = r#"{"timestamp":"2026-11-29T23:59:58.000001Z","level":"INFO","worker":"orders","target":"warren_runtime::session","message":"ready: consuming","queue":"warren.orders"}"#;
const ORDERS_PLACED: &str = r#"{"timestamp":"2026-11-29T23:59:59.250000Z","level":"INFO","worker":"orders","target":"warren_orders","message_id":"m-1","correlation_id":"c-1","message_type":"dev.warren.orders.place.v1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","message":"order placed","order_id":"o-1"}"#;
/// What a writer killed mid-line leaves; its restart appends on the next line.
const CUT_SHORT: &str =
    r#"{"timestamp":"2026-11-29T23:59:59.500000Z","level":"INFO","worker":"ord"#;
const ORDERS_RETRY: &str = r#"{"timestamp":"2026-11-29T23:59:59.900000Z","level":"WARN","worker":"orders","target":"warren_runtime::message","message_id":"m-2","correlation_id":"c-2","message_type":"dev.warren.orders.place.v1","trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331","message":"handler failed: retrying later","attempts":2,"error":"store busy"}"#;
/// A hostile message id and error text: a newline and terminal escapes.
const ORDERS_GAVE_UP: &str = r#"{"timestamp":"2026-11-30T00:00:01.000000Z","level":"ERROR","worker":"orders","target":"warren_runtime::message","message_id":"m-2\n2026-11-30T00:00:02.000000Z INFO  [orders] forged","correlation_id":"c-2","message_type":"dev.warren.orders.place.v1","trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331","message":"gave up","error":"store busy \u001b[2J\u001b]0;owned\u0007"}"#;
const PAYMENTS_CHARGED: &str = r#"{"timestamp":"2026-11-29T23:59:59.500000Z","level":"INFO","worker":"payments","target":"warren_payments","message_id":"m-3","correlation_id":"c-1","message_type":"dev.warren.payments.charge.v1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"53995c3f42cd8ad8","message":"charged","amount_cents":1250}"#;
const PAYMENTS_PUBLISHED: &str = r#"{"timestamp":"2026-11-30T00:00:00.500000Z","level":"DEBUG","worker":"payments","target":"warren_runtime::message","message_id":"m-3","correlation_id":"c-1","message_type":"dev.warren.payments.charge.v1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"53995c3f42cd8ad8","message":"handled","outputs":1}"#;
/// At the same time as [`ORDERS_GAVE_UP`]: after it, as `orders` sorts first.
const PAYMENTS_IDLE: &str = r#"{"timestamp":"2026-11-30T00:00:01.000000Z","level":"INFO","worker":"payments","target":"warren_runtime::session","message":"idle: still consuming"}"#;

/// Every fixture record, merged in time order.
const ALL_IN_ORDER: [&str; 7] = [
    ORDERS_READY,
    ORDERS_PLACED,
    PAYMENTS_CHARGED,
    ORDERS_RETRY,
    PAYMENTS_PUBLISHED,
    ORDERS_GAVE_UP,
    PAYMENTS_IDLE,
];

/// A log folder of the test's own under the system's temp folder, removed when dropped.
struct LogFolder {
    path: PathBuf,
}

impl LogFolder {
    /// An empty folder.
    fn empty() -> LogFolder {
        let path = std::env::temp_dir().join(format!("warren-e2e-logs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", path.display()));
        LogFolder { path }
    }

    /// The fixture fleet: `orders` and `payments`, a file each for two days, and files
    /// that are not log files.
    fn with_fixtures() -> LogFolder {
        let folder = LogFolder::empty();
        folder.append(
            "orders.2026-11-29.log",
            &[ORDERS_READY, ORDERS_PLACED, CUT_SHORT, ORDERS_RETRY],
        );
        folder.append("orders.2026-11-30.log", &[ORDERS_GAVE_UP]);
        folder.append("payments.2026-11-29.log", &[PAYMENTS_CHARGED]);
        folder.append(
            "payments.2026-11-30.log",
            &[PAYMENTS_PUBLISHED, PAYMENTS_IDLE],
        );
        folder.write_raw("notes.txt", "not a log file\n");
        folder.write_raw("orders.log", &format!("{ORDERS_READY}\n"));
        folder
    }

    /// Appends `lines`, each with its line end, to the file `name`.
    fn append(&self, name: &str, lines: &[&str]) {
        let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
        self.write_raw(name, &text);
    }

    /// Appends `text` as it is to the file `name`, creating it if missing.
    fn write_raw(&self, name: &str, text: &str) {
        use std::io::Write as _;
        let path = self.path.join(name);
        let mut file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|error| panic!("cannot open {}: {error}", path.display()));
        file.write_all(text.as_bytes())
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    }

    fn path_text(&self) -> &str {
        self.path.to_str().expect("the temp folder's path is UTF-8")
    }
}

impl Drop for LogFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// What one `warren logs` run printed.
struct LogsOutput {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl LogsOutput {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Runs `warren logs` over `folder` with `args`, in an environment that names no other
/// log folder.
fn warren_logs(folder: &Path, args: &[&str]) -> LogsOutput {
    let output = Command::new(bin_path("warren"))
        .arg("logs")
        .arg("--dir")
        .arg(folder)
        .args(args)
        .env_remove("WARREN_LOG__DIR")
        .env_remove("WARREN_RUN_DIR")
        .output()
        .unwrap_or_else(|error| panic!("cannot run warren logs: {error}"));
    let output = LogsOutput {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    };
    eprintln!(
        "$ warren logs {} -> {:?}\n{}{}",
        args.join(" "),
        output.code,
        output.stdout,
        output.stderr
    );
    output
}

#[test]
fn every_line_of_every_worker_and_day_comes_merged_in_time_order() {
    let folder = LogFolder::with_fixtures();
    let output = warren_logs(&folder.path, &["--json"]);
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    assert_eq!(
        output.lines(),
        ALL_IN_ORDER,
        "the records as they are, in time order"
    );
    assert!(
        output.stderr.contains("skipped 1 line of ") && output.stderr.contains("not a log record"),
        "the line cut short is counted: {}",
        output.stderr
    );
}

#[test]
fn a_trace_is_followed_across_workers_as_human_lines() {
    let folder = LogFolder::with_fixtures();
    let output = warren_logs(&folder.path, &["--trace", TRACE_ONE]);
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    assert_eq!(
        output.lines(),
        [
            "2026-11-29T23:59:59.250000Z INFO  [orders] order placed order_id=o-1 message_id=m-1 \
             correlation_id=c-1 message_type=dev.warren.orders.place.v1 \
             trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7",
            "2026-11-29T23:59:59.500000Z INFO  [payments] charged amount_cents=1250 \
             message_id=m-3 correlation_id=c-1 message_type=dev.warren.payments.charge.v1 \
             trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=53995c3f42cd8ad8",
            "2026-11-30T00:00:00.500000Z DEBUG [payments] handled outputs=1 message_id=m-3 \
             correlation_id=c-1 message_type=dev.warren.payments.charge.v1 \
             trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=53995c3f42cd8ad8",
        ]
    );
    // Pasted in capitals, or as the whole traceparent, it is the same trace.
    let upper = warren_logs(
        &folder.path,
        &["--trace", &TRACE_ONE.to_ascii_uppercase(), "--json"],
    );
    let traceparent = warren_logs(
        &folder.path,
        &[
            "--trace",
            &format!("00-{TRACE_ONE}-00f067aa0ba902b7-01"),
            "--json",
        ],
    );
    let expected = [ORDERS_PLACED, PAYMENTS_CHARGED, PAYMENTS_PUBLISHED];
    assert_eq!(upper.lines(), expected);
    assert_eq!(traceparent.lines(), expected);
}

#[test]
fn hostile_values_are_escaped_in_human_lines() {
    let folder = LogFolder::with_fixtures();
    let output = warren_logs(&folder.path, &["--trace", TRACE_TWO, "--level", "error"]);
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    assert_eq!(
        output.lines(),
        ["2026-11-30T00:00:01.000000Z ERROR [orders] gave up \
             error=\"store busy \\u{1b}[2J\\u{1b}]0;owned\\u{7}\" \
             message_id=\"m-2\\n2026-11-30T00:00:02.000000Z INFO  [orders] forged\" \
             correlation_id=c-2 message_type=dev.warren.orders.place.v1 \
             trace_id=0af7651916cd43dd8448eb211c80319c span_id=b7ad6b7169203331"],
        "one line, no escape sequence"
    );
    assert!(
        !output
            .stdout
            .chars()
            .any(|character| character.is_control() && character != '\n'),
        "{:?}",
        output.stdout
    );
}

#[test]
fn workers_are_chosen_repeated_or_as_a_list() {
    let folder = LogFolder::with_fixtures();
    let payments = warren_logs(&folder.path, &["--worker", "payments", "--json"]);
    assert_eq!(payments.code, Some(0), "{}", payments.stderr);
    assert_eq!(
        payments.lines(),
        [PAYMENTS_CHARGED, PAYMENTS_PUBLISHED, PAYMENTS_IDLE]
    );
    assert!(
        !payments.stderr.contains("skipped"),
        "the orders files were not read: {}",
        payments.stderr
    );
    let listed = warren_logs(&folder.path, &["--worker", "orders,payments", "--json"]);
    let repeated = warren_logs(
        &folder.path,
        &["--worker", "payments", "--worker", "orders", "--json"],
    );
    assert_eq!(listed.lines(), ALL_IN_ORDER);
    assert_eq!(repeated.lines(), ALL_IN_ORDER);
    let nobody = warren_logs(&folder.path, &["--worker", "shipping"]);
    assert_eq!(nobody.code, Some(0), "{}", nobody.stderr);
    assert!(nobody.stdout.is_empty(), "{}", nobody.stdout);
    let bad = warren_logs(&folder.path, &["--worker", "Orders"]);
    assert_eq!(
        bad.code,
        Some(2),
        "a worker name is checked: {}",
        bad.stderr
    );
}

#[test]
fn a_level_means_that_level_and_above() {
    let folder = LogFolder::with_fixtures();
    let warn = warren_logs(&folder.path, &["--level", "warn", "--json"]);
    assert_eq!(warn.code, Some(0), "{}", warn.stderr);
    assert_eq!(warn.lines(), [ORDERS_RETRY, ORDERS_GAVE_UP]);
    let info = warren_logs(&folder.path, &["--level", "INFO", "--json"]);
    let mut all_but_debug = ALL_IN_ORDER.to_vec();
    all_but_debug.retain(|line| *line != PAYMENTS_PUBLISHED);
    assert_eq!(info.lines(), all_but_debug);
    let loud = warren_logs(&folder.path, &["--level", "loud"]);
    assert_eq!(loud.code, Some(2), "{}", loud.stderr);
}

#[test]
fn correlation_ids_and_times_narrow_the_search() {
    let folder = LogFolder::with_fixtures();
    let correlation = warren_logs(&folder.path, &["--correlation", "c-2", "--json"]);
    assert_eq!(correlation.lines(), [ORDERS_RETRY, ORDERS_GAVE_UP]);
    let since = warren_logs(&folder.path, &["--since", "2026-11-30T00:00:00Z", "--json"]);
    assert_eq!(
        since.lines(),
        [PAYMENTS_PUBLISHED, ORDERS_GAVE_UP, PAYMENTS_IDLE]
    );
    let both = warren_logs(
        &folder.path,
        &[
            "--since",
            "2026-11-30T00:00:00Z",
            "--correlation",
            "c-2",
            "--json",
        ],
    );
    assert_eq!(both.lines(), [ORDERS_GAVE_UP]);
    // The fixtures are years old by any clock this runs on.
    let recent = warren_logs(&folder.path, &["--since", "10m"]);
    assert_eq!(recent.code, Some(0), "{}", recent.stderr);
    assert!(recent.stdout.is_empty(), "{}", recent.stdout);
    let vague = warren_logs(&folder.path, &["--since", "lately"]);
    assert_eq!(vague.code, Some(2), "{}", vague.stderr);
}

#[test]
fn a_missing_log_folder_is_said_with_where_it_was_looked_for() {
    let run_folder =
        std::env::temp_dir().join(format!("warren-e2e-no-run-{}", uuid::Uuid::new_v4()));
    let output = Command::new(bin_path("warren"))
        .arg("logs")
        .env_remove("WARREN_LOG__DIR")
        .env("WARREN_RUN_DIR", &run_folder)
        .output()
        .unwrap_or_else(|error| panic!("cannot run warren logs: {error}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let expected = run_folder.join("logs");
    assert!(
        stderr.contains(&*expected.to_string_lossy()),
        "names {}: {stderr}",
        expected.display()
    );
    assert!(!run_folder.exists(), "looking creates nothing");
}

/// `--follow` prints what is there, then each line appended to a file it read, a new
/// day's file, a new worker's file, and a line written in two pieces (once whole), each
/// once; Ctrl-C ends it with exit code 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_appended_lines_and_new_files_until_ctrl_c() {
    let folder = LogFolder::with_fixtures();
    let mut logs = WarrenCommand::new("warren", "amqp://guest:guest@127.0.0.1:1/%2f")
        .args(&["logs", "--dir", folder.path_text(), "--follow", "--json"])
        .spawn();
    logs.wait_for_lines(&[r#""message":"idle: still consuming""#], 1, FOLLOW_TIMEOUT)
        .await;

    let appended = r#"{"timestamp":"2026-11-30T00:00:05.000000Z","level":"INFO","worker":"orders","target":"warren_orders","message":"appended to today's file"}"#;
    folder.append("orders.2026-11-30.log", &[appended]);
    logs.wait_for_lines(&["appended to today"], 1, FOLLOW_TIMEOUT)
        .await;

    let next_day = r#"{"timestamp":"2026-12-01T00:00:00.000100Z","level":"INFO","worker":"payments","target":"warren_payments","message":"a new day's file"}"#;
    folder.append("payments.2026-12-01.log", &[next_day]);
    logs.wait_for_lines(&["a new day's file"], 1, FOLLOW_TIMEOUT)
        .await;

    let new_worker = r#"{"timestamp":"2026-12-01T00:00:01.000000Z","level":"WARN","worker":"shipping","target":"warren_shipping","message":"a new worker's file"}"#;
    folder.append("shipping.2026-12-01.log", &[new_worker]);
    logs.wait_for_lines(&["a new worker's file"], 1, FOLLOW_TIMEOUT)
        .await;

    // A line being written: nothing of it until its end is there.
    let in_two_pieces = r#"{"timestamp":"2026-12-01T00:00:02.000000Z","level":"INFO","worker":"shipping","target":"warren_shipping","message":"written in two pieces"}"#;
    let (first_piece, second_piece) = in_two_pieces.split_at(40);
    folder.write_raw("shipping.2026-12-01.log", first_piece);
    folder.write_raw("shipping.2026-12-01.log", &format!("{second_piece}\n"));
    logs.wait_for_lines(&["written in two pieces"], 1, FOLLOW_TIMEOUT)
        .await;

    let pid = nix::unistd::Pid::from_raw(i32::try_from(logs.pid()).expect("a pid"));
    nix::sys::signal::kill(pid, Signal::SIGINT).expect("SIGINT sent");
    let status = logs.wait(EXIT_TIMEOUT).await;
    assert_eq!(status.code(), Some(0), "Ctrl-C is a clean end");

    let stdout = logs.stdout();
    let mut expected = ALL_IN_ORDER.to_vec();
    expected.extend([appended, next_day, new_worker, in_two_pieces]);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected);
    let stderr = logs.stderr();
    assert!(
        stderr.contains("skipped 1 line of "),
        "only the fixtures' line cut short is skipped: {stderr}"
    );
}

/// `warren request` prints the trace id of each request with its outcome, and
/// `warren logs --trace` finds the worker's lines about that request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_prints_its_trace_id_and_the_logs_find_its_lines() {
    let vhost = Vhost::create().await;
    let folder = LogFolder::empty();
    let mut worker = vhost
        .worker("warren-echo")
        .env("WARREN_LOG__DIR", folder.path_text())
        // Each message's "handled" is a debug line.
        .env("WARREN_LOG", "info,warren_runtime=debug")
        .spawn();
    worker.wait_ready().await;

    let output = vhost.warren(&["request", ECHO, "{}", "--count", "3"]).await;
    assert_eq!(output.code(), Some(0), "{}", output.stderr);
    let outcomes = output.envelopes();
    assert_eq!(outcomes.len(), 3, "{}", output.stdout);
    let mut trace_ids = Vec::new();
    for outcome in &outcomes {
        let trace_id = outcome["trace_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no trace_id: {outcome}"));
        let traceparent = outcome["traceparent"]
            .as_str()
            .unwrap_or_else(|| panic!("no traceparent: {outcome}"));
        assert_eq!(
            traceparent.get(3..35),
            Some(trace_id),
            "the outcome is in its request's trace: {outcome}"
        );
        trace_ids.push(trace_id.to_owned());
    }
    trace_ids.sort();
    trace_ids.dedup();
    assert_eq!(trace_ids.len(), 3, "one trace per request");

    // The worker writes its file off its own thread: look until its line is there.
    let trace_id = &trace_ids[0];
    let deadline = Instant::now() + MESSAGE_TIMEOUT;
    loop {
        let found = warren_logs(&folder.path, &["--trace", trace_id, "--json"]);
        assert_eq!(found.code, Some(0), "{}", found.stderr);
        let records: Vec<Value> = found
            .lines()
            .into_iter()
            .map(|line| serde_json::from_str(line).expect("a JSON record"))
            .collect();
        if !records.is_empty() {
            for record in &records {
                assert_eq!(record["trace_id"], trace_id.as_str(), "{record}");
                assert_eq!(record["worker"], "echo", "{record}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no line of trace {trace_id} in the echo worker's log within {MESSAGE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.stop().await;
}
