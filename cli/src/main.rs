//! `warren`: run the fleet, publish messages, send requests.
//!
//! Exit codes (`common.rs`): 0 success; 1 a request faulted or a message was not
//! delivered; 2 usage, configuration or connection errors; 3 a request timed out (and
//! none faulted).

mod common;
mod contract;
mod dlq;
mod input;
mod load;
mod logs;
mod new;
mod printable;
mod send;
mod tail;
#[cfg(test)]
mod testing;
mod token;
mod top;
mod topology;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use warren_runtime::{Overrides, Settings};

use crate::common::EXIT_USAGE;

/// warren: a fleet of workers that talk through RabbitMQ.
#[derive(Debug, Parser)]
#[command(name = "warren", version, about)]
struct Cli {
    /// The broker URL (overrides WARREN_AMQP_URL and amqp.url).
    #[arg(long, global = true)]
    amqp_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every worker of the fleet in the foreground, restarting crashed ones.
    Up(up::UpArgs),
    /// Publish one message, fire and forget; prints its id.
    Publish(send::PublishArgs),
    /// Send requests and print each outcome as one JSON line.
    Request(send::RequestArgs),
    /// Load the fleet with requests in a chosen shape; report latency and throughput.
    Load(load::LoadArgs),
    /// List, show, replay or purge a worker's dead letters.
    Dlq(dlq::DlqArgs),
    /// Scaffold a new worker in this checkout: its crate, message types and compose
    /// service.
    New(new::NewArgs),
    /// Search the fleet's log files, merged in time order: by trace, correlation id,
    /// worker, level, time; --follow keeps printing new lines.
    Logs(logs::LogsArgs),
    /// Watch what flows on the bus: print each message whose type matches a pattern as
    /// it passes, without taking it from any worker.
    Tail(tail::TailArgs),
    /// A live view of the fleet, one row per worker: messages and errors per second,
    /// p99 processing time, in flight, queue depth, consumers; q quits.
    Top(top::TopArgs),
    /// List the message catalogue: one type per line, with its versions, kind and
    /// meaning.
    Types(contract::TypesArgs),
    /// Print the JSON Schema of a message type; `--write docs` regenerates
    /// docs/schemas/ and docs/messages.md from the code.
    Schema(contract::SchemaArgs),
    /// Check the fleet against its documented contract.
    Contract(contract::ContractArgs),
    /// The fleet's topology and one least-privilege broker user per worker: `apply`
    /// declares and creates them, `diff` shows what apply would change.
    Topology(topology::TopologyArgs),
    /// Development tokens and keys: `issue` signs a token for `--token`, `keygen` makes
    /// a key pair for the workers' key set, `retire` takes a key out of it.
    Token(token::TokenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("warren: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let overrides = Overrides {
        amqp_url: cli.amqp_url,
        prefetch: None,
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up::run(args, &overrides).await,
            Command::Publish(args) => send::publish(&load_settings(&overrides)?, args).await,
            Command::Request(args) => send::request(&load_settings(&overrides)?, args).await,
            Command::Load(args) => load::run(&load_settings(&overrides)?, args).await,
            Command::Dlq(args) => dlq::run(&load_settings(&overrides)?, args).await,
            Command::New(args) => new::run(args),
            Command::Logs(args) => logs::run(args).await,
            Command::Tail(args) => tail::run(&load_settings(&overrides)?, args).await,
            Command::Top(args) => top::run(&load_settings(&overrides)?, args).await,
            Command::Types(args) => contract::types(args),
            Command::Schema(args) => contract::schema(args),
            Command::Contract(args) => contract::run(&load_settings(&overrides)?, args).await,
            Command::Topology(args) => topology::run(&load_settings(&overrides)?, args).await,
            Command::Token(args) => token::run(args, &overrides),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("warren: {}", describe(&error));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The error and its causes, joined by ": ", leaving out a cause whose text the message
/// before already contains (lapin's errors repeat their source in their own text).
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

fn load_settings(overrides: &Overrides) -> anyhow::Result<Settings> {
    Ok(Settings::load(overrides)?)
}

#[cfg(test)]
mod tests {
    use super::describe;

    /// An error whose text repeats its source's, as lapin's do.
    #[derive(Debug)]
    struct Repeating(std::io::Error);

    impl std::fmt::Display for Repeating {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "protocol error: {}", self.0)
        }
    }

    impl std::error::Error for Repeating {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn describe_leaves_out_causes_already_said() {
        let error = anyhow::Error::new(Repeating(std::io::Error::other("vhost x not found")))
            .context("cannot connect to the broker");
        assert_eq!(
            describe(&error),
            "cannot connect to the broker: protocol error: vhost x not found"
        );
        let plain = anyhow::anyhow!("no such file").context("cannot read data.json");
        assert_eq!(describe(&plain), "cannot read data.json: no such file");
    }
}
