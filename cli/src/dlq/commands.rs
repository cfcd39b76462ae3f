//! Each `warren dlq` command: what it asks the broker, what it prints, how it exits.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use warren_ops::dead_letters::{self, DeadLetterQueues, ReplaySelection};
use warren_runtime::topology::dead_letter_queue_name;
use warren_runtime::{RuntimeError, Settings};

use super::args::{DlqArgs, DlqCommand, ListArgs, PurgeArgs, ReplayArgs, ShowArgs};
use super::render::{describe, print_replay_report, print_stdout, summary_json, table};
use crate::common::EXIT_USAGE;

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
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let queues = DeadLetterQueues::connect(settings, "warren-cli dlq")
        .await
        .context("cannot connect to the broker")?;
    let result = match args.command {
        DlqCommand::List(args) => list(&queues, args).await,
        DlqCommand::Show(args) => show(&queues, args).await,
        DlqCommand::Replay(args) => replay(&queues, args).await,
        DlqCommand::Purge(args) => purge(&queues, args).await,
    };
    queues.close().await;
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

async fn list(queues: &DeadLetterQueues, args: ListArgs) -> anyhow::Result<ExitCode> {
    let queue = dead_letter_queue_name(&args.worker);
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    let letters = queues
        .browse(&args.worker, limit)
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
        let waiting = queues
            .count(&args.worker)
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

async fn show(queues: &DeadLetterQueues, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let queue = dead_letter_queue_name(&args.worker);
    let by_position = match args.message.parse::<usize>() {
        Ok(position) => queues
            .browse(&args.worker, position.saturating_add(1))
            .await
            .map_err(|error| explain(error, &args.worker))?
            .into_iter()
            .nth(position),
        Err(_) => None,
    };
    let letter = match by_position {
        Some(letter) => Some(letter),
        None => queues
            .find(&args.worker, &args.message)
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

async fn replay(queues: &DeadLetterQueues, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let queue = dead_letter_queue_name(&args.worker);
    let selection = if args.all {
        ReplaySelection::All
    } else {
        ReplaySelection::Ids(args.message_ids)
    };
    let report = queues
        .replay(&args.worker, &selection)
        .await
        .map_err(|error| explain(error, &args.worker))?;
    print_replay_report(&report, &queue)?;
    Ok(if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn purge(queues: &DeadLetterQueues, args: PurgeArgs) -> anyhow::Result<ExitCode> {
    let queue = dead_letter_queue_name(&args.worker);
    if !args.yes {
        let waiting = queues
            .count(&args.worker)
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
    let purged = queues
        .purge(&args.worker)
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
