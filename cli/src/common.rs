//! What `warren publish`, `warren request` and `warren load` share: the request
//! envelope and where it goes, the CLI's CloudEvents `source`, `--timeout` durations,
//! reconnecting with back-off, what an unroutable type is told, and the exit codes.

use std::process::ExitCode;
use std::time::Duration;

use jiff::SignedDuration;
use warren_messages::catalogue::{self, Kind};
use warren_messages::{Attributes, Envelope};
use warren_runtime::topology::{COMMANDS_EXCHANGE, EVENTS_EXCHANGE, check_worker_name};
use warren_runtime::{Delivered, Originator, Outcome, RuntimeError, Settings, reconnect_delays};

/// Exit code 1: a request faulted, or a message was not delivered (no queue took it).
pub(crate) const EXIT_FAULT: u8 = 1;
/// Exit code 2: usage, configuration or connection errors.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code 3: a request timed out, and none faulted.
pub(crate) const EXIT_TIMEOUT: u8 = 3;

/// The exit code of a command whose requests got `faults` faults and `timeouts`
/// timeouts: a fault outweighs a timeout, and no fault nor timeout is success.
pub(crate) fn requests_exit_code(faults: u64, timeouts: u64) -> ExitCode {
    if faults > 0 {
        ExitCode::from(EXIT_FAULT)
    } else if timeouts > 0 {
        ExitCode::from(EXIT_TIMEOUT)
    } else {
        ExitCode::SUCCESS
    }
}

/// Says that no queue took a message of `message_type`, and returns the exit code
/// for it.
pub(crate) fn unroutable(message_type: &str) -> ExitCode {
    eprintln!("warren: {}", no_worker_consumes(message_type));
    ExitCode::from(EXIT_FAULT)
}

/// What the CLI says when a message of `message_type` was returned: no queue is bound
/// for its type.
fn no_worker_consumes(message_type: &str) -> String {
    format!(
        "no worker consumes {message_type}: no queue is bound for it (is the type right, and \
         has its worker ever started?)"
    )
}

/// The variable naming the run folder (`warren up`'s lock, broker, logs and metrics
/// targets).
pub(crate) const RUN_DIR_VARIABLE: &str = "WARREN_RUN_DIR";

/// The run folder when [`RUN_DIR_VARIABLE`] is not set, relative to the working folder.
const DEFAULT_RUN_DIR: &str = ".warren";

/// The run folder as given: `$WARREN_RUN_DIR` when set and not empty, else `.warren`.
/// Not created: `warren up` creates it, the commands that read it only read.
pub(crate) fn run_folder() -> std::path::PathBuf {
    std::env::var_os(RUN_DIR_VARIABLE)
        .filter(|value| !value.is_empty())
        .map_or_else(|| DEFAULT_RUN_DIR.into(), std::path::PathBuf::from)
}

/// Checks a worker name given on the command line by the one rule
/// ([`check_worker_name`]).
pub(crate) fn parse_worker_name(text: &str) -> Result<String, String> {
    check_worker_name(text)?;
    Ok(text.to_owned())
}

/// Parses `10s`, `1m30s`, `500ms`, ….
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration: SignedDuration = text
        .parse()
        .map_err(|error| format!("{text:?} is not a duration like 10s or 500ms: {error}"))?;
    Duration::try_from(duration)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("{text:?} must be a positive duration"))
}

/// The CloudEvents `source` of what the CLI publishes: `/warren/cli/<host>`.
pub(crate) fn source() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("/warren/cli/{host}")
}

/// The exchange a message of `message_type` is published to.
pub(crate) fn exchange_for(message_type: &str) -> &'static str {
    match catalogue::lookup(message_type).map(|entry| entry.kind) {
        Some(Kind::Event) => EVENTS_EXCHANGE,
        _ => COMMANDS_EXCHANGE,
    }
}

/// The attributes of a new request of `message_type` from the CLI: a fresh id, the
/// type's schema when the catalogue knows it, the CLI's [`source`].
pub(crate) fn request_attributes(message_type: &str) -> Attributes {
    let schema = catalogue::lookup(message_type).map(|entry| entry.schema);
    Attributes::request_of_type(message_type, schema, &source())
}

/// A new request of `message_type` carrying `data`.
pub(crate) fn new_envelope<D>(message_type: &str, data: D) -> Envelope<D> {
    Envelope {
        attributes: request_attributes(message_type),
        data,
    }
}

/// Reconnects with back-off until it works or `give_up_at` passes.
pub(crate) async fn reconnect(
    originator: &mut Originator,
    settings: &Settings,
    give_up_at: tokio::time::Instant,
) -> anyhow::Result<()> {
    for delay in reconnect_delays() {
        if tokio::time::Instant::now() + delay > give_up_at {
            break;
        }
        tokio::time::sleep(delay).await;
        match originator.reconnect(settings).await {
            Ok(()) => {
                eprintln!("warren: reconnected");
                return Ok(());
            }
            Err(error) => eprintln!("warren: reconnecting failed: {error}"),
        }
    }
    anyhow::bail!("lost the broker and could not reconnect in time")
}

/// Publishes every envelope (each to the exchange of its type), then waits for all their
/// confirms together: for each, whether a queue took it. An error means the connection
/// is gone: reconnect, and publish them all again under the same ids.
pub(crate) async fn publish_confirmed<'a, D: serde::Serialize + 'a>(
    originator: &Originator,
    envelopes: impl IntoIterator<Item = &'a Envelope<D>>,
) -> Result<Vec<bool>, RuntimeError> {
    let mut confirms = Vec::new();
    for envelope in envelopes {
        let exchange = exchange_for(&envelope.attributes.message_type);
        confirms.push(originator.send(exchange, envelope).await?);
    }
    let mut routed = Vec::with_capacity(confirms.len());
    for confirm in confirms {
        routed.push(confirm.wait().await? == Delivered::Routed);
    }
    Ok(routed)
}

/// The next outcome (decoded and acked), or `None` once `wait_until` passes; a lost
/// consumer is reconnected and the wait goes on.
pub(crate) async fn next_outcome_before(
    originator: &mut Originator,
    settings: &Settings,
    wait_until: tokio::time::Instant,
) -> anyhow::Result<Option<Outcome>> {
    loop {
        match tokio::time::timeout_at(wait_until, originator.next_outcome()).await {
            Err(_elapsed) => return Ok(None),
            Ok(Ok(outcome)) => return Ok(Some(outcome)),
            Ok(Err(error)) => {
                eprintln!("warren: lost the reply queue's consumer ({error}); reconnecting");
                reconnect(originator, settings, wait_until).await?;
            }
        }
    }
}

/// Why an originator (`request`, `publish`, `load`) could not connect, with what to do
/// when the broker refused its reply queue and it has no token: an originator under a
/// user of its own may declare only the reply queues named after its token's subject.
pub(crate) fn connect_failed(
    error: warren_runtime::RuntimeError,
    has_token: bool,
) -> anyhow::Error {
    let hint = if error.is_access_refused() && !has_token {
        " (an originator under a broker user of its own names its reply queue after its \
         token's subject, warren.reply.<subject>.…: give --token)"
    } else {
        ""
    };
    anyhow::Error::new(error).context(format!("cannot connect to the broker{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_zero_is_rejected() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn events_go_to_the_events_exchange() {
        assert_eq!(exchange_for("dev.warren.echo.v1"), COMMANDS_EXCHANGE);
        assert_eq!(exchange_for("dev.example.unknown.v1"), COMMANDS_EXCHANGE);
    }

    #[test]
    fn a_fault_outweighs_a_timeout() {
        for (faults, timeouts, expected) in [
            (0, 0, ExitCode::SUCCESS),
            (1, 0, ExitCode::from(1)),
            (2, 5, ExitCode::from(1)),
            (0, 3, ExitCode::from(3)),
        ] {
            assert_eq!(
                requests_exit_code(faults, timeouts),
                expected,
                "{faults} faults, {timeouts} timeouts"
            );
        }
    }

    #[test]
    fn an_unroutable_type_is_named_with_what_to_check() {
        let text = no_worker_consumes("dev.example.nope.v1");
        assert!(
            text.starts_with("no worker consumes dev.example.nope.v1: no queue is bound for it"),
            "{text}"
        );
        assert!(text.contains("has its worker ever started?"), "{text}");
        assert_eq!(unroutable("dev.example.nope.v1"), ExitCode::from(1));
    }
}
