//! The arguments of `warren dlq`.

use crate::common::parse_worker_name;

/// Arguments of `warren dlq`.
#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub(super) command: DlqCommand,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum DlqCommand {
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
pub(super) struct ListArgs {
    /// The worker, e.g. echo (whose dead letters are in warren.echo.dlq).
    #[arg(value_parser = parse_worker_name)]
    pub(super) worker: String,
    /// Show at most this many dead letters, oldest first.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) limit: u32,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Debug, clap::Args)]
pub(super) struct ShowArgs {
    /// The worker, e.g. echo.
    #[arg(value_parser = parse_worker_name)]
    pub(super) worker: String,
    /// The dead letter: its message id, or its position in the queue (0 is the oldest).
    pub(super) message: String,
}

#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("selection")
        .required(true)
        .args(["all", "message_ids"])
))]
pub(super) struct ReplayArgs {
    /// The worker, e.g. echo.
    #[arg(value_parser = parse_worker_name)]
    pub(super) worker: String,
    /// Replay every dead letter in the queue.
    #[arg(long)]
    pub(super) all: bool,
    /// The message ids of the dead letters to replay.
    pub(super) message_ids: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub(super) struct PurgeArgs {
    /// The worker, e.g. echo.
    #[arg(value_parser = parse_worker_name)]
    pub(super) worker: String,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub(super) yes: bool,
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
}
