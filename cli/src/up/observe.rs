//! Where the fleet's logs and metrics go: every worker's log file in the run folder's
//! `logs/`, and a metrics port for each worker, listed for Prometheus's file-based
//! discovery in `prometheus/targets.json`.

use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use super::discovery::WorkerProgram;
use super::lock::RunFolder;

/// The variable a worker reads its log folder from (`log.dir`).
const LOG_DIR_VARIABLE: &str = "WARREN_LOG__DIR";
/// The variable a worker reads its metrics address from (`metrics.listen`).
const METRICS_LISTEN_VARIABLE: &str = "WARREN_METRICS__LISTEN";

/// The fleet's log folder: `<run folder>/logs`.
pub fn log_folder(run_folder: &RunFolder) -> PathBuf {
    run_folder.path().join("logs")
}

/// `path` as the user would write it: inside the run folder, from the run folder as
/// they gave it.
pub fn shown(run_folder: &RunFolder, path: &Path) -> PathBuf {
    path.strip_prefix(run_folder.path()).map_or_else(
        |_| path.to_path_buf(),
        |inside| run_folder.given().join(inside),
    )
}

/// Sends every worker's log to `folder`.
pub fn log_to(programs: &mut [WorkerProgram], folder: &Path) {
    for program in programs {
        program.environment.push((
            OsString::from(LOG_DIR_VARIABLE),
            folder.as_os_str().to_owned(),
        ));
    }
}

/// Turns log files and metrics endpoints off for every worker, whatever the
/// configuration says.
pub fn without_observability(programs: &mut [WorkerProgram]) {
    for program in programs {
        for variable in [LOG_DIR_VARIABLE, METRICS_LISTEN_VARIABLE] {
            program
                .environment
                .push((OsString::from(variable), OsString::new()));
        }
    }
}

/// A worker's metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsTarget {
    /// The worker's name.
    pub worker_name: String,
    /// Where it serves `/metrics`.
    pub address: SocketAddr,
}

/// Gives each worker a free port on 127.0.0.1 for its metrics. The ports are held
/// until all are chosen, so no two workers get the same one; a worker restarted later
/// keeps its port (its listener reuses the address).
pub fn assign_metrics_ports(programs: &mut [WorkerProgram]) -> io::Result<Vec<MetricsTarget>> {
    let listeners = programs
        .iter()
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<io::Result<Vec<_>>>()?;
    let mut targets = Vec::with_capacity(programs.len());
    for (program, listener) in programs.iter_mut().zip(&listeners) {
        let address = listener.local_addr()?;
        program.environment.push((
            OsString::from(METRICS_LISTEN_VARIABLE),
            OsString::from(address.to_string()),
        ));
        targets.push(MetricsTarget {
            worker_name: program.worker_name.clone(),
            address,
        });
    }
    Ok(targets)
}

/// The discovery file: `prometheus/targets.json` for the `warren up` holding the run
/// folder, `prometheus/targets-<pid>.json` for one running beside it (Prometheus reads
/// `targets*.json`).
pub fn targets_file(run_folder: &RunFolder, sole: bool) -> PathBuf {
    let name = if sole {
        "targets.json".to_owned()
    } else {
        format!("targets-{}.json", std::process::id())
    };
    run_folder.path().join("prometheus").join(name)
}

/// Writes `targets` to `path` in Prometheus's `file_sd` format, whole or not at all
/// (a temporary file renamed over it: Prometheus may read it at any moment).
pub fn write_targets(path: &Path, targets: &[MetricsTarget]) -> io::Result<()> {
    let groups: Vec<serde_json::Value> = targets
        .iter()
        .map(|target| {
            serde_json::json!({
                "targets": [target.address.to_string()],
                "labels": { "worker": target.worker_name },
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&groups).map_err(io::Error::other)?;
    text.push('\n');
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    let temporary = path.with_extension("json.new");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

/// Empties the discovery file when the fleet stops, so Prometheus stops scraping
/// workers that are gone on purpose (and no alert says they are down).
pub fn withdraw_targets(path: &Path) -> io::Result<()> {
    write_targets(path, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(name: &str) -> WorkerProgram {
        WorkerProgram {
            worker_name: name.to_owned(),
            binary_path: PathBuf::from(format!("/bin/warren-{name}")),
            arguments: Vec::new(),
            environment: Vec::new(),
            removed_environment: Vec::new(),
        }
    }

    fn variable<'p>(program: &'p WorkerProgram, name: &str) -> Option<&'p OsString> {
        program
            .environment
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    #[test]
    fn every_worker_gets_its_own_port_and_the_log_folder() {
        let mut programs = vec![program("echo"), program("tally"), program("orders")];
        let targets = assign_metrics_ports(&mut programs).expect("ports");
        log_to(&mut programs, Path::new("/run/w/logs"));
        let mut ports: Vec<u16> = targets.iter().map(|t| t.address.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 3, "{targets:?}");
        for (program, target) in programs.iter().zip(&targets) {
            assert_eq!(program.worker_name, target.worker_name);
            assert_eq!(
                variable(program, METRICS_LISTEN_VARIABLE),
                Some(&OsString::from(target.address.to_string()))
            );
            assert_eq!(
                variable(program, LOG_DIR_VARIABLE),
                Some(&OsString::from("/run/w/logs"))
            );
        }
    }

    #[test]
    fn targets_are_written_in_file_sd_form_and_withdrawn() {
        let folder = std::env::temp_dir().join(format!("warren-targets-{}", std::process::id()));
        let path = folder.join("prometheus").join("targets.json");
        let targets = [MetricsTarget {
            worker_name: "echo".to_owned(),
            address: "127.0.0.1:40001".parse().expect("address"),
        }];
        write_targets(&path, &targets).expect("written");
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
        assert_eq!(
            written,
            serde_json::json!([{"targets": ["127.0.0.1:40001"], "labels": {"worker": "echo"}}])
        );
        withdraw_targets(&path).expect("withdrawn");
        assert_eq!(std::fs::read_to_string(&path).expect("read").trim(), "[]");
        let _ = std::fs::remove_dir_all(folder);
    }
}
