//! Connecting to the broker, and the back-off between attempts.
//!
//! lapin's own recovery is not used: a lost connection ends the session that owned it,
//! and the session is built again from nothing (connection, channels, topology,
//! consumers), so no state of the dead connection survives.

use std::time::Duration;

use backon::BackoffBuilder;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Channel, Connection, ConnectionProperties, uri::AMQPUri};

use crate::config::{AmqpSettings, ConfigError, TlsSettings};
use crate::error::RuntimeError;

/// How long a TCP connect plus AMQP handshake may take.
const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// Opens a connection named `connection_name` (shown in the broker's tools), with the
/// configured heartbeat unless the URL sets one.
///
/// An `amqps://` URL is connected with TLS (lapin's rustls): the broker's certificate is
/// checked against the system's roots plus `amqp.tls.ca_file`, and the client certificate
/// of `amqp.tls.client_cert_file` is presented when set. The files are read on every
/// connect, so a reconnect picks up renewed ones. A failed handshake is
/// [`RuntimeError::Tls`].
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
    let uses_tls = uri.scheme == lapin::uri::AMQPScheme::AMQPS;
    let tls_config = tls_config(&settings.tls)?;
    let runtime = lapin::runtime::default_runtime()?;
    Connection::connect_uri_with_config(uri, properties, tls_config, runtime)
        .await
        .map_err(|error| {
            if let Some(tls_error) = tls_failure(&error) {
                RuntimeError::Tls(format!(
                    "the handshake failed (check amqp.tls.ca_file, the broker's certificate \
                     and the host it names, and amqp.tls.client_cert_file): {tls_error}"
                ))
            } else if uses_tls && closed_by_peer(&error) {
                RuntimeError::Tls(format!(
                    "the broker closed the connection while it was being set up, as it does \
                     when it demands a client certificate and none or an untrusted one was \
                     presented (check amqp.tls.client_cert_file): {error}"
                ))
            } else {
                RuntimeError::Amqp(error)
            }
        })
}

/// Whether a failed connect ended with the peer closing or resetting the socket. Over
/// TLS 1.3 a broker that refuses our certificate (or its absence) does so after the
/// client has finished its side of the handshake: its alert may or may not be read
/// before the reset.
fn closed_by_peer(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::IOError(io_error) if matches!(
            io_error.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::BrokenPipe
        )
    )
}

/// lapin's TLS configuration from the settings: the CA file's certificates (PEM, added to
/// the system's roots) and the client identity (PEM certificate and key).
fn tls_config(settings: &TlsSettings) -> Result<OwnedTLSConfig, RuntimeError> {
    let invalid = |key, reason| RuntimeError::Config(ConfigError::Invalid { key, reason });
    let cert_chain = if settings.ca_file.as_os_str().is_empty() {
        None
    } else {
        Some(
            crate::config::read_pem_certificates(&settings.ca_file)
                .map_err(|reason| invalid("amqp.tls.ca_file", reason))?,
        )
    };
    let identity = if settings.has_client_identity() {
        let pem = crate::config::read_pem_certificates(&settings.client_cert_file)
            .map_err(|reason| invalid("amqp.tls.client_cert_file", reason))?;
        let key = crate::config::read_pem_private_key(&settings.client_key_file)
            .map_err(|reason| invalid("amqp.tls.client_key_file", reason))?;
        Some(OwnedIdentity::PKCS8 {
            pem: pem.into_bytes(),
            key,
        })
    } else {
        None
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

/// The TLS error behind a failed connect, if that is what it was: rustls's error inside
/// the I/O error lapin reports.
fn tls_failure(error: &lapin::Error) -> Option<&rustls::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(tls_error) = current.downcast_ref::<rustls::Error>() {
            return Some(tls_error);
        }
        // An I/O error's `source` skips the error it wraps, so that one is looked at here.
        if let Some(io_error) = current.downcast_ref::<std::io::Error>()
            && let Some(inner) = io_error.get_ref()
            && let Some(tls_error) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(tls_error);
        }
        source = current.source();
    }
    None
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

    #[test]
    fn a_tls_failure_is_told_from_other_connect_errors() {
        let untrusted = lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        assert!(
            tls_failure(&untrusted)
                .is_some_and(|error| error.to_string().contains("UnknownIssuer"))
        );
        let refused =
            lapin::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(tls_failure(&refused).is_none());
        assert!(!closed_by_peer(&refused));
        let reset = lapin::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(closed_by_peer(&reset) && tls_failure(&reset).is_none());
    }

    #[test]
    fn no_tls_settings_give_lapins_defaults() {
        let settings = TlsSettings {
            ca_file: "".into(),
            client_cert_file: "".into(),
            client_key_file: "".into(),
            required: false,
        };
        assert_eq!(
            tls_config(&settings).expect("no files to read"),
            OwnedTLSConfig::default()
        );
    }
}
