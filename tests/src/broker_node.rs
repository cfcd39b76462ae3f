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
//! This module is the node's lifecycle only: its ports, folders and environment, start,
//! stop, restart, `rabbitmqctl` against it (alarms, listings), and waiting until it serves.
//! A test starts workers on it with [`crate::WarrenCommand`] and talks to it with a
//! [`crate::BrokerClient`], both given [`PrivateNode::amqp_url`], as on the shared broker.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use tokio::process::Command;
use tokio::time::Instant;

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
        self.rabbitmqctl(&["stop"]).await;
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
/// Also for a listener of a node's own beyond AMQP (e.g. TLS, set by
/// [`NodeOptions::config_line`]).
pub fn free_port(taken: &[u16]) -> u16 {
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
