//! What stops `warren up` before the fleet runs.

use std::path::PathBuf;

use warren_ops::local_broker::LocalBrokerError;

/// A problem with the arguments of `warren up`, the fleet's binaries, its run folder or
/// its broker.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// `--only` names a worker whose binary was not found.
    #[error("unknown worker `{name}`; the workers found in {} are: {}",
            binary_directory.display(), found.join(", "))]
    UnknownWorker {
        /// The name as given.
        name: String,
        /// Where the binaries were looked for.
        binary_directory: PathBuf,
        /// The names of the workers found there.
        found: Vec<String>,
    },
    /// `--only` names something that cannot be a worker.
    #[error("{0}")]
    InvalidWorkerName(String),
    /// `--only` names no worker at all.
    #[error("no worker named; give one or more worker names, e.g. `--only echo,tally`")]
    NoWorkerSelected,
    /// `--grace` is not a duration.
    #[error("`{text}` is not a duration such as `30s`, `500ms` or `2m`: {reason}")]
    InvalidGracePeriod {
        /// The text as given.
        text: String,
        /// Why it is not a duration.
        reason: String,
    },
    /// `--grace` is negative.
    #[error("the grace period `{text}` is negative")]
    NegativeGracePeriod {
        /// The text as given.
        text: String,
    },
    /// The folder of the `warren` executable is unknown.
    #[error("cannot find the folder of the warren executable: {0}")]
    NoBinaryDirectory(#[source] std::io::Error),
    /// The binaries folder cannot be read.
    #[error("cannot read the binaries folder {}: {source}", directory.display())]
    UnreadableBinaryDirectory {
        /// The folder.
        directory: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No worker binary is there.
    #[error("no worker binaries (warren-<name>) in {}; build them with `cargo build --release` \
             (or point --bin-dir at them)", directory.display())]
    NoWorkersFound {
        /// Where they were looked for.
        directory: PathBuf,
    },
    /// `--credentials` has no URL file for a worker that would run.
    #[error("no broker URL for worker `{worker}` in the credentials folder: {} is missing; \
             run `warren topology apply --password-dir {}` first",
            path.display(), path.parent().map(std::path::Path::display).unwrap_or(path.display()))]
    MissingCredentials {
        /// The worker.
        worker: String,
        /// The file that should hold its URL.
        path: PathBuf,
    },
    /// The run folder cannot be made or its lock file opened.
    #[error("cannot use the run folder {}: {source}", path.display())]
    RunFolder {
        /// The folder or file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another `warren up` runs for this run folder.
    #[error("warren up is already running for this fleet ({}, lock {}); stop it first, \
             or pass --add-instances to run more workers beside it",
            holder_pid.map_or_else(|| "pid unknown".to_owned(), |pid| format!("pid {pid}")),
            lock_file.display())]
    AlreadyRunning {
        /// The running one's process id, as its lock file says.
        holder_pid: Option<u32>,
        /// The lock file.
        lock_file: PathBuf,
    },
    /// A signal handler could not be installed.
    #[error("cannot listen for {signal_name}: {source}")]
    Signal {
        /// The signal.
        signal_name: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The fleet's own broker did not start.
    #[error("{source}{hint}")]
    LocalBroker {
        /// Why.
        #[source]
        source: LocalBrokerError,
        /// What the user can do besides (empty when nothing).
        hint: &'static str,
    },
}

impl UpError {
    /// A local-broker failure, with the flag that avoids it where that helps.
    pub fn local_broker(source: LocalBrokerError) -> UpError {
        let hint = match source {
            LocalBrokerError::NotInstalled { .. } => {
                " (or pass --no-local-broker and point WARREN_AMQP_URL at a broker)"
            }
            _ => "",
        };
        UpError::LocalBroker { source, hint }
    }
}
