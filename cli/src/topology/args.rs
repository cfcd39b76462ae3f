//! `warren topology` arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `warren topology apply|diff`.
#[derive(Debug, Args)]
pub struct TopologyArgs {
    #[command(subcommand)]
    pub action: TopologyAction,
}

/// What to do with the plan.
#[derive(Debug, Subcommand)]
pub enum TopologyAction {
    /// Declare every exchange, queue and binding of the fleet and create one broker
    /// user per worker with least-privilege permissions (run once per deploy, as an
    /// administrator with `rabbitmqctl` access to the node).
    Apply(PlanArgs),
    /// Show what `apply` would change; exit 1 when something would, 0 when nothing.
    Diff(PlanArgs),
}

/// What the plan is made for.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The vhost (default: the broker URL's). The topology is declared there and the
    /// users' permissions are given there.
    #[arg(long)]
    pub vhost: Option<String>,
    /// Where each new worker URL (with its generated password) is written, one file per
    /// worker, `<worker>.url`, mode 0600: start the worker with
    /// `WARREN_AMQP_URL_FILE=<dir>/<worker>.url`. Default: `<run folder>/credentials`.
    #[arg(long)]
    pub password_dir: Option<PathBuf>,
    /// What each worker's user name starts with, before the worker's name. Users are
    /// broker-wide: use a prefix of your own where several fleets share a broker.
    #[arg(long, default_value = "warren-")]
    pub user_prefix: String,
    /// An originator to give a broker user of its own, `<prefix>originator-<name>`
    /// (repeatable): it may send commands and read its own reply queues
    /// (`warren.reply.<name>.…`) and nothing else; its URL goes to
    /// `<password dir>/originator-<name>.url`. `<name>` is also the subject of its tokens
    /// (docs/security.md).
    #[arg(long = "originator", value_name = "NAME")]
    pub originators: Vec<String>,
}
