//! warren's operator tooling: what people run against a fleet, as opposed to what runs
//! in it. The `warren` CLI uses it; no worker links it.
//!
//! - [`access`]: least privilege: the fleet's topology and one broker user per worker
//!   with permissions derived from its manifest, planned purely, diffed against and
//!   applied to the broker (`rabbitmqctl`), for `warren topology`.
//! - [`dead_letters`]: read a worker's dead-letter queue in order without losing
//!   anything, sum each message up, replay dead letters to where they came from (the
//!   copy confirmed before the original is removed), purge.
//! - [`local_broker`]: a RabbitMQ node of one's own on this machine, from the system's
//!   packages: start it on a chosen port with its data and logs in a chosen folder, wait
//!   until it serves, adopt one left running, stop it.
//! - [`queue_stats`]: how many messages wait in a queue and how many consumers it has,
//!   by passive declares on one connection that is opened again when lost.
//! - [`tap`]: watch what flows through the fleet's exchanges from a temporary queue of
//!   one's own, bounded on the broker and in this process, without taking anything from
//!   any worker.

pub mod access;
pub mod dead_letters;
pub mod local_broker;
pub mod queue_stats;
pub mod tap;
