//! warren's end-to-end harness: the fleet's real binaries against a real RabbitMQ.
//!
//! The harness has one type for each thing a test handles, used by every test:
//! - [`Vhost`] ([`vhost`]): a fresh vhost of one test on the shared broker (created with
//!   `rabbitmqctl`, deleted when dropped), so the whole suite runs in parallel against one
//!   broker without the tests seeing each other; it also runs the `warren` CLI
//!   ([`Vhost::warren`]) and the `rabbitmqctl` commands scoped to it.
//! - [`WarrenProcess`] ([`process`]): any fleet binary (`warren-echo`, `warren-tally`, the
//!   `warren` CLI) as a child process, built with a [`WarrenCommand`] (broker URL, args,
//!   environment, [`StoreFolder`], failpoints) against a vhost or a private node; its
//!   output is forwarded with a prefix and kept for assertions.
//! - [`BrokerClient`] ([`client`]): a connection of the test's own to any AMQP URL (a vhost
//!   or a private node): publish with confirms, get, drain, consume, queue states.
//! - [`ReplyQueue`] ([`replies`]): the one reply-queue declaration, read by polling or by a
//!   [`ReplyReader`] that reconnects whenever its connection dies ([`ReplyCollector`] keeps
//!   every outcome it reads).
//! - [`messages`]: what a test publishes ([`Request`], [`OutgoingMessage`]) and receives
//!   ([`ReceivedMessage`], [`parse_envelope`]).
//! - [`scenario`]: fixtures for the fault tests' preludes ([`scenario::TallyScenario`]).
//! - [`broker_node`]: private RabbitMQ nodes (start, stop, restart, alarms), for the tests
//!   that must break a broker: the shared one on 5672 is never touched.
//! - [`metrics`]: a worker's Prometheus endpoint (where, one scrape, one series).
//! - [`access`]: least-privilege users made with `warren topology apply` for one test,
//!   deleted when it ends ([`access::CreatedUsers`]).
//! - [`repository`]: the checkout (its root, its workers) and `promtool` on its files.
//! - [`asyncapi`]: `docs/asyncapi.yaml` held to the catalogue, the manifests, the
//!   examples and a running fleet's topology.
//! - [`proxy`], [`checker`], [`raw_amqp`]: a TCP proxy that cuts or blackholes, the fault
//!   tests' reliability count, and a bare AMQP publisher for what lapin refuses to send.
//!
//! Nothing here sleeps to synchronise: every wait polls the broker (or a child process) for
//! a condition until a deadline, and panics with what it was waiting for when the deadline
//! passes. Every wait on the broker is bounded ([`within_broker_timeout`], [`within_step`],
//! [`CLOSE_TIMEOUT`]): lapin's futures have no deadline of their own. The helpers panic on
//! anything that means the test environment is broken (the broker is unreachable, a binary
//! is missing), because a panic is how a test fails.
//!
//! The binaries are not dependencies of this crate, so `cargo test -p warren-e2e` alone does
//! not build them: run `cargo test --workspace` (or `cargo build --workspace` first).

pub mod access;
pub mod asyncapi;
pub mod broker_node;
pub mod checker;
pub mod client;
pub mod messages;
pub mod metrics;
pub mod process;
pub mod proxy;
pub mod raw_amqp;
pub mod replies;
pub mod repository;
pub mod scenario;
pub mod vhost;

use std::path::PathBuf;
use std::time::Duration;

use lapin::{Channel, Connection};

pub use client::{BrokerClient, QueueState};
pub use messages::{
    OutgoingMessage, ReceivedMessage, Request, attribute, cloudevents_properties, parse_envelope,
    request_properties,
};
pub use process::{READY_LOG, SESSION_LOST_LOG, StoreFolder, WarrenCommand, WarrenProcess};
pub use replies::{ReplyCollector, ReplyQueue, ReplyQueueLifetime, ReplyReader};
pub use vhost::{CliOutput, QueueCounts, Vhost};

/// The shared broker every test vhost lives on (user, password, host and port).
pub const BROKER_BASE_URL: &str = "amqp://guest:guest@127.0.0.1:5672";

/// The AMQP `content_type` of a structured-mode CloudEvent.
pub const CLOUDEVENTS_CONTENT_TYPE: &str = "application/cloudevents+json";

/// The direct exchange commands are published to, routed by message type.
pub const COMMANDS_EXCHANGE: &str = "warren.commands";

/// The direct exchange workers publish outcomes to, routed by reply queue name.
pub const REPLIES_EXCHANGE: &str = "warren.replies";

/// The echo worker's work queue.
pub const ECHO_QUEUE: &str = "warren.echo";

/// The echo worker's dead-letter queue.
pub const ECHO_DLQ: &str = "warren.echo.dlq";

/// The tally worker's work queue.
pub const TALLY_QUEUE: &str = "warren.tally";

/// The tally worker's dead-letter queue.
pub const TALLY_DLQ: &str = "warren.tally.dlq";

/// How long a worker may take to declare its topology and start consuming.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a worker may take to drain and exit after SIGTERM.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a `warren` CLI run may take before the harness gives up on it.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// How long closing a test's connection or channel may take: lapin's close can wait
/// forever for a close-ok (seen in CI: a test stuck for minutes on a connection the
/// broker had already closed), and the broker cleans up after a dropped socket anyway.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a test waits for the broker to answer one operation (a connect, a passive
/// declare) before it fails: lapin's futures have no deadline of their own, and a test
/// that fails says more than one that hangs until CI gives up.
pub const BROKER_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one broker operation (connect, consume, ack, passive declare) of a test's
/// reader of outcomes may take before the reader starts over on a new connection: lapin's
/// futures may never resolve once the broker has dropped the connection (seen in CI: an
/// ack pending when a node stopped hung a reader for good while the replies piled up).
pub const READER_STEP: Duration = Duration::from_secs(5);

/// The default deadline for a message the test expects to arrive.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// The pause between two polls of the broker (or of a child's output) while waiting for a
/// condition.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// `operation`'s output, given [`BROKER_ANSWER_TIMEOUT`] to arrive.
///
/// # Panics
/// When the broker does not answer within [`BROKER_ANSWER_TIMEOUT`]; `what` says what was
/// asked.
pub async fn within_broker_timeout<T>(
    what: &str,
    operation: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(BROKER_ANSWER_TIMEOUT, operation)
        .await
        .unwrap_or_else(|_| {
            panic!("{what}: no answer from the broker within {BROKER_ANSWER_TIMEOUT:?}")
        })
}

/// `operation`'s output, or `None` when it took longer than [`READER_STEP`].
pub async fn within_step<T>(operation: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(READER_STEP, operation).await.ok()
}

/// Closes `connection`, best effort: bounded by [`CLOSE_TIMEOUT`], errors ignored.
pub async fn close_connection(connection: &Connection, reason: &str) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, reason.into())).await;
}

/// Closes `channel`, best effort: bounded by [`CLOSE_TIMEOUT`], errors ignored.
pub async fn close_channel(channel: &Channel, reason: &str) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, reason.into())).await;
}

/// The path of the fleet binary `name` (`warren-echo`, `warren`, …) in the target folder
/// this test binary was built into.
///
/// # Panics
/// When the binary has not been built.
pub fn bin_path(name: &str) -> PathBuf {
    let test_binary = std::env::current_exe().expect("the path of the running test binary");
    // Test binaries live in `target/<profile>/deps/`; the fleet's binaries one level up.
    let deps = test_binary
        .parent()
        .expect("the test binary lives in a folder");
    let profile_dir = if deps.ends_with("deps") {
        deps.parent().expect("`deps` lives in the profile folder")
    } else {
        deps
    };
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "binary `{}` is missing: run `cargo test --workspace` (or `cargo build --workspace` \
         first) so the worker binaries are built",
        path.display()
    );
    path
}
