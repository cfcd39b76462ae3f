//! The checkout the suite runs in: its root, its workers, and the tools that check its
//! configuration files.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The root of the checkout.
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The names of the workers: the folders under `workers/` that hold a crate, sorted.
///
/// # Panics
/// When `workers/` cannot be read.
pub fn worker_names() -> Vec<String> {
    let workers_directory = repository_root().join("workers");
    let entries = std::fs::read_dir(&workers_directory)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", workers_directory.display()));
    let mut worker_names = Vec::new();
    for entry in entries {
        let entry = entry.expect("read an entry of workers/");
        if entry.path().join("Cargo.toml").is_file() {
            worker_names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    worker_names.sort();
    worker_names
}

/// Runs `promtool <arguments> <file>` and fails the test, with promtool's output,
/// unless it succeeds. promtool comes with Debian's `prometheus` package (`.ci/run`
/// installs it).
///
/// # Panics
/// When promtool is missing or fails.
pub fn assert_promtool_succeeds(arguments: &[&str], file: &Path) {
    let command_line = format!("promtool {} {}", arguments.join(" "), file.display());
    let output = match Command::new("promtool").args(arguments).arg(file).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "`promtool` is not installed (not found on PATH), so `{command_line}` cannot run. \
             Install it: it comes with Debian's `prometheus` package \
             (`apt-get install --no-install-recommends prometheus`; .ci/run does this)."
        ),
        Err(error) => panic!("cannot run `{command_line}`: {error}"),
    };
    assert!(
        output.status.success(),
        "`{command_line}` failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
