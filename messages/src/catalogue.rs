//! The catalogue: every message type warren defines, as the docs list them.

use serde_json::value::RawValue;

use crate::payload::{Fault, Payload, Progress, RequestFailed};

/// Whether a message is a command (asks a worker to do something), an event (says
/// something happened) or an outcome (goes back to the originator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Published to `warren.commands`, consumed by exactly one worker.
    Command,
    /// Published to `warren.events`, consumed by any worker that subscribes.
    Event,
    /// Published to `warren.replies`, read by the originator.
    Outcome,
}

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The CloudEvents `type`.
    pub message_type: &'static str,
    /// The CloudEvents `dataschema`.
    pub schema: &'static str,
    /// What kind of message it is.
    pub kind: Kind,
    /// One line saying what it means.
    pub summary: &'static str,
    /// For a command an originator sends, the outcome type of its result (any request
    /// may also end in `dev.warren.fault.v1`).
    pub result: Option<&'static str>,
    /// For an older version still accepted, the version it is upcast to on receipt.
    pub upcast_to: Option<&'static str>,
    /// The JSON Schema (draft-07) of its `data`, generated from the Rust type.
    pub data_schema: fn() -> serde_json::Value,
    /// Whether `data` decodes as this type (shape and bounds, as a worker decodes it).
    pub accepts: fn(&RawValue) -> Result<(), serde_json::Error>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.message_type == other.message_type
            && self.kind == other.kind
            && self.result == other.result
            && self.upcast_to == other.upcast_to
    }
}

impl Eq for Entry {}

impl Entry {
    /// This command's result is a `R`.
    pub(crate) const fn answered_by<R: Payload>(self) -> Entry {
        Entry {
            result: Some(R::TYPE),
            ..self
        }
    }

    /// This older version is upcast to `N` on receipt.
    pub(crate) const fn upcast_to<N: Payload>(self) -> Entry {
        Entry {
            upcast_to: Some(N::TYPE),
            ..self
        }
    }

    /// The type without its version: `dev.warren.orders.place` of
    /// `dev.warren.orders.place.v2`.
    pub fn family(&self) -> &'static str {
        split_version(self.message_type).0
    }

    /// The version number: 2 of `dev.warren.orders.place.v2`.
    pub fn version(&self) -> u32 {
        split_version(self.message_type).1
    }
}

/// A message type split into its family and version number (0 when it has none).
pub fn split_version(message_type: &str) -> (&str, u32) {
    message_type
        .rsplit_once(".v")
        .and_then(|(family, version)| Some((family, version.parse().ok()?)))
        .unwrap_or((message_type, 0))
}

/// The entry of payload type `P`.
pub(crate) const fn entry<P: Payload>(kind: Kind, summary: &'static str) -> Entry {
    Entry {
        message_type: P::TYPE,
        schema: P::SCHEMA,
        kind,
        summary,
        result: None,
        upcast_to: None,
        data_schema: crate::schema::data_schema::<P>,
        accepts: decodes_as::<P>,
    }
}

fn decodes_as<P: Payload>(data: &RawValue) -> Result<(), serde_json::Error> {
    crate::payload::decode_data::<P>(data).map(|_| ())
}

/// The message types every worker shares: the outcomes any hop may send.
const COMMON: &[Entry] = &[
    entry::<Fault>(Kind::Outcome, "A request failed at some hop."),
    entry::<Progress>(Kind::Outcome, "News of a request before its outcome."),
    entry::<RequestFailed>(
        Kind::Event,
        "A request failed at some hop: earlier hops undo their work.",
    ),
];

/// Every message type warren defines: the common ones, then each worker's
/// (`crate::types`).
pub fn entries() -> impl Iterator<Item = &'static Entry> {
    std::iter::once(COMMON)
        .chain(crate::types::CATALOGUES.iter().copied())
        .flatten()
}

/// The catalogue entry of `message_type`, if warren defines it.
pub fn lookup(message_type: &str) -> Option<&'static Entry> {
    entries().find(|entry| entry.message_type == message_type)
}

/// The newest version of a family (`dev.warren.orders.place`), or the entry of an exact
/// type (`dev.warren.orders.place.v1`).
pub fn latest(name: &str) -> Option<&'static Entry> {
    lookup(name).or_else(|| {
        entries()
            .filter(|entry| entry.family() == name)
            .max_by_key(|entry| entry.version())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_unique_and_versioned() {
        let all: Vec<&Entry> = entries().collect();
        assert!(all.len() >= 8, "{all:?}");
        for (index, entry) in all.iter().enumerate() {
            assert!(
                all[index + 1..]
                    .iter()
                    .all(|other| other.message_type != entry.message_type),
                "{} twice",
                entry.message_type
            );
            let version = entry.message_type.rsplit('.').next().unwrap_or("");
            assert!(
                version.starts_with('v') && version[1..].parse::<u32>().is_ok(),
                "{} has no version",
                entry.message_type
            );
            assert!(entry.message_type.starts_with("dev.warren."));
        }
        assert_eq!(
            lookup("dev.warren.echo.v1").map(|e| e.kind),
            Some(Kind::Command)
        );
        assert_eq!(lookup("dev.warren.nope.v1"), None);
    }

    #[test]
    fn families_and_versions() {
        assert_eq!(
            split_version("dev.warren.orders.place.v2"),
            ("dev.warren.orders.place", 2)
        );
        assert_eq!(split_version("dev.warren.x"), ("dev.warren.x", 0));
        let newest = latest("dev.warren.orders.place").map(|entry| entry.message_type);
        assert_eq!(newest, Some("dev.warren.orders.place.v2"));
        let v1 = lookup("dev.warren.orders.place.v1").expect("v1");
        assert_eq!(v1.upcast_to, Some("dev.warren.orders.place.v2"));
        assert_eq!(v1.result, Some("dev.warren.orders.completed.v1"));
        let requests: Vec<&str> = entries()
            .filter(|entry| entry.result.is_some())
            .map(|entry| entry.message_type)
            .collect();
        assert_eq!(
            requests,
            [
                "dev.warren.echo.v1",
                "dev.warren.orders.place.v2",
                "dev.warren.orders.place.v1",
                "dev.warren.orders.get.v1",
                "dev.warren.tally.add.v1",
                "dev.warren.tally.get.v1"
            ]
        );
        for entry in entries() {
            if let Some(result) = entry.result {
                assert_eq!(entry.kind, Kind::Command, "{}", entry.message_type);
                assert_eq!(lookup(result).map(|r| r.kind), Some(Kind::Outcome));
            }
        }
    }
}
