//! Exchange and queue names, and their declarations.
//!
//! - `warren.commands`, `warren.events`: topic exchanges; routing key = message type.
//! - `warren.replies`: direct exchange; a reply queue binds under its own name. Outcomes
//!   go only here, so a forged `replyto` naming a work queue routes nowhere.
//! - `warren.<worker>`: the worker's quorum work queue, with a delivery limit.
//! - `warren.dlx` → `warren.<worker>.dlq`: dead letters, routing key = worker name.
//! - `warren.reply.<uuid>`: an originator's reply queue.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use crate::error::RuntimeError;
use crate::handler::Manifest;

/// Commands: asks for work; one worker type consumes each command type.
pub const COMMANDS_EXCHANGE: &str = "warren.commands";
/// Events: facts; any worker may subscribe.
pub const EVENTS_EXCHANGE: &str = "warren.events";
/// Outcomes to originators, routed by reply queue name.
pub const REPLIES_EXCHANGE: &str = "warren.replies";
/// Dead letters, routed by worker name.
pub const DEAD_LETTER_EXCHANGE: &str = "warren.dlx";
/// Every reply queue's name starts with this.
pub const REPLY_QUEUE_PREFIX: &str = "warren.reply.";

/// The work queue of `worker`.
pub fn work_queue_name(worker: &str) -> String {
    format!("warren.{worker}")
}

/// The dead-letter queue of `worker`.
pub fn dead_letter_queue_name(worker: &str) -> String {
    format!("warren.{worker}.dlq")
}

/// A fresh reply queue name.
pub fn new_reply_queue_name() -> String {
    format!("{REPLY_QUEUE_PREFIX}{}", uuid::Uuid::new_v4())
}

/// Whether `name` may receive outcomes: a reply queue name of at most 255 bytes made of
/// letters, digits, `.`, `-`, `_` and `:`.
pub fn is_valid_reply_queue(name: &str) -> bool {
    name.len() <= 255
        && name.len() > REPLY_QUEUE_PREFIX.len()
        && name.starts_with(REPLY_QUEUE_PREFIX)
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b".-_:".contains(&byte))
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Declares the four shared exchanges. Idempotent.
pub async fn declare_exchanges(channel: &Channel) -> Result<(), RuntimeError> {
    for (name, kind) in [
        (COMMANDS_EXCHANGE, ExchangeKind::Topic),
        (EVENTS_EXCHANGE, ExchangeKind::Topic),
        (REPLIES_EXCHANGE, ExchangeKind::Direct),
        (DEAD_LETTER_EXCHANGE, ExchangeKind::Direct),
    ] {
        channel
            .exchange_declare(name.into(), kind, durable_exchange(), FieldTable::default())
            .await?;
    }
    Ok(())
}

/// Declares `worker`'s work queue and dead-letter queue and binds the work queue for
/// every type in its manifest. Idempotent while the arguments stay the same.
pub async fn declare_worker_queues(
    channel: &Channel,
    manifest: &Manifest,
    delivery_limit: u32,
) -> Result<(), RuntimeError> {
    let dead_letter_queue = dead_letter_queue_name(manifest.name);
    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), text("quorum"));
    channel
        .queue_declare(dead_letter_queue.as_str().into(), durable_queue(), quorum)
        .await?;
    channel
        .queue_bind(
            dead_letter_queue.as_str().into(),
            DEAD_LETTER_EXCHANGE.into(),
            manifest.name.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let work_queue = work_queue_name(manifest.name);
    channel
        .queue_declare(
            work_queue.as_str().into(),
            durable_queue(),
            work_queue_arguments(manifest.name, delivery_limit),
        )
        .await?;
    let bindings = manifest
        .commands
        .iter()
        .map(|message_type| (COMMANDS_EXCHANGE, message_type))
        .chain(
            manifest
                .events
                .iter()
                .map(|message_type| (EVENTS_EXCHANGE, message_type)),
        );
    for (exchange, message_type) in bindings {
        channel
            .queue_bind(
                work_queue.as_str().into(),
                exchange.into(),
                (*message_type).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// The arguments of a work queue: quorum, a delivery limit for poison messages, and
/// at-least-once dead-lettering to `warren.dlx` (which needs `reject-publish`).
pub fn work_queue_arguments(worker: &str, delivery_limit: u32) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), text("quorum"));
    arguments.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(delivery_limit)),
    );
    arguments.insert("x-dead-letter-exchange".into(), text(DEAD_LETTER_EXCHANGE));
    arguments.insert("x-dead-letter-routing-key".into(), text(worker));
    arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    arguments.insert("x-overflow".into(), text("reject-publish"));
    arguments
}

/// Declares a reply queue and binds it to `warren.replies` under its own name.
///
/// The queue is durable and not exclusive, so it outlives a dropped connection; the
/// broker deletes it after `expires_ms` without a consumer.
pub async fn declare_reply_queue(
    channel: &Channel,
    name: &str,
    expires_ms: u32,
) -> Result<(), RuntimeError> {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-expires".into(),
        AMQPValue::LongLongInt(i64::from(expires_ms)),
    );
    channel
        .queue_declare(name.into(), durable_queue(), arguments)
        .await?;
    channel
        .queue_bind(
            name.into(),
            REPLIES_EXCHANGE.into(),
            name.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_queue_names_are_checked() {
        assert!(is_valid_reply_queue(&new_reply_queue_name()));
        for forged in [
            "warren.echo",
            "warren.reply.",
            "amq.gen-x",
            "warren.reply.a b",
            "warren.reply.\u{e9}",
        ] {
            assert!(!is_valid_reply_queue(forged), "{forged}");
        }
        assert!(!is_valid_reply_queue(&format!(
            "{REPLY_QUEUE_PREFIX}{}",
            "a".repeat(250)
        )));
    }
}
