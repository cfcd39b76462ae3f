//! The log folder and its files: `<worker>.<YYYY-MM-DD>.log`, one per worker and day
//! (the day the file was started, UTC).

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use jiff::civil::Date;

/// The log folder's name in the run folder.
const LOGS_FOLDER: &str = "logs";

/// The end of every log file's name.
const LOG_SUFFIX: &str = ".log";

/// The variable naming the workers' log folder (`log.dir`), which `warren up` leaves
/// alone when it is set.
const LOG_DIR_VARIABLE: &str = "WARREN_LOG__DIR";

/// The log folder when `--dir` is not given: `$WARREN_LOG__DIR` when it is set, else
/// `$WARREN_RUN_DIR/logs` (where `warren up` puts them), the run folder defaulting to
/// `.warren`.
pub(super) fn default_folder() -> PathBuf {
    let variable = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(log_folder) = variable(LOG_DIR_VARIABLE) {
        return PathBuf::from(log_folder);
    }
    crate::common::run_folder().join(LOGS_FOLDER)
}

/// One log file: whose, and of which day.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct LogFile {
    /// The worker, from the file's name.
    pub(super) worker: String,
    /// The day, from the file's name.
    pub(super) date: Date,
    pub(super) path: PathBuf,
    /// Which file the path named when it was listed.
    pub(super) identity: FileIdentity,
}

/// Which file a path names (its device and inode): a file replaced under the same name
/// is another file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct FileIdentity {
    device: u64,
    inode: u64,
}

/// The worker and the day a log file's name says, or `None` for a name that is not
/// `<worker>.<YYYY-MM-DD>.log`.
pub(super) fn parse_file_name(name: &str) -> Option<(&str, Date)> {
    let stem = name.strip_suffix(LOG_SUFFIX)?;
    let (worker, day) = stem.rsplit_once('.')?;
    let bytes = day.as_bytes();
    let shaped = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(index, byte)| index == 4 || index == 7 || byte.is_ascii_digit());
    if worker.is_empty() || !shaped {
        return None;
    }
    let date = day.parse::<Date>().ok()?;
    Some((worker, date))
}

/// The log files in `folder`, by worker and then by day; anything else there (other
/// names, folders) is left out.
pub(super) fn list(folder: &Path) -> io::Result<Vec<LogFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some((worker, date)) = parse_file_name(&name) else {
            continue;
        };
        // A symbolic link to a file counts; a folder, or a link to nothing, does not.
        let path = entry.path();
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if !metadata.is_file() {
            continue;
        }
        files.push(LogFile {
            worker: worker.to_owned(),
            date,
            path,
            identity: FileIdentity {
                device: metadata.dev(),
                inode: metadata.ino(),
            },
        });
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_say_worker_and_day() {
        let date = |text: &str| text.parse::<Date>().expect("a date");
        assert_eq!(
            parse_file_name("orders.2026-11-30.log"),
            Some(("orders", date("2026-11-30")))
        );
        assert_eq!(
            parse_file_name("order-2.2026-01-02.log"),
            Some(("order-2", date("2026-01-02")))
        );
        for other in [
            "orders.log",
            "orders.2026-11-30",
            "orders.2026-11-30.log.gz",
            "orders.2026-11-30.log.swp",
            ".2026-11-30.log",
            "orders.2026-13-01.log",
            "orders.2026-02-30.log",
            "orders.20261130.log",
            "orders.2026-1-30.log",
            "orders.+2026-11-3.log",
            "up.lock",
        ] {
            assert_eq!(parse_file_name(other), None, "{other}");
        }
    }

    #[test]
    fn listing_keeps_log_files_only_sorted_by_worker_then_day() {
        let folder = std::env::temp_dir().join(format!("warren-logs-list-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(folder.join("payments.2026-11-30.log")).expect("a folder");
        for name in [
            "orders.2026-11-30.log",
            "orders.2026-11-29.log",
            "inventory.2026-11-30.log",
            "notes.txt",
            "orders.log",
        ] {
            std::fs::write(folder.join(name), "").expect("a file");
        }
        let listed: Vec<String> = list(&folder)
            .expect("a listing")
            .into_iter()
            .map(|file| format!("{} {}", file.worker, file.date))
            .collect();
        std::fs::remove_dir_all(&folder).expect("clean up");
        assert_eq!(
            listed,
            [
                "inventory 2026-11-30",
                "orders 2026-11-29",
                "orders 2026-11-30"
            ]
        );
    }
}
