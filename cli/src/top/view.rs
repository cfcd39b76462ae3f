//! What `warren top` shows: the screen as lines of printable ASCII, each at most the
//! terminal's width (a header, one row per worker, a footer). Pure functions of what is
//! known, so tested as text.

use std::time::Duration;

use jiff::Timestamp;

use super::quantile::Quantile;
use super::state::{BrokerReading, MetricsReading, QueueCell, Row, rows};

/// Everything one frame shows.
#[derive(Debug)]
pub(super) struct Frame<'a> {
    /// When the figures were taken (now, when there are none yet).
    pub(super) at: Timestamp,
    pub(super) interval: Duration,
    /// The broker's URL, its password redacted.
    pub(super) broker_url: &'a str,
    pub(super) broker: &'a BrokerReading,
    /// Where the targets are read from, as the user gave it.
    pub(super) targets_folder: &'a str,
    /// `None` until the first refresh.
    pub(super) metrics: Option<&'a MetricsReading>,
}

/// The widths of the columns after the worker's name, each with the space before it.
const COLUMNS: [(&str, usize); 7] = [
    ("MSG/S", 8),
    ("P99", 8),
    ("ERR/S", 8),
    ("IN FLIGHT", 10),
    ("QUEUE", 8),
    ("CONSUMERS", 10),
    ("UP", 7),
];

/// The narrowest and widest the worker column gets.
const MIN_NAME_WIDTH: usize = 16;
const MAX_NAME_WIDTH: usize = 40;

/// Lines above the rows (title, broker, targets, blank, column names) and below them
/// (the footer).
const HEADER_LINES: usize = 5;
const FOOTER_LINES: usize = 1;

/// The screen: at most `height` lines (all of them when `None`, and no footer), each
/// at most `width` characters.
pub(super) fn lines(frame: &Frame<'_>, width: usize, height: Option<usize>) -> Vec<String> {
    let rows = frame
        .metrics
        .map(|metrics| rows(metrics, frame.broker))
        .unwrap_or_default();
    let fixed: usize = COLUMNS.iter().map(|(_, column)| column).sum();
    let longest = rows
        .iter()
        .map(|row| printable(&row.worker).len())
        .max()
        .unwrap_or(0);
    let name_width = longest
        .clamp(MIN_NAME_WIDTH, MAX_NAME_WIDTH)
        .min(width.saturating_sub(fixed))
        .max(MIN_NAME_WIDTH.min(width));

    let mut screen = vec![
        title(frame),
        broker_line(frame),
        targets_line(frame, &rows),
        String::new(),
        column_names(name_width),
    ];
    let room = height.map(|height| height.saturating_sub(HEADER_LINES + FOOTER_LINES));
    let shown = match room {
        Some(room) if rows.len() > room => room.saturating_sub(1),
        _ => rows.len(),
    };
    screen.extend(rows.iter().take(shown).map(|row| row_line(row, name_width)));
    if shown < rows.len() && room.is_some_and(|room| room > 0) {
        screen.push(format!(
            "... and {} more workers: a taller terminal shows them",
            rows.len() - shown
        ));
    }
    if let Some(height) = height {
        screen.truncate(height.saturating_sub(FOOTER_LINES));
        if height > 0 {
            screen.resize(height - FOOTER_LINES, String::new());
            screen.push(footer(frame));
        }
    }
    screen.into_iter().map(|line| fit(&line, width)).collect()
}

fn title(frame: &Frame<'_>) -> String {
    format!(
        "warren top  {}  every {}",
        frame.at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        interval_text(frame.interval)
    )
}

fn broker_line(frame: &Frame<'_>) -> String {
    let status = match frame.broker {
        BrokerReading::Connecting => "connecting".to_owned(),
        BrokerReading::Read(_) => "connected".to_owned(),
        BrokerReading::Unreachable(error) => format!("UNREACHABLE ({})", printable(error)),
    };
    // The status first: a long URL (a vhost's name) is what gets cut.
    format!("broker  {status}  {}", printable(frame.broker_url))
}

fn targets_line(frame: &Frame<'_>, rows: &[Row]) -> String {
    let Some(metrics) = frame.metrics else {
        return format!("workers  reading {}", printable(frame.targets_folder));
    };
    let problem = metrics
        .problems
        .first()
        .map(|problem| format!("; {}", printable(problem)))
        .unwrap_or_default();
    if rows.is_empty() {
        return format!(
            "workers  none listed in {}/targets*.json{problem}",
            printable(frame.targets_folder)
        );
    }
    let instances: usize = rows.iter().map(|row| row.instances).sum();
    let up: usize = rows.iter().map(|row| row.up).sum();
    let down = rows
        .iter()
        .find_map(|row| {
            row.down_reason
                .as_ref()
                .map(|reason| format!("; {} down: {}", printable(&row.worker), printable(reason)))
        })
        .unwrap_or_default();
    format!(
        "workers  {}, {up} of {instances} instances up{down}{problem}",
        rows.len()
    )
}

fn column_names(name_width: usize) -> String {
    let mut line = format!("{:<name_width$}", "WORKER");
    for (name, width) in COLUMNS {
        line.push_str(&format!("{name:>width$}"));
    }
    line
}

fn row_line(row: &Row, name_width: usize) -> String {
    let cells = cells(row);
    let mut line = format!("{:<name_width$}", fit(&printable(&row.worker), name_width));
    for ((_, width), cell) in COLUMNS.iter().zip(cells) {
        // Each cell keeps the space before it.
        let cell = fit(&cell, width.saturating_sub(1));
        line.push_str(&format!("{cell:>width$}"));
    }
    line
}

/// The cells of a row, in the order of [`COLUMNS`].
fn cells(row: &Row) -> [String; 7] {
    let unknown = || "-".to_owned();
    let (queue, consumers) = match row.queue {
        QueueCell::Unknown => (unknown(), unknown()),
        QueueCell::Missing => ("missing".to_owned(), unknown()),
        QueueCell::Found {
            messages,
            consumers,
        } => (
            count_text(f64::from(messages)),
            count_text(f64::from(consumers)),
        ),
    };
    let up = if row.up == 0 {
        "down".to_owned()
    } else {
        format!("{}/{}", row.up, row.instances)
    };
    [
        row.messages_per_second.map_or_else(unknown, rate_text),
        row.p99.map_or_else(unknown, quantile_text),
        row.errors_per_second.map_or_else(unknown, rate_text),
        row.in_flight.map_or_else(unknown, count_text),
        queue,
        consumers,
        up,
    ]
}

fn footer(frame: &Frame<'_>) -> String {
    format!(
        "q quit   rates, errors and p99 over the last {}",
        interval_text(frame.interval)
    )
}

/// A rate: `0` for none, one decimal below 100, whole above, `k`/`M` when long.
fn rate_text(rate: f64) -> String {
    if rate == 0.0 {
        "0".to_owned()
    } else if rate < 100.0 {
        format!("{rate:.1}")
    } else {
        count_text(rate)
    }
}

/// A count, whole, with `k`/`M`/`G` past seven digits.
fn count_text(count: f64) -> String {
    let count = count.max(0.0).round();
    if count < 10_000_000.0 {
        format!("{count:.0}")
    } else if count < 10_000_000_000.0 {
        format!("{:.1}M", count / 1e6)
    } else {
        format!("{:.1}G", count / 1e9)
    }
}

/// A duration in seconds, in the unit that suits it.
fn seconds_text(seconds: f64) -> String {
    if seconds < 0.001 {
        format!("{:.0}us", seconds * 1e6)
    } else if seconds < 1.0 {
        let millis = seconds * 1e3;
        if millis < 10.0 {
            format!("{millis:.2}ms")
        } else {
            format!("{millis:.1}ms")
        }
    } else if seconds < 60.0 {
        let text = format!("{seconds:.2}");
        format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
    } else {
        format!("{seconds:.0}s")
    }
}

/// The refresh interval as it is given: `1s`, `500ms`, `1.5s`.
fn interval_text(interval: Duration) -> String {
    let millis = interval.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else if millis < 1000 {
        format!("{millis}ms")
    } else {
        seconds_text(interval.as_secs_f64())
    }
}

fn quantile_text(quantile: Quantile) -> String {
    let text = seconds_text(quantile.seconds);
    if quantile.beyond_last_bound {
        format!(">{text}")
    } else {
        text
    }
}

/// `text` with every character that is not printable ASCII as `?`: a worker label or
/// an error cannot move the cursor or change colours, and every character is one
/// column wide.
pub(super) fn printable(text: &str) -> String {
    text.chars()
        .map(|character| {
            if character == ' ' || character.is_ascii_graphic() {
                character
            } else {
                '?'
            }
        })
        .collect()
}

/// `line` cut to `width` characters, ending in `...` when cut (and there is room).
fn fit(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_owned();
    }
    if width <= 3 {
        return line.chars().take(width).collect();
    }
    let mut cut: String = line.chars().take(width - 3).collect();
    cut.push_str("...");
    cut
}

/// Frames the tests of the view and of the JSON share.
#[cfg(test)]
pub(super) mod fixtures {
    use std::collections::BTreeMap;

    use warren_ops::queue_stats::QueueState;

    use super::super::counts::Combined;
    use super::super::quantile::Bucket;
    use super::super::state::WorkerMetrics;
    use super::*;

    pub(in crate::top) fn worker(name: &str, up: usize, processed: f64) -> WorkerMetrics {
        WorkerMetrics {
            worker: name.to_owned(),
            instances: 1,
            up,
            in_flight: (up > 0).then_some(1.0),
            window: (up > 0).then(|| Combined {
                processed,
                errors: 1.0,
                processed_per_second: processed,
                errors_per_second: 1.0,
                buckets: vec![
                    Bucket {
                        upper_bound: 0.005,
                        count: processed / 2.0,
                    },
                    Bucket {
                        upper_bound: 0.01,
                        count: processed,
                    },
                    Bucket {
                        upper_bound: f64::INFINITY,
                        count: processed,
                    },
                ],
                seconds: 1.0,
            }),
            down_reason: (up == 0).then(|| "127.0.0.1:9: connection refused".to_owned()),
        }
    }

    pub(in crate::top) fn reading(workers: Vec<WorkerMetrics>) -> MetricsReading {
        MetricsReading {
            at: "2026-05-01T12:34:56.789Z".parse().expect("a time"),
            workers,
            problems: Vec::new(),
        }
    }

    pub(in crate::top) fn broker(names: &[&str]) -> BrokerReading {
        BrokerReading::Read(
            names
                .iter()
                .enumerate()
                .map(|(index, name)| {
                    (
                        (*name).to_owned(),
                        QueueState::Found {
                            messages: u32::try_from(index).unwrap_or(0) * 1000,
                            consumers: 1,
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        )
    }

    const URL: &str =
        "amqp://guest:***@127.0.0.1:5672/warren-test-0f6b2d1e-8c1a-4d36-9f5e-3c1a2b7d9e01";

    pub(in crate::top) fn frame<'a>(
        metrics: &'a MetricsReading,
        broker: &'a BrokerReading,
    ) -> Frame<'a> {
        Frame {
            at: metrics.at,
            interval: Duration::from_secs(1),
            broker_url: URL,
            broker,
            targets_folder: ".warren/prometheus",
            metrics: Some(metrics),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::fixtures::{broker, frame, reading, worker};
    use super::*;

    #[test]
    fn a_fleet_fits_80_by_24() {
        let metrics = reading(vec![
            worker("echo", 1, 12.0),
            worker(
                "a-worker-with-a-name-far-too-long-for-its-column",
                1,
                1234.0,
            ),
            worker("tally", 0, 0.0),
        ]);
        let broker = broker(&["echo", "a-worker-with-a-name-far-too-long-for-its-column"]);
        let screen = lines(&frame(&metrics, &broker), 80, Some(24));
        assert_eq!(screen.len(), 24);
        for line in &screen {
            assert!(line.len() <= 80, "{} columns: {line:?}", line.len());
            assert!(
                line.bytes()
                    .all(|byte| byte == b' ' || byte.is_ascii_graphic())
            );
        }
        let text = screen.join("\n");
        assert_eq!(screen[0], "warren top  2026-05-01 12:34:56 UTC  every 1s");
        assert!(
            screen[1]
                .starts_with("broker  connected  amqp://guest:***@127.0.0.1:5672/warren-test-"),
            "{}",
            screen[1]
        );
        assert!(screen[1].ends_with("..."), "{}", screen[1]);
        assert_eq!(
            screen[2],
            "workers  3, 2 of 3 instances up; tally down: 127.0.0.1:9: connection refused"
        );
        assert_eq!(
            screen[4],
            "WORKER                  MSG/S     P99   ERR/S IN FLIGHT   QUEUE CONSUMERS     UP"
        );
        // Sorted as given (the state sorts by name); the long name cut.
        assert_eq!(
            screen[5],
            "echo                     12.0  9.90ms     1.0         1       0         1    1/1"
        );
        assert_eq!(
            screen[6],
            "a-worker-with-a-na...    1234  9.90ms     1.0         1    1000         1    1/1"
        );
        assert_eq!(
            screen[7],
            "tally                       -       -       -         -       -         -   down"
        );
        assert_eq!(
            screen[23],
            "q quit   rates, errors and p99 over the last 1s"
        );
        assert!(screen[8..23].iter().all(String::is_empty), "{text}");
    }

    #[test]
    fn too_many_workers_for_the_height_are_counted() {
        let metrics = reading(
            (0..30)
                .map(|index| worker(&format!("w{index:02}"), 1, 1.0))
                .collect(),
        );
        let broker = BrokerReading::Connecting;
        let screen = lines(&frame(&metrics, &broker), 80, Some(24));
        assert_eq!(screen.len(), 24);
        assert!(screen[5].starts_with("w00 "));
        assert!(screen[21].starts_with("w16 "), "{}", screen[21]);
        assert_eq!(
            screen[22],
            "... and 13 more workers: a taller terminal shows them"
        );
        assert!(screen[23].starts_with("q quit"));
        assert!(
            screen[1].starts_with("broker  connecting  amqp://"),
            "{}",
            screen[1]
        );
    }

    #[test]
    fn a_narrow_or_short_terminal_gets_cut_lines_not_a_panic() {
        let metrics = reading(vec![worker("echo", 1, 3.0)]);
        let broker = BrokerReading::Unreachable("connection refused".to_owned());
        for width in [0, 1, 5, 40, 79] {
            for height in [0, 1, 2, 6, 7] {
                let screen = lines(&frame(&metrics, &broker), width, Some(height));
                assert_eq!(screen.len(), height, "{width}x{height}");
                assert!(screen.iter().all(|line| line.chars().count() <= width));
            }
        }
        let plain = lines(&frame(&metrics, &broker), 80, None);
        assert_eq!(plain.len(), 6, "{plain:#?}");
        assert!(plain[1].contains("UNREACHABLE (connection refused)"));
        assert_eq!(
            plain[5].split_whitespace().nth(5),
            Some("-"),
            "no queue known"
        );
    }

    #[test]
    fn hostile_names_and_errors_cannot_reach_the_terminal() {
        let metrics = reading(vec![worker("evil\u{1b}[2J\nname", 0, 0.0)]);
        let broker = BrokerReading::Unreachable("bad\u{7}\r\n".to_owned());
        let screen = lines(&frame(&metrics, &broker), 80, Some(24));
        for line in &screen {
            assert!(
                line.bytes()
                    .all(|byte| byte == b' ' || byte.is_ascii_graphic()),
                "{line:?}"
            );
        }
        assert!(screen[5].starts_with("evil?[2J?name "));
    }

    #[test]
    fn no_workers_says_where_they_were_looked_for() {
        let mut metrics = reading(Vec::new());
        metrics
            .problems
            .push("no folder .warren/prometheus".to_owned());
        let broker = BrokerReading::Read(BTreeMap::new());
        let screen = lines(&frame(&metrics, &broker), 80, None);
        assert_eq!(
            screen[2],
            "workers  none listed in .warren/prometheus/targets*.json; no folder .warren/p..."
        );
    }

    #[test]
    fn figures_read_in_their_units() {
        assert_eq!(rate_text(0.0), "0");
        assert_eq!(rate_text(0.04), "0.0");
        assert_eq!(rate_text(12.345), "12.3");
        assert_eq!(rate_text(150.4), "150");
        assert_eq!(rate_text(123_456_789.0), "123.5M");
        assert_eq!(count_text(9_999_999.0), "9999999");
        assert_eq!(count_text(f64::from(u32::MAX)), "4295.0M");
        assert_eq!(count_text(1e12), "1000.0G");
        assert_eq!(seconds_text(0.000_25), "250us");
        assert_eq!(seconds_text(0.004_95), "4.95ms");
        assert_eq!(seconds_text(0.123_45), "123.5ms");
        assert_eq!(seconds_text(1.0), "1s");
        assert_eq!(seconds_text(2.5), "2.5s");
        assert_eq!(seconds_text(90.0), "90s");
        assert_eq!(interval_text(Duration::from_secs(1)), "1s");
        assert_eq!(interval_text(Duration::from_millis(100)), "100ms");
        assert_eq!(interval_text(Duration::from_millis(1500)), "1.5s");
        assert_eq!(interval_text(Duration::from_secs(3600)), "3600s");
        assert_eq!(
            quantile_text(Quantile {
                seconds: 10.0,
                beyond_last_bound: true
            }),
            ">10s"
        );
    }
}
