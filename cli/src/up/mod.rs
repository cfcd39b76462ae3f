//! `warren up`: run the fleet as child processes in the foreground.
//!
//! [`run()`] finds the worker binaries ([`discovery`]), takes the run folder's lock
//! ([`lock`]), makes sure there is a broker ([`broker`]: a node of the fleet's own when
//! the built-in URL finds nothing), then runs each worker under its own supervisor
//! ([`supervise`]), which re-prints the child's output with a `[name] ` prefix
//! ([`output`]), restarts a child that exits on its own ([`backoff`]), and on shutdown
//! ([`signals`]) sends SIGTERM, waits for the grace period, then SIGKILL; the broker
//! node, if it is the fleet's own, stops last.

mod args;
mod backoff;
mod broker;
pub(crate) mod discovery;
mod error;
mod events;
mod lock;
mod observe;
mod output;
mod run;
mod signals;
mod supervise;

pub use args::UpArgs;
pub use error::UpError;
pub use run::run;
