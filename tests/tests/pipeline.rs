//! The order pipeline end to end (docs/pipeline.md): orders → inventory → payments →
//! shipping, each worker with its own store, against the real broker. Every example in
//! docs/examples gives its promised outcome; every fault reaches the originator from the
//! hop that failed, and the earlier hops undo their work; a thousand orders at once, with
//! a worker killed among them, end once each with the stores agreeing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use warren_e2e::{
    OutgoingMessage, ReplyCollector, Request, StoreFolder, Vhost, WarrenProcess, attribute,
    scenario::publish_requests,
};
use warren_inventory::{InventoryCounts, InventoryHandler};
use warren_orders::OrdersHandler;
use warren_payments::PaymentsHandler;
use warren_shipping::ShippingHandler;

const PLACE: &str = "dev.warren.orders.place.v1";
const GET: &str = "dev.warren.orders.get.v1";
const COMPLETED: &str = "dev.warren.orders.completed.v1";
const FAULT: &str = "dev.warren.fault.v1";

/// The pipeline's workers (and echo and tally, which the examples also cover).
const PIPELINE: [&str; 4] = ["orders", "inventory", "payments", "shipping"];

/// How long all outcomes of a run may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(90);

/// The fleet in a vhost of its own, its workers sharing one store folder (each its own
/// file in it).
struct Pipeline {
    workers: BTreeMap<&'static str, WarrenProcess>,
    outcomes: ReplyCollector,
    store: StoreFolder,
    vhost: Vhost,
}

impl Pipeline {
    async fn start(extra: &[&'static str]) -> Pipeline {
        let vhost = Vhost::create().await;
        let store = StoreFolder::new();
        let mut workers = BTreeMap::new();
        for name in PIPELINE.iter().chain(extra) {
            let worker = vhost
                .worker(&format!("warren-{name}"))
                .store(&store)
                .start()
                .await;
            workers.insert(*name, worker);
        }
        let outcomes = ReplyCollector::start(&vhost).await;
        Pipeline {
            workers,
            outcomes,
            store,
            vhost,
        }
    }

    /// Restarts `name` after it was killed.
    async fn restart(&mut self, name: &'static str) {
        let worker = self
            .vhost
            .worker(&format!("warren-{name}"))
            .store(&self.store)
            .start()
            .await;
        self.workers.insert(name, worker);
    }

    /// A request of `message_type` with `data`, replying to the collector.
    fn request(&self, message_type: &str, data: &Value) -> Request {
        Request::new(message_type, &data.to_string(), Some(self.outcomes.name()))
    }

    /// Waits for the outcome of every request in `sent` and returns them by correlation
    /// id, failing when one is missing or two arrive for one request.
    async fn outcomes_of(&self, sent: &HashSet<String>) -> HashMap<String, Value> {
        let answered = self
            .outcomes
            .wait_until_answered(sent, sent.len(), ANSWER_TIMEOUT)
            .await;
        assert_eq!(answered, sent.len(), "requests without an outcome");
        let mut by_request: HashMap<String, Value> = HashMap::new();
        for outcome in self.outcomes.outcomes() {
            if attribute(&outcome, "type") == Some("dev.warren.progress.v1") {
                continue;
            }
            let Some(correlation) = attribute(&outcome, "correlationid").map(str::to_owned) else {
                panic!("an outcome without a correlation id: {outcome}");
            };
            if !sent.contains(&correlation) {
                continue;
            }
            if let Some(first) = by_request.insert(correlation.clone(), outcome.clone()) {
                // A redelivery re-sends the same outcome (same id): one terminal outcome.
                assert_eq!(
                    first["id"], outcome["id"],
                    "two different outcomes for one request: {first} and {outcome}"
                );
            }
        }
        by_request
    }

    fn orders(&self) -> OrdersHandler {
        OrdersHandler::open(self.store.path()).expect("open the orders store")
    }

    fn inventory(&self) -> InventoryHandler {
        InventoryHandler::open(self.store.path()).expect("open the inventory store")
    }

    fn payments(&self) -> PaymentsHandler {
        PaymentsHandler::open(self.store.path()).expect("open the payments store")
    }

    fn shipping(&self) -> ShippingHandler {
        ShippingHandler::open(self.store.path()).expect("open the shipping store")
    }

    /// Waits until every worker's queue is empty and nothing is unacked.
    async fn settle(&self) {
        for name in PIPELINE {
            let queue = format!("warren.{name}");
            if let Err(counts) = self
                .vhost
                .wait_until_settled(&queue, Duration::from_secs(30))
                .await
            {
                panic!("{queue} never settled: {counts:?}");
            }
        }
    }
}

fn example_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples")
}

/// The example order `name` (a file of docs/examples/dev.warren.orders.place.v1).
fn example_order(name: &str) -> Value {
    let path = example_folder().join(PLACE).join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text).expect("an example is JSON")
}

/// The fault code the file name of an example promises, or `None` for `ok-…`.
fn promised_fault(file_name: &str) -> Option<&str> {
    if file_name.starts_with("ok-") {
        return None;
    }
    let rest = file_name
        .strip_prefix("fault-")
        .unwrap_or_else(|| panic!("an example is named ok-… or fault-<code>-…: {file_name}"));
    Some(rest.split('-').next().expect("a code"))
}

/// Every example file of docs/examples, through `warren request` against the live fleet,
/// ends in the outcome its name promises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_gives_its_promised_outcome() {
    let pipeline = Pipeline::start(&["echo", "tally"]).await;
    let mut checked = 0;
    let mut types: Vec<PathBuf> = std::fs::read_dir(example_folder())
        .expect("docs/examples")
        .map(|entry| entry.expect("an entry").path())
        .collect();
    types.sort();
    for folder in types {
        let message_type = folder
            .file_name()
            .and_then(|name| name.to_str())
            .expect("a type");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .expect("a type folder")
            .map(|entry| entry.expect("an entry").path())
            .collect();
        files.sort();
        for file in files {
            let name = file
                .file_name()
                .and_then(|name| name.to_str())
                .expect("a name");
            let data = format!("@{}", file.display());
            let output = pipeline
                .vhost
                .warren(&["request", message_type, &data, "--timeout", "30s"])
                .await;
            let outcomes = output.envelopes();
            assert_eq!(
                outcomes.len(),
                1,
                "{message_type}/{name}: {}",
                output.stdout
            );
            let outcome = &outcomes[0];
            match promised_fault(name) {
                None => {
                    assert_eq!(output.code(), Some(0), "{message_type}/{name}: {outcome}");
                    assert_ne!(attribute(outcome, "type"), Some(FAULT), "{name}: {outcome}");
                }
                Some(code) => {
                    assert_eq!(output.code(), Some(1), "{message_type}/{name}: {outcome}");
                    assert_eq!(attribute(outcome, "type"), Some(FAULT), "{name}: {outcome}");
                    assert_eq!(
                        outcome["data"]["code"], code,
                        "{message_type}/{name}: {outcome}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 18, "only {checked} examples");
}

/// What a fault path leaves in the stores: the order failed with the hop's code, no
/// stock held, no charge standing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_reaches_the_originator_from_its_hop_and_is_undone() {
    let pipeline = Pipeline::start(&[]).await;
    let cases = [
        (
            "fault-out_of_stock-test-sku.json",
            "out_of_stock",
            "inventory",
        ),
        (
            "fault-card_declined-test-card.json",
            "card_declined",
            "payments",
        ),
        (
            "fault-internal-processor-error.json",
            "internal",
            "payments",
        ),
        (
            "fault-address_undeliverable-postcode-00000.json",
            "address_undeliverable",
            "shipping",
        ),
        (
            "fault-invalid_payload-bad-card-number.json",
            "invalid_payload",
            "orders",
        ),
    ];
    let mut sent = HashSet::new();
    let mut expected = HashMap::new();
    let mut requests = Vec::new();
    for (file, code, worker) in cases {
        let mut order = example_order(file);
        order["order_id"] = json!(format!("ord-{code}"));
        let request = pipeline.request(PLACE, &order);
        sent.insert(request.correlation_id().to_owned());
        expected.insert(request.correlation_id().to_owned(), (code, worker));
        requests.push(request);
    }
    publish_requests(&pipeline.vhost, requests).await;
    let outcomes = pipeline.outcomes_of(&sent).await;
    for (correlation, (code, worker)) in &expected {
        let outcome = &outcomes[correlation];
        assert_eq!(attribute(outcome, "type"), Some(FAULT), "{outcome}");
        assert_eq!(outcome["data"]["code"], *code, "{outcome}");
        assert_eq!(outcome["data"]["worker"], *worker, "{outcome}");
    }
    pipeline.settle().await;
    // Every order that got as far as being recorded is failed, with the hop's fault.
    for (code, worker) in [
        ("out_of_stock", "inventory"),
        ("card_declined", "payments"),
        ("internal", "payments"),
        ("address_undeliverable", "shipping"),
    ] {
        let status = wait_for_status(&pipeline, &format!("ord-{code}"), "failed").await;
        assert_eq!(status["failure"]["code"], code, "{status}");
        assert_eq!(status["failure"]["worker"], worker, "{status}");
    }
    let inventory = pipeline.inventory().counts().await.expect("inventory");
    assert_eq!(
        (inventory.reserved, inventory.items_reserved),
        (0, 0),
        "{inventory:?}"
    );
    let payments = pipeline.payments().counts().await.expect("payments");
    assert_eq!(
        (payments.charged, payments.charged_cents),
        (0, 0),
        "{payments:?}"
    );
    assert_eq!(
        payments.refunded, 1,
        "the undeliverable order's charge came back"
    );
    assert_eq!(pipeline.shipping().shipments().await.expect("shipments"), 0);
    assert_eq!(
        pipeline
            .orders()
            .counts()
            .await
            .expect("orders")
            .of("failed"),
        4
    );
}

/// `orders.get` of `order_id` until it has `status` (the events that move it on may
/// come after the outcome).
async fn wait_for_status(pipeline: &Pipeline, order_id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = order_status(pipeline, order_id).await;
        if found["status"] == status {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{order_id} never became {status}: {found}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `orders.get` of `order_id`, through the CLI: the answer's data.
async fn order_status(pipeline: &Pipeline, order_id: &str) -> Value {
    let output = pipeline
        .vhost
        .warren(&["request", GET, &json!({ "order_id": order_id }).to_string()])
        .await;
    let found = output.envelopes().into_iter().next().expect("an answer");
    found["data"].clone()
}

/// The `(status, worker)` steps of an order's history, sorted.
fn steps(status: &Value) -> Vec<(String, String)> {
    let mut steps: Vec<(String, String)> = status["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|step| {
            (
                step["status"].as_str().expect("a status").to_owned(),
                step["worker"].as_str().expect("a worker").to_owned(),
            )
        })
        .collect();
    steps.sort();
    steps
}

/// `orders` hears of every hop of an order followed hop by hop (`--progress`), and of
/// the end alone of any other: both end shipped, each with the history `orders` was
/// told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_hears_every_hop_of_a_followed_order_and_the_end_of_any() {
    let pipeline = Pipeline::start(&[]).await;
    for (order_id, followed) in [("ord-followed", true), ("ord-unfollowed", false)] {
        let mut order = example_order("ok-one-apple.json");
        order["order_id"] = json!(order_id);
        let data = order.to_string();
        let mut arguments = vec!["request", PLACE, &data, "--timeout", "30s"];
        if followed {
            arguments.push("--progress");
        }
        let output = pipeline.vhost.warren(&arguments).await;
        assert_eq!(output.code(), Some(0), "{order_id}: {}", output.stdout);
        wait_for_status(&pipeline, order_id, "shipped").await;
    }
    // Nothing left in flight: no step can still reach `orders`.
    pipeline.settle().await;
    let owned = |steps: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut steps: Vec<(String, String)> = steps
            .iter()
            .map(|(status, worker)| ((*status).to_owned(), (*worker).to_owned()))
            .collect();
        steps.sort();
        steps
    };
    let followed = order_status(&pipeline, "ord-followed").await;
    assert_eq!(followed["status"], "shipped", "{followed}");
    assert_eq!(
        steps(&followed),
        owned(&[
            ("placed", "orders"),
            ("reserved", "inventory"),
            ("paid", "payments"),
            ("shipped", "shipping"),
        ]),
        "{followed}"
    );
    let unfollowed = order_status(&pipeline, "ord-unfollowed").await;
    assert_eq!(unfollowed["status"], "shipped", "{unfollowed}");
    assert_eq!(
        steps(&unfollowed),
        owned(&[("placed", "orders"), ("shipped", "shipping")]),
        "{unfollowed}"
    );
}

/// A request that reaches a later hop after its deadline: that hop faults
/// `deadline_exceeded`, and the earlier ones undo their work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_passed_at_a_later_hop_is_a_fault_and_is_undone() {
    let pipeline = Pipeline::start(&[]).await;
    let mut order = example_order("ok-one-apple.json");
    order["order_id"] = json!("ord-slow");
    order["items"] = json!([{"sku": "test-slow", "quantity": 1}]);
    // Inventory takes 5 s for this SKU: with 3 s left (time enough for orders and
    // inventory to start, even on a busy machine), payments gets it too late.
    let request = pipeline.request(PLACE, &order);
    let mut envelope: Value = serde_json::from_slice(&request.message.body).expect("JSON");
    let deadline = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3);
    envelope["deadline"] = json!(deadline.to_string());
    let message = OutgoingMessage::command(PLACE, serde_json::to_vec(&envelope).expect("JSON"))
        .with_properties(request.message.properties.clone());
    pipeline.vhost.connect().await.publish(message).await;
    let sent = HashSet::from([request.correlation_id().to_owned()]);
    let outcomes = pipeline.outcomes_of(&sent).await;
    let fault = &outcomes[request.correlation_id()];
    assert_eq!(fault["data"]["code"], "deadline_exceeded", "{fault}");
    assert_eq!(fault["data"]["worker"], "payments", "{fault}");
    let status = wait_for_status(&pipeline, "ord-slow", "failed").await;
    assert_eq!(status["failure"]["code"], "deadline_exceeded");
    pipeline.settle().await;
    assert_eq!(
        pipeline
            .inventory()
            .counts()
            .await
            .expect("counts")
            .reserved,
        0
    );
}

/// The kinds of orders of the mixed runs, with the outcome each must end in.
const MIX: [(&str, Option<&str>); 6] = [
    ("ok-mug-and-book.json", None),
    ("ok-one-apple.json", None),
    ("fault-card_declined-test-card.json", Some("card_declined")),
    ("fault-out_of_stock-test-sku.json", Some("out_of_stock")),
    (
        "fault-address_undeliverable-postcode-00000.json",
        Some("address_undeliverable"),
    ),
    (
        "fault-invalid_payload-unknown-sku.json",
        Some("invalid_payload"),
    ),
];

/// Sends `count` orders of a random mix at once and checks that each ends once, as its
/// kind promises, and that the stores agree afterwards. With `kill`, that worker is
/// SIGKILLed after a third of the outcomes arrived, and started again.
async fn mixed_run(count: usize, kill: Option<&'static str>) {
    let mut pipeline = Pipeline::start(&[]).await;
    let orders: Vec<Value> = MIX.iter().map(|(file, _)| example_order(file)).collect();
    let mut expected: HashMap<String, (Option<&str>, i64)> = HashMap::new();
    let mut sent = HashSet::new();
    let mut requests = Vec::with_capacity(count);
    let mut seed: u64 = 0x5eed_0f00_0d35_u64.wrapping_add(count as u64);
    for _ in 0..count {
        // xorshift: a fixed pseudo-random mix, the same each run.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kind = usize::try_from(seed % MIX.len() as u64).expect("small");
        let request = pipeline.request(PLACE, &orders[kind]);
        let total = match kind {
            0 => 3699,
            1 => 120,
            _ => 0,
        };
        expected.insert(request.correlation_id().to_owned(), (MIX[kind].1, total));
        sent.insert(request.correlation_id().to_owned());
        requests.push(request);
    }
    publish_requests(&pipeline.vhost, requests).await;
    if let Some(name) = kill {
        let a_third: HashSet<String> = sent.iter().take(count / 3).cloned().collect();
        pipeline
            .outcomes
            .wait_until_answered(&a_third, a_third.len(), ANSWER_TIMEOUT)
            .await;
        let worker = pipeline.workers.get_mut(name).expect("a worker");
        worker.sigkill();
        worker.wait(Duration::from_secs(10)).await;
        pipeline.restart(name).await;
    }
    let outcomes = pipeline.outcomes_of(&sent).await;
    assert_eq!(outcomes.len(), count, "one terminal outcome per order");
    let mut completed = 0u64;
    let mut completed_cents = 0i64;
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    for (correlation, (promised, total)) in &expected {
        let outcome = &outcomes[correlation];
        match promised {
            None => {
                assert_eq!(attribute(outcome, "type"), Some(COMPLETED), "{outcome}");
                assert_eq!(outcome["data"]["total_cents"], *total, "{outcome}");
                completed += 1;
                completed_cents += total;
            }
            Some(code) => {
                assert_eq!(outcome["data"]["code"], *code, "{outcome}");
                *faults.entry((*code).to_owned()).or_default() += 1;
            }
        }
    }
    eprintln!("{count} orders: {completed} completed, faults {faults:?}");
    pipeline.settle().await;
    // The compensations run after the outcomes: wait until every recorded order ended.
    let recorded = count as u64 - faults.get("invalid_payload").copied().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = pipeline.orders().counts().await.expect("orders");
        if counts.of("shipped") + counts.of("failed") == recorded {
            assert_eq!(counts.of("shipped"), completed, "{counts:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orders never settled: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pipeline.settle().await;
    let inventory: InventoryCounts = pipeline.inventory().counts().await.expect("inventory");
    let payments = pipeline.payments().counts().await.expect("payments");
    assert_eq!(
        inventory.reserved, completed,
        "a reservation per completed order only"
    );
    assert_eq!(
        payments.charged, completed,
        "a charge per completed order only"
    );
    assert_eq!(
        payments.charged_cents, completed_cents,
        "charged what was completed"
    );
    assert_eq!(
        pipeline.shipping().shipments().await.expect("shipments"),
        completed
    );
}

/// A thousand orders at once, of a random mix: each ends once, and the stores agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_orders_end_once_each_and_the_stores_agree() {
    mixed_run(1000, None).await;
}

/// The same with payments SIGKILLed a third of the way, and started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_with_a_worker_killed_midway_gives_the_same_totals() {
    mixed_run(1000, Some("payments")).await;
}

/// `warren request` over a mix of orders, asking for progress: each hop's note comes
/// before its request's outcome, every outcome is tied to its request, and the summary
/// counts results and faults by code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mix_of_orders_with_progress_through_the_cli() {
    let pipeline = Pipeline::start(&[]).await;
    let folder = example_folder().join(PLACE);
    let ok = format!("@{}", folder.join("ok-mug-and-book.json").display());
    let declined = format!(
        "@{}",
        folder.join("fault-card_declined-test-card.json").display()
    );
    let output = pipeline
        .vhost
        .warren(&[
            "request",
            PLACE,
            &ok,
            &declined,
            "--count",
            "4",
            "--progress",
            "--timeout",
            "30s",
        ])
        .await;
    assert_eq!(
        output.code(),
        Some(1),
        "a fault among them: {}",
        output.stderr
    );
    let lines = output.envelopes();
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for line in &lines {
        let correlation = attribute(line, "correlationid").expect("tied to its request");
        let what = match attribute(line, "type") {
            Some("dev.warren.progress.v1") => format!(
                "{} {}",
                line["data"]["worker"].as_str().unwrap_or("?"),
                line["data"]["status"].as_str().unwrap_or("?")
            ),
            Some(COMPLETED) => "completed".to_owned(),
            Some(FAULT) => format!("fault {}", line["data"]["code"].as_str().unwrap_or("?")),
            other => panic!("unexpected {other:?}: {line}"),
        };
        seen.entry(correlation.to_owned()).or_default().push(what);
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    let mut stories: Vec<Vec<String>> = seen.into_values().collect();
    stories.sort();
    let completed = [
        "orders placed",
        "inventory reserved",
        "payments charged",
        "shipping booked",
        "completed",
    ];
    let declined = ["orders placed", "inventory reserved", "fault card_declined"];
    for story in &stories {
        let expected: &[&str] = if story.last().is_some_and(|last| last == "completed") {
            &completed
        } else {
            &declined
        };
        // Notes of one request come in the order its hops finished.
        assert_eq!(story, expected, "{stories:?}");
    }
    assert!(
        output
            .stderr
            .contains("4 requests: 2 results, 2 faults (card_declined 2), 0 timed out"),
        "{}",
        output.stderr
    );
}
