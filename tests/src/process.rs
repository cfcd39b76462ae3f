//! Every fleet binary a test starts, as a child process: one [`WarrenCommand`] to build
//! it (broker URL, args, environment, store folder, failpoints) and one [`WarrenProcess`]
//! to drive it (readiness, signals, exit, its output).
//!
//! A process's stdout and stderr are copied line by line to the test's stderr, prefixed
//! `[<binary>:<pid>]`, and kept: a test reads the lines back to count sessions or find
//! what a failpoint logged, and a CLI run reads its stdout and stderr apart. Readiness is
//! read from the log too ([`READY_LOG`], once per session), so it means the same on the
//! shared broker, behind a proxy and on a private node, and counts sessions when several
//! instances consume one queue.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{EXIT_TIMEOUT, POLL_INTERVAL, READY_TIMEOUT, bin_path};

/// What every session of a worker logs when it starts consuming.
pub const READY_LOG: &str = "ready: consuming";

/// What a worker logs when it lost its session and builds a new one.
pub const SESSION_LOST_LOG: &str = "session lost; reconnecting";

/// How long the output of a process that exited may take to be read to its end.
const OUTPUT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A fresh folder for a worker's store under the system's temp folder, shared by every
/// instance of one test and removed when dropped.
#[derive(Debug)]
pub struct StoreFolder {
    path: PathBuf,
}

impl StoreFolder {
    /// A new, not yet existing folder (the worker creates it).
    pub fn new() -> StoreFolder {
        StoreFolder {
            path: std::env::temp_dir().join(format!("warren-e2e-store-{}", uuid::Uuid::new_v4())),
        }
    }

    /// The folder, as `WARREN_STORE__DIR` takes it.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for StoreFolder {
    fn default() -> Self {
        StoreFolder::new()
    }
}

impl Drop for StoreFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Which stream of a process a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// What a process printed so far, shared with the tasks that read its output.
#[derive(Debug, Default)]
struct Output {
    /// Every line of both streams as it came, without its line end.
    lines: Vec<String>,
    /// The bytes of stdout, exactly as read.
    stdout: Vec<u8>,
    /// The bytes of stderr, exactly as read.
    stderr: Vec<u8>,
}

type SharedOutput = Arc<Mutex<Output>>;

fn lock(output: &SharedOutput) -> MutexGuard<'_, Output> {
    output.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How to start a fleet binary: its URL, args and environment. Start it with
/// [`WarrenCommand::start`] (waits until it consumes) or [`WarrenCommand::spawn`].
///
/// Every process gets `WARREN_AMQP_URL`, `WARREN_LOG=info` and no `WARREN_FAILPOINTS` of
/// the test's own environment; what the builder adds comes after, so it wins.
#[derive(Debug, Clone)]
pub struct WarrenCommand {
    binary: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl WarrenCommand {
    /// The fleet binary `binary` (`warren-echo`, `warren-tally`, `warren`) connected to
    /// `amqp_url` (a vhost, a private node, or a proxy in front of either).
    pub fn new(binary: &str, amqp_url: &str) -> WarrenCommand {
        WarrenCommand {
            binary: binary.to_owned(),
            args: Vec::new(),
            env: vec![
                ("WARREN_AMQP_URL".into(), amqp_url.into()),
                ("WARREN_LOG".into(), "info".into()),
            ],
        }
    }

    /// Adds the command-line arguments `args`.
    pub fn args(mut self, args: &[&str]) -> WarrenCommand {
        self.args.extend(args.iter().map(OsString::from));
        self
    }

    /// Sets the environment variable `name` to `value`.
    pub fn env(mut self, name: &str, value: impl Into<OsString>) -> WarrenCommand {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Sets every environment variable of `env`.
    pub fn envs(mut self, env: &[(&str, &str)]) -> WarrenCommand {
        self.env.extend(
            env.iter()
                .map(|(name, value)| ((*name).into(), (*value).into())),
        );
        self
    }

    /// Keeps the worker's store in `store` (`WARREN_STORE__DIR`).
    pub fn store(self, store: &StoreFolder) -> WarrenCommand {
        self.env("WARREN_STORE__DIR", store.path())
    }

    /// Arms the failpoints `failpoints` (`WARREN_FAILPOINTS`, e.g. `slow_keys:k-:100`).
    pub fn failpoints(self, failpoints: &str) -> WarrenCommand {
        self.env("WARREN_FAILPOINTS", failpoints)
    }

    /// Starts the process without waiting for anything.
    ///
    /// # Panics
    /// When the binary is missing or cannot be started.
    pub fn spawn(self) -> WarrenProcess {
        let mut child = Command::new(bin_path(&self.binary))
            .args(&self.args)
            .env_remove("WARREN_FAILPOINTS")
            .envs(self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.binary));
        let pid = child
            .id()
            .expect("a process that was just started has an id");
        let prefix = format!("[{}:{pid}]", self.binary);
        let output = SharedOutput::default();
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(forward_and_keep(
                prefix.clone(),
                stdout,
                Stream::Stdout,
                Arc::clone(&output),
            ));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(forward_and_keep(
                prefix,
                stderr,
                Stream::Stderr,
                Arc::clone(&output),
            ));
        }
        WarrenProcess {
            binary: self.binary,
            pid,
            child,
            output,
            readers,
        }
    }

    /// [`WarrenCommand::spawn`], then waits until its first session consumes.
    ///
    /// # Panics
    /// When the process cannot be started, exits early or is not ready within
    /// [`READY_TIMEOUT`].
    pub async fn start(self) -> WarrenProcess {
        let mut process = self.spawn();
        process.wait_ready().await;
        process
    }
}

/// Copies each line `reader` produces to the test's stderr, prefixed by `prefix`, and
/// keeps it in `output`, until the stream ends.
fn forward_and_keep(
    prefix: String,
    reader: impl AsyncRead + Unpin + Send + 'static,
    stream: Stream,
    output: SharedOutput,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                    eprintln!("{prefix} {text}");
                    let mut output = lock(&output);
                    match stream {
                        Stream::Stdout => output.stdout.extend_from_slice(&line),
                        Stream::Stderr => output.stderr.extend_from_slice(&line),
                    }
                    output.lines.push(text);
                }
                Err(error) => {
                    eprintln!("{prefix} <cannot read output: {error}>");
                    break;
                }
            }
        }
    })
}

/// One running fleet binary. Killed (SIGKILL) when dropped; stop it cleanly with
/// [`WarrenProcess::stop`].
#[derive(Debug)]
pub struct WarrenProcess {
    binary: String,
    pid: u32,
    child: Child,
    output: SharedOutput,
    /// The tasks reading its stdout and stderr, until they are waited for.
    readers: Vec<JoinHandle<()>>,
}

impl WarrenProcess {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Every line the process printed so far (stdout and stderr, as they came).
    pub fn output_lines(&self) -> Vec<String> {
        lock(&self.output).lines.clone()
    }

    /// What the process printed on stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&lock(&self.output).stdout).into_owned()
    }

    /// What the process printed on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&lock(&self.output).stderr).into_owned()
    }

    /// The lines printed so far that contain every one of `needles`.
    pub fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        lock(&self.output)
            .lines
            .iter()
            .filter(|line| needles.iter().all(|needle| line.contains(needle)))
            .cloned()
            .collect()
    }

    /// How many lines printed so far contain every one of `needles`.
    pub fn count_lines_with(&self, needles: &[&str]) -> usize {
        lock(&self.output)
            .lines
            .iter()
            .filter(|line| needles.iter().all(|needle| line.contains(needle)))
            .count()
    }

    /// How many sessions (connection, topology, consumer) the worker started consuming in
    /// so far: 1 after start, one more after each recovery.
    pub fn sessions_ready(&self) -> usize {
        self.count_lines_with(&[READY_LOG])
    }

    /// Waits until `count` lines of the output contain every one of `needles`.
    ///
    /// # Panics
    /// When the process exits first, or the lines do not appear within `timeout`.
    pub async fn wait_for_lines(&mut self, needles: &[&str], count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        loop {
            poll.tick().await;
            let seen = self.count_lines_with(needles);
            if seen >= count {
                return;
            }
            if let Some(status) = self.try_exit_status() {
                panic!(
                    "{} (pid {}) exited with {status} while the test waited for {count} \
                     lines with {needles:?} (saw {seen})",
                    self.binary, self.pid
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} (pid {}): {count} lines with {needles:?} did not appear within \
                 {timeout:?} (saw {seen})",
                self.binary,
                self.pid
            );
        }
    }

    /// Waits until `sessions` sessions have started consuming.
    ///
    /// # Panics
    /// When the process exits first, or `timeout` passes.
    pub async fn wait_for_sessions(&mut self, sessions: usize, timeout: Duration) {
        self.wait_for_lines(&[READY_LOG], sessions, timeout).await;
    }

    /// Waits until the worker's first session consumes its work queue.
    ///
    /// # Panics
    /// When the process exits first, or is not ready within [`READY_TIMEOUT`].
    pub async fn wait_ready(&mut self) {
        self.wait_for_sessions(1, READY_TIMEOUT).await;
    }

    /// Sends SIGTERM: a worker should stop consuming, finish what is in flight and exit 0.
    ///
    /// # Panics
    /// When the signal cannot be sent (the process is gone).
    pub fn sigterm(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// Sends SIGKILL: the process ends at once, acking nothing more.
    ///
    /// # Panics
    /// When the signal cannot be sent (the process is gone).
    pub fn sigkill(&self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = i32::try_from(self.pid).expect("process ids fit in an i32");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap_or_else(|error| {
            panic!("cannot send {signal} to {} ({pid}): {error}", self.binary)
        });
    }

    /// Waits for the process to exit, then for its output to be read to the end (so what
    /// it printed last is in [`WarrenProcess::output_lines`]).
    ///
    /// # Panics
    /// When it still runs after `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} (pid {}) still runs after {timeout:?}",
                    self.binary, self.pid
                )
            })
            .unwrap_or_else(|error| panic!("cannot wait for {}: {error}", self.binary));
        for reader in std::mem::take(&mut self.readers) {
            // A grandchild holding the pipe open keeps the reader going: not worth a hang.
            let _ = tokio::time::timeout(OUTPUT_DRAIN_TIMEOUT, reader).await;
        }
        status
    }

    /// Sends SIGTERM and waits up to [`EXIT_TIMEOUT`] for the process to exit.
    pub async fn stop(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait(EXIT_TIMEOUT).await
    }

    /// The exit status if the process has already exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|error| panic!("cannot poll {}: {error}", self.binary))
    }
}
