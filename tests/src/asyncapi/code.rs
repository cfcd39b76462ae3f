//! The document against the code: the catalogue, the workers' manifests, the example
//! files.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use warren_messages::catalogue::{self, Kind};
use yaml_rust2::Yaml;

use super::{
    COMMANDS, Document, EVENTS, FAULT, REPLIES, REQUEST_FAILED, WorkerContract, id, reference_of,
    references, to_json,
};

/// Compares two sets, one problem per element in one and not the other.
fn compare(
    problems: &mut Vec<String>,
    what: &str,
    documented: &BTreeSet<String>,
    expected: &BTreeSet<String>,
) {
    for missing in expected.difference(documented) {
        problems.push(format!("{what} {missing} is not documented"));
    }
    for extra in documented.difference(expected) {
        problems.push(format!("{what} {extra} is documented but does not exist"));
    }
}

/// Every problem between the document and the code: the catalogue, `workers`' manifests
/// and the example files.
pub fn problems(
    document: &Document,
    workers: &[WorkerContract],
    examples: &BTreeMap<(String, String), Value>,
) -> Vec<String> {
    let mut problems = Vec::new();
    message_problems(document, &mut problems);
    channel_problems(document, workers, &mut problems);
    operation_problems(document, workers, &mut problems);
    example_problems(document, examples, &mut problems);
    problems
}

fn message_problems(document: &Document, problems: &mut Vec<String>) {
    let expected: BTreeSet<String> = catalogue::entries()
        .map(|entry| id(entry.message_type))
        .collect();
    compare(
        problems,
        "message",
        &document.keys(&["components", "messages"]),
        &expected,
    );
    for entry in catalogue::entries() {
        let message_id = id(entry.message_type);
        let message = ["components", "messages", message_id.as_str()];
        if document.at(&message).is_none() {
            continue;
        }
        let field = |name: &str| {
            document
                .text(&[&message[..], &[name]].concat())
                .map(str::to_owned)
        };
        if field("name").as_deref() != Some(entry.message_type) {
            problems.push(format!(
                "message {message_id}: name {:?} is not {}",
                field("name"),
                entry.message_type
            ));
        }
        if field("summary").as_deref() != Some(entry.summary) {
            problems.push(format!(
                "message {message_id}: summary {:?} is not the catalogue's {:?}",
                field("summary"),
                entry.summary
            ));
        }
        let schema_file = format!("./schemas/{}.json", entry.message_type);
        let parts = document
            .at(&[&message[..], &["payload", "allOf"]].concat())
            .and_then(Yaml::as_vec)
            .cloned()
            .unwrap_or_default();
        let data_ref = parts.iter().find_map(|part| {
            let data = part.as_hash()?.get(&Yaml::String("properties".into()))?;
            let data = data.as_hash()?.get(&Yaml::String("data".into()))?;
            reference_of(data).map(str::to_owned)
        });
        if data_ref.as_deref() != Some(schema_file.as_str()) {
            problems.push(format!(
                "message {message_id}: its data is {data_ref:?}, not {schema_file}"
            ));
        }
        let type_const = parts.iter().find_map(|part| {
            let properties = part.as_hash()?.get(&Yaml::String("properties".into()))?;
            let kind = properties.as_hash()?.get(&Yaml::String("type".into()))?;
            kind.as_hash()?
                .get(&Yaml::String("const".into()))?
                .as_str()
                .map(str::to_owned)
        });
        if type_const.as_deref() != Some(entry.message_type) {
            problems.push(format!(
                "message {message_id}: its type is {type_const:?}, not {}",
                entry.message_type
            ));
        }
    }
}

fn channel_problems(document: &Document, workers: &[WorkerContract], problems: &mut Vec<String>) {
    let mut expected: BTreeSet<String> = BTreeSet::from(["replies".to_owned()]);
    for entry in catalogue::entries() {
        let exchange = match entry.kind {
            Kind::Command => COMMANDS,
            Kind::Event => EVENTS,
            Kind::Outcome => continue,
        };
        let channel_id = id(entry.message_type);
        expected.insert(channel_id.clone());
        let channel = ["channels", channel_id.as_str()];
        if document.at(&channel).is_none() {
            continue;
        }
        let address = document.text(&[&channel[..], &["address"]].concat());
        if address != Some(entry.message_type) {
            problems.push(format!(
                "channel {channel_id}: address {address:?} is not {}",
                entry.message_type
            ));
        }
        let documented_exchange =
            document.text(&[&channel[..], &["bindings", "amqp", "exchange", "name"]].concat());
        if documented_exchange != Some(exchange) {
            problems.push(format!(
                "channel {channel_id}: exchange {documented_exchange:?} is not {exchange}"
            ));
        }
        let messages = document.keys(&[&channel[..], &["messages"]].concat());
        if messages != BTreeSet::from([channel_id.clone()]) {
            problems.push(format!(
                "channel {channel_id}: carries {messages:?}, not its own type"
            ));
        }
    }
    let outcomes: BTreeSet<String> = catalogue::entries()
        .filter(|entry| entry.kind == Kind::Outcome)
        .map(|entry| id(entry.message_type))
        .collect();
    compare(
        problems,
        "outcome on the replies channel",
        &document.keys(&["channels", "replies", "messages"]),
        &outcomes,
    );
    let replies_exchange = document.text(&[
        "channels", "replies", "bindings", "amqp", "exchange", "name",
    ]);
    if replies_exchange != Some(REPLIES) {
        problems.push(format!(
            "channel replies: exchange {replies_exchange:?} is not {REPLIES}"
        ));
    }
    for worker in workers {
        for queue in [
            format!("warren.{}", worker.name),
            format!("warren.{}.dlq", worker.name),
        ] {
            let channel_id = id(&queue);
            expected.insert(channel_id.clone());
            let channel = ["channels", channel_id.as_str()];
            if document.at(&channel).is_none() {
                continue;
            }
            let address = document.text(&[&channel[..], &["address"]].concat());
            let is = document.text(&[&channel[..], &["bindings", "amqp", "is"]].concat());
            let name =
                document.text(&[&channel[..], &["bindings", "amqp", "queue", "name"]].concat());
            if address != Some(queue.as_str()) || is != Some("queue") || name != Some(&queue) {
                problems.push(format!(
                    "channel {channel_id}: address {address:?}, binding {is:?} {name:?}; \
                     not the queue {queue}"
                ));
            }
        }
    }
    compare(
        problems,
        "channel",
        &document.keys(&["channels"]),
        &expected,
    );
}

/// The operations the code has, by id, each with its channel's id.
fn expected_operations(workers: &[WorkerContract]) -> BTreeMap<String, String> {
    let mut operations = BTreeMap::new();
    for worker in workers {
        let queue = id(&format!("warren.{}", worker.name));
        for message_type in worker.commands.iter().chain(&worker.events) {
            operations.insert(
                format!("{}.receive.{message_type}", worker.name),
                queue.clone(),
            );
        }
        let sent = worker
            .produces
            .iter()
            .map(String::as_str)
            .filter(|message_type| {
                catalogue::lookup(message_type).is_some_and(|entry| entry.kind != Kind::Outcome)
            })
            .chain([REQUEST_FAILED]);
        for message_type in sent {
            operations.insert(
                format!("{}.send.{message_type}", worker.name),
                id(message_type),
            );
        }
        operations.insert(
            format!("{}.send.dead-letters", worker.name),
            id(&format!("warren.{}.dlq", worker.name)),
        );
    }
    for entry in catalogue::entries().filter(|entry| entry.result.is_some()) {
        operations.insert(
            format!("originator.send.{}", entry.message_type),
            id(entry.message_type),
        );
    }
    operations
}

fn operation_problems(document: &Document, workers: &[WorkerContract], problems: &mut Vec<String>) {
    let expected = expected_operations(workers);
    compare(
        problems,
        "operation",
        &document.keys(&["operations"]),
        &expected.keys().cloned().collect(),
    );
    for (operation_id, channel_id) in &expected {
        let operation = ["operations", operation_id.as_str()];
        let Some(node) = document.at(&operation) else {
            continue;
        };
        let channel = node
            .as_hash()
            .and_then(|hash| hash.get(&Yaml::String("channel".into())))
            .and_then(reference_of);
        let wanted = format!("#/channels/{channel_id}");
        if channel != Some(wanted.as_str()) {
            problems.push(format!(
                "operation {operation_id}: channel {channel:?}, not {wanted}"
            ));
        }
        let action = if operation_id.contains(".receive.") {
            "receive"
        } else {
            "send"
        };
        if document.text(&[&operation[..], &["action"]].concat()) != Some(action) {
            problems.push(format!(
                "operation {operation_id}: its action is not {action}"
            ));
        }
        let Some(message_type) = operation_id
            .split_once(".receive.")
            .or_else(|| operation_id.split_once(".send."))
            .map(|(_, message_type)| message_type)
        else {
            continue;
        };
        let Some(entry) = catalogue::lookup(message_type) else {
            continue;
        };
        let messages = references(document.at(&[&operation[..], &["messages"]].concat()));
        let own = format!("{wanted}/messages/{}", id(message_type));
        if !messages.contains(&own) {
            problems.push(format!(
                "operation {operation_id}: its messages {messages:?} do not name {own}"
            ));
        }
        if entry.kind == Kind::Command && !operation_id.contains(".send.dev.") {
            reply_problems(document, operation_id, entry.result, problems);
        }
    }
}

/// A command's receive (and an originator's send) replies on `replies` with its result,
/// if it has one, and the fault; every message of a reply is an outcome.
fn reply_problems(
    document: &Document,
    operation_id: &str,
    result: Option<&str>,
    problems: &mut Vec<String>,
) {
    let reply = ["operations", operation_id, "reply"];
    let channel = document
        .at(&reply)
        .and_then(Yaml::as_hash)
        .and_then(|hash| hash.get(&Yaml::String("channel".into())))
        .and_then(reference_of);
    if channel != Some("#/channels/replies") {
        problems.push(format!(
            "operation {operation_id}: replies on {channel:?}, not #/channels/replies"
        ));
    }
    let location = document.text(&[&reply[..], &["address", "location"]].concat());
    if location != Some("$message.payload#/replyto") {
        problems.push(format!(
            "operation {operation_id}: reply address {location:?}, not the payload's replyto"
        ));
    }
    let messages = references(document.at(&[&reply[..], &["messages"]].concat()));
    for wanted in result.into_iter().chain([FAULT]) {
        let reference = format!("#/channels/replies/messages/{}", id(wanted));
        if !messages.contains(&reference) {
            problems.push(format!(
                "operation {operation_id}: its reply does not list {wanted}"
            ));
        }
    }
    for reference in &messages {
        let message_type = reference.rsplit('/').next().unwrap_or("");
        let is_outcome = catalogue::entries()
            .any(|entry| id(entry.message_type) == message_type && entry.kind == Kind::Outcome);
        if !is_outcome {
            problems.push(format!(
                "operation {operation_id}: its reply lists {reference}, not an outcome"
            ));
        }
    }
}

fn example_problems(
    document: &Document,
    examples: &BTreeMap<(String, String), Value>,
    problems: &mut Vec<String>,
) {
    let mut documented = BTreeMap::new();
    for message_id in document.keys(&["components", "messages"]) {
        let Some(list) = document
            .at(&["components", "messages", &message_id, "examples"])
            .and_then(Yaml::as_vec)
        else {
            continue;
        };
        let message_type = document
            .text(&["components", "messages", &message_id, "name"])
            .unwrap_or(&message_id)
            .to_owned();
        for example in list {
            let example = to_json(example);
            let name = example["name"].as_str().unwrap_or("").to_owned();
            if example["payload"]["type"] != message_type.as_str() {
                problems.push(format!(
                    "example {message_type}/{name}: its envelope's type is {}",
                    example["payload"]["type"]
                ));
            }
            documented.insert(
                (message_type.clone(), name),
                example["payload"]["data"].clone(),
            );
        }
    }
    for (key @ (message_type, name), data) in examples {
        match documented.get(key) {
            None => problems.push(format!(
                "example {message_type}/{name} (docs/examples) is not in the document"
            )),
            Some(documented) if documented != data => problems.push(format!(
                "example {message_type}/{name}: the document's data {documented} is not the \
                 file's {data}"
            )),
            Some(_) => {}
        }
    }
    for (message_type, name) in documented.keys() {
        if !examples.contains_key(&(message_type.clone(), name.clone())) {
            problems.push(format!(
                "example {message_type}/{name} is in the document but not in docs/examples"
            ));
        }
    }
}
