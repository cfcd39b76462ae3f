//! Replaying dead letters to where they were first published, removing each from the
//! queue only once its copy is confirmed.

use std::collections::HashSet;
use std::time::Duration;

use lapin::Connection;
use warren_runtime::topology::dead_letter_queue_name;
use warren_runtime::{Delivered, PendingConfirm, Publisher, RuntimeError, close_channel};

use super::reader::{Held, Reader, Settlement, count, settle_and_close};

/// How many replayed messages may wait for their confirms at once.
const REPLAY_CONFIRM_WINDOW: usize = 64;
/// Which dead letters to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaySelection {
    /// Every dead letter in the queue when the replay starts.
    All,
    /// Those whose message id is one of these (every copy of each).
    Ids(Vec<String>),
}

/// A dead letter that was republished.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Replayed {
    /// Its position in the queue when the replay read it.
    pub position: usize,
    /// Its message id.
    pub message_id: Option<String>,
    /// Its message type.
    pub message_type: Option<String>,
    /// The exchange it was republished to.
    pub exchange: String,
    /// The routing key it was republished with.
    pub routing_key: String,
    /// Whether its dead-letter copy was acked away. `false` only when the replay was
    /// interrupted between the confirm and the ack: the copy is still in the queue.
    pub removed_from_queue: bool,
}

/// Why a selected dead letter was not replayed. It stays in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotReplayedReason {
    /// Neither `x-warren-original-*` nor `x-death` says where it came from.
    NoOriginalRoute,
    /// The broker returned it: no queue is bound for its original route any more.
    Unroutable {
        /// The exchange it was published to.
        exchange: String,
        /// The routing key.
        routing_key: String,
    },
    /// The broker did not take it (a nack, or no confirm in time).
    Failed(String),
}

impl std::fmt::Display for NotReplayedReason {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReplayedReason::NoOriginalRoute => formatter.write_str(
                "its original exchange and routing key are unknown (no x-warren-original-* \
                 or x-death header)",
            ),
            NotReplayedReason::Unroutable {
                exchange,
                routing_key,
            } => write!(
                formatter,
                "unroutable: no queue is bound to exchange {exchange:?} for key \
                 {routing_key:?}, so the broker returned it"
            ),
            NotReplayedReason::Failed(error) => formatter.write_str(error),
        }
    }
}

/// A selected dead letter that was not replayed, and why.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NotReplayed {
    /// Its position in the queue when the replay read it.
    pub position: usize,
    /// Its message id.
    pub message_id: Option<String>,
    /// Its message type.
    pub message_type: Option<String>,
    /// Why it was not replayed.
    pub reason: NotReplayedReason,
}

/// What a replay did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ReplayReport {
    /// How many dead letters the replay read.
    pub read: usize,
    /// Those republished, in queue order.
    pub replayed: Vec<Replayed>,
    /// Those selected but left in the queue, in queue order.
    pub not_replayed: Vec<NotReplayed>,
    /// Asked-for message ids that no dead letter has.
    pub missing_ids: Vec<String>,
    /// The broker error that stopped the replay early, if one did. Every message not
    /// listed in `replayed` is still in the queue.
    pub interrupted: Option<RuntimeError>,
}

impl ReplayReport {
    /// Whether everything selected was replayed and removed from the queue.
    pub fn is_complete(&self) -> bool {
        self.not_replayed.is_empty()
            && self.missing_ids.is_empty()
            && self.interrupted.is_none()
            && self
                .replayed
                .iter()
                .all(|replayed| replayed.removed_from_queue)
    }
}

/// Republishes the selected dead letters of `worker` to their original exchange and
/// routing key, and removes them from the dead-letter queue.
///
/// Every message waiting in the queue is taken in order by a consumer with manual acks
/// (see [`browse`](super::reader::browse) for why all of them). Each selected message is published with its own
/// body and properties (without the dead-letter headers, see
/// [`strip_dead_letter_headers`](warren_runtime::headers::strip_dead_letter_headers)), `mandatory` and with a publisher confirm. Once every
/// confirm is in, the messages are settled in queue order: the dead-letter copy of each
/// message the broker confirmed is acked; everything else is put back, in order. A
/// message the broker returns (its original route has no queue any more), nacks or
/// does not confirm in time is not acked and is reported in
/// [`ReplayReport::not_replayed`].
///
/// Interrupted at any point, nothing is lost: a message is still in the dead-letter
/// queue, or confirmed republished, or both. "Both" (a duplicate) happens when the
/// replay dies between a confirm and its ack; warren's workers are idempotent (they
/// record processed message ids), so a duplicate repeats no side effect.
///
/// An error is returned only when the replay could not start (the queue does not
/// exist, the broker is unreachable); an error during the replay is reported in
/// [`ReplayReport::interrupted`] with what was done before it.
pub async fn replay(
    connection: &Connection,
    worker: &str,
    selection: &ReplaySelection,
    confirm_timeout: Duration,
) -> Result<ReplayReport, RuntimeError> {
    let waiting = usize::try_from(count(connection, worker).await?).unwrap_or(usize::MAX);
    let mut report = ReplayReport::default();
    if waiting == 0 {
        if let ReplaySelection::Ids(ids) = selection {
            let mut seen = HashSet::new();
            report.missing_ids = ids
                .iter()
                .filter(|id| seen.insert(id.as_str()))
                .cloned()
                .collect();
        }
        return Ok(report);
    }
    let publisher = Publisher::open(connection, confirm_timeout).await?;
    let channel = connection.create_channel().await?;
    let queue = dead_letter_queue_name(worker);
    let reader = match Reader::open(&channel, &queue, waiting).await {
        Ok(reader) => reader,
        Err(error) => {
            close_channel(&channel, "done").await;
            close_channel(publisher.channel(), "done").await;
            return Err(error);
        }
    };

    let mut walk = ReplayWalk {
        reader,
        publisher: &publisher,
        selected_ids: match selection {
            ReplaySelection::All => None,
            ReplaySelection::Ids(ids) => Some(ids.iter().map(String::as_str).collect()),
        },
        held: Vec::new(),
        in_flight: Vec::with_capacity(REPLAY_CONFIRM_WINDOW),
        found_ids: HashSet::new(),
        report,
    };
    let walked = walk.run().await;
    let settled = settle_and_close(&channel, &queue, &walk.reader, &mut walk.held).await;
    close_channel(publisher.channel(), "replayed").await;
    let mut report = walk.report;
    for replayed in &mut report.replayed {
        let held = &walk.held[replayed.position];
        replayed.removed_from_queue = held.settled && held.settlement == Settlement::Ack;
    }
    report.read = walk.held.len();
    // Ids are known to be missing only when the whole queue was read.
    if let (ReplaySelection::Ids(ids), Ok(())) = (selection, &walked) {
        let mut seen = HashSet::new();
        report.missing_ids = ids
            .iter()
            .filter(|id| !walk.found_ids.contains(id.as_str()) && seen.insert(id.as_str()))
            .cloned()
            .collect();
    }
    report.interrupted = walked.err().or(settled.err());
    Ok(report)
}

/// A replayed message waiting for its confirm.
struct InFlight {
    /// Its index in [`ReplayWalk::held`], which is also its position.
    position: usize,
    message_id: Option<String>,
    message_type: Option<String>,
    exchange: String,
    routing_key: String,
    confirm: PendingConfirm,
}

/// The state of one replay: what was taken, what waits for a confirm, what was done.
struct ReplayWalk<'a> {
    reader: Reader,
    publisher: &'a Publisher,
    /// `None` for every message.
    selected_ids: Option<HashSet<&'a str>>,
    held: Vec<Held>,
    in_flight: Vec<InFlight>,
    found_ids: HashSet<String>,
    report: ReplayReport,
}

impl ReplayWalk<'_> {
    /// Reads the messages in order, republishes the selected ones, and marks those the
    /// broker confirmed to be acked.
    async fn run(&mut self) -> Result<(), RuntimeError> {
        while let Some((dead_letter, held)) = self.reader.next().await? {
            let position = dead_letter.position;
            self.held.push(held);
            let selected = match (&self.selected_ids, dead_letter.message_id.as_deref()) {
                (None, _) => true,
                (Some(ids), Some(id)) if ids.contains(id) => {
                    self.found_ids.insert(id.to_owned());
                    true
                }
                (Some(_), _) => false,
            };
            if !selected {
                continue;
            }
            let Some((exchange, routing_key)) = dead_letter.original_route() else {
                self.report.not_replayed.push(NotReplayed {
                    position,
                    message_id: dead_letter.message_id.clone(),
                    message_type: dead_letter.message_type.clone(),
                    reason: NotReplayedReason::NoOriginalRoute,
                });
                continue;
            };
            let confirm = self
                .publisher
                .publish_raw(
                    exchange,
                    routing_key,
                    &dead_letter.body,
                    dead_letter.replay_properties(),
                )
                .await?;
            self.in_flight.push(InFlight {
                position,
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
                message_id: dead_letter.message_id,
                message_type: dead_letter.message_type,
                confirm,
            });
            if self.in_flight.len() >= REPLAY_CONFIRM_WINDOW {
                self.wait_for_confirms().await?;
            }
        }
        self.wait_for_confirms().await
    }

    /// Waits for the confirms in flight, in order; a message the broker routed is to
    /// be acked, any other stays.
    async fn wait_for_confirms(&mut self) -> Result<(), RuntimeError> {
        for flight in std::mem::take(&mut self.in_flight) {
            let reason = match flight.confirm.wait().await {
                Ok(Delivered::Routed) => {
                    self.held[flight.position].settlement = Settlement::Ack;
                    self.report.replayed.push(Replayed {
                        position: flight.position,
                        message_id: flight.message_id,
                        message_type: flight.message_type,
                        exchange: flight.exchange,
                        routing_key: flight.routing_key,
                        removed_from_queue: false,
                    });
                    continue;
                }
                Ok(Delivered::Returned) => NotReplayedReason::Unroutable {
                    exchange: flight.exchange,
                    routing_key: flight.routing_key,
                },
                Err(error @ (RuntimeError::Nacked { .. } | RuntimeError::ConfirmTimeout(_))) => {
                    NotReplayedReason::Failed(error.to_string())
                }
                Err(error) => return Err(error),
            };
            self.report.not_replayed.push(NotReplayed {
                position: flight.position,
                message_id: flight.message_id,
                message_type: flight.message_type,
                reason,
            });
        }
        Ok(())
    }
}
