//! Finding RabbitMQ's command-line tools and running them within a deadline.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

use super::LocalBrokerError;

/// Where Debian keeps the scripts its `/usr/sbin` wrappers run. The wrappers refuse
/// anyone but root and `rabbitmq`; the scripts run as whoever calls them.
const DEBIAN_SCRIPT_FOLDER: &str = "/usr/lib/rabbitmq/bin";

/// Folders searched after `PATH`: the system folders an ordinary user's `PATH` often
/// lacks, where packages put the tools.
const SYSTEM_FOLDERS: &[&str] = &[
    "/usr/sbin",
    "/usr/local/sbin",
    "/sbin",
    "/usr/lib/erlang/bin",
];

/// The RabbitMQ and Erlang programs a local node needs.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    /// `rabbitmq-server`.
    pub(crate) server: PathBuf,
    /// `rabbitmqctl`.
    pub(crate) ctl: PathBuf,
    /// `rabbitmq-diagnostics`.
    pub(crate) diagnostics: PathBuf,
    /// `epmd`, when found (only needed to end one).
    pub(crate) epmd: Option<PathBuf>,
}

impl Tools {
    /// Finds every tool in this process's `PATH` and the usual system folders.
    pub(crate) fn find() -> Result<Tools, LocalBrokerError> {
        let folders = search_folders(
            nix::unistd::geteuid().is_root(),
            std::env::var_os("PATH").as_deref(),
        );
        Tools::find_in(&folders)
    }

    /// Finds every tool in `folders`, the first match winning.
    pub(crate) fn find_in(folders: &[PathBuf]) -> Result<Tools, LocalBrokerError> {
        let required = |tool: &'static str| {
            find_program(tool, folders).ok_or(LocalBrokerError::NotInstalled { tool })
        };
        Ok(Tools {
            server: required("rabbitmq-server")?,
            ctl: required("rabbitmqctl")?,
            diagnostics: required("rabbitmq-diagnostics")?,
            epmd: find_program("epmd", folders),
        })
    }
}

/// The folders to search, in order. For anyone but root, Debian's scripts come first
/// (its wrappers would refuse them); then `PATH`; then [`SYSTEM_FOLDERS`].
pub(crate) fn search_folders(is_root: bool, path_variable: Option<&OsStr>) -> Vec<PathBuf> {
    let mut folders = Vec::new();
    if !is_root {
        folders.push(PathBuf::from(DEBIAN_SCRIPT_FOLDER));
    }
    if let Some(path_variable) = path_variable {
        folders.extend(std::env::split_paths(path_variable).filter(|folder| folder.is_absolute()));
    }
    folders.extend(SYSTEM_FOLDERS.iter().map(PathBuf::from));
    if is_root {
        folders.push(PathBuf::from(DEBIAN_SCRIPT_FOLDER));
    }
    folders
}

/// The first executable file named `name` in `folders`.
pub(crate) fn find_program(name: &str, folders: &[PathBuf]) -> Option<PathBuf> {
    folders
        .iter()
        .map(|folder| folder.join(name))
        .find(|path| is_executable_file(path))
}

/// Whether `path` is (or links to) a regular file with an execute bit set.
pub(crate) fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// Runs `program` with `arguments` and `environment`, output captured, killed if it takes
/// longer than `timeout`.
pub(crate) async fn run_tool(
    program: &Path,
    arguments: &[&str],
    environment: &[(&'static str, String)],
    timeout: Duration,
) -> Result<Output, LocalBrokerError> {
    let command_line = format!("{} {}", program.display(), arguments.join(" "));
    let child = Command::new(program)
        .args(arguments)
        .envs(
            environment
                .iter()
                .map(|(key, value)| (*key, value.as_str())),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| LocalBrokerError::Spawn {
            command: command_line.clone(),
            source,
        })?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(source)) => Err(LocalBrokerError::Spawn {
            command: command_line,
            source,
        }),
        Err(_elapsed) => Err(LocalBrokerError::ToolTimeout {
            command: command_line,
            timeout,
        }),
    }
}

/// [`run_tool`], and an error unless it exits with status 0.
pub(crate) async fn run_tool_successfully(
    program: &Path,
    arguments: &[&str],
    environment: &[(&'static str, String)],
    timeout: Duration,
) -> Result<Output, LocalBrokerError> {
    let output = run_tool(program, arguments, environment, timeout).await?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(LocalBrokerError::ToolFailed {
            command: format!("{} {}", program.display(), arguments.join(" ")),
            status: output.status,
            output: printed(&output),
        })
    }
}

/// What a tool printed, stdout then stderr, trimmed.
pub(crate) fn printed(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stderr.trim());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_scripts_come_first_for_everyone_but_root() {
        let path = OsStr::new("/home/me/bin:relative:/usr/bin");
        let user = search_folders(false, Some(path));
        assert_eq!(user[0], Path::new(DEBIAN_SCRIPT_FOLDER));
        assert_eq!(user[1], Path::new("/home/me/bin"));
        assert_eq!(
            user[2],
            Path::new("/usr/bin"),
            "relative PATH entries are skipped"
        );
        assert!(user.contains(&PathBuf::from("/usr/sbin")));

        let root = search_folders(true, Some(path));
        assert_eq!(root[0], Path::new("/home/me/bin"));
        assert_eq!(
            root.last().map(PathBuf::as_path),
            Some(Path::new(DEBIAN_SCRIPT_FOLDER))
        );
    }

    #[test]
    fn missing_tools_say_how_to_get_rabbitmq() {
        let empty = std::env::temp_dir().join(format!("warren-tools-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&empty).expect("create a scratch folder");
        let found = Tools::find_in(std::slice::from_ref(&empty));
        std::fs::remove_dir(&empty).expect("remove the scratch folder");
        let error = found.expect_err("nothing there");
        assert!(matches!(
            error,
            LocalBrokerError::NotInstalled {
                tool: "rabbitmq-server"
            }
        ));
        let message = error.to_string();
        assert!(
            message.contains("apt-get install rabbitmq-server"),
            "{message}"
        );
        assert!(
            message.contains("docker compose up -d rabbitmq"),
            "{message}"
        );
    }

    #[test]
    fn only_executable_files_are_programs() {
        use std::os::unix::fs::PermissionsExt;
        let folder = std::env::temp_dir().join(format!("warren-tools-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&folder).expect("create a scratch folder");
        let plain = folder.join("rabbitmqctl");
        std::fs::write(&plain, "").expect("write");
        let not_executable = find_program("rabbitmqctl", std::slice::from_ref(&folder));
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let executable = find_program("rabbitmqctl", std::slice::from_ref(&folder));
        std::fs::remove_dir_all(&folder).expect("remove the scratch folder");
        assert_eq!(not_executable, None);
        assert_eq!(executable, Some(plain));
    }

    #[tokio::test]
    async fn a_tool_that_runs_too_long_is_killed() {
        let error = run_tool(
            Path::new("/bin/sh"),
            &["-c", "sleep 30"],
            &[],
            Duration::from_millis(100),
        )
        .await
        .expect_err("too slow");
        assert!(
            matches!(error, LocalBrokerError::ToolTimeout { .. }),
            "{error}"
        );
        let failed = run_tool_successfully(
            Path::new("/bin/sh"),
            &["-c", "echo no >&2; exit 3"],
            &[],
            Duration::from_secs(10),
        )
        .await
        .expect_err("fails");
        assert!(failed.to_string().contains("no"), "{failed}");
    }
}
