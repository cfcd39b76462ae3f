use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::task::{Context, Poll, Waker};

use futures_util::FutureExt;
use warren_messages::EchoReplied;

use super::*;

/// The worker's tables of these tests. `children` has a deferred foreign key, which
/// SQLite checks at the commit: a real way for a commit to fail.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS effects (n INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS parents (id INTEGER PRIMARY KEY);
    CREATE TABLE IF NOT EXISTS children (
        parent INTEGER NOT NULL REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED
    );";

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

    /// The effects another connection sees: only committed ones.
    fn committed_effects(&self) -> i64 {
        let connection = Connection::open(self.path()).expect("another connection");
        connection
            .query_row("SELECT COUNT(*) FROM effects", [], |row| row.get(0))
            .expect("count committed effects")
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// The identity of a message `message_id` from `/test`.
fn id(message_id: &str) -> MessageIdentity<'_> {
    MessageIdentity {
        source: "/test",
        id: message_id,
        fingerprint: "same content".into(),
    }
}

/// The identity `message_id` from `/test`, with other content.
fn reused(message_id: &str) -> MessageIdentity<'_> {
    MessageIdentity {
        fingerprint: "other content".into(),
        ..id(message_id)
    }
}

fn reply(text: &str) -> Outputs {
    let payload: EchoReplied = serde_json::from_str(text).expect("payload");
    Outputs::reply(&payload).expect("outputs")
}

fn json(outputs: &Outputs) -> String {
    serde_json::to_string(outputs).expect("serialize")
}

async fn effect_count(store: &Store) -> i64 {
    store
        .read(|connection| {
            connection.query_row("SELECT COUNT(*) FROM effects", [], |row| row.get(0))
        })
        .await
        .expect("count effects")
}

async fn processed(store: &Store) -> u64 {
    store.processed_count().await.expect("count")
}

fn add_effect(connection: &Connection, text: &str) -> Result<Outputs, HandlerError> {
    connection
        .execute("INSERT INTO effects (n) VALUES (1)", [])
        .map_err(|error| HandlerError::transient(error.to_string()))?;
    Ok(reply(text))
}

/// A row that breaks the deferred foreign key: the work succeeds, the commit fails.
fn add_orphan(connection: &Connection) -> Result<Outputs, HandlerError> {
    connection
        .execute("INSERT INTO children (parent) VALUES (42)", [])
        .map_err(|error| HandlerError::transient(error.to_string()))?;
    Ok(Outputs::none())
}

fn is_transient(result: &Result<Outputs, HandlerError>) -> bool {
    matches!(result, Err(HandlerError::Transient { .. }))
}

fn permanent_code(result: &Result<Outputs, HandlerError>) -> &str {
    match result {
        Err(HandlerError::Permanent { code, .. }) => code,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

/// Polls `future` once, in the calling task's context.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|context| Poll::Ready(Pin::new(&mut *future).poll(context))).await
}

#[tokio::test]
async fn open_creates_the_folder_in_wal_mode() {
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
        .await
        .expect("pragmas");
    assert_eq!(mode, "wal");
    assert_eq!(synchronous, 1, "NORMAL");
    assert_eq!(busy_timeout, 5000);
    assert_eq!(processed(&store).await, 0);
    assert_eq!(store.commits(), 0);
}

#[tokio::test]
async fn work_runs_once_per_message_id_and_replays_the_same_outputs() {
    let temp = TempStore::new();
    let store = temp.open();
    let runs = Cell::new(0);
    let first = store
        .process_once(&id("message-1"), |connection| {
            runs.set(runs.get() + 1);
            add_effect(connection, r#"{"n":1}"#)
        })
        .await
        .expect("first");
    let second = store
        .process_once(&id("message-1"), |connection| {
            runs.set(runs.get() + 1);
            add_effect(connection, r#"{"n":2}"#)
        })
        .await
        .expect("second");
    assert_eq!(runs.get(), 1, "work ran again for a processed message");
    assert_eq!(json(&first), json(&second), "same outputs, same ids");
    assert_eq!(effect_count(&store).await, 1);
    assert_eq!(processed(&store).await, 1);

    let other = store
        .process_once(&id("message-2"), |connection| {
            runs.set(runs.get() + 1);
            add_effect(connection, r#"{"n":1}"#)
        })
        .await
        .expect("other");
    assert_eq!(runs.get(), 2);
    assert_ne!(
        json(&first),
        json(&other),
        "a new message gets new output ids"
    );
    assert_eq!(effect_count(&store).await, 2);
    assert_eq!(processed(&store).await, 2);
    assert_eq!(store.commits(), 3, "one message at a time: a commit each");
}

#[tokio::test]
async fn a_reused_identity_is_refused_and_another_source_is_another_message() {
    let temp = TempStore::new();
    let store = temp.open();
    store
        .process_once(&id("message-1"), |connection| add_effect(connection, "{}"))
        .await
        .expect("first");
    let refused = store
        .process_once(&reused("message-1"), |_| {
            panic!("work must not run for a reused id")
        })
        .await;
    assert_eq!(permanent_code(&refused), fault_code::REUSED_ID);
    let elsewhere = MessageIdentity {
        source: "/elsewhere",
        ..reused("message-1")
    };
    store
        .process_once(&elsewhere, |connection| add_effect(connection, "{}"))
        .await
        .expect("the same id from another source is another message");
    assert_eq!(effect_count(&store).await, 2);
    assert_eq!(processed(&store).await, 2);
}

#[tokio::test]
async fn an_inbox_keyed_by_id_alone_is_migrated() {
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
    assert_eq!(processed(&store).await, 1);
    store
        .process_once(&id("message-1"), |connection| add_effect(connection, "{}"))
        .await
        .expect("works after the migration");
    assert_eq!(processed(&store).await, 2);
    drop(store);
    assert_eq!(processed(&temp.open()).await, 2);
}

#[tokio::test]
async fn migrations_run_once_each_in_order() {
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
        .await
        .expect("read");
    assert_eq!((rows, sum, version), (2, 3, 3), "each migration ran once");
    let mut broken = second.clone();
    broken.push("THIS IS NOT SQL");
    drop(store);
    assert!(Store::open_with_migrations(&temp.path(), &broken).is_err());
    let store = Store::open_with_migrations(&temp.path(), &second).expect("still at 3");
    let version: i64 = store
        .read(|connection| connection.query_row("PRAGMA user_version", [], |row| row.get(0)))
        .await
        .expect("version");
    assert_eq!(version, 3, "the failed migration changed nothing");
}

#[tokio::test]
async fn an_error_rolls_back_and_records_nothing() {
    let temp = TempStore::new();
    let store = temp.open();
    let failed = store
        .process_once(&id("message-1"), |connection| {
            add_effect(connection, "{}")?;
            Err(HandlerError::permanent("out_of_stock", "none left"))
        })
        .await;
    assert_eq!(permanent_code(&failed), "out_of_stock");
    assert_eq!(
        effect_count(&store).await,
        0,
        "the side effect was rolled back"
    );
    assert_eq!(processed(&store).await, 0);

    // The message was not recorded, so a retry runs the work.
    let runs = Cell::new(0);
    store
        .process_once(&id("message-1"), |connection| {
            runs.set(runs.get() + 1);
            add_effect(connection, "{}")
        })
        .await
        .expect("retry");
    assert_eq!(runs.get(), 1);
    assert_eq!(effect_count(&store).await, 1);
}

#[tokio::test]
async fn a_panic_in_work_rolls_back_and_leaves_the_store_usable() {
    let temp = TempStore::new();
    let store = temp.open();
    let panicked = AssertUnwindSafe(store.process_once(&id("message-1"), |connection| {
        let _ = add_effect(connection, "{}");
        panic!("the handler panicked");
    }))
    .catch_unwind()
    .await;
    assert!(panicked.is_err());
    assert_eq!(effect_count(&store).await, 0);
    assert_eq!(processed(&store).await, 0);
    store
        .process_once(&id("message-1"), |connection| add_effect(connection, "{}"))
        .await
        .expect("after the panic");
    assert_eq!(effect_count(&store).await, 1);
}

#[tokio::test]
async fn reopening_the_file_keeps_everything() {
    let temp = TempStore::new();
    let first = {
        let store = temp.open();
        store
            .process_once(&id("message-1"), |connection| {
                add_effect(connection, r#"{"kept":true}"#)
            })
            .await
            .expect("first")
    };
    let store = temp.open();
    assert_eq!(processed(&store).await, 1);
    assert_eq!(effect_count(&store).await, 1);
    let replayed = store
        .process_once(&id("message-1"), |_| panic!("work must not run again"))
        .await
        .expect("replayed");
    assert_eq!(json(&first), json(&replayed));
}

#[tokio::test]
async fn two_connections_to_one_file_share_the_inbox() {
    let temp = TempStore::new();
    let one = temp.open();
    let two = temp.open();
    let first = one
        .process_once(&id("message-1"), |connection| add_effect(connection, "{}"))
        .await
        .expect("first");
    let second = two
        .process_once(&id("message-1"), |_| {
            panic!("the other instance processed it")
        })
        .await
        .expect("second");
    assert_eq!(json(&first), json(&second));
    assert_eq!(effect_count(&two).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_inside_a_multi_threaded_runtime() {
    let temp = TempStore::new();
    let store = temp.open();
    let first = store
        .process_once(&id("message-1"), |connection| add_effect(connection, "{}"))
        .await
        .expect("first");
    let second = store
        .process_once(&id("message-1"), |_| panic!("already processed"))
        .await
        .expect("second");
    assert_eq!(json(&first), json(&second));
    assert_eq!(processed(&store).await, 1);
}

#[tokio::test]
async fn a_bad_schema_fails_to_open_and_failed_sql_in_work_records_nothing() {
    let temp = TempStore::new();
    assert!(matches!(
        Store::open_with_schema(&temp.path(), "CREATE TABLE nonsense ("),
        Err(StoreError::Sqlite { .. })
    ));
    let store = temp.open();
    let failed = store
        .process_once(&id("message-1"), |connection| {
            connection
                .execute("INSERT INTO missing_table VALUES (1)", [])
                .map_err(|error| HandlerError::transient(error.to_string()))?;
            Ok(Outputs::none())
        })
        .await;
    assert!(is_transient(&failed), "{failed:?}");
    assert_eq!(processed(&store).await, 0);
}

/// Three messages joined in one future reach `temp`'s store together: one commit.
async fn three_joined_messages_share_one_commit(temp: &TempStore) -> Store {
    let store = temp.open();
    let m1 = id("message-1");
    let m2 = id("message-2");
    let m3 = id("message-3");
    let (one, two, three) = tokio::join!(
        store.process_once(&m1, |connection| add_effect(connection, "{}")),
        store.process_once(&m2, |connection| add_effect(connection, "{}")),
        store.process_once(&m3, |connection| add_effect(connection, "{}")),
    );
    for outputs in [one, two, three] {
        outputs.expect("processed");
    }
    assert_eq!(store.commits(), 1, "three messages, one transaction");
    assert_eq!(temp.committed_effects(), 3);
    store
}

#[tokio::test]
async fn messages_that_reach_the_store_together_share_one_commit() {
    let temp = TempStore::new();
    let store = three_joined_messages_share_one_commit(&temp).await;
    assert_eq!(processed(&store).await, 3);
}

/// A future in no task (driven by `Runtime::block_on` of a multi-threaded runtime) is
/// woken at once after its yield; the futures joined with it still get their turn
/// first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_joined_outside_a_task_share_one_commit_too() {
    assert!(
        tokio::task::try_id().is_none(),
        "the test's body is in no task"
    );
    let temp = TempStore::new();
    three_joined_messages_share_one_commit(&temp).await;
}

#[tokio::test]
async fn an_error_inside_a_batch_rolls_back_only_its_message() {
    let temp = TempStore::new();
    let store = temp.open();
    let m1 = id("message-1");
    let m2 = id("message-2");
    let m3 = id("message-3");
    let (one, two, three) = tokio::join!(
        store.process_once(&m1, |connection| add_effect(connection, "{}")),
        store.process_once(&m2, |connection| {
            add_effect(connection, "{}")?;
            Err(HandlerError::refused("out_of_stock", "none left"))
        }),
        store.process_once(&m3, |connection| add_effect(connection, "{}")),
    );
    one.expect("the first");
    three.expect("the third");
    assert!(
        matches!(&two, Err(HandlerError::Refused { code, .. }) if code == "out_of_stock"),
        "{two:?}"
    );
    assert_eq!(store.commits(), 1);
    assert_eq!(
        temp.committed_effects(),
        2,
        "only the failed message's effect is gone"
    );
    assert_eq!(processed(&store).await, 2);
    let runs = Cell::new(0);
    store
        .process_once(&id("message-2"), |connection| {
            runs.set(runs.get() + 1);
            add_effect(connection, "{}")
        })
        .await
        .expect("the retry");
    assert_eq!(runs.get(), 1, "the failed message was not recorded");
}

#[tokio::test]
async fn a_failed_commit_fails_every_message_of_the_batch() {
    let temp = TempStore::new();
    let store = temp.open();
    store
        .read(|connection| connection.execute_batch("PRAGMA foreign_keys = ON"))
        .await
        .expect("foreign keys on");
    let first = store
        .process_once(&id("message-1"), |connection| add_effect(connection, "{}"))
        .await
        .expect("committed before");
    let m2 = id("message-2");
    let m1 = id("message-1");
    let m3 = id("message-3");
    let (one, one_again, orphan, two) = tokio::join!(
        store.process_once(&m2, |connection| add_effect(connection, "{}")),
        // A redelivery in the batch: what it finds was committed before.
        store.process_once(&m1, |_| panic!("already processed")),
        store.process_once(&m3, add_orphan),
        // The same message twice in one batch: the second finds the first's record.
        store.process_once(&m2, |_| panic!("in the batch already")),
    );
    for (name, result) in [
        ("message-2", &one),
        ("message-1 again", &one_again),
        ("the orphan", &orphan),
        ("message-2 again", &two),
    ] {
        assert!(is_transient(result), "{name}: {result:?}");
    }
    let Err(HandlerError::Transient { message }) = &one else {
        unreachable!()
    };
    assert!(message.contains("commit"), "{message}");
    assert_eq!(store.commits(), 1, "only the first batch");
    assert_eq!(
        temp.committed_effects(),
        1,
        "nothing of the failed batch was kept"
    );
    assert_eq!(processed(&store).await, 1);

    // The store is usable, and the messages run again.
    let runs = Cell::new(0);
    let m2 = id("message-2");
    let m1 = id("message-1");
    let (one, one_again) = tokio::join!(
        store.process_once(&m2, |connection| {
            runs.set(runs.get() + 1);
            add_effect(connection, "{}")
        }),
        store.process_once(&m1, |_| panic!("already processed")),
    );
    one.expect("message-2 again");
    assert_eq!(json(&one_again.expect("the redelivery")), json(&first));
    assert_eq!(runs.get(), 1);
    assert_eq!(temp.committed_effects(), 2);
    assert_eq!(processed(&store).await, 2);
}

#[tokio::test]
async fn redeliveries_inside_and_across_batches_get_the_recorded_outputs() {
    let temp = TempStore::new();
    let store = temp.open();
    let runs = Cell::new(0);
    let work = |connection: &Connection| {
        runs.set(runs.get() + 1);
        add_effect(connection, r#"{"n":1}"#)
    };
    let m1 = id("message-1");
    let reused_m1 = reused("message-1");
    let m2 = id("message-2");
    let (first, again, refused, other) = tokio::join!(
        store.process_once(&m1, work),
        store.process_once(&m1, work),
        store.process_once(&reused_m1, work),
        store.process_once(&m2, work),
    );
    let first = first.expect("first");
    assert_eq!(
        json(&first),
        json(&again.expect("redelivered in the batch"))
    );
    assert_eq!(permanent_code(&refused), fault_code::REUSED_ID);
    other.expect("another message");
    assert_eq!(runs.get(), 2, "once per message");
    assert_eq!(store.commits(), 1);

    let later = store
        .process_once(&id("message-1"), work)
        .await
        .expect("redelivered in a later batch");
    assert_eq!(json(&first), json(&later));
    assert_eq!(runs.get(), 2);
    assert_eq!(temp.committed_effects(), 2);
    assert_eq!(processed(&store).await, 2);
}

#[tokio::test]
async fn a_read_commits_the_open_batch_first() {
    let temp = TempStore::new();
    let store = temp.open();
    let m1 = id("message-1");
    let (processed_first, seen) = tokio::join!(
        store.process_once(&m1, |connection| add_effect(connection, "{}")),
        // Another connection sees only what is committed.
        store.read(|_| Ok(temp.committed_effects())),
    );
    processed_first.expect("processed");
    assert_eq!(
        seen.expect("read"),
        1,
        "the read came after the batch's commit"
    );
    assert_eq!(store.commits(), 1);
}

#[tokio::test]
async fn nothing_is_committed_before_the_batch_ends_and_a_cancelled_caller_ends_it() {
    let temp = TempStore::new();
    let store = temp.open();
    let identity = id("message-1");
    let mut processing =
        Box::pin(store.process_once(&identity, |connection| add_effect(connection, "{}")));
    assert!(
        poll_once(&mut processing).await.is_pending(),
        "the caller yields with its batch open"
    );
    assert_eq!(temp.committed_effects(), 0, "not committed yet");
    assert_eq!(store.commits(), 0);
    drop(processing);
    assert_eq!(
        temp.committed_effects(),
        1,
        "committed by the cancelled caller"
    );
    assert_eq!(store.commits(), 1);
    store
        .process_once(&identity, |_| panic!("already processed"))
        .await
        .expect("the redelivery gets the recorded outputs");
}

#[tokio::test(start_paused = true)]
async fn a_batch_left_for_a_queued_caller_that_was_cancelled_is_committed_by_its_waiter() {
    let temp = TempStore::new();
    let store = temp.open();
    let (first_id, queued_id) = (id("message-1"), id("message-2"));
    let queued = RefCell::new(Some(Box::pin(
        store.process_once(&queued_id, |connection| add_effect(connection, "{}")),
    )));
    let mut first = pin!(store.process_once(&first_id, |connection| {
        // While the first message holds the store, another caller queues for it.
        let mut context = Context::from_waker(Waker::noop());
        let mut queued = queued.borrow_mut();
        let second = queued.as_mut().expect("the queued caller");
        assert!(second.as_mut().poll(&mut context).is_pending());
        add_effect(connection, "{}")
    }));
    assert!(
        poll_once(&mut first).await.is_pending(),
        "the first caller leaves its batch open for the queued one, and waits"
    );
    // The queued caller is cancelled before it gets the store.
    queued.borrow_mut().take();
    let started = tokio::time::Instant::now();
    first.await.expect("committed by its own caller");
    assert!(started.elapsed() >= batch::COMMIT_WAIT_BOUND);
    assert_eq!(store.commits(), 1);
    assert_eq!(temp.committed_effects(), 1);
}

#[tokio::test]
async fn a_panic_inside_a_batch_rolls_back_only_its_message() {
    let temp = TempStore::new();
    let store = temp.open();
    let m1 = id("message-1");
    let m2 = id("message-2");
    let m3 = id("message-3");
    let (one, panicked, three) = tokio::join!(
        store.process_once(&m1, |connection| add_effect(connection, "{}")),
        AssertUnwindSafe(store.process_once(&m2, |connection| {
            let _ = add_effect(connection, "{}");
            panic!("the handler panicked");
        }))
        .catch_unwind(),
        store.process_once(&m3, |connection| add_effect(connection, "{}")),
    );
    one.expect("the first");
    assert!(panicked.is_err());
    three.expect("the third");
    assert_eq!(temp.committed_effects(), 2);
    assert_eq!(processed(&store).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_callers_all_get_their_outputs_and_every_effect_is_kept() {
    const MESSAGES: usize = 300;
    let temp = TempStore::new();
    let store = Arc::new(temp.open());
    let runs = Arc::new(AtomicUsize::new(0));
    let mut callers = tokio::task::JoinSet::new();
    // Every message twice, as a redelivery racing its first delivery.
    for round in 0..2 {
        for message in 0..MESSAGES {
            let (store, runs) = (Arc::clone(&store), Arc::clone(&runs));
            callers.spawn(async move {
                let message_id = format!("message-{message}");
                let outputs = store
                    .process_once(&id(&message_id), |connection| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        add_effect(connection, &format!(r#"{{"n":{message}}}"#))
                    })
                    .await
                    .expect("processed");
                (message, round, json(&outputs))
            });
        }
    }
    let mut outputs = vec![[String::new(), String::new()]; MESSAGES];
    while let Some(joined) = callers.join_next().await {
        let (message, round, json) = joined.expect("a caller");
        outputs[message][round] = json;
    }
    for (message, [first, second]) in outputs.iter().enumerate() {
        assert_eq!(
            first, second,
            "message {message}: both deliveries, one answer"
        );
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        MESSAGES,
        "work ran once a message"
    );
    assert_eq!(
        temp.committed_effects(),
        i64::try_from(MESSAGES).expect("small")
    );
    assert_eq!(
        processed(&store).await,
        u64::try_from(MESSAGES).expect("small")
    );
    let commits = store.commits();
    assert!(
        (1..=2 * MESSAGES as u64).contains(&commits),
        "{commits} commits"
    );
}
