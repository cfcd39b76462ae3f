//! `warren publish` and `warren request`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use warren_messages::{Fault, Payload, Progress};
use warren_runtime::{Delivered, Originator, OutcomeRecovery, Settings, UNREADABLE_OUTCOME};

use crate::common::{
    connect_failed, exchange_for, new_envelope, next_outcome_before, parse_duration,
    publish_confirmed, reconnect, requests_exit_code, source, unroutable,
};

/// How many requests are published before their confirms are awaited: the most that is
/// published again after a lost connection.
const CONFIRM_WINDOW: usize = 1000;

/// Arguments of `warren publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The message type, e.g. dev.warren.echo.v1.
    pub message_type: String,
    /// The data: inline JSON, @file, or - for stdin.
    pub data: String,
    /// How long connecting to the broker may take, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub token: crate::token::TokenArg,
}

/// Arguments of `warren request`.
#[derive(Debug, clap::Args)]
pub struct RequestArgs {
    /// The message type, e.g. dev.warren.echo.v1.
    pub message_type: String,
    /// The data: inline JSON, @file, or - for stdin. Several make a mix: each is a
    /// request of its own (and `--count` goes round them).
    #[arg(required = true, num_args = 1..)]
    pub data: Vec<String>,
    /// How long to wait for each request's outcome, e.g. 10s or 2m. Also sent as the
    /// request's deadline: no worker starts it later.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Send this many requests (default: one per data), going round the data.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: Option<u32>,
    /// Ask every hop for news as it finishes its step (`dev.warren.progress.v1`),
    /// printed before the outcome.
    #[arg(long)]
    pub progress: bool,
    #[command(flatten)]
    pub token: crate::token::TokenArg,
}

/// `warren publish`: sends one message without a reply queue and prints its id.
pub async fn publish(settings: &Settings, args: PublishArgs) -> anyhow::Result<ExitCode> {
    let data = crate::input::read_data(&args.data)?;
    let token = args.token.read()?;
    let has_token = token.is_some();
    let originator = Originator::connect_with_token(
        settings,
        "warren-cli publish",
        1,
        args.timeout,
        OutcomeRecovery::BrokerKeeps,
        token,
    )
    .await
    .map_err(|error| connect_failed(error, has_token))?;
    let envelope = new_envelope(&args.message_type, &*data);
    let confirm = originator
        .send(exchange_for(&args.message_type), &envelope)
        .await?;
    let delivered = confirm.wait().await?;
    if delivered == Delivered::Returned {
        let code = unroutable(&args.message_type);
        originator.close().await?;
        return Ok(code);
    }
    originator.close().await?;
    println!("{}", envelope.attributes.id);
    Ok(ExitCode::SUCCESS)
}

/// `warren request`: sends `--count` requests and prints each one's outcome envelope as
/// one JSON line as it arrives, with the request's trace id added as `trace_id` (what
/// `warren logs --trace` takes; see [`with_trace_id`]).
///
/// A lost connection is survived: the reply queue outlives it, requests whose confirm
/// had not arrived are published again (with the same ids), and an outcome that
/// arrives twice is printed once. Exit code 0 when every request got a result, 1 when
/// any got a fault (or could not be routed), 3 when any timed out and none faulted.
pub async fn request(settings: &Settings, args: RequestArgs) -> anyhow::Result<ExitCode> {
    let data = args
        .data
        .iter()
        .map(|argument| crate::input::read_data(argument))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let token = args.token.read()?;
    let count = args
        .count
        .unwrap_or_else(|| u32::try_from(data.len()).unwrap_or(u32::MAX));
    let prefetch = u16::try_from(count.min(1000)).unwrap_or(1000);
    let has_token = token.is_some();
    let mut originator = Originator::connect_with_token(
        settings,
        "warren-cli request",
        prefetch,
        args.timeout,
        OutcomeRecovery::BrokerKeeps,
        token,
    )
    .await
    .map_err(|error| connect_failed(error, has_token))?;
    let timeout = SignedDuration::try_from(args.timeout).unwrap_or(SignedDuration::MAX);

    // Each request waiting for its outcome, with its trace id.
    let mut pending: HashMap<String, Option<u128>> = HashMap::with_capacity(count as usize);
    let mut window = Vec::with_capacity(CONFIRM_WINDOW);
    for (sent, data) in (1..=count).zip(data.iter().cycle()) {
        let mut envelope = new_envelope(&args.message_type, &**data);
        envelope.attributes.replyto = Some(originator.reply_queue().to_owned());
        envelope.attributes.deadline = Timestamp::now().checked_add(timeout).ok();
        envelope.attributes.progress = args.progress;
        let trace_id = envelope
            .attributes
            .trace_parent()
            .map(|trace| trace.trace_id);
        pending.insert(envelope.attributes.id.clone(), trace_id);
        window.push(envelope);
        if window.len() < CONFIRM_WINDOW && sent < count {
            continue;
        }
        loop {
            match publish_confirmed(&originator, &window).await {
                Ok(routed) if routed.iter().all(|routed| *routed) => break,
                Ok(_) => {
                    let code = unroutable(&args.message_type);
                    originator.close().await?;
                    return Ok(code);
                }
                Err(error) => {
                    eprintln!("warren: publishing failed ({error}); reconnecting");
                    let give_up_at = tokio::time::Instant::now() + args.timeout;
                    reconnect(&mut originator, settings, give_up_at).await?;
                }
            }
        }
        window.clear();
    }

    let wait_until = tokio::time::Instant::now() + args.timeout;
    let mut summary = Summary::default();
    let mut answered: HashSet<String> = HashSet::with_capacity(count as usize);
    let stdout = std::io::stdout();
    while !pending.is_empty() {
        let Some(outcome) = next_outcome_before(&mut originator, settings, wait_until).await?
        else {
            break;
        };
        // An outcome that cannot be read is reported as a fault standing in for it,
        // tied to its request when its correlation id could be read: never dropped.
        if let Some(fault) = outcome.unreadable_fault(&source()) {
            let correlation_id = fault.attributes.correlationid.as_deref();
            // A second copy of an outcome already reported is a redelivery; anything
            // else, its request's or nobody's, is reported.
            if correlation_id.is_some_and(|id| answered.contains(id)) {
                continue;
            }
            let mut trace_id = outcome.salvaged.trace_parent().map(|trace| trace.trace_id);
            if let Some(id) = correlation_id
                && let Some(sent) = pending.remove(id)
            {
                answered.insert(id.to_owned());
                trace_id = sent.or(trace_id);
            }
            summary.fault(UNREADABLE_OUTCOME);
            print_line(&stdout, &with_trace_id(&fault.to_json_vec()?, trace_id))?;
            continue;
        }
        let Ok(envelope) = &outcome.envelope else {
            continue;
        };
        let attributes = &envelope.attributes;
        // The trace id of the request the outcome answers, as it was sent; an outcome
        // carries the same one in its `traceparent`.
        let own_trace_id = || attributes.trace_parent().map(|trace| trace.trace_id);
        if attributes.message_type == Progress::TYPE {
            // News before the outcome, printed when it belongs to a request waiting.
            if let Some(sent) = pending.get(attributes.correlation_id()) {
                summary.progress += 1;
                let trace_id = sent.or_else(own_trace_id);
                print_line(&stdout, &with_trace_id(&outcome.body, trace_id))?;
            }
            continue;
        }
        // An outcome for a request already answered (a redelivery) is not printed again.
        let Some(sent) = pending.remove(attributes.correlation_id()) else {
            continue;
        };
        let trace_id = sent.or_else(own_trace_id);
        answered.insert(attributes.correlation_id().to_owned());
        if attributes.message_type == Fault::TYPE {
            let code = serde_json::from_str::<Fault>(envelope.data.get())
                .map(|fault| fault.code)
                .unwrap_or_else(|_| "unknown".to_owned());
            summary.fault(&code);
        } else {
            summary.results += 1;
        }
        print_line(&stdout, &with_trace_id(&outcome.body, trace_id))?;
    }
    let timed_out = pending.len();
    if let Err(error) = originator.close().await {
        eprintln!("warren: could not delete the reply queue ({error}); it expires by itself");
    }
    if timed_out > 0 {
        eprintln!(
            "warren: {timed_out} of {count} requests got no outcome within {:?}",
            args.timeout
        );
    }
    if count > 1 {
        eprintln!("warren: {}", summary.line(count, timed_out));
    }
    Ok(requests_exit_code(summary.faults(), timed_out as u64))
}

/// What the outcomes of `warren request` were, for the line it ends with.
#[derive(Debug, Default)]
struct Summary {
    results: u64,
    progress: u64,
    faults_by_code: std::collections::BTreeMap<String, u64>,
}

impl Summary {
    fn fault(&mut self, code: &str) {
        *self.faults_by_code.entry(code.to_owned()).or_default() += 1;
    }

    fn faults(&self) -> u64 {
        self.faults_by_code.values().sum()
    }

    /// `20 requests: 12 results, 8 faults (card_declined 5, out_of_stock 3), 0 timed out`.
    fn line(&self, requests: u32, timed_out: usize) -> String {
        let mut line = format!("{requests} requests: {} results", self.results);
        line.push_str(&format!(", {} faults", self.faults()));
        if !self.faults_by_code.is_empty() {
            let codes: Vec<String> = self
                .faults_by_code
                .iter()
                .map(|(code, count)| format!("{code} {count}"))
                .collect();
            line.push_str(&format!(" ({})", codes.join(", ")));
        }
        line.push_str(&format!(", {timed_out} timed out"));
        if self.progress > 0 {
            line.push_str(&format!(", {} progress notes", self.progress));
        }
        line
    }
}

/// `envelope` (a JSON object, as it arrived) with `"trace_id":"<32 hex>"` added as its
/// last member, every other byte left as it was; unchanged without a trace id, or when
/// it is not an object. Last, so that a reader that keeps the last of a name that comes
/// twice (serde_json, jq) takes this one. Not a CloudEvents attribute: the name is the
/// one log lines use, so it can be pasted into `warren logs --trace`.
fn with_trace_id(envelope: &[u8], trace_id: Option<u128>) -> Cow<'_, [u8]> {
    let Some(trace_id) = trace_id else {
        return Cow::Borrowed(envelope);
    };
    let Some(first) = envelope.iter().position(|byte| !byte.is_ascii_whitespace()) else {
        return Cow::Borrowed(envelope);
    };
    let Some(last) = envelope
        .iter()
        .rposition(|byte| !byte.is_ascii_whitespace())
    else {
        return Cow::Borrowed(envelope);
    };
    if envelope[first] != b'{' || envelope[last] != b'}' || first == last {
        return Cow::Borrowed(envelope);
    }
    let empty = envelope[first + 1..last]
        .iter()
        .all(u8::is_ascii_whitespace);
    let member = format!(
        "{}\"trace_id\":\"{trace_id:032x}\"",
        if empty { "" } else { "," }
    );
    let mut with = Vec::with_capacity(envelope.len() + member.len());
    with.extend_from_slice(&envelope[..last]);
    with.extend_from_slice(member.as_bytes());
    with.extend_from_slice(&envelope[last..]);
    Cow::Owned(with)
}

/// Writes `line` and a newline to stdout at once, so lines of outcomes never mix.
fn print_line(stdout: &std::io::Stdout, line: &[u8]) -> std::io::Result<()> {
    let mut out = stdout.lock();
    out.write_all(line)?;
    out.write_all(b"\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_id_is_added_as_the_last_member_and_nothing_else_changes() {
        let trace_id = 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c;
        let envelope = br#"{"specversion":"1.0","id":"a","data":{"n":1.50}}"#;
        let with = with_trace_id(envelope, Some(trace_id));
        assert_eq!(
            std::str::from_utf8(&with).expect("UTF-8"),
            r#"{"specversion":"1.0","id":"a","data":{"n":1.50},"trace_id":"0af7651916cd43dd8448eb211c80319c"}"#
        );
        let value: serde_json::Value = serde_json::from_slice(&with).expect("still JSON");
        assert_eq!(value["trace_id"], "0af7651916cd43dd8448eb211c80319c");

        let spaced = with_trace_id(b" { }\n", Some(1));
        assert_eq!(
            std::str::from_utf8(&spaced).expect("UTF-8"),
            " { \"trace_id\":\"00000000000000000000000000000001\"}\n"
        );
        // A forged trace_id in the outcome is outweighed by ours, the last one.
        let forged = with_trace_id(br#"{"trace_id":"forged"}"#, Some(2));
        let value: serde_json::Value = serde_json::from_slice(&forged).expect("JSON");
        assert_eq!(value["trace_id"], "00000000000000000000000000000002");

        for unchanged in [&b"[1]"[..], b"", b"  ", b"{", b"\"{}\""] {
            assert!(
                matches!(with_trace_id(unchanged, Some(1)), Cow::Borrowed(_)),
                "{unchanged:?}"
            );
        }
        assert!(matches!(with_trace_id(envelope, None), Cow::Borrowed(_)));
    }

    #[test]
    fn the_summary_counts_results_and_faults_by_code() {
        let mut summary = Summary {
            results: 12,
            ..Summary::default()
        };
        summary.fault("card_declined");
        summary.fault("out_of_stock");
        summary.fault("card_declined");
        assert_eq!(summary.faults(), 3);
        assert_eq!(
            summary.line(16, 1),
            "16 requests: 12 results, 3 faults (card_declined 2, out_of_stock 1), 1 timed out"
        );
    }
}
