//! A hand-written lapin RPC, the bar `warren load` + `warren-echo` are measured against
//! by the `end_to_end` benchmark: a worker and an originator, each run as its own
//! process, doing the same durable work as warren's echo path with nothing of warren.
//!
//! ```text
//! raw_rpc worker     [--replies transient|kept|durable] [--queue Q] [--exchange-kind direct|topic] [--prefetch N]
//! raw_rpc originator [--replies transient|kept|durable] [--queue Q] [--exchange-kind direct|topic]
//!                    [--messages N] [--inflight W] [--payload-bytes B] [--ack-every K]
//! both:              [--properties plain|mirror|header|warren] [--reply-exchange default|direct]
//!                    [--queue-arguments plain|limit|warren] [--reply-queue-version 1|2]
//! ```
//!
//! Each of warren's wire choices is a flag of its own, so its cost can be measured one
//! change at a time: `--exchange-kind topic` (warren's `warren.commands`),
//! `--payload-bytes 741` (the size of warren's envelope around a 256-byte payload),
//! `--properties warren` (the AMQP properties and header warren's publisher sets),
//! `--reply-exchange direct` (replies through an exchange like `warren.replies`),
//! `--queue-arguments warren` (a work queue declared with warren's delivery limit and
//! at-least-once dead-lettering), and
//! `--replies durable` with `--ack-every`.
//!
//! Both sides: requests are persistent, published with a confirm each, `mandatory`, to a
//! durable exchange (`bench.rpc.<kind>`) bound to a durable quorum queue; the worker
//! consumes with the prefetch, publishes the body back to the request's `reply_to`
//! through the default exchange with a confirm, and acks the request once the reply is
//! confirmed. How replies travel is the choice of `--replies`:
//!
//! - `transient`, the common hand-written pattern: the originator's reply queue is
//!   server-named and exclusive to its connection, replies are transient (delivery mode
//!   1) and consumed without acks.
//! - `kept`: a named durable reply queue that outlives the connection, as warren's, but
//!   transient replies consumed without acks.
//! - `durable`, warren's reply durability: a named durable reply queue that outlives the
//!   connection (it expires after a minute without a consumer), persistent replies, each
//!   acked by the originator (or every `--ack-every` replies, with `multiple`).
//!
//! The worker prints `ready` once it consumes and runs until SIGTERM or Ctrl-C. The
//! originator runs a closed loop of `--inflight` requests, `--messages` in all, and
//! prints one JSON object in the shape of `warren load --json`'s: `throughput_per_s`,
//! `latency_ms` (`p50`, `p90`, `p99`, `p999`), `outcomes`. The broker URL comes from
//! `WARREN_BENCH_URL` (default: vhost `warren-bench` on the local broker).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::signal::unix::{SignalKind, signal};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How long a durable reply queue lives without a consumer.
const REPLY_QUEUE_EXPIRY_MS: i64 = 60_000;

/// How replies travel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replies {
    /// Into a server-named queue exclusive to the originator's connection, transient,
    /// consumed without acks: the common hand-written pattern.
    Transient,
    /// Into a named durable queue that outlives the connection, transient, consumed
    /// without acks.
    Kept,
    /// Into a named durable queue, persistent, each acked: warren's reply durability.
    Durable,
}

/// Which of warren's AMQP properties messages carry besides the RPC's own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Properties {
    /// None.
    Plain,
    /// The properties that mirror envelope attributes.
    Mirror,
    /// The `traceparent` header.
    Header,
    /// Both.
    Warren,
}

/// The work queue's arguments besides its type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum QueueArguments {
    /// None.
    Plain,
    /// A delivery limit only (dropped past it).
    Limit,
    /// warren's: a delivery limit, at-least-once dead-lettering and `reject-publish`.
    Warren,
}

/// What both modes are told.
struct Options {
    replies: Replies,
    queue: String,
    exchange_kind: ExchangeKind,
    prefetch: u16,
    messages: usize,
    in_flight: usize,
    payload_bytes: usize,
    ack_every: usize,
    properties: Properties,
    reply_exchange: bool,
    queue_arguments: QueueArguments,
    reply_queue_version: Option<i64>,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> BenchResult<Options> {
        let mut options = Options {
            replies: Replies::Transient,
            queue: "bench.rpc.work".to_owned(),
            exchange_kind: ExchangeKind::Direct,
            prefetch: 500,
            messages: 30_000,
            in_flight: 250,
            payload_bytes: 256,
            ack_every: 1,
            properties: Properties::Plain,
            reply_exchange: false,
            queue_arguments: QueueArguments::Plain,
            reply_queue_version: None,
        };
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--replies" => {
                    options.replies = pick(
                        &flag,
                        &value,
                        &[
                            ("transient", Replies::Transient),
                            ("kept", Replies::Kept),
                            ("durable", Replies::Durable),
                        ],
                    )?;
                }
                "--queue" => options.queue = value,
                "--exchange-kind" => {
                    options.exchange_kind = pick(
                        &flag,
                        &value,
                        &[
                            ("direct", ExchangeKind::Direct),
                            ("topic", ExchangeKind::Topic),
                        ],
                    )?;
                }
                "--prefetch" => options.prefetch = value.parse()?,
                "--messages" => options.messages = value.parse()?,
                "--inflight" => options.in_flight = value.parse::<usize>()?.max(1),
                "--payload-bytes" => options.payload_bytes = value.parse()?,
                "--ack-every" => options.ack_every = value.parse::<usize>()?.max(1),
                "--properties" => {
                    options.properties = pick(
                        &flag,
                        &value,
                        &[
                            ("plain", Properties::Plain),
                            ("mirror", Properties::Mirror),
                            ("header", Properties::Header),
                            ("warren", Properties::Warren),
                        ],
                    )?;
                }
                "--queue-arguments" => {
                    options.queue_arguments = pick(
                        &flag,
                        &value,
                        &[
                            ("plain", QueueArguments::Plain),
                            ("limit", QueueArguments::Limit),
                            ("warren", QueueArguments::Warren),
                        ],
                    )?;
                }
                "--reply-queue-version" => options.reply_queue_version = Some(value.parse()?),
                "--reply-exchange" => {
                    options.reply_exchange =
                        pick(&flag, &value, &[("default", false), ("direct", true)])?;
                }
                other => return Err(format!("unknown option {other}").into()),
            }
        }
        Ok(options)
    }

    fn exchange(&self) -> String {
        match self.exchange_kind {
            ExchangeKind::Topic => "bench.rpc.topic".to_owned(),
            _ => "bench.rpc.direct".to_owned(),
        }
    }

    /// The routing key requests are published and bound with.
    fn routing_key(&self) -> &str {
        &self.queue
    }

    /// The exchange replies are published to: the default one, or `bench.rpc.replies`
    /// (direct, each reply queue bound under its name, as warren's `warren.replies`).
    fn reply_exchange(&self) -> &'static str {
        if self.reply_exchange {
            REPLY_EXCHANGE
        } else {
            ""
        }
    }

    /// `properties` with, under `--properties warren`, what warren's publisher adds to
    /// every message: a CloudEvents content type, `message_id`, `type`, `app_id`,
    /// `timestamp` (`mirror`) and a `traceparent` header (`header`), each as long as
    /// warren's.
    fn dress(&self, mut properties: BasicProperties, n: u64) -> BasicProperties {
        if matches!(self.properties, Properties::Mirror | Properties::Warren) {
            properties = properties
                .with_content_type("application/cloudevents+json".into())
                .with_message_id(format!("{n:08x}-0000-7000-8000-000000000000").into())
                .with_type("dev.warren.echo.v1".into())
                .with_app_id("/warren/raw-rpc".into())
                .with_timestamp(1_764_489_600);
        }
        if matches!(self.properties, Properties::Header | Properties::Warren) {
            let mut headers = FieldTable::default();
            headers.insert(
                "traceparent".into(),
                AMQPValue::LongString(LongString::from(format!("00-{n:032x}-{n:016x}-01"))),
            );
            properties = properties.with_headers(headers);
        }
        properties
    }
}

const REPLY_EXCHANGE: &str = "bench.rpc.replies";

/// The choice named `value` among `choices`, for the option `flag`.
fn pick<T: Clone>(flag: &str, value: &str, choices: &[(&str, T)]) -> BenchResult<T> {
    match choices.iter().find(|(name, _)| *name == value) {
        Some((_, choice)) => Ok(choice.clone()),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Err(format!("{flag} {value}: not {}", names.join("|")).into())
        }
    }
}

/// Declares the exchange and the work queue, bound; idempotent.
async fn declare_work(channel: &Channel, options: &Options) -> BenchResult<()> {
    let exchange = options.exchange();
    channel
        .exchange_declare(
            exchange.as_str().into(),
            options.exchange_kind.clone(),
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            REPLY_EXCHANGE.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let text = |value: &str| AMQPValue::LongString(LongString::from(value));
    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), text("quorum"));
    if options.queue_arguments != QueueArguments::Plain {
        quorum.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(20));
    }
    if options.queue_arguments == QueueArguments::Warren {
        // What warren's work queues add to the limit: at-least-once dead-lettering (to
        // an exchange of the bench's own) and the overflow rule it needs.
        quorum.insert("x-dead-letter-exchange".into(), text("bench.rpc.dlx"));
        quorum.insert("x-dead-letter-routing-key".into(), text(&options.queue));
        quorum.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        quorum.insert("x-overflow".into(), text("reject-publish"));
    }
    channel
        .queue_declare(
            options.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            quorum,
        )
        .await?;
    channel
        .queue_bind(
            options.queue.as_str().into(),
            exchange.as_str().into(),
            options.routing_key().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

async fn connect() -> BenchResult<Connection> {
    let url = std::env::var("WARREN_BENCH_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/warren-bench".to_owned());
    Ok(Connection::connect(&url, ConnectionProperties::default()).await?)
}

/// A publishing channel with confirms, and a consuming one with the prefetch, after
/// declaring the work queue.
async fn channels(connection: &Connection, options: &Options) -> BenchResult<(Channel, Channel)> {
    let publish = connection.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let consume = connection.create_channel().await?;
    declare_work(&consume, options).await?;
    consume
        .basic_qos(options.prefetch, BasicQosOptions::default())
        .await?;
    Ok((publish, consume))
}

/// Consume, publish the body back with a confirm, ack the request after it.
async fn worker(options: Options) -> BenchResult<()> {
    let connection = connect().await?;
    let (publish, consume) = channels(&connection, &options).await?;
    let mut consumer = consume
        .basic_consume(
            options.queue.as_str().into(),
            "raw-rpc-worker".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    println!("ready");
    let delivery_mode = if options.replies == Replies::Durable {
        2
    } else {
        1
    };
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut in_flight = FuturesUnordered::new();
    let mut replied = 0u64;
    loop {
        tokio::select! {
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                let done: BenchResult<()> = done;
                done?;
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            delivery = consumer.next() => {
                let Some(delivery) = delivery else { break };
                let delivery = delivery?;
                let Some(reply_to) = delivery.properties.reply_to().clone() else {
                    delivery.acker.ack(BasicAckOptions::default()).await?;
                    continue;
                };
                let mut properties = BasicProperties::default().with_delivery_mode(delivery_mode);
                if let Some(correlation_id) = delivery.properties.correlation_id().clone() {
                    properties = properties.with_correlation_id(correlation_id);
                }
                replied += 1;
                let properties = options.dress(properties, replied);
                let confirm = publish
                    .basic_publish(
                        options.reply_exchange().into(),
                        reply_to,
                        BasicPublishOptions { mandatory: true, immediate: false },
                        &delivery.data,
                        properties,
                    )
                    .await?;
                in_flight.push(async move {
                    confirm.await?;
                    delivery.acker.ack(BasicAckOptions::default()).await?;
                    Ok(())
                });
            }
        }
    }
    let _ = connection.close(200, "stopped".into()).await;
    Ok(())
}

/// A closed loop of `in_flight` requests; prints the summary as JSON.
async fn originator(options: Options) -> BenchResult<()> {
    let connection = connect().await?;
    let (publish, consume) = channels(&connection, &options).await?;
    let reply_queue = if options.replies != Replies::Transient {
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(REPLY_QUEUE_EXPIRY_MS),
        );
        if let Some(version) = options.reply_queue_version {
            arguments.insert("x-queue-version".into(), AMQPValue::LongLongInt(version));
        }
        let name = format!("bench.rpc.reply.{}", std::process::id());
        consume
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await?
    } else {
        consume
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?
    };
    let reply_queue = reply_queue.name().clone();
    if options.reply_exchange {
        consume
            .queue_bind(
                reply_queue.clone(),
                REPLY_EXCHANGE.into(),
                reply_queue.clone(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    let mut replies = consume
        .basic_consume(
            reply_queue.clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: options.replies != Replies::Durable,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;

    let body = serde_json::to_vec(&serde_json::json!({
        "pad": "x".repeat(options.payload_bytes.saturating_sub(10)),
    }))?;
    let exchange = options.exchange();
    let mut outstanding: HashMap<u64, Instant> = HashMap::with_capacity(options.in_flight * 2);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut confirms = FuturesUnordered::new();
    let (mut sent, mut received, mut unacked) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    let mut last = started;
    while received < options.messages {
        while sent < options.messages && outstanding.len() < options.in_flight {
            let correlation_id = sent as u64;
            let properties = options.dress(
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into())
                    .with_correlation_id(correlation_id.to_string().into())
                    .with_reply_to(reply_queue.clone()),
                correlation_id,
            );
            outstanding.insert(correlation_id, Instant::now());
            confirms.push(
                publish
                    .basic_publish(
                        exchange.as_str().into(),
                        options.routing_key().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            immediate: false,
                        },
                        &body,
                        properties,
                    )
                    .await?,
            );
            sent += 1;
        }
        tokio::select! {
            Some(confirmation) = confirms.next(), if !confirms.is_empty() => {
                if !confirmation?.is_ack() {
                    return Err("a request was nacked".into());
                }
            }
            reply = replies.next() => {
                let reply = reply.ok_or("the reply consumer ended")??;
                let correlation_id = reply
                    .properties
                    .correlation_id()
                    .as_ref()
                    .and_then(|id| id.as_str().parse::<u64>().ok());
                if let Some(sent_at) = correlation_id.and_then(|id| outstanding.remove(&id)) {
                    last = Instant::now();
                    let micros = u64::try_from((last - sent_at).as_micros()).unwrap_or(u64::MAX);
                    latency.saturating_record(micros);
                    received += 1;
                }
                if options.replies == Replies::Durable {
                    unacked += 1;
                    if unacked >= options.ack_every || received == options.messages {
                        reply.acker.ack(BasicAckOptions { multiple: unacked > 1 }).await?;
                        unacked = 0;
                    }
                }
            }
        }
    }
    let elapsed = (last - started).as_secs_f64();
    let quantile = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "throughput_per_s": received as f64 / elapsed,
            "latency_ms": {
                "p50": quantile(0.5),
                "p90": quantile(0.9),
                "p99": quantile(0.99),
                "p999": quantile(0.999),
            },
            "outcomes": { "result": received, "fault": 0, "timeout": 0 },
        })
    );
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let result = Options::parse(args).and_then(|options| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        match mode.as_str() {
            "worker" => runtime.block_on(worker(options)),
            "originator" => runtime.block_on(originator(options)),
            other => Err(format!("unknown mode {other:?}: worker or originator").into()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("raw_rpc {mode}: {error}");
            ExitCode::FAILURE
        }
    }
}
