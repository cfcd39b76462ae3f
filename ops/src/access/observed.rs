//! What the broker holds, read with `rabbitmqctl` (local node access, as the operator
//! who runs `warren topology`): users, one vhost's permissions, exchanges, queues and
//! bindings. Passwords go to `rabbitmqctl` on its standard input, never on its command
//! line.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::plan::Permissions;

/// Runs `rabbitmqctl` against the local node (or the one `RABBITMQ_NODENAME` names).
#[derive(Debug, Clone)]
pub struct Rabbitmqctl {
    /// The program, `rabbitmqctl` on the `PATH` unless told otherwise.
    pub program: String,
}

impl Default for Rabbitmqctl {
    fn default() -> Self {
        Rabbitmqctl {
            program: "rabbitmqctl".to_owned(),
        }
    }
}

/// What the broker holds of a vhost, as far as the plan cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Every user of the broker (users are broker-wide).
    pub users: BTreeSet<String>,
    /// Each user's permissions in the vhost.
    pub permissions: BTreeMap<String, Permissions>,
    /// Exchange names in the vhost.
    pub exchanges: BTreeSet<String>,
    /// Queue names in the vhost.
    pub queues: BTreeSet<String>,
    /// Bindings to queues, `(exchange, queue, routing key)`.
    pub bindings: BTreeSet<(String, String, String)>,
}

impl Rabbitmqctl {
    /// Runs `rabbitmqctl args…`, with `stdin` written to its standard input, and returns
    /// its standard output.
    pub async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let what = format!("{} {}", self.program, args.first().copied().unwrap_or(""));
        let mut child = command
            .spawn()
            .map_err(|error| format!("cannot run {what}: {error}"))?;
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            input
                .write_all(format!("{text}\n").as_bytes())
                .await
                .map_err(|error| format!("cannot write to {what}: {error}"))?;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|error| format!("{what} failed: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "{what} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The rows of a `list_…` command, with `--formatter json`.
    async fn rows(&self, args: &[&str]) -> Result<Vec<Value>, String> {
        let mut all = args.to_vec();
        all.extend(["--silent", "--formatter", "json"]);
        let text = self.run(&all, None).await?;
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(&text)
            .map_err(|error| format!("rabbitmqctl {} printed no JSON list: {error}", args[0]))
    }

    /// Reads what the broker holds of `vhost`.
    pub async fn observe(&self, vhost: &str) -> Result<Observed, String> {
        let text = |row: &Value, key: &str| row[key].as_str().unwrap_or_default().to_owned();
        let users = self
            .rows(&["list_users"])
            .await?
            .iter()
            .map(|row| text(row, "user"))
            .collect();
        let permissions = self
            .rows(&["list_permissions", "-p", vhost])
            .await?
            .iter()
            .map(|row| {
                (
                    text(row, "user"),
                    Permissions {
                        configure: text(row, "configure"),
                        write: text(row, "write"),
                        read: text(row, "read"),
                    },
                )
            })
            .collect();
        let exchanges = self
            .rows(&["list_exchanges", "-p", vhost, "name"])
            .await?
            .iter()
            .map(|row| text(row, "name"))
            .collect();
        let queues = self
            .rows(&["list_queues", "-p", vhost, "name"])
            .await?
            .iter()
            .map(|row| text(row, "name"))
            .collect();
        let bindings = self
            .rows(&[
                "list_bindings",
                "-p",
                vhost,
                "source_name",
                "destination_name",
                "destination_kind",
                "routing_key",
            ])
            .await?
            .iter()
            .filter(|row| row["destination_kind"] == "queue")
            .map(|row| {
                (
                    text(row, "source_name"),
                    text(row, "destination_name"),
                    text(row, "routing_key"),
                )
            })
            .collect();
        Ok(Observed {
            users,
            permissions,
            exchanges,
            queues,
            bindings,
        })
    }
}
