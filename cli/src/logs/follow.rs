//! `--follow`: after what was there, the folder is polled for lines appended to the files
//! already read and for new files (a new day's, a new worker's), and what arrives is
//! printed, merged by time within each poll, until a stop signal.
//!
//! Each file is followed from the end of its last whole line; a file that was replaced
//! (another inode) or got shorter is read again from its start, and a file that could not
//! be read is not tried again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::files::{self, FileIdentity, LogFile};
use super::filter::Filter;
use super::merge::Merge;
use super::print::{Output, Printer};
use super::source::{FileAt, Left, Source};

/// How often the folder is looked at.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How much of one file one poll reads at most: a burst is printed over several polls
/// rather than read into memory at once.
const BYTES_PER_FILE_PER_POLL: u64 = 8 * 1024 * 1024;

/// A file being followed.
#[derive(Debug)]
struct Followed {
    worker: Rc<str>,
    identity: FileIdentity,
    /// Read up to here: the end of its last whole line.
    offset: u64,
}

/// What is known of the folder between polls.
#[derive(Debug, Default)]
pub(super) struct Tail {
    files: BTreeMap<PathBuf, Followed>,
    /// Files that could not be read (already said), left alone.
    unreadable: BTreeSet<PathBuf>,
    /// What the folder's last listing error was, so it is said once.
    folder_problem: Option<String>,
    /// Lines that were not records.
    bad_lines: u64,
}

impl Tail {
    /// The files of `listed` as the first reading `left` them.
    pub(super) fn new(listed: &[LogFile], left: Vec<Left>) -> Tail {
        let mut tail = Tail::default();
        let offsets: BTreeMap<PathBuf, u64> = left
            .into_iter()
            .filter_map(|left| match left {
                Left::At(at) => Some((at.path, at.offset)),
                Left::Unreadable(path) => {
                    tail.unreadable.insert(path);
                    None
                }
            })
            .collect();
        for file in listed {
            if let Some(offset) = offsets.get(&file.path) {
                tail.files.insert(
                    file.path.clone(),
                    Followed {
                        worker: Rc::from(file.worker.as_str()),
                        identity: file.identity,
                        offset: *offset,
                    },
                );
            }
        }
        tail
    }

    /// Lines that were not records, seen while following.
    pub(super) fn bad_lines(&self) -> u64 {
        self.bad_lines
    }

    /// Reads what was written to the files of `folder` since the last poll, and prints
    /// what passes `filter`.
    pub(super) fn poll<W: Write>(
        &mut self,
        folder: &Path,
        filter: &Filter,
        printer: &mut Printer<W>,
    ) -> io::Result<Output> {
        let listed = match files::list(folder) {
            Ok(listed) => {
                self.folder_problem = None;
                listed
            }
            Err(error) => {
                let problem = error.to_string();
                if self.folder_problem.as_ref() != Some(&problem) {
                    eprintln!(
                        "warren: cannot list {} ({problem}); still watching",
                        folder.display()
                    );
                    self.folder_problem = Some(problem);
                }
                Vec::new()
            }
        };
        let mut present = BTreeSet::new();
        let mut grown: Vec<(Rc<str>, FileAt)> = Vec::new();
        for file in listed.into_iter().filter(|file| filter.wants_file(file)) {
            present.insert(file.path.clone());
            if self.unreadable.contains(&file.path) {
                continue;
            }
            let Ok(length) = std::fs::metadata(&file.path).map(|metadata| metadata.len()) else {
                continue;
            };
            let followed = self
                .files
                .entry(file.path.clone())
                .or_insert_with(|| Followed {
                    worker: Rc::from(file.worker.as_str()),
                    identity: file.identity,
                    offset: 0,
                });
            if followed.identity != file.identity || length < followed.offset {
                followed.identity = file.identity;
                followed.offset = 0;
            }
            if length > followed.offset {
                grown.push((
                    Rc::clone(&followed.worker),
                    FileAt {
                        path: file.path,
                        offset: followed.offset,
                    },
                ));
            }
        }
        // A file gone is forgotten: one of the same name later is new.
        self.files.retain(|path, _| present.contains(path));
        self.unreadable.retain(|path| present.contains(path));
        if grown.is_empty() {
            return Ok(Output::Open);
        }

        let sources = grown
            .into_iter()
            .map(|(worker, at)| {
                Source::new(filter, worker, vec![at])
                    .holding_partial_lines()
                    .with_byte_budget(BYTES_PER_FILE_PER_POLL)
            })
            .collect();
        let mut merge = Merge::new(sources);
        let mut output = Output::Open;
        for record in merge.by_ref() {
            output = printer.print(&record)?;
            if output == Output::Closed {
                break;
            }
        }
        for source in merge.into_streams() {
            self.bad_lines += source.bad_lines();
            for left in source.into_left() {
                match left {
                    Left::At(at) => {
                        if let Some(followed) = self.files.get_mut(&at.path) {
                            followed.offset = at.offset;
                        }
                    }
                    Left::Unreadable(path) => {
                        self.files.remove(&path);
                        self.unreadable.insert(path);
                    }
                }
            }
        }
        if output == Output::Closed {
            return Ok(output);
        }
        printer.flush()
    }
}

/// Polls `folder` every [`POLL_INTERVAL`] until `stop` is cancelled or the output is
/// closed.
pub(super) async fn follow<W: Write>(
    tail: &mut Tail,
    folder: &Path,
    filter: &Filter,
    printer: &mut Printer<W>,
    stop: &CancellationToken,
) -> io::Result<()> {
    loop {
        if tail.poll(folder, filter, printer)? == Output::Closed {
            return Ok(());
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    use crate::testing::Folder;

    impl Folder {
        fn append(&self, name: &str, text: &str) {
            let mut file = std::fs::File::options()
                .create(true)
                .append(true)
                .open(self.0.join(name))
                .expect("a file");
            file.write_all(text.as_bytes()).expect("written");
        }
    }

    fn line(second: u32, worker: &str, message: &str) -> String {
        format!(
            "{{\"timestamp\":\"2026-11-30T11:30:{second:02}Z\",\"level\":\"INFO\",\"worker\":\"{worker}\",\"message\":\"{message}\"}}\n"
        )
    }

    /// Polls once and returns the messages printed by this poll.
    fn poll(tail: &mut Tail, folder: &Folder, filter: &Filter) -> Vec<String> {
        let mut printer = Printer::new(true, Vec::new());
        let output = tail.poll(&folder.0, filter, &mut printer).expect("a poll");
        assert_eq!(output, Output::Open);
        String::from_utf8(printer.written().clone())
            .expect("UTF-8")
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).expect("JSON");
                value["message"].as_str().expect("a message").to_owned()
            })
            .collect()
    }

    #[test]
    fn appended_lines_and_new_files_are_printed_once_each() {
        let folder = Folder::new("follow", "appended");
        let filter = Filter::default();
        let mut tail = Tail::default();
        assert!(poll(&mut tail, &folder, &filter).is_empty());

        folder.append("orders.2026-11-30.log", &line(1, "orders", "o1"));
        assert_eq!(poll(&mut tail, &folder, &filter), ["o1"]);
        assert!(poll(&mut tail, &folder, &filter).is_empty(), "nothing new");

        // Two files written between two polls come out merged by time.
        folder.append("orders.2026-11-30.log", &line(4, "orders", "o2"));
        folder.append("payments.2026-11-30.log", &line(3, "payments", "p1"));
        folder.append("payments.2026-11-30.log", &line(5, "payments", "p2"));
        assert_eq!(poll(&mut tail, &folder, &filter), ["p1", "o2", "p2"]);

        // A new day's file.
        folder.append("orders.2026-12-01.log", &line(6, "orders", "o3"));
        folder.append("notes.txt", "not a log file\n");
        assert_eq!(poll(&mut tail, &folder, &filter), ["o3"]);
        assert_eq!(tail.bad_lines(), 0);
    }

    #[test]
    fn a_line_being_written_waits_for_its_end() {
        let folder = Folder::new("follow", "partial");
        let filter = Filter::default();
        let mut tail = Tail::default();
        let whole = line(1, "orders", "half");
        let (first, second) = whole.split_at(30);
        folder.append("orders.2026-11-30.log", first);
        assert!(poll(&mut tail, &folder, &filter).is_empty());
        folder.append("orders.2026-11-30.log", second);
        assert_eq!(poll(&mut tail, &folder, &filter), ["half"]);
        assert_eq!(tail.bad_lines(), 0, "never read as a line cut short");
    }

    #[test]
    fn a_replaced_or_shortened_file_is_read_from_its_start() {
        let folder = Folder::new("follow", "replaced");
        let filter = Filter::default();
        let mut tail = Tail::default();
        let name = "orders.2026-11-30.log";
        folder.append(name, &line(1, "orders", "first"));
        folder.append(name, &line(2, "orders", "second"));
        assert_eq!(poll(&mut tail, &folder, &filter), ["first", "second"]);

        std::fs::remove_file(folder.0.join(name)).expect("removed");
        folder.append(name, &line(3, "orders", "again"));
        assert_eq!(poll(&mut tail, &folder, &filter), ["again"]);

        std::fs::write(folder.0.join(name), "").expect("truncated");
        assert!(poll(&mut tail, &folder, &filter).is_empty());
        folder.append(name, &line(4, "orders", "after truncation"));
        assert_eq!(poll(&mut tail, &folder, &filter), ["after truncation"]);
    }

    #[test]
    fn filters_and_bad_lines_apply_while_following() {
        let folder = Folder::new("follow", "filtered");
        let filter = Filter {
            workers: ["payments".to_owned()].into(),
            ..Filter::default()
        };
        let mut tail = Tail::default();
        folder.append("orders.2026-11-30.log", &line(1, "orders", "o1"));
        folder.append("payments.2026-11-30.log", "{\"timest\n");
        folder.append("payments.2026-11-30.log", &line(2, "payments", "p1"));
        assert_eq!(poll(&mut tail, &folder, &filter), ["p1"]);
        assert_eq!(tail.bad_lines(), 1);
    }

    #[test]
    fn a_missing_folder_is_watched_until_it_appears() {
        let folder = Folder::new("follow", "missing");
        std::fs::remove_dir_all(&folder.0).expect("removed");
        let filter = Filter::default();
        let mut tail = Tail::default();
        assert!(poll(&mut tail, &folder, &filter).is_empty());
        assert!(tail.folder_problem.is_some());
        std::fs::create_dir_all(&folder.0).expect("a folder");
        folder.append("orders.2026-11-30.log", &line(1, "orders", "there"));
        assert_eq!(poll(&mut tail, &folder, &filter), ["there"]);
        assert_eq!(tail.folder_problem, None);
    }
}
