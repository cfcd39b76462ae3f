//! What the fault-injection tests (`tests/faults.rs`) drive the fleet with: the tally
//! worker as a process of their own ([`TallyProcess`], with its store folder, failpoints
//! and settings), an originator's reply queue that survives its connection being closed
//! ([`ReplyCollector`]), the final totals read back through the worker
//! ([`read_totals`]), and broker-side counts `rabbitmqctl` alone knows
//! ([`wait_until_settled`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use warren_messages::{Limits, Payload, TallyGet, decode_structured};

use crate::{READY_TIMEOUT, REPLIES_EXCHANGE, ReceivedMessage, Request, Vhost, bin_path};

/// The tally worker's work queue.
pub const TALLY_QUEUE: &str = "warren.tally";

/// The tally worker's dead-letter queue.
pub const TALLY_DLQ: &str = "warren.tally.dlq";

/// The pause between two polls of some state while waiting for a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The pause before a [`ReplyCollector`] connects again after losing its connection.
const RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// What the runtime logs each time a session starts consuming.
const READY_LINE: &str = "ready: consuming";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fresh folder for the tally worker's store, shared by every instance of one test and
/// removed when dropped.
#[derive(Debug)]
pub struct StoreDir {
    path: PathBuf,
}

impl StoreDir {
    /// A new, not yet existing folder under the system's temp folder.
    pub fn new() -> StoreDir {
        StoreDir {
            path: std::env::temp_dir().join(format!("warren-e2e-faults-{}", uuid::Uuid::new_v4())),
        }
    }

    /// The folder (`WARREN_STORE__DIR`).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for StoreDir {
    fn default() -> Self {
        StoreDir::new()
    }
}

impl Drop for StoreDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One running `warren-tally` process with the settings a fault test gives it. Killed
/// (SIGKILL) when dropped.
///
/// Its log lines are copied to the test's stderr (prefixed `[warren-tally:<pid>]`) and
/// kept, so a test can count the sessions it started ([`TallyProcess::sessions_ready`])
/// and find what a failpoint logged.
#[derive(Debug)]
pub struct TallyProcess {
    pid: u32,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl TallyProcess {
    /// Starts `warren-tally` connected to `amqp_url` with its store in `store_dir`, the
    /// log at `info`, and `settings` as extra environment variables
    /// (`WARREN_FAILPOINTS`, `WARREN_RETRY__MAX_ATTEMPTS`, …), without waiting for it.
    ///
    /// # Panics
    /// When the binary is missing or cannot be started.
    pub fn spawn(amqp_url: &str, store_dir: &Path, settings: &[(&str, &str)]) -> TallyProcess {
        let mut command = Command::new(bin_path("warren-tally"));
        command
            .env("WARREN_AMQP_URL", amqp_url)
            .env("WARREN_LOG", "info")
            .env("WARREN_STORE__DIR", store_dir)
            .env_remove("WARREN_FAILPOINTS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in settings {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start warren-tally: {error}"));
        let pid = child
            .id()
            .expect("a process that was just started has an id");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let prefix = format!("[warren-tally:{pid}]");
        if let Some(stdout) = child.stdout.take() {
            keep_lines(prefix.clone(), stdout, Arc::clone(&lines));
        }
        if let Some(stderr) = child.stderr.take() {
            keep_lines(prefix, stderr, Arc::clone(&lines));
        }
        TallyProcess { pid, child, lines }
    }

    /// [`TallyProcess::spawn`], then waits until its first session consumes.
    pub async fn start(amqp_url: &str, store_dir: &Path, settings: &[(&str, &str)]) -> Self {
        let mut process = Self::spawn(amqp_url, store_dir, settings);
        process.wait_ready(1, READY_TIMEOUT).await;
        process
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How many sessions (connection, topology, consumer) this process started
    /// consuming in so far: 1 after start, one more after each recovery.
    pub fn sessions_ready(&self) -> usize {
        lock(&self.lines)
            .iter()
            .filter(|line| line.contains(READY_LINE))
            .count()
    }

    /// The log lines so far that contain `needle`.
    pub fn lines_containing(&self, needle: &str) -> Vec<String> {
        lock(&self.lines)
            .iter()
            .filter(|line| line.contains(needle))
            .cloned()
            .collect()
    }

    /// Waits until `sessions` sessions have started consuming.
    ///
    /// # Panics
    /// When the process exits first, or `timeout` passes.
    pub async fn wait_ready(&mut self, sessions: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.sessions_ready() >= sessions {
                return;
            }
            if let Some(status) = self.try_exit_status() {
                panic!(
                    "warren-tally (pid {}) exited with {status} before its session {sessions} \
                     consumed",
                    self.pid
                );
            }
            assert!(
                Instant::now() < deadline,
                "warren-tally (pid {}) started {} sessions, not {sessions}, within {timeout:?}",
                self.pid,
                self.sessions_ready()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Sends SIGKILL: the process ends at once, acking nothing more.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub fn sigkill(&self) {
        let pid = i32::try_from(self.pid).expect("process ids fit in an i32");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap_or_else(|error| panic!("cannot send SIGKILL to warren-tally ({pid}): {error}"));
    }

    /// Waits for the process to exit.
    ///
    /// # Panics
    /// When it still runs after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "warren-tally (pid {}) still runs after {timeout:?}",
                    self.pid
                )
            })
            .unwrap_or_else(|error| panic!("cannot wait for warren-tally: {error}"))
    }

    /// The exit status if the process has already exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|error| panic!("cannot poll warren-tally: {error}"))
    }
}

/// Copies each line `reader` produces to the test's stderr, prefixed by `prefix`, and
/// keeps it in `lines`.
fn keep_lines(
    prefix: String,
    reader: impl AsyncRead + Unpin + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(reader).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            eprintln!("{prefix} {line}");
            lock(&lines).push(line);
        }
    });
}

/// What a [`ReplyCollector`] received so far.
#[derive(Debug, Default)]
struct Collected {
    /// Every outcome as it arrived, duplicates included; a body that is not a valid
    /// envelope is kept as a JSON string of its text.
    outcomes: Vec<Value>,
    /// The distinct correlation ids among them.
    correlation_ids: HashSet<String>,
    /// Sessions (connection and consumer) opened so far.
    sessions: u32,
    /// Why the last session ended, if it did.
    last_error: Option<String>,
}

/// An originator's reply queue read by the test: a durable, non-exclusive
/// `warren.reply.<uuid>` bound to `warren.replies`, so it outlives a closed connection,
/// consumed by a task that connects again whenever its connection dies.
///
/// An outcome is recorded before it is acked, so none is lost with a connection; one that
/// was recorded but not acked comes again, and shows as a duplicate outcome.
#[derive(Debug)]
pub struct ReplyCollector {
    name: String,
    collected: Arc<Mutex<Collected>>,
    task: JoinHandle<()>,
}

impl ReplyCollector {
    /// Declares a fresh reply queue in `vhost` and starts consuming it. A worker must
    /// have declared `warren.replies` first.
    ///
    /// # Panics
    /// When the queue cannot be declared.
    pub async fn start(vhost: &Vhost) -> ReplyCollector {
        let name = format!("warren.reply.{}", uuid::Uuid::new_v4());
        let url = vhost.amqp_url().to_owned();
        // Declared before returning, so that outcomes of requests sent right after are
        // routed, whenever the consumer gets going.
        let connection = crate::answered(
            "connect",
            Connection::connect(&url, ConnectionProperties::default()),
        )
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {url}: {error}"));
        declare_reply_queue(&connection, &name)
            .await
            .unwrap_or_else(|error| panic!("cannot declare reply queue {name}: {error}"));
        crate::close_connection(&connection, "declared").await;
        let collected = Arc::new(Mutex::new(Collected::default()));
        let task = tokio::spawn(collect_forever(url, name.clone(), Arc::clone(&collected)));
        ReplyCollector {
            name,
            collected,
            task,
        }
    }

    /// The queue name: the `replyto` of the requests.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every outcome received so far, duplicates included.
    pub fn outcomes(&self) -> Vec<Value> {
        lock(&self.collected).outcomes.clone()
    }

    /// How many sessions the collector opened: more than 1 means it recovered from a
    /// lost connection.
    pub fn sessions(&self) -> u32 {
        lock(&self.collected).sessions
    }

    /// How many of `correlation_ids` have at least one outcome.
    pub fn answered(&self, correlation_ids: &HashSet<String>) -> usize {
        let collected = lock(&self.collected);
        if collected.correlation_ids.len() < correlation_ids.len() {
            collected
                .correlation_ids
                .iter()
                .filter(|id| correlation_ids.contains(*id))
                .count()
        } else {
            correlation_ids
                .iter()
                .filter(|id| collected.correlation_ids.contains(*id))
                .count()
        }
    }

    /// Waits until at least `count` of `correlation_ids` are answered, or `timeout`
    /// passes; returns how many are answered then. Does not panic: the checker says what
    /// is missing.
    pub async fn wait_answered(
        &self,
        correlation_ids: &HashSet<String>,
        count: usize,
        timeout: Duration,
    ) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let answered = self.answered(correlation_ids);
            if answered >= count || Instant::now() >= deadline {
                if answered < count {
                    eprintln!(
                        "reply queue {}: {answered} of {count} answered within {timeout:?} \
                         ({} sessions, last error: {:?})",
                        self.name,
                        self.sessions(),
                        lock(&self.collected).last_error
                    );
                }
                return answered;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for ReplyCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Declares the reply queue `name` (durable, not exclusive, no expiry: the vhost goes
/// with the test) and binds it to `warren.replies` under its own name.
async fn declare_reply_queue(connection: &Connection, name: &str) -> Result<(), lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            name.into(),
            REPLIES_EXCHANGE.into(),
            name.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Consumes the reply queue `name` until aborted, connecting again after every failure.
async fn collect_forever(url: String, name: String, collected: Arc<Mutex<Collected>>) {
    loop {
        let ended = match collect_session(&url, &name, &collected).await {
            Ok(()) => "the consumer ended".to_owned(),
            Err(error) => error,
        };
        lock(&collected).last_error = Some(ended);
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// `operation`'s output, or what went wrong with it (`what` says which it was), given
/// [`crate::READER_STEP`] to answer.
async fn step<T>(
    what: &str,
    operation: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, String> {
    match crate::within_step(operation).await {
        Some(Ok(value)) => Ok(value),
        Some(Err(error)) => Err(format!("{what}: {error}")),
        None => Err(format!("{what}: no answer within {:?}", crate::READER_STEP)),
    }
}

/// One connection's worth of consuming the reply queue.
async fn collect_session(
    url: &str,
    name: &str,
    collected: &Mutex<Collected>,
) -> Result<(), String> {
    let properties =
        ConnectionProperties::default().with_connection_name("warren-e2e-originator".into());
    let connection = step("connect", Connection::connect(url, properties)).await?;
    step(
        "declare the reply queue",
        declare_reply_queue(&connection, name),
    )
    .await?;
    let channel = step("open a channel", connection.create_channel()).await?;
    step(
        "set the prefetch",
        channel.basic_qos(1000, BasicQosOptions::default()),
    )
    .await?;
    let consume = channel.basic_consume(
        name.into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    );
    let mut consumer = step("consume", consume).await?;
    lock(collected).sessions += 1;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(|error| format!("consumer: {error}"))?;
        {
            let outcome = outcome_of(&delivery.data);
            let mut collected = lock(collected);
            if let Some(correlation_id) = outcome.get("correlationid").and_then(Value::as_str) {
                collected.correlation_ids.insert(correlation_id.to_owned());
            }
            collected.outcomes.push(outcome);
        }
        // Recorded first: if this ack is lost with the connection, the outcome comes
        // again and counts as a duplicate, never as missing.
        if !step("ack", delivery.acker.ack(BasicAckOptions::default())).await? {
            return Ok(());
        }
    }
    Ok(())
}

/// `body` as an outcome envelope, or as a JSON string of its text when it is not a valid
/// CloudEvents envelope (the checker counts that as unexpected).
fn outcome_of(body: &[u8]) -> Value {
    if decode_structured(body, &Limits::default()).is_ok()
        && let Ok(envelope) = serde_json::from_slice(body)
    {
        return envelope;
    }
    Value::String(String::from_utf8_lossy(body).into_owned())
}

/// Reads the total of every key in `keys` through the worker: one
/// `dev.warren.tally.get.v1` request each, on a reply queue of its own. Returns every
/// reply that arrived within `timeout` (the checker makes the totals of them).
///
/// # Panics
/// When the requests cannot be published.
pub async fn read_totals(vhost: &Vhost, keys: &[String], timeout: Duration) -> Vec<Value> {
    let replies = ReplyCollector::start(vhost).await;
    let requests: Vec<Request> = keys
        .iter()
        .map(|key| {
            Request::new(
                TallyGet::TYPE,
                &json!({ "key": key }).to_string(),
                Some(replies.name()),
            )
        })
        .collect();
    let correlation_ids: HashSet<String> = requests
        .iter()
        .map(|request| request.correlation_id().to_owned())
        .collect();
    let broker = vhost.connect().await;
    broker
        .publish_all(requests.into_iter().map(|request| request.message))
        .await;
    crate::close_connection(broker.connection(), "done").await;
    replies
        .wait_answered(&correlation_ids, correlation_ids.len(), timeout)
        .await;
    replies.outcomes()
}

/// Messages of a queue as `rabbitmqctl list_queues` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    /// Ready for delivery.
    pub ready: u64,
    /// Delivered, not yet acked.
    pub unacked: u64,
}

/// The counts of `queue` in `vhost`, or `None` when it does not exist.
///
/// # Panics
/// When `rabbitmqctl` fails.
pub async fn queue_counts(vhost: &Vhost, queue: &str) -> Option<QueueCounts> {
    let output = Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "--quiet",
            "--no-table-headers",
            "-p",
            vhost.name(),
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|error| panic!("cannot run rabbitmqctl list_queues: {error}"));
    assert!(
        output.status.success(),
        "rabbitmqctl list_queues failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [name, ready, unacked] if *name == queue => Some(QueueCounts {
                    ready: ready.parse().ok()?,
                    unacked: unacked.parse().ok()?,
                }),
                _ => None,
            }
        })
}

/// Waits until `queue` holds no message, ready or unacked: nothing of it is left to
/// process, so no side effect can still happen. Returns the last counts seen when that
/// does not happen within `timeout` (the caller asserts, after reporting its count).
pub async fn wait_until_settled(
    vhost: &Vhost,
    queue: &str,
    timeout: Duration,
) -> Result<(), Option<QueueCounts>> {
    let deadline = Instant::now() + timeout;
    loop {
        let counts = queue_counts(vhost, queue).await;
        if counts.is_some_and(|counts| counts.ready == 0 && counts.unacked == 0) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            eprintln!("queue {queue} still holds messages after {timeout:?}: {counts:?}");
            return Err(counts);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The integer header `name` of a message (e.g. `x-warren-attempts`).
pub fn integer_header(message: &ReceivedMessage, name: &str) -> Option<i64> {
    let value = message.properties.headers().as_ref()?.inner().get(name)?;
    match value {
        AMQPValue::LongLongInt(number) => Some(*number),
        AMQPValue::LongInt(number) => Some(i64::from(*number)),
        AMQPValue::LongUInt(number) => Some(i64::from(*number)),
        AMQPValue::ShortInt(number) => Some(i64::from(*number)),
        AMQPValue::ShortUInt(number) => Some(i64::from(*number)),
        AMQPValue::ShortShortInt(number) => Some(i64::from(*number)),
        AMQPValue::ShortShortUInt(number) => Some(i64::from(*number)),
        _ => None,
    }
}

/// The `message_id` property of a message.
pub fn message_id(message: &ReceivedMessage) -> Option<String> {
    message
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.as_str().to_owned())
}
