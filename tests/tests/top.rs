//! `warren top` end to end: real workers serving `/metrics` in a vhost of the test's own,
//! listed in a targets file as `warren up` writes it, and the real `warren` binary.
//!
//! The live view runs in tmux on a server of the test's own (`tmux -L <unique>`), in an
//! 80×24 pane: the test reads the screen with `capture-pane` until it shows what it
//! waits for (polling with a deadline), types `q` or Ctrl-C, and checks the shell's
//! screen, cursor and line mode came back. `--once --json` is checked for its numbers:
//! messages sent inside its window are counted exactly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use warren_e2e::metrics::metrics_address;
use warren_e2e::{
    CLI_TIMEOUT, ECHO_QUEUE, READY_TIMEOUT, StoreFolder, Vhost, WarrenCommand, WarrenProcess,
    bin_path,
};

const ECHO: &str = "dev.warren.echo.v1";
const TALLY_ADD: &str = "dev.warren.tally.add.v1";

/// How long the screen may take to show what a test waits for.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(60);
/// The pause between two reads of the screen.
const SCREEN_POLL: Duration = Duration::from_millis(100);
/// What the worker logs once its metrics endpoint listens.
const SERVING_METRICS: &str = "serving metrics at /metrics";
/// What `warren top --once` says on stderr when its window starts.
const MEASURING: &str = "measuring for";
/// What the shell prints after each `warren top` run in the pane.
const EXITED: &str = "top exited with ";

/// The exit statuses the shell printed on `screen` (`top exited with N`), wherever a line
/// has one at its end: the shell's prompt may stand before it on the same line. The
/// typed command, which ends `…with $?"`, is not one.
fn exit_statuses(screen: &[String]) -> Vec<&str> {
    screen
        .iter()
        .filter_map(|line| {
            let status = &line[line.rfind(EXITED)? + EXITED.len()..];
            (!status.is_empty() && status.bytes().all(|byte| byte.is_ascii_digit()))
                .then_some(status)
        })
        .collect()
}

/// A worker started in `vhost` with its metrics on a free port; returns it and its
/// metrics address.
async fn start_with_metrics(
    vhost: &Vhost,
    binary: &str,
    store: &StoreFolder,
) -> (WarrenProcess, String) {
    let mut worker = vhost
        .worker(binary)
        .store(store)
        .env("WARREN_METRICS__LISTEN", "127.0.0.1:0")
        .start()
        .await;
    worker
        .wait_for_lines(&[SERVING_METRICS], 1, READY_TIMEOUT)
        .await;
    let address = metrics_address(&worker);
    (worker, address)
}

/// A run folder of the test's own, removed when dropped.
struct RunFolder(PathBuf);

impl RunFolder {
    /// A run folder whose `prometheus/targets.json` lists `targets` (worker, address) as
    /// `warren up` writes it.
    fn with_targets(targets: &[(&str, &str)]) -> RunFolder {
        let path = std::env::temp_dir().join(format!("warren-e2e-top-{}", uuid::Uuid::new_v4()));
        let groups: Vec<Value> = targets
            .iter()
            .map(|(worker, address)| {
                serde_json::json!({ "targets": [address], "labels": { "worker": worker } })
            })
            .collect();
        let folder = path.join("prometheus");
        std::fs::create_dir_all(&folder).expect("the run folder");
        let text = serde_json::to_string_pretty(&groups).expect("JSON") + "\n";
        std::fs::write(folder.join("targets.json"), text).expect("the targets file");
        RunFolder(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn as_str(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp folder")
    }
}

impl Drop for RunFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An address on the loopback where nothing listens: a port bound, then let go.
fn closed_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = listener.local_addr().expect("its address").to_string();
    drop(listener);
    address
}

/// A tmux server of the test's own (its own socket), with one 80×24 session running
/// `sh`; killed when dropped.
struct Tmux {
    socket: String,
}

/// The session's name.
const SESSION: &str = "top";

impl Tmux {
    /// Starts the server and its session, with `environment` set in the session.
    fn start(environment: &[(&str, &str)]) -> Tmux {
        let tmux = Tmux {
            socket: format!("warren-top-{}", uuid::Uuid::new_v4()),
        };
        let mut args: Vec<String> = ["new-session", "-d", "-x", "80", "-y", "24", "-s", SESSION]
            .iter()
            .map(|arg| (*arg).to_owned())
            .collect();
        for (name, value) in environment {
            args.push("-e".to_owned());
            args.push(format!("{name}={value}"));
        }
        args.push("sh".to_owned());
        tmux.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        tmux
    }

    /// Runs `tmux -L <socket> -f /dev/null <args>` and returns its output.
    fn try_run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("cannot run tmux {args:?}: {error}"))
    }

    /// Like [`Tmux::try_run`], asserting it succeeds; returns its stdout.
    fn run(&self, args: &[&str]) -> String {
        let output = self.try_run(args);
        assert!(
            output.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Types `text` into the pane as it is, then Enter.
    fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-t", SESSION, "-l", text]);
        self.run(&["send-keys", "-t", SESSION, "Enter"]);
    }

    /// Presses `key` (a tmux key name: `q`, `C-c`).
    fn press(&self, key: &str) {
        self.run(&["send-keys", "-t", SESSION, key]);
    }

    /// The visible screen, one string per row.
    fn screen(&self) -> Vec<String> {
        self.run(&["capture-pane", "-p", "-t", SESSION])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The visible screen with wrapped lines joined (as typed, for a long command line).
    fn screen_unwrapped(&self) -> String {
        self.run(&["capture-pane", "-p", "-J", "-t", SESSION])
    }

    /// Whether the pane shows the alternate screen, and whether its cursor is visible.
    fn alternate_screen_and_cursor(&self) -> (bool, bool) {
        let flags = self.run(&[
            "display-message",
            "-p",
            "-t",
            SESSION,
            "#{alternate_on} #{cursor_flag}",
        ]);
        match flags.split_whitespace().collect::<Vec<_>>().as_slice() {
            [alternate, cursor] => (*alternate == "1", *cursor == "1"),
            other => panic!("tmux said {other:?}"),
        }
    }

    /// Polls the screen until `condition` holds for it, and returns it.
    ///
    /// # Panics
    /// When it does not within [`SCREEN_TIMEOUT`]; `what` says what was awaited.
    async fn wait_for_screen(
        &self,
        what: &str,
        condition: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            let screen = self.screen();
            if condition(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen did not show {what} within {SCREEN_TIMEOUT:?}:\n{}",
                screen.join("\n")
            );
            tokio::time::sleep(SCREEN_POLL).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.try_run(&["kill-server"]);
    }
}

/// The row of `worker` on `screen`, split into its cells (the name, then MSG/S, P99,
/// ERR/S, IN FLIGHT, QUEUE, CONSUMERS, UP).
fn row<'s>(screen: &'s [String], worker: &str) -> Option<Vec<&'s str>> {
    screen
        .iter()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.len() == 8 && cells[0] == worker)
}

/// Whether `cell` shows a rate above zero.
fn is_positive(cell: &str) -> bool {
    cell.parse::<f64>().is_ok_and(|rate| rate > 0.0)
}

/// Asserts the screen fits 80×24.
fn assert_fits(screen: &[String]) {
    assert!(
        screen.len() <= 24,
        "{} rows:\n{}",
        screen.len(),
        screen.join("\n")
    );
    for line in screen {
        assert!(
            line.chars().count() <= 80,
            "{} columns: {line:?}",
            line.chars().count()
        );
    }
}

/// Sends requests to echo (half of them fault: an array is not echo's object) and to
/// tally, one `warren request` after the other, until `stop` is set.
fn keep_sending(amqp_url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            for args in [
                &[
                    "request",
                    ECHO,
                    r#"{"text":"top"}"#,
                    "[1, 2, 3]",
                    "--count",
                    "6",
                ][..],
                &[
                    "request",
                    TALLY_ADD,
                    r#"{"key":"top","amount":1}"#,
                    "--count",
                    "3",
                ][..],
            ] {
                let mut cli = WarrenCommand::new("warren", &amqp_url).args(args).spawn();
                cli.wait(CLI_TIMEOUT).await;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_the_fleet_live_in_80_by_24_and_quits_on_q_and_ctrl_c() {
    let vhost = Vhost::create().await;
    let store = StoreFolder::new();
    let (_echo, echo_address) = start_with_metrics(&vhost, "warren-echo", &store).await;
    let (mut tally, tally_address) = start_with_metrics(&vhost, "warren-tally", &store).await;
    let ghost_address = closed_address();
    let run = RunFolder::with_targets(&[
        ("echo", &echo_address),
        ("tally", &tally_address),
        ("ghost", &ghost_address),
    ]);
    let tmux = Tmux::start(&[("WARREN_AMQP_URL", vhost.amqp_url())]);
    let command = format!(
        "'{}' top --run-dir '{}'; echo \"{EXITED}$?\"",
        bin_path("warren").display(),
        run.as_str()
    );
    tmux.type_line(&command);

    // Every worker listed, the ghost down with no queue, echo and tally consuming.
    let screen = tmux
        .wait_for_screen("every worker with its queue", |screen| {
            row(screen, "echo")
                .is_some_and(|cells| cells[5] == "0" && cells[6] == "1" && cells[7] == "1/1")
                && row(screen, "tally").is_some_and(|cells| cells[6] == "1" && cells[7] == "1/1")
                && row(screen, "ghost")
                    .is_some_and(|cells| cells[5] == "missing" && cells[7] == "down")
        })
        .await;
    assert_fits(&screen);
    assert!(screen[0].starts_with("warren top  "), "{}", screen[0]);
    assert!(
        screen[1].starts_with("broker  connected  amqp://guest:***@127.0.0.1:5672/"),
        "{}",
        screen[1]
    );
    assert!(
        screen.iter().any(|line| line.starts_with("q quit")),
        "{}",
        screen.join("\n")
    );
    assert_eq!(
        tmux.alternate_screen_and_cursor(),
        (true, false),
        "alternate screen, no cursor"
    );

    // Traffic: echo's messages and errors per second and its p99 show, and tally's rate.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = keep_sending(vhost.amqp_url().to_owned(), Arc::clone(&stop));
    let screen = tmux
        .wait_for_screen("echo and tally at work, echo with errors", |screen| {
            row(screen, "echo").is_some_and(|cells| {
                is_positive(cells[1]) && cells[2] != "-" && is_positive(cells[3])
            }) && row(screen, "tally").is_some_and(|cells| is_positive(cells[1]) && cells[2] != "-")
        })
        .await;
    stop.store(true, Ordering::SeqCst);
    let _ = sender.await;
    assert_fits(&screen);
    eprintln!("the screen at work:\n{}", screen.join("\n"));

    // Tally stops; what is sent to it waits in its queue, which has no consumer.
    assert_eq!(tally.stop().await.code(), Some(0));
    for amount in 1..=3 {
        let amount = format!(r#"{{"key":"top","amount":{amount}}}"#);
        let published = vhost.warren(&["publish", TALLY_ADD, &amount]).await;
        assert_eq!(published.code(), Some(0), "{}", published.stderr);
    }
    let screen = tmux
        .wait_for_screen("tally down with 3 messages waiting", |screen| {
            row(screen, "tally").is_some_and(|cells| {
                cells[1..4] == ["-", "-", "-"]
                    && cells[5] == "3"
                    && cells[6] == "0"
                    && cells[7] == "down"
            })
        })
        .await;
    assert_fits(&screen);
    eprintln!("the screen with tally down:\n{}", screen.join("\n"));
    assert!(
        screen[2].starts_with("workers  3, 1 of 3 instances up; "),
        "{}",
        screen[2]
    );

    // q: the shell's screen comes back, with the command typed and its exit status.
    tmux.press("q");
    let screen = tmux
        .wait_for_screen("the shell after q", |screen| {
            exit_statuses(screen).len() == 1
        })
        .await;
    assert_eq!(exit_statuses(&screen), ["0"], "{}", screen.join("\n"));
    assert!(
        screen.iter().all(|line| !line.starts_with("WORKER")),
        "{}",
        screen.join("\n")
    );
    let unwrapped = tmux.screen_unwrapped();
    assert!(
        unwrapped.contains(&command),
        "the typed line is back:\n{unwrapped}"
    );
    assert_eq!(
        tmux.alternate_screen_and_cursor(),
        (false, true),
        "screen and cursor restored"
    );
    tmux.type_line(r#"case "$(stty -a)" in *-icanon*) echo "line mode: raw";; *) echo "line mode: cooked";; esac"#);
    tmux.wait_for_screen("cooked line mode", |screen| {
        screen.iter().any(|line| line == "line mode: cooked")
    })
    .await;

    // Ctrl-C quits too, with 0.
    tmux.type_line(&command);
    tmux.wait_for_screen("the view again", |screen| row(screen, "echo").is_some())
        .await;
    tmux.press("C-c");
    let screen = tmux
        .wait_for_screen("the shell after Ctrl-C", |screen| {
            exit_statuses(screen).len() == 2
        })
        .await;
    assert_eq!(exit_statuses(&screen), ["0", "0"], "{}", screen.join("\n"));
    assert_eq!(tmux.alternate_screen_and_cursor(), (false, true));
    drop(run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_once_json_counts_what_was_processed_in_its_window() {
    let vhost = Vhost::create().await;
    let store = StoreFolder::new();
    let (_echo, echo_address) = start_with_metrics(&vhost, "warren-echo", &store).await;
    let (mut tally, tally_address) = start_with_metrics(&vhost, "warren-tally", &store).await;
    // Tally's queue exists with no consumer, and four messages wait in it.
    assert_eq!(tally.stop().await.code(), Some(0));
    for _ in 0..4 {
        let published = vhost
            .warren(&["publish", TALLY_ADD, r#"{"key":"k","amount":1}"#])
            .await;
        assert_eq!(published.code(), Some(0), "{}", published.stderr);
    }
    let run = RunFolder::with_targets(&[("echo", &echo_address), ("tally", &tally_address)]);
    // Sent before the window: not counted.
    let before = vhost
        .warren(&["request", ECHO, r#"{"text":"before"}"#, "--count", "3"])
        .await;
    assert_eq!(before.code(), Some(0), "{}", before.stderr);
    // Acked (the histogram counts a delivery when it is acked) before the window opens.
    vhost
        .wait_until_settled(ECHO_QUEUE, READY_TIMEOUT)
        .await
        .unwrap_or_else(|counts| panic!("echo's queue did not settle: {counts:?}"));

    let mut top = vhost
        .worker("warren")
        .args(&[
            "top",
            "--once",
            "--json",
            "--interval",
            "10s",
            "--run-dir",
            run.as_str(),
        ])
        .spawn();
    top.wait_for_lines(&[MEASURING], 1, READY_TIMEOUT).await;
    let window_start = Instant::now();
    // Ten requests, five of which fault (an array is not echo's object).
    let sent = vhost
        .warren(&[
            "request",
            ECHO,
            r#"{"text":"counted"}"#,
            "[1, 2, 3]",
            "--count",
            "10",
        ])
        .await;
    assert_eq!(sent.code(), Some(1), "five faults: {}", sent.stderr);
    assert_eq!(sent.stdout_lines().len(), 10);
    assert!(
        window_start.elapsed() < Duration::from_secs(8),
        "the requests took {:?}, too close to the end of the window to count on",
        window_start.elapsed()
    );
    let status = top.wait(CLI_TIMEOUT).await;
    assert_eq!(status.code(), Some(0), "{}", top.stderr());
    let snapshot: Value = serde_json::from_str(top.stdout().trim())
        .unwrap_or_else(|error| panic!("not JSON ({error}): {}", top.stdout()));
    eprintln!("{snapshot:#}");

    assert_eq!(snapshot["broker"]["status"], "connected");
    assert!(
        !snapshot["broker"]["url"]
            .as_str()
            .unwrap_or_default()
            .contains("guest:guest")
    );
    assert_eq!(snapshot["interval_seconds"], 10.0);
    assert_eq!(snapshot["problems"], serde_json::json!([]));
    let workers = snapshot["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2, "{snapshot}");

    let echo = &workers[0];
    assert_eq!(echo["worker"], "echo");
    assert_eq!(
        (echo["instances"].as_u64(), echo["up"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(echo["processed"], 10.0, "{echo}");
    assert_eq!(echo["errors"], 5.0, "{echo}");
    let window = echo["window_seconds"].as_f64().expect("a window");
    assert!((9.9..11.0).contains(&window), "{window}");
    let rate = echo["messages_per_second"].as_f64().expect("a rate");
    assert!(
        (rate * window - 10.0).abs() < 1e-6,
        "{rate} per second over {window}s"
    );
    let errors = echo["errors_per_second"].as_f64().expect("an error rate");
    assert!(
        (errors * window - 5.0).abs() < 1e-6,
        "{errors} per second over {window}s"
    );
    let p99 = echo["p99_seconds"].as_f64().expect("a p99");
    assert!(p99 > 0.0 && p99 <= 10.0, "{p99}");
    assert_eq!(echo["in_flight"], 0.0);
    assert_eq!(
        echo["queue"],
        serde_json::json!({"messages": 0, "consumers": 1})
    );

    let tally = &workers[1];
    assert_eq!(tally["worker"], "tally");
    assert_eq!(tally["up"], 0);
    assert_eq!(tally["messages_per_second"], Value::Null);
    assert_eq!(tally["p99_seconds"], Value::Null);
    assert!(
        tally["down_reason"]
            .as_str()
            .is_some_and(|reason| reason.starts_with(&tally_address)),
        "{tally}"
    );
    assert_eq!(
        tally["queue"],
        serde_json::json!({"messages": 4, "consumers": 0})
    );
    assert_eq!(tally["queue_missing"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_without_a_terminal_asks_for_once() {
    let vhost = Vhost::create().await;
    let run = RunFolder::with_targets(&[]);
    let output = vhost.warren(&["top", "--run-dir", run.as_str()]).await;
    assert_eq!(output.code(), Some(2));
    assert!(
        output.stderr.contains("stdout is not a terminal"),
        "{}",
        output.stderr
    );
    assert!(run.path().is_dir());
}
