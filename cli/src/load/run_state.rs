//! The state of one run: what is in flight, what came back, what timed out, what is
//! waiting to be acked; and what an outcome is, read from as little of it as possible.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use hdrhistogram::Histogram;
use jiff::Timestamp;
use tokio::time::Instant;
use uuid::Uuid;
use warren_messages::{Fault, Payload, Progress};
use warren_runtime::{
    CorrelationAndType, Delivered, Originator, OutcomePosition, RawOutcome, RuntimeError,
};

use super::requests::Published;
use super::shape::{Shape, latency_start};
use super::stats::{micros, new_histogram};
use super::timeline::Timeline;

/// The most requests made in one turn of the loop, so outcomes are read in between.
pub(super) const PUBLISH_BATCH: usize = 256;

/// What an outcome delivery is, read from as little of it as possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Classified {
    /// A result or a fault for the request with this id.
    Outcome { id: u128, fault: bool },
    /// A progress report: not an outcome.
    Progress,
    /// Neither readable nor one of ours.
    Unreadable,
}

/// Classifies an outcome by its correlation id and type (which the runtime reads from
/// the AMQP properties that warren's publishers mirror from the envelope, decoding the
/// body only when they are missing); `None` is an outcome that could not be read.
pub(super) fn classify(correlation_and_type: Option<CorrelationAndType<'_>>) -> Classified {
    match correlation_and_type {
        Some(read) => classify_attributes(&read.correlation_id, &read.message_type),
        None => Classified::Unreadable,
    }
}

pub(super) fn classify_attributes(correlation_id: &str, message_type: &str) -> Classified {
    if message_type == Progress::TYPE {
        return Classified::Progress;
    }
    match Uuid::try_parse(correlation_id) {
        Ok(id) => Classified::Outcome {
            id: id.as_u128(),
            fault: message_type == Fault::TYPE,
        },
        Err(_) => Classified::Unreadable,
    }
}

/// A request waiting for its outcome.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// Where its latency starts ([`latency_start`]).
    latency_from: Instant,
    /// When it was first published; it times out `--timeout` after.
    published: Instant,
    /// Its deadline, which it keeps when it is sent again.
    deadline: Option<Timestamp>,
}

/// The run's counters.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts {
    pub(super) results: u64,
    pub(super) faults: u64,
    pub(super) timeouts: u64,
    pub(super) duplicates: u64,
    pub(super) late: u64,
    pub(super) unreadable: u64,
    pub(super) progress: u64,
    pub(super) republished: u64,
    pub(super) reconnects: u64,
}

/// The state of one run.
pub(super) struct Run {
    pub(super) shape: Shape,
    pub(super) messages: u64,
    timeout: Duration,
    pub(super) started: Instant,
    pub(super) made: u64,
    in_flight: HashMap<u128, Sent>,
    /// Ids in publish order, for timeouts: popped once answered or timed out.
    publish_order: VecDeque<u128>,
    /// Ids that timed out, so an outcome arriving later counts as late.
    timed_out: HashSet<u128>,
    pub(super) latency: Histogram<u64>,
    /// For open loops, latency from the actual publish, to show what the correction
    /// added.
    pub(super) uncorrected: Option<Histogram<u64>>,
    pub(super) timeline: Timeline,
    pub(super) counts: Counts,
    pub(super) first_outcome: Option<Instant>,
    pub(super) last_outcome: Option<Instant>,
    pub(super) all_confirmed: Option<Instant>,
    unacked: Option<OutcomePosition>,
    pub(super) unacked_count: u32,
    pub(super) to_publish_again: Vec<(Uuid, Option<Timestamp>)>,
    pub(super) unroutable: bool,
}

impl Run {
    pub(super) fn new(shape: Shape, messages: u64, timeout: Duration, started: Instant) -> Run {
        let open_loop = shape.intended_offset(0).is_some();
        let capacity = match shape {
            Shape::Inflight { inflight } => u64::from(inflight),
            _ => messages,
        };
        Run {
            shape,
            messages,
            timeout,
            started,
            made: 0,
            in_flight: HashMap::with_capacity(usize::try_from(capacity.min(1 << 16)).unwrap_or(0)),
            publish_order: VecDeque::new(),
            timed_out: HashSet::new(),
            latency: new_histogram(),
            uncorrected: open_loop.then(new_histogram),
            timeline: Timeline::new(),
            counts: Counts::default(),
            first_outcome: None,
            last_outcome: None,
            all_confirmed: None,
            unacked: None,
            unacked_count: 0,
            to_publish_again: Vec::new(),
            unroutable: false,
        }
    }

    fn due_at(&self, index: u64) -> Option<Instant> {
        self.shape
            .intended_offset(index)
            .map(|offset| self.started + offset)
    }

    /// Whether the shape lets a request go out now or later, with `room` more publishes
    /// allowed in flight.
    pub(super) fn wants_to_publish(&self, room: usize) -> bool {
        self.made < self.messages
            && room > 0
            && match self.shape {
                Shape::Inflight { inflight } => self.in_flight.len() < inflight as usize,
                _ => true,
            }
    }

    /// When the next request is due: `None` means now.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.due_at(self.made)
    }

    /// How many requests to make now, with `room` more publishes allowed in flight.
    pub(super) fn due_now(&self, now: Instant, room: usize) -> usize {
        let left = usize::try_from(self.messages - self.made).unwrap_or(usize::MAX);
        let limit = left.min(room).min(PUBLISH_BATCH);
        match self.shape {
            Shape::Inflight { inflight } => {
                limit.min((inflight as usize).saturating_sub(self.in_flight.len()))
            }
            Shape::Prefill => limit,
            Shape::Rate { .. } | Shape::Burst { .. } => (0..limit)
                .take_while(|&k| {
                    self.due_at(self.made + k as u64)
                        .is_some_and(|due| due <= now)
                })
                .count(),
        }
    }

    /// Records request `id` with `deadline`, made and handed to the publisher at `now`.
    pub(super) fn record_made(&mut self, id: u128, deadline: Option<Timestamp>, now: Instant) {
        let sent = Sent {
            latency_from: latency_start(self.due_at(self.made), now),
            published: now,
            deadline,
        };
        self.made += 1;
        self.in_flight.insert(id, sent);
        self.publish_order.push_back(id);
        self.timeline.record_sent(now - self.started);
    }

    /// Counts an outcome received at `now`.
    pub(super) fn record_outcome(&mut self, id: u128, fault: bool, now: Instant) {
        let Some(sent) = self.in_flight.remove(&id) else {
            if self.timed_out.remove(&id) {
                self.counts.late += 1;
            } else {
                self.counts.duplicates += 1;
            }
            return;
        };
        if fault {
            self.counts.faults += 1;
        } else {
            self.counts.results += 1;
        }
        let latency = now - sent.latency_from;
        self.latency.saturating_record(micros(latency));
        if let Some(uncorrected) = &mut self.uncorrected {
            uncorrected.saturating_record(micros(now - sent.published));
        }
        self.timeline.record_outcome(now - self.started, latency);
        self.first_outcome.get_or_insert(now);
        self.last_outcome = Some(now);
    }

    /// Counts what `outcome` is, received at `now`, and keeps its position to ack it.
    pub(super) fn record_raw_outcome(&mut self, outcome: RawOutcome, now: Instant) {
        match classify(outcome.correlation_id_and_type()) {
            Classified::Outcome { id, fault } => self.record_outcome(id, fault, now),
            Classified::Progress => self.counts.progress += 1,
            Classified::Unreadable => self.counts.unreadable += 1,
        }
        self.unacked = Some(outcome.into_position());
        self.unacked_count += 1;
    }

    /// Counts the requests whose time ran out by `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(&id) = self.publish_order.front() {
            match self.in_flight.get(&id) {
                Some(sent) if now < sent.published + self.timeout => break,
                Some(_) => {
                    self.in_flight.remove(&id);
                    self.timed_out.insert(id);
                    self.counts.timeouts += 1;
                    self.timeline.record_timeout(now - self.started);
                }
                None => {}
            }
            self.publish_order.pop_front();
        }
    }

    /// Acks every outcome delivered so far (bounded by `amqp.confirm_timeout_ms`).
    pub(super) async fn flush_acks(&mut self, originator: &Originator) -> Result<(), RuntimeError> {
        self.unacked_count = 0;
        match self.unacked.take() {
            Some(position) => originator.ack_up_to(&position).await,
            None => Ok(()),
        }
    }

    /// Forgets the acks of a dead channel: its unacked outcomes come again, and count as
    /// duplicates.
    pub(super) fn forget_acks(&mut self) {
        self.unacked = None;
        self.unacked_count = 0;
    }

    /// Records what became of a publish; a failed one is published again after the
    /// reconnect its error calls for.
    pub(super) fn record_published(
        &mut self,
        published: Published,
        now: Instant,
        publishing: usize,
    ) -> Option<RuntimeError> {
        if self.made == self.messages && publishing == 0 {
            self.all_confirmed.get_or_insert(now);
        }
        match published.result {
            Ok(Delivered::Routed) => None,
            Ok(Delivered::Returned) => {
                self.unroutable = true;
                None
            }
            Err(error) => {
                self.to_publish_again
                    .push((published.id, published.deadline));
                Some(error)
            }
        }
    }

    /// How many requests wait for their outcome.
    pub(super) fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// After a reconnect of an originator that re-sends: every request still waiting, to
    /// be sent again (in place of the unconfirmed ones, which are among them).
    pub(super) fn send_all_waiting_again(&mut self) {
        self.to_publish_again = self
            .in_flight
            .iter()
            .map(|(id, sent)| (Uuid::from_u128(*id), sent.deadline))
            .collect();
    }

    /// Whether request `id` still waits for its outcome.
    pub(super) fn is_waiting_for(&self, id: u128) -> bool {
        self.in_flight.contains_key(&id)
    }

    pub(super) fn is_done(&self, publishing: usize) -> bool {
        self.made == self.messages && self.in_flight.is_empty() && publishing == 0
    }

    pub(super) fn finished(&self) -> u64 {
        self.counts.results + self.counts.faults + self.counts.timeouts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::event_loop::PUBLISH_WINDOW;
    use crate::load::report::Latency;
    use crate::load::stats::assert_close;

    /// A sender at 1000 requests/s stalls for 100 ms (the system held it back), then
    /// sends the 101 requests that came due meanwhile at once; each is answered 1 ms
    /// later. Measured from the publish, every request took 1 ms and the stall vanishes;
    /// measured from when each was due, the stall shows, up to 101 ms.
    #[test]
    fn coordinated_omission_is_corrected_in_open_loops() {
        let started = Instant::now();
        let mut run = Run::new(
            Shape::Rate { per_second: 1000.0 },
            1000,
            Duration::from_secs(30),
            started,
        );
        let stalled_until = started + Duration::from_millis(100);
        let due = run.due_now(stalled_until, PUBLISH_WINDOW);
        assert_eq!(due, 101, "requests 0 to 100 are due after 100 ms");
        for index in 0..due {
            run.record_made(index as u128, None, stalled_until);
        }
        assert_eq!(run.next_due(), Some(started + Duration::from_millis(101)));
        let answered = stalled_until + Duration::from_millis(1);
        for index in 0..due {
            run.record_outcome(index as u128, false, answered);
        }
        assert_eq!(run.counts.results, 101);
        let corrected = Latency::of(&run.latency);
        let uncorrected = Latency::of(run.uncorrected.as_ref().expect("an open loop"));
        assert_close(uncorrected.max, 1.0);
        assert_close(uncorrected.p50, 1.0);
        assert_close(corrected.max, 101.0);
        assert_close(corrected.p50, 51.0);
        assert_close(corrected.min, 1.0);
    }

    #[test]
    fn closed_loops_keep_the_window_full_and_no_more() {
        let started = Instant::now();
        let mut run = Run::new(
            Shape::Inflight { inflight: 3 },
            10,
            Duration::from_secs(30),
            started,
        );
        assert!(run.wants_to_publish(PUBLISH_WINDOW));
        assert_eq!(run.next_due(), None);
        assert_eq!(run.due_now(started, PUBLISH_WINDOW), 3);
        assert_eq!(
            run.due_now(started, 2),
            2,
            "the confirm window bounds it too"
        );
        for id in 0..3 {
            run.record_made(id, None, started);
        }
        assert!(!run.wants_to_publish(PUBLISH_WINDOW));
        run.record_outcome(1, false, started + Duration::from_millis(5));
        assert_eq!(run.due_now(started, PUBLISH_WINDOW), 1);
        assert_close(Latency::of(&run.latency).max, 5.0);
    }

    #[test]
    fn duplicates_late_outcomes_and_timeouts_are_counted_apart() {
        let started = Instant::now();
        let timeout = Duration::from_secs(1);
        let mut run = Run::new(Shape::Prefill, 3, timeout, started);
        for id in 0..3 {
            run.record_made(id, None, started);
        }
        run.record_outcome(0, false, started + Duration::from_millis(10));
        run.record_outcome(0, false, started + Duration::from_millis(11));
        run.record_outcome(1, true, started + Duration::from_millis(12));
        run.expire(started + Duration::from_millis(999));
        assert_eq!(run.counts.timeouts, 0);
        run.expire(started + timeout);
        assert_eq!(run.counts.timeouts, 1);
        assert!(run.publish_order.is_empty());
        run.record_outcome(2, false, started + Duration::from_secs(2));
        run.record_outcome(2, false, started + Duration::from_secs(2));
        let counts = run.counts;
        assert_eq!(
            (counts.results, counts.faults, counts.timeouts),
            (1, 1, 1),
            "{counts:?}"
        );
        assert_eq!((counts.duplicates, counts.late), (2, 1), "{counts:?}");
        assert!(run.is_done(0));
        assert_eq!(run.latency.len(), 2);
    }

    /// How the runtime reads an outcome's correlation id and type (from the AMQP
    /// properties, else the body) is tested with `RawOutcome`; here, what they make it.
    #[test]
    fn outcomes_are_classified_by_correlation_id_and_type() {
        let id = Uuid::now_v7();
        let read = |correlation_id: &str, message_type: &'static str| {
            classify(Some(CorrelationAndType {
                correlation_id: correlation_id.to_owned().into(),
                message_type: message_type.into(),
            }))
        };
        assert_eq!(
            read(&id.to_string(), "dev.warren.echo.replied.v1"),
            Classified::Outcome {
                id: id.as_u128(),
                fault: false
            }
        );
        assert_eq!(
            read(&id.to_string(), Fault::TYPE),
            Classified::Outcome {
                id: id.as_u128(),
                fault: true
            }
        );
        assert_eq!(read(&id.to_string(), Progress::TYPE), Classified::Progress);
        // Neither properties nor a body that could be read.
        assert_eq!(classify(None), Classified::Unreadable);
        assert_eq!(
            read("not-a-uuid", "dev.warren.echo.replied.v1"),
            Classified::Unreadable
        );
    }
}
