//! Dead-letter queues: reading, replaying and purging `warren.<worker>.dlq`.
//!
//! A dead letter arrives in one of two ways:
//! - a worker publishes it (bad input, a permanent failure, retries used up), with the
//!   `x-warren-*` headers of [`warren_runtime::dead_letter_header`];
//! - the broker dead-letters it itself (the work queue's delivery limit, a rejection, an
//!   expiry), with its `x-death` table and the `x-first-death-*` headers.
//!
//! [`DeadLetter`] sums up either kind ([`letter`]). Nothing here removes a message it
//! was not asked to remove: reading ([`reader`]) takes messages with manual acks and puts
//! every one back, in order, when it is done (and closing the channel puts back whatever
//! an error left behind); replaying ([`replay`](mod@replay)) removes a message only once its copy is
//! confirmed.
//!
//! The dead-letter queues are quorum queues, whose requeueing shapes the code (all of
//! it seen on RabbitMQ 3.10): a requeued message does not go back where it was, so a
//! read takes every message and puts them all back in order; the messages of one
//! `multiple` nack go back in an order of their own, so they are nacked one by one; and
//! a channel with more than 32 unapplied settlements holds the rest back and drops them
//! if it closes first, so settling pauses every few commands until the broker has
//! applied them.

pub mod letter;
pub mod reader;
pub mod replay;

pub use letter::{DeadLetter, DeadLetterSource, display_value};
pub use reader::{browse, count, find, is_queue_missing, purge};
pub use replay::{NotReplayed, NotReplayedReason, ReplayReport, ReplaySelection, Replayed, replay};
pub use warren_runtime::headers::{
    X_DEATH, X_DELIVERY_COUNT, is_dead_letter_header, strip_dead_letter_headers,
};
