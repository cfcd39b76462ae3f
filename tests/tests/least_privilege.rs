//! Least privilege (`warren topology apply|diff`): one broker user per worker, allowed
//! only what that worker does. After `apply`, echo and tally run under their own users
//! and answer; echo's credentials cannot consume tally's queue nor publish into it
//! through the default exchange; `diff` sees nothing to change, then the missing user.
//!
//! Users are broker-wide: this test names its users with a prefix of its own
//! (`--user-prefix`) and deletes exactly those at the end, however it ends.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::json;
use warren_e2e::vhost::rabbitmqctl;
use warren_e2e::{
    BROKER_ANSWER_TIMEOUT, BrokerClient, StoreFolder, TALLY_QUEUE, Vhost, WarrenCommand, attribute,
};

const ECHO: &str = "dev.warren.echo.v1";
const ECHO_REPLIED: &str = "dev.warren.echo.replied.v1";
const TALLY_ADD: &str = "dev.warren.tally.add.v1";
const TALLY_ADDED: &str = "dev.warren.tally.added.v1";

/// The users this test made (every user whose name starts with its unique prefix), and
/// its folder of password files, removed when it ends.
struct CreatedUsers {
    prefix: String,
    password_dir: PathBuf,
}

impl CreatedUsers {
    fn new() -> CreatedUsers {
        let run = uuid::Uuid::new_v4().simple().to_string();
        CreatedUsers {
            prefix: format!("warren-test-{}-", &run[..12]),
            password_dir: std::env::temp_dir().join(format!("warren-credentials-{run}")),
        }
    }

    fn user(&self, worker: &str) -> String {
        format!("{}{worker}", self.prefix)
    }

    /// The URL `apply` wrote for `worker`.
    fn url_of(&self, worker: &str) -> String {
        let path = self.password_dir.join(format!("{worker}.url"));
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
async fn permissions_of(user: &str, vhost: &str) -> (String, String, String) {
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
fn is_access_refused(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 403)
        || error.to_string().contains("ACCESS_REFUSED")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_runs_under_its_own_user_and_may_touch_only_its_own_queues() {
    let vhost = Vhost::create().await;
    let users = CreatedUsers::new();
    let password_dir = users.password_dir.display().to_string();
    let plan_args = |action: &'static str| {
        vec![
            "topology".to_owned(),
            action.to_owned(),
            "--vhost".to_owned(),
            vhost.name().to_owned(),
            "--user-prefix".to_owned(),
            users.prefix.clone(),
            "--password-dir".to_owned(),
            password_dir.clone(),
        ]
    };
    let run = |args: Vec<String>| {
        let vhost = &vhost;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            vhost.warren(&args).await
        }
    };

    let before = run(plan_args("diff")).await;
    assert_eq!(before.code(), Some(1), "{}{}", before.stdout, before.stderr);
    assert!(
        before
            .stdout
            .contains(&format!("+ user {}", users.user("echo")))
    );

    let applied = run(plan_args("apply")).await;
    assert_eq!(
        applied.code(),
        Some(0),
        "{}{}",
        applied.stdout,
        applied.stderr
    );

    // The planned permissions, as the broker holds them.
    assert_eq!(
        permissions_of(&users.user("echo"), vhost.name()).await,
        (
            r"^warren\.echo(\.dlq|\.retry\.[0-9]+ms)?$".to_owned(),
            r"^(warren\.echo(\.dlq|\.retry\.[0-9]+ms)?|warren\.replies|warren\.events|warren\.dlx|warren\.retries)$".to_owned(),
            r"^(warren\.echo(\.dlq|\.retry\.[0-9]+ms)?|warren\.retries|warren\.dlx|warren\.commands)$".to_owned(),
        )
    );
    assert_eq!(
        permissions_of(&users.user("tally"), vhost.name()).await,
        (
            r"^warren\.tally(\.dlq|\.retry\.[0-9]+ms)?$".to_owned(),
            r"^(warren\.tally(\.dlq|\.retry\.[0-9]+ms)?|warren\.replies|warren\.events|warren\.dlx|warren\.retries)$".to_owned(),
            r"^(warren\.tally(\.dlq|\.retry\.[0-9]+ms)?|warren\.retries|warren\.dlx|warren\.commands)$".to_owned(),
        )
    );
    let (_, inventory_write, inventory_read) =
        permissions_of(&users.user("inventory"), vhost.name()).await;
    assert!(
        inventory_write.contains(r"warren\.commands"),
        "{inventory_write}"
    );
    assert!(
        inventory_read.contains(r"warren\.events"),
        "{inventory_read}"
    );

    // Each worker under its own user: ready, and answering (`warren request` as guest).
    let echo_url = users.url_of("echo");
    let tally_url = users.url_of("tally");
    assert!(
        echo_url.contains(&users.user("echo")),
        "the URL names echo's user"
    );
    let mut echo = WarrenCommand::new("warren-echo", &echo_url).start().await;
    let store = StoreFolder::new();
    let mut tally = WarrenCommand::new("warren-tally", &tally_url)
        .store(&store)
        .start()
        .await;

    let output = vhost
        .warren(&["request", ECHO, r#"{"hello":"least"}"#])
        .await;
    assert_eq!(output.code(), Some(0), "{}{}", output.stdout, output.stderr);
    let replies = output.envelopes();
    assert_eq!(
        attribute(&replies[0], "type"),
        Some(ECHO_REPLIED),
        "{}",
        output.stdout
    );
    assert_eq!(replies[0]["data"], json!({"hello":"least"}));

    let output = vhost
        .warren(&["request", TALLY_ADD, r#"{"key":"lp","amount":2}"#])
        .await;
    assert_eq!(output.code(), Some(0), "{}{}", output.stdout, output.stderr);
    assert_eq!(
        attribute(&output.envelopes()[0], "type"),
        Some(TALLY_ADDED),
        "{}",
        output.stdout
    );

    // Echo's credentials against tally's queue: consuming it is refused…
    let as_echo = BrokerClient::connect(&echo_url).await;
    let consumed = tokio::time::timeout(BROKER_ANSWER_TIMEOUT, as_echo.consume(TALLY_QUEUE, 1))
        .await
        .expect("the broker answers a consume");
    match consumed {
        Ok(_) => panic!("echo's user consumed {TALLY_QUEUE}"),
        Err(error) => assert!(is_access_refused(&error), "{error}"),
    }

    // …and so is publishing into it through the default exchange (`amq.default`): the
    // broker closes the channel with 403.
    let connection = Connection::connect(&echo_url, ConnectionProperties::default())
        .await
        .expect("echo's user connects");
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let published = tokio::time::timeout(BROKER_ANSWER_TIMEOUT, async {
        channel
            .basic_publish(
                "".into(),
                TALLY_QUEUE.into(),
                BasicPublishOptions::default(),
                br#"{"forged":true}"#,
                BasicProperties::default(),
            )
            .await?
            .await
    })
    .await
    .expect("the broker answers a publish");
    match published {
        Ok(confirmation) => panic!("echo's user published into {TALLY_QUEUE}: {confirmation:?}"),
        Err(error) => assert!(is_access_refused(&error), "{error}"),
    }
    assert!(!channel.status().connected(), "the channel was closed");
    let _ = connection.close(200, "done".into()).await;
    as_echo.close().await;
    let tally_queue = vhost
        .queue_counts(TALLY_QUEUE)
        .await
        .expect("tally's queue exists");
    assert_eq!(
        tally_queue.ready + tally_queue.unacked,
        0,
        "nothing forged reached tally's queue"
    );

    // Nothing to change after apply; a deleted user is seen.
    let after = run(plan_args("diff")).await;
    assert_eq!(after.code(), Some(0), "{}{}", after.stdout, after.stderr);
    assert!(
        after.stdout.contains("nothing to change"),
        "{}",
        after.stdout
    );

    echo.stop().await;
    rabbitmqctl(&["delete_user", &users.user("echo")]).await;
    let missing = run(plan_args("diff")).await;
    assert_eq!(
        missing.code(),
        Some(1),
        "{}{}",
        missing.stdout,
        missing.stderr
    );
    assert!(
        missing
            .stdout
            .contains(&format!("+ user {}", users.user("echo"))),
        "{}",
        missing.stdout
    );
    assert!(
        missing
            .stdout
            .contains(&format!("+ permissions {}", users.user("echo"))),
        "{}",
        missing.stdout
    );
    assert_eq!(missing.stdout.lines().count(), 2, "{}", missing.stdout);
    tally.stop().await;
}
