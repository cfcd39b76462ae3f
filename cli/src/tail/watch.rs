//! The loop of `warren tail`: open the tap, print each message as it comes, reconnect
//! when the broker is lost, and stop after `--count` messages, on a signal, or when
//! stdout is closed.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{Signal, SignalKind, signal};
use warren_ops::tap::{Tap, TappedMessage};
use warren_runtime::topology::{COMMANDS_EXCHANGE, EVENTS_EXCHANGE};
use warren_runtime::{Settings, reconnect_delays};

use super::args::TailArgs;
use super::pattern::{Plan, TopicPattern, plan_for_catalogue};
use super::render::{Reading, Route, json_line, summary_line};

/// The name tail's connection shows in the broker's tools.
const CONNECTION_NAME: &str = "warren-cli tail";

/// `warren tail`: prints what flows through the fleet's exchanges until `--count`
/// messages were printed, a stop signal, or stdout closes.
pub async fn run(settings: &Settings, args: TailArgs) -> anyhow::Result<ExitCode> {
    // Listening starts before anything else, so Ctrl-C is never the default action
    // (which would end the process with a signal rather than exit code 0).
    let mut stop = StopSignals::listen().context("cannot listen for Ctrl-C")?;
    let plan = plan_for_catalogue(&args.pattern);
    if !plan.matches_a_shown_type {
        eprintln!(
            "warren: {}; listening anyway",
            no_match_warning(&args.pattern, &plan)
        );
    }
    let listening = listening_line(&args.pattern, &plan);
    let mut tap = tokio::select! {
        () = stop.next() => return Ok(ExitCode::SUCCESS),
        opened = Tap::open(settings, CONNECTION_NAME, &plan.bindings, args.timeout) => {
            opened.context("cannot connect to the broker and bind tail's queue")?
        }
    };
    eprintln!("warren: {listening}");
    if !plan.command_types.is_empty() {
        eprintln!(
            "warren: note: while tail runs, a command of these types that no worker \
             consumes goes to tail alone, so its publisher is not told it is unroutable"
        );
    }
    let mut stdout = tokio::io::stdout();
    let mut printed: u64 = 0;
    while args.count.is_none_or(|count| printed < count) {
        let next = tokio::select! {
            () = stop.next() => break,
            next = tap.next() => next,
        };
        let message = match next {
            Ok(message) => message,
            Err(error) => {
                eprintln!(
                    "warren: lost the broker ({error}); reconnecting (what is published \
                     meanwhile is not shown)"
                );
                let Some(fresh) = reopen(settings, &plan, args.timeout, &mut stop).await else {
                    break;
                };
                std::mem::replace(&mut tap, fresh).close().await;
                eprintln!("warren: reconnected; {listening}");
                continue;
            }
        };
        if message.dropped_before() > 0 {
            eprintln!(
                "warren: {} messages were dropped here: the output did not keep up",
                message.dropped_before()
            );
        }
        let mut line = render(&message, args.json);
        line.push('\n');
        match write_line(&mut stdout, &line).await {
            Ok(()) => printed += 1,
            // Whoever read stdout is gone (`warren tail | head`): nothing left to do.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(error) => {
                tap.close().await;
                return Err(error).context("cannot write to stdout");
            }
        }
    }
    tap.close().await;
    Ok(ExitCode::SUCCESS)
}

/// What tail says once it listens: the pattern and where it is bound.
fn listening_line(pattern: &TopicPattern, plan: &Plan) -> String {
    let commands = match plan.command_types.as_slice() {
        [] => "no command type matches".to_owned(),
        [only] => only.clone(),
        several => format!("{} command types", several.len()),
    };
    format!(
        "listening for types matching {:?} on {COMMANDS_EXCHANGE} ({commands}) and \
         {EVENTS_EXCHANGE}; Ctrl-C to stop",
        pattern.as_str()
    )
}

/// Why a pattern that matches no command or event type of the catalogue may show
/// nothing.
fn no_match_warning(pattern: &TopicPattern, plan: &Plan) -> String {
    if plan.matches_an_outcome {
        format!(
            "{:?} matches only outcomes, which go to their originators' reply queues: tail \
             does not show them",
            pattern.as_str()
        )
    } else {
        format!(
            "no message type of the catalogue matches {:?} (types look like \
             dev.warren.echo.v1: try #.echo.#)",
            pattern.as_str()
        )
    }
}

/// `message` as one summary line, or one JSON line with `json`.
fn render(message: &TappedMessage, json: bool) -> String {
    let route = Route {
        received_at: message.received_at(),
        exchange: message.exchange(),
        routing_key: message.routing_key(),
    };
    let reading = match message.decode() {
        Ok(envelope) => Reading::Envelope(envelope),
        Err(error) => Reading::Unreadable {
            error,
            attributes: message.salvage(),
        },
    };
    if json {
        json_line(&route, message.body(), &reading)
    } else {
        summary_line(&route, message.body(), &reading)
    }
}

/// Writes `line` at once and flushes it, so it shows as it comes.
async fn write_line(stdout: &mut tokio::io::Stdout, line: &str) -> std::io::Result<()> {
    stdout.write_all(line.as_bytes()).await?;
    stdout.flush().await
}

/// A new tap after a lost connection, trying with back-off until one opens; `None` when
/// a stop signal comes first.
async fn reopen(
    settings: &Settings,
    plan: &Plan,
    timeout: Duration,
    stop: &mut StopSignals,
) -> Option<Tap> {
    for delay in reconnect_delays() {
        tokio::select! {
            () = stop.next() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        let opened = tokio::select! {
            () = stop.next() => return None,
            opened = Tap::open(settings, CONNECTION_NAME, &plan.bindings, timeout) => opened,
        };
        match opened {
            Ok(tap) => return Some(tap),
            Err(error) => eprintln!("warren: reconnecting failed: {error}"),
        }
    }
    None
}

/// Listeners for SIGINT (Ctrl-C), SIGTERM and SIGHUP, each meaning "stop".
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    fn listen() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Resolves on the next stop signal. Cancel-safe.
    async fn next(&mut self) {
        tokio::select! {
            Some(()) = self.interrupt.recv() => {}
            Some(()) = self.terminate.recv() => {}
            Some(()) = self.hangup.recv() => {}
            // Every stream ended: no signal can arrive any more.
            else => std::future::pending().await,
        }
    }
}
