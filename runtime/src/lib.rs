//! warren's worker runtime: everything between RabbitMQ and a worker's handler.
//!
//! A worker author writes a [`Handler`] and a [`Manifest`] and calls [`worker_main`];
//! the runtime connects, declares the topology, consumes with manual acks and a
//! prefetch, decodes and validates, calls the handler, publishes its outputs with
//! publisher confirms, acks only after they are confirmed, replies to the originator,
//! dead-letters bad input with its reason, and shuts down gracefully. It knows no
//! business message. [`Originator`] is the other side: what sends requests and reads
//! their outcomes.

mod batched_writer;
mod connection;
mod decision;
mod error;
mod handler;
mod message;
mod originator;
mod publisher;
mod session;
mod worker;

pub mod auth;
pub mod config;
pub mod delivery;
pub mod headers;
pub mod metrics;
pub mod otel;
pub mod shutdown;
pub mod telemetry;
pub mod topology;

pub use auth::{Claims, Token};
pub use config::{AMQP_URL_VARIABLES, ConfigError, Overrides, Settings};
pub use connection::{
    CLOSE_TIMEOUT, SETUP_TIMEOUT, close_channel, close_connection, connect, reconnect_delays,
};
pub use delivery::ack_within;
pub use error::RuntimeError;
pub use handler::{
    Handler, HandlerError, Incoming, Manifest, MessageIdentity, Output, Outputs, Route,
};
pub use headers::dead_letter_header;
pub use originator::{
    CorrelationAndType, Originator, Outcome, OutcomePosition, OutcomeRecovery, RawOutcome,
    UNREADABLE_OUTCOME,
};
pub use publisher::{
    Delivered, PendingConfirm, Publisher, outcome_properties_of, properties_of,
    properties_with_token,
};
pub use worker::{run_worker, worker_main};
