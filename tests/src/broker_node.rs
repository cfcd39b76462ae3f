//! Private RabbitMQ nodes, for the fault tests that must stop, restart or reconfigure a
//! broker: never the shared one on 5672.
//!
//! A [`PrivateNode`] runs beside the shared node (`rabbit@localhost`) with everything of
//! its own: a node name `wtest-<short uuid>@localhost`, an AMQP port and an Erlang
//! distribution port, and its data, log, pid, plugins and config files under a fresh
//! folder of the system's temp folder. Debian's `rabbitmq-server` wrapper runs the node as
//! the `rabbitmq` user, so that folder is handed to it. The node is stopped, and its
//! folder removed, when the value is dropped, so no node outlives its test, even one that
//! panics.
//!
//! A test drives the node's workers with [`NodeWorker`] (the real binaries, with the
//! environment the test chooses and their log kept for assertions) and talks to it with
//! a [`NodeClient`] of its own.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer, ErrorKind};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::{OutgoingMessage, QueueState, READY_TIMEOUT, REPLIES_EXCHANGE, bin_path};

/// How long a node may take from `rabbitmq-server -detached` until it serves AMQP.
pub const NODE_START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a node may take to stop.
pub const NODE_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one `rabbitmqctl` or `rabbitmq-diagnostics` run may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// Fresh names, folders and ports tried before giving up on starting a node whose
/// boot crashed (most likely a port taken between choosing it and the node binding it).
const START_ATTEMPTS: usize = 3;

/// The pause between two polls while waiting for a node or a process.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Ports are chosen at random from here up to the start of the kernel's ephemeral range,
/// so no outgoing connection can take one as its local port while the node is down for
/// a restart.
const LOWEST_PORT: u16 = 10_000;

/// How a private node is configured beyond what every node gets.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    config_lines: Vec<String>,
    rabbit_settings: Vec<(String, String)>,
}

impl NodeOptions {
    /// A node with RabbitMQ's defaults.
    pub fn new() -> NodeOptions {
        NodeOptions::default()
    }

    /// Adds a line to the node's `rabbitmq.conf`, e.g. `consumer_timeout = 3000`.
    pub fn config_line(mut self, line: impl Into<String>) -> NodeOptions {
        self.config_lines.push(line.into());
        self
    }

    /// Sets `consumer_timeout`: how long a consumer may hold a delivery unacknowledged
    /// before the broker closes its channel.
    pub fn consumer_timeout(self, timeout: Duration) -> NodeOptions {
        self.config_line(format!("consumer_timeout = {}", timeout.as_millis()))
    }

    /// Sets an environment key of the `rabbit` application in `advanced.config`;
    /// `erlang_term` is written as is.
    pub fn rabbit_setting(
        mut self,
        key: impl Into<String>,
        erlang_term: impl Into<String>,
    ) -> NodeOptions {
        self.rabbit_settings.push((key.into(), erlang_term.into()));
        self
    }

    /// Sets `channel_tick_interval`: how often a channel checks, among other things,
    /// its consumer timeouts (RabbitMQ's default is a minute).
    pub fn channel_tick_interval(self, interval: Duration) -> NodeOptions {
        self.rabbit_setting("channel_tick_interval", interval.as_millis().to_string())
    }
}

/// Why one boot of a node failed.
enum BootFailure {
    /// The node's VM died while booting: worth another try on other ports.
    Crashed(String),
    /// Anything else.
    Failed(String),
}

/// A RabbitMQ node of one test. Stopped, and its folder removed, when dropped.
#[derive(Debug)]
pub struct PrivateNode {
    name: String,
    folder: PathBuf,
    amqp_port: u16,
    dist_port: u16,
    /// Whether a node may be running, so dropping must stop it.
    started: bool,
    /// The OS process id of the node's VM in its current run, once known.
    os_pid: Option<i32>,
    /// How long each boot took, from `rabbitmq-server -detached` until it served.
    boot_times: Vec<Duration>,
}

impl PrivateNode {
    /// Starts a new node with `options` and waits until it serves AMQP and answers
    /// `rabbitmq-diagnostics`.
    ///
    /// # Panics
    /// When no node starts within [`NODE_START_TIMEOUT`] (after a few attempts with
    /// other ports when a boot crashes).
    pub async fn start(options: NodeOptions) -> PrivateNode {
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let mut node = PrivateNode::prepare(&options);
            match node.boot().await {
                Ok(()) => {
                    eprintln!(
                        "[{}] private node serving on 127.0.0.1:{} after {:?} \
                         (attempt {attempt})",
                        node.name,
                        node.amqp_port,
                        node.boot_times.last().copied().unwrap_or_default()
                    );
                    return node;
                }
                Err(BootFailure::Crashed(diagnosis)) => {
                    eprintln!(
                        "[{}] boot crashed (attempt {attempt}), trying other ports: {diagnosis}",
                        node.name
                    );
                    failures.push(diagnosis);
                    // Dropping it removes whatever is left of it.
                }
                Err(BootFailure::Failed(diagnosis)) => {
                    panic!("private node {} did not start: {diagnosis}", node.name)
                }
            }
        }
        panic!(
            "no private node started in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        )
    }

    /// Chooses a name and ports and writes the node's folder, without starting it.
    fn prepare(options: &NodeOptions) -> PrivateNode {
        let short_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let name = format!("wtest-{short_id}@localhost");
        let folder = std::env::temp_dir().join(format!("warren-node-{short_id}"));
        let amqp_port = free_port(&[]);
        let dist_port = free_port(&[amqp_port]);
        let node = PrivateNode {
            name,
            folder,
            amqp_port,
            dist_port,
            started: false,
            os_pid: None,
            boot_times: Vec::new(),
        };
        node.write_folder(options)
            .unwrap_or_else(|error| panic!("cannot prepare {}: {error}", node.folder.display()));
        node
    }

    fn write_folder(&self, options: &NodeOptions) -> std::io::Result<()> {
        for folder in [
            self.folder.clone(),
            self.mnesia_base(),
            self.log_base(),
            self.folder.join("conf.d"),
        ] {
            std::fs::create_dir_all(&folder)?;
        }
        let mut config = String::from(
            "# A private test node. Ports, addresses and folders come from RABBITMQ_* \
             variables.\n",
        );
        for line in &options.config_lines {
            let _ = writeln!(config, "{line}");
        }
        std::fs::write(self.config_file(), config)?;
        let rabbit_settings: Vec<String> = options
            .rabbit_settings
            .iter()
            .map(|(key, value)| format!("{{{key}, {value}}}"))
            .collect();
        std::fs::write(
            self.folder.join("advanced.config"),
            format!("[{{rabbit, [{}]}}].\n", rabbit_settings.join(", ")),
        )?;
        std::fs::write(self.folder.join("enabled_plugins"), "[].\n")?;
        // Sourced by the start scripts instead of /etc/rabbitmq/rabbitmq-env.conf, whose
        // NODENAME belongs to the shared node.
        std::fs::write(
            self.folder.join("rabbitmq-env.conf"),
            "# A private test node: everything is set by RABBITMQ_* variables.\n",
        )?;
        hand_to_rabbitmq_user(&self.folder)
    }

    /// The node name, `wtest-<id>@localhost`, as `rabbitmqctl -n` takes it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The AMQP port on 127.0.0.1.
    pub fn amqp_port(&self) -> u16 {
        self.amqp_port
    }

    /// The Erlang distribution port on 127.0.0.1.
    pub fn dist_port(&self) -> u16 {
        self.dist_port
    }

    /// The URL of the node's default vhost as the `guest` user, as `WARREN_AMQP_URL`
    /// takes it.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    /// How long each boot took so far, from `rabbitmq-server -detached` until the node
    /// served (the first is the start, the others restarts).
    pub fn boot_times(&self) -> &[Duration] {
        &self.boot_times
    }

    /// The node's main log file.
    pub fn log_file(&self) -> PathBuf {
        self.log_base().join(format!("{}.log", self.name))
    }

    /// The last `lines` lines of the node's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn mnesia_base(&self) -> PathBuf {
        self.folder.join("mnesia")
    }

    fn log_base(&self) -> PathBuf {
        self.folder.join("log")
    }

    fn config_file(&self) -> PathBuf {
        self.folder.join("rabbitmq.conf")
    }

    fn pid_file(&self) -> PathBuf {
        self.folder.join("rabbitmq.pid")
    }

    fn crash_dump(&self) -> PathBuf {
        self.log_base().join("erl_crash.dump")
    }

    /// The environment that makes `rabbitmq-server` start this node and no other.
    fn server_environment(&self) -> Vec<(&'static str, String)> {
        let path = |path: PathBuf| path.display().to_string();
        vec![
            ("RABBITMQ_NODENAME", self.name.clone()),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".to_owned()),
            ("RABBITMQ_NODE_PORT", self.amqp_port.to_string()),
            ("RABBITMQ_DIST_PORT", self.dist_port.to_string()),
            ("RABBITMQ_MNESIA_BASE", path(self.mnesia_base())),
            ("RABBITMQ_LOG_BASE", path(self.log_base())),
            ("RABBITMQ_PID_FILE", path(self.pid_file())),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                path(self.folder.join("enabled_plugins")),
            ),
            ("RABBITMQ_CONFIG_FILE", path(self.config_file())),
            // No conf.d of the shared node's either.
            (
                "RABBITMQ_CONFIG_FILES",
                path(self.folder.join("conf.d").join("*.conf")),
            ),
            (
                "RABBITMQ_ADVANCED_CONFIG_FILE",
                path(self.folder.join("advanced.config")),
            ),
            (
                "RABBITMQ_CONF_ENV_FILE",
                path(self.folder.join("rabbitmq-env.conf")),
            ),
            // Distribution on the loopback interface only, like the shared node; epmd
            // (port 4369) is shared, which is what it is for.
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}".to_owned(),
            ),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".to_owned()),
        ]
    }

    /// Starts the node's VM and waits until it serves.
    async fn boot(&mut self) -> Result<(), BootFailure> {
        // A pid file or crash dump of an earlier run would confuse the checks below.
        let _ = std::fs::remove_file(self.pid_file());
        let _ = std::fs::remove_file(self.crash_dump());
        self.os_pid = None;
        let started = Instant::now();
        let mut command = Command::new("rabbitmq-server");
        command
            .arg("-detached")
            .envs(self.server_environment())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        self.started = true;
        let output = run_with_timeout(command, "rabbitmq-server -detached").await;
        if !output.status.success() {
            return Err(BootFailure::Failed(format!(
                "`rabbitmq-server -detached` failed with {}: {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let deadline = started + NODE_START_TIMEOUT;
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        loop {
            poll.tick().await;
            if self.os_pid.is_none() {
                self.os_pid = read_pid(&self.pid_file());
            }
            let vm_died = self.os_pid.is_some_and(|pid| !process_alive(pid));
            if vm_died || self.crash_dump().exists() {
                return Err(BootFailure::Crashed(format!(
                    "the node's VM died while booting (ports {} and {}); log:\n{}",
                    self.amqp_port,
                    self.dist_port,
                    self.log_tail(30)
                )));
            }
            if self.serves().await {
                self.boot_times.push(started.elapsed());
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BootFailure::Failed(format!(
                    "not serving after {NODE_START_TIMEOUT:?}; log:\n{}",
                    self.log_tail(30)
                )));
            }
        }
    }

    /// Whether an AMQP connection works and `rabbitmq-diagnostics` finds every listener
    /// reachable.
    async fn serves(&self) -> bool {
        let url = self.amqp_url();
        let connected = tokio::time::timeout(
            Duration::from_secs(5),
            Connection::connect(&url, ConnectionProperties::default()),
        )
        .await;
        match connected {
            Ok(Ok(connection)) => {
                crate::close_connection(&connection, "probe").await;
            }
            _ => return false,
        }
        self.try_rabbitmq_diagnostics(&["check_port_connectivity"])
            .await
            .status
            .success()
    }

    /// Runs `rabbitmqctl -n <node> <args>` and returns what it printed on stdout.
    ///
    /// # Panics
    /// When it fails or takes longer than a minute.
    pub async fn rabbitmqctl(&self, args: &[&str]) -> String {
        let output = self.try_rabbitmqctl(args).await;
        assert!(
            output.status.success(),
            "`rabbitmqctl -n {} {}` failed with {}: {}{}",
            self.name,
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `rabbitmqctl -n <node> <args>` and returns how it went.
    pub async fn try_rabbitmqctl(&self, args: &[&str]) -> Output {
        self.run_cli("rabbitmqctl", args).await
    }

    /// Runs `rabbitmq-diagnostics -n <node> -q <args>` and returns how it went.
    pub async fn try_rabbitmq_diagnostics(&self, args: &[&str]) -> Output {
        let mut quiet = vec!["-q"];
        quiet.extend_from_slice(args);
        self.run_cli("rabbitmq-diagnostics", &quiet).await
    }

    async fn run_cli(&self, tool: &str, args: &[&str]) -> Output {
        let mut command = Command::new(tool);
        command
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        run_with_timeout(command, &format!("{tool} {}", args.join(" "))).await
    }

    /// Stops the RabbitMQ application, leaving the VM up (`rabbitmqctl stop_app`).
    pub async fn stop_app(&self) {
        self.rabbitmqctl(&["stop_app"]).await;
    }

    /// Starts the RabbitMQ application again and waits until the node serves.
    ///
    /// # Panics
    /// When it does not serve within [`NODE_START_TIMEOUT`].
    pub async fn start_app(&self) {
        self.rabbitmqctl(&["start_app"]).await;
        let deadline = Instant::now() + NODE_START_TIMEOUT;
        while !self.serves().await {
            assert!(
                Instant::now() < deadline,
                "{} does not serve {NODE_START_TIMEOUT:?} after start_app; log:\n{}",
                self.name,
                self.log_tail(30)
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Stops the node (`rabbitmqctl stop`) and waits until its VM is gone.
    ///
    /// # Panics
    /// When it does not stop within [`NODE_STOP_TIMEOUT`].
    pub async fn stop(&mut self) {
        if self.os_pid.is_none() {
            self.os_pid = read_pid(&self.pid_file());
        }
        let output = self.try_rabbitmqctl(&["stop"]).await;
        assert!(
            output.status.success(),
            "`rabbitmqctl -n {} stop` failed with {}: {}{}",
            self.name,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if let Some(pid) = self.os_pid {
            let deadline = Instant::now() + NODE_STOP_TIMEOUT;
            while process_alive(pid) {
                assert!(
                    Instant::now() < deadline,
                    "{} (pid {pid}) still runs {NODE_STOP_TIMEOUT:?} after `rabbitmqctl stop`",
                    self.name
                );
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
        self.started = false;
        self.os_pid = None;
    }

    /// Starts a node stopped with [`PrivateNode::stop`] again, on the same ports with the
    /// same data, and waits until it serves.
    ///
    /// # Panics
    /// When it does not serve within [`NODE_START_TIMEOUT`].
    pub async fn start_again(&mut self) {
        if let Err(BootFailure::Crashed(diagnosis) | BootFailure::Failed(diagnosis)) =
            self.boot().await
        {
            panic!("{} did not start again: {diagnosis}", self.name);
        }
    }

    /// Stops the node and starts it again on the same ports with the same data, and
    /// waits until it serves. Returns how long that took, from the stop command until
    /// the node served again.
    ///
    /// # Panics
    /// When it does not stop or does not serve again in time.
    pub async fn restart(&mut self) -> Duration {
        let started = Instant::now();
        self.stop().await;
        self.start_again().await;
        started.elapsed()
    }

    /// Stops the node in drop: the CLI first, then SIGKILL for a VM still alive.
    fn stop_blocking(&mut self) {
        if self.os_pid.is_none() {
            self.os_pid = read_pid(&self.pid_file());
        }
        let stopped = std::process::Command::new("rabbitmqctl")
            .args(["-n", &self.name, "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .and_then(|mut child| {
                let deadline = std::time::Instant::now() + NODE_STOP_TIMEOUT;
                loop {
                    if let Some(status) = child.try_wait()? {
                        return Ok(status.success());
                    }
                    if std::time::Instant::now() >= deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Ok(false);
                    }
                    std::thread::sleep(POLL_INTERVAL);
                }
            })
            .unwrap_or(false);
        let Some(pid) = self.os_pid else {
            if !stopped {
                eprintln!(
                    "[{}] could not stop the node and know no pid of it to kill",
                    self.name
                );
            }
            return;
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while process_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(POLL_INTERVAL);
        }
        if process_alive(pid) {
            eprintln!(
                "[{}] still alive after `stop`: killing pid {pid}",
                self.name
            );
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        if self.started {
            self.stop_blocking();
        }
        if let Err(error) = std::fs::remove_dir_all(&self.folder)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("cannot remove {}: {error}", self.folder.display());
        }
    }
}

/// Runs `command` with its output captured, for at most [`CLI_TIMEOUT`].
///
/// # Panics
/// When it cannot be started or runs too long.
async fn run_with_timeout(mut command: Command, what: &str) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run `{what}`: {error}"));
    tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`{what}` still runs after {CLI_TIMEOUT:?}"))
        .unwrap_or_else(|error| panic!("cannot wait for `{what}`: {error}"))
}

/// Gives `folder` and everything in it to the `rabbitmq` user when this runs as root,
/// since Debian's wrapper starts the node as that user.
fn hand_to_rabbitmq_user(folder: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // A folder this process just made belongs to its effective user.
    if std::fs::metadata(folder)?.uid() != 0 {
        return Ok(());
    }
    let status = std::process::Command::new("chown")
        .args(["-R", "rabbitmq:rabbitmq"])
        .arg(folder)
        .stdin(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "`chown -R rabbitmq:rabbitmq {}` failed with {status}",
            folder.display()
        )))
    }
}

/// The start of the kernel's ephemeral port range (where outgoing connections get their
/// local ports).
fn ephemeral_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A TCP port on 127.0.0.1 that nothing listens on now and that is not in `taken`:
/// chosen at random below the ephemeral range, checked by binding it and letting go.
fn free_port(taken: &[u16]) -> u16 {
    let highest = ephemeral_port_start().saturating_sub(1);
    if highest > LOWEST_PORT {
        let span = u128::from(highest - LOWEST_PORT) + 1;
        for _ in 0..200 {
            let offset = uuid::Uuid::new_v4().as_u128() % span;
            let port = LOWEST_PORT + u16::try_from(offset).expect("the span fits in a port");
            if !taken.contains(&port)
                && TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok()
            {
                return port;
            }
        }
    }
    // No room below the ephemeral range: let the kernel choose.
    loop {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .expect("bind a free port on 127.0.0.1");
        let port = listener.local_addr().expect("a bound address").port();
        if !taken.contains(&port) {
            return port;
        }
    }
}

/// The pid in a RabbitMQ pid file, once it is written.
fn read_pid(pid_file: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

/// Whether process `pid` exists and is not a zombie.
fn process_alive(pid: i32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => {
            // `/proc/<pid>/stat` is `pid (comm) state …`; a zombie has exited.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

/// One worker process started against a private node, its output kept for assertions.
/// Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct NodeWorker {
    binary: String,
    pid: u32,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

/// What every session of a worker logs when it starts consuming.
pub const READY_LOG: &str = "ready: consuming";

/// What a worker logs when it lost its session and builds a new one.
pub const SESSION_LOST_LOG: &str = "session lost; reconnecting";

impl NodeWorker {
    /// Starts `binary` (e.g. `warren-echo`) with `WARREN_AMQP_URL` pointing at `node`,
    /// `WARREN_LOG=info` and the variables in `environment`, without waiting for it.
    /// Its output goes to the test's stderr prefixed with `[<binary>:<pid>]`.
    ///
    /// # Panics
    /// When the binary is missing or cannot be started.
    pub fn spawn(node: &PrivateNode, binary: &str, environment: &[(&str, &str)]) -> NodeWorker {
        let mut child = Command::new(bin_path(binary))
            .env("WARREN_AMQP_URL", node.amqp_url())
            .env("WARREN_LOG", "info")
            .envs(environment.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"));
        let pid = child
            .id()
            .expect("a process that was just started has an id");
        let log = Arc::new(Mutex::new(Vec::new()));
        let prefix = format!("[{binary}:{pid}]");
        if let Some(stdout) = child.stdout.take() {
            keep_lines(prefix.clone(), stdout, Arc::clone(&log));
        }
        if let Some(stderr) = child.stderr.take() {
            keep_lines(prefix, stderr, Arc::clone(&log));
        }
        NodeWorker {
            binary: binary.to_owned(),
            pid,
            child,
            log,
        }
    }

    /// [`NodeWorker::spawn`], then waits until the worker consumes.
    pub async fn start(
        node: &PrivateNode,
        binary: &str,
        environment: &[(&str, &str)],
    ) -> NodeWorker {
        let mut worker = NodeWorker::spawn(node, binary, environment);
        worker.wait_ready().await;
        worker
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Every line the worker printed so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("the log lock").clone()
    }

    /// The lines the worker printed so far that contain every one of `needles`.
    pub fn log_matches(&self, needles: &[&str]) -> Vec<String> {
        self.log
            .lock()
            .expect("the log lock")
            .iter()
            .filter(|line| needles.iter().all(|needle| line.contains(needle)))
            .cloned()
            .collect()
    }

    /// How many lines the worker printed so far contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_matches(&[needle]).len()
    }

    /// Waits until `count` lines of the worker's output contain `needle`.
    ///
    /// # Panics
    /// When the worker exits first, or the lines do not appear within `timeout`.
    pub async fn wait_for_log(&mut self, needle: &str, count: usize, timeout: Duration) {
        self.wait_for_log_matching(&[needle], count, timeout).await;
    }

    /// Waits until `count` lines of the worker's output contain every one of `needles`.
    ///
    /// # Panics
    /// When the worker exits first, or the lines do not appear within `timeout`.
    pub async fn wait_for_log_matching(
        &mut self,
        needles: &[&str],
        count: usize,
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        let mut poll = tokio::time::interval(Duration::from_millis(20));
        loop {
            poll.tick().await;
            let seen = self.log_matches(needles).len();
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

    /// Waits until the worker's first session consumes its work queue.
    pub async fn wait_ready(&mut self) {
        self.wait_for_log(READY_LOG, 1, READY_TIMEOUT).await;
    }

    /// Sends SIGTERM.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub fn sigterm(&self) {
        let pid = i32::try_from(self.pid).expect("process ids fit in an i32");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap_or_else(|error| panic!("cannot send SIGTERM to {} ({pid}): {error}", self.binary));
    }

    /// Waits for the process to exit.
    ///
    /// # Panics
    /// When it still runs after `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} (pid {}) still runs after {timeout:?}",
                    self.binary, self.pid
                )
            })
            .unwrap_or_else(|error| panic!("cannot wait for {}: {error}", self.binary))
    }

    /// Sends SIGTERM and waits up to [`crate::EXIT_TIMEOUT`] for the process to exit.
    pub async fn stop(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait(crate::EXIT_TIMEOUT).await
    }

    /// The exit status if the process has already exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|error| panic!("cannot poll {}: {error}", self.binary))
    }
}

/// Copies each line `reader` produces to the test's stderr, prefixed by `prefix`, and
/// keeps it in `log`.
fn keep_lines(
    prefix: String,
    reader: impl AsyncRead + Unpin + Send + 'static,
    log: Arc<Mutex<Vec<String>>>,
) {
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
                    log.lock().expect("the log lock").push(text);
                }
                Err(error) => {
                    eprintln!("{prefix} <cannot read output: {error}>");
                    break;
                }
            }
        }
    });
}

/// A connection of the test's own to a private node, with a channel in confirm mode for
/// publishing; every other operation opens a channel of its own.
pub struct NodeClient {
    connection: Connection,
    publisher: Channel,
}

impl NodeClient {
    /// Connects to `amqp_url` and opens a publishing channel in confirm mode.
    pub async fn try_connect(amqp_url: &str) -> Result<NodeClient, lapin::Error> {
        let connection = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
        let publisher = connection.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(NodeClient {
            connection,
            publisher,
        })
    }

    /// Connects to `amqp_url`, trying again until it works or `timeout` passes: what an
    /// originator does after its broker went away.
    ///
    /// # Panics
    /// When no connection works within `timeout`.
    pub async fn connect_within(amqp_url: &str, timeout: Duration) -> NodeClient {
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), Self::try_connect(amqp_url)).await {
                Ok(Ok(client)) => return client,
                Ok(Err(error)) => assert!(
                    Instant::now() < deadline,
                    "cannot connect to {amqp_url} within {timeout:?}: {error}"
                ),
                Err(_) => assert!(
                    Instant::now() < deadline,
                    "cannot connect to {amqp_url} within {timeout:?}: the attempt hung"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The underlying connection.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Whether the connection is still up.
    pub fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    /// The state of `queue`, or `None` when it does not exist.
    ///
    /// # Panics
    /// When the broker cannot be asked.
    pub async fn queue_state(&self, queue: &str) -> Option<QueueState> {
        // A passive declare of a missing queue closes its channel: one channel per call.
        let channel = self
            .connection
            .create_channel()
            .await
            .unwrap_or_else(|error| panic!("cannot open a channel: {error}"));
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        let state = match declared {
            Ok(declared) => Some(QueueState {
                messages: declared.message_count(),
                consumers: declared.consumer_count(),
            }),
            Err(error) if is_not_found(&error) => None,
            Err(error) => panic!("cannot inspect queue {queue}: {error}"),
        };
        if state.is_some() {
            crate::close_channel(&channel, "done").await;
        }
        state
    }

    /// Polls `queue` until `condition` holds, and returns its state then.
    ///
    /// # Panics
    /// When the condition does not hold within `timeout`; `what` says what was awaited.
    pub async fn wait_for_queue(
        &self,
        queue: &str,
        timeout: Duration,
        what: &str,
        condition: impl Fn(&QueueState) -> bool,
    ) -> QueueState {
        let deadline = Instant::now() + timeout;
        let mut poll = tokio::time::interval(Duration::from_millis(20));
        loop {
            poll.tick().await;
            let state = self.queue_state(queue).await;
            if let Some(state) = state.filter(&condition) {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "queue {queue}: {what} did not happen within {timeout:?} (last state: {state:?})"
            );
        }
    }

    /// Publishes one message as `mandatory` and waits for the broker to confirm it.
    ///
    /// # Panics
    /// When the publish fails, or the broker nacks or returns the message.
    pub async fn publish(&self, message: OutgoingMessage) {
        self.publish_all([message]).await;
    }

    /// Publishes every message as `mandatory`, pipelined, and waits for all the confirms.
    ///
    /// # Panics
    /// When a publish fails, or the broker nacks or returns a message.
    pub async fn publish_all(&self, messages: impl IntoIterator<Item = OutgoingMessage>) {
        if let Err(error) = self.try_publish_all(messages).await {
            panic!("{error}");
        }
    }

    /// [`NodeClient::publish_all`] that reports a failure instead of panicking: `Ok` when
    /// the broker confirmed every message as routed.
    pub async fn try_publish_all(
        &self,
        messages: impl IntoIterator<Item = OutgoingMessage>,
    ) -> Result<(), String> {
        let mut pending = Vec::new();
        for message in messages {
            let confirm = self
                .publisher
                .basic_publish(
                    message.exchange.as_str().into(),
                    message.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message.body,
                    message.properties,
                )
                .await
                .map_err(|error| {
                    format!(
                        "cannot publish to exchange {:?} with key {:?}: {error}",
                        message.exchange, message.routing_key
                    )
                })?;
            pending.push((message.exchange, message.routing_key, confirm));
        }
        for (exchange, routing_key, confirm) in pending {
            let confirmation = confirm.await.map_err(|error| {
                format!("no confirm for exchange {exchange:?} key {routing_key:?}: {error}")
            })?;
            if !confirmation.is_ack() {
                return Err(format!(
                    "the broker nacked a message to exchange {exchange:?} key {routing_key:?}"
                ));
            }
            if let Some(returned) = confirmation.take_message() {
                return Err(format!(
                    "the broker returned a message to exchange {exchange:?} key \
                     {routing_key:?} as unroutable: {} {}",
                    returned.reply_code, returned.reply_text
                ));
            }
        }
        Ok(())
    }

    /// Declares a durable, non-exclusive reply queue `warren.reply.<uuid>` bound to
    /// [`REPLIES_EXCHANGE`] under its own name: an originator's queue that outlives its
    /// connection and a restart of the broker. Returns its name.
    ///
    /// The exchange is the workers' to declare: start a worker before calling this.
    ///
    /// # Panics
    /// When the queue cannot be declared or bound.
    pub async fn declare_durable_reply_queue(&self) -> String {
        let name = format!("warren.reply.{}", uuid::Uuid::new_v4());
        let channel = self
            .connection
            .create_channel()
            .await
            .unwrap_or_else(|error| panic!("cannot open a channel: {error}"));
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|error| panic!("cannot declare reply queue {name}: {error}"));
        channel
            .queue_bind(
                name.as_str().into(),
                REPLIES_EXCHANGE.into(),
                name.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|error| {
                panic!("cannot bind reply queue {name} to {REPLIES_EXCHANGE}: {error}")
            });
        crate::close_channel(&channel, "done").await;
        name
    }

    /// Consumes `queue` with manual acknowledgements and at most `prefetch` unacked
    /// deliveries, on a channel of its own.
    pub async fn consume(&self, queue: &str, prefetch: u16) -> Result<Consumer, lapin::Error> {
        let channel = self.connection.create_channel().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        channel
            .basic_consume(
                queue.into(),
                format!("warren-test-{}", uuid::Uuid::new_v4())
                    .as_str()
                    .into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
    }

    /// Takes one message body from `queue` (acknowledged at once), if one is ready.
    ///
    /// # Panics
    /// When the queue cannot be read.
    pub async fn try_get(&self, queue: &str) -> Option<Vec<u8>> {
        let channel = self
            .connection
            .create_channel()
            .await
            .unwrap_or_else(|error| panic!("cannot open a channel: {error}"));
        let message = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap_or_else(|error| panic!("cannot get from queue {queue}: {error}"));
        crate::close_channel(&channel, "done").await;
        message.map(|message| message.delivery.data)
    }

    /// Takes the next message body from `queue`, polling until one is there or `timeout`
    /// passes.
    pub async fn get_within(&self, queue: &str, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut poll = tokio::time::interval(Duration::from_millis(20));
        loop {
            poll.tick().await;
            if let Some(body) = self.try_get(queue).await {
                return Some(body);
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Closes the connection (best effort).
    pub async fn close(&self) {
        crate::close_connection(&self.connection, "done").await;
    }
}

fn is_not_found(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ProtocolError(amqp_error)
            if *amqp_error.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_below_the_ephemeral_range_and_distinct() {
        let first = free_port(&[]);
        let second = free_port(&[first]);
        assert_ne!(first, second);
        if ephemeral_port_start() > LOWEST_PORT + 1 {
            assert!((LOWEST_PORT..ephemeral_port_start()).contains(&first));
            assert!((LOWEST_PORT..ephemeral_port_start()).contains(&second));
        }
        TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, first)).expect("still free");
    }

    #[test]
    fn options_write_config_lines_and_rabbit_settings() {
        let options = NodeOptions::new()
            .consumer_timeout(Duration::from_secs(3))
            .channel_tick_interval(Duration::from_secs(1));
        assert_eq!(options.config_lines, vec!["consumer_timeout = 3000"]);
        assert_eq!(
            options.rabbit_settings,
            vec![("channel_tick_interval".to_owned(), "1000".to_owned())]
        );
    }

    #[test]
    fn this_process_is_alive_and_a_made_up_pid_is_not() {
        let own = i32::try_from(std::process::id()).expect("pid fits");
        assert!(process_alive(own));
        assert!(!process_alive(i32::MAX - 1));
    }
}
