//! warren's echo path against a raw lapin program doing the same AMQP work, in one
//! process run, interleaved, so the figure is a ratio measured under the same
//! conditions.
//!
//! Both sides: a durable quorum work queue, persistent messages, a direct exchange in
//! (as warren's `warren.commands`), a direct exchange out to a reply queue, publisher confirms on every publish, manual
//! acks after the reply is confirmed, the same prefetch, the same in-flight window and
//! the same payload. The load driver is the same code for both (a closed loop of
//! `--inflight` requests, correlated by the AMQP `correlation_id`); only the worker
//! differs: raw lapin with none of warren's features, or warren's runtime running the
//! echo handler (decode, validate, span, child envelope, confirms, ack).
//!
//! Run: `cargo bench -p warren-bench --bench echo_vs_lapin -- [messages] [rounds] [in-flight]`
//! (defaults 20000, 5, 250; with an in-flight window of 1 the p50 figures are the
//! unloaded round trip)
//! against the broker at `WARREN_BENCH_URL` (default: vhost `warren-bench` on the local
//! broker, created with `rabbitmqctl add_vhost warren-bench` and
//! `rabbitmqctl set_permissions -p warren-bench guest ".*" ".*" ".*"`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio_util::sync::CancellationToken;
use warren_messages::{Attributes, Envelope, Payload};

const PREFETCH: u16 = 500;
const IN_FLIGHT: usize = 250;
const PAYLOAD_BYTES: usize = 256;

const RAW_COMMANDS: &str = "bench.raw.requests";
const RAW_REPLIES: &str = "bench.raw.replies";
const RAW_QUEUE: &str = "bench.raw.work";
const RAW_ROUTING_KEY: &str = "bench.raw.echo";

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn quorum() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    arguments
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// The raw lapin worker: consume, publish the body back with a confirm, ack after it.
async fn raw_worker(connection: Connection, shutdown: CancellationToken) -> BenchResult<()> {
    let publish = connection.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let consume = connection.create_channel().await?;
    consume
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let mut consumer = consume
        .basic_consume(
            RAW_QUEUE.into(),
            "raw-worker".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                let done: BenchResult<()> = done;
                done?;
            }
            () = shutdown.cancelled() => return Ok(()),
            delivery = consumer.next() => {
                let Some(delivery) = delivery else { return Ok(()) };
                let delivery = delivery?;
                let reply_to = delivery.properties.reply_to().clone().unwrap_or_default();
                let properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_correlation_id(
                        delivery.properties.correlation_id().clone().unwrap_or_default(),
                    );
                let confirm = publish
                    .basic_publish(
                        RAW_REPLIES.into(),
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
}

/// What one driven run measured.
struct Run {
    /// Round trips per second.
    rate: f64,
    /// Publish-to-reply latency, in microseconds.
    latency: Histogram<u64>,
}

impl Run {
    fn p50_ms(&self) -> f64 {
        self.latency.value_at_quantile(0.5) as f64 / 1000.0
    }

    fn p99_ms(&self) -> f64 {
        self.latency.value_at_quantile(0.99) as f64 / 1000.0
    }
}

/// The load driver: a closed loop of `in_flight` requests, `messages` in all.
/// `make_body()` gives the next request's body and correlation id.
async fn drive(
    connection: &Connection,
    exchange: &str,
    routing_key: &str,
    reply_queue: &str,
    (messages, in_flight): (usize, usize),
    make_body: &(dyn Fn() -> (Vec<u8>, String) + Sync),
) -> BenchResult<Run> {
    let publish = connection.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let consume = connection.create_channel().await?;
    consume
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let mut replies = consume
        .basic_consume(
            reply_queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let mut outstanding: HashMap<String, Instant> = HashMap::with_capacity(in_flight * 2);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut confirms = FuturesUnordered::new();
    let mut sent = 0usize;
    let mut received = 0usize;
    let started = Instant::now();
    let send_one = |publish: &Channel| {
        let (body, correlation_id) = make_body();
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/cloudevents+json".into())
            .with_correlation_id(correlation_id.as_str().into())
            .with_reply_to(reply_queue.into());
        let publish = publish.clone();
        let exchange = exchange.to_owned();
        let routing_key = routing_key.to_owned();
        async move {
            let confirm = publish
                .basic_publish(
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        immediate: false,
                    },
                    &body,
                    properties,
                )
                .await?;
            Ok::<_, lapin::Error>((correlation_id, confirm))
        }
    };
    while received < messages {
        while sent < messages && outstanding.len() < in_flight {
            let sent_at = Instant::now();
            let (correlation_id, confirm) = send_one(&publish).await?;
            outstanding.insert(correlation_id, sent_at);
            confirms.push(confirm);
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
                    .map(|id| id.as_str().to_owned())
                    .unwrap_or_default();
                if let Some(sent_at) = outstanding.remove(&correlation_id) {
                    let micros = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
                    latency.saturating_record(micros);
                    received += 1;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    warren_runtime::close_channel(&publish, "done").await;
    warren_runtime::close_channel(&consume, "done").await;
    Ok(Run {
        rate: messages as f64 / elapsed.as_secs_f64(),
        latency,
    })
}

async fn declare_raw(channel: &Channel, reply_queue: &str) -> BenchResult<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            RAW_COMMANDS.into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            RAW_REPLIES.into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(RAW_QUEUE.into(), durable_queue(), quorum())
        .await?;
    channel
        .queue_bind(
            RAW_QUEUE.into(),
            RAW_COMMANDS.into(),
            RAW_ROUTING_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    declare_reply_queue(channel, RAW_REPLIES, reply_queue).await
}

async fn declare_reply_queue(channel: &Channel, exchange: &str, name: &str) -> BenchResult<()> {
    channel
        .queue_declare(name.into(), durable_queue(), FieldTable::default())
        .await?;
    channel
        .queue_bind(
            name.into(),
            exchange.into(),
            name.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_purge(name.into(), QueuePurgeOptions::default())
        .await?;
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn run(url: String, messages: usize, rounds: usize, in_flight: usize) -> BenchResult<()> {
    let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
    let setup = connection.create_channel().await?;
    let raw_reply_queue = "bench.raw.reply";
    let warren_reply_queue = "warren.reply.bench";
    declare_raw(&setup, raw_reply_queue).await?;

    let shutdown = CancellationToken::new();
    let raw_connection = Connection::connect(&url, ConnectionProperties::default()).await?;
    let raw = tokio::spawn(raw_worker(raw_connection, shutdown.clone()));

    let mut settings = warren_runtime::Settings::load(&warren_runtime::Overrides {
        amqp_url: Some(url.clone()),
        prefetch: Some(PREFETCH),
    })?;
    settings.log.filter = "warn".into();
    let warren = tokio::spawn(warren_runtime::run_worker(
        warren_echo::EchoHandler,
        warren_echo::MANIFEST,
        settings,
        shutdown.clone(),
    ));
    // The worker declares its topology; wait until its queue has a consumer.
    let echo_queue = warren_runtime::topology::work_queue_name(warren_echo::MANIFEST.name);
    loop {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let probe = connection.create_channel().await?;
        if let Ok(queue) = probe
            .queue_declare(echo_queue.as_str().into(), passive, FieldTable::default())
            .await
            && queue.consumer_count() > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    declare_reply_queue(
        &setup,
        warren_runtime::topology::REPLIES_EXCHANGE,
        warren_reply_queue,
    )
    .await?;

    let payload = serde_json::json!({ "pad": "x".repeat(PAYLOAD_BYTES - 10) });
    let payload: warren_messages::EchoRequest = serde_json::from_value(payload)?;
    let raw_body = serde_json::to_vec(&payload)?;
    let warren_body = || {
        let mut attributes = Attributes::request::<warren_messages::EchoRequest>("/bench");
        attributes.replyto = Some(warren_reply_queue.to_owned());
        let correlation_id = attributes.id.clone();
        let envelope = Envelope {
            attributes,
            data: &payload,
        };
        (envelope.to_json_vec().unwrap_or_default(), correlation_id)
    };
    let counter = std::sync::atomic::AtomicU64::new(0);
    let raw_message = || {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (raw_body.clone(), n.to_string())
    };

    println!(
        "echo round trips: {messages} messages a round, {rounds} rounds each, interleaved; \
         prefetch {PREFETCH}, {in_flight} in flight, {PAYLOAD_BYTES}-byte payload"
    );
    // One short warm-up of each.
    drive(
        &connection,
        RAW_COMMANDS,
        RAW_ROUTING_KEY,
        raw_reply_queue,
        (messages / 10 + 1, in_flight),
        &raw_message,
    )
    .await?;
    drive(
        &connection,
        warren_runtime::topology::COMMANDS_EXCHANGE,
        warren_messages::EchoRequest::TYPE,
        warren_reply_queue,
        (messages / 10 + 1, in_flight),
        &warren_body,
    )
    .await?;

    let (mut raw_rates, mut warren_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut raw_p50s, mut warren_p50s) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let raw = drive(
            &connection,
            RAW_COMMANDS,
            RAW_ROUTING_KEY,
            raw_reply_queue,
            (messages, in_flight),
            &raw_message,
        )
        .await?;
        let warren = drive(
            &connection,
            warren_runtime::topology::COMMANDS_EXCHANGE,
            warren_messages::EchoRequest::TYPE,
            warren_reply_queue,
            (messages, in_flight),
            &warren_body,
        )
        .await?;
        println!(
            "round {round}: raw lapin {:>8.0}/s (p50 {:.2} ms, p99 {:.2} ms)   \
             warren {:>8.0}/s (p50 {:.2} ms, p99 {:.2} ms)   ratio {:.3}",
            raw.rate,
            raw.p50_ms(),
            raw.p99_ms(),
            warren.rate,
            warren.p50_ms(),
            warren.p99_ms(),
            warren.rate / raw.rate
        );
        raw_rates.push(raw.rate);
        warren_rates.push(warren.rate);
        ratios.push(warren.rate / raw.rate);
        raw_p50s.push(raw.p50_ms());
        warren_p50s.push(warren.p50_ms());
    }
    let spread = |values: &[f64]| {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(0.0, f64::max);
        (min, max)
    };
    let (ratio_min, ratio_max) = spread(&ratios);
    println!(
        "median: raw lapin {:.0}/s, warren {:.0}/s, ratio {:.3} (min {:.3}, max {:.3})",
        median(&mut raw_rates),
        median(&mut warren_rates),
        median(&mut ratios.clone()),
        ratio_min,
        ratio_max
    );
    println!(
        "median p50 round trip: raw lapin {:.2} ms, warren {:.2} ms",
        median(&mut raw_p50s),
        median(&mut warren_p50s)
    );
    shutdown.cancel();
    let _ = raw.await;
    let _ = warren.await;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let mut args = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"));
    let messages = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rounds = args.next().and_then(|a| a.parse().ok()).unwrap_or(5).max(1);
    let in_flight = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(IN_FLIGHT)
        .max(1);
    let url = std::env::var("WARREN_BENCH_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/warren-bench".to_owned());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start tokio: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(url, messages, rounds, in_flight)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("benchmark failed: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
