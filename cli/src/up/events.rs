//! What the supervisors report, and how the fleet ended.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

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

    pub fn from_exit_status(exit_status: ExitStatus) -> Self {
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
pub fn human_duration(duration: Duration) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_report_names_the_workers_that_did_not_stop_cleanly() {
        let report = FleetReport {
            outcomes: vec![
                ("echo".to_owned(), StopOutcome::Clean),
                ("tally".to_owned(), StopOutcome::Killed),
                ("orders".to_owned(), StopOutcome::NotRunning),
            ],
        };
        assert_eq!(report.unclean_worker_names(), vec!["tally"]);
    }
}
