//! `warren logs` from start to end: the folder and the filters, what the files hold, then
//! with `--follow` what is written to them, and how many lines were skipped.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::rc::Rc;

use anyhow::Context as _;
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::args::LogsArgs;
use super::files::{self, LogFile};
use super::filter::Filter;
use super::follow::{self, Tail};
use super::merge::Merge;
use super::print::{Output, Printer};
use super::source::{FileAt, Left, Source};

/// `warren logs`: prints the records of the log folder that pass the filters, merged in
/// time order; with `--follow`, then those written later, until a stop signal. Exit code
/// 0, also when lines were skipped (said on stderr); 2 when the folder cannot be read.
pub async fn run(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let folder = args.dir.clone().unwrap_or_else(files::default_folder);
    let filter = filter_of(&args, Timestamp::now());
    // Listened for before anything is read: Ctrl-C while reading stops as cleanly.
    let stop = args.follow.then(warren_runtime::shutdown::on_signals);
    let mut printer = Printer::new(args.json, io::stdout());

    let listed = match files::list(&folder) {
        Ok(listed) => {
            if listed.is_empty() {
                eprintln!("warren: no log files in {}", folder.display());
            }
            listed
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound && args.follow => {
            eprintln!(
                "warren: no log folder at {} yet; waiting for it",
                folder.display()
            );
            Vec::new()
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => anyhow::bail!(
            "there is no log folder at {} (`warren up` keeps the workers' logs in \
             $WARREN_RUN_DIR/logs; --dir names another folder)",
            folder.display()
        ),
        Err(error) => {
            return Err(error)
                .with_context(|| format!("cannot list the log folder {}", folder.display()));
        }
    };
    let wanted: Vec<LogFile> = listed
        .into_iter()
        .filter(|file| filter.wants_file(file))
        .collect();

    let existing = print_existing(&wanted, &filter, &mut printer, stop.as_ref())
        .context("cannot write to stdout")?;
    let mut bad_lines = existing.bad_lines;
    if let Some(stop) = &stop
        && existing.output == Output::Open
        && !stop.is_cancelled()
    {
        let mut tail = Tail::new(&wanted, existing.left);
        follow::follow(&mut tail, &folder, &filter, &mut printer, stop)
            .await
            .context("cannot write to stdout")?;
        bad_lines += tail.bad_lines();
    }
    printer.flush().context("cannot write to stdout")?;
    report_bad_lines(bad_lines, &folder);
    Ok(ExitCode::SUCCESS)
}

/// The filters `args` ask for, `--since` counted back from `now`.
fn filter_of(args: &LogsArgs, now: Timestamp) -> Filter {
    Filter {
        trace_id: args.trace_id.clone(),
        correlation_id: args.correlation_id.clone(),
        workers: args.workers.iter().cloned().collect(),
        min_level: args.level,
        since: args.since.map(|since| since.resolve(now)),
    }
}

/// What printing the files as they were found came to.
#[derive(Debug)]
struct Existing {
    output: Output,
    bad_lines: u64,
    /// How far each file was read, for `--follow` to go on from.
    left: Vec<Left>,
}

/// Prints the records of `files` (sorted by worker, then day) that pass `filter`, merged
/// in time order, one stream per worker. With a `stop` token (`--follow`), a last line
/// without its line end is left for later, and a cancelled token ends the reading.
fn print_existing<W: Write>(
    files: &[LogFile],
    filter: &Filter,
    printer: &mut Printer<W>,
    stop: Option<&CancellationToken>,
) -> io::Result<Existing> {
    let sources = files
        .chunk_by(|one, next| one.worker == next.worker)
        .map(|days| {
            let worker: Rc<str> = Rc::from(days[0].worker.as_str());
            let files = days
                .iter()
                .map(|file| FileAt {
                    path: file.path.clone(),
                    offset: 0,
                })
                .collect();
            let source = Source::new(filter, worker, files);
            match stop {
                Some(stop) => source.holding_partial_lines().stopping_on(stop),
                None => source,
            }
        })
        .collect();
    let mut merge = Merge::new(sources);
    let mut output = Output::Open;
    for record in merge.by_ref() {
        output = printer.print(&record)?;
        if output == Output::Closed || stop.is_some_and(CancellationToken::is_cancelled) {
            break;
        }
    }
    if output == Output::Open {
        output = printer.flush()?;
    }
    let mut bad_lines = 0;
    let mut left = Vec::new();
    for source in merge.into_streams() {
        bad_lines += source.bad_lines();
        left.extend(source.into_left());
    }
    Ok(Existing {
        output,
        bad_lines,
        left,
    })
}

/// Says on stderr how many lines were skipped, if any.
fn report_bad_lines(bad_lines: u64, folder: &Path) {
    match bad_lines {
        0 => {}
        1 => eprintln!(
            "warren: skipped 1 line of {} that is not a log record (cut short, or not JSON)",
            folder.display()
        ),
        _ => eprintln!(
            "warren: skipped {bad_lines} lines of {} that are not log records (cut short, \
             or not JSON)",
            folder.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log folder of the test's own, removed when dropped.
    struct Folder(std::path::PathBuf);

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn line(time: &str, worker: &str, level: &str, message: &str) -> String {
        format!(
            "{{\"timestamp\":\"2026-11-{time}Z\",\"level\":\"{level}\",\"worker\":\"{worker}\",\"message\":\"{message}\"}}\n"
        )
    }

    /// Two workers over two days, interleaved, with a bad line and a line cut short.
    fn fleet_folder(name: &str) -> Folder {
        let folder = Folder(
            std::env::temp_dir().join(format!("warren-logs-run-{name}-{}", std::process::id())),
        );
        let _ = std::fs::remove_dir_all(&folder.0);
        std::fs::create_dir_all(&folder.0).expect("a folder");
        let write = |file: &str, lines: &[String]| {
            std::fs::write(folder.0.join(file), lines.concat()).expect("a file");
        };
        write(
            "orders.2026-11-29.log",
            &[
                line("29T23:59:58", "orders", "INFO", "o1"),
                "garbage\n".to_owned(),
                line("29T23:59:59.5", "orders", "WARN", "o2"),
            ],
        );
        write(
            "orders.2026-11-30.log",
            &[
                line("30T00:00:01", "orders", "ERROR", "o3"),
                "{\"timestamp\":\"2026-11-30T00:00:0".to_owned(),
            ],
        );
        write(
            "payments.2026-11-29.log",
            &[line("29T23:59:59", "payments", "INFO", "p1")],
        );
        write(
            "payments.2026-11-30.log",
            &[
                line("30T00:00:00", "payments", "DEBUG", "p2"),
                line("30T00:00:01", "payments", "INFO", "p3"),
            ],
        );
        folder
    }

    fn print(
        folder: &Folder,
        filter: &Filter,
        stop: Option<&CancellationToken>,
    ) -> (Vec<String>, Existing) {
        let listed = files::list(&folder.0).expect("a listing");
        let wanted: Vec<LogFile> = listed
            .into_iter()
            .filter(|file| filter.wants_file(file))
            .collect();
        let mut printer = Printer::new(true, Vec::new());
        let existing = print_existing(&wanted, filter, &mut printer, stop).expect("printed");
        let messages = String::from_utf8(printer.written().clone())
            .expect("UTF-8")
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).expect("JSON");
                value["message"].as_str().expect("a message").to_owned()
            })
            .collect();
        (messages, existing)
    }

    #[test]
    fn every_worker_and_day_comes_out_merged_in_time_order() {
        let folder = fleet_folder("merged");
        let (messages, existing) = print(&folder, &Filter::default(), None);
        // o3 and p3 share a time: orders comes first, as its files sort first.
        assert_eq!(messages, ["o1", "p1", "o2", "p2", "o3", "p3"]);
        assert_eq!(existing.bad_lines, 2, "the garbage and the line cut short");
        assert_eq!(existing.output, Output::Open);
    }

    #[test]
    fn filters_apply_to_the_merge() {
        let folder = fleet_folder("filtered");
        let warn = Filter {
            min_level: Some(super::super::record::Level::Warn),
            ..Filter::default()
        };
        assert_eq!(print(&folder, &warn, None).0, ["o2", "o3"]);
        let payments_since = Filter {
            workers: ["payments".to_owned()].into(),
            since: Some("2026-11-30T00:00:00Z".parse().expect("a time")),
            ..Filter::default()
        };
        let (messages, existing) = print(&folder, &payments_since, None);
        assert_eq!(messages, ["p2", "p3"]);
        assert_eq!(existing.bad_lines, 0, "the orders files were never read");
    }

    #[test]
    fn with_follow_a_line_cut_short_is_left_for_later() {
        let folder = fleet_folder("follow");
        let stop = CancellationToken::new();
        let (messages, existing) = print(&folder, &Filter::default(), Some(&stop));
        assert_eq!(messages.len(), 6);
        assert_eq!(existing.bad_lines, 1, "only the garbage");
        let today = folder.0.join("orders.2026-11-30.log");
        let offset = existing.left.iter().find_map(|left| match left {
            Left::At(at) if at.path == today => Some(at.offset),
            _ => None,
        });
        assert_eq!(
            offset,
            Some(line("30T00:00:01", "orders", "ERROR", "o3").len() as u64)
        );
    }

    #[test]
    fn the_filter_is_made_of_the_flags() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            args: LogsArgs,
        }
        let cli = Cli::try_parse_from([
            "logs",
            "--trace",
            "0AF7651916CD43DD8448EB211C80319C",
            "--worker",
            "orders,payments",
            "--level",
            "info",
            "--since",
            "1h",
        ])
        .expect("flags");
        let now: Timestamp = "2026-11-30T12:00:00Z".parse().expect("a time");
        let filter = filter_of(&cli.args, now);
        assert_eq!(
            filter,
            Filter {
                trace_id: Some("0af7651916cd43dd8448eb211c80319c".to_owned()),
                correlation_id: None,
                workers: ["orders".to_owned(), "payments".to_owned()].into(),
                min_level: Some(super::super::record::Level::Info),
                since: Some("2026-11-30T11:00:00Z".parse().expect("a time")),
            }
        );
    }
}
