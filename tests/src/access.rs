//! Least-privilege users for a test: `warren topology apply|diff` into a test's vhost,
//! with users named under a prefix of the test's own and deleted when it ends.
//!
//! Users are broker-wide (a vhost holds their permissions, not them), so each test names
//! its users with a unique prefix (`--user-prefix`) and [`CreatedUsers`] deletes exactly
//! those, however the test ends.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::vhost::{CliOutput, Vhost, rabbitmqctl};

/// The users a test made (every user whose name starts with its unique prefix), and its
/// folder of password files, removed when it is dropped.
pub struct CreatedUsers {
    /// What every user name of the test starts with.
    pub prefix: String,
    /// Where `apply` writes each user's URL.
    pub password_dir: PathBuf,
}

impl CreatedUsers {
    /// A fresh prefix and folder.
    pub fn new() -> CreatedUsers {
        let run = uuid::Uuid::new_v4().simple().to_string();
        CreatedUsers {
            prefix: format!("warren-test-{}-", &run[..12]),
            password_dir: std::env::temp_dir().join(format!("warren-credentials-{run}")),
        }
    }

    /// The broker user of `owner` (a worker, or `originator-<name>`).
    pub fn user(&self, owner: &str) -> String {
        format!("{}{owner}", self.prefix)
    }

    /// The URL `apply` wrote for `owner` (a worker, or `originator-<name>`), checking that
    /// its file is the owner's alone.
    pub fn url_of(&self, owner: &str) -> String {
        let path = self.password_dir.join(format!("{owner}.url"));
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "{} is the owner's alone",
            path.display()
        );
        std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
            .trim()
            .to_owned()
    }

    /// `warren topology <action>` (`diff` or `apply`) for `vhost`, naming the users with
    /// this prefix, writing their URLs to this folder, with a user for each of
    /// `originators` too.
    pub async fn topology(&self, vhost: &Vhost, action: &str, originators: &[&str]) -> CliOutput {
        let password_dir = self.password_dir.display().to_string();
        let mut args = vec![
            "topology",
            action,
            "--vhost",
            vhost.name(),
            "--user-prefix",
            &self.prefix,
            "--password-dir",
            &password_dir,
        ];
        for originator in originators {
            args.extend(["--originator", originator]);
        }
        vhost.warren(&args).await
    }

    /// `warren topology apply`, which must succeed.
    pub async fn apply(&self, vhost: &Vhost, originators: &[&str]) {
        let applied = self.topology(vhost, "apply", originators).await;
        assert_eq!(
            applied.code(),
            Some(0),
            "{}{}",
            applied.stdout,
            applied.stderr
        );
    }
}

impl Default for CreatedUsers {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for CreatedUsers {
    fn drop(&mut self) {
        // Synchronous: a drop may run while the runtime is going away.
        let listed = std::process::Command::new("rabbitmqctl")
            .args(["list_users", "--silent", "--formatter", "json"])
            .output();
        if let Ok(listed) = listed
            && let Ok(users) = serde_json::from_slice::<serde_json::Value>(&listed.stdout)
        {
            for user in users.as_array().into_iter().flatten() {
                if let Some(name) = user["user"].as_str()
                    && name.starts_with(&self.prefix)
                {
                    let _ = std::process::Command::new("rabbitmqctl")
                        .args(["delete_user", name])
                        .output();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.password_dir);
    }
}

/// The permissions of `user` in `vhost`, as `rabbitmqctl list_user_permissions` lists
/// them: `(configure, write, read)`.
pub async fn permissions_of(user: &str, vhost: &str) -> (String, String, String) {
    let listed = rabbitmqctl(&["list_user_permissions", "--silent", user]).await;
    let row = listed
        .lines()
        .map(|line| line.split('\t').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&vhost))
        .unwrap_or_else(|| panic!("{user} has no permissions in {vhost}: {listed}"));
    assert_eq!(row.len(), 4, "{row:?}");
    (row[1].to_owned(), row[2].to_owned(), row[3].to_owned())
}

/// Whether `error` is the broker's 403 ACCESS_REFUSED.
pub fn is_access_refused(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 403)
        || error.to_string().contains("ACCESS_REFUSED")
}
