//! The tally worker: keeps a running total per key in its own store.
//!
//! - `dev.warren.tally.add.v1` (`{"key", "amount"}`) adds `amount` to the key's total and
//!   replies `dev.warren.tally.added.v1` with the new total. The addition and the record
//!   of the message id commit together ([`Store::process_once`]), so a redelivered add
//!   is counted once and answered with the same reply (same message id) as the first
//!   time. A total that would leave the range of an `i64` is the fault `overflow`; an
//!   empty key is `invalid_key`.
//! - `dev.warren.tally.get.v1` (`{"key"}`) replies `dev.warren.tally.total.v1` with the
//!   key's total (0 for a key never added to). It changes nothing, so it needs no inbox.
//!
//! The store is `<store.dir>/tally.sqlite` ([`STORE_FILE`]), shared by every instance
//! of the worker on a host and opened by nothing else.
//!
//! # Failpoints (test-only hooks)
//!
//! For the fault-injection tests, which kill the real process at exact points, the
//! worker reads `WARREN_FAILPOINTS` once at start: a comma-separated list of
//! ([`Failpoints`]):
//!
//! - `crash_after_commit:<n>`: right after the commit of this process's `n`-th add, abort
//!   the process (`std::process::abort`), so the addition is committed but no reply is
//!   published and the message is not acked;
//! - `transient_keys:<prefix>`: an add for a key starting with `<prefix>` fails with a
//!   transient error, without touching the store;
//! - `slow_keys:<prefix>:<ms>`: an add for a key starting with `<prefix>` first waits
//!   `<ms>` milliseconds.
//!
//! An unknown or malformed entry stops the worker at start. Leave the variable unset
//! in production.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::value::RawValue;
use warren_messages::{Inbound, Payload, TallyAdd, TallyAdded, TallyGet, TallyTotal};
use warren_runtime::{Handler, HandlerError, Incoming, Manifest, MessageIdentity, Outputs};
use warren_store::rusqlite::{self, OptionalExtension};
use warren_store::{CachedStatements, Store, StoreError};

/// What the tally worker consumes and produces.
pub const MANIFEST: Manifest = Manifest {
    name: "tally",
    commands: &[TallyAdd::TYPE, TallyGet::TYPE],
    events: &[],
    produces: &[TallyAdded::TYPE, TallyTotal::TYPE],
};

/// The store file's name in the `store.dir` folder.
pub const STORE_FILE: &str = "tally.sqlite";

/// The environment variable holding the [`Failpoints`].
pub const FAILPOINTS_VARIABLE: &str = "WARREN_FAILPOINTS";

/// The worker's own tables, besides the store's inbox.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS totals (
    key TEXT PRIMARY KEY,
    total INTEGER NOT NULL
)";

/// The fault code of an addition that would leave the range of an `i64`.
pub const OVERFLOW: &str = "overflow";

/// The fault code of an empty key.
pub const INVALID_KEY: &str = "invalid_key";

/// What the tally worker accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TallyCommand {
    /// Add to a total.
    Add(TallyAdd),
    /// Read a total.
    Get(TallyGet),
}

impl Inbound for TallyCommand {
    fn types() -> &'static [&'static str] {
        &[TallyAdd::TYPE, TallyGet::TYPE]
    }

    fn decode(message_type: &str, data: &RawValue) -> Result<Self, serde_json::Error> {
        if message_type == TallyAdd::TYPE {
            warren_messages::decode_data(data).map(TallyCommand::Add)
        } else if message_type == TallyGet::TYPE {
            warren_messages::decode_data(data).map(TallyCommand::Get)
        } else {
            Err(serde::de::Error::custom(format!(
                "the tally worker does not handle {message_type}"
            )))
        }
    }
}

/// Why the tally worker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `WARREN_FAILPOINTS` is malformed.
    #[error("{FAILPOINTS_VARIABLE}: {0}")]
    Failpoints(#[from] FailpointError),
}

/// Keeps running totals in its own store.
#[derive(Debug)]
pub struct TallyHandler {
    store: Store,
    failpoints: Failpoints,
    /// Adds this process has committed, for `crash_after_commit`.
    commits: AtomicU64,
}

impl TallyHandler {
    /// Opens `<store_dir>/tally.sqlite` and reads the failpoints from
    /// `WARREN_FAILPOINTS`: what the binary does at start.
    pub fn open(store_dir: &Path) -> Result<TallyHandler, StartError> {
        let failpoints = Failpoints::from_environment()?;
        let store = Self::open_store(&store_path(store_dir))?;
        Ok(Self::new(store, failpoints))
    }

    /// Opens the store file at `path` with the tally worker's tables.
    pub fn open_store(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_schema(path, SCHEMA)
    }

    /// A handler over an open store (see [`TallyHandler::open_store`]) with the given
    /// failpoints.
    pub fn new(store: Store, failpoints: Failpoints) -> TallyHandler {
        TallyHandler {
            store,
            failpoints,
            commits: AtomicU64::new(0),
        }
    }

    /// The handler's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn add(
        &self,
        identity: &MessageIdentity<'_>,
        add: TallyAdd,
    ) -> Result<Outputs, HandlerError> {
        check_key(&add.key)?;
        if let Some((prefix, delay)) = &self.failpoints.slow_keys
            && add.key.starts_with(prefix.as_str())
        {
            tokio::time::sleep(*delay).await;
        }
        if let Some(prefix) = &self.failpoints.transient_keys
            && add.key.starts_with(prefix.as_str())
        {
            return Err(HandlerError::transient(format!(
                "failpoint transient_keys:{prefix} matched key {:?}",
                add.key
            )));
        }
        let mut committed = false;
        let outputs = self
            .store
            .process_once(identity, |connection| {
                let total = add_to_total(connection, &add)?;
                committed = true;
                Outputs::reply(&TallyAdded {
                    key: add.key.clone(),
                    total,
                })
            })
            .await?;
        // `committed` is set only when the work ran, and process_once returned Ok, so
        // this process has just committed it (a replay does not count).
        if committed {
            let commits = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
            if self.failpoints.crash_after_commit == Some(commits) {
                eprintln!(
                    "warren-tally: failpoint crash_after_commit:{commits} reached after \
                     message {}; aborting",
                    identity.id
                );
                std::process::abort();
            }
        }
        Ok(outputs)
    }

    async fn get(&self, get: TallyGet) -> Result<Outputs, HandlerError> {
        check_key(&get.key)?;
        let total = self
            .store
            .read(|connection| {
                connection
                    .query_row_cached(
                        "SELECT total FROM totals WHERE key = ?1",
                        [&get.key],
                        |row| row.get::<_, i64>(0),
                    )
                    .optional()
            })
            .await?
            .unwrap_or(0);
        Outputs::reply(&TallyTotal {
            key: get.key,
            total,
        })
    }
}

impl Handler for TallyHandler {
    type Input = TallyCommand;

    async fn handle(&self, message: Incoming<'_, TallyCommand>) -> Result<Outputs, HandlerError> {
        let identity = message.identity();
        match message.payload {
            TallyCommand::Add(add) => self.add(&identity, add).await,
            TallyCommand::Get(get) => self.get(get).await,
        }
    }
}

/// An empty key is a permanent `invalid_key` error.
fn check_key(key: &str) -> Result<(), HandlerError> {
    if key.is_empty() {
        return Err(HandlerError::permanent(
            INVALID_KEY,
            "the key must not be empty",
        ));
    }
    Ok(())
}

/// Adds `add.amount` to the total of `add.key` on the store's `connection` (inside the
/// message's savepoint) and returns the new total. The sum is checked in Rust: SQLite
/// would silently turn an overflowing integer sum into a float.
fn add_to_total(connection: &rusqlite::Connection, add: &TallyAdd) -> Result<i64, HandlerError> {
    let transient = |error: rusqlite::Error| {
        HandlerError::transient(format!("cannot update the total of {:?}: {error}", add.key))
    };
    let current: i64 = connection
        .query_row_cached(
            "SELECT total FROM totals WHERE key = ?1",
            [&add.key],
            |row| row.get(0),
        )
        .optional()
        .map_err(transient)?
        .unwrap_or(0);
    let total = current.checked_add(add.amount).ok_or_else(|| {
        HandlerError::permanent(
            OVERFLOW,
            format!(
                "adding {} to the total {current} of {:?} leaves the range of a 64-bit integer",
                add.amount, add.key
            ),
        )
        .with_details(serde_json::json!({
            "key": add.key,
            "total": current,
            "amount": add.amount,
        }))
    })?;
    // The batch's IMMEDIATE transaction holds the write lock since before the read, so
    // no other instance changed the total in between.
    connection
        .execute_cached(
            "INSERT INTO totals (key, total) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET total = excluded.total",
            rusqlite::params![add.key, total],
        )
        .map_err(transient)?;
    Ok(total)
}

/// Test-only hooks that make the worker fail at exact points, read from
/// `WARREN_FAILPOINTS` (see the crate docs). The default is none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failpoints {
    /// `crash_after_commit:<n>`: abort right after the commit of this process's `n`-th
    /// add.
    pub crash_after_commit: Option<u64>,
    /// `transient_keys:<prefix>`: adds for keys with this prefix fail transiently.
    pub transient_keys: Option<String>,
    /// `slow_keys:<prefix>:<ms>`: adds for keys with this prefix first wait this long.
    pub slow_keys: Option<(String, Duration)>,
}

/// Why `WARREN_FAILPOINTS` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid failpoint {entry:?}: {reason}")]
pub struct FailpointError {
    /// The entry as given.
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Failpoints {
    /// The failpoints in `WARREN_FAILPOINTS`; none when it is unset or empty.
    pub fn from_environment() -> Result<Failpoints, FailpointError> {
        match std::env::var(FAILPOINTS_VARIABLE) {
            Ok(text) => text.parse(),
            Err(std::env::VarError::NotPresent) => Ok(Failpoints::default()),
            Err(std::env::VarError::NotUnicode(_)) => Err(FailpointError {
                entry: String::new(),
                reason: "not valid UTF-8".into(),
            }),
        }
    }
}

impl FromStr for Failpoints {
    type Err = FailpointError;

    /// Parses a comma-separated list; blank entries are skipped.
    fn from_str(text: &str) -> Result<Failpoints, FailpointError> {
        let mut failpoints = Failpoints::default();
        for entry in text
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
        {
            let error = |reason: &str| FailpointError {
                entry: entry.to_owned(),
                reason: reason.to_owned(),
            };
            let (name, argument) = entry
                .split_once(':')
                .ok_or_else(|| error("expected <name>:<argument>"))?;
            match name {
                "crash_after_commit" => {
                    let count = argument
                        .parse::<u64>()
                        .ok()
                        .filter(|count| *count >= 1)
                        .ok_or_else(|| error("expected a commit count of at least 1"))?;
                    set_once(&mut failpoints.crash_after_commit, count, error)?;
                }
                "transient_keys" => {
                    set_once(&mut failpoints.transient_keys, argument.to_owned(), error)?;
                }
                "slow_keys" => {
                    let (prefix, milliseconds) = argument
                        .rsplit_once(':')
                        .ok_or_else(|| error("expected slow_keys:<prefix>:<ms>"))?;
                    let milliseconds = milliseconds
                        .parse::<u64>()
                        .map_err(|_| error("expected a delay in milliseconds"))?;
                    set_once(
                        &mut failpoints.slow_keys,
                        (prefix.to_owned(), Duration::from_millis(milliseconds)),
                        error,
                    )?;
                }
                _ => {
                    return Err(error(
                        "unknown failpoint; known: crash_after_commit, transient_keys, \
                         slow_keys",
                    ));
                }
            }
        }
        Ok(failpoints)
    }
}

/// Sets `slot` to `value`, or fails when an earlier entry already set it.
fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    error: impl Fn(&str) -> FailpointError,
) -> Result<(), FailpointError> {
    if slot.is_some() {
        return Err(error("given twice"));
    }
    *slot = Some(value);
    Ok(())
}

impl fmt::Display for Failpoints {
    /// The failpoints in the form `WARREN_FAILPOINTS` takes.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut entries = Vec::new();
        if let Some(count) = self.crash_after_commit {
            entries.push(format!("crash_after_commit:{count}"));
        }
        if let Some(prefix) = &self.transient_keys {
            entries.push(format!("transient_keys:{prefix}"));
        }
        if let Some((prefix, delay)) = &self.slow_keys {
            entries.push(format!("slow_keys:{prefix}:{}", delay.as_millis()));
        }
        formatter.write_str(&entries.join(","))
    }
}

/// The store path of a store folder: `<store_dir>/tally.sqlite`.
pub fn store_path(store_dir: &Path) -> PathBuf {
    store_dir.join(STORE_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_messages::Attributes;
    use warren_runtime::{Output, Route};

    /// A tally handler over a store in a fresh temp folder, removed when dropped.
    struct TempTally {
        folder: PathBuf,
        handler: TallyHandler,
    }

    impl TempTally {
        fn new() -> TempTally {
            Self::with_failpoints(Failpoints::default())
        }

        fn with_failpoints(failpoints: Failpoints) -> TempTally {
            let folder =
                std::env::temp_dir().join(format!("warren-tally-{}", uuid::Uuid::new_v4()));
            let store = TallyHandler::open_store(&store_path(&folder)).expect("open the store");
            TempTally {
                folder,
                handler: TallyHandler::new(store, failpoints),
            }
        }

        async fn send(
            &self,
            attributes: &Attributes,
            command: TallyCommand,
        ) -> Result<Outputs, HandlerError> {
            let data = match &command {
                TallyCommand::Add(add) => serde_json::value::to_raw_value(add),
                TallyCommand::Get(get) => serde_json::value::to_raw_value(get),
            }
            .expect("payloads serialize");
            let incoming = Incoming::<TallyCommand>::decode(attributes, &data)
                .expect("the payload decodes as it was encoded");
            self.handler.handle(incoming).await
        }

        async fn add(&self, key: &str, amount: i64) -> Result<Outputs, HandlerError> {
            self.send(
                &Attributes::request::<TallyAdd>("/test"),
                add_command(key, amount),
            )
            .await
        }

        async fn total(&self, key: &str) -> serde_json::Value {
            let outputs = self
                .send(
                    &Attributes::request::<TallyGet>("/test"),
                    TallyCommand::Get(TallyGet { key: key.into() }),
                )
                .await
                .expect("get");
            reply_data(&outputs)
        }
    }

    impl Drop for TempTally {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.folder);
        }
    }

    fn add_command(key: &str, amount: i64) -> TallyCommand {
        TallyCommand::Add(TallyAdd {
            key: key.into(),
            amount,
        })
    }

    /// The data of the one output in `outputs`, which must be a reply.
    fn reply_data(outputs: &Outputs) -> serde_json::Value {
        let all: Vec<&Output> = outputs.iter().collect();
        assert_eq!(all.len(), 1, "{outputs:?}");
        assert_eq!(all[0].route(), Route::Reply, "{outputs:?}");
        serde_json::from_str(all[0].data().get()).expect("JSON")
    }

    /// The ids of the outputs, in order.
    fn output_ids(outputs: &Outputs) -> Vec<&str> {
        outputs.iter().map(Output::id).collect()
    }

    fn permanent_code(error: &HandlerError) -> &str {
        match error {
            HandlerError::Permanent { code, .. } => code,
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    #[test]
    fn manifest_matches_the_handler() {
        assert_eq!(MANIFEST.check_against::<TallyCommand>(), Ok(()));
    }

    #[test]
    fn decodes_by_message_type() {
        let data = RawValue::from_string(r#"{"key":"k","amount":5}"#.into()).expect("json");
        assert_eq!(
            TallyCommand::decode(TallyAdd::TYPE, &data).expect("add"),
            add_command("k", 5)
        );
        assert!(
            TallyCommand::decode(TallyGet::TYPE, &data).is_err(),
            "unknown field"
        );
        assert!(TallyCommand::decode("dev.warren.echo.v1", &data).is_err());
        let data = RawValue::from_string(r#"{"key":"k"}"#.into()).expect("json");
        assert_eq!(
            TallyCommand::decode(TallyGet::TYPE, &data).expect("get"),
            TallyCommand::Get(TallyGet { key: "k".into() })
        );
    }

    #[tokio::test]
    async fn the_same_message_twice_is_counted_once_with_the_same_reply() {
        let tally = TempTally::new();
        let attributes = Attributes::request::<TallyAdd>("/test");
        let first = tally
            .send(&attributes, add_command("k", 5))
            .await
            .expect("first");
        let second = tally
            .send(&attributes, add_command("k", 5))
            .await
            .expect("second");
        assert_eq!(
            reply_data(&first),
            serde_json::json!({"key": "k", "total": 5})
        );
        assert_eq!(
            output_ids(&first),
            output_ids(&second),
            "same reply, same id"
        );
        assert_eq!(
            first.reply_payload::<TallyAdded>(),
            second.reply_payload::<TallyAdded>()
        );
        assert_eq!(tally.total("k").await["total"], 5);
        assert_eq!(
            tally
                .handler
                .store()
                .processed_count()
                .await
                .expect("count"),
            1
        );
    }

    #[tokio::test]
    async fn another_message_reusing_an_id_is_refused_not_answered_with_the_first_result() {
        let tally = TempTally::new();
        let attributes = Attributes::request::<TallyAdd>("/test");
        tally
            .send(&attributes, add_command("k", 5))
            .await
            .expect("first");
        let error = tally
            .send(&attributes, add_command("other", 7))
            .await
            .expect_err("the same id with other content");
        assert_eq!(
            permanent_code(&error),
            warren_messages::fault_code::REUSED_ID
        );
        assert_eq!(tally.total("other").await["total"], 0);
        assert_eq!(tally.total("k").await["total"], 5);

        let mut elsewhere = attributes.clone();
        elsewhere.source = "/elsewhere".into();
        let outputs = tally
            .send(&elsewhere, add_command("other", 7))
            .await
            .expect("the same id from another source is another message");
        assert_eq!(reply_data(&outputs)["total"], 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn different_messages_are_summed() {
        let tally = TempTally::new();
        let first = tally.add("k", 5).await.expect("first");
        let second = tally.add("k", -2).await.expect("second");
        tally.add("other", 7).await.expect("other key");
        assert_eq!(reply_data(&first)["total"], 5);
        assert_eq!(reply_data(&second)["total"], 3);
        assert_ne!(output_ids(&first), output_ids(&second));
        assert_eq!(
            tally.total("k").await,
            serde_json::json!({"key": "k", "total": 3})
        );
        assert_eq!(tally.total("other").await["total"], 7);
        assert_eq!(
            tally
                .handler
                .store()
                .processed_count()
                .await
                .expect("count"),
            3
        );
    }

    #[tokio::test]
    async fn an_overflow_is_a_permanent_error_and_changes_nothing() {
        let tally = TempTally::new();
        tally.add("k", i64::MAX).await.expect("the largest total");
        let error = tally.add("k", 1).await.expect_err("overflow");
        assert_eq!(permanent_code(&error), OVERFLOW);
        tally
            .add("low", i64::MIN)
            .await
            .expect("the smallest total");
        let error = tally.add("low", -1).await.expect_err("underflow");
        assert_eq!(permanent_code(&error), OVERFLOW);
        assert_eq!(tally.total("k").await["total"], i64::MAX);
        assert_eq!(tally.total("low").await["total"], i64::MIN);
        assert_eq!(
            tally
                .handler
                .store()
                .processed_count()
                .await
                .expect("count"),
            2,
            "failed adds are not recorded"
        );
    }

    #[tokio::test]
    async fn an_empty_key_is_invalid() {
        let tally = TempTally::new();
        let error = tally.add("", 1).await.expect_err("empty key");
        assert_eq!(permanent_code(&error), INVALID_KEY);
        let error = tally
            .send(
                &Attributes::request::<TallyGet>("/test"),
                TallyCommand::Get(TallyGet { key: String::new() }),
            )
            .await
            .expect_err("empty key");
        assert_eq!(permanent_code(&error), INVALID_KEY);
        assert_eq!(
            tally
                .handler
                .store()
                .processed_count()
                .await
                .expect("count"),
            0
        );
    }

    #[tokio::test]
    async fn get_of_an_unknown_key_is_zero() {
        let tally = TempTally::new();
        assert_eq!(
            tally.total("never").await,
            serde_json::json!({"key": "never", "total": 0})
        );
        assert_eq!(
            tally
                .handler
                .store()
                .processed_count()
                .await
                .expect("count"),
            0
        );
    }

    #[tokio::test]
    async fn transient_keys_fail_without_touching_the_store() {
        let tally = TempTally::with_failpoints(Failpoints {
            transient_keys: Some("flaky-".into()),
            ..Failpoints::default()
        });
        let error = tally.add("flaky-1", 5).await.expect_err("failpoint");
        assert!(matches!(error, HandlerError::Transient { .. }), "{error:?}");
        tally.add("steady", 5).await.expect("other keys work");
        assert_eq!(tally.total("flaky-1").await["total"], 0);
        assert_eq!(
            tally
                .handler
                .store()
                .processed_count()
                .await
                .expect("count"),
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slow_keys_wait_first() {
        let tally = TempTally::with_failpoints(Failpoints {
            slow_keys: Some(("slow-".into(), Duration::from_secs(60))),
            ..Failpoints::default()
        });
        let started = tokio::time::Instant::now();
        tally.add("fast", 1).await.expect("fast");
        assert!(started.elapsed() < Duration::from_secs(60));
        tally.add("slow-1", 1).await.expect("slow");
        assert!(started.elapsed() >= Duration::from_secs(60));
    }

    #[test]
    fn failpoints_parse() {
        assert_eq!("".parse::<Failpoints>(), Ok(Failpoints::default()));
        assert_eq!(" , ".parse::<Failpoints>(), Ok(Failpoints::default()));
        let text = "crash_after_commit:3, transient_keys:flaky-,slow_keys:a:b:250";
        let failpoints: Failpoints = text.parse().expect("valid");
        assert_eq!(
            failpoints,
            Failpoints {
                crash_after_commit: Some(3),
                transient_keys: Some("flaky-".into()),
                slow_keys: Some(("a:b".into(), Duration::from_millis(250))),
            }
        );
        assert_eq!(
            failpoints.to_string().parse::<Failpoints>(),
            Ok(failpoints.clone())
        );
        assert_eq!(
            failpoints.to_string(),
            "crash_after_commit:3,transient_keys:flaky-,slow_keys:a:b:250"
        );
    }

    #[test]
    fn malformed_failpoints_are_rejected() {
        for bad in [
            "crash_after_commit",
            "crash_after_commit:0",
            "crash_after_commit:-1",
            "crash_after_commit:x",
            "crash_after_commit:1,crash_after_commit:2",
            "slow_keys:prefix",
            "slow_keys:prefix:soon",
            "panic_now:1",
            "transient_keys:a,bogus",
        ] {
            let error = bad.parse::<Failpoints>().expect_err(bad);
            assert!(!error.reason.is_empty(), "{bad}");
        }
        let error = "transient_keys:a,bogus:1"
            .parse::<Failpoints>()
            .expect_err("unknown");
        assert_eq!(error.entry, "bogus:1");
    }
}
