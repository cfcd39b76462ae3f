//! A RabbitMQ node of one's own on this machine: `warren up` starts one when the
//! built-in broker URL finds nothing listening, and the end-to-end harness can start
//! its private nodes with the same code.
//!
//! A node is described by a [`NodeSpec`]: a node name (`warren-<id>@localhost` for the
//! fleet's), an AMQP port on 127.0.0.1, and a folder holding everything of its own (data,
//! logs, pid file, plugins file, configuration). [`LocalNode::start`] writes the folder,
//! runs `rabbitmq-server -detached` with `RABBITMQ_*` variables naming all of it (and a
//! free Erlang distribution port), and waits until the node accepts AMQP as `guest` and
//! answers `rabbitmq-diagnostics -n <node> ping`; [`LocalNode::stop`] runs
//! `rabbitmqctl -n <node> stop` and waits until the VM is gone.
//!
//! Facts of the system's packages that shape the code:
//! - Debian's `rabbitmq-server` wrapper switches to the `rabbitmq` user when run as root,
//!   so the node's folder is handed to that user; for anyone else the wrapper refuses to
//!   run, so the scripts behind it (`/usr/lib/rabbitmq/bin`) are run directly.
//! - The wrapper changes to `/var/lib/rabbitmq` first: every path given is absolute.
//! - A boot takes several seconds (about 8 s on a small machine), and a VM that cannot
//!   bind its ports dies: a boot that crashes is tried again on another distribution
//!   port.
//! - The first Erlang node of a network namespace starts `epmd`, which outlives it; a
//!   node that started it ends it when it stops (`epmd -kill` refuses while any other
//!   node is registered).

mod error;
mod node;
mod probe;
mod spec;
mod tools;

pub use error::LocalBrokerError;
pub use node::{LocalNode, STOP_TIMEOUT};
pub use probe::{
    DEFAULT_AMQP_URL, broker_address, free_port, is_default_url, process_alive, tcp_answers,
};
pub use spec::{DEFAULT_START_TIMEOUT, NodeSpec};
