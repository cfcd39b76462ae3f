//! How full a queue is and who consumes it, asked of the broker (`warren top`).
//!
//! [`QueueStats`] holds one connection, opened on the first read and opened again on
//! the next read after any broker error, and one channel on it. Each queue is read by
//! a passive `queue.declare`, which answers with the queue's ready messages and its
//! consumers without creating or changing anything. The broker answers a passive
//! declare of a missing queue by closing the channel (404 `NOT_FOUND`): the queue is
//! reported [`QueueState::Missing`] and the next read opens a new channel. Every wait on
//! the broker (connect, channel, declare) is bounded by the timeout given to
//! [`QueueStats::new`]; lapin's futures have no deadline of their own.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use warren_runtime::config::AmqpSettings;
use warren_runtime::{RuntimeError, Settings, close_connection, connect};

use crate::dead_letters::is_queue_missing;

/// What the broker says of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    /// The queue exists.
    Found {
        /// Messages ready for delivery (not those delivered and not yet acked).
        messages: u32,
        /// Consumers attached.
        consumers: u32,
    },
    /// No queue of that name in the vhost.
    Missing,
}

/// Why the broker could not be read. Either way the connection is dropped, and the
/// next read connects again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueStatsError {
    /// Connecting failed, or the broker or the connection failed.
    #[error(transparent)]
    Broker(#[from] RuntimeError),
    /// The broker did not answer in time.
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
}

/// One connection to read queues through, opened when needed.
pub struct QueueStats {
    amqp: AmqpSettings,
    connection_name: String,
    timeout: Duration,
    connection: Option<Connection>,
    channel: Option<Channel>,
}

impl QueueStats {
    /// A reader of queues on the broker of `settings`, connecting as `connection_name`
    /// (shown in the broker's tools) on its first read. Each wait on the broker is
    /// bounded by `timeout`.
    pub fn new(settings: &Settings, connection_name: &str, timeout: Duration) -> QueueStats {
        QueueStats {
            amqp: settings.amqp.clone(),
            connection_name: connection_name.to_owned(),
            timeout,
            connection: None,
            channel: None,
        }
    }

    /// Whether a connection is open (it may still turn out to be dead on the next read).
    pub fn is_connected(&self) -> bool {
        self.connection
            .as_ref()
            .is_some_and(|connection| connection.status().connected())
    }

    /// The state of `queue`, connecting first when there is no live connection.
    pub async fn read(&mut self, queue: &str) -> Result<QueueState, QueueStatsError> {
        let channel = self.channel().await?;
        let declared = tokio::time::timeout(
            self.timeout,
            channel.queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            ),
        )
        .await;
        match declared {
            Ok(Ok(declared)) => Ok(QueueState::Found {
                messages: declared.message_count(),
                consumers: declared.consumer_count(),
            }),
            Ok(Err(error)) => {
                let error = RuntimeError::from(error);
                if is_queue_missing(&error) {
                    // The broker closed the channel; the connection is fine.
                    self.channel = None;
                    Ok(QueueState::Missing)
                } else {
                    self.drop_connection().await;
                    Err(error.into())
                }
            }
            Err(_elapsed) => {
                self.drop_connection().await;
                Err(QueueStatsError::Timeout(self.timeout))
            }
        }
    }

    /// The state of each of `queues`, in order; the first error ends the reading. With
    /// no queues it still connects (or checks the connection), so success means the
    /// broker answered.
    pub async fn read_all(
        &mut self,
        queues: &[String],
    ) -> Result<Vec<QueueState>, QueueStatsError> {
        self.channel().await?;
        let mut states = Vec::with_capacity(queues.len());
        for queue in queues {
            states.push(self.read(queue).await?);
        }
        Ok(states)
    }

    /// Closes the connection, if any, best effort and bounded by
    /// [`warren_runtime::CLOSE_TIMEOUT`].
    pub async fn close(mut self) {
        self.drop_connection().await;
    }

    /// The open channel, or a new one (on a new connection when the last one is gone).
    async fn channel(&mut self) -> Result<Channel, QueueStatsError> {
        if let Some(channel) = &self.channel
            && channel.status().connected()
            && self.is_connected()
        {
            return Ok(channel.clone());
        }
        self.channel = None;
        let connection = match self.connection.take() {
            Some(connection) if connection.status().connected() => connection,
            stale => {
                if let Some(stale) = stale {
                    close_connection(&stale, "lost").await;
                }
                tokio::time::timeout(self.timeout, connect(&self.amqp, &self.connection_name))
                    .await
                    .map_err(|_elapsed| QueueStatsError::Timeout(self.timeout))??
            }
        };
        match tokio::time::timeout(self.timeout, connection.create_channel()).await {
            Ok(Ok(channel)) => {
                self.connection = Some(connection);
                self.channel = Some(channel.clone());
                Ok(channel)
            }
            Ok(Err(error)) => {
                close_connection(&connection, "no channel").await;
                Err(RuntimeError::from(error).into())
            }
            Err(_elapsed) => {
                close_connection(&connection, "no channel").await;
                Err(QueueStatsError::Timeout(self.timeout))
            }
        }
    }

    async fn drop_connection(&mut self) {
        self.channel = None;
        if let Some(connection) = self.connection.take() {
            close_connection(&connection, "done").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_runtime::Overrides;

    /// Settings whose broker is `url`.
    fn settings(url: &str) -> Settings {
        Settings::load_from(
            [("WARREN_AMQP_URL".to_owned(), url.to_owned())],
            &Overrides::default(),
        )
        .expect("valid settings")
    }

    #[tokio::test]
    async fn a_broker_that_is_not_there_is_an_error_and_no_connection() {
        // Port 1 on the loopback: nothing listens there, the connect is refused.
        let mut stats = QueueStats::new(
            &settings("amqp://guest:guest@127.0.0.1:1/%2f"),
            "warren-test",
            Duration::from_secs(5),
        );
        let read = stats.read("warren.echo").await;
        assert!(read.is_err(), "{read:?}");
        assert!(!stats.is_connected());
        // And again, with no queue to read: every read tries to connect anew.
        assert!(stats.read_all(&[]).await.is_err());
        stats.close().await;
    }
}
