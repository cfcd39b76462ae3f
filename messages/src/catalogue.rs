//! The catalogue: every message type warren defines, as the docs list them.

use crate::payload::{
    EchoReplied, EchoRequest, Fault, Payload, Progress, TallyAdd, TallyAdded, TallyGet, TallyTotal,
};

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

const fn entry<P: Payload>(kind: Kind, summary: &'static str) -> Entry {
    Entry {
        message_type: P::TYPE,
        schema: P::SCHEMA,
        kind,
        summary,
    }
}

/// Every message type warren defines.
pub const ENTRIES: &[Entry] = &[
    entry::<EchoRequest>(
        Kind::Command,
        "Ask the echo worker to reply with this object.",
    ),
    entry::<EchoReplied>(
        Kind::Outcome,
        "The echo worker's result: the request's object.",
    ),
    entry::<Fault>(Kind::Outcome, "A request failed at some hop."),
    entry::<Progress>(Kind::Outcome, "News of a request before its outcome."),
    entry::<TallyAdd>(
        Kind::Command,
        "Add an amount to the running total of a key.",
    ),
    entry::<TallyAdded>(
        Kind::Outcome,
        "The tally worker's result for an add: the key's new total.",
    ),
    entry::<TallyGet>(Kind::Command, "Ask for the running total of a key."),
    entry::<TallyTotal>(
        Kind::Outcome,
        "The tally worker's result for a get: the key's total.",
    ),
];

/// The catalogue entry of `message_type`, if warren defines it.
pub fn lookup(message_type: &str) -> Option<&'static Entry> {
    ENTRIES
        .iter()
        .find(|entry| entry.message_type == message_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_unique_and_versioned() {
        for (index, entry) in ENTRIES.iter().enumerate() {
            assert!(
                ENTRIES[index + 1..]
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
