//! `warren contract check` against the live fleet (echo, tally and the order pipeline) in
//! a vhost of its own: every documented example passes; a copy of the examples with
//! broken expectations fails on exactly those rows, in the table and in `--json`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use warren_e2e::{CliOutput, StoreFolder, Vhost, WarrenProcess};

/// Every worker an example reaches.
const FLEET: [&str; 6] = [
    "echo",
    "tally",
    "orders",
    "inventory",
    "payments",
    "shipping",
];

/// The example copied under a name that promises a fault it will not get.
const COPIED_FROM: &str = "dev.warren.orders.place.v1/ok-one-apple.json";
/// Its copy: an order that completes, named as one that runs out of stock.
const WRONG_FAULT: (&str, &str) = (
    "dev.warren.orders.place.v1",
    "fault-out_of_stock-not-really.json",
);
/// An example in the folder of a type that is an outcome, not a request.
const NOT_A_REQUEST: (&str, &str) = ("dev.warren.orders.completed.v1", "ok-done.json");

/// The fleet in a vhost of its own.
struct Fleet {
    _workers: Vec<WarrenProcess>,
    _store: StoreFolder,
    vhost: Vhost,
}

impl Fleet {
    async fn start() -> Fleet {
        let vhost = Vhost::create().await;
        let store = StoreFolder::new();
        let mut workers = Vec::new();
        for name in FLEET {
            let worker = vhost
                .worker(&format!("warren-{name}"))
                .store(&store)
                .start()
                .await;
            workers.push(worker);
        }
        Fleet {
            _workers: workers,
            _store: store,
            vhost,
        }
    }

    async fn check(&self, examples: &Path, extra: &[&str]) -> CliOutput {
        let folder = examples.to_str().expect("a UTF-8 path");
        let mut args = vec![
            "contract",
            "check",
            "--examples",
            folder,
            "--timeout",
            "30s",
        ];
        args.extend_from_slice(extra);
        self.vhost.warren(&args).await
    }
}

/// A folder of the test's own, removed when dropped.
struct TempFolder(PathBuf);

impl TempFolder {
    fn new() -> TempFolder {
        let path =
            std::env::temp_dir().join(format!("warren-e2e-examples-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("create a temporary folder");
        TempFolder(path)
    }
}

impl Drop for TempFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn documented_examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples")
}

/// Every example file of `folder`: (type folder, file name).
fn example_files(folder: &Path) -> BTreeSet<(String, String)> {
    let mut files = BTreeSet::new();
    for type_folder in std::fs::read_dir(folder).expect("the examples folder") {
        let type_folder = type_folder.expect("an entry").path();
        if !type_folder.is_dir() {
            continue;
        }
        let message_type = file_name(&type_folder);
        for file in std::fs::read_dir(&type_folder).expect("a type folder") {
            let name = file_name(&file.expect("an entry").path());
            if name.ends_with(".json") {
                files.insert((message_type.clone(), name));
            }
        }
    }
    files
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|name| name.to_str())
        .expect("a UTF-8 name")
        .to_owned()
}

/// Copies the folder tree `from` into `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a folder");
    for entry in std::fs::read_dir(from).expect("read a folder") {
        let path = entry.expect("an entry").path();
        let target = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy a file");
        }
    }
}

/// The table's rows: (type, example) → verdict, from lines `<type> <example> … <verdict>`.
fn table_rows(output: &CliOutput) -> Vec<((String, String), String)> {
    output
        .stdout_lines()
        .into_iter()
        .filter(|line| line.starts_with("dev."))
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert!(cells.len() >= 7, "not a row of the table: {line}");
            let verdict = cells[cells.len() - 1].to_owned();
            ((cells[0].to_owned(), cells[1].to_owned()), verdict)
        })
        .collect()
}

/// The rows whose verdict is `verdict`.
fn rows_with(rows: &[((String, String), String)], verdict: &str) -> BTreeSet<(String, String)> {
    rows.iter()
        .filter(|(_, seen)| seen == verdict)
        .map(|(example, _)| example.clone())
        .collect()
}

fn named((message_type, file): (&str, &str)) -> (String, String) {
    (message_type.to_owned(), file.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_example_passes_and_broken_expectations_fail_on_their_rows() {
    let fleet = Fleet::start().await;

    // The documented examples, as they are: every one passes.
    let documented = example_files(&documented_examples());
    assert!(documented.len() >= 16, "only {documented:?}");
    let output = fleet.check(&documented_examples(), &[]).await;
    assert_eq!(output.code(), Some(0), "{}{}", output.stdout, output.stderr);
    let rows = table_rows(&output);
    assert_eq!(rows.len(), documented.len(), "{}", output.stdout);
    assert_eq!(rows_with(&rows, "PASS"), documented, "{}", output.stdout);
    let summary = format!("{0} examples: {0} passed, 0 failed", documented.len());
    assert_eq!(
        output.stdout_lines().last().copied(),
        Some(summary.as_str()),
        "{}",
        output.stdout
    );

    // A copy with two broken expectations: exactly those rows fail.
    let copy = TempFolder::new();
    copy_tree(&documented_examples(), &copy.0);
    std::fs::copy(
        documented_examples().join(COPIED_FROM),
        copy.0.join(WRONG_FAULT.0).join(WRONG_FAULT.1),
    )
    .expect("copy an example under a wrong name");
    let outcome_folder = copy.0.join(NOT_A_REQUEST.0);
    std::fs::create_dir_all(&outcome_folder).expect("an outcome type's folder");
    std::fs::write(outcome_folder.join(NOT_A_REQUEST.1), "{}").expect("write an example");
    let broken: BTreeSet<(String, String)> = [named(WRONG_FAULT), named(NOT_A_REQUEST)]
        .into_iter()
        .collect();

    let output = fleet.check(&copy.0, &[]).await;
    assert_eq!(output.code(), Some(1), "{}{}", output.stdout, output.stderr);
    let rows = table_rows(&output);
    assert_eq!(rows.len(), documented.len() + 2, "{}", output.stdout);
    assert_eq!(rows_with(&rows, "FAIL"), broken, "{}", output.stdout);
    assert_eq!(rows_with(&rows, "PASS"), documented, "{}", output.stdout);
    let wrong_fault_line = format!(
        "FAIL {}/{}: expected fault out_of_stock, got dev.warren.orders.completed.v1",
        WRONG_FAULT.0, WRONG_FAULT.1
    );
    assert!(
        output.stdout.contains(&wrong_fault_line),
        "{}",
        output.stdout
    );
    let not_a_request_line = format!(
        "FAIL {}/{}: {} is not a request type",
        NOT_A_REQUEST.0, NOT_A_REQUEST.1, NOT_A_REQUEST.0
    );
    assert!(
        output.stdout.contains(&not_a_request_line),
        "{}",
        output.stdout
    );

    // The same rows as JSON, one object per example.
    let output = fleet.check(&copy.0, &["--json"]).await;
    assert_eq!(output.code(), Some(1), "{}{}", output.stdout, output.stderr);
    let objects: Vec<Value> = output
        .stdout_lines()
        .into_iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect();
    assert_eq!(objects.len(), documented.len() + 2, "{}", output.stdout);
    let key = |object: &Value| {
        (
            object["type"].as_str().expect("a type").to_owned(),
            object["example"].as_str().expect("an example").to_owned(),
        )
    };
    let failed: BTreeSet<(String, String)> = objects
        .iter()
        .filter(|object| object["pass"] == false)
        .map(key)
        .collect();
    assert_eq!(failed, broken, "{}", output.stdout);
    let wrong_fault = objects
        .iter()
        .find(|object| key(object) == named(WRONG_FAULT))
        .expect("the wrong fault's row");
    assert_eq!(
        wrong_fault["expected"]["code"], "out_of_stock",
        "{wrong_fault}"
    );
    assert_eq!(
        wrong_fault["got"]["type"], "dev.warren.orders.completed.v1",
        "{wrong_fault}"
    );
    // The outcome itself is a good one: it matches its schema.
    assert_eq!(wrong_fault["schema"], "ok", "{wrong_fault}");
    for object in objects.iter().filter(|object| object["pass"] == true) {
        assert_eq!(object["outcome"], "received", "{object}");
        assert_eq!(object["schema"], "ok", "{object}");
    }
}
