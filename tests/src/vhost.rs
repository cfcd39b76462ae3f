//! A test's own vhost on the shared broker, and everything done in it by name: starting
//! workers there, running the `warren` CLI against it, and the `rabbitmqctl` commands that
//! see what AMQP does not (queue counts, connections).
//!
//! The shared broker itself is never stopped or reconfigured: a test that must break a
//! broker starts a private node ([`crate::broker_node`]).

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;
use tokio::time::Instant;

use crate::{
    BROKER_BASE_URL, BrokerClient, CLI_TIMEOUT, POLL_INTERVAL, WarrenCommand, WarrenProcess,
    parse_envelope,
};

/// How long one `rabbitmqctl` run may take.
const RABBITMQCTL_TIMEOUT: Duration = Duration::from_secs(60);

/// Percent-encodes `text` for one segment of an AMQP URL (the vhost).
fn url_encode_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Runs `rabbitmqctl` with `args` against the shared broker and returns its stdout.
///
/// # Panics
/// When it fails or runs longer than a minute.
pub async fn rabbitmqctl(args: &[&str]) -> String {
    let child = Command::new("rabbitmqctl")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run `rabbitmqctl {}`: {error}", args.join(" ")));
    let output = tokio::time::timeout(RABBITMQCTL_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "`rabbitmqctl {}` still runs after {RABBITMQCTL_TIMEOUT:?}",
                args.join(" ")
            )
        })
        .unwrap_or_else(|error| {
            panic!("cannot wait for `rabbitmqctl {}`: {error}", args.join(" "))
        });
    assert!(
        output.status.success(),
        "`rabbitmqctl {}` failed with {}: {}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Messages of a queue as `rabbitmqctl list_queues` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    /// Ready for delivery.
    pub ready: u64,
    /// Delivered, not yet acked.
    pub unacked: u64,
}

/// A fresh RabbitMQ vhost of one test, deleted (with everything in it) when dropped.
#[derive(Debug)]
pub struct Vhost {
    name: String,
    amqp_url: String,
}

impl Vhost {
    /// Creates a vhost `warren-test-<uuid>` and lets the `guest` user do anything in it.
    ///
    /// # Panics
    /// When `rabbitmqctl` fails.
    pub async fn create() -> Vhost {
        let name = format!("warren-test-{}", uuid::Uuid::new_v4());
        rabbitmqctl(&["add_vhost", &name]).await;
        // Built before the permissions are set, so a failure below still deletes the vhost.
        let vhost = Vhost {
            amqp_url: format!("{BROKER_BASE_URL}/{}", url_encode_segment(&name)),
            name,
        };
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &vhost.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ])
        .await;
        vhost
    }

    /// The vhost's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The broker URL of this vhost, as `WARREN_AMQP_URL` takes it.
    pub fn amqp_url(&self) -> &str {
        &self.amqp_url
    }

    /// A new connection of the test's own to this vhost.
    ///
    /// # Panics
    /// When the broker cannot be reached.
    pub async fn connect(&self) -> BrokerClient {
        BrokerClient::connect(&self.amqp_url).await
    }

    /// The fleet binary `binary` (e.g. `warren-echo`) connected to this vhost, to be given
    /// more settings and started.
    pub fn worker(&self, binary: &str) -> WarrenCommand {
        WarrenCommand::new(binary, &self.amqp_url)
    }

    /// Starts the worker binary `binary` in this vhost and waits until it consumes.
    ///
    /// # Panics
    /// When the binary cannot be started, exits early or is not ready in time.
    pub async fn start_worker(&self, binary: &str) -> WarrenProcess {
        self.worker(binary).start().await
    }

    /// Runs the `warren` CLI with `args` against this vhost and returns what it printed
    /// (also forwarded to the test's stderr as it comes, so a failing test shows it).
    ///
    /// # Panics
    /// When the CLI cannot be started or runs longer than [`CLI_TIMEOUT`].
    pub async fn warren(&self, args: &[&str]) -> CliOutput {
        self.warren_with_env(args, &[]).await
    }

    /// Like [`Vhost::warren`], with environment variables `env` set too (over the
    /// vhost's `WARREN_AMQP_URL`, if one of them is that).
    pub async fn warren_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
        let mut cli = WarrenCommand::new("warren", &self.amqp_url)
            .args(args)
            .envs(env)
            .spawn();
        let status = cli.wait(CLI_TIMEOUT).await;
        eprintln!("$ warren {} -> {status}", args.join(" "));
        CliOutput {
            status,
            stdout: cli.stdout(),
            stderr: cli.stderr(),
        }
    }

    /// Has the broker close every connection to this vhost (`reason` is what it tells
    /// them).
    ///
    /// # Panics
    /// When `rabbitmqctl` fails.
    pub async fn close_all_connections(&self, reason: &str) {
        let output = rabbitmqctl(&["close_all_connections", "--vhost", &self.name, reason]).await;
        eprintln!("rabbitmqctl: {}", output.trim());
    }

    /// Has the broker close the first connection to this vhost whose client calls itself
    /// `connection_name`; says whether there was one.
    ///
    /// # Panics
    /// When `rabbitmqctl` fails.
    pub async fn close_connection_named(&self, connection_name: &str, reason: &str) -> bool {
        let marker = format!("{{\"connection_name\",\"{connection_name}\"}}");
        let listing = rabbitmqctl(&[
            "list_connections",
            "-q",
            "-p",
            &self.name,
            "pid",
            "client_properties",
        ])
        .await;
        let found = listing
            .lines()
            .find(|line| line.contains(&marker))
            .and_then(|line| line.split('\t').next());
        match found {
            Some(pid) => {
                rabbitmqctl(&["close_connection", pid, reason]).await;
                true
            }
            None => false,
        }
    }

    /// The counts of `queue`, or `None` when it does not exist.
    ///
    /// # Panics
    /// When `rabbitmqctl` fails.
    pub async fn queue_counts(&self, queue: &str) -> Option<QueueCounts> {
        let output = rabbitmqctl(&[
            "list_queues",
            "--quiet",
            "--no-table-headers",
            "-p",
            &self.name,
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .await;
        output.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [name, ready, unacked] if *name == queue => Some(QueueCounts {
                    ready: ready.parse().ok()?,
                    unacked: unacked.parse().ok()?,
                }),
                _ => None,
            }
        })
    }

    /// Waits until `queue` holds no message, ready or unacked: nothing of it is left to
    /// process, so no side effect can still happen. Returns the last counts seen when that
    /// does not happen within `timeout` (the caller asserts, after reporting its count).
    pub async fn wait_until_settled(
        &self,
        queue: &str,
        timeout: Duration,
    ) -> Result<(), Option<QueueCounts>> {
        let deadline = Instant::now() + timeout;
        loop {
            let counts = self.queue_counts(queue).await;
            if counts.is_some_and(|counts| counts.ready == 0 && counts.unacked == 0) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                eprintln!("queue {queue} still holds messages after {timeout:?}: {counts:?}");
                return Err(counts);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        // Blocking in drop is fine in a test; deleting the vhost also closes every
        // connection to it.
        let result = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .stdin(Stdio::null())
            .output();
        match result {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "cannot delete vhost {}: {}{}",
                self.name,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) => eprintln!(
                "cannot run rabbitmqctl to delete vhost {}: {error}",
                self.name
            ),
        }
    }
}

/// What a `warren` CLI run printed and how it ended.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// How the process exited.
    pub status: ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl CliOutput {
    /// The exit code, or `None` when a signal ended the process.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The non-empty lines of stdout.
    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect()
    }

    /// Every stdout line parsed as an outcome envelope.
    ///
    /// # Panics
    /// When a line is not a valid CloudEvents envelope.
    pub fn envelopes(&self) -> Vec<Value> {
        self.stdout_lines()
            .into_iter()
            .map(|line| parse_envelope(line.as_bytes()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhost_names_are_percent_encoded() {
        assert_eq!(url_encode_segment("warren-test-1a"), "warren-test-1a");
        assert_eq!(url_encode_segment("/"), "%2F");
        assert_eq!(url_encode_segment("a b"), "a%20b");
    }
}
