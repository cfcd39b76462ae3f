//! Children's output, re-printed with a `[worker] ` prefix: one writer per stream of
//! this process, so lines never interleave; lines cut at 64 KiB; invalid UTF-8 replaced.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A child line longer than this is re-printed in pieces of this size.
const MAXIMUM_LINE_BYTES: usize = 64 * 1024;

/// Whole lines (newline included) on their way to one output stream. One writer owns
/// each stream, so lines never interleave; a full channel slows the forwarders down, and
/// with them the children, instead of buffering without bound.
pub type LineSender = mpsc::Sender<String>;

/// How many lines may wait for a slow terminal or pipe.
pub const OUTPUT_LINE_CAPACITY: usize = 1024;

/// Where children's output and `warren up`'s own messages go.
#[derive(Debug, Clone)]
pub struct OutputSinks {
    /// Children's stdout lines.
    pub stdout: LineSender,
    /// Children's stderr lines and `warren up`'s messages.
    pub stderr: LineSender,
}

/// The blocking tasks writing to this process's stdout and stderr.
pub struct OutputWriters {
    stdout: JoinHandle<()>,
    stderr: JoinHandle<()>,
}

impl OutputWriters {
    /// Waits until every line is written. Every [`OutputSinks`] clone must be dropped
    /// first, or this never returns.
    pub async fn finish(self) {
        let _ = self.stdout.await;
        let _ = self.stderr.await;
    }
}

/// Starts one writer for this process's stdout and one for its stderr.
pub fn start_output_writers() -> (OutputSinks, OutputWriters) {
    let (stdout_sender, stdout_receiver) = mpsc::channel(OUTPUT_LINE_CAPACITY);
    let (stderr_sender, stderr_receiver) = mpsc::channel(OUTPUT_LINE_CAPACITY);
    let writers = OutputWriters {
        stdout: tokio::task::spawn_blocking(move || {
            write_lines_blocking(stdout_receiver, std::io::stdout());
        }),
        stderr: tokio::task::spawn_blocking(move || {
            write_lines_blocking(stderr_receiver, std::io::stderr());
        }),
    };
    let sinks = OutputSinks {
        stdout: stdout_sender,
        stderr: stderr_sender,
    };
    (sinks, writers)
}

/// Writes lines until every sender is gone. After a write error (a closed terminal) it
/// keeps receiving and drops the lines, so nobody waits on it.
fn write_lines_blocking(mut receiver: mpsc::Receiver<String>, mut stream: impl io::Write) {
    let mut stream_works = true;
    while let Some(line) = receiver.blocking_recv() {
        if stream_works {
            stream_works = stream
                .write_all(line.as_bytes())
                .and_then(|()| stream.flush())
                .is_ok();
        }
    }
}

/// Queues one whole line for printing. Returns `false` when the writer is gone.
pub async fn write_line(sink: &LineSender, line: String) -> bool {
    sink.send(line).await.is_ok()
}

/// Reads up to and including the next `\n`, or `maximum_bytes` bytes, into `line`.
/// Returns `false` at the end of the stream.
pub async fn read_capped_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    maximum_bytes: usize,
) -> io::Result<bool> {
    line.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(!line.is_empty());
        }
        let room = maximum_bytes.saturating_sub(line.len());
        let window = &available[..available.len().min(room)];
        if let Some(newline_index) = window.iter().position(|byte| *byte == b'\n') {
            line.extend_from_slice(&window[..=newline_index]);
            reader.consume(newline_index + 1);
            return Ok(true);
        }
        let taken = window.len();
        line.extend_from_slice(window);
        reader.consume(taken);
        if line.len() >= maximum_bytes {
            return Ok(true);
        }
    }
}

/// The line as re-printed: `[worker] text\n`, with invalid UTF-8 replaced.
pub fn prefixed_line(worker_name: &str, raw_line: &[u8]) -> String {
    let without_newline = raw_line.strip_suffix(b"\n").unwrap_or(raw_line);
    let without_carriage_return = without_newline
        .strip_suffix(b"\r")
        .unwrap_or(without_newline);
    let text = String::from_utf8_lossy(without_carriage_return);
    format!("[{worker_name}] {text}\n")
}

/// Re-prints every line of `reader` to `sink` with the worker's prefix, until the end of
/// the stream. Keeps reading when the sink fails, so the child never blocks on a full
/// pipe.
pub async fn forward_lines<R: AsyncBufRead + Unpin>(
    mut reader: R,
    worker_name: String,
    sink: LineSender,
) {
    let mut raw_line = Vec::new();
    let mut sink_works = true;
    while let Ok(true) = read_capped_line(&mut reader, &mut raw_line, MAXIMUM_LINE_BYTES).await {
        if sink_works {
            sink_works = write_line(&sink, prefixed_line(&worker_name, &raw_line)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_prefixed_and_lossy() {
        assert_eq!(prefixed_line("echo", b"hello\n"), "[echo] hello\n");
        assert_eq!(prefixed_line("echo", b"crlf\r\n"), "[echo] crlf\n");
        assert_eq!(prefixed_line("echo", b"no newline"), "[echo] no newline\n");
        assert_eq!(
            prefixed_line("echo", b"bad \xff byte\n"),
            "[echo] bad \u{fffd} byte\n"
        );
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_the_last_line_needs_no_newline() {
        let mut reader: &[u8] = b"abcdefgh\nxy\nlast";
        let mut line = Vec::new();
        let mut lines = Vec::new();
        while read_capped_line(&mut reader, &mut line, 5)
            .await
            .expect("read")
        {
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        assert_eq!(lines, vec!["abcde", "fgh\n", "xy\n", "last"]);
    }
}
