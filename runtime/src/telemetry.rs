//! One logging set-up for every warren process: a filter and a format from settings,
//! written to stderr off the calling thread and, when `log.dir` is set, to a daily file
//! of JSON lines beside it (`FileLine` says what a line holds).
//!
//! The file also gets one line per message handled ([`MESSAGE_TARGET`], at info: what
//! `warren logs --trace` follows across the fleet); stderr does not, unless the filter
//! names that target (`WARREN_LOG=info,warren::message=info`), so a terminal under load
//! is not flooded.

use std::fmt::{self, Write as _};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{self, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::batched_writer::{BatchedGuard, BatchedWriter};
use crate::config::{LogFormat, LogSettings};

/// The target of the line each worker writes per message handled.
pub const MESSAGE_TARGET: &str = "warren::message";

/// Log lines buffered for each writer thread; beyond it lines are dropped rather than
/// block the per-message path. The writer's channel allocates every slot up front: the
/// library's default (128,000 lines) took 3.7 MB of an idle worker's resident memory.
const BUFFERED_LINES: usize = 8_192;

/// What keeps the log writers running: keep it alive for the life of the process;
/// dropping it flushes what is buffered.
#[must_use = "dropping the guard stops the log writers"]
pub struct LogGuard {
    _writers: Vec<WorkerGuard>,
    _file: Option<BatchedGuard>,
}

/// Installs the global subscriber for the process `name` (a worker's name: it names
/// its log files and fills every file line's `worker`).
pub fn init(settings: &LogSettings, name: &'static str) -> LogGuard {
    let mut guards = Vec::new();
    let mut file_guard = None;
    let stderr = off_thread(std::io::stderr(), &mut guards);
    let filter = |message_lines: &str| {
        let mut directives = settings.filter.clone();
        if !directives.contains(MESSAGE_TARGET) {
            directives = format!("{directives},{MESSAGE_TARGET}={message_lines}");
        }
        EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"))
    };
    let file = (!settings.dir.as_os_str().is_empty())
        .then(
            || match DailyFile::open(&settings.dir, name, settings.keep_files) {
                Ok(file) => Some(file),
                Err(error) => {
                    eprintln!(
                        "warren-{name}: no log file in {}: {error}",
                        settings.dir.display()
                    );
                    None
                }
            },
        )
        .flatten()
        .and_then(|file| match BatchedWriter::start(file, name) {
            Ok((writer, guard)) => {
                file_guard = Some(guard);
                Some(writer)
            }
            Err(error) => {
                eprintln!("warren-{name}: no log file: cannot start its writer: {error}");
                None
            }
        })
        .map(|writer| {
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(FileLine { worker: name })
                .with_writer(writer)
                .with_filter(filter("info"))
        });
    let registry = tracing_subscriber::registry().with(file);
    // A second call (tests, embedding) keeps the first subscriber.
    let _ = match settings.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(stderr)
                    .with_filter(filter("off")),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .fmt_fields(escaped_fields())
                    .with_writer(stderr)
                    .with_filter(filter("off")),
            )
            .try_init(),
    };
    LogGuard {
        _writers: guards,
        _file: file_guard,
    }
}

/// `writer` behind a thread of its own, with a bounded buffer.
fn off_thread<W: io::Write + Send + 'static>(
    writer: W,
    guards: &mut Vec<WorkerGuard>,
) -> NonBlocking {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .finish(writer);
    guards.push(guard);
    writer
}

/// A worker's log file, `<dir>/<worker>.<YYYY-MM-DD>.log`, a new one each UTC day; when
/// a day starts the oldest are deleted so that `keep` remain. Only this worker's files
/// are counted: worker names hold no `.`, so `<worker>.` and a date name them alone (the
/// appender's own pruning would count `orders-archive.…` among `orders`' files).
struct DailyFile {
    /// Unbuffered: the log's writer thread hands it a batch of whole lines at a time
    /// ([`crate::batched_writer`]), one write each.
    appender: RollingFileAppender,
    dir: PathBuf,
    worker: &'static str,
    keep: usize,
    /// Seconds since the epoch at which the current UTC day ends.
    day_ends: u64,
}

const DAY_SECONDS: u64 = 86_400;

impl DailyFile {
    fn open(dir: &Path, worker: &'static str, keep: usize) -> io::Result<DailyFile> {
        std::fs::create_dir_all(dir)?;
        let appender = RollingFileAppender::builder()
            .rotation(Rotation::DAILY)
            .filename_prefix(worker)
            .filename_suffix("log")
            .build(dir)
            .map_err(io::Error::other)?;
        let mut file = DailyFile {
            appender,
            dir: dir.to_path_buf(),
            worker,
            keep,
            day_ends: 0,
        };
        file.prune_on_a_new_day();
        Ok(file)
    }

    /// Deletes the oldest of this worker's files beyond `keep`, once per UTC day.
    fn prune_on_a_new_day(&mut self) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if now < self.day_ends {
            return;
        }
        self.day_ends = (now / DAY_SECONDS + 1) * DAY_SECONDS;
        // Today's file may not exist yet: it is opened on the first line of the day.
        let keep_before_today = self.keep.saturating_sub(1);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut days: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| is_daily_file_of(name, self.worker))
            })
            .collect();
        let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
        days.retain(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| !name.contains(&today))
        });
        days.sort();
        let excess = days.len().saturating_sub(keep_before_today);
        for old in &days[..excess] {
            let _ = std::fs::remove_file(old);
        }
    }
}

/// Whether `name` is `<worker>.<YYYY-MM-DD>.log`.
fn is_daily_file_of(name: &str, worker: &str) -> bool {
    let Some(date) = name
        .strip_prefix(worker)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(".log"))
    else {
        return false;
    };
    date.len() == 10
        && date.bytes().enumerate().all(|(index, byte)| match index {
            4 | 7 => byte == b'-',
            _ => byte.is_ascii_digit(),
        })
}

impl io::Write for DailyFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.prune_on_a_new_day();
        self.appender.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.appender.flush()
    }
}

/// The file format: one flat JSON object per line, `timestamp` (RFC 3339, UTC,
/// microseconds), `level`, `worker`, `target`, then the fields of the spans the event
/// is in, outermost first (for a line about a message: `message_id`,
/// `correlation_id`, `message_type`, `trace_id`, `span_id`), then the event's own
/// (`message` and the rest). Flat, so `jq 'select(.trace_id == "…")'` and `warren logs`
/// need no knowledge of spans.
struct FileLine {
    worker: &'static str,
}

impl<S, N> FormatEvent<S, N> for FileLine
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    N: for<'writer> FormatFields<'writer> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = JsonLine {
            out: writer,
            first: true,
            result: Ok(()),
        };
        line.result = line.out.write_char('{');
        let timestamp = jiff::Timestamp::now();
        line.string("timestamp", &format_args!("{timestamp:.6}"));
        line.string("level", &metadata.level().as_str());
        line.string("worker", &self.worker);
        line.string("target", &metadata.target());
        if let Some(scope) = context.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    // JsonFields keeps a span's fields as one JSON object: its members
                    // are copied as they are.
                    line.members_of(fields);
                }
            }
        }
        event.record(&mut line);
        line.result?;
        line.out.write_str("}\n")
    }
}

/// A JSON object written member by member straight into the line (a member may come
/// twice: a reader takes the last, the event's own). Nothing is allocated.
struct JsonLine<'writer> {
    out: Writer<'writer>,
    first: bool,
    /// The first error met: [`Visit`] cannot return one.
    result: fmt::Result,
}

impl JsonLine<'_> {
    fn key(&mut self, name: &str) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.out.write_char(',')?;
        }
        self.out.write_char('"')?;
        JsonEscaping(&mut self.out).write_str(name)?;
        self.out.write_str("\":")
    }

    /// A string member.
    fn string(&mut self, name: &str, value: &dyn fmt::Display) {
        if self.result.is_ok() {
            self.result = self.key(name).and_then(|()| {
                self.out.write_char('"')?;
                write!(JsonEscaping(&mut self.out), "{value}")?;
                self.out.write_char('"')
            });
        }
    }

    /// A member whose value is already JSON (a number, `true`, `false`).
    fn literal(&mut self, name: &str, value: &dyn fmt::Display) {
        if self.result.is_ok() {
            self.result = self.key(name).and_then(|()| write!(self.out, "{value}"));
        }
    }

    /// The members of the JSON object `object`.
    fn members_of(&mut self, object: &str) {
        let members = object
            .trim()
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
            .unwrap_or_default();
        if self.result.is_ok() && !members.is_empty() {
            self.result = if std::mem::take(&mut self.first) {
                self.out.write_str(members)
            } else {
                self.out
                    .write_char(',')
                    .and_then(|()| self.out.write_str(members))
            };
        }
    }
}

impl Visit for JsonLine<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.string(field.name(), &format_args!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field.name(), &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.literal(field.name(), &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.literal(field.name(), &value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.literal(field.name(), &value);
        } else {
            // JSON has no NaN or infinity.
            self.string(field.name(), &value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.literal(field.name(), &value);
    }
}

/// A writer that escapes text for the inside of a JSON string: quotes, backslashes and
/// every control character (C0, DEL and C1, so a terminal shown the file is safe too).
struct JsonEscaping<W>(W);

impl<W: fmt::Write> fmt::Write for JsonEscaping<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut start = 0;
        for (index, character) in text.char_indices() {
            let escaped = match character {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                _ if character.is_control() => "",
                _ => continue,
            };
            self.0.write_str(&text[start..index])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{:04x}", u32::from(character))?;
            } else {
                self.0.write_str(escaped)?;
            }
            start = index + character.len_utf8();
        }
        self.0.write_str(&text[start..])
    }
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

    /// What a test subscriber wrote.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

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

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("lock").clone()).expect("UTF-8")
        }
    }

    /// A file line is one flat JSON object: the span's fields and the event's side by
    /// side, whatever they hold.
    #[test]
    fn a_file_line_is_one_flat_json_object() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(FileLine { worker: "echo" })
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let id = "m1\n{\"level\":\"ERROR\"}\u{1b}[31m";
            let span = tracing::info_span!("message", message_id = %id, trace_id = "t1");
            let _entered = span.enter();
            tracing::warn!(error = %"bad\ninput", attempts = 3_u32, ok = false, "bad input");
        });
        let text = captured.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["worker"], "echo");
        assert_eq!(line["message_id"], "m1\n{\"level\":\"ERROR\"}\u{1b}[31m");
        assert_eq!(line["trace_id"], "t1");
        assert_eq!(line["message"], "bad input");
        assert_eq!(line["error"], "bad\ninput");
        assert_eq!(line["attempts"], 3);
        assert_eq!(line["ok"], false);
        let timestamp = line["timestamp"].as_str().expect("timestamp");
        assert!(timestamp.parse::<jiff::Timestamp>().is_ok(), "{timestamp}");
        assert_eq!(
            timestamp.len(),
            "2026-11-30T11:25:31.600402Z".len(),
            "{timestamp}"
        );
    }

    #[test]
    fn only_a_workers_own_daily_files_are_its_own() {
        assert!(is_daily_file_of("orders.2026-11-30.log", "orders"));
        assert!(!is_daily_file_of("orders-archive.2026-11-30.log", "orders"));
        assert!(!is_daily_file_of("orders.2026-11-30.log.gz", "orders"));
        assert!(!is_daily_file_of("orders.latest.log", "orders"));
        assert!(!is_daily_file_of("orders.2026-1-300.log", "orders"));
    }

    /// Opening a worker's file deletes its oldest days beyond `keep`, and nobody else's.
    #[test]
    fn old_days_are_deleted_and_other_workers_files_kept() {
        let dir = std::env::temp_dir().join(format!("warren-logs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let old_days = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"];
        for day in old_days {
            std::fs::write(dir.join(format!("orders.{day}.log")), "{}\n").expect("file");
            std::fs::write(dir.join(format!("orders-archive.{day}.log")), "{}\n").expect("file");
        }
        let mut file = DailyFile::open(&dir, "orders", 3).expect("open");
        io::Write::write_all(&mut file, b"{}\n").expect("write");
        io::Write::flush(&mut file).expect("flush");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("read")
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("orders."))
            .collect();
        names.sort();
        let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
        assert_eq!(
            names,
            [
                "orders.2026-11-03.log".to_owned(),
                "orders.2026-11-04.log".to_owned(),
                format!("orders.{today}.log"),
            ]
        );
        let others = std::fs::read_dir(&dir)
            .expect("read")
            .flatten()
            .filter(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("orders-archive.")
            })
            .count();
        assert_eq!(others, 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A log line of the human format, with a field whose value holds a newline, comes
    /// out as one line.
    #[test]
    fn a_field_with_a_newline_stays_on_its_line() {
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
        let text = captured.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(r"message_id=m1\n[echo]"), "{text}");
        assert!(text.contains(r"error=bad\ninput"), "{text}");
        assert!(text.contains("bad input: dead-lettering"), "{text}");
    }
}
