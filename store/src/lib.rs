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
//! # Group commit
//!
//! A commit is what a store hop costs most: the WAL frames of every page changed, and
//! the file locks of a transaction. So the messages of one process that reach the store
//! together share one write transaction (a *batch*), each message in a savepoint of its
//! own: its inbox lookup, its work and its inbox record are released into the batch
//! when the work succeeds, and rolled back, alone, when it fails. A caller whose
//! message is in gets its answer only once the batch has committed: a message's
//! outputs are never returned (so never published, and its delivery never acked)
//! before the transaction holding its effects is committed, and when that commit fails,
//! every message of the batch fails with a transient error. A redelivery, and a message
//! whose work failed, wait for the commit too: what they read may be another message's
//! uncommitted effects.
//!
//! Who commits: the caller that fills a batch (256 messages); otherwise, while callers
//! are queued for the store, the last of them; otherwise the caller yields once, then
//! commits. Nothing waits on a clock: under light load a batch is one message,
//! committed a scheduler turn later. A caller left waiting on a batch that nobody
//! commits (the caller it waited for was cancelled) commits it itself after a short
//! bound, and a cancelled caller commits its open batch on its way out when the store
//! is free. [`Store::read`] commits an open batch before it reads, so a read never
//! sees effects that could still be rolled back.
//!
//! The yield is what lets a batch grow when a worker's deliveries are all polled in
//! one task (a session's): in a task spawned on the runtime, tokio wakes a yielding
//! task only after it has run the other ready tasks and polled the I/O driver, so the
//! session first takes every delivery its consumer holds, and those reach the store
//! into the open batch. A future that `Runtime::block_on` drives is in no task: there
//! a yield wakes at once, the caller is polled again before the next delivery is
//! taken, and its batch stays one message (plus any caller queued from another task).
//!
//! Work must not rely on deferred constraints (`DEFERRABLE INITIALLY DEFERRED`
//! foreign keys): SQLite checks them at the commit, where one message's violation
//! fails the whole batch.
//!
//! # Blocking
//!
//! SQLite calls block. They are short (a few indexed reads and writes per message, a
//! commit's WAL writes; at most the busy timeout when another instance holds the write
//! lock) and run inline on the caller's thread, under a [`tokio::sync::Mutex`] that
//! is never held across an `.await`. They are not moved out with
//! `tokio::task::block_in_place`: that hands the runtime's worker to another thread on
//! every call, and a yield in the turn after it wakes the task at once, which undoes
//! what lets a batch grow. The store needs a tokio runtime with timers (`worker_main`
//! builds one; `#[tokio::test]` too).

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{Mutex, MutexGuard};
use warren_messages::fault_code;
use warren_runtime::{HandlerError, MessageIdentity, Outputs};

mod batch;
mod statements;

use batch::{Queued, Step, Ticket, Writer};
pub use statements::CachedStatements;

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
/// One connection, behind a FIFO lock: handler calls in one process take turns, their
/// messages committed in batches (see "Group commit" in the crate's documentation), and
/// instances in other processes wait on SQLite's lock for up to [`BUSY_TIMEOUT`].
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    writer: Mutex<Writer>,
    /// Callers waiting for `writer`'s lock.
    queued: AtomicUsize,
    /// Batches committed since the store was opened.
    commits: AtomicU64,
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
            writer: Mutex::new(Writer::new(connection)),
            queued: AtomicUsize::new(0),
            commits: AtomicU64::new(0),
        })
    }

    /// Opens (or creates) the store file at `path` like [`Store::open`], then brings the
    /// worker's own tables up to date: `migrations[i]` (one or more statements) takes the
    /// schema from version `i` to `i + 1`, and runs once, in a transaction of its own
    /// with the new version (SQLite's `user_version`), so a store is never left half
    /// migrated, and several instances starting together migrate it once. A migration is
    /// never edited once released: a change is a new one at the end.
    pub fn open_with_migrations(path: &Path, migrations: &[&str]) -> Result<Store, StoreError> {
        let mut store = Self::open(path)?;
        let sqlite = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        {
            let connection = &mut store.writer.get_mut().connection;
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
    /// In a savepoint of the batch's `IMMEDIATE` transaction (see "Group commit" in the
    /// crate's documentation), looks the message's `source` and `id` up in the inbox:
    /// - when they are there with the same fingerprint (a redelivery), answers with the
    ///   outputs recorded for it, without calling `work`;
    /// - when they are there with another fingerprint, another message reuses the
    ///   identity: fails permanently with [`fault_code::REUSED_ID`], without calling
    ///   `work`; the message is never answered with another's outputs;
    /// - otherwise calls `work` with the connection, inside the savepoint. On `Ok`,
    ///   records the identity and the outputs, so the side effects `work` wrote and the
    ///   record of them are kept together or not at all. On `Err`, rolls the savepoint
    ///   back: nothing of this message is kept and nothing recorded, so a retry runs
    ///   `work` again; the other messages of the batch are not touched.
    ///
    /// Returns once the batch has committed, with that answer; when the commit fails,
    /// with a transient error instead, since nothing of the batch was kept.
    ///
    /// `work` runs inline, in the caller's task, with the store's lock held: it must
    /// not block on anything but SQLite. SQLite errors (a store locked longer than
    /// [`BUSY_TIMEOUT`], a full disk) are transient: retrying later may help.
    pub async fn process_once<W>(
        &self,
        identity: &MessageIdentity<'_>,
        work: W,
    ) -> Result<Outputs, HandlerError>
    where
        W: FnOnce(&Connection) -> Result<Outputs, HandlerError>,
    {
        let mut writer = self.lock().await;
        writer
            .begin_unless_open()
            .map_err(|error| self.transient("begin", error))?;
        let answer = match panic::catch_unwind(AssertUnwindSafe(|| {
            self.run_message(&mut writer.connection, identity, work)
        })) {
            Ok(answer) => answer,
            Err(panicked) => {
                // The message's savepoint was rolled back as the panic unwound. The
                // batch is committed now with the other messages in it (their callers
                // hear it), so that it never keeps the write lock with nobody left to
                // commit it.
                self.end_batch(&mut writer);
                drop(writer);
                panic::resume_unwind(panicked);
            }
        };
        let ticket = writer.join().expect("the batch begun above is open");
        let mut member = Member {
            store: self,
            ticket,
        };
        self.until_ended(writer, &mut member.ticket).await;
        match member.ticket.ended() {
            Some(Ok(())) => answer,
            Some(Err(error)) => Err(self.transient("commit", error)),
            None => Err(self.transient("commit", "the batch ended without a commit")),
        }
    }

    /// Runs the message in a savepoint: the inbox lookup, `work` and the inbox record.
    /// Every early return drops the savepoint, which rolls back what the message did.
    fn run_message<W>(
        &self,
        connection: &mut Connection,
        identity: &MessageIdentity<'_>,
        work: W,
    ) -> Result<Outputs, HandlerError>
    where
        W: FnOnce(&Connection) -> Result<Outputs, HandlerError>,
    {
        let message_id = identity.id;
        let savepoint = connection
            .savepoint()
            .map_err(|error| self.transient("begin a savepoint", error))?;
        let recorded: Option<(String, String)> = savepoint
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
        let outputs = work(&savepoint)?;
        let serialized = serde_json::to_string(&outputs).map_err(|error| {
            HandlerError::permanent(
                fault_code::INTERNAL,
                format!("cannot record the outputs of message {message_id}: {error}"),
            )
        })?;
        savepoint
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
        savepoint
            .commit()
            .map_err(|error| self.transient("release the savepoint", error))?;
        Ok(outputs)
    }

    /// Returns once the batch of `ticket` has ended, committing it when this caller
    /// is the one to (see [`batch::next_step`]).
    async fn until_ended(&self, mut writer: MutexGuard<'_, Writer>, ticket: &mut Ticket) {
        let mut yielded = false;
        loop {
            match batch::next_step(
                writer.messages(),
                self.queued.load(Ordering::SeqCst),
                yielded,
            ) {
                Step::Commit => return self.end_batch(&mut writer),
                Step::Wait => {
                    drop(writer);
                    let ended = ticket.ended.wait_for(Option::is_some);
                    if tokio::time::timeout(batch::COMMIT_WAIT_BOUND, ended)
                        .await
                        .is_ok()
                    {
                        return;
                    }
                    let mut writer = self.lock().await;
                    if writer.is_open(ticket.generation) {
                        self.end_batch(&mut writer);
                    }
                    return;
                }
                Step::Yield => {
                    drop(writer);
                    tokio::task::yield_now().await;
                    yielded = true;
                    if ticket.ended().is_some() {
                        return;
                    }
                    writer = self.lock().await;
                    if !writer.is_open(ticket.generation) {
                        return;
                    }
                }
            }
        }
    }

    /// Runs `query` on the connection, for reads that need no inbox (a query changes
    /// nothing, so a redelivery may simply run it again). Writes belong in
    /// [`Store::process_once`].
    ///
    /// An open batch is committed first, so the query sees only committed effects.
    /// SQLite errors are transient, as in [`Store::process_once`].
    pub async fn read<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, HandlerError> {
        let mut writer = self.lock().await;
        self.end_batch(&mut writer);
        query(&writer.connection).map_err(|error| self.transient("read", error))
    }

    /// How many messages the inbox has recorded (an open batch is committed first).
    /// For tests and diagnostics.
    pub async fn processed_count(&self) -> Result<u64, StoreError> {
        let mut writer = self.lock().await;
        self.end_batch(&mut writer);
        writer
            .connection
            .query_row("SELECT COUNT(*) FROM inbox", [], |row| row.get::<_, i64>(0))
            // COUNT(*) is never negative.
            .map(i64::unsigned_abs)
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }

    /// How many batches this store has committed since it was opened: with
    /// [`Store::processed_count`], how many messages a commit carries. For tests and
    /// diagnostics.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// The connection, counted as queued while the lock is not yet taken.
    async fn lock(&self) -> MutexGuard<'_, Writer> {
        let _queued = Queued::enter(&self.queued);
        self.writer.lock().await
    }

    /// Commits the open batch, if any, and tells its callers.
    fn end_batch(&self, writer: &mut Writer) {
        if writer.end() {
            self.commits.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A transient handler error for an SQLite failure while doing `what`.
    fn transient(&self, what: &str, error: impl std::fmt::Display) -> HandlerError {
        HandlerError::transient(format!(
            "store {}: cannot {what}: {error}",
            self.path.display()
        ))
    }
}

/// A caller whose message is in a batch. Dropped before the batch has ended (the
/// caller's future was cancelled), it commits the batch when the store is free, so a
/// batch whose callers all went away does not keep the write lock; when the store is
/// busy, its holder is a caller that will see the batch end.
struct Member<'a> {
    store: &'a Store,
    ticket: Ticket,
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        if self.ticket.ended().is_some() {
            return;
        }
        if let Ok(mut writer) = self.store.writer.try_lock()
            && writer.is_open(self.ticket.generation)
        {
            self.store.end_batch(&mut writer);
        }
    }
}

#[cfg(test)]
mod tests;
