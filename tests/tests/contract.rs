//! `docs/asyncapi.yaml` against the code (issue 13): every message type of the catalogue,
//! every channel and operation the workers' manifests imply, every example file, and
//! nothing else; its channels against what a running fleet declares; and a copy of the
//! document edited to drift is caught, edit by edit.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use warren_e2e::asyncapi::{self, Declared, Document, WorkerContract};
use warren_e2e::repository::repository_root;
use warren_e2e::vhost::rabbitmqctl;
use warren_e2e::{StoreFolder, Vhost, WarrenProcess};

fn document_path() -> PathBuf {
    repository_root().join("docs/asyncapi.yaml")
}

fn document_text() -> String {
    std::fs::read_to_string(document_path()).expect("docs/asyncapi.yaml")
}

/// Every worker's manifest, as the document is checked against it.
fn workers() -> Vec<WorkerContract> {
    macro_rules! contract {
        ($manifest:expr) => {
            WorkerContract {
                name: $manifest.name.to_owned(),
                commands: $manifest.commands.iter().map(|t| (*t).to_owned()).collect(),
                events: $manifest.events.iter().map(|t| (*t).to_owned()).collect(),
                produces: $manifest.produces.iter().map(|t| (*t).to_owned()).collect(),
            }
        };
    }
    let workers = vec![
        contract!(warren_echo::MANIFEST),
        contract!(warren_tally::MANIFEST),
        contract!(warren_orders::MANIFEST),
        contract!(warren_inventory::MANIFEST),
        contract!(warren_payments::MANIFEST),
        contract!(warren_shipping::MANIFEST),
    ];
    let names: Vec<String> = workers.iter().map(|worker| worker.name.clone()).collect();
    let mut in_checkout = warren_e2e::repository::worker_names();
    in_checkout.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted, in_checkout,
        "a worker of the checkout is not checked here"
    );
    workers
}

fn examples() -> BTreeMap<(String, String), Value> {
    asyncapi::example_files(&repository_root().join("docs/examples"))
}

fn problems_of(text: &str) -> Vec<String> {
    let document = Document::parse(text).expect("YAML");
    asyncapi::problems(&document, &workers(), &examples())
}

#[test]
fn the_document_is_the_code() {
    let problems = problems_of(&document_text());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `text` with `from` replaced by `to`, which must occur exactly once.
fn edited(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} is not in the document once"
    );
    text.replacen(from, to, 1)
}

/// Asserts that the problems name each of `expected`, and nothing else.
fn assert_problems(problems: &[String], expected: &[&str]) {
    for wanted in expected {
        assert!(
            problems.iter().any(|problem| problem.contains(wanted)),
            "no problem says {wanted:?}: {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
}

#[test]
fn a_copy_of_the_document_that_drifts_is_caught_edit_by_edit() {
    let text = document_text();
    // A type the catalogue has goes missing, and one it does not have appears.
    let renamed = edited(
        &text,
        "  dev_warren_tally_total_v1:\n      name: dev.warren.tally.total.v1",
        "  dev_warren_tally_totals_v1:\n      name: dev.warren.tally.totals.v1",
    );
    let problems = problems_of(&renamed);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("message dev_warren_tally_total_v1 is not documented")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p
                .contains("message dev_warren_tally_totals_v1 is documented but does not exist")),
        "{problems:#?}"
    );
    // An example's data differs from its file.
    assert_problems(
        &problems_of(&edited(
            &text,
            "              key: \"examples\"\n              amount: 5\n",
            "              key: \"examples\"\n              amount: 6\n",
        )),
        &["example dev.warren.tally.add.v1/ok-add-five: the document's data"],
    );
    // A channel's routing key drifts.
    assert_problems(
        &problems_of(&edited(
            &text,
            "    address: dev.warren.echo.v1\n",
            "    address: dev.warren.echo.v9\n",
        )),
        &["channel dev_warren_echo_v1: address Some(\"dev.warren.echo.v9\")"],
    );
    // A message's data points at another type's schema (its fields).
    let schema_ref = "'./schemas/dev.warren.orders.place.v2.json'";
    assert_problems(
        &problems_of(&edited(
            &text,
            schema_ref,
            "'./schemas/dev.warren.orders.place.v1.json'",
        )),
        &["message dev_warren_orders_place_v2: its data is"],
    );
    // An operation the code has is left out.
    assert_problems(
        &problems_of(&edited(
            &text,
            "  echo.send.dead-letters:\n",
            "  echo.send.dead-letter-copies:\n",
        )),
        &[
            "operation echo.send.dead-letters is not documented",
            "operation echo.send.dead-letter-copies is documented but does not exist",
        ],
    );
}

#[test]
fn code_that_drifts_from_the_document_is_caught() {
    // A worker that starts consuming a type the document does not say it does.
    let mut drifted = workers();
    drifted[0]
        .commands
        .push("dev.warren.tally.get.v1".to_owned());
    let document = Document::parse(&document_text()).expect("YAML");
    let problems = asyncapi::problems(&document, &drifted, &examples());
    assert_problems(
        &problems,
        &["operation echo.receive.dev.warren.tally.get.v1 is not documented"],
    );
    // An example file the document does not carry.
    let mut more = examples();
    more.insert(
        ("dev.warren.echo.v1".to_owned(), "ok-new".to_owned()),
        serde_json::json!({"new": true}),
    );
    let problems = asyncapi::problems(&document, &workers(), &more);
    assert_problems(
        &problems,
        &["example dev.warren.echo.v1/ok-new (docs/examples) is not in the document"],
    );
}

/// What the fleet declared in `vhost`, listed by `rabbitmqctl`.
async fn declared(vhost: &Vhost) -> Declared {
    let list = |what: &'static str, columns: &'static [&'static str]| {
        let vhost = vhost.name().to_owned();
        async move {
            let mut args = vec![what, "-p", &vhost, "--formatter", "json", "-q"];
            args.extend_from_slice(columns);
            let text = rabbitmqctl(&args).await;
            serde_json::from_str::<Vec<Value>>(&text)
                .unwrap_or_else(|error| panic!("rabbitmqctl {what}: {error}: {text}"))
        }
    };
    let text = |row: &Value, column: &str| row[column].as_str().unwrap_or("").to_owned();
    let mut declared = Declared::default();
    for row in list("list_exchanges", &["name", "type", "durable"]).await {
        declared.exchanges.insert(
            text(&row, "name"),
            (text(&row, "type"), row["durable"] == true),
        );
    }
    for row in list("list_queues", &["name", "type", "durable"]).await {
        declared.queues.insert(
            text(&row, "name"),
            (text(&row, "type"), row["durable"] == true),
        );
    }
    let columns: &[&str] = &["source_name", "destination_name", "routing_key"];
    for row in list("list_bindings", columns).await {
        declared.bindings.insert((
            text(&row, "source_name"),
            text(&row, "destination_name"),
            text(&row, "routing_key"),
        ));
    }
    declared
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_channels_are_what_the_fleet_declares() {
    let vhost = Vhost::create().await;
    let store = StoreFolder::new();
    let mut fleet: Vec<WarrenProcess> = Vec::new();
    for worker in workers() {
        let process = vhost
            .worker(&format!("warren-{}", worker.name))
            .store(&store)
            .start()
            .await;
        fleet.push(process);
    }
    let declared = declared(&vhost).await;
    assert!(
        declared.queues.contains_key("warren.orders"),
        "{declared:?}"
    );
    let text = document_text();
    let document = Document::parse(&text).expect("YAML");
    let problems = asyncapi::topology_problems(&document, &declared);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // A copy that documents another exchange type, a queue that is not declared and
    // leaves out a binding the fleet has.
    let drifted = edited(
        &text,
        "          name: warren.events\n          # Topic, so that a subscriber may bind a pattern (`dev.warren.orders.#`).\n          type: topic\n",
        "          name: warren.events\n          type: fanout\n",
    );
    let drifted = edited(
        &drifted,
        "          name: warren.echo.dlq\n",
        "          name: warren.echo.dead\n",
    );
    let drifted = edited(
        &drifted,
        "  tally.receive.dev.warren.tally.get.v1:\n",
        "  tally.receive.dev.warren.tally.gets.v1:\n",
    );
    let document = Document::parse(&drifted).expect("YAML");
    assert_problems(
        &asyncapi::topology_problems(&document, &declared),
        &[
            "exchange warren.events: documented fanout",
            "queue \"warren.echo.dead\" is documented but not declared",
            "queue warren.echo.dlq is declared but not documented",
            "binding warren.commands → warren.tally (dev.warren.tally.get.v1) is declared but not documented",
        ],
    );
    drop(fleet);
}
