//! Least privilege for the fleet: one broker user per worker, allowed only what that
//! worker does (docs/security.md, "Least privilege").
//!
//! - [`plan`]: what the broker should hold, computed purely from the workers' manifests
//!   and the topology's names: every exchange, queue and binding, and per worker a user
//!   (`<prefix><worker>`) with its configure, write and read regexes.
//! - [`observed`]: what the broker holds, read with `rabbitmqctl` (users, permissions,
//!   exchanges, queues, bindings of one vhost).
//! - [`diff`](mod@diff): the changes that would take the broker from what it holds to the plan.
//! - [`apply`](mod@apply): carrying the plan out: the topology declared over AMQP, users and
//!   permissions set with `rabbitmqctl`, each new password written to a file of its own.

pub mod apply;
pub mod diff;
pub mod observed;
pub mod plan;

pub use apply::{
    AccessError, ApplyReport, apply, changes, url_with_credentials, url_with_vhost, vhost_of,
};
pub use diff::{Change, diff};
pub use observed::{Observed, Rabbitmqctl};
pub use plan::{FleetPlan, Permissions, WorkerAccess, WorkerManifest, plan_fleet};
