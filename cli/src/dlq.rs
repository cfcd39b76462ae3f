//! `warren dlq list|show|replay|purge <worker>`: a worker's dead letters.
//!
//! The AMQP side is `warren_runtime::dead_letters`; this file parses arguments and
//! prints. Exit codes: 0 done; 1 something was not replayed, a dead letter was not
//! found, or a purge was declined; 2 usage, configuration or broker errors, a missing
//! dead-letter queue, or a purge without `--yes` when there is no terminal to ask on.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use jiff::SignedDuration;
use serde_json::{Value, json};
use warren_ops::dead_letters::{self, DeadLetter, ReplayReport, ReplaySelection};
use warren_runtime::topology::{check_worker_name, dead_letter_queue_name};
use warren_runtime::{RuntimeError, Settings};

/// Arguments of `warren dlq`.
#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DlqCommand {
    /// List a worker's dead letters in queue order, without removing them.
    List(ListArgs),
    /// Show one dead letter: every property and header, and its body.
    Show(ShowArgs),
    /// Republish dead letters to their original exchange and routing key, then remove
    /// them from the dead-letter queue.
    Replay(ReplayArgs),
    /// Delete every dead letter of a worker.
    Purge(PurgeArgs),
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// The worker, e.g. echo (whose dead letters are in warren.echo.dlq).
    #[arg(value_parser = parse_worker_name)]
    worker: String,
    /// Show at most this many dead letters, oldest first.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// The worker, e.g. echo.
    #[arg(value_parser = parse_worker_name)]
    worker: String,
    /// The dead letter: its message id, or its position in the queue (0 is the oldest).
    message: String,
}

#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("selection")
        .required(true)
        .args(["all", "message_ids"])
))]
struct ReplayArgs {
    /// The worker, e.g. echo.
    #[arg(value_parser = parse_worker_name)]
    worker: String,
    /// Replay every dead letter in the queue.
    #[arg(long)]
    all: bool,
    /// The message ids of the dead letters to replay.
    message_ids: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct PurgeArgs {
    /// The worker, e.g. echo.
    #[arg(value_parser = parse_worker_name)]
    worker: String,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    yes: bool,
}

/// Checks a worker name by the one rule ([`check_worker_name`]).
fn parse_worker_name(text: &str) -> Result<String, String> {
    check_worker_name(text)?;
    Ok(text.to_owned())
}

/// Runs `warren dlq …`.
pub async fn run(settings: &Settings, args: DlqArgs) -> anyhow::Result<ExitCode> {
    if let DlqCommand::Purge(purge) = &args.command
        && !purge.yes
        && !std::io::stdin().is_terminal()
    {
        eprintln!(
            "warren: refusing to purge {} without --yes: stdin is not a terminal to ask on",
            dead_letter_queue_name(&purge.worker)
        );
        return Ok(ExitCode::from(2));
    }
    let connection = warren_runtime::connect(&settings.amqp, "warren-cli dlq")
        .await
        .context("cannot connect to the broker")?;
    let result = match args.command {
        DlqCommand::List(args) => list(&connection, args).await,
        DlqCommand::Show(args) => show(&connection, args).await,
        DlqCommand::Replay(args) => replay(&connection, settings, args).await,
        DlqCommand::Purge(args) => purge(&connection, args).await,
    };
    warren_runtime::close_connection(&connection, "done").await;
    result
}

/// Turns "the queue does not exist" into words.
fn explain(error: RuntimeError, worker: &str) -> anyhow::Error {
    if dead_letters::is_queue_missing(&error) {
        anyhow::anyhow!(
            "there is no dead-letter queue {}: has the {worker} worker ever started on this \
             broker and vhost?",
            dead_letter_queue_name(worker)
        )
    } else {
        anyhow::Error::new(error)
    }
}

async fn list(connection: &lapin::Connection, args: ListArgs) -> anyhow::Result<ExitCode> {
    let queue = dead_letter_queue_name(&args.worker);
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    let letters = dead_letters::browse(connection, &args.worker, limit)
        .await
        .map_err(|error| explain(error, &args.worker))?;
    if args.json {
        let mut lines = String::new();
        for letter in &letters {
            lines.push_str(&summary_json(letter).to_string());
            lines.push('\n');
        }
        print_stdout(&lines)?;
    } else if !letters.is_empty() {
        print_stdout(&table(&letters))?;
    }
    if letters.is_empty() {
        eprintln!("{queue} is empty");
    } else if letters.len() == limit {
        let waiting = dead_letters::count(connection, &args.worker)
            .await
            .map_err(|error| explain(error, &args.worker))?;
        if usize::try_from(waiting).is_ok_and(|waiting| waiting > limit) {
            eprintln!(
                "showing the first {limit} of {waiting} dead letters in {queue} (see --limit)"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn summary_json(letter: &DeadLetter) -> Value {
    json!({
        "position": letter.position,
        "message_id": letter.message_id,
        "type": letter.message_type,
        "correlation_id": letter.correlation_id,
        "source": letter.source.as_str(),
        "reason": letter.reason,
        "error": letter.error,
        "worker": letter.worker,
        "death_count": letter.death_count,
        "dead_lettered_at": letter.dead_lettered_at.map(|at| at.to_string()),
        "age_seconds": letter.age.map(|age| age.as_secs()),
        "original_exchange": letter.original_exchange,
        "original_routing_key": letter.original_routing_key,
        "body_bytes": letter.body.len(),
    })
}

/// A column-aligned table of dead letters, with a header line.
fn table(letters: &[DeadLetter]) -> String {
    let dash = || "-".to_owned();
    let rows: Vec<[String; 7]> = letters
        .iter()
        .map(|letter| {
            [
                letter.position.to_string(),
                letter.age.map_or_else(dash, format_age),
                letter.reason.clone().unwrap_or_else(dash),
                letter
                    .death_count
                    .map_or_else(dash, |count| count.to_string()),
                letter.message_type.clone().unwrap_or_else(dash),
                letter.correlation_id.clone().unwrap_or_else(dash),
                letter.message_id.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let header = [
        "POSITION",
        "AGE",
        "REASON",
        "DEATHS",
        "TYPE",
        "CORRELATION ID",
        "MESSAGE ID",
    ]
    .map(str::to_owned);
    let mut widths = header.clone().map(|title| title.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `42s`, `5m12s`, `3h4m`, `2d5h`: the two largest units.
fn format_age(age: SignedDuration) -> String {
    let seconds = age.as_secs().max(0);
    let (days, hours, minutes, secs) = (
        seconds / 86_400,
        seconds % 86_400 / 3_600,
        seconds % 3_600 / 60,
        seconds % 60,
    );
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

async fn show(connection: &lapin::Connection, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let queue = dead_letter_queue_name(&args.worker);
    let by_position = match args.message.parse::<usize>() {
        Ok(position) => dead_letters::browse(connection, &args.worker, position.saturating_add(1))
            .await
            .map_err(|error| explain(error, &args.worker))?
            .into_iter()
            .nth(position),
        Err(_) => None,
    };
    let letter = match by_position {
        Some(letter) => Some(letter),
        None => dead_letters::find(connection, &args.worker, &args.message)
            .await
            .map_err(|error| explain(error, &args.worker))?,
    };
    let Some(letter) = letter else {
        eprintln!(
            "warren: no dead letter in {queue} has the message id or position {:?}",
            args.message
        );
        return Ok(ExitCode::FAILURE);
    };
    print_stdout(&describe(&letter, &queue))?;
    Ok(ExitCode::SUCCESS)
}

/// Everything about one dead letter, for `warren dlq show`.
fn describe(letter: &DeadLetter, queue: &str) -> String {
    let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    let mut text = format!("dead letter at position {} of {queue}\n", letter.position);
    let age = match (letter.age, letter.dead_lettered_at) {
        (Some(age), Some(at)) => format!("{} (at {at})", format_age(age)),
        _ => "-".to_owned(),
    };
    let route = match letter.original_route() {
        Some((exchange, routing_key)) => {
            format!("exchange {exchange:?}, routing key {routing_key:?}")
        }
        None => "unknown: it cannot be replayed".to_owned(),
    };
    let summary = [
        ("message id", or_dash(&letter.message_id)),
        ("type", or_dash(&letter.message_type)),
        ("correlation id", or_dash(&letter.correlation_id)),
        ("dead-lettered by", letter.source.as_str().to_owned()),
        ("reason", or_dash(&letter.reason)),
        ("error", or_dash(&letter.error)),
        ("worker", or_dash(&letter.worker)),
        ("from queue", or_dash(&letter.dead_lettered_from_queue)),
        (
            "deaths",
            letter
                .death_count
                .map_or_else(|| "-".to_owned(), |count| count.to_string()),
        ),
        ("age", age),
        ("original route", route),
    ];
    for (name, value) in summary {
        text.push_str(&format!("  {:<18}{value}\n", format!("{name}:")));
    }
    text.push_str("properties:\n");
    for (name, value) in &letter.properties {
        text.push_str(&format!("  {name}: {value}\n"));
    }
    text.push_str("headers:\n");
    if letter.headers.is_empty() {
        text.push_str("  (none)\n");
    }
    for (name, value) in &letter.headers {
        text.push_str(&format!("  {name}: {value}\n"));
    }
    let body = &letter.body;
    let json_text = std::str::from_utf8(body).ok().filter(|body_text| {
        serde_json::from_str::<Box<serde_json::value::RawValue>>(body_text).is_ok()
    });
    match json_text {
        Some(body_text) => {
            text.push_str(&format!(
                "body ({} bytes, JSON):\n{}\n",
                body.len(),
                pretty_json(body_text)
            ));
        }
        None => match std::str::from_utf8(body) {
            Ok(body_text) => {
                text.push_str(&format!(
                    "body ({} bytes, not JSON):\n{body_text}\n",
                    body.len()
                ));
            }
            Err(_) => text.push_str(&format!(
                "body ({} bytes, not UTF-8; invalid bytes shown as \u{fffd}):\n{}\n",
                body.len(),
                String::from_utf8_lossy(body)
            )),
        },
    }
    text
}

/// Indents valid JSON `text` two spaces a level, keeping its keys in their order and its
/// numbers as written (which a round trip through `serde_json::Value` would not).
fn pretty_json(text: &str) -> String {
    fn new_line(out: &mut String, depth: usize) {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    while let Some(character) = chars.next() {
        if in_string {
            out.push(character);
            if escaped {
                escaped = false;
            } else if character == '\\' {
                escaped = true;
            } else if character == '"' {
                in_string = false;
            }
            continue;
        }
        match character {
            '"' => {
                in_string = true;
                out.push(character);
            }
            '{' | '[' => {
                while chars.next_if(|next| next.is_ascii_whitespace()).is_some() {}
                let close = if character == '{' { '}' } else { ']' };
                out.push(character);
                if chars.next_if_eq(&close).is_some() {
                    out.push(close);
                } else {
                    depth += 1;
                    new_line(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                new_line(&mut out, depth);
                out.push(character);
            }
            ',' => {
                out.push(character);
                new_line(&mut out, depth);
            }
            ':' => out.push_str(": "),
            whitespace if whitespace.is_ascii_whitespace() => {}
            other => out.push(other),
        }
    }
    out
}

async fn replay(
    connection: &lapin::Connection,
    settings: &Settings,
    args: ReplayArgs,
) -> anyhow::Result<ExitCode> {
    let queue = dead_letter_queue_name(&args.worker);
    let selection = if args.all {
        ReplaySelection::All
    } else {
        ReplaySelection::Ids(args.message_ids)
    };
    let report = dead_letters::replay(
        connection,
        &args.worker,
        &selection,
        settings.amqp.confirm_timeout(),
    )
    .await
    .map_err(|error| explain(error, &args.worker))?;
    print_replay_report(&report, &queue)?;
    Ok(if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_replay_report(report: &ReplayReport, queue: &str) -> anyhow::Result<()> {
    let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    let mut out = String::new();
    for replayed in &report.replayed {
        out.push_str(&format!(
            "replayed {} ({}) from position {} to exchange {:?} with routing key {:?}\n",
            or_dash(&replayed.message_id),
            or_dash(&replayed.message_type),
            replayed.position,
            replayed.exchange,
            replayed.routing_key
        ));
        if !replayed.removed_from_queue {
            eprintln!(
                "warren: {} was republished but its copy is still in {queue} (the replay was \
                 interrupted before the ack); replaying it again makes a duplicate, which \
                 warren's idempotent workers absorb",
                or_dash(&replayed.message_id)
            );
        }
    }
    for not_replayed in &report.not_replayed {
        eprintln!(
            "warren: not replayed: {} ({}) at position {}: {}; it stays in {queue}",
            or_dash(&not_replayed.message_id),
            or_dash(&not_replayed.message_type),
            not_replayed.position,
            not_replayed.reason
        );
    }
    for id in &report.missing_ids {
        eprintln!("warren: no dead letter in {queue} has the message id {id:?}");
    }
    if let Some(error) = &report.interrupted {
        eprintln!(
            "warren: the replay stopped early: {error}; every dead letter not listed as \
             replayed is still in {queue}"
        );
    }
    let selected = report.replayed.len() + report.not_replayed.len();
    out.push_str(&format!(
        "replayed {} of {selected} selected dead letters ({} read from {queue}); {} not \
         replayed, {} message ids not found\n",
        report.replayed.len(),
        report.read,
        report.not_replayed.len(),
        report.missing_ids.len()
    ));
    print_stdout(&out)?;
    Ok(())
}

/// Writes `text` to stdout; a reader that went away (`warren dlq list | head`) is not
/// an error.
fn print_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

async fn purge(connection: &lapin::Connection, args: PurgeArgs) -> anyhow::Result<ExitCode> {
    let queue = dead_letter_queue_name(&args.worker);
    if !args.yes {
        let waiting = dead_letters::count(connection, &args.worker)
            .await
            .map_err(|error| explain(error, &args.worker))?;
        if waiting == 0 {
            println!("{queue} is already empty");
            return Ok(ExitCode::SUCCESS);
        }
        let question = format!("purge {waiting} dead letters from {queue}? [y/N] ");
        if !confirm(question).await? {
            eprintln!("warren: not purged");
            return Ok(ExitCode::FAILURE);
        }
    }
    let purged = dead_letters::purge(connection, &args.worker)
        .await
        .map_err(|error| explain(error, &args.worker))?;
    println!("purged {purged} dead letters from {queue}");
    Ok(ExitCode::SUCCESS)
}

/// Asks `question` on stderr and reads the answer from stdin: only `y` or `yes` agree.
async fn confirm(question: String) -> anyhow::Result<bool> {
    let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut stderr = std::io::stderr().lock();
        stderr.write_all(question.as_bytes())?;
        stderr.flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        Ok(answer)
    })
    .await
    .context("cannot ask for confirmation")?
    .context("cannot read the answer from stdin")?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: DlqCommand,
    }

    #[test]
    fn worker_names_are_checked() {
        assert_eq!(parse_worker_name("echo"), Ok("echo".to_owned()));
        assert_eq!(parse_worker_name("order-2"), Ok("order-2".to_owned()));
        assert!(parse_worker_name("echo.dlq").is_err());
    }

    #[test]
    fn replay_takes_all_or_ids_but_not_both() {
        let parsed = Cli::try_parse_from(["dlq", "replay", "echo", "--all"]).expect("--all");
        assert!(matches!(
            parsed.command,
            DlqCommand::Replay(ReplayArgs { all: true, .. })
        ));
        let parsed = Cli::try_parse_from(["dlq", "replay", "echo", "a", "b"]).expect("ids");
        match parsed.command {
            DlqCommand::Replay(args) => assert_eq!(args.message_ids, ["a", "b"]),
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["dlq", "replay", "echo"]).is_err());
        assert!(Cli::try_parse_from(["dlq", "replay", "echo", "--all", "a"]).is_err());
        assert!(Cli::try_parse_from(["dlq", "list", "Echo"]).is_err());
        assert!(Cli::try_parse_from(["dlq", "list", "echo", "--limit", "0"]).is_err());
    }

    #[test]
    fn json_bodies_are_indented_as_written() {
        let body = r#"{"b":1.50, "a":[ ],"s":"x, \"y\": {[","n":{"z":[1,{}]}}"#;
        assert_eq!(
            pretty_json(body),
            "{\n  \"b\": 1.50,\n  \"a\": [],\n  \"s\": \"x, \\\"y\\\": {[\",\n  \"n\": {\n    \
             \"z\": [\n      1,\n      {}\n    ]\n  }\n}"
        );
        assert_eq!(pretty_json("[1]"), "[\n  1\n]");
        assert_eq!(pretty_json(" 7 "), "7");
    }

    #[test]
    fn ages_show_two_units() {
        assert_eq!(format_age(SignedDuration::from_secs(42)), "42s");
        assert_eq!(format_age(SignedDuration::from_secs(312)), "5m12s");
        assert_eq!(
            format_age(SignedDuration::from_secs(3 * 3600 + 240)),
            "3h4m"
        );
        assert_eq!(
            format_age(SignedDuration::from_secs(2 * 86_400 + 5 * 3600)),
            "2d5h"
        );
        assert_eq!(format_age(SignedDuration::from_secs(-5)), "0s");
    }
}
