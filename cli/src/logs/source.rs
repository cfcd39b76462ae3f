//! One stream of records: one worker's log files read in turn, each from an offset, line
//! by line, keeping the lines that pass the filter. Lines that are not records are
//! counted and skipped; a file that cannot be read is reported and left.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead as _, BufReader, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::rc::Rc;

use tokio_util::sync::CancellationToken;

use super::filter::Filter;
use super::record::{Line, Record, parse_line};

/// How much of a file is read at once.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How many lines are read between two looks at the stop token: a search that finds
/// nothing in a large file still stops soon after Ctrl-C.
const LINES_BETWEEN_STOP_CHECKS: u32 = 4096;

/// A file to read, from `offset` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileAt {
    pub(super) path: PathBuf,
    /// The bytes read so far: everything up to the end of a whole line.
    pub(super) offset: u64,
}

/// How a file was left by a [`Source`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Left {
    /// Read up to `offset` (the end of its last whole line), to go on from there.
    At(FileAt),
    /// Could not be read (reported on stderr): not to be tried again.
    Unreadable(PathBuf),
}

/// One stream of records: `files` read in turn, each from its offset.
#[derive(Debug)]
pub(super) struct Source<'filter> {
    filter: &'filter Filter,
    /// The worker of the files (for lines that do not name theirs).
    worker: Rc<str>,
    /// Files not yet opened.
    pending: VecDeque<FileAt>,
    current: Option<OpenFile>,
    /// Leave a last line without its line end for later: a writer may be halfway through
    /// it. Otherwise it counts as a line (cut short for good, most likely).
    hold_partial_lines: bool,
    /// Stop after reading about this many bytes (a poll of `--follow` reads a bounded
    /// amount and goes on at the next).
    byte_budget: Option<u64>,
    bytes_read: u64,
    /// Stop when this is cancelled.
    stop: Option<&'filter CancellationToken>,
    lines_since_stop_check: u32,
    /// The stop token was seen cancelled.
    stopped: bool,
    /// How each file was left, in the order they were read.
    left: Vec<Left>,
    /// Lines that were not records.
    bad_lines: u64,
    line: Vec<u8>,
}

#[derive(Debug)]
struct OpenFile {
    reader: BufReader<File>,
    at: FileAt,
}

impl<'filter> Source<'filter> {
    /// A stream of the records of `files`, all of `worker`, that pass `filter`.
    pub(super) fn new(filter: &'filter Filter, worker: Rc<str>, files: Vec<FileAt>) -> Self {
        Source {
            filter,
            worker,
            pending: files.into(),
            current: None,
            hold_partial_lines: false,
            byte_budget: None,
            bytes_read: 0,
            stop: None,
            lines_since_stop_check: 0,
            stopped: false,
            left: Vec::new(),
            bad_lines: 0,
            line: Vec::new(),
        }
    }

    /// Leaves a last line without its line end unread, for a file still being written.
    pub(super) fn holding_partial_lines(mut self) -> Self {
        self.hold_partial_lines = true;
        self
    }

    /// Stops after the line that takes it past `bytes` read.
    pub(super) fn with_byte_budget(mut self, bytes: u64) -> Self {
        self.byte_budget = Some(bytes);
        self
    }

    /// Ends the stream early once `stop` is cancelled.
    pub(super) fn stopping_on(mut self, stop: &'filter CancellationToken) -> Self {
        self.stop = Some(stop);
        self
    }

    /// How many lines were not records.
    pub(super) fn bad_lines(&self) -> u64 {
        self.bad_lines
    }

    /// How every file was left: those read, the one being read, those not yet opened.
    pub(super) fn into_left(mut self) -> Vec<Left> {
        if let Some(open) = self.current.take() {
            self.left.push(Left::At(open.at));
        }
        self.left.extend(self.pending.into_iter().map(Left::At));
        self.left
    }

    /// Opens the next pending file at its offset; `false` when none is left.
    fn open_next(&mut self) -> bool {
        while let Some(at) = self.pending.pop_front() {
            let opened = File::open(&at.path).and_then(|mut file| {
                file.seek(SeekFrom::Start(at.offset))?;
                Ok(file)
            });
            match opened {
                Ok(file) => {
                    self.current = Some(OpenFile {
                        reader: BufReader::with_capacity(READ_BUFFER_BYTES, file),
                        at,
                    });
                    return true;
                }
                // Removed since it was listed: nothing to read, nothing to say.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    eprintln!("warren: cannot read {}: {error}", at.path.display());
                    self.left.push(Left::Unreadable(at.path));
                }
            }
        }
        false
    }

    /// The next whole line of the open file into `self.line` (without its line end);
    /// `false` at the end of the file, or of what may be read of it now.
    fn read_line(&mut self) -> bool {
        let Some(open) = &mut self.current else {
            return false;
        };
        self.line.clear();
        match open.reader.read_until(b'\n', &mut self.line) {
            Ok(0) => false,
            Ok(read) => {
                let whole = self.line.last() == Some(&b'\n');
                if !whole && self.hold_partial_lines {
                    return false;
                }
                open.at.offset += read as u64;
                self.bytes_read += read as u64;
                if whole {
                    self.line.pop();
                }
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                true
            }
            Err(error) => {
                eprintln!(
                    "warren: cannot read {} past byte {}: {error}",
                    open.at.path.display(),
                    open.at.offset
                );
                let path = open.at.path.clone();
                self.current = None;
                self.left.push(Left::Unreadable(path));
                false
            }
        }
    }

    /// Whether to read no more: the byte budget is spent, or (looked at every
    /// [`LINES_BETWEEN_STOP_CHECKS`] lines) the stop token is cancelled.
    fn should_stop(&mut self) -> bool {
        if self.stopped {
            return true;
        }
        if self
            .byte_budget
            .is_some_and(|budget| self.bytes_read >= budget)
        {
            return true;
        }
        let Some(stop) = self.stop else {
            return false;
        };
        self.lines_since_stop_check += 1;
        if self.lines_since_stop_check < LINES_BETWEEN_STOP_CHECKS {
            return false;
        }
        self.lines_since_stop_check = 0;
        self.stopped = stop.is_cancelled();
        self.stopped
    }
}

impl Iterator for Source<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        loop {
            if self.should_stop() {
                return None;
            }
            if self.current.is_none() && !self.open_next() {
                return None;
            }
            if !self.read_line() {
                if let Some(open) = self.current.take() {
                    self.left.push(Left::At(open.at));
                }
                continue;
            }
            match parse_line(&self.line) {
                Line::Blank => {}
                Line::Bad => self.bad_lines += 1,
                Line::Record(parsed) => {
                    if !self
                        .filter
                        .matches(&parsed.head, parsed.timestamp, &self.worker)
                    {
                        continue;
                    }
                    let timestamp = parsed.timestamp;
                    // A record is valid JSON, so valid UTF-8.
                    let line = String::from_utf8_lossy(&self.line).into_owned();
                    return Some(Record {
                        timestamp,
                        line,
                        file_worker: Rc::clone(&self.worker),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::Folder;

    impl Folder {
        fn file(&self, name: &str, text: &str) -> FileAt {
            let path = self.0.join(name);
            std::fs::write(&path, text).expect("a file");
            FileAt { path, offset: 0 }
        }
    }

    fn line(second: u32, message: &str) -> String {
        format!(
            "{{\"timestamp\":\"2026-11-30T11:30:{second:02}.000000Z\",\"level\":\"INFO\",\"worker\":\"orders\",\"message\":\"{message}\"}}\n"
        )
    }

    fn messages(source: &mut Source<'_>) -> Vec<String> {
        source
            .map(|record| {
                let value: serde_json::Value =
                    serde_json::from_str(&record.line).expect("a record is JSON");
                value["message"].as_str().expect("a message").to_owned()
            })
            .collect()
    }

    #[test]
    fn files_are_read_in_turn_and_bad_lines_counted() {
        let folder = Folder::new("source", "turn");
        let first = folder.file(
            "orders.2026-11-29.log",
            &format!(
                "{}not json\n\n{}{{\"timestamp\":\"2026-11-30T11:30:0",
                line(1, "a"),
                line(2, "b")
            ),
        );
        let second = folder.file("orders.2026-11-30.log", &line(3, "c"));
        let filter = Filter::default();
        let mut source = Source::new(&filter, Rc::from("orders"), vec![first, second]);
        assert_eq!(messages(&mut source), ["a", "b", "c"]);
        assert_eq!(
            source.bad_lines(),
            2,
            "the line of text, the line cut short"
        );
    }

    #[test]
    fn a_partial_last_line_is_held_back_for_a_file_being_written() {
        let folder = Folder::new("source", "partial");
        let whole = line(1, "a");
        let file = folder.file(
            "orders.2026-11-30.log",
            &format!("{whole}{{\"timestamp\":\"2026-11-30T11:30:0"),
        );
        let filter = Filter::default();
        let mut source =
            Source::new(&filter, Rc::from("orders"), vec![file.clone()]).holding_partial_lines();
        assert_eq!(messages(&mut source), ["a"]);
        assert_eq!(source.bad_lines(), 0);
        let left = source.into_left();
        assert_eq!(
            left,
            [Left::At(FileAt {
                path: file.path.clone(),
                offset: whole.len() as u64
            })]
        );
    }

    #[test]
    fn reading_goes_on_from_an_offset_and_stops_at_its_budget() {
        let folder = Folder::new("source", "budget");
        let text: String = (0..10).map(|second| line(second, "m")).collect();
        let mut file = folder.file("orders.2026-11-30.log", &text);
        file.offset = line(0, "m").len() as u64;
        let filter = Filter::default();
        let budget = 2 * line(0, "m").len() as u64;
        let mut source =
            Source::new(&filter, Rc::from("orders"), vec![file.clone()]).with_byte_budget(budget);
        assert_eq!(source.by_ref().count(), 2);
        assert_eq!(
            source.into_left(),
            [Left::At(FileAt {
                path: file.path,
                offset: 3 * line(0, "m").len() as u64
            })]
        );
    }

    #[test]
    fn crlf_line_ends_and_filters_are_taken() {
        let folder = Folder::new("source", "crlf");
        let file = folder.file(
            "orders.2026-11-30.log",
            &format!(
                "{}\r\n{}",
                line(1, "early").trim_end(),
                line(40, "late").trim_end()
            ),
        );
        let filter = Filter {
            since: Some("2026-11-30T11:30:30Z".parse().expect("a time")),
            ..Filter::default()
        };
        let mut source = Source::new(&filter, Rc::from("orders"), vec![file]);
        assert_eq!(messages(&mut source), ["late"]);
    }

    #[test]
    fn a_missing_file_is_nothing_and_a_folder_is_unreadable() {
        let folder = Folder::new("source", "missing");
        let gone = FileAt {
            path: folder.0.join("gone.2026-11-30.log"),
            offset: 0,
        };
        let folder_path = folder.0.join("dir.2026-11-30.log");
        std::fs::create_dir(&folder_path).expect("a folder");
        let as_folder = FileAt {
            path: folder_path.clone(),
            offset: 0,
        };
        let filter = Filter::default();
        let mut source = Source::new(&filter, Rc::from("orders"), vec![gone, as_folder]);
        assert_eq!(source.by_ref().count(), 0);
        assert_eq!(source.into_left(), [Left::Unreadable(folder_path)]);
    }
}
