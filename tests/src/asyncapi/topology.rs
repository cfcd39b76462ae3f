//! The document against what a running fleet declared.

use std::collections::{BTreeMap, BTreeSet};

use warren_messages::catalogue::{self, Kind};
use yaml_rust2::Yaml;

use super::{COMMANDS, Document, EVENTS};

/// What a running fleet declared in its vhost, as `rabbitmqctl` lists it.
#[derive(Debug, Default)]
pub struct Declared {
    /// Exchange name → (type, durable).
    pub exchanges: BTreeMap<String, (String, bool)>,
    /// Queue name → (type, durable).
    pub queues: BTreeMap<String, (String, bool)>,
    /// (exchange, queue, routing key).
    pub bindings: BTreeSet<(String, String, String)>,
}

/// Every problem between the document's channels and operations and what a running
/// fleet declared.
pub fn topology_problems(document: &Document, declared: &Declared) -> Vec<String> {
    let mut problems = Vec::new();
    for binding in ["commands", "events", "replies"] {
        let exchange = ["components", "channelBindings", binding, "amqp", "exchange"];
        let name = document
            .text(&[&exchange[..], &["name"]].concat())
            .unwrap_or("");
        let kind = document
            .text(&[&exchange[..], &["type"]].concat())
            .unwrap_or("");
        let durable = document
            .at(&[&exchange[..], &["durable"]].concat())
            .and_then(Yaml::as_bool);
        match declared.exchanges.get(name) {
            None => problems.push(format!("exchange {name:?} ({binding}) is not declared")),
            Some((declared_kind, declared_durable)) => {
                if declared_kind != kind || durable != Some(*declared_durable) {
                    problems.push(format!(
                        "exchange {name}: documented {kind} durable {durable:?}, declared \
                         {declared_kind} durable {declared_durable}"
                    ));
                }
            }
        }
    }
    let mut documented_queues = BTreeSet::new();
    for channel_id in document.keys(&["channels"]) {
        let channel = ["channels", channel_id.as_str()];
        if document.text(&[&channel[..], &["bindings", "amqp", "is"]].concat()) != Some("queue") {
            continue;
        }
        let name = document
            .text(&[&channel[..], &["bindings", "amqp", "queue", "name"]].concat())
            .unwrap_or("")
            .to_owned();
        match declared.queues.get(&name) {
            None => problems.push(format!("queue {name:?} is documented but not declared")),
            Some((kind, durable)) if kind != "quorum" || !durable => problems.push(format!(
                "queue {name}: declared {kind} durable {durable}, documented durable quorum"
            )),
            Some(_) => {}
        }
        documented_queues.insert(name);
    }
    for queue in declared.queues.keys() {
        let internal = queue.starts_with("warren.reply.") || queue.contains(".retry.");
        if !internal && !documented_queues.contains(queue) {
            problems.push(format!("queue {queue} is declared but not documented"));
        }
    }
    let mut documented_bindings = BTreeSet::new();
    for operation_id in document.keys(&["operations"]) {
        let Some((worker, message_type)) = operation_id.split_once(".receive.") else {
            continue;
        };
        let exchange = match catalogue::lookup(message_type).map(|entry| entry.kind) {
            Some(Kind::Command) => COMMANDS,
            Some(Kind::Event) => EVENTS,
            _ => continue,
        };
        documented_bindings.insert((
            exchange.to_owned(),
            format!("warren.{worker}"),
            message_type.to_owned(),
        ));
    }
    let declared_bindings: BTreeSet<(String, String, String)> = declared
        .bindings
        .iter()
        .filter(|(exchange, _, _)| exchange == COMMANDS || exchange == EVENTS)
        .cloned()
        .collect();
    for (exchange, queue, key) in documented_bindings.difference(&declared_bindings) {
        problems.push(format!(
            "binding {exchange} → {queue} ({key}) is documented but not declared"
        ));
    }
    for (exchange, queue, key) in declared_bindings.difference(&documented_bindings) {
        problems.push(format!(
            "binding {exchange} → {queue} ({key}) is declared but not documented"
        ));
    }
    problems
}
