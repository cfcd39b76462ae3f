//! Reading a dead-letter queue in order without removing anything, counting and purging it.

use std::time::Duration;

use futures_util::StreamExt;
use jiff::Timestamp;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Connection, ErrorKind};
use warren_runtime::topology::dead_letter_queue_name;
use warren_runtime::{CLOSE_TIMEOUT, RuntimeError, close_channel};

use super::letter::DeadLetter;

/// Whether `error` says a queue does not exist (for a dead-letter queue: its worker
/// never started in this vhost).
pub fn is_queue_missing(error: &RuntimeError) -> bool {
    matches!(
        error,
        RuntimeError::Amqp(error) if matches!(
            error.kind(),
            ErrorKind::ProtocolError(amqp_error)
                if *amqp_error.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
        )
    )
}

/// The ready messages of `queue`, by a passive declare on `channel` (which the broker
/// closes if the queue does not exist).
async fn ready_count(channel: &Channel, queue: &str) -> Result<u32, RuntimeError> {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(declared.message_count())
}

/// How many dead letters wait in `worker`'s dead-letter queue (not counting any that a
/// reader holds right now). An error when the queue does not exist
/// ([`is_queue_missing`]).
pub async fn count(connection: &Connection, worker: &str) -> Result<u32, RuntimeError> {
    // A passive declare of a missing queue closes its channel: use one of its own.
    let channel = connection.create_channel().await?;
    let ready = ready_count(&channel, &dead_letter_queue_name(worker)).await?;
    close_channel(&channel, "counted").await;
    Ok(ready)
}

/// What becomes of a message taken from the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settlement {
    /// Back into the queue (`basic.nack` with `requeue`).
    Requeue,
    /// Out of the queue (`basic.ack`): it was replayed.
    Ack,
}

/// A message taken from the queue with a manual ack, not yet settled.
pub(super) struct Held {
    pub(super) acker: Acker,
    pub(super) settlement: Settlement,
    pub(super) settled: bool,
}

/// How long reading waits for the next message before deciding there is none (the
/// queue held fewer than counted: someone else took some meanwhile).
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads a queue in order through a consumer with manual acks and a prefetch of
/// exactly the number of messages wanted, so it is given no more.
///
/// A consumer rather than `basic.get`: a quorum queue settles each message taken by
/// `basic.get` on its own (acking 47 of them with one `multiple` ack was 47 commands,
/// and the 14 beyond the channel's limit of 32 unapplied ones were dropped when the
/// channel closed, so those messages came back). The deliveries of one consumer are
/// settled together: one command per `multiple` ack.
pub(super) struct Reader {
    consumer: lapin::Consumer,
    consumer_tag: String,
    wanted: usize,
    read: usize,
    now: Timestamp,
}

impl Reader {
    /// Starts consuming `queue` on `channel` for up to `waiting` messages (at most
    /// 65,535: a prefetch is 16 bits).
    pub(super) async fn open(
        channel: &Channel,
        queue: &str,
        waiting: usize,
    ) -> Result<Reader, RuntimeError> {
        let wanted = waiting.clamp(1, usize::from(u16::MAX));
        let prefetch = u16::try_from(wanted).unwrap_or(u16::MAX);
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let consumer_tag = format!("warren-dlq-{}", uuid::Uuid::new_v4());
        let consumer = channel
            .basic_consume(
                queue.into(),
                consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Reader {
            consumer,
            consumer_tag,
            wanted,
            read: 0,
            now: Timestamp::now(),
        })
    }

    /// The next message, summed up with its position; `None` once `wanted` were read,
    /// or when none comes for [`READ_IDLE_TIMEOUT`].
    pub(super) async fn next(&mut self) -> Result<Option<(DeadLetter, Held)>, RuntimeError> {
        if self.read >= self.wanted {
            return Ok(None);
        }
        let delivery = match tokio::time::timeout(READ_IDLE_TIMEOUT, self.consumer.next()).await {
            Err(_) | Ok(None) => return Ok(None),
            Ok(Some(delivery)) => delivery?,
        };
        let position = self.read;
        self.read += 1;
        let held = Held {
            acker: delivery.acker,
            settlement: Settlement::Requeue,
            settled: false,
        };
        let dead_letter =
            DeadLetter::summarise(position, delivery.data, delivery.properties, self.now);
        Ok(Some((dead_letter, held)))
    }

    /// Stops the consumer, so that requeued messages are not delivered to it again.
    async fn cancel(&self, channel: &Channel) -> Result<(), RuntimeError> {
        channel
            .basic_cancel(
                self.consumer_tag.as_str().into(),
                BasicCancelOptions::default(),
            )
            .await?;
        Ok(())
    }
}

/// The most messages one requeueing `basic.nack` covers: one. A quorum queue puts the
/// messages of a `multiple` nack back in an order of its own (RabbitMQ 3.10 put 50
/// back rotated, and 18 reversed), while single nacks go back in the order they are
/// sent.
const MAX_REQUEUE_RUN: usize = 1;

/// How many acks and nacks are sent before waiting for the broker to have applied
/// them. A quorum queue's channel stops sending settlements beyond 32 unapplied ones
/// and later sends the rest as one batch (out of order), or drops them if the channel
/// closes first (the broker then requeues those messages itself: acked ones come back
/// as duplicates, and the order is lost).
const SETTLEMENTS_BETWEEN_SYNCS: usize = 16;

/// How long to wait for the broker to apply requeues before going on regardless.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// How often to look whether the broker applied the requeues.
const SYNC_POLL: Duration = Duration::from_millis(5);

/// Settles every held message in queue order (all of them are unsettled when this
/// starts), oldest first: each run of neighbours to ack is one `basic.ack` with
/// `multiple` on its last delivery tag; each message to requeue is one `basic.nack`
/// (`requeue`, see [`MAX_REQUEUE_RUN`]). Requeued messages therefore go back in their
/// order.
///
/// Every [`SETTLEMENTS_BETWEEN_SYNCS`] settlements, and at the end, it waits until the
/// queue's ready count shows the requeues applied (settlements from one channel are
/// applied in the order they were sent, so the acks before them are applied too).
async fn settle_in_order(
    channel: &Channel,
    queue: &str,
    held: &mut [Held],
) -> Result<(), RuntimeError> {
    if held.is_empty() {
        return Ok(());
    }
    let baseline = ready_count(channel, queue).await?;
    let mut requeued: u32 = 0;
    let mut unsynced = 0usize;
    let mut start = 0;
    while start < held.len() {
        let settlement = held[start].settlement;
        let mut end = start + 1;
        while end < held.len()
            && held[end].settlement == settlement
            && (settlement == Settlement::Ack || end - start < MAX_REQUEUE_RUN)
        {
            end += 1;
        }
        let last = &held[end - 1].acker;
        let sent = match settlement {
            Settlement::Ack => last.ack(BasicAckOptions { multiple: true }).await?,
            Settlement::Requeue => {
                last.nack(BasicNackOptions {
                    multiple: true,
                    requeue: true,
                })
                .await?
            }
        };
        if !sent {
            return Err(RuntimeError::ChannelGone);
        }
        for one in &mut held[start..end] {
            one.settled = true;
        }
        if settlement == Settlement::Requeue {
            requeued = requeued.saturating_add(u32::try_from(end - start).unwrap_or(u32::MAX));
        }
        unsynced += 1;
        if unsynced >= SETTLEMENTS_BETWEEN_SYNCS {
            wait_for_requeues(channel, queue, baseline.saturating_add(requeued)).await?;
            unsynced = 0;
        }
        start = end;
    }
    if unsynced > 0 && requeued > 0 {
        wait_for_requeues(channel, queue, baseline.saturating_add(requeued)).await?;
    }
    Ok(())
}

/// Waits until `queue` has at least `ready` ready messages, or [`SYNC_TIMEOUT`] passed
/// (someone else took messages meanwhile: going on risks only the order).
async fn wait_for_requeues(channel: &Channel, queue: &str, ready: u32) -> Result<(), RuntimeError> {
    let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
    loop {
        let now_ready = ready_count(channel, queue).await?;
        if now_ready >= ready {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                queue,
                expected = ready,
                ready = now_ready,
                "the broker has not shown the requeued dead letters yet; going on"
            );
            return Ok(());
        }
        tokio::time::sleep(SYNC_POLL).await;
    }
}

/// Stops `reader`, settles what is held (see [`settle_in_order`]) and closes the
/// channel. If anything fails, closing the channel makes the broker requeue whatever
/// is still unsettled: nothing is lost, though the order of those messages may change.
pub(super) async fn settle_and_close(
    channel: &Channel,
    queue: &str,
    reader: &Reader,
    held: &mut [Held],
) -> Result<(), RuntimeError> {
    let settled = match reader.cancel(channel).await {
        Ok(()) => settle_in_order(channel, queue, held).await,
        Err(error) => Err(error),
    };
    // Bounded: a close that gets no answer leaves the messages held until the connection
    // closes, and that gives them back too.
    let closed = tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, "done".into())).await;
    settled?;
    // A channel that already failed cannot be closed again; its messages are back.
    if let Ok(Err(error)) = closed
        && channel.status().connected()
    {
        return Err(error.into());
    }
    Ok(())
}

/// Reads up to `limit` dead letters of `worker`, oldest first, without removing them.
///
/// The messages are taken by a consumer with manual acks (and a prefetch of exactly the
/// number waiting), held unacked while they are read, then put back with `basic.nack`
/// (`requeue`), one by one, oldest first, so they stay in the queue in their order.
/// Nothing is lost on an error: the channel is closed, and the broker requeues whatever
/// it still held.
///
/// Every message waiting is read, even beyond `limit` (up to 65,535, the most a
/// prefetch allows): a quorum queue puts a requeued message behind those not taken, so
/// putting back only the first `limit` would move them to the end. A dead letter that
/// arrives during a read, or two reads at the same time, can still change the order.
///
/// Each read counts as a delivery of every message: on RabbitMQ 4.0 to 4.2, whose
/// quorum queues count requeues against a default delivery limit of 20, a dead-letter
/// queue without its own `x-delivery-limit` would drop a message read 20 times.
pub async fn browse(
    connection: &Connection,
    worker: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, RuntimeError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    read_then_requeue(connection, worker, |dead_letter| {
        dead_letter.position < limit
    })
    .await
}

/// The first dead letter of `worker` whose message id is `message_id`, read without
/// removing anything (as [`browse`] does).
pub async fn find(
    connection: &Connection,
    worker: &str,
    message_id: &str,
) -> Result<Option<DeadLetter>, RuntimeError> {
    let mut found = false;
    let read = read_then_requeue(connection, worker, |dead_letter| {
        let first_match = !found && dead_letter.message_id.as_deref() == Some(message_id);
        found |= first_match;
        first_match
    })
    .await?;
    Ok(read.into_iter().next())
}

/// Reads every message waiting in `worker`'s dead-letter queue, keeps those `keep`
/// picks, and puts them all back.
async fn read_then_requeue(
    connection: &Connection,
    worker: &str,
    mut keep: impl FnMut(&DeadLetter) -> bool,
) -> Result<Vec<DeadLetter>, RuntimeError> {
    let waiting = usize::try_from(count(connection, worker).await?).unwrap_or(usize::MAX);
    if waiting == 0 {
        return Ok(Vec::new());
    }
    let queue = dead_letter_queue_name(worker);
    let channel = connection.create_channel().await?;
    let mut reader = match Reader::open(&channel, &queue, waiting).await {
        Ok(reader) => reader,
        Err(error) => {
            close_channel(&channel, "done").await;
            return Err(error);
        }
    };
    let mut held = Vec::new();
    let mut kept = Vec::new();
    let taken = loop {
        match reader.next().await {
            Ok(Some((dead_letter, one))) => {
                held.push(one);
                if keep(&dead_letter) {
                    kept.push(dead_letter);
                }
            }
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        }
    };
    let settled = settle_and_close(&channel, &queue, &reader, &mut held).await;
    taken?;
    settled?;
    Ok(kept)
}

/// Deletes every dead letter waiting in `worker`'s dead-letter queue (not those a
/// reader holds right now) and returns how many there were.
pub async fn purge(connection: &Connection, worker: &str) -> Result<u32, RuntimeError> {
    let queue = dead_letter_queue_name(worker);
    let channel = connection.create_channel().await?;
    let purged = channel
        .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
        .await?;
    close_channel(&channel, "purged").await;
    Ok(purged)
}
