//! `warren up` end to end: the real binary, its real workers.
//!
//! - A first run with nothing on 127.0.0.1:5672 starts a RabbitMQ node of the fleet's
//!   own, the fleet answers requests through it, and a SIGTERM stops both, leaving
//!   nothing running. It runs in a network namespace of the test's own, where nothing
//!   listens on 5672: the shared broker of the root namespace is never touched.
//! - No orphans: a SIGKILLed `warren up` takes its workers with it; SIGHUP drains like
//!   SIGTERM; a second `warren up` on the same run folder refuses while the first runs
//!   (and `--add-instances` runs beside it). These use a vhost of the shared broker.
//! - Observability: every worker it runs is listed in `prometheus/targets.json` and
//!   serves its histogram there, and logs to the run folder's `logs/`.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use warren_e2e::metrics::http_get;
use warren_e2e::{CLI_TIMEOUT, EXIT_TIMEOUT, READY_TIMEOUT, Vhost, bin_path};

/// How long `warren up` may take to start a broker node of its own: a boot takes about
/// 8 s on a quiet small machine, several times that beside a build.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(150);

/// How long workers may take to notice that their supervisor is gone and drain.
const ORPHAN_EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// The pause between two polls of a process or a namespace.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What every worker session logs when it starts consuming.
const READY_LOG: &str = "ready: consuming";

/// A folder of the test's own under the system's temp folder, removed when dropped.
struct ScratchFolder(PathBuf);

impl ScratchFolder {
    fn new() -> ScratchFolder {
        let path = std::env::temp_dir().join(format!("warren-up-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&path).expect("create a scratch folder");
        ScratchFolder(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A network namespace of the test's own, with only its loopback interface, up. When
/// dropped, whatever still runs in it is killed and it is deleted.
struct NetworkNamespace {
    name: String,
}

impl NetworkNamespace {
    fn create() -> NetworkNamespace {
        let name = format!("wup-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        run_ip(&["netns", "add", &name]);
        let namespace = NetworkNamespace { name };
        run_ip(&[
            "netns",
            "exec",
            &namespace.name,
            "ip",
            "link",
            "set",
            "lo",
            "up",
        ]);
        namespace
    }

    /// `ip netns exec <name> <program>`, which runs the program itself (same pid).
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// The processes running in the namespace.
    fn pids(&self) -> Vec<i32> {
        let output = std::process::Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .expect("run `ip netns pids`");
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .collect()
    }
}

impl Drop for NetworkNamespace {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `ip <args>`, panicking with its output when it fails.
fn run_ip(args: &[&str]) {
    let output = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run `ip {}`: {error}", args.join(" ")));
    assert!(
        output.status.success(),
        "`ip {}` failed with {} (these tests run as root, with iproute2): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A running `warren up`, its output copied to the test's stderr and kept. Killed
/// (SIGKILL) when dropped, which its workers follow.
struct Up {
    child: Child,
    pid: u32,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Up {
    /// Starts `command` (a `warren up`), in `folder` with `WARREN_RUN_DIR=folder/run`.
    fn spawn(mut command: Command, folder: &Path) -> Up {
        command
            .current_dir(folder)
            .env("WARREN_RUN_DIR", folder.join("run"))
            .env("WARREN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start warren up");
        let pid = child.id().expect("a process just started has an id");
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            keep_lines(format!("[up:{pid}]"), stdout, Arc::clone(&lines));
        }
        if let Some(stderr) = child.stderr.take() {
            keep_lines(format!("[up:{pid}]"), stderr, Arc::clone(&lines));
        }
        Up { child, pid, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("the lines lock").clone()
    }

    fn count(&self, needles: &[&str]) -> usize {
        self.lines()
            .iter()
            .filter(|line| needles.iter().all(|needle| line.contains(needle)))
            .count()
    }

    /// Waits until `count` lines contain every one of `needles`.
    async fn wait_for_lines(&mut self, needles: &[&str], count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count(needles) >= count {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("poll warren up") {
                panic!("warren up exited with {status} while the test waited for {needles:?}");
            }
            assert!(
                Instant::now() < deadline,
                "no {count} lines with {needles:?} within {timeout:?}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until both workers consume.
    async fn wait_for_workers(&mut self, timeout: Duration) {
        self.wait_for_lines(&["[echo]", READY_LOG], 1, timeout)
            .await;
        self.wait_for_lines(&["[tally]", READY_LOG], 1, timeout)
            .await;
    }

    /// The pid `warren up` said it started `worker` with.
    fn worker_pid(&self, worker: &str) -> i32 {
        let prefix = format!("warren up: started {worker} (pid ");
        self.lines()
            .iter()
            .find_map(|line| line.strip_prefix(&prefix)?.strip_suffix(')')?.parse().ok())
            .unwrap_or_else(|| panic!("no `{prefix}…)` line"))
    }

    fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.pid).expect("pids fit in an i32");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
            .unwrap_or_else(|error| panic!("cannot send {signal} to warren up: {error}"));
    }

    async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("warren up still runs after {timeout:?}"))
            .expect("wait for warren up")
    }
}

/// Copies each line of `reader` to the test's stderr with `prefix`, and keeps it.
fn keep_lines(
    prefix: String,
    reader: impl AsyncRead + Unpin + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(reader).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            eprintln!("{prefix} {line}");
            lines.lock().expect("the lines lock").push(line);
        }
    });
}

/// Whether process `pid` exists and is not a zombie.
fn process_alive(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

/// Waits until none of `pids` runs.
async fn wait_until_gone(pids: &[i32], timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|pid| process_alive(*pid))
            .collect();
        if alive.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still running after {timeout:?}: {alive:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// What `pids` run, one line per process, for failure messages.
fn describe_processes(pids: &[i32]) -> String {
    pids.iter()
        .map(|pid| {
            let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let command: Vec<String> = command
                .split(|byte| *byte == 0)
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect();
            format!("{pid}: {}", command.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_without_a_broker_starts_one_and_stops_it_with_the_fleet() {
    let namespace = NetworkNamespace::create();
    let folder = ScratchFolder::new();
    let warren = bin_path("warren");

    let mut command = namespace.command(&warren);
    command.arg("up").env_remove("WARREN_AMQP_URL");
    let mut up = Up::spawn(command, folder.path());
    up.wait_for_lines(
        &["warren up: started a broker on 127.0.0.1:5672"],
        1,
        NODE_READY_TIMEOUT,
    )
    .await;
    up.wait_for_workers(READY_TIMEOUT).await;
    let started_line = up
        .lines()
        .into_iter()
        .find(|line| line.contains("started a broker"))
        .expect("the line just seen");
    assert!(
        started_line.contains("RabbitMQ node warren-"),
        "{started_line}"
    );
    assert!(started_line.contains("/run/broker/"), "{started_line}");
    assert!(folder.path().join("run/broker/mnesia").is_dir());

    // Another warren command of the same namespace works with its defaults.
    let mut request = namespace.command(&warren);
    request
        .args(["request", "dev.warren.echo.v1", "{}"])
        .env_remove("WARREN_AMQP_URL")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let answer = tokio::time::timeout(CLI_TIMEOUT, request.output())
        .await
        .expect("warren request in time")
        .expect("run warren request");
    let stdout = String::from_utf8_lossy(&answer.stdout);
    assert_eq!(
        answer.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&answer.stderr)
    );
    assert!(stdout.contains("dev.warren.echo.replied.v1"), "{stdout}");

    up.signal(Signal::SIGTERM);
    let status = up.wait_exit(EXIT_TIMEOUT + Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0), "{:?}", up.lines());
    assert_eq!(up.count(&["every worker stopped cleanly"]), 1);
    assert_eq!(up.count(&["stopped the broker node warren-"]), 1);

    // Nothing of the fleet is left in the namespace: no worker, no node, no epmd.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = namespace.pids();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running in the namespace after warren up exited:\n{}",
            describe_processes(&left)
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Starts `warren up` against `vhost`, in `folder`, with `extra_args`.
fn up_in_vhost(vhost: &Vhost, folder: &Path, extra_args: &[&str]) -> Up {
    let mut command = Command::new(bin_path("warren"));
    command
        .arg("up")
        .args(extra_args)
        .env("WARREN_AMQP_URL", vhost.amqp_url());
    Up::spawn(command, folder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_warren_up_takes_its_workers_with_it() {
    let vhost = Vhost::create().await;
    let folder = ScratchFolder::new();
    let mut up = up_in_vhost(&vhost, folder.path(), &[]);
    up.wait_for_workers(READY_TIMEOUT).await;
    let workers = [up.worker_pid("echo"), up.worker_pid("tally")];

    up.signal(Signal::SIGKILL);
    let status = up.wait_exit(EXIT_TIMEOUT).await;
    assert_eq!(status.code(), None, "killed by a signal");
    wait_until_gone(
        &workers,
        ORPHAN_EXIT_TIMEOUT,
        "the workers of a killed warren up",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_warren_up_per_run_folder_and_sighup_drains_it() {
    let vhost = Vhost::create().await;
    let folder = ScratchFolder::new();
    let mut first = up_in_vhost(&vhost, folder.path(), &[]);
    first.wait_for_workers(READY_TIMEOUT).await;
    let workers = [first.worker_pid("echo"), first.worker_pid("tally")];

    // A second one on the same run folder refuses, naming the first.
    let mut second = Command::new(bin_path("warren"));
    second
        .arg("up")
        .current_dir(folder.path())
        .env("WARREN_RUN_DIR", folder.path().join("run"))
        .env("WARREN_AMQP_URL", vhost.amqp_url())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let refused = tokio::time::timeout(CLI_TIMEOUT, second.output())
        .await
        .expect("the second warren up ends in time")
        .expect("run the second warren up");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.pid)), "{stderr}");
    assert!(!stderr.contains("started echo"), "{stderr}");

    // Unless asked to add instances.
    let mut beside = up_in_vhost(
        &vhost,
        folder.path(),
        &["--add-instances", "--only", "echo"],
    );
    beside
        .wait_for_lines(
            &["adding instances beside", &format!("pid {}", first.pid)],
            1,
            READY_TIMEOUT,
        )
        .await;
    beside
        .wait_for_lines(&["[echo]", READY_LOG], 1, READY_TIMEOUT)
        .await;
    let beside_worker = beside.worker_pid("echo");
    beside.signal(Signal::SIGTERM);
    assert_eq!(beside.wait_exit(EXIT_TIMEOUT).await.code(), Some(0));
    wait_until_gone(&[beside_worker], EXIT_TIMEOUT, "the added echo").await;

    // SIGHUP (the terminal closed) drains like SIGTERM.
    first.signal(Signal::SIGHUP);
    let status = first
        .wait_exit(EXIT_TIMEOUT + Duration::from_secs(10))
        .await;
    assert_eq!(status.code(), Some(0), "{:?}", first.lines());
    // Every worker it started, however many binaries the build holds beside it.
    let started = first.count(&["warren up: started "]);
    assert!(started >= 2, "{:?}", first.lines());
    let stopping = format!("SIGHUP received; stopping {started} worker(s)");
    assert_eq!(first.count(&[&stopping]), 1, "{:?}", first.lines());
    assert_eq!(first.count(&["every worker stopped cleanly"]), 1);
    wait_until_gone(&workers, EXIT_TIMEOUT, "the drained workers").await;
}

/// Every worker `warren up` runs serves its metrics, histogram included, at the address
/// `targets.json` lists for it, and writes its log file in the run folder's `logs/`;
/// when the fleet stops, the targets are withdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warren_up_lists_every_worker_for_prometheus_and_logs_to_the_run_folder() {
    let vhost = Vhost::create().await;
    let folder = ScratchFolder::new();
    let mut up = up_in_vhost(&vhost, folder.path(), &["--only", "echo,tally"]);
    up.wait_for_workers(READY_TIMEOUT).await;
    let run = folder.path().join("run");
    let targets_file = run.join("prometheus").join("targets.json");
    let targets: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&targets_file).expect("targets.json"))
            .expect("JSON");
    let mut workers = Vec::new();
    for group in targets.as_array().expect("a list of target groups") {
        let worker = group["labels"]["worker"].as_str().expect("a worker label");
        let address = group["targets"][0].as_str().expect("an address");
        let (status, body) = http_get(address, "/metrics").await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{worker} at {address}");
        let bucket = format!("messaging_process_duration_seconds_bucket{{worker=\"{worker}\"");
        assert!(
            body.contains(&bucket),
            "{worker} serves no histogram: {body}"
        );
        workers.push(worker.to_owned());
    }
    workers.sort();
    assert_eq!(workers, ["echo", "tally"]);

    let logs: Vec<String> = std::fs::read_dir(run.join("logs"))
        .expect("the run folder's logs")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    for worker in &workers {
        assert!(
            logs.iter()
                .any(|name| name.starts_with(&format!("{worker}.")) && name.ends_with(".log")),
            "no log file of {worker}: {logs:?}"
        );
    }

    up.signal(Signal::SIGTERM);
    assert_eq!(up.wait_exit(EXIT_TIMEOUT).await.code(), Some(0));
    let withdrawn = std::fs::read_to_string(&targets_file).expect("targets.json");
    assert_eq!(withdrawn.trim(), "[]");
}
