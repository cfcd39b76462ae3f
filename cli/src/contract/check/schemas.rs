//! The documented schemas (`Entry::data_schema`, what docs/schemas/ holds), each
//! compiled once, and what a payload's check against one says.

use std::collections::HashMap;

use serde_json::Value;
use warren_messages::catalogue::{self, Entry};

/// What checking a payload against its type's documented schema found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SchemaCheck {
    /// Not checked: there was nothing to check (no outcome, an unreadable one).
    NotChecked,
    /// The payload matches the schema.
    Valid,
    /// The first violation: its JSON pointer and what is wrong.
    Invalid(String),
    /// The type has no documented schema: it is not in the catalogue.
    Undocumented,
}

/// The catalogue's schemas, compiled as they are first needed.
#[derive(Default)]
pub(super) struct Schemas {
    /// By type: the validator, or why the schema did not compile.
    compiled: HashMap<&'static str, Result<jsonschema::Validator, String>>,
}

impl Schemas {
    /// `data` against the documented schema of `message_type`.
    pub(super) fn check(&mut self, message_type: &str, data: &Value) -> SchemaCheck {
        match catalogue::lookup(message_type) {
            Some(entry) => self.check_entry(entry, data),
            None => SchemaCheck::Undocumented,
        }
    }

    /// `data` against `entry`'s schema.
    pub(super) fn check_entry(&mut self, entry: &'static Entry, data: &Value) -> SchemaCheck {
        let validator = self
            .compiled
            .entry(entry.message_type)
            .or_insert_with(|| compile(entry));
        match validator {
            Ok(validator) => match validator.validate(data) {
                Ok(()) => SchemaCheck::Valid,
                Err(error) => SchemaCheck::Invalid(violation(
                    error.instance_path().as_str(),
                    &error.to_string(),
                )),
            },
            Err(error) => SchemaCheck::Invalid(format!("the schema does not compile: {error}")),
        }
    }
}

/// The validator of `entry`'s schema (draft-07, as every catalogue schema declares).
fn compile(entry: &Entry) -> Result<jsonschema::Validator, String> {
    jsonschema::draft7::new(&(entry.data_schema)()).map_err(|error| error.to_string())
}

/// A violation as the table shows it: where (a JSON pointer; `(root)` for the whole
/// payload) and what.
pub(super) fn violation(pointer: &str, message: &str) -> String {
    let place = if pointer.is_empty() {
        "(root)"
    } else {
        pointer
    };
    format!("{place}: {message}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_catalogue_schema_compiles() {
        let mut schemas = Schemas::default();
        for entry in catalogue::entries() {
            let check = schemas.check_entry(entry, &json!(null));
            assert!(
                !matches!(&check, SchemaCheck::Invalid(error) if error.contains("does not compile")),
                "{}: {check:?}",
                entry.message_type
            );
        }
        assert_eq!(schemas.compiled.len(), catalogue::entries().count());
    }

    #[test]
    fn the_first_violation_is_named_by_its_pointer() {
        let mut schemas = Schemas::default();
        let valid = json!({"key": "apples", "amount": 5});
        assert_eq!(
            schemas.check("dev.warren.tally.add.v1", &valid),
            SchemaCheck::Valid
        );
        let wrong = json!({"key": "apples", "amount": 1.5});
        match schemas.check("dev.warren.tally.add.v1", &wrong) {
            SchemaCheck::Invalid(error) => {
                assert!(error.starts_with("/amount: "), "{error}");
                assert!(error.contains("integer"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        match schemas.check("dev.warren.tally.add.v1", &json!([1])) {
            SchemaCheck::Invalid(error) => assert!(error.starts_with("(root): "), "{error}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            schemas.check("dev.warren.nope.v1", &valid),
            SchemaCheck::Undocumented
        );
        // Compiled once, whatever the number of checks.
        assert_eq!(schemas.compiled.len(), 1);
    }

    #[test]
    fn a_fault_is_held_to_the_fault_schema() {
        let mut schemas = Schemas::default();
        let fault = json!({
            "code": "out_of_stock", "message": "none left", "retryable": false,
            "worker": "inventory", "stage": "handle", "attempts": 1,
        });
        assert_eq!(
            schemas.check("dev.warren.fault.v1", &fault),
            SchemaCheck::Valid
        );
        let mut incomplete = fault.clone();
        incomplete
            .as_object_mut()
            .map(|object| object.remove("retryable"));
        match schemas.check("dev.warren.fault.v1", &incomplete) {
            SchemaCheck::Invalid(error) => assert!(error.contains("retryable"), "{error}"),
            other => panic!("{other:?}"),
        }
    }
}
