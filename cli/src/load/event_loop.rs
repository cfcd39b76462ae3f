//! The run itself: one task, a `select!` over the reply queue's outcomes, the publishes
//! in flight, the shape's pacing and a housekeeping tick; then the summary and the plot.

use std::future::Future;
use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiff::Timestamp;
use tokio::time::Instant;
use warren_runtime::{Originator, OutcomeRecovery, RuntimeError, Settings};

use super::args::LoadArgs;
use super::plot::render_plot;
use super::report::Summary;
use super::requests::{Published, Requests, publish_request};
use super::run_state::Run;
use super::shape::Shape;
use crate::common::{reconnect, requests_exit_code, unroutable};

/// The reply queue's prefetch: outcomes the broker may push before they are acked.
pub(super) const REPLY_PREFETCH: u16 = 2000;
/// Outcomes are acked (`multiple`) once this many are unacked, or at the next tick.
pub(super) const ACK_BATCH: u32 = 256;
/// The most publishes whose confirm has not arrived: what is published again after a
/// lost connection.
pub(super) const PUBLISH_WINDOW: usize = 2000;
/// How often timeouts are counted, acks flushed and the progress bar drawn.
pub(super) const TICK: Duration = Duration::from_millis(50);

/// Waits until `at`, or not at all.
async fn wait_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// What one turn of the loop ended with.
enum Step {
    Continue,
    Failed(RuntimeError),
}

/// `warren load`: runs the load, prints the summary (and draws the plot), and exits 0
/// when every request got a result, 1 when any got a fault (or could not be routed), 3
/// when any timed out and none faulted.
pub async fn run(settings: &Settings, args: LoadArgs) -> anyhow::Result<ExitCode> {
    let shape = Shape::of(&args)?;
    let data = args.request_data()?;
    let token = args.token.read()?.map(Arc::new);
    // Opened first, so a plot that cannot be written stops the run before it starts.
    let plot_file = match &args.plot {
        Some(path) => Some(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write the plot to {}", path.display()))?,
        ),
        None => None,
    };
    let recovery = outcome_recovery(&args, shape);
    // The token names the reply queue (its subject's); each publish attaches it.
    let mut originator = Originator::connect_with_token(
        settings,
        "warren-cli load",
        REPLY_PREFETCH,
        args.timeout,
        recovery,
        token.as_deref().cloned(),
    )
    .await
    .map_err(|error| crate::common::connect_failed(error, token.is_some()))?;
    let mut requests = Requests::new(
        &args.message_type,
        &data,
        originator.reply_queue(),
        args.timeout,
    );
    requests.ask_for_progress(args.progress);
    let envelope_bytes = requests
        .envelope(
            requests.new_id(),
            requests.deadline(Timestamp::now()),
            Timestamp::now(),
        )
        .to_json_vec()?
        .len();
    let progress = progress_bar(args.messages);

    let started = Instant::now();
    let mut run = Run::new(shape, args.messages, args.timeout, started);
    let mut publisher = originator.publisher();
    let mut publishing = FuturesUnordered::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    while !run.is_done(publishing.len()) && !run.unroutable {
        let room = PUBLISH_WINDOW.saturating_sub(publishing.len());
        let wants_to_publish = run.wants_to_publish(room);
        let next_due = run.next_due();
        let step = tokio::select! {
            outcome = originator.next_raw_outcome() => match outcome {
                Ok(outcome) => {
                    run.record_raw_outcome(outcome, Instant::now());
                    if run.unacked_count >= ACK_BATCH {
                        run.flush_acks(&originator).await.map_or_else(Step::Failed, |()| Step::Continue)
                    } else {
                        Step::Continue
                    }
                }
                Err(error) => Step::Failed(error),
            },
            Some(published) = publishing.next(), if !publishing.is_empty() => {
                let published: Published = published;
                let left = publishing.len();
                match run.record_published(published, Instant::now(), left) {
                    Some(error) => Step::Failed(error),
                    None => Step::Continue,
                }
            }
            () = wait_until(next_due), if wants_to_publish => {
                let now = Instant::now();
                let timestamp = Timestamp::now();
                let deadline = requests.deadline(timestamp);
                for _ in 0..run.due_now(now, room) {
                    let id = requests.new_id();
                    let envelope = requests.envelope(id, deadline, timestamp);
                    run.record_made(id.as_u128(), deadline, now);
                    let publisher = publisher.clone();
                    publishing.push(publish_request(
                        publisher,
                        requests.exchange,
                        envelope,
                        id,
                        token.clone(),
                    ));
                }
                Step::Continue
            }
            _ = tick.tick() => {
                let now = Instant::now();
                run.expire(now);
                run.timeline.advance(now - started);
                if !progress.is_hidden() {
                    progress.set_position(run.finished());
                    progress.set_message(format!(
                        "{} in flight, {} faults, {} timeouts",
                        run.in_flight_count(),
                        run.counts.faults,
                        run.counts.timeouts
                    ));
                }
                if run.unacked_count > 0 {
                    run.flush_acks(&originator).await.map_or_else(Step::Failed, |()| Step::Continue)
                } else {
                    Step::Continue
                }
            }
        };
        if let Step::Failed(error) = step {
            let give_up_at = Instant::now() + args.timeout;
            recover(
                &error,
                &mut originator,
                settings,
                &mut run,
                &mut publishing,
                give_up_at,
            )
            .await?;
            publisher = originator.publisher();
            let timestamp = Timestamp::now();
            for (id, deadline) in std::mem::take(&mut run.to_publish_again) {
                // Only the ones still waiting: an outcome may have come without a confirm.
                if run.is_waiting_for(id.as_u128()) {
                    run.counts.republished += 1;
                    let envelope = requests.envelope(id, deadline, timestamp);
                    publishing.push(publish_request(
                        publisher.clone(),
                        requests.exchange,
                        envelope,
                        id,
                        token.clone(),
                    ));
                }
            }
        }
    }
    let ended = Instant::now();
    progress.finish_and_clear();
    if let Err(error) = run.flush_acks(&originator).await {
        eprintln!("warren: could not ack the last outcomes ({error})");
    }
    if let Err(error) = originator.close().await {
        eprintln!("warren: could not delete the reply queue ({error}); it expires by itself");
    }
    if run.unroutable {
        return Ok(unroutable(&args.message_type));
    }

    let summary = Summary::of(
        run,
        &args,
        envelope_bytes,
        data.get().len(),
        recovery,
        ended,
    );
    if args.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &summary)?;
        out.write_all(b"\n")?;
        out.flush()?;
    } else {
        print!("{}", summary.table());
    }
    if let (Some(mut file), Some(path)) = (plot_file, &args.plot) {
        let svg = render_plot(&summary).context("cannot draw the plot")?;
        file.write_all(svg.as_bytes())
            .with_context(|| format!("cannot write the plot to {}", path.display()))?;
    }
    if summary.outcomes.timeout > 0 {
        eprintln!(
            "warren: {} of {} requests got no outcome within {:?}",
            summary.outcomes.timeout, summary.messages, args.timeout
        );
    }
    Ok(requests_exit_code(
        summary.outcomes.fault,
        summary.outcomes.timeout,
    ))
}

/// How the run gets outcomes a broker restart lost: a closed loop re-sends what it
/// still waits for (at most its in-flight window), unless `--durable-outcomes`; the
/// other shapes may wait for any number of requests, so the broker keeps their
/// outcomes rather than a reconnect sending them all again.
fn outcome_recovery(args: &LoadArgs, shape: Shape) -> OutcomeRecovery {
    match shape {
        Shape::Inflight { .. } if !args.durable_outcomes => OutcomeRecovery::OriginatorResends,
        _ => OutcomeRecovery::BrokerKeeps,
    }
}

/// After an error: reconnects, and collects the publishes the broker did not confirm.
async fn recover<F: Future<Output = Published>>(
    error: &RuntimeError,
    originator: &mut Originator,
    settings: &Settings,
    run: &mut Run,
    publishing: &mut FuturesUnordered<F>,
    give_up_at: Instant,
) -> anyhow::Result<()> {
    eprintln!("warren: lost the broker ({error}); reconnecting");
    run.forget_acks();
    reconnect(originator, settings, give_up_at).await?;
    run.counts.reconnects += 1;
    // The stale connection is closed, so every publish still waiting on it ends now.
    while let Some(published) = publishing.next().await {
        // Their errors are the one being recovered from.
        let _ = run.record_published(published, Instant::now(), publishing.len());
    }
    // Outcomes are transient: any may have been lost with the connection (read but
    // not yet handed over) or the broker (restarted), so every request without one is
    // sent again; duplicates of the outcomes that were not lost are dropped.
    if originator.recovery() == OutcomeRecovery::OriginatorResends {
        run.send_all_waiting_again();
    }
    Ok(())
}

fn progress_bar(messages: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(messages), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} {per_sec} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::super::args::parse_args;
    use super::*;

    #[test]
    fn only_a_closed_loop_re_sends_and_only_unless_told_to_keep() {
        let recovery = |args: &[&str]| {
            let args = parse_args(args).expect("valid arguments");
            let shape = Shape::of(&args).expect("a shape");
            outcome_recovery(&args, shape)
        };
        assert_eq!(
            recovery(&["--inflight", "10"]),
            OutcomeRecovery::OriginatorResends
        );
        assert_eq!(
            recovery(&["--inflight", "10", "--durable-outcomes"]),
            OutcomeRecovery::BrokerKeeps
        );
        for open_loop in [
            &["--prefill"][..],
            &["--rate", "100"],
            &["--burst", "10", "--interval", "1s"],
        ] {
            assert_eq!(
                recovery(open_loop),
                OutcomeRecovery::BrokerKeeps,
                "{open_loop:?}"
            );
        }
    }
}
