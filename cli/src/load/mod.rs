//! `warren load`: send many requests in a chosen shape and measure what comes back.
//!
//! Every request is a real request envelope (its own id, which is also its correlation
//! id, the originator's reply queue, a deadline). The latency of a request runs from its
//! publish (or, in an open loop, from when it was due) to its outcome, and goes into an
//! HDR histogram; outcomes are counted as results, faults and timeouts, and per-second
//! buckets feed the `--plot` picture.
//!
//! Everything runs in one task, a `select!` over: the reply queue's outcomes, the
//! publishes in flight (a bounded `FuturesUnordered`, each a publish and its confirm),
//! the shape's pacing, and a housekeeping tick (timeouts, acks, progress). Nothing on the
//! per-message path takes a lock or crosses a channel; an outcome is read raw
//! (`warren_runtime::RawOutcome`: its correlation id and type from the AMQP properties
//! that warren's publishers mirror from the envelope), and outcomes are acked in batches
//! (`Originator::ack_up_to`, `multiple`).
//!
//! The parts: [`args`] (flags, request data), [`shape`] (when each request is due),
//! [`requests`] (envelopes, one publish), [`run_state`] (in flight, counts, acks),
//! [`timeline`] (per-second buckets), [`stats`] (histograms, rounding), [`event_loop`]
//! (the run), [`report`] (table and JSON), [`plot`] (SVG).

mod args;
mod event_loop;
mod plot;
mod report;
mod requests;
mod run_state;
mod shape;
mod stats;
mod timeline;

pub use args::LoadArgs;
pub use event_loop::run;
