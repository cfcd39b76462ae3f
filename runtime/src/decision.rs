//! What happens to a delivery, decided from the facts alone: a pure function, tested as
//! a table of every case. The per-message path ([`crate::message`]) finds the facts and
//! carries the [`Action`] out.

use std::borrow::Cow;
use std::time::Duration;

use lapin::types::FieldTable;
use warren_messages::{DecodeError, fault_code};

use crate::auth::TokenError;
use crate::config::RetrySettings;
use crate::handler::{HandlerError, Outputs};
use crate::headers::deaths;

/// What became of a message, as far as its fate depends on it.
#[derive(Debug)]
pub(crate) enum Fact {
    /// It could not be decoded, or its data does not fit the handler's input.
    BadInput(DecodeError),
    /// Its token is missing or refused (`auth.required`): the handler never saw it.
    Unauthorized(TokenError),
    /// Its deadline passed before the work started.
    PastDeadline,
    /// The handler returned.
    Handled(Result<Outputs, HandlerError>),
    /// The handler panicked, saying this.
    Panicked(String),
    /// An output it produced is larger than its receiver accepts.
    OutputTooLarge {
        /// The output's message type.
        message_type: String,
        /// Its encoded size.
        size: usize,
        /// The receiver's limit.
        limit: usize,
    },
    /// The broker returned a command it produced: no worker consumes that type.
    CommandReturned {
        /// The command's message type.
        message_type: String,
    },
}

/// What the runtime does with the message.
#[derive(Debug)]
pub(crate) enum Action {
    /// Publish the outputs, wait for their confirms, then ack.
    Publish(Outputs),
    /// Copy the message to the delay queue of `delay`, wait for the confirm, then ack;
    /// the broker brings it back when the delay is over.
    RetryLater {
        /// How long it waits.
        delay: Duration,
    },
    /// Dead-letter it when the rejection says so, fault the originator when it can be
    /// told, announce the failure (`dev.warren.request.failed.v1`), wait for the
    /// confirms, then ack.
    Reject(Rejection),
}

/// Why a message is not processed, and what the originator is told.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rejection {
    /// The dead letter's `x-warren-reason`: a stable snake_case word.
    pub(crate) reason: Cow<'static, str>,
    /// The error in words.
    pub(crate) error: String,
    /// The fault's code.
    pub(crate) fault_code: Cow<'static, str>,
    /// Where it failed: `decode`, `authorize`, `accept`, `handle`, `publish`.
    pub(crate) stage: &'static str,
    /// Whether sending the same request again may succeed.
    pub(crate) retryable: bool,
    /// The fault's details.
    pub(crate) details: serde_json::Value,
    /// Whether the message is kept in the dead-letter queue.
    pub(crate) dead_letter: bool,
}

impl Rejection {
    /// Whether the message's token was refused (the stage `authorize`): the handler
    /// never ran.
    pub(crate) fn is_unauthorized(&self) -> bool {
        self.stage == "authorize"
    }

    /// Whether this is a refusal of the domain (`HandlerError::Refused`: a declined
    /// card): the message was fine and the worker did its job, so it is not an error.
    pub(crate) fn is_refusal(&self) -> bool {
        self.stage == "handle" && !self.dead_letter
    }
}

/// Decides what happens to a message from what became of it and how many times it was
/// attempted (this attempt included), under the retry policy.
pub(crate) fn decide(fact: Fact, attempts: u32, retry: &RetrySettings) -> Action {
    let reject = |reason: Cow<'static, str>, error: String, fault_code, stage, retryable| {
        Action::Reject(Rejection {
            reason,
            error,
            fault_code,
            stage,
            retryable,
            details: serde_json::Value::Null,
            dead_letter: true,
        })
    };
    let retry_or = |rejection: Action| {
        if attempts < retry.max_attempts {
            Action::RetryLater {
                delay: retry.delay_after(attempts),
            }
        } else {
            rejection
        }
    };
    match fact {
        Fact::BadInput(error) => reject(
            Cow::Borrowed(error.reason_code()),
            error.to_string(),
            Cow::Borrowed(error.fault_code()),
            "decode",
            false,
        ),
        Fact::Unauthorized(error) => reject(
            Cow::Borrowed(error.reason_code()),
            error.to_string(),
            Cow::Borrowed(fault_code::UNAUTHORIZED),
            "authorize",
            false,
        ),
        Fact::PastDeadline => Action::Reject(Rejection {
            reason: Cow::Borrowed(fault_code::DEADLINE_EXCEEDED),
            error: "the deadline passed before the work started".to_owned(),
            fault_code: Cow::Borrowed(fault_code::DEADLINE_EXCEEDED),
            stage: "accept",
            retryable: false,
            details: serde_json::Value::Null,
            // The originator gave up: nothing is worth keeping.
            dead_letter: false,
        }),
        Fact::Handled(Ok(outputs)) => Action::Publish(outputs),
        Fact::Handled(Err(HandlerError::Permanent {
            code,
            message,
            details,
        })) => Action::Reject(Rejection {
            reason: code.clone(),
            error: message,
            fault_code: code,
            stage: "handle",
            retryable: false,
            details,
            dead_letter: true,
        }),
        Fact::Handled(Err(HandlerError::Refused {
            code,
            message,
            details,
        })) => Action::Reject(Rejection {
            reason: code.clone(),
            error: message,
            fault_code: code,
            stage: "handle",
            retryable: false,
            details,
            // A refusal of the domain: nothing is wrong with the message.
            dead_letter: false,
        }),
        Fact::Handled(Err(HandlerError::Transient { message })) => retry_or(reject(
            Cow::Borrowed("transient_failure"),
            message,
            Cow::Borrowed(fault_code::INTERNAL),
            "handle",
            true,
        )),
        Fact::Panicked(message) => retry_or(reject(
            Cow::Borrowed("handler_panicked"),
            message,
            Cow::Borrowed(fault_code::INTERNAL),
            "handle",
            false,
        )),
        Fact::OutputTooLarge {
            message_type,
            size,
            limit,
        } => reject(
            Cow::Borrowed(fault_code::OUTPUT_TOO_LARGE),
            format!(
                "the {message_type} this message produced is {size} bytes, over the limit \
                 of {limit} that its receiver accepts"
            ),
            Cow::Borrowed(fault_code::OUTPUT_TOO_LARGE),
            "publish",
            false,
        ),
        Fact::CommandReturned { message_type } => reject(
            Cow::Borrowed("unroutable_output"),
            format!("no worker consumes the command {message_type}"),
            Cow::Borrowed(fault_code::INTERNAL),
            "publish",
            true,
        ),
    }
}

/// How many times a message already went through `worker`'s delay queues, from the
/// broker-written `x-death` header. Only a message coming back from a delay queue (by
/// `warren.retries`, which only the broker and workers publish to) has trustworthy
/// counts: the caller passes `from_retries`.
pub(crate) fn attempts_so_far(
    headers: Option<&FieldTable>,
    from_retries: bool,
    retry_queue_prefix: &str,
) -> u32 {
    if !from_retries {
        return 1;
    }
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
        .saturating_add(1)
}

/// The text of a handler's panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
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
    use warren_messages::EchoReplied;

    const RETRY: RetrySettings = RetrySettings {
        max_attempts: 3,
        initial_delay_ms: 1000,
        multiplier: 2,
        max_delay_ms: 60_000,
    };

    /// What a row of the table expects.
    #[derive(Debug, PartialEq)]
    enum Expected {
        Publish(usize),
        RetryLater(u64),
        Reject {
            reason: &'static str,
            fault_code: &'static str,
            stage: &'static str,
            retryable: bool,
            dead_letter: bool,
        },
    }

    fn reject(
        reason: &'static str,
        fault_code: &'static str,
        stage: &'static str,
        retryable: bool,
        dead_letter: bool,
    ) -> Expected {
        Expected::Reject {
            reason,
            fault_code,
            stage,
            retryable,
            dead_letter,
        }
    }

    fn seen(action: Action) -> Expected {
        match action {
            Action::Publish(outputs) => Expected::Publish(outputs.len()),
            Action::RetryLater { delay } => {
                Expected::RetryLater(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
            }
            Action::Reject(rejection) => {
                assert!(!rejection.error.is_empty(), "{rejection:?}");
                Expected::Reject {
                    reason: Box::leak(rejection.reason.into_owned().into_boxed_str()),
                    fault_code: Box::leak(rejection.fault_code.into_owned().into_boxed_str()),
                    stage: rejection.stage,
                    retryable: rejection.retryable,
                    dead_letter: rejection.dead_letter,
                }
            }
        }
    }

    fn result() -> Outputs {
        let reply: EchoReplied = serde_json::from_str("{}").expect("payload");
        Outputs::reply(&reply).expect("outputs")
    }

    /// Every case of a message's fate, with the attempt it is on.
    #[test]
    fn every_case_of_a_messages_fate() {
        let transient = || Fact::Handled(Err(HandlerError::transient("store locked")));
        let table: Vec<(&str, Fact, u32, Expected)> = vec![
            (
                "a result",
                Fact::Handled(Ok(result())),
                1,
                Expected::Publish(1),
            ),
            (
                "nothing to publish",
                Fact::Handled(Ok(Outputs::none())),
                1,
                Expected::Publish(0),
            ),
            (
                "bad input",
                Fact::BadInput(DecodeError::NotJson("eof".into())),
                1,
                reject("not_json", "invalid_envelope", "decode", false, true),
            ),
            (
                "data not matching its type",
                Fact::BadInput(DecodeError::InvalidData {
                    message_type: "dev.warren.echo.v1".into(),
                    reason: "expected an object".into(),
                }),
                1,
                reject("invalid_data", "invalid_payload", "decode", false, true),
            ),
            (
                "an unknown type",
                Fact::BadInput(DecodeError::UnknownType("dev.x.v1".into())),
                1,
                reject("unknown_type", "unknown_type", "decode", false, true),
            ),
            (
                "no token, where one is required",
                Fact::Unauthorized(TokenError::Missing),
                1,
                reject("token_missing", "unauthorized", "authorize", false, true),
            ),
            (
                "a token without the scope its type requires",
                Fact::Unauthorized(TokenError::MissingScope {
                    scope: "tally:write".into(),
                    message_type: "dev.warren.tally.add.v1".into(),
                }),
                1,
                reject(
                    "token_missing_scope",
                    "unauthorized",
                    "authorize",
                    false,
                    true,
                ),
            ),
            (
                "deadline passed",
                Fact::PastDeadline,
                1,
                reject(
                    "deadline_exceeded",
                    "deadline_exceeded",
                    "accept",
                    false,
                    false,
                ),
            ),
            (
                "permanent failure",
                Fact::Handled(Err(HandlerError::permanent("out_of_stock", "none left"))),
                1,
                reject("out_of_stock", "out_of_stock", "handle", false, true),
            ),
            (
                "permanent failure on a retry",
                Fact::Handled(Err(HandlerError::permanent("reused_id", "reused"))),
                2,
                reject("reused_id", "reused_id", "handle", false, true),
            ),
            (
                "refused for a reason of the domain",
                Fact::Handled(Err(HandlerError::refused("card_declined", "declined"))),
                1,
                reject("card_declined", "card_declined", "handle", false, false),
            ),
            (
                "transient, first attempt",
                transient(),
                1,
                Expected::RetryLater(1000),
            ),
            (
                "transient, second attempt",
                transient(),
                2,
                Expected::RetryLater(2000),
            ),
            (
                "transient, attempts used up",
                transient(),
                3,
                reject("transient_failure", "internal", "handle", true, true),
            ),
            (
                "transient, past the policy (a lowered max_attempts)",
                transient(),
                9,
                reject("transient_failure", "internal", "handle", true, true),
            ),
            (
                "panic, first attempt",
                Fact::Panicked("boom".into()),
                1,
                Expected::RetryLater(1000),
            ),
            (
                "panic, attempts used up",
                Fact::Panicked("boom".into()),
                3,
                reject("handler_panicked", "internal", "handle", false, true),
            ),
            (
                "an output over the receiver's limit",
                Fact::OutputTooLarge {
                    message_type: "dev.warren.echo.replied.v1".into(),
                    size: 2_000_000,
                    limit: 1_048_576,
                },
                1,
                reject(
                    "output_too_large",
                    "output_too_large",
                    "publish",
                    false,
                    true,
                ),
            ),
            (
                "a command nobody consumes came back",
                Fact::CommandReturned {
                    message_type: "dev.warren.nobody.v1".into(),
                },
                1,
                reject("unroutable_output", "internal", "publish", true, true),
            ),
        ];
        for (case, fact, attempts, expected) in table {
            assert_eq!(seen(decide(fact, attempts, &RETRY)), expected, "{case}");
        }
    }

    #[test]
    fn details_of_a_permanent_failure_reach_the_fault() {
        let error = HandlerError::permanent("out_of_stock", "none left")
            .with_details(serde_json::json!({"sku": "a"}));
        match decide(Fact::Handled(Err(error)), 1, &RETRY) {
            Action::Reject(rejection) => {
                assert_eq!(rejection.details, serde_json::json!({"sku": "a"}));
                assert_eq!(rejection.error, "none left");
            }
            other => panic!("{other:?}"),
        }
    }

    fn death(queue: &str, reason: &str, count: i64) -> AMQPValue {
        AMQPValue::FieldTable(table(&[
            ("queue", long_text(queue)),
            ("reason", long_text(reason)),
            ("count", AMQPValue::LongLongInt(count)),
        ]))
    }

    #[test]
    fn attempts_count_only_expiries_in_this_workers_delay_queues() {
        let headers = table(&[(
            X_DEATH,
            AMQPValue::FieldArray(FieldArray::from(vec![
                death("warren.tally.retry.1000ms", "expired", 2),
                death("warren.tally.retry.2000ms", "expired", 1),
                death("warren.tally", "rejected", 5),
                death("warren.echo.retry.1000ms", "expired", 7),
            ])),
        )]);
        assert_eq!(
            attempts_so_far(Some(&headers), true, "warren.tally.retry."),
            4
        );
        assert_eq!(attempts_so_far(None, true, "warren.tally.retry."), 1);
        // A first delivery's death headers are a publisher's, not the broker's.
        assert_eq!(
            attempts_so_far(Some(&headers), false, "warren.tally.retry."),
            1
        );
    }

    #[test]
    fn panics_are_described() {
        assert_eq!(panic_message(&"boom"), "the handler panicked: boom");
        assert_eq!(
            panic_message(&String::from("bang")),
            "the handler panicked: bang"
        );
        assert_eq!(panic_message(&7u8), "the handler panicked");
    }

    #[test]
    fn only_a_refusal_of_the_domain_is_a_refusal() {
        let refusal = |fact| match decide(fact, 1, &RETRY) {
            Action::Reject(rejection) => rejection.is_refusal(),
            other => panic!("not a rejection: {other:?}"),
        };
        assert!(refusal(Fact::Handled(Err(HandlerError::Refused {
            code: "card_declined".into(),
            message: "declined".into(),
            details: serde_json::Value::Null,
        }))));
        assert!(!refusal(Fact::Handled(Err(HandlerError::Permanent {
            code: "bad".into(),
            message: "bad".into(),
            details: serde_json::Value::Null,
        }))));
        assert!(!refusal(Fact::PastDeadline));
    }
}
