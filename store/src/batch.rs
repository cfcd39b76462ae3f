//! Group commit: the messages that reach a store together share one write transaction,
//! each in a savepoint of its own, and each caller hears how the transaction ended.
//!
//! The parts here are the state behind the store's lock (the connection and the batch
//! open on it), a caller's [`Ticket`] to its batch's end, and [`next_step`]: what a
//! caller does once its message is in the batch, as a pure function.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::watch;

use crate::CachedStatements;

/// The most messages one transaction holds: the caller that brings a batch to this
/// many commits it, whoever else is on the way, so the first callers' outputs are not
/// held back without end. Measured on the order pipeline (docs/performance.md), a cap
/// of 16, 64 and 256 gave 1,231, 1,338 and 1,411 orders/s; at 256 the orders worker's
/// batches averaged 27 messages, so the cap seldom binds.
pub(crate) const MAX_BATCH: usize = 256;

/// How long a caller that left its batch open for a caller queued behind it waits for
/// that batch's commit before taking the lock and committing it itself: the queued
/// caller may have been cancelled before it got the lock.
pub(crate) const COMMIT_WAIT_BOUND: Duration = Duration::from_millis(50);

/// How a batch ended: committed, or why its commit failed (SQLite's words).
pub(crate) type Ended = Result<(), Arc<str>>;

/// What a caller does once its message is in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Commit the batch now, and tell every caller in it.
    Commit,
    /// Leave the batch open for the callers queued for the lock, and wait (bounded)
    /// for its commit.
    Wait,
    /// Leave the batch open, let every other task and future that is ready run (they
    /// may join the batch), then come back and decide again.
    Yield,
}

/// What a caller does, given how many messages the batch holds, how many callers are
/// queued for the lock, and whether this caller has yielded already.
///
/// A full batch is committed at once. A caller queued for the lock comes through after
/// this one and decides in turn, so the last of a queue commits for all of them. With
/// nobody queued, the caller yields once: the other futures of its task (a worker's
/// session polls every delivery in one task) and other tasks get their turn, and those
/// that reach the store join the batch; back from it, it commits. So under light load
/// a batch is one message, committed one scheduler turn later.
pub(crate) fn next_step(messages: usize, callers_queued: usize, yielded: bool) -> Step {
    if messages >= MAX_BATCH {
        Step::Commit
    } else if callers_queued > 0 {
        Step::Wait
    } else if !yielded {
        Step::Yield
    } else {
        Step::Commit
    }
}

/// The connection, and the batch open on it if any: what the store's lock guards.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) connection: Connection,
    open: Option<OpenBatch>,
    next_generation: u64,
}

/// A write transaction that has begun and not ended, with the messages in it.
#[derive(Debug)]
struct OpenBatch {
    generation: u64,
    messages: usize,
    ended: watch::Sender<Option<Ended>>,
}

/// A caller's place in a batch: which batch, and where its end is told.
#[derive(Debug)]
pub(crate) struct Ticket {
    pub(crate) generation: u64,
    pub(crate) ended: watch::Receiver<Option<Ended>>,
}

impl Ticket {
    /// How the batch ended, once it has.
    pub(crate) fn ended(&self) -> Option<Ended> {
        self.ended.borrow().clone()
    }
}

impl Writer {
    pub(crate) fn new(connection: Connection) -> Writer {
        Writer {
            connection,
            open: None,
            next_generation: 0,
        }
    }

    /// Begins a batch (`BEGIN IMMEDIATE`: the write lock, waiting up to the busy
    /// timeout for another instance) unless one is open.
    pub(crate) fn begin_unless_open(&mut self) -> rusqlite::Result<()> {
        if self.open.is_some() {
            return Ok(());
        }
        // A transaction with no batch is one whose ROLLBACK failed after a failed
        // commit: end it before beginning anew.
        if !self.connection.is_autocommit() {
            self.connection.execute_batch("ROLLBACK")?;
        }
        self.connection.execute_cached("BEGIN IMMEDIATE", [])?;
        let (ended, _) = watch::channel(None);
        self.open = Some(OpenBatch {
            generation: self.next_generation,
            messages: 0,
            ended,
        });
        self.next_generation += 1;
        Ok(())
    }

    /// Counts one more message in the open batch and gives its caller a ticket to the
    /// batch's end. `None` when no batch is open.
    pub(crate) fn join(&mut self) -> Option<Ticket> {
        let batch = self.open.as_mut()?;
        batch.messages += 1;
        Some(Ticket {
            generation: batch.generation,
            ended: batch.ended.subscribe(),
        })
    }

    /// How many messages the open batch holds (0 when none is open).
    pub(crate) fn messages(&self) -> usize {
        self.open.as_ref().map_or(0, |batch| batch.messages)
    }

    /// Whether batch `generation` is the open one.
    pub(crate) fn is_open(&self, generation: u64) -> bool {
        self.open
            .as_ref()
            .is_some_and(|batch| batch.generation == generation)
    }

    /// Commits the open batch, if any, and tells its callers how that went; a failed
    /// commit is rolled back. Returns whether a batch was committed.
    pub(crate) fn end(&mut self) -> bool {
        let Some(batch) = self.open.take() else {
            return false;
        };
        let ended = match self.connection.execute_cached("COMMIT", []) {
            Ok(_) => Ok(()),
            Err(error) => {
                // A failed COMMIT may leave the transaction open (a deferred constraint)
                // or have rolled it back already (some I/O errors).
                if !self.connection.is_autocommit() {
                    let _ = self.connection.execute_batch("ROLLBACK");
                }
                Err(Arc::from(error.to_string()))
            }
        };
        let committed = ended.is_ok();
        batch.ended.send_replace(Some(ended));
        committed
    }
}

/// Counts a caller as queued for the lock from its creation until it is dropped: once
/// the caller holds the lock, or when it is cancelled while waiting.
pub(crate) struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    pub(crate) fn enter(count: &'a AtomicUsize) -> Queued<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Queued(count)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_caller_does_once_its_message_is_in() {
        let table = [
            // (messages, queued, yielded) → step
            ((1, 0, false), Step::Yield),
            ((1, 0, true), Step::Commit),
            ((1, 1, false), Step::Wait),
            ((1, 3, true), Step::Wait),
            ((MAX_BATCH - 1, 1, false), Step::Wait),
            ((MAX_BATCH, 1, false), Step::Commit),
            ((MAX_BATCH, 0, false), Step::Commit),
            ((MAX_BATCH + 1, 5, true), Step::Commit),
        ];
        for ((messages, queued, yielded), step) in table {
            assert_eq!(
                next_step(messages, queued, yielded),
                step,
                "{messages} messages, {queued} queued, yielded: {yielded}"
            );
        }
    }
}
