//! The whole round trip as users run it: an originator and a worker, each its own
//! process, warren's against a hand-written lapin RPC's, interleaved round by round in
//! one run.
//!
//! Sides (each round starts at the next one, going round):
//! - `raw`: `raw_rpc worker` + `raw_rpc originator`, the common hand-written pattern
//!   (exclusive reply queue, transient replies consumed without acks);
//! - `raw-durable`: the same with warren's reply durability (a named durable reply
//!   queue, persistent replies, every reply acked);
//! - `warren`: `warren up --only echo --prefetch 500` + `warren load --payload-bytes B
//!   --messages N --inflight W`.
//!
//! Every side: persistent requests into a durable quorum queue, publisher confirms on
//! every publish, prefetch 500, the same in-flight window and payload. For each side and
//! round it prints round trips/s, latency percentiles, and CPU per round trip of the
//! broker (its `beam.smp`, found as the process listening on the URL's port), the
//! worker and the originator, from `/proc/<pid>/stat`.
//!
//! With `WARREN_BENCH_BARE=1`, a `warren-bare` side runs the fleet with
//! `--no-observability` (no log files, no metrics): the price of observability. With
//! `WARREN_BENCH_DURABLE=1`, a `warren-durable` side runs `warren load
//! --durable-outcomes` (the broker keeps outcomes instead of the originator re-sending):
//! the price of that choice. The fleets then take turns, each started for its run and
//! stopped after it.
//!
//! More raw sides, each a `raw_rpc` pair with flags of its own, come from
//! `WARREN_BENCH_VARIANTS` (`name=flags;name=flags`, e.g. `topic=--exchange-kind topic`):
//! the way to price one of warren's wire choices at a time.
//!
//! Run, after building the fleet's binaries in the same profile:
//!
//! ```text
//! cargo build --release -p warren-cli -p warren-echo
//! cargo bench -p warren-bench --bench end_to_end -- [messages] [rounds] [in-flight]
//! ```
//!
//! (defaults 30000, 5, 250) against the broker at `WARREN_BENCH_URL` (default: vhost
//! `warren-bench` on the local broker; see `echo_vs_lapin` for creating it). The broker
//! process's CPU is read only when it runs on this machine and this user may read it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PREFETCH: &str = "500";
const PAYLOAD_BYTES: usize = 256;
/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, 100 a second on Linux.
const TICK_US: f64 = 10_000.0;

/// The folder holding this benchmark's binary's profile: `target/<profile>/`.
fn profile_dir() -> BenchResult<PathBuf> {
    let exe = std::env::current_exe()?;
    let deps = exe.parent().ok_or("the benchmark has no folder")?;
    Ok(if deps.ends_with("deps") {
        deps.parent().ok_or("no profile folder")?.to_path_buf()
    } else {
        deps.to_path_buf()
    })
}

fn fleet_binary(name: &str) -> BenchResult<PathBuf> {
    let path = profile_dir()?.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: run `cargo build --release -p warren-cli -p warren-echo` first",
            path.display()
        )
        .into())
    }
}

/// The fields of `/proc/<pid>/stat` after the command name (which is in parentheses and
/// may hold spaces): the state is `[0]`, the parent `[1]`, user and system CPU ticks
/// `[11]` and `[12]`.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// CPU ticks (user + system) of `pid` itself; `None` when they cannot be read.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            stat_fields(*child).and_then(|fields| fields.get(1)?.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

/// The process listening on TCP `port` on this machine (the broker), by the socket's
/// inode in `/proc/net/tcp{,6}` and the file descriptors under `/proc/*/fd`.
fn listener_pid(port: u16) -> Option<u32> {
    let listening = format!(":{port:04X}");
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    // State 0A is LISTEN.
                    let inode = fields.get(9)?;
                    (fields.get(1)?.ends_with(&listening) && *fields.get(3)? == "0A")
                        .then(|| format!("socket:[{inode}]"))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let entries = std::fs::read_dir("/proc").ok()?;
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.filter_map(Result::ok).any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|target| inodes.iter().any(|inode| target == Path::new(inode)))
                })
            })
        })
}

fn url_port(url: &str) -> u16 {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
    host.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(5672)
}

/// A long-running worker process, stopped with SIGTERM when dropped.
struct Worker {
    child: Child,
}

impl Worker {
    /// The CPU ticks of the worker and its children (`warren up`'s workers).
    fn ticks(&self) -> u64 {
        let pid = self.child.id();
        cpu_ticks(pid).unwrap_or(0)
            + children_of(pid)
                .into_iter()
                .filter_map(cpu_ticks)
                .sum::<u64>()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// What one originator run measured.
struct Measured {
    rate: f64,
    p50: f64,
    p99: f64,
    broker_us: Option<f64>,
    worker_us: f64,
    originator_us: f64,
}

/// A side's worker: running for the whole benchmark, or started for each run (two
/// `warren up`s would share the echo queue).
enum SideWorker {
    Running(Worker),
    PerRun(Box<dyn Fn() -> BenchResult<Worker>>),
}

/// A way to run the round trip: its worker, and how to start its originator.
struct Side {
    name: String,
    worker: SideWorker,
    originator: Box<dyn Fn(usize, usize) -> Command>,
}

impl Side {
    /// Runs the originator for `messages` round trips, `in_flight` at a time.
    fn run(&self, broker: Option<u32>, messages: usize, in_flight: usize) -> BenchResult<Measured> {
        let started;
        let worker = match &self.worker {
            SideWorker::Running(worker) => worker,
            SideWorker::PerRun(start) => {
                started = start()?;
                &started
            }
        };
        let broker_before = broker.and_then(cpu_ticks);
        let worker_before = worker.ticks();
        let mut child = (self.originator)(messages, in_flight)
            .stdout(Stdio::piped())
            .spawn()?;
        let mut output = String::new();
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines() {
                output.push_str(&line?);
            }
        }
        // Read its CPU while it is a zombie, then reap it.
        let pid = i32::try_from(child.id())?;
        waitid(
            Id::Pid(Pid::from_raw(pid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        )?;
        let originator_ticks = cpu_ticks(child.id()).unwrap_or(0);
        let status = child.wait()?;
        let worker_ticks = worker.ticks().saturating_sub(worker_before);
        let broker_ticks = broker_before
            .zip(broker.and_then(cpu_ticks))
            .map(|(before, after)| after.saturating_sub(before));
        if !status.success() {
            return Err(format!("{}'s originator failed: {status}", self.name).into());
        }
        let summary: serde_json::Value = serde_json::from_str(&output)
            .map_err(|error| format!("{}'s originator printed {output:?}: {error}", self.name))?;
        let completed = summary["outcomes"]["result"].as_u64().unwrap_or(0);
        if completed != messages as u64 {
            return Err(format!("{}: {completed} of {messages} round trips", self.name).into());
        }
        let per_round_trip = |ticks: u64| ticks as f64 * TICK_US / messages as f64;
        Ok(Measured {
            rate: summary["throughput_per_s"].as_f64().unwrap_or(0.0),
            p50: summary["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
            p99: summary["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
            broker_us: broker_ticks.map(per_round_trip),
            worker_us: per_round_trip(worker_ticks),
            originator_us: per_round_trip(originator_ticks),
        })
    }
}

/// Starts `raw_rpc worker` and waits for its `ready`.
fn raw_worker(url: &str, flags: &[String], queue: &str) -> BenchResult<Worker> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_raw_rpc"))
        .args(["worker", "--queue", queue])
        .args(flags)
        .args(["--prefetch", PREFETCH])
        .env("WARREN_BENCH_URL", url)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first)?;
    let worker = Worker { child };
    if first.trim() != "ready" {
        return Err(format!("raw_rpc worker did not start ({first:?})").into());
    }
    Ok(worker)
}

/// A `raw_rpc` worker and originator pair, both given `flags` (see `raw_rpc`'s options),
/// on a work queue of their own.
fn raw_side(url: &str, name: &str, flags: &[String]) -> BenchResult<Side> {
    let queue = format!("bench.rpc.{name}");
    let worker = raw_worker(url, flags, &queue)?;
    let url = url.to_owned();
    let flags = flags.to_vec();
    Ok(Side {
        name: name.to_owned(),
        worker: SideWorker::Running(worker),
        originator: Box::new(move |messages, in_flight| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_raw_rpc"));
            command
                .args(["originator", "--queue", &queue])
                .args(&flags)
                .args(["--messages", &messages.to_string()])
                .args(["--inflight", &in_flight.to_string()])
                .args(["--payload-bytes", &PAYLOAD_BYTES.to_string()])
                .args(["--prefetch", PREFETCH])
                .env("WARREN_BENCH_URL", &url);
            command
        }),
    })
}

/// `warren up --only echo` with `up_flags`, answering requests.
fn start_warren(url: &str, run_dir: &Path, up_flags: &[&str]) -> BenchResult<Worker> {
    let warren = fleet_binary("warren")?;
    fleet_binary("warren-echo")?;
    let bin_dir = profile_dir()?;
    std::fs::create_dir_all(run_dir)?;
    let log = std::fs::File::create(run_dir.join("up.log"))?;
    let child = Command::new(&warren)
        .args([
            "up",
            "--only",
            "echo",
            "--prefetch",
            PREFETCH,
            "--no-local-broker",
        ])
        .args(up_flags)
        .env("WARREN_AMQP_URL", url)
        .env("WARREN_RUN_DIR", run_dir)
        .env("WARREN_BIN_DIR", &bin_dir)
        .env("WARREN_LOG", "warn")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let worker = Worker { child };
    // The request waits in the work queue until echo consumes it; it is refused only
    // while echo has not declared its queue yet.
    let mut ready = false;
    for _ in 0..60 {
        let status = Command::new(&warren)
            .args(["request", "dev.warren.echo.v1", "{}", "--timeout", "30s"])
            .env("WARREN_AMQP_URL", url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if status.success() {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    if !ready {
        return Err(format!(
            "warren up did not answer an echo request; see {}",
            run_dir.join("up.log").display()
        )
        .into());
    }
    Ok(worker)
}

/// `warren up` (with `up_flags`) + `warren load`. With `per_run`, the fleet is started
/// for each run and stopped after it.
fn warren_side(
    url: &str,
    run_dir: &Path,
    name: &str,
    up_flags: &'static [&'static str],
    load_flags: &'static [&'static str],
    per_run: bool,
) -> BenchResult<Side> {
    let warren = fleet_binary("warren")?;
    let worker = if per_run {
        let (url, run_dir) = (url.to_owned(), run_dir.to_path_buf());
        SideWorker::PerRun(Box::new(move || start_warren(&url, &run_dir, up_flags)))
    } else {
        SideWorker::Running(start_warren(url, run_dir, up_flags)?)
    };
    let url = url.to_owned();
    Ok(Side {
        name: name.to_owned(),
        worker,
        originator: Box::new(move |messages, in_flight| {
            let mut command = Command::new(&warren);
            command
                .args([
                    "load",
                    "--json",
                    "--payload-bytes",
                    &PAYLOAD_BYTES.to_string(),
                ])
                .args(["--messages", &messages.to_string()])
                .args(["--inflight", &in_flight.to_string()])
                .args(load_flags)
                .env("WARREN_AMQP_URL", &url)
                .stderr(Stdio::null());
            command
        }),
    })
}

/// The raw variants of `WARREN_BENCH_VARIANTS`: `name=flags;name=flags`, each a
/// `raw_rpc` pair given those flags, e.g. `topic=--exchange-kind topic`.
fn variants() -> BenchResult<Vec<(String, String)>> {
    let Ok(text) = std::env::var("WARREN_BENCH_VARIANTS") else {
        return Ok(Vec::new());
    };
    text.split(';')
        .filter(|variant| !variant.trim().is_empty())
        .map(|variant| {
            let (name, flags) = variant
                .split_once('=')
                .ok_or_else(|| format!("variant {variant:?} is not name=flags"))?;
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(format!("variant name {name:?}: letters, digits and - only").into());
            }
            Ok((name.to_owned(), flags.to_owned()))
        })
        .collect()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => f64::NAN,
        even if even % 2 == 0 => (sorted[middle - 1] + sorted[middle]) / 2.0,
        _ => sorted[middle],
    }
}

fn run(messages: usize, rounds: usize, in_flight: usize) -> BenchResult<()> {
    let url = std::env::var("WARREN_BENCH_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/warren-bench".to_owned());
    let broker = listener_pid(url_port(&url));
    let run_dir = std::env::temp_dir().join(format!("warren-e2e-bench-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir)?;
    let words = |text: &str| {
        text.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // With a `warren-bare` side too (observability off), the two fleets take turns on
    // the echo queue: each starts for its run and stops after it.
    let bare = std::env::var_os("WARREN_BENCH_BARE").is_some();
    let durable = std::env::var_os("WARREN_BENCH_DURABLE").is_some();
    let per_run = bare || durable;
    let mut sides = vec![
        raw_side(&url, "raw", &words("--replies transient"))?,
        raw_side(&url, "raw-durable", &words("--replies durable"))?,
        warren_side(&url, &run_dir.join("warren"), "warren", &[], &[], per_run)?,
    ];
    if bare {
        sides.push(warren_side(
            &url,
            &run_dir.join("bare"),
            "warren-bare",
            &["--no-observability"],
            &[],
            true,
        )?);
    }
    if durable {
        sides.push(warren_side(
            &url,
            &run_dir.join("durable"),
            "warren-durable",
            &[],
            &["--durable-outcomes"],
            true,
        )?);
    }
    for variant in variants()? {
        sides.push(raw_side(&url, &variant.0, &words(&variant.1))?);
    }
    println!(
        "round trips, originator and worker in their own processes: {messages} a round, \
         {rounds} rounds, interleaved; prefetch {PREFETCH}, {in_flight} in flight, \
         {PAYLOAD_BYTES}-byte payload; broker pid {}",
        broker.map_or_else(|| "unknown".to_owned(), |pid| pid.to_string())
    );
    for side in &sides {
        side.run(broker, messages / 10 + 1, in_flight)?;
    }
    let mut measured: Vec<Vec<Measured>> = sides.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        // Each round starts at another side, so no side always runs right after the
        // same one (a fleet just stopped leaves the broker work to finish).
        let first = (round - 1) % sides.len();
        for index in (first..sides.len()).chain(0..first) {
            let side = &sides[index];
            let m = side.run(broker, messages, in_flight)?;
            println!(
                "round {round} {:<12} {:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  CPU µs per round \
                 trip: broker {:>6}  worker {:>5.1}  originator {:>5.1}",
                side.name,
                m.rate,
                m.p50,
                m.p99,
                m.broker_us
                    .map_or_else(|| "?".to_owned(), |us| format!("{us:.1}")),
                m.worker_us,
                m.originator_us,
            );
            measured[index].push(m);
        }
    }
    println!("medians (÷ raw: the median of each round's ratio to raw's rate):");
    let raw_broker = median(
        &measured[0]
            .iter()
            .map(|m| m.broker_us.unwrap_or(f64::NAN))
            .collect::<Vec<_>>(),
    );
    for (side, results) in sides.iter().zip(&measured) {
        let of = |field: &dyn Fn(&Measured) -> f64| {
            median(&results.iter().map(field).collect::<Vec<_>>())
        };
        let ratio: Vec<f64> = results
            .iter()
            .zip(&measured[0])
            .map(|(this, raw)| this.rate / raw.rate)
            .collect();
        let broker = of(&|m| m.broker_us.unwrap_or(f64::NAN));
        println!(
            "  {:<12} {:>8.0}/s  ÷ raw {:.3}  p50 {:>6.2} ms  p99 {:>6.2} ms  broker {:>6.1} µs \
             ({:+.1})  worker {:>5.1} µs  originator {:>5.1} µs",
            side.name,
            of(&|m| m.rate),
            median(&ratio),
            of(&|m| m.p50),
            of(&|m| m.p99),
            broker,
            broker - raw_broker,
            of(&|m| m.worker_us),
            of(&|m| m.originator_us),
        );
    }
    drop(sides);
    let _ = std::fs::remove_dir_all(&run_dir);
    Ok(())
}

fn main() -> std::process::ExitCode {
    let mut args = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"));
    let messages = args.next().and_then(|a| a.parse().ok()).unwrap_or(30_000);
    let rounds = args.next().and_then(|a| a.parse().ok()).unwrap_or(5).max(1);
    let in_flight = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(250)
        .max(1);
    match run(messages, rounds, in_flight) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("benchmark failed: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
