//! One supervisor per worker: start it, re-print its output, restart it when it exits
//! on its own, stop it (SIGTERM, the grace period, SIGKILL) when the fleet stops.
//!
//! Children run in their own process group, so a Ctrl-C in the terminal reaches only
//! `warren up`, which then stops them in order instead of racing them. A child is told
//! who supervises it (`WARREN_SUPERVISOR_PID`, set in [`super::run()`]) and stops by
//! itself when that process dies, however it died (see `warren_runtime::shutdown`).
//! Linux sends that signal when the *thread* that started the child ends: children are
//! started from supervisor tasks, which run on the async runtime's worker threads,
//! and those live as long as `warren up`.

use std::io;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::BufReader;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backoff::{BackoffPolicy, RestartBackoff};
use super::discovery::WorkerProgram;
use super::events::{FleetReport, StopOutcome, SupervisorEvent};
use super::output::{LineSender, OutputSinks, forward_lines, write_line};

/// How long to wait for a child's output to drain after it exited. A grandchild that
/// inherited the pipes can keep them open forever; after this we stop reading.
const OUTPUT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

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
                    let retry_in = backoff.delay_after_exit(Duration::ZERO);
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
                    let restart_in = backoff.delay_after_exit(started_at.elapsed());
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
        for removed in &self.program.removed_environment {
            command.env_remove(removed);
        }
        command
            .args(&self.program.arguments)
            .envs(
                self.program
                    .environment
                    .iter()
                    .map(|(key, value)| (key, value)),
            )
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
    use std::ffi::OsString;
    use std::path::PathBuf;

    use super::*;
    use crate::up::output::OUTPUT_LINE_CAPACITY;

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
                environment: Vec::new(),
                removed_environment: Vec::new(),
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
}
