//! Exchange and queue names, and their declarations.
//!
//! - `warren.commands`: direct exchange; routing key = message type (a topic exchange
//!   declared by warren 0.1 is used as it is).
//! - `warren.events`: topic exchange; routing key = message type, so subscribers may
//!   bind patterns.
//! - `warren.replies`: direct exchange; a reply queue binds under its own name. Outcomes
//!   go only here, so a forged `replyto` naming a work queue routes nowhere.
//! - `warren.<worker>`: the worker's quorum work queue, with a delivery limit.
//! - `warren.<worker>.retry.<ms>ms`: delay queues; the worker sends a message there
//!   through `warren.retries` (routing key = the delay queue's name; never through the
//!   default exchange, which a least-privilege worker may not write to), it waits for
//!   its TTL, then the broker dead-letters it through `warren.retries` back to
//!   `warren.<worker>`.
//! - `warren.dlx` → `warren.<worker>.dlq`: dead letters, routing key = worker name.
//! - `warren.reply.<uuid>`: an originator's reply queue; `warren.reply.<owner>.<uuid>`
//!   for an originator with a name of its own (its token's subject, docs/security.md),
//!   the only reply queues a worker answers when tokens are required.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ExchangeKind};

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
/// Delay queues dead-letter through this back to the work queue (routing key = the
/// work queue's name). Only the broker and workers publish here, so the broker-written
/// `x-death` counts of a message arriving from it can be trusted.
pub const RETRIES_EXCHANGE: &str = "warren.retries";
/// Every reply queue's name starts with this.
pub const REPLY_QUEUE_PREFIX: &str = "warren.reply.";

/// The longest worker name: a DNS label's 63 bytes, since the name also names the
/// worker's binary (`warren-<name>`), its compose service and its queues.
pub const MAX_WORKER_NAME: usize = 63;

/// Checks a worker name, the one rule for it: a lowercase ASCII letter, then lowercase
/// letters, digits and `-`, at most [`MAX_WORKER_NAME`] bytes.
pub fn check_worker_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let starts_with_a_letter = bytes.next().is_some_and(|first| first.is_ascii_lowercase());
    let rest_allowed =
        bytes.all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    if !starts_with_a_letter || !rest_allowed {
        return Err(format!(
            "{name:?} is not a worker name: a lowercase letter, then lowercase letters, \
             digits and '-'"
        ));
    }
    if name.len() > MAX_WORKER_NAME {
        return Err(format!(
            "the worker name {name:?} is longer than {MAX_WORKER_NAME} bytes"
        ));
    }
    Ok(())
}

/// Checks an originator's name (a token subject that names reply queues): a worker-style
/// name, and not `resend`, which would read as the re-send marker in a reply queue name.
pub fn check_originator_name(name: &str) -> Result<(), String> {
    check_worker_name(name).map_err(|_| {
        format!(
            "{name:?} is not an originator name: a lowercase letter, then lowercase letters, \
             digits and '-', at most {MAX_WORKER_NAME} bytes"
        )
    })?;
    if name == "resend" {
        return Err(
            "\"resend\" is not an originator name: it marks a re-sending originator's \
                    reply queue"
                .to_owned(),
        );
    }
    Ok(())
}

/// The work queue of `worker`.
pub fn work_queue_name(worker: &str) -> String {
    format!("warren.{worker}")
}

/// The dead-letter queue of `worker`.
pub fn dead_letter_queue_name(worker: &str) -> String {
    format!("warren.{worker}.dlq")
}

/// The delay queue of `worker` for `delay`.
pub fn retry_queue_name(worker: &str, delay: std::time::Duration) -> String {
    format!("warren.{worker}.retry.{}ms", delay.as_millis())
}

/// The prefix every delay queue name of `worker` starts with.
pub fn retry_queue_prefix(worker: &str) -> String {
    format!("warren.{worker}.retry.")
}

/// A fresh reply queue name.
pub fn new_reply_queue_name() -> String {
    format!("{REPLY_QUEUE_PREFIX}{}", uuid::Uuid::new_v4())
}

/// A fresh reply queue name in the namespace of the originator `owner` (checked with
/// [`check_originator_name`]): `warren.reply.<owner>.<uuid>`, or with `resend`,
/// `warren.reply.resend.<owner>.<uuid>`. An originator under a broker user of its own
/// may declare only these (`warren topology apply --originator`).
pub fn new_owned_reply_queue_name(owner: &str, resend: bool) -> String {
    let prefix = if resend {
        RESEND_REPLY_QUEUE_PREFIX
    } else {
        REPLY_QUEUE_PREFIX
    };
    format!("{prefix}{owner}.{}", uuid::Uuid::new_v4())
}

/// Whether the reply queue `name` is in the namespace of the originator `owner`
/// (`warren.reply.<owner>.…` or `warren.reply.resend.<owner>.…`, something after the
/// owner), `owner` being an originator name (no `.`, so a subject `a.b` cannot claim
/// the queues of `a`): where a worker that requires tokens sends the outcomes of a
/// request whose token names `owner` as its subject, and nowhere else.
pub fn reply_queue_is_owned_by(name: &str, owner: &str) -> bool {
    let rest = name
        .strip_prefix(RESEND_REPLY_QUEUE_PREFIX)
        .or_else(|| name.strip_prefix(REPLY_QUEUE_PREFIX));
    check_originator_name(owner).is_ok()
        && rest
            .and_then(|rest| rest.strip_prefix(owner))
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|unique| !unique.is_empty())
}

/// The start of the name of a reply queue whose originator re-sends every request it
/// has no outcome for after a reconnect (`OutcomeRecovery::OriginatorResends`): workers
/// publish its outcomes transient, so the broker does not write them to disk; an
/// outcome a broker restart loses is asked for again.
pub const RESEND_REPLY_QUEUE_PREFIX: &str = "warren.reply.resend.";

/// A fresh name of a reply queue whose originator re-sends.
pub fn new_resend_reply_queue_name() -> String {
    format!("{RESEND_REPLY_QUEUE_PREFIX}{}", uuid::Uuid::new_v4())
}

/// Whether outcomes to reply queue `name` are published transient: its originator
/// re-sends what a broker restart lost.
#[inline]
pub fn outcomes_are_transient(name: &str) -> bool {
    name.starts_with(RESEND_REPLY_QUEUE_PREFIX)
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

/// Checks that the shared exchanges exist (passive declares, which need no permission),
/// on a channel of its own: for a worker under a user of its own after `warren topology
/// apply` (`amqp.declare_exchanges = false`), which may not declare them.
pub async fn check_exchanges(connection: &Connection) -> Result<(), RuntimeError> {
    let channel = connection.create_channel().await?;
    for (name, kind) in SHARED_EXCHANGES {
        check_exchange(&channel, name, kind).await?;
    }
    crate::connection::close_channel(&channel, "checked").await;
    Ok(())
}

/// A passive declare of exchange `name`: it exists (no permission needed, nothing
/// changed).
async fn check_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
) -> Result<(), lapin::Error> {
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(name.into(), kind, passive, FieldTable::default())
        .await
}

/// The shared exchanges and their kinds, as [`declare_exchanges`] declares them.
pub const SHARED_EXCHANGES: [(&str, ExchangeKind); 5] = [
    (COMMANDS_EXCHANGE, ExchangeKind::Direct),
    (EVENTS_EXCHANGE, ExchangeKind::Topic),
    (REPLIES_EXCHANGE, ExchangeKind::Direct),
    (DEAD_LETTER_EXCHANGE, ExchangeKind::Direct),
    (RETRIES_EXCHANGE, ExchangeKind::Direct),
];

/// Declares the shared exchanges, on a channel of its own. Idempotent.
///
/// `warren.commands` is direct: every command binding is an exact message type, and a
/// direct exchange routes for less broker work than a topic one (docs/performance.md).
/// Where it already exists as a topic exchange (declared by warren 0.1), it is used as
/// it is, with a warning: routing keys are exact types either way.
pub async fn declare_exchanges(connection: &Connection) -> Result<(), RuntimeError> {
    let mut channel = connection.create_channel().await?;
    for (name, kind) in SHARED_EXCHANGES {
        let declared = channel
            .exchange_declare(
                name.into(),
                kind.clone(),
                durable_exchange(),
                FieldTable::default(),
            )
            .await;
        let refused = match declared {
            Ok(()) => continue,
            Err(error) if name == COMMANDS_EXCHANGE && is_precondition_failed(&error) => false,
            // A least-privilege user (`warren topology apply`) may not configure the
            // shared exchanges: they were declared by whoever set the topology up.
            Err(error) if is_access_refused(&error) => true,
            Err(error) => return Err(error.into()),
        };
        // The failed declare closed the channel; a passive one checks the exchange is
        // there, and it is used as it is.
        channel = connection.create_channel().await?;
        check_exchange(&channel, name, kind).await?;
        if refused {
            tracing::debug!(
                exchange = name,
                "not permitted to declare {name}; it exists, using it as it is"
            );
        } else {
            tracing::warn!(
                exchange = name,
                "{name} exists with another type (a topic exchange of warren 0.1); \
                     using it as it is. Delete it while no worker runs (`rabbitmqctl \
                     delete_exchange {name}`, with `-p <vhost>`) to get the direct one"
            );
        }
    }
    crate::connection::close_channel(&channel, "declared").await;
    Ok(())
}

/// Whether the broker refused a declaration as inequivalent to what exists (406).
fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 406)
}

/// Whether the broker refused an operation for want of a permission (403).
pub fn is_access_refused(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 403)
}

/// Declares `worker`'s work queue, delay queues and dead-letter queue, and binds the
/// work queue for every type in its manifest and for returns from its delay queues.
/// Idempotent while the arguments stay the same.
pub async fn declare_worker_queues(
    channel: &Channel,
    manifest: &Manifest,
    delivery_limit: u32,
    retry_delays: &[std::time::Duration],
) -> Result<(), RuntimeError> {
    declare_queues_of(
        channel,
        &WorkerQueues {
            name: manifest.name,
            commands: manifest.commands,
            events: manifest.events,
        },
        delivery_limit,
        retry_delays,
    )
    .await
}

/// What a worker's queues and bindings follow from: its name and the types it consumes.
/// ([`Manifest`] with borrowed names, for a caller that read a manifest at run time.)
#[derive(Debug, Clone, Copy)]
pub struct WorkerQueues<'a> {
    /// The worker's name.
    pub name: &'a str,
    /// Command types its work queue is bound for on `warren.commands`.
    pub commands: &'a [&'a str],
    /// Event types its work queue is bound for on `warren.events`.
    pub events: &'a [&'a str],
}

/// Every binding of a worker's queues, as `(exchange, queue, routing key)`: the
/// dead-letter queue on `warren.dlx`, each delay queue on `warren.retries` under its own
/// name (where the worker sends a message to wait), the work queue on `warren.retries`
/// under its own name (where it comes back) and for every type it consumes.
pub fn worker_bindings(
    worker: &WorkerQueues<'_>,
    retry_delays: &[std::time::Duration],
) -> Vec<(&'static str, String, String)> {
    let work_queue = work_queue_name(worker.name);
    let mut bindings = vec![(
        DEAD_LETTER_EXCHANGE,
        dead_letter_queue_name(worker.name),
        worker.name.to_owned(),
    )];
    for delay in retry_delays {
        let retry_queue = retry_queue_name(worker.name, *delay);
        bindings.push((RETRIES_EXCHANGE, retry_queue.clone(), retry_queue));
    }
    bindings.push((RETRIES_EXCHANGE, work_queue.clone(), work_queue.clone()));
    for message_type in worker.commands {
        bindings.push((
            COMMANDS_EXCHANGE,
            work_queue.clone(),
            (*message_type).to_owned(),
        ));
    }
    for message_type in worker.events {
        bindings.push((
            EVENTS_EXCHANGE,
            work_queue.clone(),
            (*message_type).to_owned(),
        ));
    }
    bindings
}

/// [`declare_worker_queues`] for a worker known by its [`WorkerQueues`].
pub async fn declare_queues_of(
    channel: &Channel,
    worker: &WorkerQueues<'_>,
    delivery_limit: u32,
    retry_delays: &[std::time::Duration],
) -> Result<(), RuntimeError> {
    let dead_letter_queue = dead_letter_queue_name(worker.name);
    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), text("quorum"));
    channel
        .queue_declare(dead_letter_queue.as_str().into(), durable_queue(), quorum)
        .await?;
    let work_queue = work_queue_name(worker.name);
    channel
        .queue_declare(
            work_queue.as_str().into(),
            durable_queue(),
            work_queue_arguments(worker.name, delivery_limit),
        )
        .await?;
    for delay in retry_delays {
        channel
            .queue_declare(
                retry_queue_name(worker.name, *delay).as_str().into(),
                durable_queue(),
                retry_queue_arguments(&work_queue, *delay),
            )
            .await?;
    }
    for (exchange, queue, routing_key) in worker_bindings(worker, retry_delays) {
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.into(),
                routing_key.as_str().into(),
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

/// The arguments of a delay queue: messages expire after `delay` and are dead-lettered
/// (at least once) through `warren.retries` back to `work_queue`.
pub fn retry_queue_arguments(work_queue: &str, delay: std::time::Duration) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), text("quorum"));
    arguments.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
    );
    arguments.insert("x-dead-letter-exchange".into(), text(RETRIES_EXCHANGE));
    arguments.insert("x-dead-letter-routing-key".into(), text(work_queue));
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
    // Classic queues' second storage format: it writes persistent messages for less
    // broker work than the first (docs/performance.md); older brokers ignore it.
    arguments.insert("x-queue-version".into(), AMQPValue::LongLongInt(2));
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
    #[test]
    fn worker_names_follow_one_rule() {
        for good in [
            "echo",
            "tally",
            "orders-v2",
            "a",
            &"w".repeat(MAX_WORKER_NAME),
        ] {
            assert_eq!(check_worker_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Echo",
            "2fa",
            "-x",
            "echo worker",
            "echo_1",
            "é",
            &"w".repeat(MAX_WORKER_NAME + 1),
        ] {
            assert!(check_worker_name(bad).is_err(), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn owned_reply_queues_belong_to_their_owner_alone() {
        let plain = new_owned_reply_queue_name("alice", false);
        let resend = new_owned_reply_queue_name("alice", true);
        assert!(plain.starts_with("warren.reply.alice."), "{plain}");
        assert!(resend.starts_with("warren.reply.resend.alice."), "{resend}");
        for name in [&plain, &resend] {
            assert!(is_valid_reply_queue(name), "{name}");
            assert!(reply_queue_is_owned_by(name, "alice"), "{name}");
            for other in ["bob", "alic", "alice2", "", "resend", "warren", "alice.x"] {
                assert!(!reply_queue_is_owned_by(name, other), "{name} {other}");
            }
        }
        assert!(outcomes_are_transient(&resend));
        assert!(!outcomes_are_transient(&plain));
        for name in [
            "warren.reply.alice",
            "warren.reply.alice.",
            "warren.reply.resend.alice",
            &new_reply_queue_name(),
            "warren.replyalice.x",
            "warren.alice.x",
        ] {
            assert!(!reply_queue_is_owned_by(name, "alice"), "{name}");
        }
        assert!(reply_queue_is_owned_by("warren.reply.a.b.c", "a"));
        assert!(!reply_queue_is_owned_by("warren.reply.a.b.c", "a.b"));
        assert!(check_originator_name("alice-2").is_ok());
        for bad in ["resend", "Alice", "a.b", "", "2a"] {
            assert!(check_originator_name(bad).is_err(), "{bad}");
        }
    }

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
