//! Connecting to the broker, and the back-off between attempts.
//!
//! lapin's own recovery is not used: a lost connection ends the session that owned it,
//! and the session is built again from nothing (connection, channels, topology,
//! consumers), so no state of the dead connection survives.

use std::time::Duration;

use backon::BackoffBuilder;
use lapin::{Channel, Connection, ConnectionProperties, uri::AMQPUri};

use crate::config::AmqpSettings;
use crate::error::RuntimeError;

/// How long a TCP connect plus AMQP handshake may take.
const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// Opens a connection named `connection_name` (shown in the broker's tools), with the
/// configured heartbeat unless the URL sets one.
///
/// The frame size is the broker's (128 KiB by default), never less: a message's header
/// frame is not split, and the broker delivers whatever a publisher could send it, so a
/// worker with smaller frames would refuse such a message as a protocol violation on
/// every delivery. (lapin keeps two buffers of 32 frames, 8 MiB of resident memory at
/// that size; it is the price of accepting every message the broker accepts.)
pub async fn connect(
    settings: &AmqpSettings,
    connection_name: &str,
) -> Result<Connection, RuntimeError> {
    let mut uri: AMQPUri = settings.url.parse().map_err(|reason: String| {
        RuntimeError::Config(crate::config::ConfigError::Invalid {
            key: "amqp.url",
            reason,
        })
    })?;
    uri.query.heartbeat.get_or_insert(settings.heartbeat_secs);
    uri.query
        .connection_timeout
        .get_or_insert(CONNECT_TIMEOUT_MS);
    let properties = ConnectionProperties::default().with_connection_name(connection_name.into());
    Ok(Connection::connect_uri(uri, properties).await?)
}

/// How long setting up a session may take, from the TCP connect to the consumer's
/// consume-ok. lapin's RPCs have no deadline of their own; a session whose set-up hangs
/// would otherwise sit there, consuming nothing, with no error to recover from.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a session's set-up, failing with [`RuntimeError::SetupTimeout`] after
/// [`SETUP_TIMEOUT`].
pub(crate) async fn within_setup_timeout<T>(
    setup: impl Future<Output = Result<T, RuntimeError>>,
) -> Result<T, RuntimeError> {
    tokio::time::timeout(SETUP_TIMEOUT, setup)
        .await
        .map_err(|_elapsed| RuntimeError::SetupTimeout(SETUP_TIMEOUT))?
}

/// How long closing a connection or a channel may take. lapin's close waits for the
/// broker's close-ok, which may never come (seen after the broker had already dropped the
/// connection; a blocked connection is not read either); the broker cleans up after a
/// dropped socket anyway.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Closes `connection`, best effort: bounded by [`CLOSE_TIMEOUT`], errors ignored.
pub async fn close_connection(connection: &Connection, reason: &str) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, reason.into())).await;
}

/// Closes `channel`, best effort: bounded by [`CLOSE_TIMEOUT`], errors ignored.
pub async fn close_channel(channel: &Channel, reason: &str) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, reason.into())).await;
}

/// Delays between reconnection attempts: exponential from 100 ms to 10 s, with jitter,
/// without end.
pub fn reconnect_delays() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_bounded() {
        let delays: Vec<Duration> = reconnect_delays().take(30).collect();
        assert_eq!(delays.len(), 30);
        assert!(delays[0] < Duration::from_millis(250));
        assert!(delays.iter().all(|delay| *delay <= Duration::from_secs(20)));
        assert!(delays[29] >= Duration::from_secs(10));
    }
}
