//! `warren top [--interval D] [--once [--json]] [--run-dir PATH]`: a live view of the
//! fleet, one row per worker, refreshed every interval.
//!
//! The workers are those `warren up` lists for Prometheus in the run folder's
//! `prometheus/targets*.json` ([`targets`]); several targets with one `worker` label are
//! instances of one worker, added up. Each refresh scrapes every target's `/metrics`
//! ([`scrape`]: a small HTTP/1.1 client), reads the Prometheus text format
//! ([`exposition`]) into totals ([`counts`]), and takes the difference from the last
//! scrape: messages processed per second and errors per second (the histogram
//! `messaging_process_duration_seconds`' count, all outcomes and outcome `error`), the
//! p99 processing time from the buckets' increase ([`quantile`], as Prometheus's
//! `histogram_quantile`; `-` when nothing was processed), and what is in flight now. A
//! target that does not answer is down, not an error. The work queue `warren.<worker>`
//! of each worker is read from the broker by a passive declare
//! (`warren_ops::queue_stats`): messages ready and consumers. [`state`] keeps what the
//! next difference needs and makes the rows; [`view`] lays them out (80 columns fit),
//! [`json`] writes them as JSON; [`sampler`] takes the figures, each side in a loop of its own;
//! [`terminal`] holds raw mode and the alternate screen and restores them on every way
//! out; [`run()`] ties them together.
//!
//! Keys: `q` or Ctrl-C quits. Exit codes: 0 on `q`, Ctrl-C, SIGTERM or SIGHUP, and after
//! `--once`; 2 when stdout is not a terminal without `--once`, or the terminal fails.

mod args;
mod counts;
mod exposition;
mod json;
mod quantile;
mod run;
mod sampler;
mod scrape;
mod state;
mod targets;
mod terminal;
mod view;

pub use args::TopArgs;
pub use run::run;
