//! One logging set-up for every warren process: a filter and a format from settings,
//! written to stderr off the calling thread.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

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
            .try_init(),
    };
    guard
}
