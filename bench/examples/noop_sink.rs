//! A no-op stand-in for the echo worker, to measure how fast `warren load` itself can go
//! when the worker costs nothing.
//!
//! It consumes the echo work queue (`warren.echo`) with `no_ack` and answers every request
//! at once with a `dev.warren.echo.replied.v1` result, published to `warren.replies` under
//! the request's reply queue, without publisher confirms and transient (delivery mode 1).
//! The reply is a fixed envelope made once by warren's own serializer, into which only its
//! new `id` and the request's `correlationid` are spliced; its `data` is `{}`, not the
//! request's object, so no request body is parsed (unless its AMQP properties lack
//! `correlation_id` or `reply_to`). `warren load` reads an outcome from the AMQP
//! `correlation_id` and `type` alone, and counts one whose type is neither a fault nor a
//! progress report as a result; the sink mirrors both into the properties, as warren's
//! publishers do, and the body is a valid envelope besides.
//!
//! The topology is declared exactly as the echo worker declares it (the runtime's
//! `declare_exchanges` and `declare_worker_queues` with `warren_echo::MANIFEST` and the
//! same settings), so the sink and the real worker can take turns on one vhost. When a
//! queue of other arguments is already there, it is used as it is (a passive declare).
//!
//! The broker URL comes from `WARREN_AMQP_URL` (default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`), read through warren's usual settings layers.
//! It runs until Ctrl-C or SIGTERM and then prints how many requests it answered.
//! Requests the broker had already pushed to it but it had not answered yet are lost
//! (`no_ack`): stop it only when no load is running.
//!
//! Run it in a scratch vhost, so no real echo worker shares the queue:
//!
//! ```text
//! rabbitmqctl add_vhost sink-check
//! rabbitmqctl set_permissions -p sink-check guest ".*" ".*" ".*"
//! export WARREN_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/sink-check
//! cargo run --release -p warren-bench --example noop_sink &
//! cargo run --release -p warren-cli -- load --messages 50000 --inflight 250 --payload-bytes 256
//! kill %1
//! rabbitmqctl delete_vhost sink-check
//! ```

use std::process::ExitCode;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, Queue};
use serde_json::value::RawValue;
use warren_messages::{
    Attributes, EchoReplied, Envelope, JSON_CONTENT_TYPE, Limits, Payload, STRUCTURED_CONTENT_TYPE,
    decode_structured, new_message_id,
};
use warren_runtime::topology::{
    REPLIES_EXCHANGE, declare_exchanges, declare_worker_queues, is_valid_reply_queue,
    work_queue_name,
};
use warren_runtime::{Overrides, Settings};

/// The `source` of every reply.
const SOURCE: &str = "/warren/bench/noop-sink";
/// AMQP `delivery_mode` of a message the broker keeps in memory only.
const TRANSIENT: u8 = 1;
/// The most replies handed to lapin whose frames are not yet written; past it the sink
/// stops taking deliveries until some are.
const MAX_PUBLISHING: usize = 4096;
/// How often the running count is printed, when it changed.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// Stand-ins the reply template is serialized with, then cut at.
const ID_MARK: &str = "noop-sink-reply-id";
const CORRELATION_MARK: &str = "noop-sink-correlation-id";

/// The reply body, cut where its two per-request attributes go.
struct ReplyTemplate {
    /// Up to the reply's `id` value.
    head: Vec<u8>,
    /// Between the `id` value and the `correlationid` value.
    middle: Vec<u8>,
    /// After the `correlationid` value.
    tail: Vec<u8>,
}

impl ReplyTemplate {
    /// Serializes a `dev.warren.echo.replied.v1` envelope with stand-in ids and cuts it
    /// around them, then checks that a spliced reply decodes as a result.
    fn new() -> Result<Self, String> {
        let data = RawValue::from_string("{}".to_owned()).map_err(|error| error.to_string())?;
        let envelope = Envelope {
            attributes: Attributes {
                id: ID_MARK.to_owned(),
                source: SOURCE.to_owned(),
                message_type: EchoReplied::TYPE.to_owned(),
                datacontenttype: Some(JSON_CONTENT_TYPE.to_owned()),
                dataschema: Some(EchoReplied::SCHEMA.to_owned()),
                correlationid: Some(CORRELATION_MARK.to_owned()),
                ..Attributes::default()
            },
            data: &*data,
        };
        let body = envelope.to_json_vec().map_err(|error| error.to_string())?;
        let quoted = |mark: &str| format!("\"{mark}\"");
        let (id_mark, correlation_mark) = (quoted(ID_MARK), quoted(CORRELATION_MARK));
        let find = |mark: &str, from: usize| {
            body.get(from..)
                .and_then(|rest| {
                    rest.windows(mark.len())
                        .position(|at| at == mark.as_bytes())
                })
                .map(|at| from + at)
                .ok_or_else(|| format!("the reply template has no {mark} after byte {from}"))
        };
        let id_at = find(&id_mark, 0)?;
        let correlation_at = find(&correlation_mark, id_at + id_mark.len())?;
        let template = ReplyTemplate {
            head: body[..id_at].to_vec(),
            middle: body[id_at + id_mark.len()..correlation_at].to_vec(),
            tail: body[correlation_at + correlation_mark.len()..].to_vec(),
        };

        let (id, correlation_id) = (new_message_id(), new_message_id());
        let sample = template.body(&id, &correlation_id)?;
        let decoded = decode_structured(&sample, &Limits::default())
            .map_err(|error| format!("the reply template does not decode: {error}"))?;
        let attributes = &decoded.attributes;
        if attributes.id != id
            || attributes.correlation_id() != correlation_id
            || attributes.message_type != EchoReplied::TYPE
        {
            return Err(format!(
                "the reply template decodes to the wrong attributes: {attributes:?}"
            ));
        }
        Ok(template)
    }

    /// The body of the reply `id` to the request `correlation_id`.
    fn body(&self, id: &str, correlation_id: &str) -> Result<Vec<u8>, String> {
        let mut body = Vec::with_capacity(
            self.head.len()
                + self.middle.len()
                + self.tail.len()
                + id.len()
                + correlation_id.len()
                + 4,
        );
        body.extend_from_slice(&self.head);
        serde_json::to_writer(&mut body, id).map_err(|error| error.to_string())?;
        body.extend_from_slice(&self.middle);
        serde_json::to_writer(&mut body, correlation_id).map_err(|error| error.to_string())?;
        body.extend_from_slice(&self.tail);
        Ok(body)
    }
}

/// A reply ready to publish.
struct Reply {
    reply_queue: ShortString,
    body: Vec<u8>,
    properties: BasicProperties,
}

/// Why a request got no reply.
enum Unanswered {
    /// No `replyto` naming a reply queue.
    NoReplyQueue,
    /// No correlation id in the properties, and a body that does not decode.
    Unreadable,
}

/// The reply to `delivery`: its correlation id and reply queue come from the AMQP
/// properties, which warren's publishers mirror from the envelope; the body is decoded
/// only when one of them is missing.
fn reply_to(
    template: &ReplyTemplate,
    delivery: lapin::message::Delivery,
) -> Result<Reply, Unanswered> {
    let properties = delivery.properties;
    let (correlation_id, reply_queue) = match (properties.correlation_id(), properties.reply_to()) {
        (Some(correlation_id), Some(reply_queue)) => {
            (correlation_id.as_str().to_owned(), reply_queue.clone())
        }
        _ => {
            let envelope = decode_structured(&delivery.data, &Limits::default())
                .map_err(|_| Unanswered::Unreadable)?;
            let attributes = envelope.attributes;
            let reply_queue = attributes.replyto.as_deref().map(ShortString::from);
            (
                attributes.correlation_id().to_owned(),
                reply_queue.ok_or(Unanswered::NoReplyQueue)?,
            )
        }
    };
    if !is_valid_reply_queue(reply_queue.as_str()) {
        return Err(Unanswered::NoReplyQueue);
    }
    let id = new_message_id();
    let body = template
        .body(&id, &correlation_id)
        .map_err(|_| Unanswered::Unreadable)?;
    let properties = BasicProperties::default()
        .with_content_type(STRUCTURED_CONTENT_TYPE.into())
        .with_delivery_mode(TRANSIENT)
        .with_type(EchoReplied::TYPE.into())
        .with_message_id(id.into())
        .with_correlation_id(correlation_id.into());
    Ok(Reply {
        reply_queue,
        body,
        properties,
    })
}

/// Publishes `reply` without a confirm; done once lapin has written its frames.
async fn publish(channel: &Channel, reply: Reply) -> Result<(), lapin::Error> {
    channel
        .basic_publish(
            REPLIES_EXCHANGE.into(),
            reply.reply_queue,
            BasicPublishOptions::default(),
            &reply.body,
            reply.properties,
        )
        .await?;
    Ok(())
}

/// Declares the echo topology as the echo worker does, and returns the work queue as
/// the broker has it; a queue already declared with other arguments is kept as it is.
async fn declare_topology(
    connection: &Connection,
    settings: &Settings,
    work_queue: &str,
) -> Result<Queue, lapin::Error> {
    let channel = connection.create_channel().await?;
    let declared = async {
        declare_exchanges(connection).await?;
        declare_worker_queues(
            &channel,
            &warren_echo::MANIFEST,
            settings.worker.delivery_limit,
            &settings.retry.delays(),
        )
        .await
    }
    .await;
    match declared {
        Ok(()) => {
            warren_runtime::close_channel(&channel, "declared").await;
        }
        Err(error) => eprintln!(
            "noop_sink: could not declare the echo topology as the echo worker does \
             ({error}); using {work_queue} as it is"
        ),
    }
    // A fresh channel: a failed declare closes the one it ran on.
    let probe = connection.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let queue = probe
        .queue_declare(work_queue.into(), passive, FieldTable::default())
        .await?;
    warren_runtime::close_channel(&probe, "probed").await;
    Ok(queue)
}

/// What the sink did.
#[derive(Debug, Default)]
struct Counts {
    answered: u64,
    no_reply_queue: u64,
    unreadable: u64,
    publish_errors: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let settings = match Settings::load(&Overrides::default()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("noop_sink: {error}");
            return ExitCode::FAILURE;
        }
    };
    let template = match ReplyTemplate::new() {
        Ok(template) => template,
        Err(error) => {
            eprintln!("noop_sink: {error}");
            return ExitCode::FAILURE;
        }
    };
    let connection = match warren_runtime::connect(&settings.amqp, "warren-bench noop_sink").await {
        Ok(connection) => connection,
        Err(error) => {
            eprintln!(
                "noop_sink: cannot connect to {} ({error})",
                settings.amqp.redacted_url()
            );
            return ExitCode::FAILURE;
        }
    };
    match serve(&connection, &settings, &template).await {
        Ok(counts) => {
            warren_runtime::close_connection(&connection, "done").await;
            println!(
                "noop_sink: answered {} requests ({} without a reply queue, {} unreadable, {} \
                 publish errors)",
                counts.answered, counts.no_reply_queue, counts.unreadable, counts.publish_errors
            );
            if counts.publish_errors > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("noop_sink: {error}");
            warren_runtime::close_connection(&connection, "failed").await;
            ExitCode::FAILURE
        }
    }
}

/// Answers requests until a signal, or until the connection or the consumer is gone.
async fn serve(
    connection: &Connection,
    settings: &Settings,
    template: &ReplyTemplate,
) -> Result<Counts, lapin::Error> {
    let work_queue = work_queue_name(warren_echo::MANIFEST.name);
    let queue = declare_topology(connection, settings, &work_queue).await?;
    if queue.consumer_count() > 0 {
        eprintln!(
            "noop_sink: {work_queue} already has {} consumer(s); they will share the requests",
            queue.consumer_count()
        );
    }
    if queue.message_count() > 0 {
        eprintln!(
            "noop_sink: {work_queue} holds {} old requests; they are answered first",
            queue.message_count()
        );
    }
    let publish_channel = connection.create_channel().await?;
    let consume_channel = connection.create_channel().await?;
    // no_ack: the broker pushes without waiting for acks, so no prefetch applies.
    let mut consumer = consume_channel
        .basic_consume(
            work_queue.as_str().into(),
            "noop-sink".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    println!(
        "noop_sink: answering {work_queue} on {}; Ctrl-C or SIGTERM to stop",
        settings.amqp.redacted_url()
    );

    let mut counts = Counts::default();
    let mut publishing = FuturesUnordered::new();
    let mut report = tokio::time::interval(REPORT_EVERY);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = 0;
    let signal = warren_runtime::shutdown::wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            Some(published) = publishing.next(), if !publishing.is_empty() => {
                let published: Result<(), lapin::Error> = published;
                match published {
                    Ok(()) => counts.answered += 1,
                    Err(error) => {
                        // A failed publish means the channel or the connection is gone.
                        counts.publish_errors += 1;
                        eprintln!("noop_sink: a reply could not be published ({error})");
                        break;
                    }
                }
            }
            delivery = consumer.next(), if publishing.len() < MAX_PUBLISHING => match delivery {
                Some(Ok(delivery)) => match reply_to(template, delivery) {
                    Ok(reply) => publishing.push(publish(&publish_channel, reply)),
                    Err(Unanswered::NoReplyQueue) => counts.no_reply_queue += 1,
                    Err(Unanswered::Unreadable) => counts.unreadable += 1,
                },
                Some(Err(error)) => {
                    eprintln!("noop_sink: the consumer failed ({error})");
                    break;
                }
                None => {
                    eprintln!("noop_sink: the broker cancelled the consumer");
                    break;
                }
            },
            _ = report.tick() => {
                if counts.answered != reported {
                    let rate = (counts.answered - reported) as f64 / REPORT_EVERY.as_secs_f64();
                    eprintln!("noop_sink: answered {} ({rate:.0}/s)", counts.answered);
                    reported = counts.answered;
                }
            }
        }
    }
    // Replies already handed to lapin are written before the connection closes.
    let drain = async {
        while let Some(published) = publishing.next().await {
            match published {
                Ok(()) => counts.answered += 1,
                Err(_) => counts.publish_errors += 1,
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        eprintln!("noop_sink: gave up waiting for the last replies to be written");
    }
    Ok(counts)
}
