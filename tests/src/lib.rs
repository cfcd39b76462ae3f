//! warren's end-to-end harness: the fleet's real binaries against a real RabbitMQ.
//!
//! Every test gets its own [`Vhost`] (created with `rabbitmqctl`, deleted when dropped), so
//! the whole suite runs in parallel against one broker without the tests seeing each other.
//! Inside it a test starts [`Worker`]s (the real `target/debug/warren-<name>` binaries as
//! child processes), drives them through a [`Broker`] connection of its own or through the
//! `warren` CLI ([`Vhost::warren`]), and reads what came back from [`ReplyQueue`]s and
//! queues.
//!
//! Nothing here sleeps to synchronise: every wait polls the broker (or a child process) for
//! a condition until a deadline, and panics with what it was waiting for when the deadline
//! passes. The helpers panic on anything that means the test environment is broken (the
//! broker is unreachable, a binary is missing), because a panic is how a test fails.
//!
//! The binaries are not dependencies of this crate, so `cargo test -p warren-e2e` alone does
//! not build them: run `cargo test --workspace` (or `cargo build --workspace` first).

pub mod broker_node;
pub mod checker;
pub mod fleet_check;
pub mod proxy;
pub mod raw_amqp;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ErrorKind};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use warren_messages::{Limits, decode_structured};

/// The shared broker every test vhost lives on (user, password, host and port).
pub const BROKER_BASE_URL: &str = "amqp://guest:guest@127.0.0.1:5672";

/// The AMQP `content_type` of a structured-mode CloudEvent.
pub const CLOUDEVENTS_CONTENT_TYPE: &str = "application/cloudevents+json";

/// The topic exchange commands are published to, routed by message type.
pub const COMMANDS_EXCHANGE: &str = "warren.commands";

/// The direct exchange workers publish outcomes to, routed by reply queue name.
pub const REPLIES_EXCHANGE: &str = "warren.replies";

/// The echo worker's work queue.
pub const ECHO_QUEUE: &str = "warren.echo";

/// The echo worker's dead-letter queue.
pub const ECHO_DLQ: &str = "warren.echo.dlq";

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

/// `operation`'s output.
///
/// # Panics
/// When the broker does not answer within [`BROKER_ANSWER_TIMEOUT`]; `what` says what was
/// asked.
pub async fn answered<T>(what: &str, operation: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BROKER_ANSWER_TIMEOUT, operation)
        .await
        .unwrap_or_else(|_| {
            panic!("{what}: no answer from the broker within {BROKER_ANSWER_TIMEOUT:?}")
        })
}

/// How long one broker operation (consume, ack, passive declare) of a test's reader of
/// outcomes may take before the reader starts over on a new connection: lapin's futures
/// may never resolve once the broker has dropped the connection (seen in CI: an ack
/// pending when a node stopped hung a reader for good while the replies piled up).
pub const READER_STEP: Duration = Duration::from_secs(5);

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

/// The default deadline for a message the test expects to arrive.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// The pause between two polls of the broker while waiting for a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

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

/// Percent-encodes `text` for one segment of an AMQP URL (the vhost).
fn url_encode_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Runs `rabbitmqctl` with `args`, panicking with its output when it fails.
async fn rabbitmqctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|error| panic!("cannot run `rabbitmqctl {}`: {error}", args.join(" ")));
    assert!(
        output.status.success(),
        "`rabbitmqctl {}` failed with {}: {}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh RabbitMQ vhost of one test, deleted (with everything in it) when dropped.
#[derive(Debug)]
pub struct Vhost {
    name: String,
    amqp_url: String,
}

impl Vhost {
    /// Creates a vhost `warren-test-<uuid>` and lets the `guest` user do anything in it.
    ///
    /// # Panics
    /// When `rabbitmqctl` fails.
    pub async fn create() -> Vhost {
        let name = format!("warren-test-{}", uuid::Uuid::new_v4());
        rabbitmqctl(&["add_vhost", &name]).await;
        // Built before the permissions are set, so a failure below still deletes the vhost.
        let vhost = Vhost {
            amqp_url: format!("{BROKER_BASE_URL}/{}", url_encode_segment(&name)),
            name,
        };
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &vhost.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ])
        .await;
        vhost
    }

    /// The vhost's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The broker URL of this vhost, as `WARREN_AMQP_URL` takes it.
    pub fn amqp_url(&self) -> &str {
        &self.amqp_url
    }

    /// A new connection of the test's own to this vhost.
    ///
    /// # Panics
    /// When the broker cannot be reached.
    pub async fn connect(&self) -> Broker {
        Broker::connect(self).await
    }

    /// Starts the worker binary `binary` (e.g. `warren-echo`) with `args` and waits until it
    /// consumes its work queue.
    ///
    /// # Panics
    /// When the binary cannot be started, exits early or is not ready in time.
    pub async fn start_worker(&self, binary: &str, args: &[&str]) -> Worker {
        self.start_worker_with_env(binary, args, &[]).await
    }

    /// Like [`Vhost::start_worker`], with environment variables `env` set for it too.
    pub async fn start_worker_with_env(
        &self,
        binary: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Worker {
        let mut worker = Worker::spawn_with_env(self, binary, args, env);
        worker.wait_ready().await;
        worker
    }

    /// Runs the `warren` CLI with `args` against this vhost and returns what it printed.
    ///
    /// Its stderr is copied to the test's stderr, so a failing test shows it.
    ///
    /// # Panics
    /// When the CLI cannot be started or runs longer than [`CLI_TIMEOUT`].
    pub async fn warren(&self, args: &[&str]) -> CliOutput {
        self.warren_with_env(args, &[]).await
    }

    /// Like [`Vhost::warren`], with environment variables `env` set too (over the
    /// vhost's `WARREN_AMQP_URL`, if one of them is that).
    pub async fn warren_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
        let mut command = Command::new(bin_path("warren"));
        command
            .args(args)
            .env("WARREN_AMQP_URL", &self.amqp_url)
            .env("WARREN_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start `warren {}`: {error}", args.join(" ")));
        let output = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "`warren {}` still runs after {CLI_TIMEOUT:?}",
                    args.join(" ")
                )
            })
            .unwrap_or_else(|error| panic!("cannot wait for `warren {}`: {error}", args.join(" ")));
        let output = CliOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        eprintln!("$ warren {} -> {}", args.join(" "), output.status);
        for line in output.stderr.lines() {
            eprintln!("[warren] {line}");
        }
        output
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        // Blocking in drop is fine in a test; deleting the vhost also closes every
        // connection to it.
        let result = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .stdin(Stdio::null())
            .output();
        match result {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "cannot delete vhost {}: {}{}",
                self.name,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) => eprintln!(
                "cannot run rabbitmqctl to delete vhost {}: {error}",
                self.name
            ),
        }
    }
}

/// What a `warren` CLI run printed and how it ended.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// How the process exited.
    pub status: ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl CliOutput {
    /// The exit code, or `None` when a signal ended the process.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The non-empty lines of stdout.
    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect()
    }

    /// Every stdout line parsed as an outcome envelope.
    ///
    /// # Panics
    /// When a line is not a valid CloudEvents envelope.
    pub fn envelopes(&self) -> Vec<Value> {
        self.stdout_lines()
            .into_iter()
            .map(|line| parse_envelope(line.as_bytes()))
            .collect()
    }
}

/// Parses `body` as a structured-mode CloudEvents 1.0 envelope: first checked with warren's
/// own decoder, then returned as plain JSON for assertions.
///
/// # Panics
/// When `body` is not a valid envelope.
pub fn parse_envelope(body: &[u8]) -> Value {
    if let Err(error) = decode_structured(body, &Limits::default()) {
        panic!(
            "not a valid CloudEvents envelope ({error}): {}",
            String::from_utf8_lossy(body)
        );
    }
    serde_json::from_slice(body).expect("a decoded envelope is JSON")
}

/// The string attribute `name` of an envelope, if it has one.
pub fn attribute<'a>(envelope: &'a Value, name: &str) -> Option<&'a str> {
    envelope.get(name).and_then(Value::as_str)
}

/// The lines a child process printed, shared with the task that reads them.
type CapturedLines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Copies each line `reader` produces to the test's stderr, prefixed by `prefix`, and
/// keeps it in `captured`.
fn forward_lines(
    prefix: String,
    reader: impl AsyncRead + Unpin + Send + 'static,
    captured: CapturedLines,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                    eprintln!("{prefix} {text}");
                    captured
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(text);
                }
                Err(error) => {
                    eprintln!("{prefix} <cannot read output: {error}>");
                    break;
                }
            }
        }
    });
}

/// One running worker process. Killed (SIGKILL) when dropped; stop it cleanly with
/// [`Worker::sigterm`] and [`Worker::wait`].
#[derive(Debug)]
pub struct Worker {
    binary: String,
    pid: u32,
    child: Child,
    output: CapturedLines,
    amqp_url: String,
    work_queue: String,
}

impl Worker {
    /// Starts the worker binary `binary` (e.g. `warren-echo`) with `args` in `vhost`,
    /// without waiting for it to be ready. Its stdout and stderr go to the test's stderr,
    /// prefixed with `[<binary>:<pid>]`.
    ///
    /// # Panics
    /// When the binary is missing or cannot be started.
    pub fn spawn(vhost: &Vhost, binary: &str, args: &[&str]) -> Worker {
        Self::spawn_with_env(vhost, binary, args, &[])
    }

    /// Like [`Worker::spawn`], with environment variables `env` set for it too.
    pub fn spawn_with_env(
        vhost: &Vhost,
        binary: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Worker {
        let mut child = Command::new(bin_path(binary))
            .args(args)
            .env("WARREN_AMQP_URL", vhost.amqp_url())
            .env("WARREN_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"));
        let pid = child
            .id()
            .expect("a process that was just started has an id");
        let prefix = format!("[{binary}:{pid}]");
        let output = CapturedLines::default();
        if let Some(stdout) = child.stdout.take() {
            forward_lines(prefix.clone(), stdout, output.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            forward_lines(prefix, stderr, output.clone());
        }
        let worker_name = binary.strip_prefix("warren-").unwrap_or(binary);
        Worker {
            binary: binary.to_owned(),
            pid,
            child,
            output,
            amqp_url: vhost.amqp_url().to_owned(),
            work_queue: format!("warren.{worker_name}"),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Every line the process printed so far (stdout and stderr, as they came).
    pub fn output_lines(&self) -> Vec<String> {
        self.output
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The worker's work queue, `warren.<name>`.
    pub fn work_queue(&self) -> &str {
        &self.work_queue
    }

    /// Waits until the work queue has a consumer, polling it with passive declares.
    ///
    /// # Panics
    /// When the worker exits first, or is not ready within [`READY_TIMEOUT`].
    pub async fn wait_ready(&mut self) {
        let connect = Connection::connect(&self.amqp_url, ConnectionProperties::default());
        let connection = answered("connect", connect)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.amqp_url));
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        loop {
            poll.tick().await;
            if let Some(status) = self.try_exit_status() {
                panic!(
                    "{} (pid {}) exited with {status} before consuming {}",
                    self.binary, self.pid, self.work_queue
                );
            }
            let state = queue_state(&connection, &self.work_queue).await;
            if state.is_some_and(|state| state.consumers >= 1) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} (pid {}) does not consume {} after {READY_TIMEOUT:?} (queue: {state:?})",
                self.binary,
                self.pid,
                self.work_queue
            );
        }
        // Closing is a courtesy; the vhost's deletion would close it anyway.
        close_connection(&connection, "ready").await;
    }

    /// Sends SIGTERM: the worker should stop consuming, finish what is in flight and exit 0.
    ///
    /// # Panics
    /// When the signal cannot be sent (the process is gone).
    pub fn sigterm(&self) {
        let pid = i32::try_from(self.pid).expect("process ids fit in an i32");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap_or_else(|error| panic!("cannot send SIGTERM to {} ({pid}): {error}", self.binary));
    }

    /// Waits for the process to exit.
    ///
    /// # Panics
    /// When it still runs after `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} (pid {}) still runs after {timeout:?}",
                    self.binary, self.pid
                )
            })
            .unwrap_or_else(|error| panic!("cannot wait for {}: {error}", self.binary))
    }

    /// Sends SIGTERM and waits up to [`EXIT_TIMEOUT`] for the process to exit.
    pub async fn stop(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait(EXIT_TIMEOUT).await
    }

    /// The exit status if the process has already exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|error| panic!("cannot poll {}: {error}", self.binary))
    }
}

/// What a passive declare says about a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueState {
    /// Messages ready for delivery (not counting delivered, unacked ones).
    pub messages: u32,
    /// Consumers attached.
    pub consumers: u32,
}

/// The state of `queue`, or `None` when it does not exist.
///
/// A passive declare of a missing queue closes its channel, so each call uses a channel of
/// its own.
async fn queue_state(connection: &Connection, queue: &str) -> Option<QueueState> {
    answered(
        &format!("inspect queue {queue}"),
        unbounded_queue_state(connection, queue),
    )
    .await
}

async fn unbounded_queue_state(connection: &Connection, queue: &str) -> Option<QueueState> {
    let channel = connection
        .create_channel()
        .await
        .unwrap_or_else(|error| panic!("cannot open a channel: {error}"));
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    match declared {
        Ok(declared) => Some(QueueState {
            messages: declared.message_count(),
            consumers: declared.consumer_count(),
        }),
        Err(error) if is_not_found(&error) => None,
        Err(error) => panic!("cannot inspect queue {queue}: {error}"),
    }
}

fn is_not_found(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ProtocolError(amqp_error)
            if *amqp_error.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
    )
}

/// A message to publish.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// The exchange (`""` is the default exchange, which routes by queue name).
    pub exchange: String,
    /// The routing key.
    pub routing_key: String,
    /// The body, sent as is.
    pub body: Vec<u8>,
    /// The AMQP properties.
    pub properties: BasicProperties,
}

impl OutgoingMessage {
    /// A message straight into `queue` through the default exchange, with content type
    /// [`CLOUDEVENTS_CONTENT_TYPE`] and persistent delivery.
    pub fn to_queue(queue: &str, body: impl Into<Vec<u8>>) -> OutgoingMessage {
        OutgoingMessage {
            exchange: String::new(),
            routing_key: queue.to_owned(),
            body: body.into(),
            properties: cloudevents_properties(),
        }
    }

    /// A command published to [`COMMANDS_EXCHANGE`], routed by its message type.
    pub fn command(message_type: &str, body: impl Into<Vec<u8>>) -> OutgoingMessage {
        OutgoingMessage {
            exchange: COMMANDS_EXCHANGE.to_owned(),
            routing_key: message_type.to_owned(),
            body: body.into(),
            properties: cloudevents_properties(),
        }
    }

    /// The same message with `properties` instead.
    pub fn with_properties(mut self, properties: BasicProperties) -> OutgoingMessage {
        self.properties = properties;
        self
    }
}

/// Properties of a structured-mode CloudEvent: content type
/// [`CLOUDEVENTS_CONTENT_TYPE`], persistent.
pub fn cloudevents_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type(CLOUDEVENTS_CONTENT_TYPE.into())
        .with_delivery_mode(2)
}

/// Properties that mirror a request envelope's attributes, as warren's own publishers set
/// them: `message_id`, `correlation_id`, and `reply_to` when there is one.
pub fn request_properties(attributes: &warren_messages::Attributes) -> BasicProperties {
    let properties = cloudevents_properties()
        .with_message_id(attributes.id.as_str().into())
        .with_correlation_id(attributes.correlation_id().into())
        .with_type(attributes.message_type.as_str().into());
    match &attributes.replyto {
        Some(replyto) => properties.with_reply_to(replyto.as_str().into()),
        None => properties,
    }
}

/// A request envelope the test built, and the message that carries it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The envelope's attributes (its id is also its correlation id).
    pub attributes: warren_messages::Attributes,
    /// The message to publish: a command to [`COMMANDS_EXCHANGE`], routed by type.
    pub message: OutgoingMessage,
}

impl Request {
    /// A new request of `message_type` from `/test` whose `data` is the JSON text `data`
    /// (any JSON, so tests can send payloads that fail their schema), with `replyto` when
    /// given. Its AMQP properties mirror the envelope (see [`request_properties`]).
    ///
    /// # Panics
    /// When `data` is not JSON.
    pub fn new(message_type: &str, data: &str, replyto: Option<&str>) -> Request {
        let schema = warren_messages::catalogue::lookup(message_type).map(|entry| entry.schema);
        let mut attributes =
            warren_messages::Attributes::request_of_type(message_type, schema, "/test");
        attributes.replyto = replyto.map(str::to_owned);
        let data = serde_json::value::RawValue::from_string(data.to_owned())
            .unwrap_or_else(|error| panic!("request data is not JSON ({error}): {data}"));
        let envelope = warren_messages::Envelope {
            attributes: attributes.clone(),
            data,
        };
        let body = envelope
            .to_json_vec()
            .expect("an envelope of valid JSON serializes");
        let message = OutgoingMessage::command(message_type, body)
            .with_properties(request_properties(&attributes));
        Request {
            attributes,
            message,
        }
    }

    /// The correlation id the outcome must carry.
    pub fn correlation_id(&self) -> &str {
        self.attributes.correlation_id()
    }
}

/// A message taken from a queue.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// The body.
    pub body: Vec<u8>,
    /// The AMQP properties.
    pub properties: BasicProperties,
    /// The exchange it was last published to.
    pub exchange: String,
    /// The routing key it was last published with.
    pub routing_key: String,
}

impl ReceivedMessage {
    /// The header `name` as text, when it is a string header.
    pub fn header(&self, name: &str) -> Option<String> {
        let value = self.properties.headers().as_ref()?.inner().get(name)?;
        match value {
            AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into()),
            AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
            _ => None,
        }
    }

    /// Every header, as its debug form (for failure messages).
    pub fn headers_debug(&self) -> BTreeMap<String, String> {
        self.properties
            .headers()
            .as_ref()
            .map(|headers| {
                headers
                    .inner()
                    .iter()
                    .map(|(name, value)| {
                        let shown = match value {
                            AMQPValue::LongString(text) => {
                                format!("{:?}", String::from_utf8_lossy(text.as_bytes()))
                            }
                            other => format!("{other:?}"),
                        };
                        (name.as_str().to_owned(), shown)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The body as an outcome envelope.
    ///
    /// # Panics
    /// When it is not a valid CloudEvents envelope.
    pub fn envelope(&self) -> Value {
        parse_envelope(&self.body)
    }
}

/// A connection of the test's own to its vhost, with a publisher-confirm channel.
pub struct Broker {
    connection: Connection,
    publisher: Channel,
    getter: Channel,
}

impl Broker {
    /// Connects to `vhost` and opens a channel in confirm mode.
    ///
    /// # Panics
    /// When the broker cannot be reached.
    pub async fn connect(vhost: &Vhost) -> Broker {
        let connect = Connection::connect(vhost.amqp_url(), ConnectionProperties::default());
        let connection = answered("connect", connect)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", vhost.amqp_url()));
        let publisher = connection
            .create_channel()
            .await
            .unwrap_or_else(|error| panic!("cannot open a channel: {error}"));
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap_or_else(|error| panic!("cannot enable publisher confirms: {error}"));
        let getter = connection
            .create_channel()
            .await
            .unwrap_or_else(|error| panic!("cannot open a channel: {error}"));
        Broker {
            connection,
            publisher,
            getter,
        }
    }

    /// The underlying connection.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The state of `queue`, or `None` when it does not exist.
    pub async fn queue_state(&self, queue: &str) -> Option<QueueState> {
        queue_state(&self.connection, queue).await
    }

    /// Polls `queue` until `condition` holds, and returns its state then.
    ///
    /// # Panics
    /// When the condition does not hold within `timeout`; `what` says what was awaited.
    pub async fn wait_for_queue(
        &self,
        queue: &str,
        timeout: Duration,
        what: &str,
        condition: impl Fn(&QueueState) -> bool,
    ) -> QueueState {
        let deadline = Instant::now() + timeout;
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        loop {
            poll.tick().await;
            let state = self.queue_state(queue).await;
            if let Some(state) = state.filter(&condition) {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "queue {queue}: {what} did not happen within {timeout:?} (last state: {state:?})"
            );
        }
    }

    /// Publishes one message as `mandatory` and waits for the broker to confirm it.
    ///
    /// # Panics
    /// When the broker nacks it or returns it as unroutable.
    pub async fn publish(&self, message: OutgoingMessage) {
        self.publish_all([message]).await;
    }

    /// Publishes every message as `mandatory`, pipelined, then waits for all the confirms.
    ///
    /// # Panics
    /// When the broker nacks one or returns one as unroutable.
    pub async fn publish_all(&self, messages: impl IntoIterator<Item = OutgoingMessage>) {
        let mut pending = Vec::new();
        for message in messages {
            let confirm = self
                .publisher
                .basic_publish(
                    message.exchange.as_str().into(),
                    message.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message.body,
                    message.properties,
                )
                .await
                .unwrap_or_else(|error| {
                    panic!(
                        "cannot publish to exchange {:?} with key {:?}: {error}",
                        message.exchange, message.routing_key
                    )
                });
            pending.push((message.exchange, message.routing_key, confirm));
        }
        for (exchange, routing_key, confirm) in pending {
            let confirmation = confirm.await.unwrap_or_else(|error| {
                panic!("no confirm for exchange {exchange:?} key {routing_key:?}: {error}")
            });
            assert!(
                confirmation.is_ack(),
                "the broker nacked a message to exchange {exchange:?} key {routing_key:?}"
            );
            if let Some(returned) = confirmation.take_message() {
                panic!(
                    "the broker returned a message to exchange {exchange:?} key {routing_key:?} \
                     as unroutable: {} {}",
                    returned.reply_code, returned.reply_text
                );
            }
        }
    }

    /// Takes one message from `queue` (acknowledged at once), if one is ready.
    ///
    /// # Panics
    /// When the queue does not exist.
    pub async fn try_get(&self, queue: &str) -> Option<ReceivedMessage> {
        let message = self
            .getter
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap_or_else(|error| panic!("cannot get from queue {queue}: {error}"))?;
        Some(ReceivedMessage {
            body: message.delivery.data,
            properties: message.delivery.properties,
            exchange: message.delivery.exchange.as_str().to_owned(),
            routing_key: message.delivery.routing_key.as_str().to_owned(),
        })
    }

    /// Takes the next message from `queue`, polling until one is there or `timeout` passes.
    pub async fn get_within(&self, queue: &str, timeout: Duration) -> Option<ReceivedMessage> {
        let deadline = Instant::now() + timeout;
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        loop {
            if let Some(message) = self.try_get(queue).await {
                return Some(message);
            }
            if Instant::now() >= deadline {
                return None;
            }
            poll.tick().await;
        }
    }

    /// Takes exactly `count` messages from `queue`, waiting up to `timeout` for them all.
    ///
    /// # Panics
    /// When fewer arrive in time.
    pub async fn get_messages(
        &self,
        queue: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<ReceivedMessage> {
        let deadline = Instant::now() + timeout;
        let mut messages = Vec::with_capacity(count);
        while messages.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.get_within(queue, left).await {
                Some(message) => messages.push(message),
                None => panic!(
                    "queue {queue}: only {} of {count} messages within {timeout:?}",
                    messages.len()
                ),
            }
        }
        messages
    }

    /// Takes every message that is ready in `queue` now.
    pub async fn drain(&self, queue: &str) -> Vec<ReceivedMessage> {
        let mut messages = Vec::new();
        while let Some(message) = self.try_get(queue).await {
            messages.push(message);
        }
        messages
    }

    /// Declares a reply queue `warren.reply.<uuid>` and binds it to [`REPLIES_EXCHANGE`]
    /// under its own name. It is exclusive to this connection, so it goes with the test.
    ///
    /// The exchange is the workers' to declare: start a worker before calling this.
    ///
    /// # Panics
    /// When the queue cannot be declared or bound.
    pub async fn reply_queue(&self) -> ReplyQueue {
        let name = format!("warren.reply.{}", uuid::Uuid::new_v4());
        let channel = self
            .connection
            .create_channel()
            .await
            .unwrap_or_else(|error| panic!("cannot open a channel: {error}"));
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|error| panic!("cannot declare reply queue {name}: {error}"));
        channel
            .queue_bind(
                name.as_str().into(),
                REPLIES_EXCHANGE.into(),
                name.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|error| {
                panic!("cannot bind reply queue {name} to {REPLIES_EXCHANGE}: {error}")
            });
        ReplyQueue { name }
    }
}

/// An originator's reply queue, bound to [`REPLIES_EXCHANGE`] under its own name.
#[derive(Debug, Clone)]
pub struct ReplyQueue {
    name: String,
}

impl ReplyQueue {
    /// The queue name: the `replyto` to put on requests.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next outcome, polling for up to `timeout`.
    ///
    /// # Panics
    /// When one arrives that is not a valid envelope.
    pub async fn next_within(&self, broker: &Broker, timeout: Duration) -> Option<Value> {
        let message = broker.get_within(&self.name, timeout).await?;
        Some(message.envelope())
    }

    /// The next outcome.
    ///
    /// # Panics
    /// When none arrives within [`MESSAGE_TIMEOUT`].
    pub async fn next(&self, broker: &Broker) -> Value {
        self.next_within(broker, MESSAGE_TIMEOUT)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "no outcome on reply queue {} within {MESSAGE_TIMEOUT:?}",
                    self.name
                )
            })
    }

    /// Every outcome waiting in the queue now.
    pub async fn drain(&self, broker: &Broker) -> Vec<Value> {
        broker
            .drain(&self.name)
            .await
            .iter()
            .map(ReceivedMessage::envelope)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhost_names_are_percent_encoded() {
        assert_eq!(url_encode_segment("warren-test-1a"), "warren-test-1a");
        assert_eq!(url_encode_segment("/"), "%2F");
        assert_eq!(url_encode_segment("a b"), "a%20b");
    }
}
