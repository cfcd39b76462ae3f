//! `warren dlq` end to end: dead letters from the echo worker and from the broker are
//! listed, shown, replayed to where they came from, and purged, and reading them never
//! removes or reorders them.

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::{Value, json};
use warren_e2e::{
    BrokerClient, CliOutput, ECHO_DLQ, MESSAGE_TIMEOUT, OutgoingMessage, Request, Vhost, attribute,
};

const ECHO: &str = "dev.warren.echo.v1";
const ECHO_REPLIED: &str = "dev.warren.echo.replied.v1";
const FAULT: &str = "dev.warren.fault.v1";
const DEAD_LETTER_EXCHANGE: &str = "warren.dlx";

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// `request` as a worker would have dead-lettered it: published to `warren.dlx` under the
/// echo worker's name, with `x-warren-reason` and its original route.
fn hand_made_dead_letter(request: &Request, reason: &str) -> OutgoingMessage {
    let mut headers = FieldTable::default();
    headers.insert("x-warren-reason".into(), text(reason));
    headers.insert(
        "x-warren-original-exchange".into(),
        text(&request.message.exchange),
    );
    headers.insert(
        "x-warren-original-routing-key".into(),
        text(&request.message.routing_key),
    );
    OutgoingMessage {
        exchange: DEAD_LETTER_EXCHANGE.to_owned(),
        routing_key: "echo".to_owned(),
        body: request.message.body.clone(),
        properties: request.message.properties.clone().with_headers(headers),
    }
}

/// `warren dlq list echo --json`, parsed: one object per dead letter.
async fn list_json(vhost: &Vhost) -> Vec<Value> {
    let output = vhost
        .warren(&["dlq", "list", "echo", "--json", "--limit", "1000"])
        .await;
    assert_eq!(output.code(), Some(0), "stdout: {}", output.stdout);
    output
        .stdout_lines()
        .into_iter()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"))
        })
        .collect()
}

fn message_ids(listed: &[Value]) -> Vec<&str> {
    listed
        .iter()
        .map(|letter| {
            letter["message_id"]
                .as_str()
                .unwrap_or_else(|| panic!("a listed dead letter without a message id: {letter}"))
        })
        .collect()
}

async fn wait_for_dead_letters(broker: &BrokerClient, count: u32) {
    broker
        .wait_for_queue(
            ECHO_DLQ,
            MESSAGE_TIMEOUT,
            &format!("{count} dead letters ready"),
            |state| state.messages == count,
        )
        .await;
}

fn assert_exit(output: &CliOutput, code: i32) {
    assert_eq!(
        output.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        output.stdout,
        output.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_replayed_and_purged() {
    let vhost = Vhost::create().await;
    let _worker = vhost.start_worker("warren-echo").await;
    let broker = vhost.connect().await;
    let replies = broker.reply_queue().await;

    // A valid envelope whose data is not the object echo takes: the worker dead-letters it.
    let invalid = Request::new(ECHO, "[1]", Some(replies.name()));
    broker.publish(invalid.message.clone()).await;
    let fault = replies.next(&broker).await;
    assert_eq!(attribute(&fault, "type"), Some(FAULT), "{fault}");
    wait_for_dead_letters(&broker, 1).await;

    let listed = list_json(&vhost).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["position"], 0, "{}", listed[0]);
    assert_eq!(listed[0]["reason"], "invalid_data", "{}", listed[0]);
    assert_eq!(listed[0]["source"], "worker", "{}", listed[0]);
    assert_eq!(listed[0]["message_id"], invalid.attributes.id.as_str());
    assert_eq!(listed[0]["type"], ECHO);
    assert_eq!(listed[0]["correlation_id"], invalid.correlation_id());
    assert_eq!(listed[0]["original_exchange"], "warren.commands");
    assert_eq!(listed[0]["original_routing_key"], ECHO);

    let table = vhost.warren(&["dlq", "list", "echo"]).await;
    assert_exit(&table, 0);
    let lines = table.stdout_lines();
    assert_eq!(lines.len(), 2, "a header and one row: {}", table.stdout);
    assert!(lines[0].starts_with("POSITION"), "{}", table.stdout);
    assert!(
        lines[1].contains("invalid_data") && lines[1].contains(&invalid.attributes.id),
        "{}",
        table.stdout
    );

    for selector in ["0", invalid.attributes.id.as_str()] {
        let shown = vhost.warren(&["dlq", "show", "echo", selector]).await;
        assert_exit(&shown, 0);
        assert!(
            shown.stdout.contains("x-warren-reason: invalid_data"),
            "{}",
            shown.stdout
        );
        assert!(
            shown.stdout.contains("x-warren-worker: echo"),
            "{}",
            shown.stdout
        );
        assert!(
            shown.stdout.contains("body (") && shown.stdout.contains("\"data\": [\n"),
            "the body is shown as pretty JSON: {}",
            shown.stdout
        );
    }
    let missing = vhost.warren(&["dlq", "show", "echo", "7"]).await;
    assert_exit(&missing, 1);
    // Reading took nothing away.
    wait_for_dead_letters(&broker, 1).await;

    // Round trip: a valid request put into the DLQ by hand goes back to the worker.
    let valid = Request::new(ECHO, r#"{"round":"trip"}"#, Some(replies.name()));
    broker.publish(hand_made_dead_letter(&valid, "test")).await;
    wait_for_dead_letters(&broker, 2).await;
    let listed = list_json(&vhost).await;
    assert_eq!(
        message_ids(&listed),
        [invalid.attributes.id.as_str(), valid.attributes.id.as_str()]
    );
    assert_eq!(listed[1]["position"], 1, "{}", listed[1]);
    assert_eq!(listed[1]["reason"], "test", "{}", listed[1]);

    let replayed = vhost
        .warren(&["dlq", "replay", "echo", &valid.attributes.id])
        .await;
    assert_exit(&replayed, 0);
    assert!(
        replayed
            .stdout
            .contains(&format!("replayed {}", valid.attributes.id)),
        "{}",
        replayed.stdout
    );
    let result = replies.next(&broker).await;
    assert_eq!(attribute(&result, "type"), Some(ECHO_REPLIED), "{result}");
    assert_eq!(
        attribute(&result, "correlationid"),
        Some(valid.correlation_id())
    );
    assert_eq!(result["data"], json!({"round": "trip"}), "{result}");
    wait_for_dead_letters(&broker, 1).await;
    assert_eq!(
        message_ids(&list_json(&vhost).await),
        [invalid.attributes.id.as_str()],
        "only the invalid message is left"
    );

    // An id nobody has: nothing replayed, exit 1, nothing removed.
    let unknown = vhost.warren(&["dlq", "replay", "echo", "no-such-id"]).await;
    assert_exit(&unknown, 1);
    assert!(unknown.stderr.contains("no-such-id"), "{}", unknown.stderr);
    wait_for_dead_letters(&broker, 1).await;

    // Without --yes and without a terminal to ask on, purge refuses.
    let refused = vhost.warren(&["dlq", "purge", "echo"]).await;
    assert_exit(&refused, 2);
    wait_for_dead_letters(&broker, 1).await;
    let purged = vhost.warren(&["dlq", "purge", "echo", "--yes"]).await;
    assert_exit(&purged, 0);
    assert!(
        purged
            .stdout
            .contains("purged 1 dead letters from warren.echo.dlq"),
        "{}",
        purged.stdout
    );
    wait_for_dead_letters(&broker, 0).await;
    assert!(list_json(&vhost).await.is_empty());
    assert!(
        replies
            .next_within(&broker, std::time::Duration::ZERO)
            .await
            .is_none(),
        "no outcome beyond the fault and the replayed result"
    );

    // Bad worker names are usage errors; a worker without a DLQ is explained.
    assert_exit(&vhost.warren(&["dlq", "list", "Echo"]).await, 2);
    let nobody = vhost.warren(&["dlq", "list", "nobody"]).await;
    assert_exit(&nobody, 2);
    assert!(
        nobody
            .stderr
            .contains("no dead-letter queue warren.nobody.dlq"),
        "{}",
        nobody.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_and_replaying_keep_the_queue_order() {
    // More than 32 messages: a quorum queue's bookkeeping of returned messages changes
    // representation there, so order bugs would show.
    const DEAD_LETTERS: usize = 50;
    let vhost = Vhost::create().await;
    let _worker = vhost.start_worker("warren-echo").await;
    let broker = vhost.connect().await;
    let replies = broker.reply_queue().await;

    let requests: Vec<Request> = (0..DEAD_LETTERS)
        .map(|n| Request::new(ECHO, &json!({ "n": n }).to_string(), Some(replies.name())))
        .collect();
    broker
        .publish_all(
            requests
                .iter()
                .map(|request| hand_made_dead_letter(request, "test")),
        )
        .await;
    wait_for_dead_letters(&broker, DEAD_LETTERS as u32).await;
    let expected: Vec<&str> = requests
        .iter()
        .map(|request| request.attributes.id.as_str())
        .collect();
    for _ in 0..3 {
        let listed = list_json(&vhost).await;
        assert_eq!(message_ids(&listed), expected, "listing keeps the order");
        let positions: Vec<u64> = listed
            .iter()
            .filter_map(|letter| letter["position"].as_u64())
            .collect();
        assert_eq!(positions, (0..DEAD_LETTERS as u64).collect::<Vec<_>>());
    }
    let limited = vhost
        .warren(&["dlq", "list", "echo", "--json", "--limit", "5"])
        .await;
    assert_exit(&limited, 0);
    assert_eq!(limited.stdout_lines().len(), 5, "{}", limited.stdout);
    assert!(
        limited.stderr.contains("first 5 of 50"),
        "{}",
        limited.stderr
    );
    // Reading only the first few, or one, keeps the order of them all.
    assert_eq!(message_ids(&list_json(&vhost).await), expected);
    let shown = vhost.warren(&["dlq", "show", "echo", "3"]).await;
    assert_exit(&shown, 0);
    assert!(shown.stdout.contains(expected[3]), "{}", shown.stdout);
    assert_eq!(message_ids(&list_json(&vhost).await), expected);

    // Replay three from the middle; the rest stay, in order.
    let chosen = [7usize, 21, 40];
    let mut arguments = vec!["dlq", "replay", "echo"];
    arguments.extend(chosen.iter().map(|&n| expected[n]));
    let replayed = vhost.warren(&arguments).await;
    assert_exit(&replayed, 0);
    assert!(
        replayed.stdout.contains("replayed 3 of 3 selected"),
        "{}",
        replayed.stdout
    );
    let mut answered: Vec<String> = Vec::new();
    for _ in chosen {
        let result = replies.next(&broker).await;
        assert_eq!(attribute(&result, "type"), Some(ECHO_REPLIED), "{result}");
        answered.push(
            attribute(&result, "correlationid")
                .expect("a correlation id")
                .to_owned(),
        );
    }
    answered.sort();
    let mut wanted: Vec<String> = chosen.iter().map(|&n| expected[n].to_owned()).collect();
    wanted.sort();
    assert_eq!(answered, wanted);

    wait_for_dead_letters(&broker, (DEAD_LETTERS - chosen.len()) as u32).await;
    let left: Vec<&str> = expected
        .iter()
        .enumerate()
        .filter(|(n, _)| !chosen.contains(n))
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(message_ids(&list_json(&vhost).await), left);

    // --all empties it, and the worker answers every one.
    let all = vhost.warren(&["dlq", "replay", "echo", "--all"]).await;
    assert_exit(&all, 0);
    assert!(
        all.stdout
            .contains(&format!("replayed {} of {}", left.len(), left.len())),
        "{}",
        all.stdout
    );
    for _ in &left {
        let result = replies.next(&broker).await;
        assert_eq!(attribute(&result, "type"), Some(ECHO_REPLIED), "{result}");
    }
    wait_for_dead_letters(&broker, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_dead_letters_are_read_from_x_death_and_unroutable_replays_stay() {
    let vhost = Vhost::create().await;
    let _worker = vhost.start_worker("warren-echo").await;
    let broker = vhost.connect().await;

    // A queue whose messages expire at once, dead-lettered by the broker to echo's DLQ.
    const EXPIRING: &str = "test.expiring";
    let channel = broker
        .connection()
        .create_channel()
        .await
        .expect("a channel");
    let mut arguments = FieldTable::default();
    arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(0));
    arguments.insert("x-dead-letter-exchange".into(), text(DEAD_LETTER_EXCHANGE));
    arguments.insert("x-dead-letter-routing-key".into(), text("echo"));
    channel
        .queue_declare(EXPIRING.into(), QueueDeclareOptions::default(), arguments)
        .await
        .expect("declare the expiring queue");
    let request = Request::new(ECHO, r#"{"expired":true}"#, None);
    broker
        .publish(
            OutgoingMessage::to_queue(EXPIRING, request.message.body.clone())
                .with_properties(request.message.properties.clone()),
        )
        .await;
    wait_for_dead_letters(&broker, 1).await;

    let listed = list_json(&vhost).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let letter = &listed[0];
    assert_eq!(letter["source"], "broker", "{letter}");
    assert_eq!(letter["reason"], "expired", "{letter}");
    assert_eq!(letter["death_count"], 1, "{letter}");
    assert_eq!(letter["message_id"], request.attributes.id.as_str());
    assert_eq!(letter["original_exchange"], "", "{letter}");
    assert_eq!(letter["original_routing_key"], EXPIRING, "{letter}");
    assert!(
        letter["age_seconds"].is_u64(),
        "x-death has a time: {letter}"
    );
    let shown = vhost.warren(&["dlq", "show", "echo", "0"]).await;
    assert_exit(&shown, 0);
    assert!(shown.stdout.contains("x-death: [{"), "{}", shown.stdout);

    // Its original queue is gone: the replay is returned, reported, and not acked.
    channel
        .queue_delete(EXPIRING.into(), QueueDeleteOptions::default())
        .await
        .expect("delete the expiring queue");
    let replayed = vhost
        .warren(&["dlq", "replay", "echo", &request.attributes.id])
        .await;
    assert_exit(&replayed, 1);
    assert!(
        replayed.stderr.contains("unroutable"),
        "{}",
        replayed.stderr
    );
    assert!(
        replayed.stdout.contains("replayed 0 of 1 selected"),
        "{}",
        replayed.stdout
    );
    wait_for_dead_letters(&broker, 1).await;
    assert_eq!(
        message_ids(&list_json(&vhost).await),
        [request.attributes.id.as_str()]
    );
}
