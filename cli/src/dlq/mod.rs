//! `warren dlq list|show|replay|purge <worker>`: a worker's dead letters.
//!
//! The AMQP side is `warren_ops::dead_letters` (through its `DeadLetterQueues`); these
//! files parse arguments ([`args`]), run each command ([`commands`]) and print
//! ([`render`]). Exit codes: 0 done; 1 something was not replayed, a dead letter was not
//! found, or a purge was declined; 2 usage, configuration or broker errors, a missing
//! dead-letter queue, or a purge without `--yes` when there is no terminal to ask on.

mod args;
mod commands;
mod render;

pub use args::DlqArgs;
pub use commands::run;
