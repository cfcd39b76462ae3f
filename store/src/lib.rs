//! A warren worker's own store: one SQLite file that belongs to exactly one worker and
//! that nothing else opens.
//!
//! Several instances of the same worker may share the file: it is opened in WAL mode
//! with a busy timeout, and every write runs in an `IMMEDIATE` transaction, so writers
//! queue up instead of failing.
//!
//! The store's centrepiece is the *inbox* ([`Store::process_once`]): the identities
//! (CloudEvents `source` and `id`, with a fingerprint of the content) of the messages a
//! worker has processed, recorded in the same transaction as the side effects
//! they caused, together with the outputs they produced. A redelivered message (the
//! broker hands out a message again when the worker died before acking it) finds its id
//! there, repeats no side effect, and re-sends exactly the outputs it produced the first
//! time, with the same message ids, so downstream inboxes see duplicates they can drop.
//!
//! # Blocking
//!
//! SQLite calls block. The store is used from async handlers, so [`Store::process_once`]
//! and [`Store::read`] run inside [`tokio::task::block_in_place`] on a multi-threaded
//! tokio runtime (which `worker_main` builds): the runtime moves its other tasks to
//! another thread while the call runs. On a current-thread runtime (unit tests), or
//! outside any runtime, they simply block: the calls are short (a few indexed reads and
//! writes; at most the busy timeout when another instance holds the write lock).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Params, Row, TransactionBehavior};
use warren_messages::fault_code;
use warren_runtime::{HandlerError, MessageIdentity, Outputs};

/// The SQLite library, re-exported so a worker's SQL uses exactly the version the store
/// was built with.
pub use rusqlite;

/// How long a statement waits for another instance's write lock before it fails.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The inbox table: one row per processed message, keyed by its CloudEvents identity
/// (`source` and `id`), with a fingerprint of its content and the outputs it produced.
const INBOX_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS inbox (
    source TEXT NOT NULL,
    message_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    outputs TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (source, message_id)
)";

/// Moves an inbox of warren 0.1 (keyed by the message id alone, no fingerprint) to the
/// current table, in one transaction. Its rows keep an empty source, so they no longer
/// match a message: they only record what was processed.
fn migrate_id_only_inbox(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         ALTER TABLE inbox RENAME TO inbox_by_id;
         {INBOX_SCHEMA};
         INSERT INTO inbox SELECT '', message_id, '', outputs, processed_at FROM inbox_by_id;
         DROP TABLE inbox_by_id;
         COMMIT;"
    ))
}

/// How many prepared statements a store's connection keeps: more than any worker's
/// handlers use, so each statement is parsed once per process.
const STATEMENT_CACHE: usize = 64;

/// `execute` and `query_row` with the statement prepared once and kept on the
/// connection, for the statements a handler runs on every message. Preparing anew each
/// time (what [`Connection::execute`] does) costs a store hop about a sixth of its CPU
/// in SQLite's parser. Works on a [`rusqlite::Transaction`] too, through its `Deref`.
pub trait CachedStatements {
    /// Runs `sql` once with `params`, like [`Connection::execute`].
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;

    /// Runs `sql` with `params` and maps its first row, like [`Connection::query_row`].
    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, map: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>;
}

impl CachedStatements for Connection {
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, map: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, map)
    }
}

/// Why a store could not be opened or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The folder of the store file could not be created.
    #[error("cannot create the store folder {}: {source}", path.display())]
    CreateFolder {
        /// The folder.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// SQLite failed: the file could not be opened, set up or queried.
    #[error("store {}: {source}", path.display())]
    Sqlite {
        /// The store file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// SQLite would not switch the file to write-ahead logging, which several
    /// instances sharing the file need.
    #[error("store {}: journal mode is {mode:?}, not \"wal\"", path.display())]
    NotWal {
        /// The store file.
        path: PathBuf,
        /// The journal mode SQLite reported.
        mode: String,
    },
}

/// A worker's own SQLite store, shared by the worker's concurrent handler calls.
///
/// One connection, behind a mutex: handler calls in one process take turns, and
/// instances in other processes wait on SQLite's lock for up to [`BUSY_TIMEOUT`].
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl Store {
    /// Opens (or creates) the store file at `path` with only the inbox table.
    ///
    /// Creates the parent folders, switches the file to WAL mode with
    /// `synchronous = NORMAL`, and sets a [`BUSY_TIMEOUT`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with_schema(path, "")
    }

    /// Opens (or creates) the store file at `path` like [`Store::open`], then runs the
    /// worker's `schema_sql` (one or more statements; write them with `IF NOT EXISTS`,
    /// since it runs at every start).
    pub fn open_with_schema(path: &Path, schema_sql: &str) -> Result<Store, StoreError> {
        if let Some(folder) = path
            .parent()
            .filter(|folder| !folder.as_os_str().is_empty())
        {
            std::fs::create_dir_all(folder).map_err(|source| StoreError::CreateFolder {
                path: folder.to_path_buf(),
                source,
            })?;
        }
        let sqlite = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let connection = Connection::open(path).map_err(sqlite)?;
        // First, so that the set-up below also waits for other instances.
        connection.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(sqlite)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NotWal {
                path: path.to_path_buf(),
                mode,
            });
        }
        // In WAL mode, NORMAL is durable against a crash of the process (what warren's
        // fault tests do); only a power loss may undo the last commits.
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        let id_only_inbox: bool = connection
            .query_row(
                "SELECT COUNT(*) = 1 FROM sqlite_master WHERE type = 'table' AND name = 'inbox' \
                 AND sql NOT LIKE '%fingerprint%'",
                [],
                |row| row.get(0),
            )
            .map_err(sqlite)?;
        if id_only_inbox {
            migrate_id_only_inbox(&connection).map_err(sqlite)?;
        }
        connection.execute_batch(INBOX_SCHEMA).map_err(sqlite)?;
        if !schema_sql.trim().is_empty() {
            connection.execute_batch(schema_sql).map_err(sqlite)?;
        }
        Ok(Store {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
        })
    }

    /// Opens (or creates) the store file at `path` like [`Store::open`], then brings the
    /// worker's own tables up to date: `migrations[i]` (one or more statements) takes the
    /// schema from version `i` to `i + 1`, and runs once, in a transaction of its own
    /// with the new version (SQLite's `user_version`), so a store is never left half
    /// migrated, and several instances starting together migrate it once. A migration is
    /// never edited once released: a change is a new one at the end.
    pub fn open_with_migrations(path: &Path, migrations: &[&str]) -> Result<Store, StoreError> {
        let store = Self::open(path)?;
        let sqlite = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        {
            let mut connection = store.lock();
            for (index, migration) in migrations.iter().enumerate() {
                let transaction = connection
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite)?;
                let version: i64 = transaction
                    .query_row("PRAGMA user_version", [], |row| row.get(0))
                    .map_err(sqlite)?;
                let next = i64::try_from(index + 1).unwrap_or(i64::MAX);
                if version >= next {
                    continue;
                }
                transaction.execute_batch(migration).map_err(sqlite)?;
                transaction
                    .pragma_update(None, "user_version", next)
                    .map_err(sqlite)?;
                transaction.commit().map_err(sqlite)?;
            }
        }
        Ok(store)
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Processes the message `identity` names at most once: the inbox.
    ///
    /// In one `IMMEDIATE` transaction, looks the message's `source` and `id` up in the
    /// inbox:
    /// - when they are there with the same fingerprint (a redelivery), returns the
    ///   outputs recorded for it, without calling `work`;
    /// - when they are there with another fingerprint, another message reuses the
    ///   identity: fails permanently with [`fault_code::REUSED_ID`], without calling
    ///   `work`; the message is never answered with another's outputs;
    /// - otherwise calls `work` with the transaction. On `Ok`, records the identity and
    ///   the outputs and commits, so the side effects `work` wrote and the record of
    ///   them are kept together or not at all. On `Err`, rolls back: nothing is kept and
    ///   nothing recorded, so a retry runs `work` again.
    ///
    /// SQLite errors (a store locked longer than [`BUSY_TIMEOUT`], a full disk) are
    /// transient: retrying later may help.
    pub fn process_once(
        &self,
        identity: &MessageIdentity<'_>,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<Outputs, HandlerError>,
    ) -> Result<Outputs, HandlerError> {
        let message_id = identity.id;
        blocking(|| {
            let mut connection = self.lock();
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|error| self.transient("begin", error))?;
            let recorded: Option<(String, String)> = transaction
                .query_row_cached(
                    "SELECT fingerprint, outputs FROM inbox WHERE source = ?1 AND message_id = ?2",
                    [identity.source, message_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(|error| self.transient("read the inbox", error))?;
            if let Some((fingerprint, recorded)) = recorded {
                if fingerprint != identity.fingerprint {
                    return Err(HandlerError::permanent(
                        fault_code::REUSED_ID,
                        format!(
                            "message id {message_id:?} from {:?} was already used by a message \
                             with other content; ids must be unique per source",
                            identity.source
                        ),
                    ));
                }
                // Dropping the transaction ends it; it changed nothing.
                return serde_json::from_str(&recorded).map_err(|error| {
                    HandlerError::permanent(
                        fault_code::INTERNAL,
                        format!(
                            "store {}: the outputs recorded for message {message_id} are \
                             unreadable: {error}",
                            self.path.display()
                        ),
                    )
                });
            }
            // On Err, the transaction is dropped, which rolls it back.
            let outputs = work(&transaction)?;
            let serialized = serde_json::to_string(&outputs).map_err(|error| {
                HandlerError::permanent(
                    fault_code::INTERNAL,
                    format!("cannot record the outputs of message {message_id}: {error}"),
                )
            })?;
            transaction
                .execute_cached(
                    "INSERT INTO inbox (source, message_id, fingerprint, outputs, processed_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    [
                        identity.source,
                        message_id,
                        &identity.fingerprint,
                        &serialized,
                        &jiff::Timestamp::now().to_string(),
                    ],
                )
                .map_err(|error| self.transient("record in the inbox", error))?;
            transaction
                .commit()
                .map_err(|error| self.transient("commit", error))?;
            Ok(outputs)
        })
    }

    /// Runs `query` on the connection, for reads that need no inbox (a query changes
    /// nothing, so a redelivery may simply run it again). Writes belong in
    /// [`Store::process_once`].
    ///
    /// SQLite errors are transient, as in [`Store::process_once`].
    pub fn read<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, HandlerError> {
        blocking(|| query(&self.lock()).map_err(|error| self.transient("read", error)))
    }

    /// How many messages the inbox has recorded. For tests and diagnostics.
    pub fn processed_count(&self) -> Result<u64, StoreError> {
        blocking(|| {
            self.lock()
                .query_row("SELECT COUNT(*) FROM inbox", [], |row| row.get::<_, i64>(0))
                // COUNT(*) is never negative.
                .map(i64::unsigned_abs)
                .map_err(|source| StoreError::Sqlite {
                    path: self.path.clone(),
                    source,
                })
        })
    }

    /// The connection. A handler that panicked while holding it poisoned the mutex,
    /// but its transaction was rolled back when it unwound, so the connection is sound.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A transient handler error for an SQLite failure while doing `what`.
    fn transient(&self, what: &str, error: rusqlite::Error) -> HandlerError {
        HandlerError::transient(format!(
            "store {}: cannot {what}: {error}",
            self.path.display()
        ))
    }
}

/// Runs the blocking `call` inside [`tokio::task::block_in_place`] when on a
/// multi-threaded tokio runtime, and directly otherwise (where `block_in_place` would
/// panic).
fn blocking<T>(call: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(call)
        }
        _ => call(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use warren_messages::EchoReplied;

    const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS effects (n INTEGER NOT NULL)";

    /// A store file in a fresh folder under the system's temp folder; the folder is
    /// removed when the guard is dropped.
    struct TempStore {
        folder: PathBuf,
    }

    impl TempStore {
        fn new() -> TempStore {
            TempStore {
                folder: std::env::temp_dir().join(format!("warren-store-{}", uuid::Uuid::new_v4())),
            }
        }

        fn path(&self) -> PathBuf {
            // A nested folder, to check that open creates it.
            self.folder.join("nested").join("store.sqlite")
        }

        fn open(&self) -> Store {
            Store::open_with_schema(&self.path(), SCHEMA).expect("open the store")
        }
    }

    impl Drop for TempStore {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.folder);
        }
    }

    /// The identity of a message `message_id` from `/test`.
    fn id(message_id: &'static str) -> MessageIdentity<'static> {
        MessageIdentity {
            source: "/test",
            id: message_id,
            fingerprint: "same content".into(),
        }
    }

    fn reply(text: &str) -> Outputs {
        let payload: EchoReplied = serde_json::from_str(text).expect("payload");
        Outputs::reply(&payload).expect("outputs")
    }

    fn json(outputs: &Outputs) -> String {
        serde_json::to_string(outputs).expect("serialize")
    }

    fn effect_count(store: &Store) -> i64 {
        store
            .read(|connection| {
                connection.query_row("SELECT COUNT(*) FROM effects", [], |row| row.get(0))
            })
            .expect("count effects")
    }

    fn add_effect(
        transaction: &rusqlite::Transaction<'_>,
        text: &str,
    ) -> Result<Outputs, HandlerError> {
        transaction
            .execute("INSERT INTO effects (n) VALUES (1)", [])
            .map_err(|error| HandlerError::transient(error.to_string()))?;
        Ok(reply(text))
    }

    #[test]
    fn open_creates_the_folder_in_wal_mode() {
        let temp = TempStore::new();
        let store = temp.open();
        assert!(temp.path().is_file());
        assert_eq!(store.path(), temp.path());
        let (mode, synchronous, busy_timeout): (String, i64, i64) = store
            .read(|connection| {
                Ok((
                    connection.query_row("PRAGMA journal_mode", [], |row| row.get(0))?,
                    connection.query_row("PRAGMA synchronous", [], |row| row.get(0))?,
                    connection.query_row("PRAGMA busy_timeout", [], |row| row.get(0))?,
                ))
            })
            .expect("pragmas");
        assert_eq!(mode, "wal");
        assert_eq!(synchronous, 1, "NORMAL");
        assert_eq!(busy_timeout, 5000);
        assert_eq!(store.processed_count().expect("count"), 0);
    }

    #[test]
    fn work_runs_once_per_message_id_and_replays_the_same_outputs() {
        let temp = TempStore::new();
        let store = temp.open();
        let runs = Cell::new(0);
        let first = store
            .process_once(&id("message-1"), |transaction| {
                runs.set(runs.get() + 1);
                add_effect(transaction, r#"{"n":1}"#)
            })
            .expect("first");
        let second = store
            .process_once(&id("message-1"), |transaction| {
                runs.set(runs.get() + 1);
                add_effect(transaction, r#"{"n":2}"#)
            })
            .expect("second");
        assert_eq!(runs.get(), 1, "work ran again for a processed message");
        assert_eq!(json(&first), json(&second), "same outputs, same ids");
        assert_eq!(effect_count(&store), 1);
        assert_eq!(store.processed_count().expect("count"), 1);

        let other = store
            .process_once(&id("message-2"), |transaction| {
                runs.set(runs.get() + 1);
                add_effect(transaction, r#"{"n":1}"#)
            })
            .expect("other");
        assert_eq!(runs.get(), 2);
        assert_ne!(
            json(&first),
            json(&other),
            "a new message gets new output ids"
        );
        assert_eq!(effect_count(&store), 2);
        assert_eq!(store.processed_count().expect("count"), 2);
    }

    #[test]
    fn a_reused_identity_is_refused_and_another_source_is_another_message() {
        let temp = TempStore::new();
        let store = temp.open();
        store
            .process_once(&id("message-1"), |transaction| {
                add_effect(transaction, "{}")
            })
            .expect("first");
        let reused = MessageIdentity {
            fingerprint: "other content".into(),
            ..id("message-1")
        };
        let error = store
            .process_once(&reused, |_| panic!("work must not run for a reused id"))
            .expect_err("reused");
        assert!(
            matches!(&error, HandlerError::Permanent { code, .. } if code == fault_code::REUSED_ID),
            "{error:?}"
        );
        let elsewhere = MessageIdentity {
            source: "/elsewhere",
            fingerprint: "other content".into(),
            ..id("message-1")
        };
        store
            .process_once(&elsewhere, |transaction| add_effect(transaction, "{}"))
            .expect("the same id from another source is another message");
        assert_eq!(effect_count(&store), 2);
        assert_eq!(store.processed_count().expect("count"), 2);
    }

    #[test]
    fn an_inbox_keyed_by_id_alone_is_migrated() {
        let temp = TempStore::new();
        {
            std::fs::create_dir_all(temp.path().parent().expect("folder")).expect("folder");
            let old = Connection::open(temp.path()).expect("open");
            old.execute_batch(
                "CREATE TABLE inbox (message_id TEXT PRIMARY KEY, outputs TEXT NOT NULL, \
                 processed_at TEXT NOT NULL);
                 INSERT INTO inbox VALUES ('old-1', '[]', '2026-11-01T00:00:00Z');",
            )
            .expect("old inbox");
        }
        let store = temp.open();
        assert_eq!(store.processed_count().expect("count"), 1);
        store
            .process_once(&id("message-1"), |transaction| {
                add_effect(transaction, "{}")
            })
            .expect("works after the migration");
        assert_eq!(store.processed_count().expect("count"), 2);
        drop(store);
        assert_eq!(temp.open().processed_count().expect("reopened"), 2);
    }

    #[test]
    fn migrations_run_once_each_in_order() {
        let temp = TempStore::new();
        let first = [
            "CREATE TABLE things (n INTEGER NOT NULL)",
            "INSERT INTO things VALUES (1)",
        ];
        let store = Store::open_with_migrations(&temp.path(), &first).expect("migrate");
        drop(store);
        let mut second = first.to_vec();
        second.push("INSERT INTO things VALUES (2)");
        let store = Store::open_with_migrations(&temp.path(), &second).expect("migrate again");
        let (rows, sum, version): (i64, i64, i64) = store
            .read(|connection| {
                Ok((
                    connection.query_row("SELECT COUNT(*) FROM things", [], |row| row.get(0))?,
                    connection.query_row("SELECT SUM(n) FROM things", [], |row| row.get(0))?,
                    connection.query_row("PRAGMA user_version", [], |row| row.get(0))?,
                ))
            })
            .expect("read");
        assert_eq!((rows, sum, version), (2, 3, 3), "each migration ran once");
        let mut broken = second.clone();
        broken.push("THIS IS NOT SQL");
        drop(store);
        assert!(Store::open_with_migrations(&temp.path(), &broken).is_err());
        let store = Store::open_with_migrations(&temp.path(), &second).expect("still at 3");
        let version: i64 = store
            .read(|connection| connection.query_row("PRAGMA user_version", [], |row| row.get(0)))
            .expect("version");
        assert_eq!(version, 3, "the failed migration changed nothing");
    }

    #[test]
    fn an_error_rolls_back_and_records_nothing() {
        let temp = TempStore::new();
        let store = temp.open();
        let error = store
            .process_once(&id("message-1"), |transaction| {
                add_effect(transaction, "{}")?;
                Err(HandlerError::permanent("out_of_stock", "none left"))
            })
            .expect_err("the work failed");
        assert!(
            matches!(&error, HandlerError::Permanent { code, .. } if code == "out_of_stock"),
            "{error:?}"
        );
        assert_eq!(effect_count(&store), 0, "the side effect was rolled back");
        assert_eq!(store.processed_count().expect("count"), 0);

        // The message was not recorded, so a retry runs the work.
        let runs = Cell::new(0);
        store
            .process_once(&id("message-1"), |transaction| {
                runs.set(runs.get() + 1);
                add_effect(transaction, "{}")
            })
            .expect("retry");
        assert_eq!(runs.get(), 1);
        assert_eq!(effect_count(&store), 1);
    }

    #[test]
    fn a_panic_in_work_rolls_back_and_leaves_the_store_usable() {
        let temp = TempStore::new();
        let store = temp.open();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = store.process_once(&id("message-1"), |transaction| {
                let _ = add_effect(transaction, "{}");
                panic!("the handler panicked");
            });
        }));
        assert!(panicked.is_err());
        assert_eq!(effect_count(&store), 0);
        assert_eq!(store.processed_count().expect("count"), 0);
        store
            .process_once(&id("message-1"), |transaction| {
                add_effect(transaction, "{}")
            })
            .expect("after the panic");
        assert_eq!(effect_count(&store), 1);
    }

    #[test]
    fn reopening_the_file_keeps_everything() {
        let temp = TempStore::new();
        let first = {
            let store = temp.open();
            store
                .process_once(&id("message-1"), |transaction| {
                    add_effect(transaction, r#"{"kept":true}"#)
                })
                .expect("first")
        };
        let store = temp.open();
        assert_eq!(store.processed_count().expect("count"), 1);
        assert_eq!(effect_count(&store), 1);
        let replayed = store
            .process_once(&id("message-1"), |_| panic!("work must not run again"))
            .expect("replayed");
        assert_eq!(json(&first), json(&replayed));
    }

    #[test]
    fn two_connections_to_one_file_share_the_inbox() {
        let temp = TempStore::new();
        let one = temp.open();
        let two = temp.open();
        let first = one
            .process_once(&id("message-1"), |transaction| {
                add_effect(transaction, "{}")
            })
            .expect("first");
        let second = two
            .process_once(&id("message-1"), |_| {
                panic!("the other instance processed it")
            })
            .expect("second");
        assert_eq!(json(&first), json(&second));
        assert_eq!(effect_count(&two), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn works_inside_a_multi_threaded_runtime() {
        let temp = TempStore::new();
        let store = temp.open();
        let first = store
            .process_once(&id("message-1"), |transaction| {
                add_effect(transaction, "{}")
            })
            .expect("first");
        let second = store
            .process_once(&id("message-1"), |_| panic!("already processed"))
            .expect("second");
        assert_eq!(json(&first), json(&second));
        assert_eq!(store.processed_count().expect("count"), 1);
    }

    #[test]
    fn a_bad_schema_fails_to_open_and_failed_sql_in_work_records_nothing() {
        let temp = TempStore::new();
        assert!(matches!(
            Store::open_with_schema(&temp.path(), "CREATE TABLE nonsense ("),
            Err(StoreError::Sqlite { .. })
        ));
        let store = temp.open();
        let error = store
            .process_once(&id("message-1"), |transaction| {
                transaction
                    .execute("INSERT INTO missing_table VALUES (1)", [])
                    .map_err(|error| HandlerError::transient(error.to_string()))?;
                Ok(Outputs::none())
            })
            .expect_err("no such table");
        assert!(matches!(error, HandlerError::Transient { .. }), "{error:?}");
        assert_eq!(store.processed_count().expect("count"), 0);
    }
}
