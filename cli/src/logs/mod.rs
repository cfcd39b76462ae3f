//! `warren logs`: one search over the fleet's log files, merged in time order.
//!
//! Every worker that `warren up` runs writes JSON lines to
//! `<run folder>/logs/<worker>.<YYYY-MM-DD>.log`, one file per worker and day. This
//! command finds those files ([`files`]), reads each worker's days as one stream of
//! records, skipping and counting lines that are not records ([`source`], [`record`]),
//! keeps those that pass the filters ([`filter`]), merges the streams by timestamp
//! without holding more than one record per stream ([`merge`]), and prints each as a
//! human line with every control character escaped, or as its JSON ([`render`]).
//! `--follow` then polls the folder for appended lines and new files ([`follow`]).
//! [`run()`] ties them together, printing through [`print`](mod@print). No broker is
//! involved.

mod args;
mod files;
mod filter;
mod follow;
mod merge;
mod print;
mod record;
mod render;
mod run;
mod source;

pub use args::LogsArgs;
pub use run::run;
