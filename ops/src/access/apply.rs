//! Carrying the plan out: the topology declared over AMQP (as the operator's user, with
//! the same declarations and arguments a worker makes), then users and permissions with
//! `rabbitmqctl`. A new password is written to `<password dir>/<worker>.url` (an
//! originator's to `originator-<name>.url`; mode 0600) as the user's whole broker URL, for
//! `WARREN_AMQP_URL_FILE`.

use std::io::Write;
use std::path::{Path, PathBuf};

use warren_runtime::topology::{WorkerQueues, declare_exchanges, declare_queues_of};
use warren_runtime::{RuntimeError, SETUP_TIMEOUT, Settings, close_connection, connect};

use super::diff::{Change, diff};
use super::observed::Rabbitmqctl;
use super::plan::{FleetPlan, WorkerManifest};

/// Why `warren topology` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The manifests do not make a plan.
    #[error("{0}")]
    Plan(String),
    /// Declaring the topology failed.
    #[error("cannot declare the topology: {0}")]
    Broker(#[from] RuntimeError),
    /// Declaring the topology took longer than the set-up timeout.
    #[error("declaring the topology took longer than {0:?}")]
    Timeout(std::time::Duration),
    /// `rabbitmqctl` failed or printed what could not be read.
    #[error("{0}")]
    Rabbitmqctl(String),
    /// A password file could not be written.
    #[error("cannot write {path}: {source}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The broker URL has no place for credentials.
    #[error("{0}")]
    Url(String),
}

/// What `apply` did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// The changes made (as `diff` saw them before).
    pub changes: Vec<Change>,
    /// Password files written (a new user, or one whose file was missing).
    pub password_files: Vec<PathBuf>,
}

/// The vhost `url` names (`/` when it names none).
pub fn vhost_of(url: &str) -> Result<String, AccessError> {
    url.parse::<lapin::uri::AMQPUri>()
        .map(|uri| uri.vhost)
        .map_err(|reason| AccessError::Url(format!("the broker URL does not parse: {reason}")))
}

/// `url` naming `vhost` instead of the vhost it names.
pub fn url_with_vhost(url: &str, vhost: &str) -> Result<String, AccessError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(AccessError::Url("the broker URL has no scheme".to_owned()));
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let query = path.find('?').map_or("", |start| &path[start..]);
    let mut encoded = String::new();
    for byte in vhost.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(format!("{scheme}://{authority}/{encoded}{query}"))
}

/// `url` with `user` and `password` as its credentials (any it had replaced). User
/// names and generated passwords are made of characters a URL takes as they are.
pub fn url_with_credentials(url: &str, user: &str, password: &str) -> Result<String, AccessError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(AccessError::Url("the broker URL has no scheme".to_owned()));
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    Ok(format!("{scheme}://{user}:{password}@{host}{path}"))
}

/// A new password: 256 random bits (two v4 UUIDs' random bits) in hex.
fn new_password() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The password file of `owner` (a worker, or `originator-<name>`) in `password_dir`.
pub fn password_file(password_dir: &Path, owner: &str) -> PathBuf {
    password_dir.join(format!("{owner}.url"))
}

/// Writes `text` to a new file `path` readable by its owner alone (replacing one that
/// was there).
fn write_secret_file(path: &Path, text: &str) -> Result<(), AccessError> {
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |source| AccessError::PasswordFile {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(failed(error)),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.write_all(b"\n").map_err(failed)?;
    file.sync_all().map_err(failed)
}

/// Declares every exchange, queue and binding of `manifests` on the broker of
/// `settings`, as a worker would (same arguments), within the set-up timeout.
pub async fn declare_topology(
    settings: &Settings,
    manifests: &[WorkerManifest],
) -> Result<(), AccessError> {
    let declare = async {
        let connection = connect(&settings.amqp, "warren-topology").await?;
        let declared = async {
            declare_exchanges(&connection).await?;
            let channel = connection.create_channel().await?;
            for manifest in manifests {
                let commands: Vec<&str> = manifest.commands.iter().map(String::as_str).collect();
                let events: Vec<&str> = manifest.events.iter().map(String::as_str).collect();
                let worker = WorkerQueues {
                    name: &manifest.name,
                    commands: &commands,
                    events: &events,
                };
                declare_queues_of(
                    &channel,
                    &worker,
                    settings.worker.delivery_limit,
                    &settings.retry.delays(),
                )
                .await?;
            }
            warren_runtime::close_channel(&channel, "declared").await;
            Ok::<(), RuntimeError>(())
        }
        .await;
        close_connection(&connection, "topology declared").await;
        declared
    };
    tokio::time::timeout(SETUP_TIMEOUT, declare)
        .await
        .map_err(|_elapsed| AccessError::Timeout(SETUP_TIMEOUT))??;
    Ok(())
}

/// The changes `apply` would make in `vhost`.
pub async fn changes(
    rabbitmqctl: &Rabbitmqctl,
    vhost: &str,
    plan: &FleetPlan,
) -> Result<Vec<Change>, AccessError> {
    let observed = rabbitmqctl
        .observe(vhost)
        .await
        .map_err(AccessError::Rabbitmqctl)?;
    Ok(diff(plan, &observed))
}

/// Makes the broker hold `plan` in `vhost`: declares the topology of `manifests` over
/// AMQP, creates each missing user with a new password, gives an existing user whose
/// password file is missing a new one, and sets every permission that differs. A
/// user's password is left as it is when its file exists.
pub async fn apply(
    settings: &Settings,
    rabbitmqctl: &Rabbitmqctl,
    vhost: &str,
    manifests: &[WorkerManifest],
    plan: &FleetPlan,
    password_dir: &Path,
) -> Result<ApplyReport, AccessError> {
    let before = changes(rabbitmqctl, vhost, plan).await?;
    declare_topology(settings, manifests).await?;
    let observed = rabbitmqctl
        .observe(vhost)
        .await
        .map_err(AccessError::Rabbitmqctl)?;
    std::fs::create_dir_all(password_dir).map_err(|source| AccessError::PasswordFile {
        path: password_dir.to_path_buf(),
        source,
    })?;
    let mut report = ApplyReport {
        changes: before,
        password_files: Vec::new(),
    };
    let ctl = |args: Vec<&str>, stdin: Option<&str>| {
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        let stdin = stdin.map(str::to_owned);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            rabbitmqctl
                .run(&args, stdin.as_deref())
                .await
                .map_err(AccessError::Rabbitmqctl)
        }
    };
    for access in &plan.users {
        let file = password_file(password_dir, &access.owner);
        let exists = observed.users.contains(&access.user);
        if !exists || !file.exists() {
            let password = new_password();
            let url = url_with_credentials(&settings.amqp.url, &access.user, &password)?;
            // The password goes on standard input, never on a command line.
            let verb = if exists {
                "change_password"
            } else {
                "add_user"
            };
            ctl(vec![verb, &access.user], Some(&password)).await?;
            write_secret_file(&file, &url)?;
            report.password_files.push(file);
        }
        if observed.permissions.get(&access.user) != Some(&access.permissions) {
            let permissions = &access.permissions;
            ctl(
                vec![
                    "set_permissions",
                    "-p",
                    vhost,
                    &access.user,
                    &permissions.configure,
                    &permissions.write,
                    &permissions.read,
                ],
                None,
            )
            .await?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_replace_the_url_s_own() {
        let url = |base| url_with_credentials(base, "warren-echo", "abc123").expect("a URL");
        assert_eq!(
            url("amqp://guest:guest@127.0.0.1:5672/v1"),
            "amqp://warren-echo:abc123@127.0.0.1:5672/v1"
        );
        assert_eq!(
            url("amqps://broker:5671/%2f?heartbeat=10"),
            "amqps://warren-echo:abc123@broker:5671/%2f?heartbeat=10"
        );
        assert_eq!(url("amqp://a:b@host"), "amqp://warren-echo:abc123@host");
        assert!(url_with_credentials("localhost", "u", "p").is_err());
    }

    #[test]
    fn a_vhost_replaces_the_url_s_own() {
        let url = url_with_vhost("amqp://g:g@h:5672/old?heartbeat=5", "a/b c").expect("a URL");
        assert_eq!(url, "amqp://g:g@h:5672/a%2Fb%20c?heartbeat=5");
        assert_eq!(vhost_of(&url).expect("parses"), "a/b c");
        assert_eq!(
            url_with_vhost("amqp://h", "v").expect("a URL"),
            "amqp://h/v"
        );
    }

    #[test]
    fn the_vhost_comes_from_the_url() {
        assert_eq!(vhost_of("amqp://g:g@h:5672/abc").expect("parses"), "abc");
        assert_eq!(vhost_of("amqp://g:g@h:5672/%2f").expect("parses"), "/");
    }

    #[test]
    fn passwords_are_long_and_new_each_time() {
        let (first, second) = (new_password(), new_password());
        assert_eq!(first.len(), 64);
        assert_ne!(first, second);
        assert!(first.bytes().all(|byte| byte.is_ascii_hexdigit()));
    }

    #[test]
    fn secret_files_are_the_owner_s_alone() {
        use std::os::unix::fs::PermissionsExt;
        let folder = std::env::temp_dir().join(format!("warren-access-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&folder).expect("a folder");
        let path = password_file(&folder, "echo");
        write_secret_file(&path, "amqp://u:p@h/v").expect("written");
        write_secret_file(&path, "amqp://u:q@h/v").expect("written again");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "amqp://u:q@h/v\n"
        );
        std::fs::remove_dir_all(&folder).expect("removed");
    }
}
