//! The message contract from the command line: `warren types` (the catalogue),
//! `warren schema` (a type's JSON Schema; `--write` regenerates `docs/schemas/` and
//! `docs/messages.md`), `warren contract check` (every documented example through the
//! live fleet, every outcome against its schema). docs/messages.md.

mod catalogue;
mod check;
mod schema;

use clap::{Args, Subcommand};

pub use catalogue::{TypesArgs, types};
pub use check::CheckArgs;
pub use schema::{SchemaArgs, schema};

/// Arguments of `warren contract`.
#[derive(Debug, Args)]
pub struct ContractArgs {
    #[command(subcommand)]
    command: ContractCommand,
}

#[derive(Debug, Subcommand)]
enum ContractCommand {
    /// Send every documented request example (`docs/examples/<type>/`) to the live fleet
    /// and check each outcome: the promised type or fault code, and its documented
    /// schema. Prints a pass/fail table; exits 1 on any mismatch.
    Check(CheckArgs),
}

/// `warren contract …`.
pub async fn run(
    settings: &warren_runtime::Settings,
    args: ContractArgs,
) -> anyhow::Result<std::process::ExitCode> {
    match args.command {
        ContractCommand::Check(args) => check::run(settings, args).await,
    }
}
