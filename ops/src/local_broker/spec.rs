//! What a local node is: its name, its AMQP port, its folder, and the files and
//! environment that make `rabbitmq-server` start that node and no other.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a node may take from `rabbitmq-server -detached` until it serves, unless
/// [`NodeSpec::with_start_timeout`] says otherwise. Boots take about 8 s on a small machine;
/// a busy one (a build running beside it) can take several times that.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(90);

/// The AMQP port of the fleet's own node: the one of the built-in broker URL.
const FLEET_AMQP_PORT: u16 = 5672;

/// A local RabbitMQ node: everything needed to start, find and stop it.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    name: String,
    folder: PathBuf,
    amqp_port: u16,
    config_lines: Vec<String>,
    rabbit_settings: Vec<(String, String)>,
    start_timeout: Duration,
}

impl NodeSpec {
    /// A node named `name` (e.g. `wtest-1234@localhost`) serving AMQP on
    /// `127.0.0.1:amqp_port`, with everything of its own under `folder` (made absolute
    /// against the working directory).
    pub fn new(name: impl Into<String>, folder: impl Into<PathBuf>, amqp_port: u16) -> NodeSpec {
        let folder = folder.into();
        let folder = std::path::absolute(&folder).unwrap_or(folder);
        NodeSpec {
            name: name.into(),
            folder,
            amqp_port,
            config_lines: Vec::new(),
            rabbit_settings: Vec::new(),
            start_timeout: DEFAULT_START_TIMEOUT,
        }
    }

    /// The fleet's own node, kept in `folder` (`.warren/broker/`): serving on
    /// 127.0.0.1:5672, named `warren-<8 hex digits>@localhost` after the folder, so one
    /// folder always means one node (its data is found again on the next start) and two
    /// folders never share a name.
    pub fn for_fleet(folder: impl Into<PathBuf>) -> NodeSpec {
        let mut spec = NodeSpec::new(String::new(), folder, FLEET_AMQP_PORT);
        spec.name = fleet_node_name(&spec.folder);
        spec
    }

    /// Adds a line to the node's `rabbitmq.conf`, e.g. `consumer_timeout = 3000`.
    pub fn config_line(mut self, line: impl Into<String>) -> NodeSpec {
        self.config_lines.push(line.into());
        self
    }

    /// Sets an environment key of the `rabbit` application in `advanced.config`;
    /// `erlang_term` is written as is.
    pub fn rabbit_setting(
        mut self,
        key: impl Into<String>,
        erlang_term: impl Into<String>,
    ) -> NodeSpec {
        self.rabbit_settings.push((key.into(), erlang_term.into()));
        self
    }

    /// How long a start may take until the node serves.
    pub fn with_start_timeout(mut self, timeout: Duration) -> NodeSpec {
        self.start_timeout = timeout;
        self
    }

    /// The node name, as `rabbitmqctl -n` takes it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The folder holding the node's data, logs and files.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The AMQP port on 127.0.0.1.
    pub fn amqp_port(&self) -> u16 {
        self.amqp_port
    }

    /// How long a start may take until the node serves.
    pub fn start_timeout(&self) -> Duration {
        self.start_timeout
    }

    /// The URL of the node's default vhost as the `guest` user.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    /// The node's main log file.
    pub fn log_file(&self) -> PathBuf {
        self.log_base().join(format!("{}.log", self.name))
    }

    /// The last `lines` lines of the node's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub(crate) fn mnesia_base(&self) -> PathBuf {
        self.folder.join("mnesia")
    }

    pub(crate) fn log_base(&self) -> PathBuf {
        self.folder.join("log")
    }

    pub(crate) fn pid_file(&self) -> PathBuf {
        self.folder.join("rabbitmq.pid")
    }

    pub(crate) fn crash_dump(&self) -> PathBuf {
        self.log_base().join("erl_crash.dump")
    }

    /// Present while a node of this folder runs whose start also started `epmd`, so
    /// whoever stops the node (maybe another process, adopting it) ends `epmd` too.
    pub(crate) fn epmd_marker(&self) -> PathBuf {
        self.folder.join("epmd-started-with-node")
    }

    fn config_file(&self) -> PathBuf {
        self.folder.join("rabbitmq.conf")
    }

    /// The environment that makes `rabbitmq-server` start this node and no other, with
    /// its Erlang distribution on `dist_port`.
    pub(crate) fn server_environment(&self, dist_port: u16) -> Vec<(&'static str, String)> {
        let path = |path: PathBuf| path.display().to_string();
        vec![
            ("RABBITMQ_NODENAME", self.name.clone()),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".to_owned()),
            ("RABBITMQ_NODE_PORT", self.amqp_port.to_string()),
            ("RABBITMQ_DIST_PORT", dist_port.to_string()),
            ("RABBITMQ_MNESIA_BASE", path(self.mnesia_base())),
            ("RABBITMQ_LOG_BASE", path(self.log_base())),
            ("RABBITMQ_PID_FILE", path(self.pid_file())),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                path(self.folder.join("enabled_plugins")),
            ),
            ("RABBITMQ_CONFIG_FILE", path(self.config_file())),
            // No conf.d of a system node either.
            (
                "RABBITMQ_CONFIG_FILES",
                path(self.folder.join("conf.d").join("*.conf")),
            ),
            (
                "RABBITMQ_ADVANCED_CONFIG_FILE",
                path(self.folder.join("advanced.config")),
            ),
            // Sourced instead of /etc/rabbitmq/rabbitmq-env.conf, whose NODENAME is the
            // system node's.
            (
                "RABBITMQ_CONF_ENV_FILE",
                path(self.folder.join("rabbitmq-env.conf")),
            ),
            // Distribution on the loopback interface only; epmd (port 4369) is shared by
            // every node of the machine, which is what it is for.
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}".to_owned(),
            ),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".to_owned()),
        ]
    }

    /// Writes the node's folder: data and log folders, configuration, an empty plugin
    /// list; then gives it to the `rabbitmq` user when this runs as root.
    pub(crate) fn write_folder(&self) -> std::io::Result<()> {
        for folder in [
            self.folder.clone(),
            self.mnesia_base(),
            self.log_base(),
            self.folder.join("conf.d"),
        ] {
            std::fs::create_dir_all(&folder)?;
        }
        let mut config = String::from(
            "# A local node of warren's. Ports, addresses and folders come from RABBITMQ_* \
             variables.\n",
        );
        for line in &self.config_lines {
            let _ = writeln!(config, "{line}");
        }
        std::fs::write(self.config_file(), config)?;
        let rabbit_settings: Vec<String> = self
            .rabbit_settings
            .iter()
            .map(|(key, value)| format!("{{{key}, {value}}}"))
            .collect();
        std::fs::write(
            self.folder.join("advanced.config"),
            format!("[{{rabbit, [{}]}}].\n", rabbit_settings.join(", ")),
        )?;
        std::fs::write(self.folder.join("enabled_plugins"), "[].\n")?;
        std::fs::write(
            self.folder.join("rabbitmq-env.conf"),
            "# A local node of warren's: everything is set by RABBITMQ_* variables.\n",
        )?;
        hand_to_rabbitmq_user(&self.folder)
    }
}

/// `warren-<8 hex digits>@localhost`, the digits a hash (FNV-1a, stable across builds) of
/// the folder's path.
fn fleet_node_name(folder: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in folder.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("warren-{:08x}@localhost", hash >> 32)
}

/// Gives `folder` and everything in it to the `rabbitmq` user when this runs as root and
/// that user exists: Debian's wrapper starts the node as that user.
fn hand_to_rabbitmq_user(folder: &Path) -> std::io::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let Ok(Some(user)) = nix::unistd::User::from_name("rabbitmq") else {
        return Ok(());
    };
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    if let Some(closed) = closed_ancestor(folder, uid, gid) {
        // The node would die before writing a log line, leaving only a timeout to see.
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "the node runs as the `rabbitmq` user, who cannot enter {}; run the fleet \
                 from a folder that user can reach, or set WARREN_RUN_DIR to one (e.g. \
                 /var/tmp/warren)",
                closed.display()
            ),
        ));
    }
    change_owner_recursively(folder, uid, gid)
}

/// The first folder above `folder` that the user `uid` (primary group `gid`) may not
/// pass through, by its mode bits.
fn closed_ancestor(folder: &Path, uid: u32, gid: u32) -> Option<&Path> {
    use std::os::unix::fs::MetadataExt;
    folder.ancestors().skip(1).find(|above| {
        std::fs::metadata(above).is_ok_and(|meta| {
            let search = if meta.uid() == uid {
                0o100
            } else if meta.gid() == gid {
                0o010
            } else {
                0o001
            };
            meta.mode() & search == 0
        })
    })
}

fn change_owner_recursively(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            change_owner_recursively(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_behind_a_closed_one_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let top = std::env::temp_dir().join(format!("warren-closed-{}", uuid::Uuid::new_v4()));
        let inner = top.join("run").join("broker");
        std::fs::create_dir_all(&inner).expect("create the folders");
        let nobody = (u32::MAX - 1, u32::MAX - 1);
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o755))
            .expect("open the top folder");
        assert_eq!(closed_ancestor(&inner, nobody.0, nobody.1), None);
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o700))
            .expect("close the top folder");
        assert_eq!(
            closed_ancestor(&inner, nobody.0, nobody.1),
            Some(top.as_path())
        );
        std::fs::remove_dir_all(&top).expect("remove the folders");
    }

    #[test]
    fn the_fleet_node_is_named_after_its_folder() {
        let one = NodeSpec::for_fleet("/srv/a/.warren/broker");
        let again = NodeSpec::for_fleet("/srv/a/.warren/broker");
        let other = NodeSpec::for_fleet("/srv/b/.warren/broker");
        assert_eq!(one.name(), again.name());
        assert_ne!(one.name(), other.name());
        assert!(one.name().starts_with("warren-"), "{}", one.name());
        assert!(one.name().ends_with("@localhost"), "{}", one.name());
        assert_eq!(one.name().len(), "warren-12345678@localhost".len());
        assert_eq!(one.amqp_port(), 5672);
        assert_eq!(one.amqp_url(), crate::local_broker::DEFAULT_AMQP_URL);
    }

    #[test]
    fn paths_are_absolute_because_the_wrapper_changes_folder() {
        let spec = NodeSpec::new("n@localhost", "relative/broker", 10_001);
        assert!(spec.folder().is_absolute(), "{}", spec.folder().display());
        for (key, value) in spec.server_environment(10_002) {
            if key.ends_with("_BASE") || key.ends_with("_FILE") || key.ends_with("_FILES") {
                assert!(Path::new(&value).is_absolute(), "{key}={value}");
            }
        }
    }

    #[test]
    fn the_environment_names_the_node_its_ports_and_its_folders() {
        let spec = NodeSpec::new("n@localhost", "/tmp/n", 10_001);
        let environment = spec.server_environment(10_002);
        let value = |key: &str| {
            environment
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(value("RABBITMQ_NODENAME"), Some("n@localhost"));
        assert_eq!(value("RABBITMQ_NODE_IP_ADDRESS"), Some("127.0.0.1"));
        assert_eq!(value("RABBITMQ_NODE_PORT"), Some("10001"));
        assert_eq!(value("RABBITMQ_DIST_PORT"), Some("10002"));
        assert_eq!(value("RABBITMQ_MNESIA_BASE"), Some("/tmp/n/mnesia"));
        assert_eq!(value("RABBITMQ_LOG_BASE"), Some("/tmp/n/log"));
        assert_eq!(value("RABBITMQ_PID_FILE"), Some("/tmp/n/rabbitmq.pid"));
        assert_eq!(
            value("RABBITMQ_ENABLED_PLUGINS_FILE"),
            Some("/tmp/n/enabled_plugins")
        );
        assert_eq!(
            value("RABBITMQ_CONF_ENV_FILE"),
            Some("/tmp/n/rabbitmq-env.conf")
        );
    }

    #[test]
    fn the_folder_holds_the_configuration() {
        let folder = std::env::temp_dir().join(format!("warren-spec-{}", uuid::Uuid::new_v4()));
        let spec = NodeSpec::new("n@localhost", &folder, 10_001)
            .config_line("consumer_timeout = 3000")
            .rabbit_setting("channel_tick_interval", "1000");
        spec.write_folder().expect("write the folder");
        let config = std::fs::read_to_string(folder.join("rabbitmq.conf")).expect("config");
        let advanced = std::fs::read_to_string(folder.join("advanced.config")).expect("advanced");
        let plugins = std::fs::read_to_string(folder.join("enabled_plugins")).expect("plugins");
        let made_folders = [spec.mnesia_base(), spec.log_base(), folder.join("conf.d")]
            .iter()
            .all(|path| path.is_dir());
        std::fs::remove_dir_all(&folder).expect("remove the folder");
        assert!(config.contains("\nconsumer_timeout = 3000\n"), "{config}");
        assert_eq!(advanced, "[{rabbit, [{channel_tick_interval, 1000}]}].\n");
        assert_eq!(plugins, "[].\n");
        assert!(made_folders);
    }
}
