//! The run folder (`$WARREN_RUN_DIR`, default `.warren`) and the lock that keeps one
//! `warren up` per folder.
//!
//! The lock is an exclusive `flock` on `<run folder>/up.lock`, which holds the pid of
//! its holder. The kernel drops it when the holder's process ends, however it ended, so
//! a killed `warren up` leaves no stale lock; the file is opened close-on-exec, so no
//! child inherits it.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::UpError;

/// The lock file's name in the run folder.
const LOCK_FILE_NAME: &str = "up.lock";

/// Where `warren up` keeps what belongs to one fleet on this machine: its lock, and the
/// folder of its own broker node.
#[derive(Debug, Clone)]
pub struct RunFolder {
    /// As given (for messages).
    given: PathBuf,
    /// Absolute.
    path: PathBuf,
}

impl RunFolder {
    /// The folder [`crate::common::RUN_DIR_VARIABLE`] names (default `.warren`), created
    /// if missing.
    pub fn from_environment() -> Result<RunFolder, UpError> {
        RunFolder::at(&crate::common::run_folder())
    }

    /// The run folder `given`, created if missing.
    pub fn at(given: &Path) -> Result<RunFolder, UpError> {
        let unusable = |source| UpError::RunFolder {
            path: given.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(given).map_err(unusable)?;
        let path = std::path::absolute(given).map_err(unusable)?;
        Ok(RunFolder {
            given: given.to_path_buf(),
            path,
        })
    }

    /// The folder itself, absolute.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder as the user gave it (for messages).
    pub fn given(&self) -> &Path {
        &self.given
    }

    /// The folder of the fleet's own broker node, absolute.
    pub fn broker_folder(&self) -> PathBuf {
        self.path.join("broker")
    }

    /// The folder of the fleet's own broker node, as the user gave the run folder.
    pub fn broker_folder_for_display(&self) -> PathBuf {
        self.given.join("broker")
    }

    /// The lock file.
    pub fn lock_file(&self) -> PathBuf {
        self.path.join(LOCK_FILE_NAME)
    }

    /// Takes the folder's lock, or says who holds it. With `add_instances`, another
    /// holder is no error: this `warren up` runs beside it, without the lock.
    pub fn claim(&self, add_instances: bool) -> Result<Claim, UpError> {
        let lock_file = self.lock_file();
        let unusable = |source| UpError::RunFolder {
            path: lock_file.clone(),
            source,
        };
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_file)
            .map_err(unusable)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let pid = std::process::id();
                lock.set_len(0)
                    .and_then(|()| lock.rewind())
                    .and_then(|()| writeln!(lock, "{pid}"))
                    .and_then(|()| lock.flush())
                    .map_err(unusable)?;
                Ok(Claim::Sole {
                    _lock: FleetLock { _lock: lock },
                })
            }
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let holder_pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                if add_instances {
                    Ok(Claim::Beside { holder_pid })
                } else {
                    Err(UpError::AlreadyRunning {
                        holder_pid,
                        lock_file,
                    })
                }
            }
            Err((_file, errno)) => Err(unusable(std::io::Error::from(errno))),
        }
    }
}

/// The lock of a run folder, held until dropped (or the process ends).
#[derive(Debug)]
pub struct FleetLock {
    _lock: Flock<File>,
}

/// What [`RunFolder::claim`] got.
#[derive(Debug)]
pub enum Claim {
    /// This `warren up` is the folder's: it alone may start the fleet's own broker.
    Sole {
        /// Held until the claim is dropped.
        _lock: FleetLock,
    },
    /// Another `warren up` holds the folder (pid as its lock file says); this one runs
    /// more instances beside it (`--add-instances`).
    Beside {
        /// The holder's process id.
        holder_pid: Option<u32>,
    },
}

impl Claim {
    /// Whether this `warren up` holds the lock.
    pub fn is_sole(&self) -> bool {
        matches!(self, Claim::Sole { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_with_the_holders_pid_until_the_first_is_dropped() {
        let folder = std::env::temp_dir().join(format!("warren-run-{}", uuid::Uuid::new_v4()));
        let run_folder = RunFolder::at(&folder).expect("a run folder");
        assert!(folder.is_dir());

        let first = run_folder.claim(false).expect("the first claim");
        assert!(first.is_sole());
        let second = run_folder.claim(false);
        let beside = run_folder.claim(true);
        drop(first);
        let after_release = run_folder.claim(false);
        let lock_text = std::fs::read_to_string(run_folder.lock_file()).expect("lock file");
        std::fs::remove_dir_all(&folder).expect("remove the run folder");

        let own_pid = std::process::id();
        let error = second.expect_err("held");
        assert!(
            matches!(&error, UpError::AlreadyRunning { holder_pid: Some(pid), .. } if *pid == own_pid),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("already running"), "{message}");
        assert!(message.contains(&format!("pid {own_pid}")), "{message}");
        assert!(message.contains("--add-instances"), "{message}");
        assert!(matches!(
            beside.expect("beside"),
            Claim::Beside { holder_pid: Some(pid) } if pid == own_pid
        ));
        assert!(after_release.expect("free again").is_sole());
        assert_eq!(lock_text, format!("{own_pid}\n"));
    }

    #[test]
    fn the_broker_folder_is_absolute_and_inside_the_run_folder() {
        let folder = std::env::temp_dir().join(format!("warren-run-{}", uuid::Uuid::new_v4()));
        let run_folder = RunFolder::at(&folder).expect("a run folder");
        std::fs::remove_dir_all(&folder).expect("remove the run folder");
        assert!(run_folder.broker_folder().is_absolute());
        assert!(run_folder.broker_folder().starts_with(&folder));
        assert_eq!(
            run_folder.broker_folder_for_display(),
            folder.join("broker")
        );
    }
}
