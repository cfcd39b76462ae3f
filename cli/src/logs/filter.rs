//! Which lines `warren logs` prints: the filters of its flags, as one pure test of a
//! line's head, and a cheaper one of a whole file by its name.

use std::collections::BTreeSet;

use jiff::{Timestamp, ToSpan as _, tz::TimeZone};

use super::files::LogFile;
use super::record::{Head, Level};

/// The filters of one `warren logs` run. Each one given must hold; none given lets
/// every line through.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Filter {
    /// `trace_id` is this (32 lowercase hex digits).
    pub(super) trace_id: Option<String>,
    /// `correlation_id` is this.
    pub(super) correlation_id: Option<String>,
    /// The worker is one of these; empty: any.
    pub(super) workers: BTreeSet<String>,
    /// The level is this one or more severe.
    pub(super) min_level: Option<Level>,
    /// The time is this one or later.
    pub(super) since: Option<Timestamp>,
}

impl Filter {
    /// Whether `file` may hold a line that passes: a file of another worker cannot, nor
    /// one of a day that ended before `since` (with a day to spare, for a writer that
    /// rolls its files by local time).
    pub(super) fn wants_file(&self, file: &LogFile) -> bool {
        if !self.workers.is_empty() && !self.workers.contains(&file.worker) {
            return false;
        }
        let Some(since) = self.since else {
            return true;
        };
        let since_day = since.to_zoned(TimeZone::UTC).date();
        match since_day.checked_sub(1.day()) {
            Ok(day_before) => file.date >= day_before,
            Err(_) => true,
        }
    }

    /// Whether the line of `head`, at `timestamp`, in a file of `file_worker`, passes.
    pub(super) fn matches(&self, head: &Head<'_>, timestamp: Timestamp, file_worker: &str) -> bool {
        if self.since.is_some_and(|since| timestamp < since) {
            return false;
        }
        if let Some(min_level) = self.min_level {
            // A line without a level it can be ranked by is not shown by a level filter.
            let level = head.level.as_deref().and_then(Level::of_line);
            if level.is_none_or(|level| level < min_level) {
                return false;
            }
        }
        if !self.workers.is_empty() {
            let worker = head.worker.as_deref().unwrap_or(file_worker);
            if !self.workers.contains(worker) {
                return false;
            }
        }
        if let Some(trace_id) = &self.trace_id
            && head.trace_id.as_deref() != Some(trace_id.as_str())
        {
            return false;
        }
        if let Some(correlation_id) = &self.correlation_id
            && head.correlation_id.as_deref() != Some(correlation_id.as_str())
        {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::files::FileIdentity;
    use crate::logs::record::{Line, parse_line};

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

    /// Whether `filter` lets the line `json` (in a file of `orders`) through.
    fn passes(filter: &Filter, json: &str) -> bool {
        match parse_line(json.as_bytes()) {
            Line::Record(parsed) => filter.matches(&parsed.head, parsed.timestamp, "orders"),
            other => panic!("not a record: {other:?} {json}"),
        }
    }

    fn time(text: &str) -> Timestamp {
        text.parse().expect("a time")
    }

    const LINE: &str = r#"{"timestamp":"2026-11-30T11:30:00Z","level":"WARN","worker":"payments","message":"declined","correlation_id":"c-1","trace_id":"0af7651916cd43dd8448eb211c80319c"}"#;

    #[test]
    fn no_filter_lets_everything_through() {
        assert!(passes(&Filter::default(), LINE));
        assert!(passes(
            &Filter::default(),
            r#"{"timestamp":"2026-11-30T11:30:00Z"}"#
        ));
    }

    #[test]
    fn trace_and_correlation_ids_must_be_exact() {
        let trace = |id: &str| Filter {
            trace_id: Some(id.to_owned()),
            ..Filter::default()
        };
        assert!(passes(&trace(TRACE), LINE));
        assert!(!passes(&trace("0af7651916cd43dd8448eb211c80319d"), LINE));
        assert!(!passes(
            &trace(TRACE),
            r#"{"timestamp":"2026-11-30T11:30:00Z","message":"no trace"}"#
        ));
        let correlation = |id: &str| Filter {
            correlation_id: Some(id.to_owned()),
            ..Filter::default()
        };
        assert!(passes(&correlation("c-1"), LINE));
        assert!(!passes(&correlation("c-10"), LINE));
        assert!(!passes(&correlation("c"), LINE));
    }

    #[test]
    fn levels_pass_at_and_above_the_one_asked() {
        let at_least = |level| Filter {
            min_level: Some(level),
            ..Filter::default()
        };
        assert!(passes(&at_least(Level::Info), LINE));
        assert!(passes(&at_least(Level::Warn), LINE));
        assert!(!passes(&at_least(Level::Error), LINE));
        assert!(!passes(
            &at_least(Level::Trace),
            r#"{"timestamp":"2026-11-30T11:30:00Z","level":"LOUD"}"#
        ));
        assert!(!passes(
            &at_least(Level::Trace),
            r#"{"timestamp":"2026-11-30T11:30:00Z"}"#
        ));
    }

    #[test]
    fn workers_come_from_the_line_or_else_its_file() {
        let workers = |names: &[&str]| Filter {
            workers: names.iter().map(|name| (*name).to_owned()).collect(),
            ..Filter::default()
        };
        assert!(passes(&workers(&["payments"]), LINE));
        assert!(passes(&workers(&["orders", "payments"]), LINE));
        assert!(!passes(&workers(&["orders"]), LINE));
        assert!(passes(
            &workers(&["orders"]),
            r#"{"timestamp":"2026-11-30T11:30:00Z","message":"no worker field"}"#
        ));
    }

    #[test]
    fn since_keeps_that_time_and_later() {
        let since = |text: &str| Filter {
            since: Some(time(text)),
            ..Filter::default()
        };
        assert!(passes(&since("2026-11-30T11:30:00Z"), LINE));
        assert!(passes(&since("2026-11-30T11:29:59.999999Z"), LINE));
        assert!(!passes(&since("2026-11-30T11:30:00.000001Z"), LINE));
    }

    #[test]
    fn every_filter_must_hold() {
        let filter = Filter {
            trace_id: Some(TRACE.to_owned()),
            correlation_id: Some("c-1".to_owned()),
            workers: ["payments".to_owned()].into(),
            min_level: Some(Level::Warn),
            since: Some(time("2026-11-30T11:00:00Z")),
        };
        assert!(passes(&filter, LINE));
        let later = Filter {
            since: Some(time("2026-11-30T12:00:00Z")),
            ..filter
        };
        assert!(!passes(&later, LINE));
    }

    #[test]
    fn files_of_other_workers_and_days_long_past_are_left_out() {
        let file = |worker: &str, date: &str| LogFile {
            worker: worker.to_owned(),
            date: date.parse().expect("a date"),
            path: format!("{worker}.{date}.log").into(),
            identity: FileIdentity::default(),
        };
        let filter = Filter {
            workers: ["orders".to_owned()].into(),
            since: Some(time("2026-11-30T00:10:00Z")),
            ..Filter::default()
        };
        assert!(filter.wants_file(&file("orders", "2026-11-30")));
        assert!(filter.wants_file(&file("orders", "2026-12-01")));
        assert!(
            filter.wants_file(&file("orders", "2026-11-29")),
            "a day to spare"
        );
        assert!(!filter.wants_file(&file("orders", "2026-11-28")));
        assert!(!filter.wants_file(&file("payments", "2026-11-30")));
        assert!(Filter::default().wants_file(&file("payments", "1999-01-01")));
    }
}
