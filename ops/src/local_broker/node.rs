//! Starting, adopting and stopping a local node.

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::probe::{free_port, is_node_process, process_alive, read_pid, tcp_answers};
use super::tools::{Tools, printed, run_tool, run_tool_successfully};
use super::{LocalBrokerError, NodeSpec};

/// How long a node may take to stop after `rabbitmqctl stop` before its VM is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one `rabbitmq-server -detached`, `rabbitmqctl` or `rabbitmq-diagnostics` run
/// may take (each boots an Erlang VM of its own: about a second).
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one AMQP connection attempt to a booting node may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The pause between two looks at a booting or stopping node.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Fresh distribution ports tried before giving up on a node whose boot crashed (most
/// likely a port taken between choosing it and the node binding it).
const START_ATTEMPTS: usize = 3;

/// Where `epmd` listens.
const EPMD_PORT: u16 = 4369;

/// Why one boot failed.
enum BootFailure {
    /// The node's VM died while booting: worth another try on another port.
    Crashed(String),
    /// The caller cancelled.
    Cancelled,
    /// Anything else.
    Failed(LocalBrokerError),
}

/// A local node that runs (or ran): stop it with [`LocalNode::stop`]. Dropping it leaves
/// the node running, on purpose: it is a daemon of its own, and whoever has its
/// [`NodeSpec`] can adopt it later ([`LocalNode::adopt`]).
#[derive(Debug)]
pub struct LocalNode {
    spec: NodeSpec,
    tools: Tools,
    /// The OS process id of the node's VM, once known.
    os_pid: Option<i32>,
    /// How long the start took, from `rabbitmq-server -detached` until it served.
    boot_time: Option<Duration>,
}

impl LocalNode {
    /// Starts the node `spec` describes and waits until it accepts AMQP connections as
    /// `guest` and answers `rabbitmq-diagnostics ping`, trying other distribution ports
    /// when a boot crashes. When `cancel` fires first, whatever started is stopped.
    ///
    /// # Errors
    /// [`LocalBrokerError::NotInstalled`] when RabbitMQ is missing (with how to get it);
    /// [`LocalBrokerError::NotStarted`] with the end of the node's log; and the others.
    pub async fn start(
        spec: NodeSpec,
        cancel: &CancellationToken,
    ) -> Result<LocalNode, LocalBrokerError> {
        let tools = Tools::find()?;
        let epmd_was_running = tcp_answers("127.0.0.1", EPMD_PORT, Duration::from_secs(2))
            .await
            .is_ok();
        let folder_error = |source| LocalBrokerError::Folder {
            folder: spec.folder().to_path_buf(),
            source,
        };
        spec.write_folder().map_err(folder_error)?;
        if epmd_was_running {
            let _ = std::fs::remove_file(spec.epmd_marker());
        } else {
            std::fs::write(spec.epmd_marker(), "").map_err(folder_error)?;
        }
        let mut node = LocalNode {
            spec,
            tools,
            os_pid: None,
            boot_time: None,
        };
        let mut crashes = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let dist_port =
                free_port(&[node.spec.amqp_port()]).map_err(LocalBrokerError::NoFreePort)?;
            match node.boot(dist_port, cancel).await {
                Ok(()) => return Ok(node),
                Err(BootFailure::Crashed(diagnosis)) => {
                    crashes.push(format!("attempt {attempt}: {diagnosis}"));
                }
                Err(BootFailure::Cancelled) => {
                    // A VM launched just before the cancel writes its pid file soon.
                    node.wait_for_pid_file(Duration::from_secs(5)).await;
                    node.stop_in_place().await?;
                    return Err(LocalBrokerError::Cancelled {
                        node: node.spec.name().to_owned(),
                    });
                }
                Err(BootFailure::Failed(error)) => {
                    // Best effort: the error that matters is the start's.
                    let _ = node.stop_in_place().await;
                    return Err(error);
                }
            }
        }
        node.end_epmd().await;
        Err(LocalBrokerError::NotStarted {
            node: node.spec.name().to_owned(),
            diagnosis: format!(
                "its VM died while booting, {START_ATTEMPTS} times:\n{}",
                crashes.join("\n---\n")
            ),
        })
    }

    /// The node of `spec` if it is already running (its pid file names a live VM of
    /// that node: say, the supervisor that started it was killed), once it serves.
    /// `None` when no such node runs.
    ///
    /// # Errors
    /// When it runs but does not serve within the spec's start timeout (or `cancel`
    /// fires first), or RabbitMQ's tools are missing.
    pub async fn adopt(
        spec: NodeSpec,
        cancel: &CancellationToken,
    ) -> Result<Option<LocalNode>, LocalBrokerError> {
        let Some(pid) = read_pid(&spec.pid_file()).filter(|pid| is_node_process(*pid, spec.name()))
        else {
            return Ok(None);
        };
        let mut node = LocalNode {
            tools: Tools::find()?,
            spec,
            os_pid: Some(pid),
            boot_time: None,
        };
        let deadline = Instant::now() + node.spec.start_timeout();
        match node.wait_until_serving(deadline, cancel).await {
            Ok(()) => Ok(Some(node)),
            Err(BootFailure::Cancelled) => Err(LocalBrokerError::Cancelled {
                node: node.spec.name().to_owned(),
            }),
            Err(BootFailure::Crashed(diagnosis)) => Err(LocalBrokerError::NotStarted {
                node: node.spec.name().to_owned(),
                diagnosis,
            }),
            Err(BootFailure::Failed(error)) => Err(error),
        }
    }

    /// What the node is.
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    /// The node name, as `rabbitmqctl -n` takes it.
    pub fn name(&self) -> &str {
        self.spec.name()
    }

    /// The OS process id of the node's VM, once known.
    pub fn os_pid(&self) -> Option<i32> {
        self.os_pid
    }

    /// How long the start took, from `rabbitmq-server -detached` until the node served;
    /// `None` for an adopted node.
    pub fn boot_time(&self) -> Option<Duration> {
        self.boot_time
    }

    /// Stops the node (`rabbitmqctl stop`), waits until its VM is gone (SIGKILL after
    /// [`STOP_TIMEOUT`]), and ends the `epmd` its start started. Returns how long it took.
    ///
    /// # Errors
    /// When the VM outlives all that, or nothing stopped and `rabbitmqctl` said why.
    pub async fn stop(mut self) -> Result<Duration, LocalBrokerError> {
        let started = Instant::now();
        self.stop_in_place().await?;
        Ok(started.elapsed())
    }

    /// Runs `rabbitmq-server -detached` and waits until the node serves.
    async fn boot(
        &mut self,
        dist_port: u16,
        cancel: &CancellationToken,
    ) -> Result<(), BootFailure> {
        // A pid file or crash dump of an earlier run would confuse the checks below.
        let _ = std::fs::remove_file(self.spec.pid_file());
        let _ = std::fs::remove_file(self.spec.crash_dump());
        self.os_pid = None;
        let started = Instant::now();
        let environment = self.spec.server_environment(dist_port);
        let launch = run_tool_successfully(
            &self.tools.server,
            &["-detached"],
            &environment,
            TOOL_TIMEOUT,
        );
        tokio::select! {
            launched = launch => launched.map_err(BootFailure::Failed)?,
            () = cancel.cancelled() => return Err(BootFailure::Cancelled),
        };
        self.wait_until_serving(started + self.spec.start_timeout(), cancel)
            .await?;
        self.boot_time = Some(started.elapsed());
        Ok(())
    }

    /// Polls until the node serves, its VM dies, `deadline` passes or `cancel` fires.
    async fn wait_until_serving(
        &mut self,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<(), BootFailure> {
        loop {
            if self.os_pid.is_none() {
                self.os_pid = read_pid(&self.spec.pid_file());
            }
            let vm_died = self.os_pid.is_some_and(|pid| !process_alive(pid));
            if vm_died || self.spec.crash_dump().exists() {
                return Err(BootFailure::Crashed(format!(
                    "the node's VM died while booting; its log ({}) ends:\n{}",
                    self.spec.log_file().display(),
                    self.spec.log_tail(30)
                )));
            }
            let serves = tokio::select! {
                serves = self.serves() => serves,
                () = cancel.cancelled() => return Err(BootFailure::Cancelled),
            };
            if serves {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BootFailure::Failed(LocalBrokerError::NotStarted {
                    node: self.spec.name().to_owned(),
                    diagnosis: format!(
                        "not serving after {:?}; its log ({}) ends:\n{}",
                        self.spec.start_timeout(),
                        self.spec.log_file().display(),
                        self.spec.log_tail(30)
                    ),
                }));
            }
            tokio::select! {
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                () = cancel.cancelled() => return Err(BootFailure::Cancelled),
            }
        }
    }

    /// Whether an AMQP connection as `guest` works and the node answers
    /// `rabbitmq-diagnostics ping` under its own name (so what answers on the port is
    /// this node, not another broker that got there first).
    async fn serves(&self) -> bool {
        let url = self.spec.amqp_url();
        let connected = tokio::time::timeout(
            PROBE_TIMEOUT,
            Connection::connect(&url, ConnectionProperties::default()),
        )
        .await;
        let Ok(Ok(connection)) = connected else {
            return false;
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            connection.close(200, "probe".into()),
        )
        .await;
        run_tool(
            &self.tools.diagnostics,
            &["-n", self.spec.name(), "-q", "ping"],
            &[],
            TOOL_TIMEOUT,
        )
        .await
        .is_ok_and(|output| output.status.success())
    }

    /// Reads the VM's pid from its pid file, waiting up to `timeout` for the file.
    async fn wait_for_pid_file(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.os_pid.is_none() && Instant::now() < deadline {
            self.os_pid = read_pid(&self.spec.pid_file());
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Stops the node; see [`LocalNode::stop`].
    async fn stop_in_place(&mut self) -> Result<(), LocalBrokerError> {
        if self.os_pid.is_none() {
            self.os_pid = read_pid(&self.spec.pid_file());
        }
        let stopped = run_tool_successfully(
            &self.tools.ctl,
            &["-n", self.spec.name(), "stop"],
            &[],
            TOOL_TIMEOUT,
        )
        .await;
        let result = match (self.os_pid, stopped) {
            (Some(pid), _) => self.wait_for_exit(pid).await,
            // Nothing known to wait for: only the CLI's word counts.
            (None, stopped) => stopped.map(|_output| ()),
        };
        if result.is_ok() {
            self.os_pid = None;
            self.end_epmd().await;
        }
        result
    }

    /// Waits until the VM `pid` is gone, killing it after [`STOP_TIMEOUT`].
    async fn wait_for_exit(&self, pid: i32) -> Result<(), LocalBrokerError> {
        let deadline = Instant::now() + STOP_TIMEOUT;
        while process_alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        if !process_alive(pid) {
            return Ok(());
        }
        if is_node_process(pid, self.spec.name()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        if process_alive(pid) {
            Err(LocalBrokerError::NotStopped {
                node: self.spec.name().to_owned(),
                pid,
            })
        } else {
            Ok(())
        }
    }

    /// Ends `epmd` if this node's start started it (`epmd -kill` refuses while another
    /// node is registered, so this never pulls it from under anyone).
    async fn end_epmd(&self) {
        let marker = self.spec.epmd_marker();
        if !marker.exists() {
            return;
        }
        if let Some(epmd) = &self.tools.epmd {
            let output = run_tool(epmd, &["-kill"], &[], TOOL_TIMEOUT).await;
            if let Ok(output) = output
                && !output.status.success()
            {
                tracing::debug!(output = %printed(&output), "epmd -kill refused");
            }
        }
        let _ = std::fs::remove_file(marker);
    }
}
