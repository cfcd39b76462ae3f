//! Least privilege (`warren topology apply|diff`): one broker user per worker, allowed
//! only what that worker does. After `apply`, echo and tally run under their own users
//! and answer; echo's credentials cannot consume tally's queue nor publish into it
//! through the default exchange; `diff` sees nothing to change, then the missing user.
//!
//! Users are broker-wide: this test names its users with a prefix of its own
//! (`--user-prefix`) and deletes exactly those at the end, however it ends
//! ([`CreatedUsers`]).

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::json;
use tokio::time::Instant;
use warren_e2e::access::{CreatedUsers, is_access_refused, permissions_of};
use warren_e2e::metrics::{http_get, metrics_address, sample};
use warren_e2e::vhost::rabbitmqctl;
use warren_e2e::{
    BROKER_ANSWER_TIMEOUT, BrokerClient, READY_LOG, SESSION_LOST_LOG, StoreFolder, TALLY_DLQ,
    TALLY_QUEUE, Vhost, WarrenCommand, WarrenProcess, attribute,
};

const ECHO: &str = "dev.warren.echo.v1";
const ECHO_REPLIED: &str = "dev.warren.echo.replied.v1";
const TALLY_ADD: &str = "dev.warren.tally.add.v1";
const TALLY_ADDED: &str = "dev.warren.tally.added.v1";

/// How long a retry, from the failed attempt to the message back in the work queue,
/// may take.
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a test looks again at what it waits for.
const POLL: Duration = Duration::from_millis(50);

/// What `worker` has sent to a delay queue so far, by its `/metrics`.
async fn retried(worker: &WarrenProcess) -> f64 {
    let (status, body) = http_get(&metrics_address(worker), "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let series =
        format!("warren_messages_retried_total{{worker=\"tally\",message_type=\"{TALLY_ADD}\"}}");
    sample(&body, &series).unwrap_or(0.0)
}

/// Asserts that `worker` (started with `amqp.declare_exchanges = false`, so it only
/// checks the shared exchanges) kept its first session: it never lost it, and the broker
/// refused it nothing, from its start on.
fn assert_never_refused(worker: &WarrenProcess, which: &str) {
    let lines = worker.output_lines();
    assert!(
        lines.iter().any(|line| line.contains(READY_LOG)),
        "{which} never consumed: {lines:#?}"
    );
    let refused: Vec<&String> = lines
        .iter()
        .filter(|line| {
            let line = line.to_lowercase();
            line.contains("access_refused")
                || line.contains("access refused")
                || line.contains("reply_code: 403")
        })
        .collect();
    assert!(refused.is_empty(), "{which} was refused: {refused:#?}");
    assert_eq!(
        worker.count_lines_with(&[SESSION_LOST_LOG]),
        0,
        "{which} rebuilt its session: {lines:#?}"
    );
    assert_eq!(worker.sessions_ready(), 1, "{which}: {lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_runs_under_its_own_user_and_may_touch_only_its_own_queues() {
    let vhost = Vhost::create().await;
    let users = CreatedUsers::new();

    let before = users.topology(&vhost, "diff", &[]).await;
    assert_eq!(before.code(), Some(1), "{}{}", before.stdout, before.stderr);
    assert!(
        before
            .stdout
            .contains(&format!("+ user {}", users.user("echo")))
    );

    users.apply(&vhost, &[]).await;

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
    let after = users.topology(&vhost, "diff", &[]).await;
    assert_eq!(after.code(), Some(0), "{}{}", after.stdout, after.stderr);
    assert!(
        after.stdout.contains("nothing to change"),
        "{}",
        after.stdout
    );

    echo.stop().await;
    rabbitmqctl(&["delete_user", &users.user("echo")]).await;
    let missing = users.topology(&vhost, "diff", &[]).await;
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

/// A transient failure under the worker's own user: the retry copy goes through
/// `warren.retries` into the delay queue (which the user may write and bind), the broker
/// dead-letters it back into the work queue, and the next attempt answers. The first
/// tally fails every attempt (failpoint); once it has sent the request to the delay
/// queue it stops, and a tally without the failpoint takes the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_through_the_delay_queue_under_the_workers_own_user() {
    const DELAY_MS: &str = "300";
    const DELAY_QUEUE: &str = "warren.tally.retry.300ms";
    // Far more than the attempts the failing tally can make before it stops.
    const MAX_ATTEMPTS: &str = "20";
    let vhost = Vhost::create().await;
    let users = CreatedUsers::new();
    users.apply(&vhost, &[]).await;
    let tally_url = users.url_of("tally");
    let store = StoreFolder::new();
    // One delay for every retry: one delay queue.
    let tally = || {
        WarrenCommand::new("warren-tally", &tally_url)
            .store(&store)
            .envs(&[
                ("WARREN_RETRY__MAX_ATTEMPTS", MAX_ATTEMPTS),
                ("WARREN_RETRY__INITIAL_DELAY_MS", DELAY_MS),
                ("WARREN_RETRY__MAX_DELAY_MS", DELAY_MS),
                ("WARREN_METRICS__LISTEN", "127.0.0.1:0"),
                ("WARREN_AMQP__DECLARE_EXCHANGES", "false"),
            ])
    };
    let mut failing = tally().failpoints("transient_keys:flaky-").start().await;

    let (output, (failed_attempts, mut answering)) = tokio::join!(
        vhost.warren(&[
            "request",
            TALLY_ADD,
            r#"{"key":"flaky-lp","amount":5}"#,
            "--timeout",
            "45s",
        ]),
        async {
            // The first attempt failed and its copy is in the delay queue, acked.
            let deadline = Instant::now() + RETRY_TIMEOUT;
            while retried(&failing).await < 1.0 {
                assert!(
                    Instant::now() < deadline,
                    "the failing tally never retried: {:?}",
                    failing.output_lines()
                );
                if let Some(status) = failing.try_exit_status() {
                    panic!("the failing tally exited with {status}");
                }
                tokio::time::sleep(POLL).await;
            }
            let status = failing.stop().await;
            assert!(status.success(), "the failing tally: {status}");
            assert_never_refused(&failing, "the failing tally");
            let failed_attempts = failing.count_lines_with(&["handler failed: retrying later"]);
            assert_eq!(
                failing.count_lines_with(&["handler failed for good"]),
                0,
                "{:?}",
                failing.output_lines()
            );

            // With no consumer, the broker moves it from the delay queue back to the
            // work queue through `warren.retries`.
            let deadline = Instant::now() + RETRY_TIMEOUT;
            loop {
                let work = vhost.queue_counts(TALLY_QUEUE).await;
                let delayed = vhost
                    .queue_counts(DELAY_QUEUE)
                    .await
                    .expect("the delay queue exists");
                if work.is_some_and(|work| work.ready == 1 && work.unacked == 0)
                    && delayed.ready + delayed.unacked == 0
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the retry is not back in {TALLY_QUEUE}: {work:?}, {DELAY_QUEUE} {delayed:?}"
                );
                tokio::time::sleep(POLL).await;
            }
            (failed_attempts, tally().start().await)
        }
    );

    assert_eq!(output.code(), Some(0), "{}{}", output.stdout, output.stderr);
    let outcomes = output.envelopes();
    assert_eq!(outcomes.len(), 1, "{}", output.stdout);
    assert_eq!(
        attribute(&outcomes[0], "type"),
        Some(TALLY_ADDED),
        "{}",
        output.stdout
    );
    assert_eq!(outcomes[0]["data"], json!({"key":"flaky-lp","total":5}));
    // Every failed attempt went through the delay queue; the one after them answered.
    assert!(failed_attempts >= 1, "no attempt failed");
    eprintln!("answered at attempt {}", failed_attempts + 1);
    assert_eq!(
        retried(&answering).await,
        0.0,
        "the answering tally retried"
    );
    assert_never_refused(&answering, "the answering tally");

    let dlq = vhost.queue_counts(TALLY_DLQ).await.expect("the DLQ exists");
    assert_eq!(dlq.ready + dlq.unacked, 0, "nothing was dead-lettered");
    let status = answering.stop().await;
    assert!(status.success(), "the answering tally: {status}");
}
