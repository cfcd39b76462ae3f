//! The catalogue: every message type warren defines, as the docs list them.

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The CloudEvents `type`.
    pub message_type: &'static str,
    /// The CloudEvents `dataschema`.
    pub schema: &'static str,
    /// What kind of message it is.
    pub kind: Kind,
    /// One line saying what it means.
    pub summary: &'static str,
}

/// The entry of payload type `P`.
pub(crate) const fn entry<P: Payload>(kind: Kind, summary: &'static str) -> Entry {
    Entry {
        message_type: P::TYPE,
        schema: P::SCHEMA,
        kind,
        summary,
    }
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
}
