//! `warren topology apply|diff`: the fleet's topology and least-privilege users
//! (docs/security.md, "Least privilege").
//!
//! The fleet is what `warren up` would run: every `warren-<name>` binary beside
//! `warren` ([`crate::up`]'s discovery); each one's manifest is what the binary itself
//! prints for `--manifest` (the manifests live in the worker crates, which the CLI does
//! not link, and asking the binary means the permissions always follow the code that
//! will run). The plan, diff and apply are `warren_ops::access`.
//!
//! Exit codes: `diff` 0 when nothing would change, 1 when something would; `apply` 0
//! when done; 2 for usage, a worker binary that cannot describe itself, the broker or
//! `rabbitmqctl` failing.

mod args;
mod run;

pub use args::TopologyArgs;
pub use run::run;
