//! Guarded replies (docs/security.md, "Guarded replies"), in the fleet as a secure
//! deploy runs it: `warren topology apply --originator alice --originator bob`, then
//! `warren up --credentials` with the `secure` profile (every worker under its own user,
//! tokens required). Alice's order completes through `warren request --token` under her
//! own user. Then each attack an originator could make with one shared broker user is
//! tried with alice's credentials, through a raw AMQP client, and refused: by the
//! broker (reading bob's reply queue by consume or get, declaring a queue in his
//! namespace, publishing a forged outcome to `warren.replies` or through the default
//! exchange, a forged `x-death` through `warren.retries`, a tap bound to
//! `warren.commands`), or by the worker (a request with alice's valid token naming bob's
//! reply queue: dead-lettered `token_foreign_reply`, answered nowhere, no side effect).
//! Bob's queue receives his own genuine outcome and nothing else.

use std::time::Duration;

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};
use serde_json::json;
use warren_e2e::access::{CreatedUsers, is_access_refused, permissions_of};
use warren_e2e::replies::ReplyQueueLifetime;
use warren_e2e::repository::repository_root;
use warren_e2e::{
    BrokerClient, CLI_TIMEOUT, COMMANDS_EXCHANGE, CliOutput, MESSAGE_TIMEOUT, READY_TIMEOUT,
    REPLIES_EXCHANGE, ReplyQueue, Request, StoreFolder, TALLY_DLQ, TALLY_QUEUE, Vhost,
    WarrenCommand, attribute, within_broker_timeout,
};

const TALLY_ADD: &str = "dev.warren.tally.add.v1";
const TALLY_ADDED: &str = "dev.warren.tally.added.v1";

/// How long a test waits to be sure nothing more arrives in a queue that should stay
/// empty: after the genuine outcome, which the worker sent after anything forged.
const QUIET: Duration = Duration::from_millis(300);

/// Runs `attempt` on a fresh channel of `client` (in confirm mode) and asserts the broker
/// refused it with 403 ACCESS_REFUSED, which closes that channel.
async fn assert_refused<F, Fut, T>(client: &BrokerClient, what: &str, attempt: F)
where
    F: FnOnce(Channel) -> Fut,
    Fut: std::future::Future<Output = Result<T, lapin::Error>>,
    T: std::fmt::Debug,
{
    let channel = client.create_channel().await;
    within_broker_timeout(
        "confirm mode",
        channel.confirm_select(ConfirmSelectOptions::default()),
    )
    .await
    .expect("confirm mode");
    let outcome = within_broker_timeout(what, attempt(channel.clone())).await;
    match outcome {
        Ok(done) => panic!("{what}: the broker allowed it ({done:?})"),
        Err(error) => assert!(is_access_refused(&error), "{what}: {error}"),
    }
    assert!(
        !channel.status().connected(),
        "{what}: the channel is closed"
    );
    assert!(client.is_connected(), "{what}: the connection lives on");
}

/// Publishes `body` to `exchange` with `routing_key` and `properties` on `channel`, and
/// waits for the confirm.
async fn publish(
    channel: Channel,
    exchange: &str,
    routing_key: &str,
    properties: BasicProperties,
) -> Result<lapin::Confirmation, lapin::Error> {
    let body = serde_json::to_vec(&json!({
        "specversion": "1.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "source": "/mallory",
        "type": TALLY_ADDED,
        "data": {"key": "victim", "total": 1_000_000}
    }))
    .expect("JSON");
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await?
        .await
}

/// The fleet's workers this test runs.
const WORKERS: &str = "orders,inventory,payments,shipping,tally";

/// The header a token travels in.
const TOKEN_HEADER: &str = "x-warren-token";

/// A token for `subject` from the development key, with `scopes`.
async fn token_for(vhost: &Vhost, subject: &str, scopes: &[&str]) -> String {
    let key = repository_root().join("config/dev-keys/dev.pem");
    let key = key.to_str().expect("a UTF-8 path");
    let mut args = vec![
        "token", "issue", "--key", key, "--kid", "dev", "--sub", subject,
    ];
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    let issued = vhost.warren(&args).await;
    assert_eq!(issued.code(), Some(0), "{}", issued.stderr);
    issued.stdout.trim().to_owned()
}

/// `request` as a message of `token`'s.
fn with_token(request: Request, token: &str) -> Request {
    let mut headers = FieldTable::default();
    headers.insert(
        TOKEN_HEADER.into(),
        AMQPValue::LongString(LongString::from(token)),
    );
    let mut request = request;
    request.message.properties = request.message.properties.clone().with_headers(headers);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secure_fleet_under_its_own_users_answers_its_originators_and_no_one_else() {
    let vhost = Vhost::create().await;
    let users = CreatedUsers::new();
    users.apply(&vhost, &["alice", "bob"]).await;

    // The planned permissions, as the broker holds them.
    let own = r"warren\.reply\.(resend\.)?alice\.[0-9a-f-]+";
    assert_eq!(
        permissions_of(&users.user("originator-alice"), vhost.name()).await,
        (
            format!("^{own}$"),
            format!(r"^(warren\.commands|{own})$"),
            format!(r"^(warren\.replies|{own})$"),
        )
    );

    // The fleet: `warren up` with each worker under its own user, in the secure profile.
    let root = repository_root();
    let config_dir = root.join("config");
    let keys_file = config_dir.join("dev-keys/jwks.json");
    let store = StoreFolder::new();
    let run_dir = StoreFolder::new();
    let mut up = WarrenCommand::new("warren", vhost.amqp_url())
        .args(&[
            "up",
            "--only",
            WORKERS,
            "--no-local-broker",
            "--no-observability",
            "--credentials",
            users.password_dir.to_str().expect("a UTF-8 path"),
        ])
        .store(&store)
        .env("WARREN_RUN_DIR", run_dir.path())
        .env("WARREN_ENV", "secure")
        .env("WARREN_CONFIG_DIR", &config_dir)
        .env("WARREN_AUTH__KEYS_FILE", &keys_file)
        .spawn();
    up.wait_for_lines(
        &["ready: consuming"],
        WORKERS.split(',').count(),
        READY_TIMEOUT,
    )
    .await;

    // Alice's order, through the CLI under her own user, with her token.
    let alice_url = users.url_of("originator-alice");
    let alice_token = token_for(&vhost, "alice", &["orders:place", "tally:write"]).await;
    let order = root.join("docs/examples/dev.warren.orders.place.v2/ok-one-apple-in-eur.json");
    let mut cli = WarrenCommand::new("warren", &alice_url)
        .args(&[
            "request",
            "dev.warren.orders.place.v2",
            &format!("@{}", order.display()),
            "--token",
            &alice_token,
            "--timeout",
            "30s",
        ])
        .env("WARREN_AMQP__DECLARE_EXCHANGES", "false")
        .spawn();
    let status = cli.wait(CLI_TIMEOUT).await;
    let completed = CliOutput {
        status,
        stdout: cli.stdout(),
        stderr: cli.stderr(),
    };
    assert_eq!(
        completed.code(),
        Some(0),
        "{}{}",
        completed.stdout,
        completed.stderr
    );
    let outcome = &completed.envelopes()[0];
    assert_eq!(
        attribute(outcome, "type"),
        Some("dev.warren.orders.completed.v1"),
        "{outcome}"
    );

    // Without a token, her user may declare no reply queue: refused, with what to do.
    let mut cli = WarrenCommand::new("warren", &alice_url)
        .args(&["request", TALLY_ADD, r#"{"key":"alice","amount":1}"#])
        .env("WARREN_AMQP__DECLARE_EXCHANGES", "false")
        .spawn();
    let status = cli.wait(CLI_TIMEOUT).await;
    assert_eq!(status.code(), Some(2), "{}", cli.stderr());
    assert!(cli.stderr().contains("ACCESS_REFUSED"), "{}", cli.stderr());
    assert!(cli.stderr().contains("give --token"), "{}", cli.stderr());

    let alice = BrokerClient::connect(&alice_url).await;
    let bob = BrokerClient::connect(&users.url_of("originator-bob")).await;
    let alices = ReplyQueue::declare_owned(&alice, "alice", ReplyQueueLifetime::Connection).await;
    let bobs = ReplyQueue::declare_owned(&bob, "bob", ReplyQueueLifetime::Connection).await;

    // Reading bob's outcomes, or a worker's requests: consuming his queue or tally's.
    for queue in [bobs.name(), TALLY_QUEUE] {
        let consumed = within_broker_timeout("consume", alice.consume(queue, 1)).await;
        match consumed {
            Ok(_) => panic!("alice consumed {queue}"),
            Err(error) => assert!(is_access_refused(&error), "{queue}: {error}"),
        }
    }
    let bobs_name = bobs.name().to_owned();
    assert_refused(&alice, "get from bob's reply queue", |channel| async move {
        channel
            .basic_get(bobs_name.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .map(|message| message.is_some())
    })
    .await;

    // A queue in bob's namespace, and queues outside any originator's.
    for name in [
        format!("warren.reply.bob.{}", uuid::Uuid::new_v4()),
        format!("warren.reply.{}", uuid::Uuid::new_v4()),
        "warren.tap".to_owned(),
    ] {
        assert_refused(&alice, &format!("declare {name}"), |channel| async move {
            channel
                .queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map(|queue| queue.name().to_string())
        })
        .await;
    }

    // A forged outcome into bob's queue: through the reply exchange, or straight into
    // the queue through the default exchange.
    let forged = || {
        BasicProperties::default()
            .with_correlation_id(ShortString::from("seen-somewhere"))
            .with_content_type(ShortString::from("application/cloudevents+json"))
    };
    for (exchange, what) in [
        (
            REPLIES_EXCHANGE,
            "publish a forged outcome to warren.replies",
        ),
        ("", "publish a forged outcome through the default exchange"),
    ] {
        let routing_key = bobs.name().to_owned();
        assert_refused(&alice, what, |channel| async move {
            publish(channel, exchange, &routing_key, forged()).await
        })
        .await;
    }

    // A forged retry: straight to warren.retries with a made-up death count, which
    // would make tally believe it had tried 101 times.
    let request = with_token(
        Request::new(
            TALLY_ADD,
            r#"{"key":"victim","amount":1}"#,
            Some(alices.name()),
        ),
        &alice_token,
    );
    let mut death = FieldTable::default();
    death.insert("count".into(), AMQPValue::LongLongInt(100));
    death.insert(
        "queue".into(),
        AMQPValue::LongString(LongString::from(TALLY_QUEUE)),
    );
    death.insert(
        "reason".into(),
        AMQPValue::LongString(LongString::from("expired")),
    );
    let mut headers = request
        .message
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    headers.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
    );
    let properties = request.message.properties.clone().with_headers(headers);
    assert_refused(
        &alice,
        "publish a forged retry to warren.retries",
        |channel| async move { publish(channel, "warren.retries", TALLY_QUEUE, properties).await },
    )
    .await;

    // A tap: a queue of her own bound to warren.commands, to read every request.
    let alices_name = alices.name().to_owned();
    assert_refused(
        &alice,
        "bind a tap to warren.commands",
        |channel| async move {
            channel
                .queue_bind(
                    alices_name.as_str().into(),
                    COMMANDS_EXCHANGE.into(),
                    TALLY_ADD.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
        },
    )
    .await;

    // A forged replyto: alice's own valid token, bob's reply queue. The broker takes it
    // (alice may send commands); tally refuses it before any work and answers no one.
    let forged_request = with_token(
        Request::new(
            TALLY_ADD,
            r#"{"key":"victim","amount":1000000}"#,
            Some(bobs.name()),
        ),
        &alice_token,
    );
    alice.publish(forged_request.message).await;
    let admin = vhost.connect().await;
    let letter = admin
        .get_within(TALLY_DLQ, MESSAGE_TIMEOUT)
        .await
        .expect("the forged request is dead-lettered");
    assert_eq!(
        letter.header("x-warren-reason").as_deref(),
        Some("token_foreign_reply"),
        "{:?}",
        letter.headers_debug()
    );
    assert_eq!(letter.header(TOKEN_HEADER), None, "the copy keeps no token");

    // Bob's own request is answered in his queue, with the genuine total (the forged
    // million was never added), and nothing else ever arrived there.
    let bob_token = token_for(&vhost, "bob", &["tally:write"]).await;
    let request = with_token(
        Request::new(
            TALLY_ADD,
            r#"{"key":"victim","amount":1}"#,
            Some(bobs.name()),
        ),
        &bob_token,
    );
    let request_id = request.attributes.id.clone();
    bob.publish(request.message).await;
    let outcome = bobs.next(&bob).await;
    assert_eq!(attribute(&outcome, "type"), Some(TALLY_ADDED), "{outcome}");
    assert_eq!(outcome["data"], json!({"key":"victim","total":1}));
    assert_eq!(
        attribute(&outcome, "correlationid"),
        Some(request_id.as_str())
    );
    assert_eq!(
        bobs.next_within(&bob, QUIET).await,
        None,
        "bob got a second outcome"
    );
    assert_eq!(
        alices.next_within(&alice, QUIET).await,
        None,
        "alice got an outcome"
    );

    // The refusal was not announced: no listener of `request.failed` got a message it
    // would only have dead-lettered (an announcement could carry no token).
    for worker in ["orders", "inventory", "payments"] {
        let dlq = format!("warren.{worker}.dlq");
        let counts = vhost.queue_counts(&dlq).await.expect("the DLQ exists");
        assert_eq!(counts.ready + counts.unacked, 0, "{dlq}");
    }

    alice.close().await;
    bob.close().await;
    admin.close().await;
    let status = up.stop().await;
    assert!(status.success(), "warren up: {status}");
}
