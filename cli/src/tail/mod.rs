//! `warren tail [--type PATTERN] [--json] [--count N]`: watch what flows on the bus.
//!
//! Tail binds a queue of its own to the fleet's exchanges and prints every message that
//! arrives there, as one summary line or one JSON line ([`render`]). The AMQP side is
//! `warren_ops::tap`: a server-named, exclusive, auto-delete queue with a message TTL
//! and a length bound (oldest dropped first), consumed without acks. An exchange gives
//! every bound queue its own copy, so no worker loses or waits for anything: the
//! workers' queues get every message as before.
//!
//! What is bound for a pattern ([`pattern`]):
//! - `warren.events` is a topic exchange: the pattern as it is.
//! - `warren.commands` is a direct exchange, which cannot take a pattern: every command
//!   type of warren's catalogue (`warren_messages::catalogue`) that the pattern matches,
//!   each as its own key, so a command type that no catalogue lists (another program's)
//!   is shown only when `--type` names it exactly.
//!
//! The one thing tail changes for others: commands are published `mandatory`, and the
//! broker counts a command as routed when any queue takes it, tail's included. While
//! tail runs, a command of a bound type that no worker consumes is taken by tail alone
//! instead of being returned, so its publisher is not told "no worker consumes it"
//! (`warren request` waits for its timeout instead of failing at once). Tail says so on
//! stderr when it binds command types. No AMQP binding avoids it: a copy that reaches a
//! queue by any path counts as routed.
//!
//! What tail does not show, and why:
//! - Outcomes (`warren.replies`): that exchange routes by reply queue name, and each
//!   name (`warren.reply.<uuid>`) is random and known only to its originator, so no
//!   pattern over types can select them; binding a name seen in a request's `replyto`
//!   would copy another person's private outcomes to anyone who can read the bus. What
//!   they say is visible elsewhere: every fault is also announced as
//!   `dev.warren.request.failed.v1` on `warren.events`, the pipeline's hops announce
//!   their steps as events, and an originator sees its own outcomes (`warren request`
//!   prints them).
//! - Retries and dead letters (`warren.retries`, `warren.dlx`): they are routed by work
//!   queue and worker name, not by type; a retry is a copy of a command shown when it
//!   was first published, and dead letters are read with `warren dlq`.
//!
//! A message that is not a valid envelope is shown anyway, as a worker would judge it
//! (`unreadable=<reason>`, with what can be read of it). A lost connection is rebuilt
//! with back-off, saying so on stderr: what was published in between is not shown.
//!
//! Exit codes: 0 after `--count` messages, on Ctrl-C, SIGTERM or SIGHUP, or when stdout
//! is closed (`warren tail | head`); 2 when the broker cannot be reached or the queue
//! cannot be bound within `--timeout`, or stdout fails otherwise.

mod args;
mod pattern;
mod render;
mod watch;

pub use args::TailArgs;
pub use watch::run;
