//! One logging set-up for every warren process: a filter and a format from settings,
//! written to stderr off the calling thread.

use std::fmt::{self, Write as _};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format;

use crate::config::{LogFormat, LogSettings};

/// Log lines buffered for the writer thread; beyond it lines are dropped rather than
/// block the per-message path. The writer's channel allocates every slot up front: the
/// library's default (128,000 lines) took 3.7 MB of an idle worker's resident memory.
const BUFFERED_LINES: usize = 8_192;

/// Installs the global subscriber. Keep the guard alive for the life of the process:
/// dropping it flushes what is buffered.
pub fn init(settings: &LogSettings) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .finish(std::io::stderr());
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    // A second call (tests, embedding) keeps the first subscriber.
    let _ = match settings.format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Pretty => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .fmt_fields(escaped_fields())
            .try_init(),
    };
    guard
}

/// The human format's fields, `name=value` with the message bare, with every control
/// character escaped: values come from messages (ids, types, error texts), and a newline
/// or a terminal escape in one must not start a forged line or recolour the terminal.
fn escaped_fields() -> impl for<'writer> FormatFields<'writer> + 'static {
    format::debug_fn(|writer, field, value| {
        let mut out = Escaping(writer);
        if field.name() == "message" {
            write!(out, "{value:?}")
        } else {
            write!(out, "{field}={value:?}")
        }
    })
    .delimited(" ")
}

/// A writer that passes text through with control characters escaped (`\n`, `\u{1b}`).
struct Escaping<W>(W);

impl<W: fmt::Write> fmt::Write for Escaping<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut start = 0;
        for (index, character) in text.char_indices() {
            if character.is_control() {
                self.0.write_str(&text[start..index])?;
                write!(self.0, "{}", character.escape_default())?;
                start = index + character.len_utf8();
            }
        }
        self.0.write_str(&text[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = Escaping(String::new());
        fmt::Write::write_str(&mut out, text).expect("a String takes everything");
        out.0
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_passes() {
        assert_eq!(escaped("plain caf\u{e9}"), "plain caf\u{e9}");
        assert_eq!(escaped("id\n[echo] forged"), "id\\n[echo] forged");
        assert_eq!(escaped("\u{1b}[31mred\r"), "\\u{1b}[31mred\\r");
        assert_eq!(escaped("c1\u{85}"), "c1\\u{85}");
    }

    /// A log line of the human format, with a field whose value holds a newline, comes
    /// out as one line.
    #[test]
    fn a_field_with_a_newline_stays_on_its_line() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .fmt_fields(escaped_fields())
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let id = "m1\n[echo] 2026-11-30 INFO forged";
            let span = tracing::info_span!("message", message_id = %id);
            let _entered = span.enter();
            tracing::warn!(error = %"bad\ninput", "bad input: dead-lettering");
        });
        let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("UTF-8");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(r"message_id=m1\n[echo]"), "{text}");
        assert!(text.contains(r"error=bad\ninput"), "{text}");
        assert!(text.contains("bad input: dead-lettering"), "{text}");
    }
}
