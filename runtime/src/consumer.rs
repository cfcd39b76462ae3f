//! One session of a worker: a connection, its channels and consumer, and the per-message
//! path (decode, handle, publish outputs, wait for confirms, ack).
//!
//! Deliveries are processed concurrently inside the session's own task (no task per
//! message); the broker's prefetch bounds how many are in flight. A session ends on
//! shutdown (after draining) or on any broker error; the caller then builds a new one,
//! so no delivery tag of a dead channel is ever acked.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use jiff::Timestamp;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use warren_messages::{Attributes, DecodeError, Envelope, Fault, Limits, Payload, fault_code};

use crate::config::Settings;
use crate::connection::{
    CLOSE_TIMEOUT, close_channel, close_connection, connect, within_setup_timeout,
};
use crate::delivery::{ack_within, decode_delivery, salvage};
use crate::error::RuntimeError;
use crate::handler::{Handler, HandlerError, Incoming, Manifest, Route};
use crate::headers::{
    DeadLetterFacts, X_DELIVERY_COUNT, dead_letter_properties, deaths, header_count,
    is_death_header,
};
use crate::publisher::{Delivered, PendingConfirm, Publisher, properties_of, truncate};
use crate::topology::{
    COMMANDS_EXCHANGE, DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, REPLIES_EXCHANGE, RETRIES_EXCHANGE,
    declare_exchanges, declare_worker_queues, is_valid_reply_queue, retry_queue_name,
    work_queue_name,
};

/// The most of an error's text kept in a dead-letter header or a fault.
const MAX_ERROR_TEXT: usize = 2048;

/// The most of a fault code kept: codes are short snake_case words.
const MAX_CODE_TEXT: usize = 64;

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
}

/// Why a message is not processed, and what the originator is told.
struct Rejection {
    reason: String,
    error: String,
    fault_code: String,
    stage: &'static str,
    retryable: bool,
    details: serde_json::Value,
    dead_letter: bool,
}

impl Rejection {
    fn bad_input(error: &DecodeError) -> Self {
        Rejection {
            reason: error.reason_code().to_owned(),
            error: error.to_string(),
            fault_code: error.fault_code().to_owned(),
            stage: "decode",
            retryable: false,
            details: serde_json::Value::Null,
            dead_letter: true,
        }
    }
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
    declare_exchanges(publisher.channel()).await?;
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

    let session = Session {
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
                    in_flight.push(session.process(delivery));
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

struct Session<'s, H> {
    core: &'s WorkerCore<H>,
    publisher: &'s Publisher,
    /// The connection's largest frame: a message's properties must fit in one.
    frame_max: usize,
}

impl<H: Handler> Session<'_, H> {
    /// The per-message path. `Err` only for broker failures, which end the session
    /// with the delivery unacked (it is redelivered).
    async fn process(&self, delivery: Delivery) -> Result<(), RuntimeError> {
        let envelope =
            match decode_delivery(&delivery.data, &delivery.properties, &self.core.limits) {
                Ok(envelope) => envelope,
                Err(error) => {
                    let attributes =
                        salvage(&delivery.data, &delivery.properties, &self.core.limits);
                    tracing::warn!(
                        message_id = %attributes.id,
                        reason = error.reason_code(),
                        error = %error,
                        "bad input: dead-lettering"
                    );
                    return self
                        .reject(&delivery, &attributes, Rejection::bad_input(&error), 1)
                        .await;
                }
            };
        let attributes = &envelope.attributes;
        let span = tracing::info_span!(
            "message",
            message_id = %attributes.id,
            correlation_id = %attributes.correlation_id(),
            message_type = %attributes.message_type,
            trace_id = tracing::field::Empty,
        );
        // Formatted into the span only when it is recorded: no allocation otherwise.
        if !span.is_disabled()
            && let Some(trace) = attributes.trace_parent()
        {
            span.record(
                "trace_id",
                tracing::field::display(format_args!("{:032x}", trace.trace_id)),
            );
        }
        self.process_envelope(&delivery, &envelope)
            .instrument(span)
            .await
    }

    async fn process_envelope(
        &self,
        delivery: &Delivery,
        envelope: &Envelope<&RawValue>,
    ) -> Result<(), RuntimeError> {
        let attributes = &envelope.attributes;
        let headers = delivery.properties.headers().as_ref();
        let delivery_count = header_count(headers, X_DELIVERY_COUNT).unwrap_or(0);
        // Only a message coming back from a delay queue has trustworthy `x-death`
        // counts: nobody but the broker and workers publishes to `warren.retries`.
        let retries = if delivery.exchange.as_str() == RETRIES_EXCHANGE {
            retries_so_far(headers, &self.core.retry_queue_prefix)
        } else {
            0
        };
        let attempts = retries.saturating_add(1);
        if attributes.is_past_deadline(Timestamp::now()) {
            tracing::info!("deadline passed before the work started");
            let rejection = Rejection {
                reason: fault_code::DEADLINE_EXCEEDED.to_owned(),
                error: "the deadline passed before the work started".to_owned(),
                fault_code: fault_code::DEADLINE_EXCEEDED.to_owned(),
                stage: "accept",
                retryable: false,
                details: serde_json::Value::Null,
                dead_letter: false,
            };
            return self.reject(delivery, attributes, rejection, attempts).await;
        }
        let payload = match envelope.decode_data::<H::Input>() {
            Ok(payload) => payload,
            Err(error) => {
                tracing::warn!(reason = error.reason_code(), error = %error, "bad input: dead-lettering");
                return self
                    .reject(delivery, attributes, Rejection::bad_input(&error), attempts)
                    .await;
            }
        };
        let incoming = Incoming::new(attributes, payload, envelope.data, delivery_count);
        let outcome = AssertUnwindSafe(self.core.handler.handle(incoming))
            .catch_unwind()
            .await;
        let failure = match outcome {
            Ok(Ok(outputs)) => return self.complete(delivery, attributes, outputs, attempts).await,
            Ok(Err(HandlerError::Permanent {
                code,
                message,
                details,
            })) => {
                tracing::info!(code = %code, error = %message, "permanent failure: dead-lettering");
                let rejection = Rejection {
                    reason: code.clone().into_owned(),
                    error: message,
                    fault_code: code.into_owned(),
                    stage: "handle",
                    retryable: false,
                    details,
                    dead_letter: true,
                };
                return self.reject(delivery, attributes, rejection, attempts).await;
            }
            Ok(Err(HandlerError::Transient { message })) => {
                ("transient_failure", fault_code::INTERNAL, message, true)
            }
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                ("handler_panicked", fault_code::INTERNAL, message, false)
            }
        };
        let (reason, code, message, retryable) = failure;
        if attempts < self.core.settings.retry.max_attempts {
            let delay = self.core.settings.retry.delay_after(attempts);
            tracing::warn!(reason, error = %message, attempts, ?delay, "handler failed: retrying later");
            return self.retry_later(delivery, delay).await;
        }
        tracing::warn!(reason, error = %message, attempts, "handler failed on every attempt: dead-lettering");
        let rejection = Rejection {
            reason: reason.to_owned(),
            error: message,
            fault_code: code.to_owned(),
            stage: "handle",
            retryable,
            details: serde_json::Value::Null,
            dead_letter: true,
        };
        self.reject(delivery, attributes, rejection, attempts).await
    }

    /// Publishes the handler's outputs, waits for all their confirms, then acks.
    ///
    /// Every output is encoded before any is published: one larger than a receiver
    /// accepts (`limits.max_body_bytes`) fails the message as a whole (`output_too_large`)
    /// instead of being published and refused downstream.
    async fn complete(
        &self,
        delivery: &Delivery,
        attributes: &Attributes,
        outputs: crate::handler::Outputs,
        attempts: u32,
    ) -> Result<(), RuntimeError> {
        let mut encoded = Vec::with_capacity(outputs.items.len());
        for output in &outputs.items {
            let (exchange, routing_key) = match output.route {
                Route::Reply => match self.reply_target(attributes) {
                    Some(reply_to) => (REPLIES_EXCHANGE, reply_to),
                    None => continue,
                },
                Route::Event => (EVENTS_EXCHANGE, &*output.message_type),
                Route::Command => (COMMANDS_EXCHANGE, &*output.message_type),
            };
            let envelope = Envelope {
                attributes: attributes.child_with_id(
                    output.id.clone(),
                    &output.message_type,
                    Some(&output.schema),
                    &self.core.source,
                ),
                data: &output.data,
            };
            let body = envelope.to_json_vec()?;
            let limit = self.core.limits.max_body_bytes;
            if body.len() > limit {
                tracing::warn!(
                    output_type = %output.message_type,
                    size = body.len(),
                    limit,
                    "an output is larger than its receiver accepts: dead-lettering"
                );
                let rejection = Rejection {
                    reason: fault_code::OUTPUT_TOO_LARGE.to_owned(),
                    error: format!(
                        "the {} this message produced is {} bytes, over the limit of {limit} \
                         that its receiver accepts",
                        output.message_type,
                        body.len()
                    ),
                    fault_code: fault_code::OUTPUT_TOO_LARGE.to_owned(),
                    stage: "publish",
                    retryable: false,
                    details: serde_json::Value::Null,
                    dead_letter: true,
                };
                return self.reject(delivery, attributes, rejection, attempts).await;
            }
            encoded.push((
                output,
                exchange,
                routing_key,
                body,
                properties_of(&envelope),
            ));
        }
        let mut pending = Vec::with_capacity(encoded.len());
        for (output, exchange, routing_key, body, properties) in encoded {
            let confirm = self
                .publisher
                .publish_raw(exchange, routing_key, &body, properties)
                .await?;
            pending.push((output.route, &*output.message_type, confirm));
        }
        for (route, message_type, confirm) in pending {
            if confirm.wait().await? == Delivered::Returned {
                match route {
                    Route::Reply => {
                        tracing::warn!("the reply queue is gone; the outcome was dropped")
                    }
                    Route::Event => {
                        tracing::debug!(message_type, "no queue subscribes to this event")
                    }
                    Route::Command => {
                        let rejection = Rejection {
                            reason: "unroutable_output".to_owned(),
                            error: format!("no worker consumes the command {message_type}"),
                            fault_code: fault_code::INTERNAL.to_owned(),
                            stage: "publish",
                            retryable: true,
                            details: serde_json::Value::Null,
                            dead_letter: true,
                        };
                        return self.reject(delivery, attributes, rejection, attempts).await;
                    }
                }
            }
        }
        tracing::debug!(outputs = outputs.items.len(), "handled");
        self.ack(delivery).await
    }

    /// Dead-letters the message (when the rejection says so) and faults the originator,
    /// waits for both confirms, then acks.
    async fn reject(
        &self,
        delivery: &Delivery,
        attributes: &Attributes,
        rejection: Rejection,
        attempts: u32,
    ) -> Result<(), RuntimeError> {
        let dead_letter = if rejection.dead_letter {
            Some(self.dead_letter(delivery, &rejection, attempts).await?)
        } else {
            None
        };
        let fault = match self.reply_target(attributes) {
            Some(reply_to) => Some(
                self.send_fault(attributes, reply_to, rejection, attempts)
                    .await?,
            ),
            None => None,
        };
        if let Some(confirm) = dead_letter {
            confirm.wait_routed().await?;
        }
        if let Some(confirm) = fault
            && confirm.wait().await? == Delivered::Returned
        {
            tracing::warn!("the reply queue is gone; the fault was dropped");
        }
        self.ack(delivery).await
    }

    /// Moves the message to the delay queue for `delay`; the broker brings it back to
    /// the work queue when the delay is over. Acks once the copy is confirmed.
    async fn retry_later(&self, delivery: &Delivery, delay: Duration) -> Result<(), RuntimeError> {
        let from_retry = delivery.exchange.as_str() == RETRIES_EXCHANGE;
        let mut headers = FieldTable::default();
        for (key, value) in delivery.properties.headers().iter().flat_map(|h| h.inner()) {
            let name = key.as_str();
            // Death counts start clean on the first hop (a publisher could have forged
            // them); after that they are the broker's own.
            if !name.eq_ignore_ascii_case(X_DELIVERY_COUNT)
                && (from_retry || !is_death_header(name))
            {
                headers.insert(key.clone(), value.clone());
            }
        }
        let properties = delivery.properties.clone().with_headers(headers);
        let queue = retry_queue_name(self.core.manifest.name, delay);
        self.publisher
            .publish_raw("", &queue, &delivery.data, properties)
            .await?
            .wait_routed()
            .await?;
        self.ack(delivery).await
    }

    /// Publishes a copy of the message to the dead-letter exchange, with the reason in
    /// `x-warren-*` headers. The copy always fits a frame (see
    /// [`with_added_headers`]): a copy the broker refused would cost the session.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        rejection: &Rejection,
        attempts: u32,
    ) -> Result<PendingConfirm, RuntimeError> {
        let properties = dead_letter_properties(
            &delivery.properties,
            &DeadLetterFacts {
                reason: &rejection.reason,
                error: &rejection.error,
                worker: self.core.manifest.name,
                exchange: delivery.exchange.as_str(),
                routing_key: delivery.routing_key.as_str(),
                attempts,
            },
            self.frame_max,
        );
        self.publisher
            .publish_raw(
                DEAD_LETTER_EXCHANGE,
                self.core.manifest.name,
                &delivery.data,
                properties,
            )
            .await
    }

    /// Sends the originator a fault. Its `details` (the handler's, of any size) are
    /// left out when they would make the fault larger than a receiver accepts.
    async fn send_fault(
        &self,
        attributes: &Attributes,
        reply_to: &str,
        rejection: Rejection,
        attempts: u32,
    ) -> Result<PendingConfirm, RuntimeError> {
        let fault = Fault {
            code: truncate(&rejection.fault_code, MAX_CODE_TEXT).to_owned(),
            message: truncate(&rejection.error, MAX_ERROR_TEXT).to_owned(),
            retryable: rejection.retryable,
            worker: self.core.manifest.name.to_owned(),
            stage: rejection.stage.to_owned(),
            attempts,
            details: rejection.details,
        };
        let mut envelope = Envelope {
            attributes: attributes.child_of_type(
                Fault::TYPE,
                Some(Fault::SCHEMA),
                &self.core.source,
            ),
            data: fault,
        };
        let mut body = envelope.to_json_vec()?;
        if body.len() > self.core.limits.max_body_bytes {
            envelope.data.details = serde_json::json!({
                "left_out": "the details made the fault larger than a receiver accepts"
            });
            body = envelope.to_json_vec()?;
        }
        self.publisher
            .publish_raw(REPLIES_EXCHANGE, reply_to, &body, properties_of(&envelope))
            .await
    }

    /// Acks `delivery`, bounded by the confirm timeout: an ack that cannot be written
    /// (the broker stopped reading) fails the session instead of hanging it.
    async fn ack(&self, delivery: &Delivery) -> Result<(), RuntimeError> {
        ack_within(
            &delivery.acker,
            false,
            self.core.settings.amqp.confirm_timeout(),
        )
        .await
    }

    /// Where outcomes for this message go: its `replyto` when it names a reply queue.
    fn reply_target<'a>(&self, attributes: &'a Attributes) -> Option<&'a str> {
        let reply_to = attributes.replyto.as_deref()?;
        if is_valid_reply_queue(reply_to) {
            Some(reply_to)
        } else {
            tracing::warn!(replyto = %truncate(reply_to, 300), "ignoring a replyto that is not a reply queue");
            None
        }
    }
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

/// How many times a message already went through `worker`'s delay queues, from the
/// broker-written `x-death` header.
fn retries_so_far(headers: Option<&FieldTable>, retry_queue_prefix: &str) -> u32 {
    deaths(headers)
        .iter()
        .filter(|death| {
            death.reason.as_deref() == Some("expired")
                && death
                    .queue
                    .as_deref()
                    .is_some_and(|queue| queue.starts_with(retry_queue_prefix))
        })
        .map(|death| u32::try_from(death.count).unwrap_or(u32::MAX))
        .fold(0u32, u32::saturating_add)
}

/// `Ok` when the ack or nack went out; an error when the delivery's channel was gone.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        format!("the handler panicked: {text}")
    } else if let Some(text) = panic.downcast_ref::<String>() {
        format!("the handler panicked: {text}")
    } else {
        "the handler panicked".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{X_DEATH, long_text, table};
    use lapin::types::{AMQPValue, FieldArray};

    fn death(queue: &str, reason: &str, count: i64) -> AMQPValue {
        AMQPValue::FieldTable(table(&[
            ("queue", long_text(queue)),
            ("reason", long_text(reason)),
            ("count", AMQPValue::LongLongInt(count)),
        ]))
    }

    #[test]
    fn retries_count_only_expiries_in_this_workers_delay_queues() {
        let headers = table(&[(
            X_DEATH,
            AMQPValue::FieldArray(FieldArray::from(vec![
                death("warren.tally.retry.1000ms", "expired", 2),
                death("warren.tally.retry.2000ms", "expired", 1),
                death("warren.tally", "rejected", 5),
                death("warren.echo.retry.1000ms", "expired", 7),
            ])),
        )]);
        assert_eq!(retries_so_far(Some(&headers), "warren.tally.retry."), 3);
        assert_eq!(retries_so_far(None, "warren.tally.retry."), 0);
    }
}
