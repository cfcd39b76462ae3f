//! The Prometheus alert rules (`config/prometheus/alerts.yml`) are valid and pass their
//! unit tests (`alerts.test.yml`), and the scrape configuration that loads them
//! (`prometheus.yml`) is valid: `promtool`, run as `.ci/run` runs it.
//!
//! promtool comes with Debian's `prometheus` package; without it these tests fail,
//! saying so, rather than pass without checking anything.

use std::path::PathBuf;

use warren_e2e::repository::{assert_promtool_succeeds, repository_root};

/// The folder of the Prometheus files.
fn prometheus_folder() -> PathBuf {
    repository_root().join("config").join("prometheus")
}

#[test]
fn the_alert_rules_are_valid() {
    assert_promtool_succeeds(&["check", "rules"], &prometheus_folder().join("alerts.yml"));
}

#[test]
fn the_alert_rules_pass_their_unit_tests() {
    assert_promtool_succeeds(
        &["test", "rules"],
        &prometheus_folder().join("alerts.test.yml"),
    );
}

#[test]
fn the_scrape_configuration_and_the_rules_it_loads_are_valid() {
    assert_promtool_succeeds(
        &["check", "config"],
        &prometheus_folder().join("prometheus.yml"),
    );
}
