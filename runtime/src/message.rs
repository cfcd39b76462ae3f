//! The per-message path: decode, handle, decide ([`crate::decision`]), then carry the
//! decision out: publish the outputs, or retry later, or dead-letter and fault; wait for
//! the broker's confirms; ack.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use jiff::Timestamp;
use lapin::message::Delivery;
use lapin::types::FieldTable;
use serde_json::value::RawValue;
use tracing::Instrument;
use warren_messages::{Attributes, Envelope, Fault, Payload, Progress, RequestFailed, TraceParent};

use crate::auth::error::quoted;
use crate::auth::{Claims, MAX_TOKEN_BYTES, TokenError};
use crate::decision::{Action, Fact, Rejection, attempts_so_far, decide, panic_message};
use crate::delivery::{ack_within, decode_delivery, salvage};
use crate::error::RuntimeError;
use crate::handler::{Handler, Incoming, Outputs, Route};
use crate::headers::{
    DeadLetterFacts, X_DELIVERY_COUNT, dead_letter_properties, header_count, is_death_header,
};
use crate::metrics::{self, InFlight, Outcome};
use crate::otel;
use crate::publisher::{
    Delivered, PendingConfirm, Publisher, outcome_properties_of, properties_with_token, truncate,
};
use crate::session::WorkerCore;
use crate::topology::{
    COMMANDS_EXCHANGE, DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, REPLIES_EXCHANGE, RETRIES_EXCHANGE,
    is_valid_reply_queue, reply_queue_is_owned_by, retry_queue_name,
};

/// The most of an error's text kept in a dead-letter header or a fault.
const MAX_ERROR_TEXT: usize = 2048;

/// The most of a fault code kept: codes are short snake_case words.
const MAX_CODE_TEXT: usize = 64;

/// What processes a session's deliveries: the worker, and the session's publisher.
pub(crate) struct Processor<'s, H> {
    pub(crate) core: &'s WorkerCore<H>,
    pub(crate) publisher: &'s Publisher,
    /// The connection's largest frame: a message's properties must fit in one.
    pub(crate) frame_max: usize,
}

impl<H: Handler> Processor<'_, H> {
    /// The per-message path. `Err` only for broker failures, which end the session
    /// with the delivery unacked (it is redelivered).
    pub(crate) async fn process(&self, delivery: Delivery) -> Result<(), RuntimeError> {
        let envelope =
            match decode_delivery(&delivery.data, &delivery.properties, &self.core.limits) {
                Ok(envelope) => envelope,
                Err(error) => {
                    let attributes =
                        salvage(&delivery.data, &delivery.properties, &self.core.limits);
                    let in_flight = InFlight::start(metrics::consumed_type(
                        &self.core.manifest,
                        &attributes.message_type,
                    ));
                    tracing::warn!(
                        message_id = %attributes.id,
                        reason = error.reason_code(),
                        error = %error,
                        "bad input: dead-lettering"
                    );
                    let action = decide(Fact::BadInput(error), 1, &self.core.settings.retry);
                    let hop = attributes.hop_trace();
                    let outcome = self
                        .carry_out(&delivery, &attributes, hop, action, 1, Relay::Nothing)
                        .await?;
                    in_flight.finish(outcome);
                    return Ok(());
                }
            };
        let attributes = &envelope.attributes;
        let message_type = metrics::consumed_type(&self.core.manifest, &attributes.message_type);
        let in_flight = InFlight::start(message_type);
        // This hop's span: everything the work sends goes out as its child.
        let parent = attributes.trace_parent();
        let (hop, hop_span) = otel::start_hop(
            attributes,
            parent,
            &delivery,
            self.core.manifest.name,
            message_type,
        );
        // At error level so that it is recorded whatever the filter: it is not a line of
        // its own but the identity of every line about the message (a `handled` line
        // without it would say nothing). Every field given at creation: a field recorded
        // later makes each log layer format the span's fields again. The ids are
        // formatted only if a layer records the span.
        let parent_span_id =
            parent.map(|parent| tracing::field::display(Hex(parent.span_id.into(), 16)));
        let span = tracing::error_span!(
            "message",
            message_id = %attributes.id,
            correlation_id = %attributes.correlation_id(),
            message_type = %attributes.message_type,
            trace_id = %Hex(hop.trace_id, 32),
            span_id = %Hex(hop.span_id.into(), 16),
            parent_span_id,
        );
        let outcome = self
            .process_envelope(&delivery, &envelope, hop)
            .instrument(span.clone())
            .await?;
        span.in_scope(|| {
            tracing::info!(
                target: crate::telemetry::MESSAGE_TARGET,
                outcome = outcome.label(),
                duration_ms = in_flight.elapsed().as_secs_f64() * 1e3,
                "handled"
            );
        });
        in_flight.finish(outcome);
        if let Some(hop_span) = hop_span {
            hop_span.end(outcome);
        }
        Ok(())
    }

    /// Finds what becomes of a decoded message (its deadline, its payload, the
    /// handler's answer), decides, and carries the decision out.
    async fn process_envelope(
        &self,
        delivery: &Delivery,
        envelope: &Envelope<&RawValue>,
        hop: TraceParent,
    ) -> Result<Outcome, RuntimeError> {
        let attributes = &envelope.attributes;
        let headers = delivery.properties.headers().as_ref();
        let delivery_count = header_count(headers, X_DELIVERY_COUNT).unwrap_or(0);
        let attempts = attempts_so_far(
            headers,
            delivery.exchange.as_str() == RETRIES_EXCHANGE,
            &self.core.retry_queue_prefix,
        );
        // Who sent it, when the worker requires a token: checked before anything else
        // is done for the message.
        let authorized = match &self.core.auth {
            None => Ok(None),
            Some(verifier) => match crate::headers::token(headers) {
                Err(error) => Err(error),
                Ok(None) => Err(TokenError::Missing),
                Ok(Some(token)) => verifier
                    .verify(Some(token), &attributes.message_type)
                    .map(|claims| Some((claims, token))),
            },
        };
        // With a token, outcomes go only to its subject's reply queues: a request naming
        // another's queue is refused, and answered nowhere.
        let authorized = authorized.and_then(|verified| match &verified {
            Some((claims, _))
                if attributes.replyto.as_deref().is_some_and(|reply_to| {
                    !reply_queue_is_owned_by(reply_to, &claims.subject)
                }) =>
            {
                Err(TokenError::ForeignReply(quoted(&claims.subject)))
            }
            _ => Ok(verified),
        });
        let unanswerable;
        let attributes = if matches!(authorized, Err(TokenError::ForeignReply(_))) {
            unanswerable = Attributes {
                replyto: None,
                ..attributes.clone()
            };
            &unanswerable
        } else {
            attributes
        };
        let (fact, relay) = match &authorized {
            Err(error) => {
                tracing::warn!(
                    reason = error.reason_code(),
                    error = %error,
                    "unauthorized: dead-lettering"
                );
                (Fact::Unauthorized(error.clone()), Relay::Nothing)
            }
            Ok(verified) => {
                let relay = match verified {
                    None => Relay::AsArrived,
                    Some((claims, token)) => Relay::Verified {
                        token,
                        subject: &claims.subject,
                    },
                };
                let claims = verified.as_ref().map(|(claims, _)| &**claims);
                let fact = self.handle(envelope, delivery_count, claims).await;
                (fact, relay)
            }
        };
        let action = decide(fact, attempts, &self.core.settings.retry);
        self.carry_out(delivery, attributes, hop, action, attempts, relay)
            .await
    }

    /// What became of an authorized message: its deadline, its payload, the handler's
    /// answer.
    async fn handle(
        &self,
        envelope: &Envelope<&RawValue>,
        delivery_count: u32,
        claims: Option<&Claims>,
    ) -> Fact {
        let attributes = &envelope.attributes;
        // A deadline bounds when work may start: a command's. An event tells what
        // happened (a compensation, a status) and is taken however late it comes.
        let is_event = self
            .core
            .manifest
            .events
            .contains(&attributes.message_type.as_str());
        if !is_event && attributes.is_past_deadline(Timestamp::now()) {
            tracing::info!("deadline passed before the work started");
            return Fact::PastDeadline;
        }
        match envelope.decode_data::<H::Input>() {
            Err(error) => {
                tracing::warn!(reason = error.reason_code(), error = %error, "bad input: dead-lettering");
                Fact::BadInput(error)
            }
            Ok(payload) => {
                let incoming =
                    Incoming::new(attributes, payload, envelope.data, delivery_count, claims);
                match AssertUnwindSafe(self.core.handler.handle(incoming))
                    .catch_unwind()
                    .await
                {
                    Ok(handled) => Fact::Handled(handled),
                    Err(panic) => Fact::Panicked(panic_message(panic.as_ref())),
                }
            }
        }
    }

    /// Does what was decided, within the hop's trace `hop`, passing on what `relay` says
    /// of the message's token.
    async fn carry_out(
        &self,
        delivery: &Delivery,
        attributes: &Attributes,
        hop: TraceParent,
        action: Action,
        attempts: u32,
        relay: Relay<'_>,
    ) -> Result<Outcome, RuntimeError> {
        match action {
            Action::Publish(outputs) => {
                self.publish_outputs(delivery, attributes, hop, outputs, attempts, relay)
                    .await
            }
            Action::RetryLater { delay } => {
                tracing::warn!(attempts, ?delay, "handler failed: retrying later");
                let message_type =
                    metrics::consumed_type(&self.core.manifest, &attributes.message_type);
                self.retry_later(delivery, delay).await?;
                ::metrics::counter!(metrics::RETRIED, "message_type" => message_type).increment(1);
                Ok(Outcome::Retry)
            }
            Action::Reject(rejection) => {
                if rejection.stage == "handle" {
                    tracing::warn!(
                        reason = %rejection.reason,
                        error = %rejection.error,
                        attempts,
                        "handler failed for good: dead-lettering"
                    );
                }
                let outcome = if rejection.is_refusal() {
                    Outcome::Refused
                } else {
                    Outcome::Error
                };
                self.reject(delivery, attributes, hop, rejection, attempts, relay)
                    .await?;
                Ok(outcome)
            }
        }
    }

    /// Publishes the handler's outputs, waits for all their confirms, then acks.
    ///
    /// Every output is encoded before any is published: one larger than a receiver
    /// accepts (`limits.max_body_bytes`) fails the message as a whole
    /// ([`Fact::OutputTooLarge`]) instead of being published and refused downstream.
    /// Commands and events carry the message's token on (as `relay` says); outcomes to
    /// the originator never do.
    async fn publish_outputs(
        &self,
        delivery: &Delivery,
        attributes: &Attributes,
        hop: TraceParent,
        outputs: Outputs,
        attempts: u32,
        relay: Relay<'_>,
    ) -> Result<Outcome, RuntimeError> {
        // Read once, and only when a command or an event goes out.
        let forwarded_token = if outputs
            .items
            .iter()
            .any(|output| matches!(output.route, Route::Event | Route::Command))
        {
            relay.token(delivery)
        } else {
            None
        };
        let mut encoded = Vec::with_capacity(outputs.items.len());
        // Progress notes first: one channel keeps its publishes in order, so a note
        // reaches the originator before the outcome it comes with.
        let progress_first = outputs
            .items
            .iter()
            .filter(|output| output.route == Route::Progress)
            .chain(
                outputs
                    .items
                    .iter()
                    .filter(|output| output.route != Route::Progress),
            );
        for output in progress_first {
            let (exchange, routing_key) = match output.route {
                Route::Reply => match self.reply_target(attributes) {
                    Some(reply_to) => (REPLIES_EXCHANGE, reply_to),
                    None => continue,
                },
                Route::Progress if !attributes.progress => continue,
                Route::Progress => match self.reply_target(attributes) {
                    Some(reply_to) => (REPLIES_EXCHANGE, reply_to),
                    None => continue,
                },
                Route::Event => (EVENTS_EXCHANGE, &*output.message_type),
                Route::Command => (COMMANDS_EXCHANGE, &*output.message_type),
            };
            let progress_data;
            let data = if output.route == Route::Progress {
                progress_data = self.progress_data(&output.data)?;
                &*progress_data
            } else {
                &*output.data
            };
            let mut child = attributes.child_in_trace(
                hop,
                output.id.clone(),
                &output.message_type,
                Some(&output.schema),
                &self.core.source,
            );
            if let Some(subject) = &output.subject {
                child.subject = Some(subject.clone());
            }
            let envelope = Envelope {
                attributes: child,
                data,
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
                let fact = Fact::OutputTooLarge {
                    message_type: output.message_type.to_string(),
                    size: body.len(),
                    limit,
                };
                let action = decide(fact, attempts, &self.core.settings.retry);
                return Box::pin(
                    self.carry_out(delivery, attributes, hop, action, attempts, relay),
                )
                .await;
            }
            let properties =
                output_properties(output.route, &envelope, routing_key, forwarded_token);
            encoded.push((output, exchange, routing_key, body, properties));
        }
        let mut pending = Vec::with_capacity(encoded.len());
        for (output, exchange, routing_key, body, properties) in encoded {
            // Only a command must find a queue: an event nobody subscribes to, or an
            // outcome whose originator left, is no error (and a mandatory publish's
            // return could be handed to another publish's confirm).
            let mandatory = output.route == Route::Command;
            let confirm = self
                .publisher
                .publish_with(exchange, routing_key, &body, properties, mandatory)
                .await?;
            pending.push((output.route, &*output.message_type, confirm));
        }
        for (route, message_type, confirm) in pending {
            if confirm.wait().await? == Delivered::Returned && route == Route::Command {
                let fact = Fact::CommandReturned {
                    message_type: message_type.to_owned(),
                };
                let action = decide(fact, attempts, &self.core.settings.retry);
                return Box::pin(
                    self.carry_out(delivery, attributes, hop, action, attempts, relay),
                )
                .await;
            }
            ::metrics::counter!(
                metrics::PUBLISHED,
                "message_type" => metrics::produced_type(&self.core.manifest, message_type)
            )
            .increment(1);
        }
        tracing::debug!(outputs = outputs.items.len(), "handled");
        self.ack(delivery).await?;
        Ok(Outcome::Ok)
    }

    /// A progress output's data with the stage and the worker filled in (the worker's
    /// name for both).
    fn progress_data(&self, data: &RawValue) -> Result<Box<RawValue>, RuntimeError> {
        let mut progress: Progress = serde_json::from_str(data.get())?;
        self.core.manifest.name.clone_into(&mut progress.stage);
        self.core.manifest.name.clone_into(&mut progress.worker);
        Ok(serde_json::value::to_raw_value(&progress)?)
    }

    /// Dead-letters the message (when the rejection says so; the copy without its
    /// token), faults the originator, announces the failure to the fleet
    /// (`dev.warren.request.failed.v1`, with the token `relay` passes on, so earlier hops
    /// undo their work), waits for the confirms, then acks.
    async fn reject(
        &self,
        delivery: &Delivery,
        attributes: &Attributes,
        hop: TraceParent,
        rejection: Rejection,
        attempts: u32,
        relay: Relay<'_>,
    ) -> Result<(), RuntimeError> {
        let reason = rejection.reason.clone();
        let code = truncate(&rejection.fault_code, MAX_CODE_TEXT).to_owned();
        let dead_letter = if rejection.dead_letter {
            Some(
                self.dead_letter(delivery, &rejection, attempts, relay.subject())
                    .await?,
            )
        } else {
            None
        };
        // A failure to handle an announcement of failure is not announced again: that
        // would echo between the workers that listen for them. Nor is a refusal of the
        // message's token: nothing was done here, and the announcement could carry no
        // token (a refused one is never passed on), so every listener that requires one
        // would only dead-letter it.
        let announced =
            if attributes.message_type == RequestFailed::TYPE || rejection.is_unauthorized() {
                None
            } else {
                let token = relay.token(delivery);
                Some(
                    self.announce_failure(attributes, hop, &rejection, token)
                        .await?,
                )
            };
        let fault = match self.reply_target(attributes) {
            Some(reply_to) => Some(
                self.send_fault(attributes, hop, reply_to, rejection, attempts)
                    .await?,
            ),
            None => None,
        };
        if let Some(confirm) = dead_letter {
            confirm.wait_routed().await?;
            ::metrics::counter!(metrics::DEAD_LETTERED, "reason" => reason).increment(1);
        }
        // Neither is mandatory: nobody undoing anything for this kind of request, or an
        // originator that left, is no error.
        if let Some(confirm) = announced {
            confirm.wait().await?;
            ::metrics::counter!(metrics::PUBLISHED, "message_type" => RequestFailed::TYPE)
                .increment(1);
        }
        if let Some(confirm) = fault {
            confirm.wait().await?;
            ::metrics::counter!(metrics::PUBLISHED, "message_type" => Fault::TYPE).increment(1);
            ::metrics::counter!(metrics::FAULTS, "code" => code).increment(1);
        }
        self.ack(delivery).await
    }

    /// Moves the message to the delay queue for `delay` (through `warren.retries`, where
    /// the delay queue is bound under its own name); the broker brings it back to the
    /// work queue when the delay is over. Acks once the copy is confirmed.
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
            .publish_raw(RETRIES_EXCHANGE, &queue, &delivery.data, properties)
            .await?
            .wait_routed()
            .await?;
        self.ack(delivery).await
    }

    /// Publishes a copy of the message to the dead-letter exchange, with the reason in
    /// `x-warren-*` headers. The copy always fits a frame (see
    /// [`crate::headers::with_added_headers`]): a copy the broker refused would cost the
    /// session.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        rejection: &Rejection,
        attempts: u32,
        token_subject: Option<&str>,
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
                token_subject,
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

    /// Publishes `dev.warren.request.failed.v1` for the rejected message, with its
    /// subject and correlation, and `token` (the message's, passed on), to
    /// `warren.events`.
    async fn announce_failure(
        &self,
        attributes: &Attributes,
        hop: TraceParent,
        rejection: &Rejection,
        token: Option<&str>,
    ) -> Result<PendingConfirm, RuntimeError> {
        let failed = RequestFailed {
            code: truncate(&rejection.fault_code, MAX_CODE_TEXT).to_owned(),
            worker: self.core.manifest.name.to_owned(),
            stage: rejection.stage.to_owned(),
            message: truncate(&rejection.error, MAX_ERROR_TEXT).to_owned(),
        };
        let mut announcement = attributes.child_in_trace(
            hop,
            warren_messages::new_message_id(),
            RequestFailed::TYPE,
            Some(RequestFailed::SCHEMA),
            &self.core.source,
        );
        // Undoing is never too late.
        announcement.deadline = None;
        let envelope = Envelope {
            attributes: announcement,
            data: &failed,
        };
        let body = envelope.to_json_vec()?;
        self.publisher
            .publish_with(
                EVENTS_EXCHANGE,
                RequestFailed::TYPE,
                &body,
                properties_with_token(&envelope, token),
                false,
            )
            .await
    }

    /// Sends the originator a fault. Its `details` (the handler's, of any size) are
    /// left out when they would make the fault larger than a receiver accepts.
    async fn send_fault(
        &self,
        attributes: &Attributes,
        hop: TraceParent,
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
            attributes: attributes.child_in_trace(
                hop,
                warren_messages::new_message_id(),
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
            .publish_with(
                REPLIES_EXCHANGE,
                reply_to,
                &body,
                outcome_properties_of(&envelope, reply_to),
                false,
            )
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
        .await?;
        ::metrics::counter!(metrics::ACKED).increment(1);
        Ok(())
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

/// The properties of an output on `route` to `routing_key`: an outcome's (the
/// originator's reply queue) never carries the token; a command or an event carries the
/// `token` passed on, if any.
fn output_properties<D>(
    route: Route,
    envelope: &Envelope<D>,
    routing_key: &str,
    token: Option<&str>,
) -> lapin::BasicProperties {
    match route {
        Route::Reply | Route::Progress => outcome_properties_of(envelope, routing_key),
        Route::Event | Route::Command => properties_with_token(envelope, token),
    }
}

/// What the work of a message passes on of its token: identity flows downstream as the
/// originator's own token, forwarded (docs/security.md, "Tokens").
#[derive(Debug, Clone, Copy)]
enum Relay<'d> {
    /// This worker does not verify tokens: whatever token the message carries goes on
    /// as it came (read only when an output needs it), for a later hop to verify.
    AsArrived,
    /// Verified here: this token goes on, and a dead letter names its subject.
    Verified {
        /// The compact token, as it arrived.
        token: &'d str,
        /// Its verified `sub`.
        subject: &'d str,
    },
    /// Nothing goes on: the token was refused, or the message could not be read.
    Nothing,
}

impl<'d> Relay<'d> {
    /// The token to put on a command, an event or an announcement of failure.
    fn token(&self, delivery: &'d Delivery) -> Option<&'d str> {
        match *self {
            Relay::Verified { token, .. } => Some(token),
            Relay::Nothing => None,
            // Not verified here, so bounded here: a larger one would be refused anyway.
            Relay::AsArrived => crate::headers::token(delivery.properties.headers().as_ref())
                .ok()
                .flatten()
                .filter(|token| token.len() <= MAX_TOKEN_BYTES),
        }
    }

    /// The verified subject, for a dead letter's `x-warren-token-subject`.
    fn subject(&self) -> Option<&'d str> {
        match *self {
            Relay::Verified { subject, .. } => Some(subject),
            Relay::AsArrived | Relay::Nothing => None,
        }
    }
}

/// An id in lowercase hex, zero-padded to `.1` digits (W3C trace context's form).
struct Hex(u128, usize);

impl std::fmt::Display for Hex {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{:0width$x}", self.0, width = self.1)
    }
}

#[cfg(test)]
mod tests {
    use lapin::BasicProperties;
    use lapin::types::AMQPValue;
    use warren_messages::{EchoRequest, OutgoingEnvelope};

    use super::*;
    use crate::headers::{X_WARREN_TOKEN, header_text, long_text, table};
    use crate::publisher::properties_of;

    fn delivery_with(headers: &[(&str, AMQPValue)]) -> Delivery {
        let mut delivery = Delivery::mock(1, "".into(), "".into(), false, b"{}".to_vec());
        delivery.properties = BasicProperties::default().with_headers(table(headers));
        delivery
    }

    #[test]
    fn a_token_is_passed_on_as_verified_or_as_it_came_or_not_at_all() {
        let delivery = delivery_with(&[(X_WARREN_TOKEN, long_text("a.b.c"))]);
        assert_eq!(Relay::AsArrived.token(&delivery), Some("a.b.c"));
        assert_eq!(Relay::AsArrived.subject(), None);
        let verified = Relay::Verified {
            token: "a.b.c",
            subject: "alice",
        };
        assert_eq!(verified.token(&delivery), Some("a.b.c"));
        assert_eq!(verified.subject(), Some("alice"));
        assert_eq!(Relay::Nothing.token(&delivery), None);
        // Unverified, a header that is not a token's is not passed on.
        let oversized =
            delivery_with(&[(X_WARREN_TOKEN, long_text(&"a".repeat(MAX_TOKEN_BYTES + 1)))]);
        assert_eq!(Relay::AsArrived.token(&oversized), None);
        let not_text = delivery_with(&[(X_WARREN_TOKEN, AMQPValue::LongLongInt(1))]);
        assert_eq!(Relay::AsArrived.token(&not_text), None);
        assert_eq!(Relay::AsArrived.token(&delivery_with(&[])), None);
    }

    #[test]
    fn commands_and_events_carry_the_token_and_outcomes_never_do() {
        let payload: EchoRequest = serde_json::from_str("{}").expect("payload");
        let envelope = OutgoingEnvelope::request("/warren/test", &payload).expect("envelope");
        let token_of = |route| {
            let properties = output_properties(route, &envelope, "warren.reply.x", Some("a.b.c"));
            header_text(properties.headers().as_ref(), X_WARREN_TOKEN).map(str::to_owned)
        };
        assert_eq!(token_of(Route::Command).as_deref(), Some("a.b.c"));
        assert_eq!(token_of(Route::Event).as_deref(), Some("a.b.c"));
        assert_eq!(token_of(Route::Reply), None);
        assert_eq!(token_of(Route::Progress), None);
        // Nothing to pass on: the properties of a message without a token.
        assert_eq!(
            output_properties(Route::Command, &envelope, "t", None),
            properties_of(&envelope)
        );
    }
}
