//! One session of a worker: a connection, its channels and its consumer, from set-up to
//! shutdown or the first broker error.
//!
//! Deliveries are processed concurrently inside the session's own task (no task per
//! message; [`crate::message`] is the per-message path); the broker's prefetch bounds how
//! many are in flight. A session ends on shutdown (after draining) or on any broker
//! error; the caller then builds a new one, so no delivery tag of a dead channel is ever
//! acked.

use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;
use warren_messages::Limits;

use crate::auth::Verifier;
use crate::config::Settings;
use crate::connection::{
    CLOSE_TIMEOUT, close_channel, close_connection, connect, within_setup_timeout,
};
use crate::error::RuntimeError;
use crate::handler::{Handler, Manifest};
use crate::message::Processor;
use crate::publisher::Publisher;
use crate::topology::{check_exchanges, declare_exchanges, declare_worker_queues, work_queue_name};

/// What a worker needs for its whole life, across sessions.
pub(crate) struct WorkerCore<H> {
    pub(crate) handler: H,
    pub(crate) manifest: Manifest,
    pub(crate) settings: Settings,
    pub(crate) limits: Limits,
    /// The CloudEvents `source` of everything this worker publishes.
    pub(crate) source: String,
    /// `warren.<worker>.retry.`: the names of this worker's delay queues start so.
    pub(crate) retry_queue_prefix: String,
    /// The verifier of every message's token, when `auth.required`; `None` costs the
    /// per-message path one branch.
    pub(crate) auth: Option<Verifier>,
}

/// Runs one session until shutdown (`Ok`) or a broker error (`Err`).
pub(crate) async fn run_session<H: Handler>(
    core: &WorkerCore<H>,
    shutdown: &CancellationToken,
) -> Result<(), RuntimeError> {
    let name = core.manifest.name;
    let connection =
        within_setup_timeout(connect(&core.settings.amqp, &format!("warren-{name}"))).await?;
    let result = consume(core, shutdown, &connection).await;
    if result.is_err() {
        // The broker requeues whatever is unacked.
        close_connection(&connection, "session failed").await;
    }
    result
}

/// How often an idle session checks that the broker still delivers to it.
const STALL_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Consecutive checks that found this idle session's consumer stalled: messages ready
/// in the work queue while it, with room for more, received nothing, or the broker
/// counting no consumer on the queue it consumes from (what a quorum queue without a
/// serving leader reports: 0 messages and 0 consumers). The session is then rebuilt.
const STALL_CHECKS: u32 = 2;

/// Whether `queue`, by a passive declare, looks stalled to a session consuming from it
/// that received nothing since the last check.
async fn looks_stalled(channel: &lapin::Channel, queue: &str) -> Result<bool, RuntimeError> {
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..lapin::options::QueueDeclareOptions::default()
    };
    // A queue that is not serving (e.g. still recovering after a broker restart) may
    // not answer: that is a stall too.
    let declare = channel.queue_declare(queue.into(), passive, FieldTable::default());
    let state = tokio::time::timeout(STALL_CHECK_INTERVAL, declare)
        .await
        .map_err(|_elapsed| RuntimeError::ConsumerStalled(queue.to_owned()))??;
    Ok(state.message_count() > 0 || state.consumer_count() == 0)
}

/// What a session consumes and publishes with.
struct SessionSetUp {
    publisher: Publisher,
    consume_channel: lapin::Channel,
    consumer: lapin::Consumer,
    queue: String,
    consumer_tag: String,
}

/// Opens the channels, declares the topology and starts consuming.
async fn set_up<H: Handler>(
    core: &WorkerCore<H>,
    connection: &lapin::Connection,
) -> Result<SessionSetUp, RuntimeError> {
    let name = core.manifest.name;
    let publisher = Publisher::open(connection, core.settings.amqp.confirm_timeout()).await?;
    if core.settings.amqp.declare_exchanges {
        declare_exchanges(connection).await?;
    } else {
        check_exchanges(connection).await?;
    }
    declare_worker_queues(
        publisher.channel(),
        &core.manifest,
        core.settings.worker.delivery_limit,
        &core.settings.retry.delays(),
    )
    .await?;

    let consume_channel = connection.create_channel().await?;
    consume_channel
        .basic_qos(core.settings.worker.prefetch, BasicQosOptions::default())
        .await?;
    let queue = work_queue_name(name);
    let consumer_tag = format!(
        "warren-{name}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    );
    let consumer = consume_channel
        .basic_consume(
            queue.as_str().into(),
            consumer_tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(SessionSetUp {
        publisher,
        consume_channel,
        consumer,
        queue,
        consumer_tag,
    })
}

async fn consume<H: Handler>(
    core: &WorkerCore<H>,
    shutdown: &CancellationToken,
    connection: &lapin::Connection,
) -> Result<(), RuntimeError> {
    let SessionSetUp {
        publisher,
        consume_channel,
        mut consumer,
        queue,
        consumer_tag,
    } = within_setup_timeout(set_up(core, connection)).await?;
    tracing::info!(
        queue = %queue,
        prefetch = core.settings.worker.prefetch,
        broker = %core.settings.amqp.redacted_url(),
        "ready: consuming"
    );

    let processor = Processor {
        core,
        publisher: &publisher,
        frame_max: usize::try_from(connection.configuration().frame_max()).unwrap_or(usize::MAX),
    };
    let events = connection.events_listener();
    tokio::pin!(events);
    let mut in_flight = FuturesUnordered::new();
    let mut draining = false;
    let mut consumer_open = true;
    let grace = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace);
    let mut stall_check = tokio::time::interval_at(
        tokio::time::Instant::now() + STALL_CHECK_INTERVAL,
        STALL_CHECK_INTERVAL,
    );
    stall_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut delivered_since_check = false;
    let mut stalled_checks = 0u32;
    loop {
        tokio::select! {
            biased;
            Some(result) = in_flight.next(), if !in_flight.is_empty() => result?,
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                grace.as_mut().reset(tokio::time::Instant::now() + core.settings.worker.shutdown_grace());
                tracing::info!(in_flight = in_flight.len(), "shutting down: draining in-flight work");
                let cancel = consume_channel
                    .basic_cancel(consumer_tag.as_str().into(), BasicCancelOptions::default());
                // Unanswered, stop reading deliveries anyway: what arrives after is
                // unacked when the channel closes, and the broker redelivers it.
                match tokio::time::timeout(CLOSE_TIMEOUT, cancel).await {
                    Ok(cancelled) => cancelled?,
                    Err(_unanswered) => consumer_open = false,
                }
            }
            () = &mut grace, if draining => {
                tracing::warn!(
                    in_flight = in_flight.len(),
                    "shutdown grace period over; unacknowledged messages go back to the queue"
                );
                break;
            }
            Some(event) = events.next() => log_connection_event(event, &core.settings),
            _ = stall_check.tick(), if !draining => {
                let idle = !delivered_since_check && in_flight.is_empty();
                delivered_since_check = false;
                stalled_checks = if idle && looks_stalled(publisher.channel(), &queue).await? {
                    stalled_checks + 1
                } else {
                    0
                };
                if stalled_checks >= STALL_CHECKS {
                    return Err(RuntimeError::ConsumerStalled(queue));
                }
            }
            next = consumer.next(), if consumer_open => match next {
                Some(Ok(delivery)) => {
                    delivered_since_check = true;
                    in_flight.push(processor.process(delivery));
                }
                Some(Err(error)) => return Err(error.into()),
                None if draining => consumer_open = false,
                None => return Err(RuntimeError::ConsumerCancelled(queue)),
            },
        }
        if draining && !consumer_open && in_flight.is_empty() {
            break;
        }
    }
    drop(in_flight);
    // Closing is best effort: the broker requeues whatever is still unacked.
    close_channel(&consume_channel, "shutdown").await;
    close_channel(publisher.channel(), "shutdown").await;
    close_connection(connection, "shutdown").await;
    tracing::info!("stopped");
    Ok(())
}

/// Logs what the broker says about the connection. A blocked connection (a memory or
/// disk alarm) holds publishes back: confirms then wait, up to `amqp.confirm_timeout_ms`,
/// after which the session fails and is rebuilt, with nothing acked that was not done.
fn log_connection_event(event: lapin::Event, settings: &Settings) {
    match event {
        lapin::Event::ConnectionBlocked(reason) => tracing::warn!(
            %reason,
            confirm_timeout_ms = settings.amqp.confirm_timeout_ms,
            "the broker blocked publishing; publishes wait"
        ),
        lapin::Event::ConnectionUnblocked => tracing::info!("the broker unblocked publishing"),
        lapin::Event::Error(error) => tracing::warn!(%error, "connection error"),
        _ => {}
    }
}
