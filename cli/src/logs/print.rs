//! Writing records out, buffered, in the form asked for; a reader that went away
//! (`warren logs | head`) ends the output quietly.

use std::io::{self, BufWriter, Write};

use super::record::Record;
use super::render;

/// How much output is gathered before it is written.
const OUTPUT_BUFFER_BYTES: usize = 64 * 1024;

/// Whether the output can still be written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Output {
    /// It can.
    Open,
    /// Its reader went away (a broken pipe): nothing more is worth doing.
    Closed,
}

/// Prints records to `W` (stdout) as human lines or, with `json`, as their JSON.
#[derive(Debug)]
pub(super) struct Printer<W: Write> {
    json: bool,
    out: BufWriter<W>,
    line: String,
}

impl<W: Write> Printer<W> {
    /// A printer to `out` of human lines, or with `json`, of JSON lines.
    pub(super) fn new(json: bool, out: W) -> Printer<W> {
        Printer {
            json,
            out: BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, out),
            line: String::new(),
        }
    }

    /// Prints `record` (buffered).
    pub(super) fn print(&mut self, record: &Record) -> io::Result<Output> {
        self.line.clear();
        if self.json {
            render::json(record, &mut self.line);
        } else {
            render::human(record, &mut self.line);
        }
        self.line.push('\n');
        closed_on_broken_pipe(self.out.write_all(self.line.as_bytes()))
    }

    /// Writes what is buffered.
    pub(super) fn flush(&mut self) -> io::Result<Output> {
        closed_on_broken_pipe(self.out.flush())
    }

    /// What was written so far, for tests.
    #[cfg(test)]
    pub(super) fn written(&mut self) -> &W {
        let _ = self.out.flush();
        self.out.get_ref()
    }
}

/// A broken pipe is [`Output::Closed`], not an error.
fn closed_on_broken_pipe(result: io::Result<()>) -> io::Result<Output> {
    match result {
        Ok(()) => Ok(Output::Open),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(Output::Closed),
        Err(error) => Err(error),
    }
}
