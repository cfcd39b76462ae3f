//! The tally worker's messages.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::catalogue::{Entry, Kind, entry};
use crate::payload::payload;

/// `dev.warren.tally.add.v1`: add `amount` to the running total of `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TallyAdd {
    /// The total to add to (not empty).
    pub key: String,
    /// What to add; negative to subtract.
    pub amount: i64,
}
payload!(TallyAdd, "dev.warren.tally.add.v1");

/// `dev.warren.tally.added.v1`: the tally worker's result for a [`TallyAdd`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TallyAdded {
    /// The key that was added to.
    pub key: String,
    /// Its total after the addition.
    pub total: i64,
}
payload!(TallyAdded, "dev.warren.tally.added.v1");

/// `dev.warren.tally.get.v1`: ask for the running total of `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TallyGet {
    /// The total asked for (not empty).
    pub key: String,
}
payload!(TallyGet, "dev.warren.tally.get.v1");

/// `dev.warren.tally.total.v1`: the tally worker's result for a [`TallyGet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TallyTotal {
    /// The key asked for.
    pub key: String,
    /// Its total: 0 for a key nothing was ever added to.
    pub total: i64,
}
payload!(TallyTotal, "dev.warren.tally.total.v1");

/// The tally worker's messages in the catalogue.
pub(crate) const CATALOGUE: &[Entry] = &[
    entry::<TallyAdd>(
        Kind::Command,
        "Add an amount to the running total of a key.",
    )
    .answered_by::<TallyAdded>(),
    entry::<TallyAdded>(
        Kind::Outcome,
        "The tally worker's result for an add: the key's new total.",
    ),
    entry::<TallyGet>(Kind::Command, "Ask for the running total of a key.")
        .answered_by::<TallyTotal>(),
    entry::<TallyTotal>(
        Kind::Outcome,
        "The tally worker's result for a get: the key's total.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_commands_reject_unknown_fields_and_non_integers() {
        let add: TallyAdd = serde_json::from_str(r#"{"key":"k","amount":-5}"#).expect("tally add");
        assert_eq!(
            add,
            TallyAdd {
                key: "k".into(),
                amount: -5
            }
        );
        for bad in [
            r#"{"key":"k","amount":5,"extra":1}"#,
            r#"{"key":"k","amount":1.5}"#,
            r#"{"key":"k","amount":"5"}"#,
            r#"{"key":"k","amount":9223372036854775808}"#,
            r#"{"key":"k"}"#,
        ] {
            assert!(serde_json::from_str::<TallyAdd>(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<TallyGet>(r#"{"key":"k","amount":1}"#).is_err());
        let total = TallyTotal {
            key: "k".into(),
            total: 50,
        };
        assert_eq!(
            serde_json::to_string(&total).expect("serialize"),
            r#"{"key":"k","total":50}"#
        );
    }
}
