//! The Prometheus alert rules (`config/prometheus/alerts.yml`) are valid and pass their
//! unit tests (`alerts.test.yml`), and the scrape configuration that loads them
//! (`prometheus.yml`) is valid: `promtool`, run as `.ci/run` runs it.
//!
//! promtool comes with Debian's `prometheus` package; without it these tests fail,
//! saying so, rather than pass without checking anything.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The folder of the Prometheus files.
fn prometheus_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("config")
        .join("prometheus")
}

/// Runs `promtool` with `arguments` on the file `file_name` of [`prometheus_folder`],
/// and fails the test, with promtool's output, unless it succeeds.
fn assert_promtool_succeeds(arguments: &[&str], file_name: &str) {
    let file = prometheus_folder().join(file_name);
    let command_line = format!("promtool {} {}", arguments.join(" "), file.display());
    let output = match Command::new("promtool").args(arguments).arg(&file).output() {
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

#[test]
fn the_alert_rules_are_valid() {
    assert_promtool_succeeds(&["check", "rules"], "alerts.yml");
}

#[test]
fn the_alert_rules_pass_their_unit_tests() {
    assert_promtool_succeeds(&["test", "rules"], "alerts.test.yml");
}

#[test]
fn the_scrape_configuration_and_the_rules_it_loads_are_valid() {
    assert_promtool_succeeds(&["check", "config"], "prometheus.yml");
}
