//! A k-way merge of streams of records, each already in time order, into one: at most
//! one record per stream is held at a time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use jiff::Timestamp;

use super::record::Record;

/// The records of every stream, earliest first. Records of the same time come in stream
/// order (the first stream's first), and a stream's own records always in its order.
#[derive(Debug)]
pub(super) struct Merge<S> {
    streams: Vec<S>,
    /// The next record of each stream, taken but not yet given out.
    heads: Vec<Option<Record>>,
    /// The time of each held record and its stream, the earliest (then the first stream)
    /// on top.
    queue: BinaryHeap<Reverse<(Timestamp, usize)>>,
}

impl<S: Iterator<Item = Record>> Merge<S> {
    /// Merges `streams`, reading the first record of each.
    pub(super) fn new(streams: Vec<S>) -> Merge<S> {
        let mut merge = Merge {
            heads: streams.iter().map(|_| None).collect(),
            queue: BinaryHeap::with_capacity(streams.len()),
            streams,
        };
        for index in 0..merge.streams.len() {
            merge.take_next(index);
        }
        merge
    }

    /// The streams, to read what they counted once the merge is done.
    pub(super) fn into_streams(self) -> Vec<S> {
        self.streams
    }

    /// Holds the next record of stream `index`, if it has one.
    fn take_next(&mut self, index: usize) {
        if let Some(record) = self.streams[index].next() {
            self.queue.push(Reverse((record.timestamp, index)));
            self.heads[index] = Some(record);
        }
    }
}

impl<S: Iterator<Item = Record>> Iterator for Merge<S> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        let Reverse((_, index)) = self.queue.pop()?;
        let record = self.heads[index].take();
        self.take_next(index);
        record
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    /// A record at `time` (`HH:MM:SS`) whose line is `line`.
    fn record(time: &str, line: &str) -> Record {
        Record {
            timestamp: format!("2026-11-30T{time}Z").parse().expect("a time"),
            line: line.to_owned(),
            file_worker: Rc::from("orders"),
        }
    }

    fn merged(streams: Vec<Vec<Record>>) -> Vec<String> {
        Merge::new(streams.into_iter().map(Vec::into_iter).collect())
            .map(|record| record.line)
            .collect()
    }

    #[test]
    fn interleaved_streams_come_out_in_time_order() {
        let orders = vec![
            record("11:00:01", "o1"),
            record("11:00:04", "o2"),
            record("11:00:05", "o3"),
        ];
        let payments = vec![record("11:00:02", "p1"), record("11:00:03", "p2")];
        let shipping = vec![record("11:00:00", "s1"), record("11:00:06", "s2")];
        assert_eq!(
            merged(vec![orders, payments, shipping]),
            ["s1", "o1", "p1", "p2", "o2", "o3", "s2"]
        );
    }

    #[test]
    fn ties_keep_stream_order_and_each_stream_its_own() {
        let first = vec![record("11:00:00", "a1"), record("11:00:00", "a2")];
        let second = vec![record("11:00:00", "b1"), record("11:00:00", "b2")];
        let third = vec![record("10:59:59", "c1"), record("11:00:00", "c2")];
        assert_eq!(
            merged(vec![first, second, third]),
            ["c1", "a1", "a2", "b1", "b2", "c2"]
        );
    }

    #[test]
    fn a_stream_out_of_order_is_kept_in_its_own_order() {
        // A writer's threads can log a moment out of order: its lines still come as written.
        let jumbled = vec![record("11:00:03", "j1"), record("11:00:01", "j2")];
        let steady = vec![record("11:00:02", "s1"), record("11:00:04", "s2")];
        assert_eq!(merged(vec![jumbled, steady]), ["s1", "j1", "j2", "s2"]);
    }

    #[test]
    fn empty_streams_and_no_streams_are_nothing() {
        assert!(merged(Vec::new()).is_empty());
        assert!(merged(vec![Vec::new(), Vec::new()]).is_empty());
        assert_eq!(
            merged(vec![Vec::new(), vec![record("11:00:00", "x")], Vec::new()]),
            ["x"]
        );
    }

    #[test]
    fn a_stream_is_read_one_record_ahead_at_most() {
        /// Counts what was taken from it.
        struct Counting<'a> {
            records: std::vec::IntoIter<Record>,
            taken: &'a std::cell::Cell<usize>,
        }
        impl Iterator for Counting<'_> {
            type Item = Record;
            fn next(&mut self) -> Option<Record> {
                let record = self.records.next()?;
                self.taken.set(self.taken.get() + 1);
                Some(record)
            }
        }
        let taken = std::cell::Cell::new(0);
        let late = Counting {
            records: vec![record("12:00:00", "l1"), record("12:00:01", "l2")].into_iter(),
            taken: &taken,
        };
        let early = Counting {
            records: vec![record("11:00:00", "e1"), record("11:00:01", "e2")].into_iter(),
            taken: &std::cell::Cell::new(0),
        };
        let mut merge = Merge::new(vec![late, early]);
        assert_eq!(
            merge.next().map(|record| record.line).as_deref(),
            Some("e1")
        );
        assert_eq!(
            merge.next().map(|record| record.line).as_deref(),
            Some("e2")
        );
        assert_eq!(taken.get(), 1, "only the head of the later stream was read");
    }
}
