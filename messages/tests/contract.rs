//! The documented contract against the code: `docs/schemas/` and `docs/messages.md` are
//! what the types generate; decoding accepts exactly what each schema accepts, for every
//! example in `docs/examples/` and for a set of invalid payloads per type.
//!
//! When a type changes on purpose, regenerate the documents with
//! `cargo run -p warren-cli -- schema --write docs` and commit them with the change.

use std::path::{Path, PathBuf};

use serde_json::value::RawValue;
use serde_json::{Value, json};
use warren_messages::catalogue::{self, Entry};
use warren_messages::schema::{catalogue_markdown, file_name, file_text};

const REGENERATE: &str = "cargo run -p warren-cli -- schema --write docs";

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("{}: {error}; write it with `{REGENERATE}`", path.display()))
}

/// The schema files in `folder` that differ from what the types generate, are missing,
/// or document a type the catalogue does not have.
fn schema_drift(folder: &Path) -> Vec<String> {
    let mut drift = Vec::new();
    for entry in catalogue::entries() {
        let name = file_name(entry.message_type);
        match std::fs::read_to_string(folder.join(&name)) {
            Ok(text) if text == file_text(entry) => {}
            Ok(_) => drift.push(format!("{name} differs from the code")),
            Err(_) => drift.push(format!("{name} is missing")),
        }
    }
    for file in std::fs::read_dir(folder).expect("the schemas folder") {
        let name = file
            .expect("an entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let message_type = name.strip_suffix(".json").unwrap_or(&name);
        if catalogue::lookup(message_type).is_none() {
            drift.push(format!(
                "{name} documents a type the catalogue does not have"
            ));
        }
    }
    drift
}

#[test]
fn committed_schemas_are_what_the_types_generate() {
    let drift = schema_drift(&docs().join("schemas"));
    assert!(
        drift.is_empty(),
        "docs/schemas: {drift:?}; if a type changed on purpose (a new version, see \
         docs/versioning.md), run `{REGENERATE}`"
    );
}

#[test]
fn a_schema_edited_by_hand_is_caught() {
    let copy = std::env::temp_dir().join(format!("warren-schemas-{}", std::process::id()));
    std::fs::create_dir_all(&copy).expect("a temp folder");
    for file in std::fs::read_dir(docs().join("schemas")).expect("docs/schemas") {
        let path = file.expect("an entry").path();
        std::fs::copy(&path, copy.join(path.file_name().expect("a name"))).expect("copy");
    }
    let edited = copy.join("dev.warren.orders.place.v2.json");
    let text = read(&edited);
    // A field the code has is taken out of the document.
    let mut schema: Value = serde_json::from_str(&text).expect("JSON");
    schema["properties"]
        .as_object_mut()
        .expect("properties")
        .remove("currency");
    std::fs::write(
        &edited,
        serde_json::to_string_pretty(&schema).expect("JSON"),
    )
    .expect("write");
    std::fs::write(copy.join("dev.warren.orders.cancel.v1.json"), "{}").expect("write");
    let drift = schema_drift(&copy);
    let _ = std::fs::remove_dir_all(&copy);
    assert_eq!(
        drift,
        [
            "dev.warren.orders.place.v2.json differs from the code",
            "dev.warren.orders.cancel.v1.json documents a type the catalogue does not have",
        ],
    );
}

#[test]
fn the_catalogue_page_is_what_the_types_generate() {
    assert!(
        read(&docs().join("messages.md")) == catalogue_markdown(),
        "docs/messages.md differs from the code; run `{REGENERATE}`"
    );
}

/// A schema validator for `entry`'s data.
fn validator(entry: &Entry) -> jsonschema::Validator {
    jsonschema::draft7::new(&(entry.data_schema)())
        .unwrap_or_else(|error| panic!("{}: schema does not compile: {error}", entry.message_type))
}

/// Whether the schema accepts `data`, and whether decoding does.
fn verdicts(entry: &Entry, validator: &jsonschema::Validator, data: &Value) -> (bool, bool) {
    let raw = RawValue::from_string(data.to_string()).expect("JSON");
    (validator.is_valid(data), (entry.accepts)(&raw).is_ok())
}

#[test]
fn schema_and_decoding_agree_on_every_example() {
    let mut checked = 0;
    for folder in std::fs::read_dir(docs().join("examples")).expect("docs/examples") {
        let folder = folder.expect("entry").path();
        let message_type = folder.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let entry = catalogue::lookup(message_type)
            .unwrap_or_else(|| panic!("docs/examples/{message_type}: not in the catalogue"));
        let validator = validator(entry);
        for file in std::fs::read_dir(&folder).expect("examples") {
            let path = file.expect("entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_owned();
            let data: Value = serde_json::from_str(&read(&path)).expect("an example is JSON");
            let (schema, decoding) = verdicts(entry, &validator, &data);
            assert_eq!(
                schema, decoding,
                "{message_type}/{name}: the schema says {schema}, decoding says {decoding}"
            );
            if name.starts_with("ok-") || !name.starts_with("fault-invalid_payload-") {
                assert!(schema, "{message_type}/{name} must pass its schema");
            }
            checked += 1;
        }
    }
    assert!(checked >= 18, "only {checked} examples");
}

fn order_v1() -> Value {
    json!({
        "customer": "Ada Lovelace",
        "items": [{"sku": "sku-mug", "quantity": 2}],
        "card": {"number": "4111111111111111", "holder": "A Lovelace"},
        "ship_to": {"name": "Ada", "street": "12 St James's Square", "city": "London",
                    "postcode": "SW1Y 4JH", "country": "GB"}
    })
}

fn order_v2() -> Value {
    let mut order = order_v1();
    order["currency"] = json!("EUR");
    order
}

/// `base` with the value at `pointer` replaced by `value` (or removed, for `None`).
fn with(mut base: Value, pointer: &str, value: Option<Value>) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    let target = base.pointer_mut(parent).expect("the parent exists");
    match (target, value) {
        (Value::Object(object), Some(value)) => {
            object.insert(key.to_owned(), value);
        }
        (Value::Object(object), None) => {
            object.remove(key);
        }
        (Value::Array(array), Some(value)) => {
            array[key.parse::<usize>().expect("an index")] = value;
        }
        (other, _) => panic!("cannot edit {other}"),
    }
    base
}

/// Payloads each type must refuse, by schema and by decoding alike.
fn invalid_payloads() -> Vec<(&'static str, Value)> {
    let mut cases = vec![
        ("dev.warren.echo.v1", json!([1])),
        ("dev.warren.echo.v1", json!("text")),
        ("dev.warren.echo.v1", json!(null)),
        ("dev.warren.tally.add.v1", json!({"key": "k"})),
        (
            "dev.warren.tally.add.v1",
            json!({"key": "k", "amount": 1.5}),
        ),
        (
            "dev.warren.tally.add.v1",
            json!({"key": "k", "amount": "5"}),
        ),
        (
            "dev.warren.tally.add.v1",
            json!({"key": "k", "amount": 1, "x": 1}),
        ),
        ("dev.warren.tally.get.v1", json!({"key": 5})),
        ("dev.warren.orders.get.v1", json!({})),
        (
            "dev.warren.orders.get.v1",
            json!({"order_id": "o", "more": true}),
        ),
    ];
    let order_breaks: Vec<(&str, Option<Value>)> = vec![
        ("/items", Some(json!([]))),
        (
            "/items",
            Some(json!(vec![json!({"sku": "sku-pen", "quantity": 1}); 51])),
        ),
        ("/items/0/quantity", Some(json!(0))),
        ("/items/0/quantity", Some(json!(1001))),
        ("/items/0/quantity", Some(json!(-1))),
        ("/items/0/sku", Some(json!(""))),
        ("/items/0/sku", Some(json!("s".repeat(65)))),
        ("/items/0/colour", Some(json!("red"))),
        ("/customer", Some(json!(""))),
        ("/customer", Some(json!("é".repeat(201)))),
        ("/customer", None),
        ("/order_id", Some(json!("a b"))),
        ("/order_id", Some(json!("o".repeat(65)))),
        ("/card/number", Some(json!("4111-1111-1111"))),
        ("/card/number", Some(json!("41111111111"))),
        ("/card/holder", None),
        ("/ship_to/country", Some(json!("gb"))),
        ("/ship_to/country", Some(json!("GBR"))),
        ("/ship_to/postcode", Some(json!(""))),
        ("/gift", Some(json!(true))),
    ];
    for (pointer, value) in &order_breaks {
        cases.push((
            "dev.warren.orders.place.v1",
            with(order_v1(), pointer, value.clone()),
        ));
        cases.push((
            "dev.warren.orders.place.v2",
            with(order_v2(), pointer, value.clone()),
        ));
    }
    cases.push(("dev.warren.orders.place.v2", order_v1()));
    for currency in ["eur", "EURO", "", "€"] {
        cases.push((
            "dev.warren.orders.place.v2",
            with(order_v2(), "/currency", Some(json!(currency))),
        ));
    }
    cases.push((
        "dev.warren.orders.place.v1",
        with(order_v1(), "/currency", Some(json!("EUR"))),
    ));
    cases
}

#[test]
fn schema_and_decoding_refuse_the_same_invalid_payloads() {
    let cases = invalid_payloads();
    for (message_type, data) in &cases {
        let entry = catalogue::lookup(message_type).expect("in the catalogue");
        let (schema, decoding) = verdicts(entry, &validator(entry), data);
        assert!(
            !schema && !decoding,
            "{message_type} {data}: schema accepts {schema}, decoding accepts {decoding}"
        );
    }
    assert!(cases.len() >= 50);
}

#[test]
fn schema_and_decoding_accept_the_same_edge_payloads() {
    let longest = "é".repeat(200);
    let cases = vec![
        ("dev.warren.orders.place.v2", order_v2()),
        ("dev.warren.orders.place.v1", order_v1()),
        (
            "dev.warren.orders.place.v2",
            with(
                order_v2(),
                "/items",
                Some(json!(vec![
                    json!({"sku": "s".repeat(64), "quantity": 1000});
                    50
                ])),
            ),
        ),
        (
            "dev.warren.orders.place.v2",
            with(order_v2(), "/customer", Some(json!(longest))),
        ),
        (
            "dev.warren.orders.place.v1",
            with(order_v1(), "/order_id", Some(json!("A_z-09"))),
        ),
        (
            "dev.warren.orders.place.v1",
            with(order_v1(), "/order_id", Some(Value::Null)),
        ),
        // Past the schema, for the worker to refuse: a blank name, a failed Luhn check,
        // a currency the price list is not in.
        (
            "dev.warren.orders.place.v2",
            with(order_v2(), "/customer", Some(json!(" "))),
        ),
        (
            "dev.warren.orders.place.v2",
            with(order_v2(), "/card/number", Some(json!("4111111111111112"))),
        ),
        (
            "dev.warren.orders.place.v2",
            with(order_v2(), "/currency", Some(json!("USD"))),
        ),
        ("dev.warren.echo.v1", json!({"any": ["thing", 1]})),
        ("dev.warren.tally.add.v1", json!({"key": "", "amount": -5})),
    ];
    for (message_type, data) in cases {
        let entry = catalogue::lookup(message_type).expect("in the catalogue");
        let (schema, decoding) = verdicts(entry, &validator(entry), &data);
        assert!(
            schema && decoding,
            "{message_type} {data}: schema accepts {schema}, decoding accepts {decoding}"
        );
    }
}

#[test]
fn every_schema_is_draft_07_and_compiles() {
    for entry in catalogue::entries() {
        let schema = (entry.data_schema)();
        assert_eq!(schema["$schema"], warren_messages::schema::DIALECT);
        assert_eq!(schema["title"], entry.message_type);
        validator(entry);
    }
}
