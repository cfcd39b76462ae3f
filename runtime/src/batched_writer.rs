//! A log file's writer for the per-message path: each line is copied into a shared
//! buffer on the thread that logs it, and a thread of its own writes the buffer to the
//! file in batches, every [`FLUSH_INTERVAL`] or at once when [`FLUSH_BYTES`] are
//! waiting. A line costs a lock and a copy: no allocation, channel or thread wake-up per
//! line (with one line per message, those cost a busy worker about a tenth of its CPU;
//! docs/performance.md). What a crash takes with it is at most the last
//! [`FLUSH_INTERVAL`] of lines.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// How many waiting bytes make the writer thread write at once.
pub(crate) const FLUSH_BYTES: usize = 64 * 1024;

/// The most bytes the buffer holds: beyond it lines are dropped (and counted) rather
/// than block the per-message path or grow without bound.
const MAX_BUFFERED_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    dropped: u64,
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A thread that panicked while appending left whole lines or none: go on.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Makes the writers of one log file (a [`MakeWriter`] for a `fmt` layer).
#[derive(Debug, Clone)]
pub(crate) struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Keeps the writer thread running; dropping it writes what is buffered and stops it.
#[derive(Debug)]
pub(crate) struct BatchedGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BatchedWriter {
    /// Starts the thread that writes to `file`.
    pub(crate) fn start<W: Write + Send + 'static>(
        file: W,
        name: &str,
    ) -> io::Result<(BatchedWriter, BatchedGuard)> {
        let shared = Arc::new(Shared::default());
        let writing = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("{name}-log"))
            .spawn(move || write_batches(&writing, file))?;
        Ok((
            BatchedWriter {
                shared: Arc::clone(&shared),
            },
            BatchedGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }
}

/// The writer thread: waits for a batch, takes it, writes it, until closed and empty.
fn write_batches<W: Write>(shared: &Shared, mut file: W) {
    let mut batch = Vec::with_capacity(FLUSH_BYTES);
    loop {
        let (closed, dropped) = {
            let mut pending = shared.lock();
            if pending.bytes.len() < FLUSH_BYTES && !pending.closed {
                pending = shared
                    .wake
                    .wait_timeout(pending, FLUSH_INTERVAL)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            std::mem::swap(&mut pending.bytes, &mut batch);
            (pending.closed, std::mem::take(&mut pending.dropped))
        };
        if dropped > 0 {
            eprintln!("warren: {dropped} log lines dropped: the log file could not keep up");
        }
        if !batch.is_empty() {
            if let Err(error) = file.write_all(&batch).and_then(|()| file.flush()) {
                eprintln!("warren: cannot write the log file: {error}");
            }
            batch.clear();
        }
        if closed && shared.lock().bytes.is_empty() {
            return;
        }
    }
}

impl Drop for BatchedGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One line's writer: appends to the shared buffer.
#[derive(Debug)]
pub(crate) struct LineWriter<'a> {
    shared: &'a Shared,
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            shared: &self.shared,
        }
    }
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut pending = self.shared.lock();
        if pending.closed || pending.bytes.len() + line.len() > MAX_BUFFERED_BYTES {
            pending.dropped += 1;
        } else {
            pending.bytes.extend_from_slice(line);
            if pending.bytes.len() >= FLUSH_BYTES {
                drop(pending);
                self.shared.wake.notify_one();
            }
        }
        // A dropped line counts as written: the caller must not retry or block.
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that is a shared vector, to look into.
    #[derive(Clone, Default)]
    struct Memory(Arc<Mutex<Vec<u8>>>);

    impl Write for Memory {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_reach_the_file_whole_and_in_order_and_all_on_drop() {
        let file = Memory::default();
        let (writer, guard) = BatchedWriter::start(file.clone(), "test").expect("a thread");
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for line in 0..5_000 {
                        let text = format!("{thread} {line}\n");
                        writer
                            .make_writer()
                            .write_all(text.as_bytes())
                            .expect("written");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a writing thread");
        }
        drop(guard);
        let written = String::from_utf8(file.0.lock().expect("file").clone()).expect("UTF-8");
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), 20_000);
        for thread in 0..4 {
            let numbers: Vec<u32> = lines
                .iter()
                .filter_map(|line| line.split_once(' '))
                .filter(|(from, _)| *from == thread.to_string())
                .map(|(_, number)| number.parse().expect("a number"))
                .collect();
            assert_eq!(numbers, (0..5_000).collect::<Vec<u32>>(), "thread {thread}");
        }
    }

    #[test]
    fn a_line_is_written_within_the_flush_interval() {
        let file = Memory::default();
        let (writer, _guard) = BatchedWriter::start(file.clone(), "test").expect("a thread");
        writer
            .make_writer()
            .write_all(b"one line\n")
            .expect("written");
        let deadline = std::time::Instant::now() + FLUSH_INTERVAL * 50;
        while file.0.lock().expect("file").is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::yield_now();
        }
        assert_eq!(file.0.lock().expect("file").as_slice(), b"one line\n");
    }

    #[test]
    fn lines_beyond_the_bound_are_dropped_and_counted() {
        let shared = Shared::default();
        let mut writer = LineWriter { shared: &shared };
        let line = vec![b'x'; 1024 * 1024];
        for _ in 0..6 {
            writer.write_all(&line).expect("never an error");
        }
        let pending = shared.lock();
        assert_eq!(pending.bytes.len(), MAX_BUFFERED_BYTES);
        assert_eq!(pending.dropped, 2);
    }
}
