//! [`DeadLetterQueues`]: one broker connection to read, replay and purge dead-letter
//! queues through, for a caller that should not see AMQP (the `warren dlq` command).

use std::time::Duration;

use lapin::Connection;
use warren_runtime::{RuntimeError, Settings, close_connection, connect};

use super::letter::DeadLetter;
use super::replay::{ReplayReport, ReplaySelection};
use super::{reader, replay};

/// A connection to the broker for working on dead-letter queues. Each method does what
/// the function of the same name in [`super`] does, on this connection; replays wait
/// for each confirm at most `amqp.confirm_timeout_ms`.
pub struct DeadLetterQueues {
    connection: Connection,
    confirm_timeout: Duration,
}

impl DeadLetterQueues {
    /// Connects to the broker of `settings` as `connection_name` (shown in the broker's
    /// tools). Connecting is bounded as [`warren_runtime::connect`] bounds it.
    pub async fn connect(settings: &Settings, connection_name: &str) -> Result<Self, RuntimeError> {
        Ok(Self {
            connection: connect(&settings.amqp, connection_name).await?,
            confirm_timeout: settings.amqp.confirm_timeout(),
        })
    }

    /// How many dead letters wait for `worker` ([`reader::count`]).
    pub async fn count(&self, worker: &str) -> Result<u32, RuntimeError> {
        reader::count(&self.connection, worker).await
    }

    /// The first `limit` dead letters of `worker`, in queue order, none removed
    /// ([`reader::browse`]).
    pub async fn browse(
        &self,
        worker: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, RuntimeError> {
        reader::browse(&self.connection, worker, limit).await
    }

    /// The first dead letter of `worker` with `message_id`, none removed
    /// ([`reader::find`]).
    pub async fn find(
        &self,
        worker: &str,
        message_id: &str,
    ) -> Result<Option<DeadLetter>, RuntimeError> {
        reader::find(&self.connection, worker, message_id).await
    }

    /// Replays the `selection` of `worker`'s dead letters ([`replay::replay`]).
    pub async fn replay(
        &self,
        worker: &str,
        selection: &ReplaySelection,
    ) -> Result<ReplayReport, RuntimeError> {
        replay::replay(&self.connection, worker, selection, self.confirm_timeout).await
    }

    /// Deletes every dead letter waiting for `worker` ([`reader::purge`]).
    pub async fn purge(&self, worker: &str) -> Result<u32, RuntimeError> {
        reader::purge(&self.connection, worker).await
    }

    /// Closes the connection, best effort and bounded by
    /// [`warren_runtime::CLOSE_TIMEOUT`].
    pub async fn close(self) {
        close_connection(&self.connection, "done").await;
    }
}
