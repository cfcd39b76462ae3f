//! `warren up`: run the fleet as child processes in the foreground.
//!
//! Each worker binary runs under its own [`Supervisor`], a tokio task tracked by a
//! [`TaskTracker`]. A supervisor re-prints its child's output with a `[name] ` prefix,
//! restarts a child that exits on its own (exponential backoff with jitter), and on
//! shutdown sends SIGTERM, waits for the grace period, then sends SIGKILL.
//!
//! Children run in their own process group, so a Ctrl-C in the terminal reaches only
//! `warren up`, which then stops them in order instead of racing them.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The workers of the fleet. Worker `x` is the binary `warren-x`.
pub const FLEET: &[&str] = &["echo", "tally"];

/// How long children may take to stop after SIGTERM, unless `--grace` says otherwise.
const DEFAULT_GRACE_PERIOD: &str = "30s";

/// A child line longer than this is re-printed in pieces of this size.
const MAXIMUM_LINE_BYTES: usize = 64 * 1024;

/// How long to wait for a child's output to drain after it exited. A grandchild that
/// inherited the pipes can keep them open forever; after this we stop reading.
const OUTPUT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Arguments of `warren up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Run only these workers: a comma-separated list of fleet names, e.g. `echo,tally`.
    #[arg(long, value_name = "WORKERS", value_parser = parse_worker_selection)]
    only: Option<WorkerSelection>,

    /// Passed to every worker as `--prefetch N`: how many unacked deliveries each holds.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    prefetch: Option<u16>,

    /// How long workers may take to stop after SIGTERM before they are killed, e.g. `30s`,
    /// `500ms`, `2m`.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_GRACE_PERIOD,
          value_parser = parse_grace_period)]
    grace: Duration,

    /// The directory holding the `warren-<worker>` binaries. Default: the directory of the
    /// running `warren` executable.
    #[arg(long, value_name = "DIR", env = "WARREN_BIN_DIR")]
    bin_dir: Option<PathBuf>,
}

/// Runs the fleet until Ctrl-C or SIGTERM, then stops it.
///
/// Exits with 0 when every worker stopped cleanly (status 0 within the grace period),
/// and with 1 otherwise.
pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let worker_names = match args.only {
        Some(selection) => selection.worker_names,
        None => FLEET.to_vec(),
    };
    let binary_directory = match args.bin_dir {
        Some(directory) => directory,
        None => directory_of_current_executable()?,
    };
    let programs = find_worker_programs(&binary_directory, &worker_names, args.prefetch)?;

    // Listen before starting children, so no signal falls between the two.
    let mut interrupt_signals =
        signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate_signals =
        signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;

    let (output, output_writers) = start_output_writers();
    let shutdown = FleetShutdown::new();
    let worker_count = programs.len();
    let options = SupervisionOptions {
        grace_period: args.grace,
        backoff_policy: BackoffPolicy::default(),
    };
    let fleet = supervise_fleet(programs, options, output.clone(), shutdown.clone());
    tokio::pin!(fleet);

    let report = loop {
        tokio::select! {
            report = &mut fleet => break report,
            signal_name = next_stop_signal(&mut interrupt_signals, &mut terminate_signals) => {
                let message = if shutdown.stop_requested.is_cancelled() {
                    shutdown.kill_requested.cancel();
                    format!("{signal_name} received again; killing the workers now")
                } else {
                    shutdown.stop_requested.cancel();
                    format!(
                        "{signal_name} received; stopping {worker_count} worker(s) \
                         (grace {}; send it again to kill them now)",
                        human_duration(args.grace),
                    )
                };
                write_line(&output.stderr, format!("warren up: {message}\n")).await;
            }
        }
    };

    let unclean_workers = report.unclean_worker_names();
    let (summary, exit_code) = if unclean_workers.is_empty() {
        ("every worker stopped cleanly".to_owned(), ExitCode::SUCCESS)
    } else {
        let names = unclean_workers.join(", ");
        (format!("did not stop cleanly: {names}"), ExitCode::FAILURE)
    };
    write_line(&output.stderr, format!("warren up: {summary}\n")).await;
    // The writers end once the last sender is gone; wait so no line is lost.
    drop(output);
    output_writers.finish().await;
    Ok(exit_code)
}

/// Waits for the next SIGINT or SIGTERM and returns its name.
async fn next_stop_signal(
    interrupt_signals: &mut tokio::signal::unix::Signal,
    terminate_signals: &mut tokio::signal::unix::Signal,
) -> &'static str {
    tokio::select! {
        Some(()) = interrupt_signals.recv() => "SIGINT",
        Some(()) = terminate_signals.recv() => "SIGTERM",
        // Both streams ended: no signal can arrive any more.
        else => std::future::pending().await,
    }
}

/// A problem with the arguments of `warren up` or with the fleet's binaries.
#[derive(Debug)]
pub enum UpError {
    /// `--only` names a worker that is not in the fleet.
    UnknownWorker {
        /// The name as given.
        name: String,
    },
    /// `--only` names no worker at all.
    NoWorkerSelected,
    /// `--grace` is not a duration.
    InvalidGracePeriod {
        /// The text as given.
        text: String,
        /// Why it is not a duration.
        reason: String,
    },
    /// `--grace` is negative.
    NegativeGracePeriod {
        /// The text as given.
        text: String,
    },
    /// Worker binaries are not where they should be.
    MissingWorkerBinaries {
        /// Every path that was looked for and not found.
        missing_paths: Vec<PathBuf>,
    },
}

impl fmt::Display for UpError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownWorker { name } => write!(
                formatter,
                "unknown worker `{name}`; the fleet is: {}",
                FLEET.join(", "),
            ),
            Self::NoWorkerSelected => write!(
                formatter,
                "no worker named; the fleet is: {}",
                FLEET.join(", "),
            ),
            Self::InvalidGracePeriod { text, reason } => write!(
                formatter,
                "`{text}` is not a duration such as `30s`, `500ms` or `2m`: {reason}",
            ),
            Self::NegativeGracePeriod { text } => {
                write!(formatter, "the grace period `{text}` is negative")
            }
            Self::MissingWorkerBinaries { missing_paths } => {
                let paths: Vec<String> = missing_paths
                    .iter()
                    .map(|path| path.display().to_string())
                    .collect();
                write!(
                    formatter,
                    "worker binary not found: {}; build the fleet first with \
                     `cargo build --workspace` (or point --bin-dir at the binaries)",
                    paths.join(", "),
                )
            }
        }
    }
}

impl std::error::Error for UpError {}

/// The workers chosen with `--only`, in the order given, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSelection {
    worker_names: Vec<&'static str>,
}

/// Parses the `--only` list against [`FLEET`].
fn parse_worker_selection(text: &str) -> Result<WorkerSelection, UpError> {
    select_workers(text, FLEET)
}

/// Parses a comma-separated list of worker names, each of which must be in `fleet`.
fn select_workers(text: &str, fleet: &[&'static str]) -> Result<WorkerSelection, UpError> {
    let mut worker_names = Vec::new();
    let given_names = text
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty());
    for given_name in given_names {
        let fleet_name = fleet
            .iter()
            .copied()
            .find(|fleet_name| *fleet_name == given_name)
            .ok_or_else(|| UpError::UnknownWorker {
                name: given_name.to_owned(),
            })?;
        if !worker_names.contains(&fleet_name) {
            worker_names.push(fleet_name);
        }
    }
    if worker_names.is_empty() {
        return Err(UpError::NoWorkerSelected);
    }
    Ok(WorkerSelection { worker_names })
}

/// Parses `--grace`: a friendly (`30s`, `1m 30s`, `500ms`) or ISO 8601 duration.
fn parse_grace_period(text: &str) -> Result<Duration, UpError> {
    let signed_duration: jiff::SignedDuration =
        text.trim()
            .parse()
            .map_err(|error: jiff::Error| UpError::InvalidGracePeriod {
                text: text.to_owned(),
                reason: error.to_string(),
            })?;
    Duration::try_from(signed_duration).map_err(|_| UpError::NegativeGracePeriod {
        text: text.to_owned(),
    })
}

/// The directory of the running `warren` executable: where the worker binaries live in
/// `target/debug`, `target/release` and an install directory.
fn directory_of_current_executable() -> anyhow::Result<PathBuf> {
    let executable_path =
        std::env::current_exe().context("cannot find the path of the warren executable")?;
    let directory = executable_path.parent().with_context(|| {
        format!(
            "the warren executable {} has no parent directory",
            executable_path.display()
        )
    })?;
    Ok(directory.to_path_buf())
}

/// One worker binary to run, with its arguments.
#[derive(Debug, Clone)]
pub struct WorkerProgram {
    /// The fleet name, used as the output prefix.
    pub worker_name: String,
    /// The binary to run.
    pub binary_path: PathBuf,
    /// Its command-line arguments.
    pub arguments: Vec<OsString>,
}

/// The path of worker `worker_name`'s binary in `binary_directory`.
fn worker_binary_path(binary_directory: &Path, worker_name: &str) -> PathBuf {
    let file_name = format!("warren-{worker_name}{}", std::env::consts::EXE_SUFFIX);
    binary_directory.join(file_name)
}

/// Finds every worker's binary, and fails naming all missing ones at once.
fn find_worker_programs(
    binary_directory: &Path,
    worker_names: &[&str],
    prefetch: Option<u16>,
) -> Result<Vec<WorkerProgram>, UpError> {
    let mut arguments = Vec::new();
    if let Some(prefetch) = prefetch {
        arguments.push(OsString::from("--prefetch"));
        arguments.push(OsString::from(prefetch.to_string()));
    }
    let mut programs = Vec::new();
    let mut missing_paths = Vec::new();
    for worker_name in worker_names {
        let binary_path = worker_binary_path(binary_directory, worker_name);
        if binary_path.is_file() {
            programs.push(WorkerProgram {
                worker_name: (*worker_name).to_owned(),
                binary_path,
                arguments: arguments.clone(),
            });
        } else {
            missing_paths.push(binary_path);
        }
    }
    if missing_paths.is_empty() {
        Ok(programs)
    } else {
        Err(UpError::MissingWorkerBinaries { missing_paths })
    }
}

/// How restarts are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The delay before the first restart (before jitter).
    pub initial_delay: Duration,
    /// No delay is longer than this.
    pub maximum_delay: Duration,
    /// A child that stayed up this long counts as healthy: its next restart starts over
    /// from `initial_delay`.
    pub stable_uptime: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(250),
            maximum_delay: Duration::from_secs(30),
            stable_uptime: Duration::from_secs(60),
        }
    }
}

/// The delay before restart number `consecutive_restarts` (from 0), before jitter:
/// `initial_delay * 2^consecutive_restarts`, capped at `maximum_delay`.
fn exponential_delay(policy: &BackoffPolicy, consecutive_restarts: u32) -> Duration {
    let factor = 2_u32.checked_pow(consecutive_restarts).unwrap_or(u32::MAX);
    policy
        .initial_delay
        .checked_mul(factor)
        .map_or(policy.maximum_delay, |delay| {
            delay.min(policy.maximum_delay)
        })
}

/// "Equal jitter": a delay drawn from `[delay / 2, delay]`, so children that crashed
/// together (say, the broker went away) do not all come back at the same instant.
/// `random_fraction` is in `[0, 1]`.
fn with_jitter(delay: Duration, random_fraction: f64) -> Duration {
    let half_delay = delay / 2;
    half_delay + half_delay.mul_f64(random_fraction.clamp(0.0, 1.0))
}

/// The restart delays of one child.
#[derive(Debug, Clone)]
pub struct RestartBackoff {
    policy: BackoffPolicy,
    consecutive_restarts: u32,
}

impl RestartBackoff {
    /// A backoff that has not restarted anything yet.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            consecutive_restarts: 0,
        }
    }

    /// The delay before restarting a child that ran for `uptime` and exited.
    pub fn delay_after_exit(&mut self, uptime: Duration, random_fraction: f64) -> Duration {
        if uptime >= self.policy.stable_uptime {
            self.consecutive_restarts = 0;
        }
        let delay = exponential_delay(&self.policy, self.consecutive_restarts);
        self.consecutive_restarts = self.consecutive_restarts.saturating_add(1);
        with_jitter(delay, random_fraction)
    }
}

/// A number in `[0, 1)`, random enough for jitter.
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    // Each RandomState has fresh keys, so hashing nothing gives fresh bits.
    let random_bits = RandomState::new().hash_one(());
    // The top 53 bits fit an f64 exactly.
    (random_bits >> 11) as f64 / (1_u64 << 53) as f64
}

/// Whole lines (newline included) on their way to one output stream. One writer owns
/// each stream, so lines never interleave; a full channel slows the forwarders down, and
/// with them the children, instead of buffering without bound.
pub type LineSender = mpsc::Sender<String>;

/// How many lines may wait for a slow terminal or pipe.
const OUTPUT_LINE_CAPACITY: usize = 1024;

/// Where children's output and `warren up`'s own messages go.
#[derive(Debug, Clone)]
pub struct OutputSinks {
    /// Children's stdout lines.
    pub stdout: LineSender,
    /// Children's stderr lines and `warren up`'s messages.
    pub stderr: LineSender,
}

/// The blocking tasks writing to this process's stdout and stderr.
struct OutputWriters {
    stdout: JoinHandle<()>,
    stderr: JoinHandle<()>,
}

impl OutputWriters {
    /// Waits until every line is written. Every [`OutputSinks`] clone must be dropped
    /// first, or this never returns.
    async fn finish(self) {
        let _ = self.stdout.await;
        let _ = self.stderr.await;
    }
}

/// Starts one writer for this process's stdout and one for its stderr.
fn start_output_writers() -> (OutputSinks, OutputWriters) {
    let (stdout_sender, stdout_receiver) = mpsc::channel(OUTPUT_LINE_CAPACITY);
    let (stderr_sender, stderr_receiver) = mpsc::channel(OUTPUT_LINE_CAPACITY);
    let writers = OutputWriters {
        stdout: tokio::task::spawn_blocking(move || {
            write_lines_blocking(stdout_receiver, std::io::stdout());
        }),
        stderr: tokio::task::spawn_blocking(move || {
            write_lines_blocking(stderr_receiver, std::io::stderr());
        }),
    };
    let sinks = OutputSinks {
        stdout: stdout_sender,
        stderr: stderr_sender,
    };
    (sinks, writers)
}

/// Writes lines until every sender is gone. After a write error (a closed terminal) it
/// keeps receiving and drops the lines, so nobody waits on it.
fn write_lines_blocking(mut receiver: mpsc::Receiver<String>, mut stream: impl io::Write) {
    let mut stream_works = true;
    while let Some(line) = receiver.blocking_recv() {
        if stream_works {
            stream_works = stream
                .write_all(line.as_bytes())
                .and_then(|()| stream.flush())
                .is_ok();
        }
    }
}

/// Queues one whole line for printing. Returns `false` when the writer is gone.
async fn write_line(sink: &LineSender, line: String) -> bool {
    sink.send(line).await.is_ok()
}

/// Reads up to and including the next `\n`, or `maximum_bytes` bytes, into `line`.
/// Returns `false` at the end of the stream.
async fn read_capped_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    maximum_bytes: usize,
) -> io::Result<bool> {
    line.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(!line.is_empty());
        }
        let room = maximum_bytes.saturating_sub(line.len());
        let window = &available[..available.len().min(room)];
        if let Some(newline_index) = window.iter().position(|byte| *byte == b'\n') {
            line.extend_from_slice(&window[..=newline_index]);
            reader.consume(newline_index + 1);
            return Ok(true);
        }
        let taken = window.len();
        line.extend_from_slice(window);
        reader.consume(taken);
        if line.len() >= maximum_bytes {
            return Ok(true);
        }
    }
}

/// The line as re-printed: `[worker] text\n`, with invalid UTF-8 replaced.
fn prefixed_line(worker_name: &str, raw_line: &[u8]) -> String {
    let without_newline = raw_line.strip_suffix(b"\n").unwrap_or(raw_line);
    let without_carriage_return = without_newline
        .strip_suffix(b"\r")
        .unwrap_or(without_newline);
    let text = String::from_utf8_lossy(without_carriage_return);
    format!("[{worker_name}] {text}\n")
}

/// Re-prints every line of `reader` to `sink` with the worker's prefix, until the end of
/// the stream. Keeps reading when the sink fails, so the child never blocks on a full
/// pipe.
async fn forward_lines<R: AsyncBufRead + Unpin>(
    mut reader: R,
    worker_name: String,
    sink: LineSender,
) {
    let mut raw_line = Vec::new();
    let mut sink_works = true;
    while let Ok(true) = read_capped_line(&mut reader, &mut raw_line, MAXIMUM_LINE_BYTES).await {
        if sink_works {
            sink_works = write_line(&sink, prefixed_line(&worker_name, &raw_line)).await;
        }
    }
}

/// The two steps of stopping the fleet.
#[derive(Debug, Clone, Default)]
pub struct FleetShutdown {
    /// Send SIGTERM to every child and stop restarting them.
    pub stop_requested: CancellationToken,
    /// Do not wait for the grace period: SIGKILL now.
    pub kill_requested: CancellationToken,
}

impl FleetShutdown {
    /// Nothing requested yet.
    pub fn new() -> Self {
        Self::default()
    }
}

/// How the fleet is supervised.
#[derive(Debug, Clone, Copy)]
pub struct SupervisionOptions {
    /// How long a child may take to exit after SIGTERM.
    pub grace_period: Duration,
    /// How restarts are spaced.
    pub backoff_policy: BackoffPolicy,
}

/// How a worker ended when the fleet stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// It exited with status 0 within the grace period.
    Clean,
    /// It was waiting to be restarted: there was nothing to stop.
    NotRunning,
    /// It exited within the grace period, but not with status 0.
    Failed(ExitStatus),
    /// It was still running after the grace period (or a second signal): SIGKILL.
    Killed,
    /// Its supervisor task ended abnormally.
    SupervisorFailed(String),
}

impl StopOutcome {
    /// Whether the worker stopped as it should.
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::Clean | Self::NotRunning)
    }

    fn from_exit_status(exit_status: ExitStatus) -> Self {
        if exit_status.success() {
            Self::Clean
        } else {
            Self::Failed(exit_status)
        }
    }
}

/// What a supervisor reports as it goes; `warren up` prints these to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisorEvent {
    /// A child was started.
    Started {
        /// The worker.
        worker_name: String,
        /// Its process id.
        process_id: Option<u32>,
    },
    /// A child could not be started.
    SpawnFailed {
        /// The worker.
        worker_name: String,
        /// The binary that was run.
        binary_path: PathBuf,
        /// Why it did not start.
        error: String,
        /// When it is tried again.
        retry_in: Duration,
    },
    /// A child exited on its own.
    Exited {
        /// The worker.
        worker_name: String,
        /// Its exit status, as text.
        exit_description: String,
        /// When it is restarted.
        restart_in: Duration,
    },
    /// A child was stopped for the shutdown.
    Stopped {
        /// The worker.
        worker_name: String,
        /// How it ended.
        outcome: StopOutcome,
        /// The grace period it had.
        grace_period: Duration,
    },
}

impl fmt::Display for SupervisorEvent {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Started {
                worker_name,
                process_id: Some(process_id),
            } => write!(formatter, "started {worker_name} (pid {process_id})"),
            Self::Started {
                worker_name,
                process_id: None,
            } => write!(formatter, "started {worker_name}"),
            Self::SpawnFailed {
                worker_name,
                binary_path,
                error,
                retry_in,
            } => write!(
                formatter,
                "cannot start {worker_name} ({}): {error}; retrying in {}",
                binary_path.display(),
                human_duration(*retry_in),
            ),
            Self::Exited {
                worker_name,
                exit_description,
                restart_in,
            } => write!(
                formatter,
                "{worker_name} exited with {exit_description}; restarting in {}",
                human_duration(*restart_in),
            ),
            Self::Stopped {
                worker_name,
                outcome,
                grace_period,
            } => match outcome {
                StopOutcome::Clean => write!(formatter, "{worker_name} stopped"),
                StopOutcome::NotRunning => {
                    write!(
                        formatter,
                        "{worker_name} was waiting to restart; not restarted"
                    )
                }
                StopOutcome::Failed(exit_status) => {
                    write!(formatter, "{worker_name} stopped with {exit_status}")
                }
                StopOutcome::Killed => write!(
                    formatter,
                    "{worker_name} did not stop within {}; killed it",
                    human_duration(*grace_period),
                ),
                StopOutcome::SupervisorFailed(reason) => {
                    write!(formatter, "{worker_name}: supervisor failed: {reason}")
                }
            },
        }
    }
}

/// A duration rounded to milliseconds, e.g. `250ms`, `1.5s`, `30s`.
fn human_duration(duration: Duration) -> String {
    let milliseconds = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    format!("{:?}", Duration::from_millis(milliseconds))
}

/// What every worker's supervisor reported at the end.
#[derive(Debug, Clone)]
pub struct FleetReport {
    /// Each worker's name and how it stopped, in fleet order.
    pub outcomes: Vec<(String, StopOutcome)>,
}

impl FleetReport {
    /// The workers that did not stop cleanly.
    pub fn unclean_worker_names(&self) -> Vec<&str> {
        self.outcomes
            .iter()
            .filter(|(_, outcome)| !outcome.is_clean())
            .map(|(worker_name, _)| worker_name.as_str())
            .collect()
    }
}

/// Runs every program under its own supervisor until `shutdown.stop_requested` and all
/// children have ended. Supervisor events are printed to `output.stderr`.
pub async fn supervise_fleet(
    programs: Vec<WorkerProgram>,
    options: SupervisionOptions,
    output: OutputSinks,
    shutdown: FleetShutdown,
) -> FleetReport {
    let tracker = TaskTracker::new();
    let (event_sender, event_receiver) = mpsc::unbounded_channel();
    tracker.spawn(print_events(event_receiver, output.stderr.clone()));

    let mut supervisor_tasks = Vec::new();
    for program in programs {
        let worker_name = program.worker_name.clone();
        let supervisor = Supervisor {
            program,
            options,
            output: output.clone(),
            events: event_sender.clone(),
            tracker: tracker.clone(),
        };
        let task = tracker.spawn(supervisor.run(shutdown.clone()));
        supervisor_tasks.push((worker_name, task));
    }
    // The printer ends once every supervisor has dropped its sender.
    drop(event_sender);
    tracker.close();
    tracker.wait().await;

    let mut outcomes = Vec::new();
    for (worker_name, task) in supervisor_tasks {
        let outcome = task
            .await
            .unwrap_or_else(|join_error| StopOutcome::SupervisorFailed(join_error.to_string()));
        outcomes.push((worker_name, outcome));
    }
    FleetReport { outcomes }
}

/// Prints supervisor events until every sender is gone.
async fn print_events(
    mut event_receiver: mpsc::UnboundedReceiver<SupervisorEvent>,
    sink: LineSender,
) {
    while let Some(event) = event_receiver.recv().await {
        write_line(&sink, format!("warren up: {event}\n")).await;
    }
}

/// Runs one worker: starts it, restarts it when it exits, stops it on shutdown.
pub struct Supervisor {
    /// What to run.
    pub program: WorkerProgram,
    /// Grace period and backoff.
    pub options: SupervisionOptions,
    /// Where the child's output goes.
    pub output: OutputSinks,
    /// Where to report starts, exits and stops.
    pub events: mpsc::UnboundedSender<SupervisorEvent>,
    /// Tracks the output-forwarding tasks.
    pub tracker: TaskTracker,
}

impl Supervisor {
    /// Supervises until `shutdown.stop_requested`, then stops the child and says how.
    pub async fn run(self, shutdown: FleetShutdown) -> StopOutcome {
        let mut backoff = RestartBackoff::new(self.options.backoff_policy);
        let outcome = loop {
            if shutdown.stop_requested.is_cancelled() {
                break StopOutcome::NotRunning;
            }
            let started_at = Instant::now();
            let restart_delay = match self.start_child() {
                Err(error) => {
                    let retry_in = backoff.delay_after_exit(Duration::ZERO, random_fraction());
                    self.report(SupervisorEvent::SpawnFailed {
                        worker_name: self.program.worker_name.clone(),
                        binary_path: self.program.binary_path.clone(),
                        error: error.to_string(),
                        retry_in,
                    });
                    retry_in
                }
                Ok(mut running_child) => {
                    self.report(SupervisorEvent::Started {
                        worker_name: self.program.worker_name.clone(),
                        process_id: running_child.process_id,
                    });
                    let wait_result = tokio::select! {
                        wait_result = running_child.child.wait() => wait_result,
                        () = shutdown.stop_requested.cancelled() => {
                            break running_child
                                .stop(self.options.grace_period, &shutdown.kill_requested)
                                .await;
                        }
                    };
                    running_child.finish_output().await;
                    if shutdown.stop_requested.is_cancelled() {
                        // It exited just as the stop began: that is its stop.
                        break match wait_result {
                            Ok(exit_status) => StopOutcome::from_exit_status(exit_status),
                            Err(error) => StopOutcome::SupervisorFailed(error.to_string()),
                        };
                    }
                    let exit_description = match wait_result {
                        Ok(exit_status) => exit_status.to_string(),
                        Err(error) => format!("an unknown status (waiting failed: {error})"),
                    };
                    let restart_in =
                        backoff.delay_after_exit(started_at.elapsed(), random_fraction());
                    self.report(SupervisorEvent::Exited {
                        worker_name: self.program.worker_name.clone(),
                        exit_description,
                        restart_in,
                    });
                    restart_in
                }
            };
            tokio::select! {
                () = tokio::time::sleep(restart_delay) => {}
                () = shutdown.stop_requested.cancelled() => break StopOutcome::NotRunning,
            }
        };
        self.report(SupervisorEvent::Stopped {
            worker_name: self.program.worker_name.clone(),
            outcome: outcome.clone(),
            grace_period: self.options.grace_period,
        });
        outcome
    }

    fn report(&self, event: SupervisorEvent) {
        // The printer outlives every supervisor, so this only fails in tests that
        // dropped the receiver on purpose.
        let _ = self.events.send(event);
    }

    /// Starts the child with piped output and forwards its lines.
    fn start_child(&self) -> io::Result<RunningChild> {
        let mut command = Command::new(&self.program.binary_path);
        command
            .args(&self.program.arguments)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a terminal Ctrl-C reaches only warren.
            .process_group(0)
            // If warren itself fails before reaping the child, do not leave it behind.
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let process_id = child.id();
        let mut output_forwarders = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            output_forwarders.push(self.tracker.spawn(forward_lines(
                BufReader::new(stdout),
                self.program.worker_name.clone(),
                self.output.stdout.clone(),
            )));
        }
        if let Some(stderr) = child.stderr.take() {
            output_forwarders.push(self.tracker.spawn(forward_lines(
                BufReader::new(stderr),
                self.program.worker_name.clone(),
                self.output.stderr.clone(),
            )));
        }
        Ok(RunningChild {
            child,
            process_id,
            output_forwarders,
        })
    }
}

/// A started child and the tasks re-printing its output.
struct RunningChild {
    child: Child,
    process_id: Option<u32>,
    output_forwarders: Vec<JoinHandle<()>>,
}

impl RunningChild {
    /// SIGTERM, wait up to `grace_period` (or until `kill_requested`), then SIGKILL.
    async fn stop(
        mut self,
        grace_period: Duration,
        kill_requested: &CancellationToken,
    ) -> StopOutcome {
        if let Some(process) = self.process() {
            // ESRCH (it already exited) is fine: wait() below sees its status.
            let _ = kill(process, Signal::SIGTERM);
        }
        let exited_in_time = tokio::select! {
            wait_result = self.child.wait() => Some(wait_result),
            () = tokio::time::sleep(grace_period) => None,
            () = kill_requested.cancelled() => None,
        };
        let outcome = match exited_in_time {
            Some(Ok(exit_status)) => StopOutcome::from_exit_status(exit_status),
            Some(Err(error)) => StopOutcome::SupervisorFailed(error.to_string()),
            None => {
                if let Some(process) = self.process() {
                    // The child leads its own group; kill the group so no grandchild
                    // keeps running or holds the output pipes open.
                    let _ = killpg(process, Signal::SIGKILL);
                }
                // Kills the child itself if the group kill failed, and reaps it.
                let _ = self.child.kill().await;
                StopOutcome::Killed
            }
        };
        self.finish_output().await;
        outcome
    }

    /// The child as a nix process id, while it has not been reaped.
    fn process(&self) -> Option<Pid> {
        let process_id = self.child.id()?;
        i32::try_from(process_id).ok().map(Pid::from_raw)
    }

    /// Waits for the output forwarders to reach the end of the pipes, for a while.
    async fn finish_output(&mut self) {
        let all_forwarded = async {
            for forwarder in &mut self.output_forwarders {
                let _ = forwarder.await;
            }
        };
        if tokio::time::timeout(OUTPUT_DRAIN_TIMEOUT, all_forwarded)
            .await
            .is_err()
        {
            for forwarder in &self.output_forwarders {
                forwarder.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_FLEET: &[&str] = &["echo", "tally", "orders"];

    #[test]
    fn the_fleet_names_are_unique_and_plain() {
        for (index, worker_name) in FLEET.iter().enumerate() {
            assert!(
                !FLEET[index + 1..].contains(worker_name),
                "{worker_name} twice"
            );
            assert!(
                worker_name
                    .chars()
                    .all(|character| character.is_ascii_lowercase() || character == '-'),
                "{worker_name} is not a plain name",
            );
        }
    }

    #[test]
    fn only_keeps_the_given_order_and_drops_duplicates() {
        let selection = select_workers(" tally, echo ,tally,", TEST_FLEET).expect("valid list");
        assert_eq!(selection.worker_names, vec!["tally", "echo"]);
    }

    #[test]
    fn only_rejects_an_unknown_worker() {
        let error = select_workers("echo,tallly", TEST_FLEET).expect_err("unknown name");
        assert!(matches!(&error, UpError::UnknownWorker { name } if name == "tallly"));
        assert!(error.to_string().contains("unknown worker `tallly`"));
    }

    #[test]
    fn only_rejects_an_empty_list() {
        for text in ["", " ", ",", " , ,"] {
            let error = select_workers(text, TEST_FLEET).expect_err("empty list");
            assert!(matches!(error, UpError::NoWorkerSelected), "{text:?}");
        }
    }

    #[test]
    fn only_is_checked_against_the_real_fleet() {
        assert!(parse_worker_selection("echo").is_ok());
        assert!(parse_worker_selection("no-such-worker").is_err());
    }

    #[test]
    fn grace_accepts_friendly_and_iso_durations() {
        let cases = [
            ("30s", Duration::from_secs(30)),
            ("500ms", Duration::from_millis(500)),
            ("1m 30s", Duration::from_secs(90)),
            ("PT2M", Duration::from_secs(120)),
            ("0s", Duration::ZERO),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_grace_period(text).expect(text), expected, "{text}");
        }
    }

    #[test]
    fn grace_rejects_nonsense_and_negative_durations() {
        assert!(matches!(
            parse_grace_period("soon"),
            Err(UpError::InvalidGracePeriod { .. })
        ));
        assert!(matches!(
            parse_grace_period("-5s"),
            Err(UpError::NegativeGracePeriod { .. })
        ));
    }

    #[test]
    fn the_default_grace_period_parses() {
        assert_eq!(
            parse_grace_period(DEFAULT_GRACE_PERIOD).expect("default"),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn arguments_parse_through_clap() {
        use clap::Parser;

        #[derive(Debug, clap::Parser)]
        struct TestCli {
            #[command(flatten)]
            up: UpArgs,
        }

        let parsed = TestCli::try_parse_from(["warren", "--only", "echo", "--prefetch", "7"])
            .expect("valid arguments");
        assert_eq!(parsed.up.prefetch, Some(7));
        assert_eq!(parsed.up.grace, Duration::from_secs(30));
        assert!(TestCli::try_parse_from(["warren", "--prefetch", "0"]).is_err());
        assert!(TestCli::try_parse_from(["warren", "--only", "nope"]).is_err());
        assert!(TestCli::try_parse_from(["warren", "--grace", "-1s"]).is_err());
    }

    #[test]
    fn a_missing_binary_is_named_with_a_hint() {
        let directory = Path::new("/nonexistent/warren/bin");
        let error = find_worker_programs(directory, &["echo"], None).expect_err("missing");
        let message = error.to_string();
        assert!(
            message.contains("/nonexistent/warren/bin/warren-echo"),
            "{message}"
        );
        assert!(message.contains("cargo build --workspace"), "{message}");
    }

    #[test]
    fn binaries_are_found_and_prefetch_is_passed_to_every_worker() {
        let directory = std::env::temp_dir().join(format!("warren-up-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&directory).expect("create a scratch directory");
        for worker_name in ["echo", "tally"] {
            std::fs::write(worker_binary_path(&directory, worker_name), b"")
                .expect("write a stand-in binary");
        }
        let found = find_worker_programs(&directory, &["echo", "tally"], Some(12));
        let missing = find_worker_programs(&directory, &["echo", "orders"], None);
        std::fs::remove_dir_all(&directory).expect("remove the scratch directory");

        let programs = found.expect("both binaries exist");
        assert_eq!(programs.len(), 2);
        assert_eq!(programs[1].worker_name, "tally");
        assert_eq!(programs[1].binary_path, directory.join("warren-tally"));
        for program in &programs {
            assert_eq!(program.arguments, vec!["--prefetch", "12"]);
        }
        assert!(matches!(
            missing,
            Err(UpError::MissingWorkerBinaries { missing_paths })
                if missing_paths == vec![directory.join("warren-orders")]
        ));
    }

    #[test]
    fn backoff_doubles_from_250_milliseconds_up_to_30_seconds() {
        let policy = BackoffPolicy::default();
        let delays: Vec<Duration> = (0..10)
            .map(|restart| exponential_delay(&policy, restart))
            .collect();
        let milliseconds: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(
            milliseconds,
            vec![250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(
            exponential_delay(&policy, u32::MAX),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn jitter_stays_between_half_and_the_whole_delay() {
        let delay = Duration::from_secs(2);
        assert_eq!(with_jitter(delay, 0.0), Duration::from_secs(1));
        assert_eq!(with_jitter(delay, 1.0), Duration::from_secs(2));
        assert_eq!(with_jitter(delay, 7.0), Duration::from_secs(2));
        for _ in 0..1000 {
            let fraction = random_fraction();
            assert!((0.0..1.0).contains(&fraction), "{fraction}");
        }
    }

    #[test]
    fn backoff_grows_while_crashing_and_resets_after_a_stable_run() {
        let mut backoff = RestartBackoff::new(BackoffPolicy::default());
        let short_run = Duration::from_secs(1);
        assert_eq!(
            backoff.delay_after_exit(short_run, 1.0),
            Duration::from_millis(250)
        );
        assert_eq!(
            backoff.delay_after_exit(short_run, 1.0),
            Duration::from_millis(500)
        );
        assert_eq!(
            backoff.delay_after_exit(short_run, 1.0),
            Duration::from_secs(1)
        );
        let stable_run = Duration::from_secs(60);
        assert_eq!(
            backoff.delay_after_exit(stable_run, 1.0),
            Duration::from_millis(250)
        );
        assert_eq!(
            backoff.delay_after_exit(short_run, 0.0),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn lines_are_prefixed_and_lossy() {
        assert_eq!(prefixed_line("echo", b"hello\n"), "[echo] hello\n");
        assert_eq!(prefixed_line("echo", b"crlf\r\n"), "[echo] crlf\n");
        assert_eq!(prefixed_line("echo", b"no newline"), "[echo] no newline\n");
        assert_eq!(
            prefixed_line("echo", b"bad \xff byte\n"),
            "[echo] bad \u{fffd} byte\n"
        );
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_the_last_line_needs_no_newline() {
        let mut reader: &[u8] = b"abcdefgh\nxy\nlast";
        let mut line = Vec::new();
        let mut lines = Vec::new();
        while read_capped_line(&mut reader, &mut line, 5)
            .await
            .expect("read")
        {
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        assert_eq!(lines, vec!["abcde", "fgh\n", "xy\n", "last"]);
    }

    /// A sink the test can read back, and its receiving end.
    fn captured_sink() -> (LineSender, mpsc::Receiver<String>) {
        mpsc::channel(OUTPUT_LINE_CAPACITY)
    }

    /// A supervisor running `sh -c script`, named `sh`.
    fn shell_supervisor(
        script: &str,
        grace_period: Duration,
        backoff_policy: BackoffPolicy,
    ) -> (
        Supervisor,
        mpsc::UnboundedReceiver<SupervisorEvent>,
        mpsc::Receiver<String>,
    ) {
        let (stdout, stdout_lines) = captured_sink();
        let (stderr, _) = captured_sink();
        let (events, event_receiver) = mpsc::unbounded_channel();
        let supervisor = Supervisor {
            program: WorkerProgram {
                worker_name: "sh".to_owned(),
                binary_path: PathBuf::from("/bin/sh"),
                arguments: vec![OsString::from("-c"), OsString::from(script)],
            },
            options: SupervisionOptions {
                grace_period,
                backoff_policy,
            },
            output: OutputSinks { stdout, stderr },
            events,
            tracker: TaskTracker::new(),
        };
        (supervisor, event_receiver, stdout_lines)
    }

    /// The next captured line, within the test timeout.
    async fn next_line(lines: &mut mpsc::Receiver<String>) -> Option<String> {
        tokio::time::timeout(TEST_TIMEOUT, lines.recv())
            .await
            .expect("a line in time")
    }

    const TEST_TIMEOUT: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn a_child_that_handles_sigterm_stops_cleanly_and_its_output_is_prefixed() {
        let script = "trap 'echo bye; exit 0' TERM; echo ready; \
                      while :; do sleep 1 >/dev/null 2>&1 & wait $!; done";
        let (supervisor, _events, mut stdout_lines) =
            shell_supervisor(script, Duration::from_secs(10), BackoffPolicy::default());
        let shutdown = FleetShutdown::new();
        let supervisor_task = tokio::spawn(supervisor.run(shutdown.clone()));

        let first_line = next_line(&mut stdout_lines).await;
        assert_eq!(first_line.as_deref(), Some("[sh] ready\n"));

        shutdown.stop_requested.cancel();
        let outcome = tokio::time::timeout(TEST_TIMEOUT, supervisor_task)
            .await
            .expect("stopped in time")
            .expect("supervisor task");
        assert_eq!(outcome, StopOutcome::Clean);
        let last_line = next_line(&mut stdout_lines).await;
        assert_eq!(last_line.as_deref(), Some("[sh] bye\n"));
    }

    #[tokio::test]
    async fn a_child_that_ignores_sigterm_is_killed_after_the_grace_period() {
        let script = "trap '' TERM; echo ready; while :; do sleep 1 >/dev/null 2>&1; done";
        let (supervisor, _events, mut stdout_lines) =
            shell_supervisor(script, Duration::from_millis(200), BackoffPolicy::default());
        let shutdown = FleetShutdown::new();
        let supervisor_task = tokio::spawn(supervisor.run(shutdown.clone()));

        let first_line = next_line(&mut stdout_lines).await;
        assert_eq!(first_line.as_deref(), Some("[sh] ready\n"));
        shutdown.stop_requested.cancel();
        let outcome = tokio::time::timeout(TEST_TIMEOUT, supervisor_task)
            .await
            .expect("stopped in time")
            .expect("supervisor task");
        assert_eq!(outcome, StopOutcome::Killed);
    }

    #[tokio::test]
    async fn a_child_that_exits_is_restarted_with_growing_delays() {
        let quick_backoff = BackoffPolicy {
            initial_delay: Duration::from_millis(4),
            maximum_delay: Duration::from_millis(16),
            stable_uptime: Duration::from_secs(60),
        };
        let (supervisor, mut events, _stdout_lines) =
            shell_supervisor("exit 3", Duration::from_secs(1), quick_backoff);
        let shutdown = FleetShutdown::new();
        let supervisor_task = tokio::spawn(supervisor.run(shutdown.clone()));

        let mut restart_delays = Vec::new();
        while restart_delays.len() < 4 {
            let event = tokio::time::timeout(TEST_TIMEOUT, events.recv())
                .await
                .expect("event in time")
                .expect("supervisor alive");
            if let SupervisorEvent::Exited {
                exit_description,
                restart_in,
                ..
            } = event
            {
                assert_eq!(exit_description, "exit status: 3");
                restart_delays.push(restart_in);
            }
        }
        shutdown.stop_requested.cancel();
        tokio::time::timeout(TEST_TIMEOUT, supervisor_task)
            .await
            .expect("stopped in time")
            .expect("supervisor task");

        let expected_ceilings = [4, 8, 16, 16].map(Duration::from_millis);
        for (delay, ceiling) in restart_delays.iter().zip(expected_ceilings) {
            assert!(
                *delay >= ceiling / 2 && *delay <= ceiling,
                "{delay:?} vs {ceiling:?}"
            );
        }
    }

    #[test]
    fn the_restart_message_has_the_documented_shape() {
        let event = SupervisorEvent::Exited {
            worker_name: "echo".to_owned(),
            exit_description: "exit status: 101".to_owned(),
            restart_in: Duration::from_micros(1_234_567),
        };
        assert_eq!(
            event.to_string(),
            "echo exited with exit status: 101; restarting in 1.234s"
        );
    }
}
