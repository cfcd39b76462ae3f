//! Turning SIGTERM, SIGINT (Ctrl-C) and SIGHUP into a cancellation token, and a worker
//! started by `warren up` following its supervisor.
//!
//! `warren up` sets [`SUPERVISOR_PID_VARIABLE`] on every worker it starts. Such a worker
//! must not outlive its supervisor, however the supervisor ended (a SIGKILL leaves it no
//! chance to stop anyone): [`follow_supervisor`] asks the kernel for a SIGTERM when the
//! parent dies (Linux's parent-death signal), then checks the parent is still the
//! supervisor, which closes the race with a supervisor that died before the request.
//! [`on_signals`] also watches the parent once a second, for systems without that
//! signal. Either way the worker drains as on any SIGTERM.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The variable `warren up` sets on each worker it starts: its own process id.
pub const SUPERVISOR_PID_VARIABLE: &str = "WARREN_SUPERVISOR_PID";

/// How often a supervised worker checks that its parent is still its supervisor.
const SUPERVISOR_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The process that started this worker and supervises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supervisor {
    pid: i32,
}

impl Supervisor {
    /// The supervisor's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether this process's parent is still the supervisor (an orphan is adopted by
    /// init or a subreaper).
    pub fn is_parent(&self) -> bool {
        nix::unistd::getppid().as_raw() == self.pid
    }
}

/// Why a supervised worker must not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// The supervisor died before the worker got going.
    #[error("its supervisor (pid {0}) is gone")]
    Gone(i32),
    /// [`SUPERVISOR_PID_VARIABLE`] is not a process id.
    #[error("{SUPERVISOR_PID_VARIABLE}={0:?} is not a process id")]
    InvalidPid(String),
}

/// The supervisor named by [`SUPERVISOR_PID_VARIABLE`], bound to this process: on Linux
/// the kernel sends SIGTERM when it dies. `None` when the variable is not set (the
/// worker was started some other way). Call it from the main thread, before the async
/// runtime starts: Linux sends the parent-death signal when the parent *thread* ends,
/// and keeps the request per thread.
///
/// # Errors
/// When the supervisor is already gone, or the variable is not a process id.
pub fn follow_supervisor() -> Result<Option<Supervisor>, SupervisorError> {
    let Some(value) = std::env::var_os(SUPERVISOR_PID_VARIABLE) else {
        return Ok(None);
    };
    let pid = parse_supervisor_pid(&value.to_string_lossy())?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(error) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM) {
        tracing::warn!(%error, "cannot ask for a signal when the supervisor dies; checking every second instead");
    }
    let supervisor = Supervisor { pid };
    if supervisor.is_parent() {
        Ok(Some(supervisor))
    } else {
        Err(SupervisorError::Gone(pid))
    }
}

/// The supervisor's pid in [`SUPERVISOR_PID_VARIABLE`]'s value: a process id above 1
/// (1 is init, which adopts orphans).
fn parse_supervisor_pid(text: &str) -> Result<i32, SupervisorError> {
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 1)
        .ok_or_else(|| SupervisorError::InvalidPid(text.to_owned()))
}

/// A token cancelled on the first SIGTERM, SIGINT or SIGHUP, or once this process's
/// parent is no longer `supervisor`.
pub fn on_signals_or_orphaned(supervisor: Option<Supervisor>) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = wait_for_signal() => tracing::info!("signal received: shutting down"),
            () = wait_until_orphaned(supervisor) => {
                tracing::warn!("the supervisor is gone: shutting down");
            }
        }
        cancel.cancel();
    });
    token
}

/// A token cancelled on the first SIGTERM, SIGINT or SIGHUP.
pub fn on_signals() -> CancellationToken {
    on_signals_or_orphaned(None)
}

/// Resolves once this process's parent is no longer `supervisor`; never for `None`.
async fn wait_until_orphaned(supervisor: Option<Supervisor>) {
    let Some(supervisor) = supervisor else {
        return std::future::pending().await;
    };
    let mut checks = tokio::time::interval(SUPERVISOR_CHECK_INTERVAL);
    loop {
        checks.tick().await;
        if !supervisor.is_parent() {
            return;
        }
    }
}

/// Resolves on the first SIGTERM, SIGINT (Ctrl-C) or SIGHUP (the terminal went away).
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        /// The next delivery of `signal`, or never when it cannot be listened for.
        async fn next(stream: &mut Option<Signal>) {
            match stream {
                Some(stream) => {
                    if stream.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        }
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(stream) => Some(stream),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for {name}");
                None
            }
        };
        let mut terminate = listen(SignalKind::terminate(), "SIGTERM");
        let mut hangup = listen(SignalKind::hangup(), "SIGHUP");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = next(&mut terminate) => {}
            () = next(&mut hangup) => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_supervisor_pid_is_a_process_id_above_init() {
        assert_eq!(parse_supervisor_pid(" 4242\n").ok(), Some(4242));
        for bad in ["", "abc", "1", "0", "-7", "99999999999"] {
            assert!(
                matches!(
                    parse_supervisor_pid(bad),
                    Err(SupervisorError::InvalidPid(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_parent_is_the_supervisor_and_another_process_is_not() {
        let parent = Supervisor {
            pid: nix::unistd::getppid().as_raw(),
        };
        assert!(parent.is_parent());
        let other = Supervisor {
            pid: nix::unistd::getpid().as_raw(),
        };
        assert!(!other.is_parent());
    }

    #[tokio::test(start_paused = true)]
    async fn an_orphan_is_noticed_and_an_unsupervised_worker_never_is() {
        let gone = Supervisor {
            pid: nix::unistd::getpid().as_raw(),
        };
        tokio::time::timeout(Duration::from_secs(5), wait_until_orphaned(Some(gone)))
            .await
            .expect("noticed within a check or two");
        let unsupervised =
            tokio::time::timeout(Duration::from_secs(60), wait_until_orphaned(None)).await;
        assert!(unsupervised.is_err());
    }
}
