//! Why a local node did not start or stop.

use std::path::PathBuf;
use std::time::Duration;

/// Why a local node did not start or stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalBrokerError {
    /// The RabbitMQ tools are not installed.
    #[error(
        "RabbitMQ is not installed (no `{tool}` on PATH, nor in /usr/sbin or \
         /usr/lib/rabbitmq/bin): install it with `apt-get install rabbitmq-server`, or run \
         a broker in a container with `docker compose up -d rabbitmq`"
    )]
    NotInstalled {
        /// The program looked for.
        tool: &'static str,
    },
    /// The node's folder could not be written.
    #[error("cannot prepare the node's folder {}: {source}", folder.display())]
    Folder {
        /// The folder.
        folder: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// No port could be found for the Erlang distribution.
    #[error("no free TCP port on 127.0.0.1 for the node's Erlang distribution: {0}")]
    NoFreePort(#[source] std::io::Error),
    /// A RabbitMQ tool could not be run.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A RabbitMQ tool ran too long and was killed.
    #[error("`{command}` did not finish within {timeout:?}")]
    ToolTimeout {
        /// The command line.
        command: String,
        /// How long it had.
        timeout: Duration,
    },
    /// A RabbitMQ tool failed.
    #[error("`{command}` failed ({status}): {output}")]
    ToolFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed.
        output: String,
    },
    /// The node did not come up.
    #[error("the RabbitMQ node {node} did not start: {diagnosis}")]
    NotStarted {
        /// The node name.
        node: String,
        /// Why, with the end of its log.
        diagnosis: String,
    },
    /// The start was cancelled; whatever had started was stopped.
    #[error("the start of the RabbitMQ node {node} was cancelled")]
    Cancelled {
        /// The node name.
        node: String,
    },
    /// The node's VM outlived `rabbitmqctl stop` and SIGKILL.
    #[error("the RabbitMQ node {node} (pid {pid}) still runs after `rabbitmqctl stop` and SIGKILL")]
    NotStopped {
        /// The node name.
        node: String,
        /// The VM's process id.
        pid: i32,
    },
}
