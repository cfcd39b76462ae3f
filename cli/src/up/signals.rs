//! The signals that stop the fleet: SIGINT (Ctrl-C), SIGTERM, and SIGHUP (the terminal
//! went away), each meaning "drain and stop"; a second one means "kill now".

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::UpError;

/// Listeners for every stop signal. Made before anything is started, so no signal falls
/// between a start and its listener.
#[derive(Debug)]
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    /// Starts listening.
    pub fn listen() -> Result<StopSignals, UpError> {
        let listen = |kind: SignalKind, signal_name: &'static str| {
            signal(kind).map_err(|source| UpError::Signal {
                signal_name,
                source,
            })
        };
        Ok(StopSignals {
            interrupt: listen(SignalKind::interrupt(), "SIGINT")?,
            terminate: listen(SignalKind::terminate(), "SIGTERM")?,
            hangup: listen(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// Waits for the next stop signal and returns its name.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            Some(()) = self.interrupt.recv() => "SIGINT",
            Some(()) = self.terminate.recv() => "SIGTERM",
            Some(()) = self.hangup.recv() => "SIGHUP",
            // Every stream ended: no signal can arrive any more.
            else => std::future::pending().await,
        }
    }
}
