//! The Grafana dashboards (`config/grafana/dashboards/`) and the monitoring stack
//! `compose.yaml` provisions with them:
//!
//! - every dashboard is JSON with panels and a uid of its own;
//! - every metric a query of `warren.json` reads exists: one a worker exports, Prometheus's
//!   `up`, or one of the RabbitMQ plugin's per-queue metrics listed below, from a family
//!   both Prometheus configurations scrape; and every query is valid PromQL (promtool);
//! - compose's Prometheus (`config/prometheus/compose.yml`) is valid, scrapes every worker
//!   service on the port compose.yaml gives it, and RabbitMQ on the same path and
//!   families as `config/prometheus/prometheus.yml`; Grafana's provisioning reads the
//!   folder compose mounts the dashboards on, and its data source is compose's Prometheus.
//!
//! The worker metric names come from the source text of `runtime/src/metrics.rs` (its
//! `NAMES` and the constants they name), not from linking `warren-runtime`: the
//! end-to-end suite never links the runtime it tests (docs/ARCHITECTURE.md, "API
//! boundaries"). docs/observability.md's metrics table is checked against the same list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use warren_e2e::repository::{assert_promtool_succeeds, repository_root, worker_names};
use yaml_rust2::{Yaml, YamlLoader};

/// The folder of the dashboards Grafana loads.
const DASHBOARDS: &str = "config/grafana/dashboards";
/// warren's own dashboard.
const WARREN_DASHBOARD: &str = "config/grafana/dashboards/warren.json";
/// The Prometheus configuration for a fleet on this machine (`warren up`).
const LOCAL_PROMETHEUS: &str = "config/prometheus/prometheus.yml";
/// The Prometheus configuration of `docker compose up`.
const COMPOSE_PROMETHEUS: &str = "config/prometheus/compose.yml";
/// Grafana's dashboard provisioning under compose.
const DASHBOARD_PROVISIONING: &str = "config/grafana/provisioning/dashboards/warren.yml";
/// Grafana's data source provisioning under compose.
const DATASOURCE_PROVISIONING: &str = "config/grafana/provisioning/datasources/prometheus.yml";
/// The compose service `warren new` writes for a new worker.
const NEW_WORKER_SERVICE: &str = "cli/src/new/templates/compose.yaml.txt";

/// Prometheus's own series of every target: 1 when its last scrape succeeded, 0 when
/// not (<https://prometheus.io/docs/concepts/jobs_instances/>).
const PROMETHEUS_METRICS: [&str; 1] = ["up"];

/// The RabbitMQ metrics a dashboard query may read, each with the family of
/// `/metrics/detailed` that serves it, as the rabbitmq_prometheus plugin documents them:
/// rabbitmq-server's `deps/rabbitmq_prometheus/metrics-detailed.md` ("Queue coarse
/// metrics": group `queue_coarse_metrics`; "Per-queue consumer count": group
/// `queue_consumer_count`) and <https://www.rabbitmq.com/docs/prometheus>.
const RABBITMQ_DETAILED_METRICS: [(&str, &str); 4] = [
    (
        "rabbitmq_detailed_queue_messages_ready",
        "queue_coarse_metrics",
    ),
    (
        "rabbitmq_detailed_queue_messages_unacked",
        "queue_coarse_metrics",
    ),
    ("rabbitmq_detailed_queue_messages", "queue_coarse_metrics"),
    ("rabbitmq_detailed_queue_consumers", "queue_consumer_count"),
];

/// The text of the file at `relative` (to the repository's root).
fn read_text(relative: &str) -> String {
    let path = repository_root().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The one YAML document of the file at `relative`.
fn read_yaml(relative: &str) -> Yaml {
    let mut documents = YamlLoader::load_from_str(&read_text(relative))
        .unwrap_or_else(|error| panic!("{relative} is not valid YAML: {error}"));
    assert_eq!(documents.len(), 1, "{relative} holds one YAML document");
    documents.remove(0)
}

/// The JSON document of the file at `path`.
fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{} is not valid JSON: {error}", path.display()))
}

/// `warren.json`, parsed.
fn warren_dashboard() -> Value {
    read_json(&repository_root().join(WARREN_DASHBOARD))
}

// ---------------------------------------------------------------------------------------
// Dashboards: panels and their queries.

/// Every panel of `dashboard`, the panels of rows included (a collapsed row keeps its
/// panels in its own `panels`).
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    let mut pending: Vec<&Value> = dashboard["panels"]
        .as_array()
        .map(|top| top.iter().rev().collect())
        .unwrap_or_default();
    while let Some(panel) = pending.pop() {
        found.push(panel);
        if let Some(inner) = panel["panels"].as_array() {
            pending.extend(inner.iter().rev());
        }
    }
    found
}

/// A query of a dashboard: the title of its panel and its PromQL.
struct Query {
    panel: String,
    expr: String,
}

/// Every query (`targets[].expr`) of every panel of `dashboard`.
fn queries(dashboard: &Value) -> Vec<Query> {
    let mut found = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                found.push(Query {
                    panel: title.to_owned(),
                    expr: expr.to_owned(),
                });
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------
// A PromQL tokenizer that finds the metric names a query reads.

/// PromQL's words that are not metric names: aggregation operators (which may be
/// followed by `by (…)` rather than by their parenthesis), the operators and modifiers
/// written as words, and the numbers `Inf` and `NaN`. Compared without case, as PromQL
/// reads them.
const KEYWORDS: [&str; 28] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
];

/// The keywords followed by a list of label names in parentheses.
const LABEL_LIST_KEYWORDS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn is_identifier_start(character: char) -> bool {
    character.is_ascii_alphabetic() || character == '_' || character == ':'
}

fn is_identifier_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || character == '_' || character == ':'
}

/// The position after the string that opens at `start` (`"…"` and `'…'` with backslash
/// escapes, `` `…` `` raw).
fn skip_string(characters: &[char], start: usize) -> Result<usize, String> {
    let quote = characters[start];
    let mut at = start + 1;
    while at < characters.len() {
        match characters[at] {
            '\\' if quote != '`' => at += 2,
            character if character == quote => return Ok(at + 1),
            _ => at += 1,
        }
    }
    Err(format!(
        "the string opened at character {start} does not end"
    ))
}

/// The position after the `close` that ends the bracket opening at `start`, strings in
/// between skipped.
fn skip_bracket(characters: &[char], start: usize, close: char) -> Result<usize, String> {
    let mut at = start + 1;
    while at < characters.len() {
        match characters[at] {
            '"' | '\'' | '`' => at = skip_string(characters, at)?,
            character if character == close => return Ok(at + 1),
            _ => at += 1,
        }
    }
    Err(format!(
        "the `{}` at character {start} has no `{close}`",
        characters[start]
    ))
}

/// The position after the list of label names in parentheses opening at `start`
/// (`by (worker, le)`); an error for anything else in it, such as a nested parenthesis.
fn skip_label_list(characters: &[char], start: usize) -> Result<usize, String> {
    let mut at = start + 1;
    while at < characters.len() {
        match characters[at] {
            ')' => return Ok(at + 1),
            // Quoted label names (Prometheus 3) and names.
            '"' | '\'' => at = skip_string(characters, at)?,
            character
                if is_identifier_character(character)
                    || character == ','
                    || character.is_whitespace() =>
            {
                at += 1;
            }
            other => {
                return Err(format!(
                    "the label list at character {start} holds `{other}`, not only label names"
                ));
            }
        }
    }
    Err(format!("the label list at character {start} has no `)`"))
}

/// The position after the Grafana variable (`$name` or `${…}`) at `start`.
fn skip_variable(characters: &[char], start: usize) -> Result<usize, String> {
    if characters.get(start + 1) == Some(&'{') {
        return skip_bracket(characters, start + 1, '}');
    }
    let mut at = start + 1;
    while at < characters.len() && is_identifier_character(characters[at]) {
        at += 1;
    }
    Ok(at)
}

/// The first character at or after `at` that is not white space, with its position.
fn next_non_space(characters: &[char], mut at: usize) -> Option<(usize, char)> {
    while at < characters.len() {
        if !characters[at].is_whitespace() {
            return Some((at, characters[at]));
        }
        at += 1;
    }
    None
}

/// The metric names `expr` reads, in order: every identifier outside strings, label
/// matchers (`{…}`), ranges and subqueries (`[…]`), label lists (`by (…)`,
/// `on (…)`, `group_left (…)`, …), comments and Grafana variables (`$worker`,
/// `${worker}`, `$__rate_interval`) that is neither a keyword nor a function (a name
/// followed by `(`). Numbers and durations (`0.99`, `5m`, `1e-3`) are skipped. An error
/// for a string or bracket that does not end.
fn metric_names(expr: &str) -> Result<Vec<String>, String> {
    let characters: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut at = 0;
    while at < characters.len() {
        let character = characters[at];
        if matches!(character, '"' | '\'' | '`') {
            at = skip_string(&characters, at)?;
        } else if character == '{' {
            at = skip_bracket(&characters, at, '}')?;
        } else if character == '[' {
            at = skip_bracket(&characters, at, ']')?;
        } else if character == '#' {
            while at < characters.len() && characters[at] != '\n' {
                at += 1;
            }
        } else if character == '$' {
            at = skip_variable(&characters, at)?;
        } else if character.is_ascii_digit()
            || (character == '.' && characters.get(at + 1).is_some_and(char::is_ascii_digit))
        {
            while at < characters.len()
                && (characters[at].is_ascii_alphanumeric() || matches!(characters[at], '.' | '_'))
            {
                at += 1;
            }
        } else if is_identifier_start(character) {
            let start = at;
            while at < characters.len() && is_identifier_character(characters[at]) {
                at += 1;
            }
            let word: String = characters[start..at].iter().collect();
            let keyword = word.to_ascii_lowercase();
            let next = next_non_space(&characters, at);
            if LABEL_LIST_KEYWORDS.contains(&keyword.as_str()) {
                if let Some((open, '(')) = next {
                    at = skip_label_list(&characters, open)?;
                }
            } else if !KEYWORDS.contains(&keyword.as_str()) && !matches!(next, Some((_, '('))) {
                names.push(word);
            }
        } else {
            at += 1;
        }
    }
    Ok(names)
}

// ---------------------------------------------------------------------------------------
// What the workers export, and the check of a dashboard's metrics.

/// The metrics the worker runtime exports: its `NAMES`, and those of them that are
/// histograms (whose series are `<name>_bucket`, `<name>_count` and `<name>_sum`).
struct WorkerMetrics {
    names: BTreeSet<String>,
    histograms: BTreeSet<String>,
}

/// The value of the constant or string literal `item` of `source`'s Rust code.
fn string_value(item: &str, constants: &BTreeMap<String, String>) -> String {
    if let Some(literal) = item
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        return literal.to_owned();
    }
    constants.get(item).cloned().unwrap_or_else(|| {
        panic!("runtime/src/metrics.rs names `{item}`, which is no `pub const …: &str` there")
    })
}

/// [`WorkerMetrics`] read from the text of `runtime/src/metrics.rs`: the string
/// constants (`pub const PROCESS_DURATION: &str = "…";`), the list `pub const NAMES`, and
/// the metrics described with `describe_histogram!`.
fn worker_metrics_from_source(source: &str) -> WorkerMetrics {
    let mut constants = BTreeMap::new();
    for line in source.lines() {
        let Some(declaration) = line.trim().strip_prefix("pub const ") else {
            continue;
        };
        let Some((identifier, rest)) = declaration.split_once(": &str = \"") else {
            continue;
        };
        if let Some((value, _)) = rest.split_once('"') {
            constants.insert(identifier.to_owned(), value.to_owned());
        }
    }
    let list = source
        .find("pub const NAMES")
        .map(|start| &source[start..])
        .expect("runtime/src/metrics.rs has a `pub const NAMES` list");
    let open = list.find("= [").expect("NAMES is a list: `= [`") + "= [".len();
    let close = open
        + list[open..]
            .find("];")
            .expect("the NAMES list ends with `];`");
    let names = list[open..close]
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| string_value(item, &constants))
        .collect();
    let histograms = source
        .match_indices("describe_histogram!(")
        .map(|(start, macro_name)| {
            let identifier: String = source[start + macro_name.len()..]
                .trim_start()
                .chars()
                .take_while(|character| is_identifier_character(*character))
                .collect();
            string_value(&identifier, &constants)
        })
        .collect();
    WorkerMetrics { names, histograms }
}

/// What the workers export, from `runtime/src/metrics.rs`.
fn worker_metrics() -> WorkerMetrics {
    let metrics = worker_metrics_from_source(&read_text("runtime/src/metrics.rs"));
    assert!(
        !metrics.names.is_empty() && !metrics.histograms.is_empty(),
        "no metric names or no histogram found in runtime/src/metrics.rs"
    );
    metrics
}

/// The metric a series name belongs to: a histogram's `_bucket`, `_count` and `_sum`
/// series belong to the histogram; any other name is its own.
fn metric_family<'name>(name: &'name str, histograms: &BTreeSet<String>) -> &'name str {
    for suffix in ["_bucket", "_count", "_sum"] {
        if let Some(base) = name.strip_suffix(suffix)
            && histograms.contains(base)
        {
            return base;
        }
    }
    name
}

/// Whether a dashboard may read `name`: a worker metric (or a series of a worker
/// histogram), `up`, or a RabbitMQ metric of [`RABBITMQ_DETAILED_METRICS`].
fn is_known_metric(name: &str, workers: &WorkerMetrics) -> bool {
    PROMETHEUS_METRICS.contains(&name)
        || RABBITMQ_DETAILED_METRICS
            .iter()
            .any(|(metric, _)| *metric == name)
        || workers
            .names
            .contains(metric_family(name, &workers.histograms))
}

/// What is wrong with the metrics `dashboard`'s queries read, one line each: a query
/// the tokenizer cannot read, a query that reads no metric, a metric nobody exports.
fn metric_problems(dashboard: &Value, workers: &WorkerMetrics) -> Vec<String> {
    let mut problems = Vec::new();
    for query in queries(dashboard) {
        match metric_names(&query.expr) {
            Err(error) => problems.push(format!(
                "panel {:?}: cannot read `{}`: {error}",
                query.panel, query.expr
            )),
            Ok(names) if names.is_empty() => problems.push(format!(
                "panel {:?}: `{}` reads no metric",
                query.panel, query.expr
            )),
            Ok(names) => {
                for name in names {
                    if !is_known_metric(&name, workers) {
                        problems.push(format!(
                            "panel {:?}: `{name}` (in `{}`) is neither a worker metric \
                             (runtime/src/metrics.rs, NAMES), `up`, nor a RabbitMQ metric \
                             this test lists",
                            query.panel, query.expr
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// The metric families every query of `dashboard` reads (histogram series by their
/// histogram's name).
fn families_read(dashboard: &Value, workers: &WorkerMetrics) -> BTreeSet<String> {
    let mut families = BTreeSet::new();
    for query in queries(dashboard) {
        let names = metric_names(&query.expr)
            .unwrap_or_else(|error| panic!("cannot read `{}`: {error}", query.expr));
        for name in names {
            families.insert(metric_family(&name, &workers.histograms).to_owned());
        }
    }
    families
}

// ---------------------------------------------------------------------------------------
// Prometheus and compose configuration.

/// The scrape job `job_name` of the Prometheus configuration `configuration`.
fn scrape_job<'config>(configuration: &'config Yaml, job_name: &str) -> &'config Yaml {
    configuration["scrape_configs"]
        .as_vec()
        .into_iter()
        .flatten()
        .find(|job| job["job_name"].as_str() == Some(job_name))
        .unwrap_or_else(|| panic!("no scrape job `{job_name}`"))
}

/// The metrics path a scrape job reads (Prometheus's default is `/metrics`).
fn metrics_path(job: &Yaml) -> String {
    job["metrics_path"]
        .as_str()
        .unwrap_or("/metrics")
        .to_owned()
}

/// The `family` parameters a scrape job sends.
fn scraped_families(job: &Yaml) -> BTreeSet<String> {
    job["params"]["family"]
        .as_vec()
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_str)
        .map(str::to_owned)
        .collect()
}

/// The static targets of a scrape job, each with its `worker` label (if any).
fn static_targets(job: &Yaml) -> BTreeMap<String, Option<String>> {
    let mut targets = BTreeMap::new();
    for group in job["static_configs"].as_vec().into_iter().flatten() {
        let worker = group["labels"]["worker"].as_str().map(str::to_owned);
        for target in group["targets"].as_vec().into_iter().flatten() {
            if let Some(address) = target.as_str() {
                targets.insert(address.to_owned(), worker.clone());
            }
        }
    }
    targets
}

/// A variable of a compose service's `environment`, in either of compose's forms: a map
/// (`KEY: value`) or a list (`- KEY=value`).
fn environment_value(service: &Yaml, key: &str) -> Option<String> {
    let environment = &service["environment"];
    if let Some(value) = environment[key].as_str() {
        return Some(value.to_owned());
    }
    environment.as_vec()?.iter().find_map(|item| {
        let (name, value) = item.as_str()?.split_once('=')?;
        (name == key).then(|| value.to_owned())
    })
}

/// A compose service's bind mounts (short syntax `source:target[:mode]`), by source.
fn bind_mounts(service: &Yaml) -> BTreeMap<String, String> {
    service["volumes"]
        .as_vec()
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_str)
        .filter_map(|volume| {
            let mut parts = volume.split(':');
            let source = parts.next()?;
            let target = parts.next()?;
            source
                .starts_with('.')
                .then(|| (source.to_owned(), target.to_owned()))
        })
        .collect()
}

/// The port of a worker's `WARREN_METRICS__LISTEN` in compose, which must listen on all
/// addresses for Prometheus, in a container of its own, to reach it.
fn compose_metrics_port(service_name: &str, listen: Option<String>) -> String {
    let listen = listen.unwrap_or_else(|| {
        panic!("compose service `{service_name}` has no WARREN_METRICS__LISTEN: no /metrics")
    });
    let (host, port) = listen.rsplit_once(':').unwrap_or_else(|| {
        panic!("compose service `{service_name}`: WARREN_METRICS__LISTEN={listen} has no port")
    });
    assert_eq!(
        host, "0.0.0.0",
        "compose service `{service_name}` must serve /metrics on all addresses \
         (WARREN_METRICS__LISTEN=0.0.0.0:PORT), not {listen}: Prometheus runs in another container",
    );
    port.to_owned()
}

/// `expr` with Grafana's variables replaced by what Prometheus could read: the interval
/// variables (`$__rate_interval`, `$__interval`, `$__range`) by `5m`, any other (`$worker`,
/// `${worker}`, only ever inside a matcher's string) by `.+`.
fn with_grafana_variables_replaced(expr: &str) -> String {
    let characters: Vec<char> = expr.chars().collect();
    let mut replaced = String::new();
    let mut at = 0;
    while at < characters.len() {
        let starts_variable = characters[at] == '$'
            && characters
                .get(at + 1)
                .is_some_and(|next| *next == '{' || is_identifier_start(*next));
        if !starts_variable {
            replaced.push(characters[at]);
            at += 1;
            continue;
        }
        let end = skip_variable(&characters, at).unwrap_or(characters.len());
        let name: String = characters[at + 1..end]
            .iter()
            .filter(|character| !matches!(character, '{' | '}'))
            .collect();
        let name = name.split(':').next().unwrap_or_default();
        replaced.push_str(match name {
            "__rate_interval" | "__interval" | "__range" => "5m",
            _ => ".+",
        });
        at = end;
    }
    replaced
}

// ---------------------------------------------------------------------------------------
// The tokenizer and the checker, on expressions and dashboards of their own.

#[test]
fn the_tokenizer_finds_metric_names_and_nothing_else() {
    let cases: [(&str, &[&str]); 14] = [
        ("up", &["up"]),
        (r#"up{job="warren"} == 0"#, &["up"]),
        (
            r#"sum by (worker) (rate(warren_faults_total{worker=~"$worker"}[$__rate_interval]))"#,
            &["warren_faults_total"],
        ),
        (
            "sum(rate(requests_total[5m])) without (instance, le)",
            &["requests_total"],
        ),
        (
            "histogram_quantile(0.99, sum by (le, worker) (rate(latency_seconds_bucket[5m])))",
            &["latency_seconds_bucket"],
        ),
        (
            r#"a * on (instance) group_left (cluster, node) b{c="d"}"#,
            &["a", "b"],
        ),
        ("a / ignoring(code) group_right b", &["a", "b"]),
        (
            r#"label_replace(ready{queue=~"warren\\.(.*)"} > 0 and on (vhost, queue) consumers == 0, "worker", "$1", "queue", "warren\\.(.*)")"#,
            &["ready", "consumers"],
        ),
        ("a offset 5m > bool 1e-3 unless b @ start()", &["a", "b"]),
        (
            r#"count_values("version", build_info) or vector(0)"#,
            &["build_info"],
        ),
        ("rate(a[5m:30s]) > Inf or NaN", &["a"]),
        ("SUM BY (x) (a) / Count(b)", &["a", "b"]),
        (
            "# a comment: not_a_metric\nrecorded:rate5m",
            &["recorded:rate5m"],
        ),
        (
            r#"x{label="has } and { inside"} + ${other} + y"#,
            &["x", "y"],
        ),
    ];
    for (expr, expected) in cases {
        let expected: Vec<String> = expected.iter().map(|name| (*name).to_owned()).collect();
        assert_eq!(metric_names(expr), Ok(expected), "metric names of `{expr}`");
    }
}

#[test]
fn the_tokenizer_refuses_what_does_not_end() {
    for expr in [
        r#"up{job="warren}"#,
        "rate(x[5m)",
        r#"x{a="b""#,
        "'open",
        "sum by (worker (x)",
    ] {
        assert!(
            metric_names(expr).is_err(),
            "`{expr}` should not be readable: {:?}",
            metric_names(expr)
        );
    }
}

#[test]
fn worker_metrics_are_read_from_the_runtime_source() {
    let source = r#"
        /// A histogram.
        pub const DURATION: &str = "job_duration_seconds";
        pub const DONE: &str = "jobs_done_total";
        pub const NAMES: [&str; 3] = [
            DURATION,
            DONE,
            "literal_gauge",
        ];
        pub const NOT_A_NAME: [f64; 1] = [1.0];
        fn describe() {
            metrics::describe_histogram!(
                DURATION,
                metrics::Unit::Seconds,
                "Time."
            );
        }
    "#;
    let metrics = worker_metrics_from_source(source);
    assert_eq!(
        metrics.names,
        BTreeSet::from([
            "job_duration_seconds".to_owned(),
            "jobs_done_total".to_owned(),
            "literal_gauge".to_owned(),
        ])
    );
    assert_eq!(
        metrics.histograms,
        BTreeSet::from(["job_duration_seconds".to_owned()])
    );
}

#[test]
fn histogram_suffixes_belong_to_histograms_only() {
    let workers = worker_metrics();
    assert!(is_known_metric(
        "messaging_process_duration_seconds_bucket",
        &workers
    ));
    assert!(is_known_metric(
        "messaging_process_duration_seconds_count",
        &workers
    ));
    assert!(is_known_metric(
        "messaging_process_duration_seconds_sum",
        &workers
    ));
    // Counters and gauges have no such series.
    assert!(!is_known_metric("warren_faults_total_count", &workers));
    assert!(!is_known_metric("warren_build_info_sum", &workers));
    assert!(!is_known_metric(
        "messaging_process_duration_seconds_total",
        &workers
    ));
}

#[test]
fn the_checker_finds_a_misspelled_metric_in_a_collapsed_row() {
    let dashboard: Value = serde_json::from_str(
        r#"{
          "panels": [
            {"type": "timeseries", "title": "fine", "targets": [
              {"expr": "sum by (worker) (rate(messaging_process_duration_seconds_count{worker=~\"$worker\"}[$__rate_interval]))"},
              {"expr": "up{job=\"warren\"}"},
              {"expr": "rabbitmq_detailed_queue_consumers{queue=~\"warren\\\\.$worker\"}"}
            ]},
            {"type": "row", "title": "more", "collapsed": true, "panels": [
              {"type": "timeseries", "title": "misspelled", "targets": [
                {"expr": "sum(rate(warren_fault_total{worker=~\"$worker\"}[5m]))"}
              ]},
              {"type": "stat", "title": "no metric", "targets": [{"expr": "vector(1)"}]}
            ]}
          ]
        }"#,
    )
    .expect("the test's dashboard is JSON");
    let problems = metric_problems(&dashboard, &worker_metrics());
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].contains("\"misspelled\"") && problems[0].contains("`warren_fault_total`"),
        "{problems:#?}"
    );
    assert!(
        problems[1].contains("\"no metric\"") && problems[1].contains("reads no metric"),
        "{problems:#?}"
    );
}

#[test]
fn grafana_variables_are_replaced_for_promtool() {
    assert_eq!(
        with_grafana_variables_replaced(
            r#"rate(x{worker=~"$worker", queue=~"warren\\.${worker:regex}"}[$__rate_interval]) + label_replace(y, "a", "$1", "b", "(.*)")"#
        ),
        r#"rate(x{worker=~".+", queue=~"warren\\..+"}[5m]) + label_replace(y, "a", "$1", "b", "(.*)")"#
    );
}

// ---------------------------------------------------------------------------------------
// The dashboards.

#[test]
fn every_dashboard_is_json_with_panels_and_a_uid_of_its_own() {
    let folder = repository_root().join(DASHBOARDS);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", folder.display()))
        .map(|entry| {
            entry
                .expect("read an entry of the dashboards folder")
                .path()
        })
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .collect();
    files.sort();
    let file_names: Vec<String> = files
        .iter()
        .filter_map(|path| path.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    assert!(
        file_names.iter().any(|name| name == "warren.json"),
        "{DASHBOARDS} has no warren.json: {file_names:?}"
    );
    let mut uids = BTreeSet::new();
    for path in &files {
        let dashboard = read_json(path);
        let top_panels = dashboard["panels"]
            .as_array()
            .unwrap_or_else(|| panic!("{} has no `panels` list", path.display()));
        assert!(!top_panels.is_empty(), "{} has no panel", path.display());
        assert!(
            dashboard["title"]
                .as_str()
                .is_some_and(|title| !title.is_empty()),
            "{} has no title",
            path.display()
        );
        let uid = dashboard["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no uid", path.display()));
        assert!(
            uids.insert(uid.to_owned()),
            "{}: uid {uid} is another dashboard's too",
            path.display()
        );
    }
}

#[test]
fn the_warren_dashboard_reads_only_metrics_that_exist() {
    let dashboard = warren_dashboard();
    assert!(
        queries(&dashboard).len() >= 10,
        "warren.json has too few queries to be the fleet's dashboard"
    );
    let problems = metric_problems(&dashboard, &worker_metrics());
    assert!(
        problems.is_empty(),
        "{WARREN_DASHBOARD} reads metrics that do not exist:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_warren_dashboard_shows_the_fleet_per_worker() {
    let dashboard = warren_dashboard();
    assert!(
        dashboard["schemaVersion"]
            .as_u64()
            .is_some_and(|version| version >= 36),
        "warren.json needs schemaVersion 36 or later, not {}",
        dashboard["schemaVersion"]
    );
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("warren.json has template variables");
    let worker = variables
        .iter()
        .find(|variable| variable["name"] == "worker")
        .expect("warren.json has a `worker` variable");
    assert_eq!(worker["multi"], true, "several workers can be chosen");
    assert_eq!(worker["includeAll"], true, "all workers can be chosen");
    for query in queries(&dashboard) {
        assert!(
            query.expr.contains("$worker"),
            "panel {:?}: `{}` ignores the worker variable",
            query.panel,
            query.expr
        );
    }
    let read = families_read(&dashboard, &worker_metrics());
    for expected in [
        "messaging_process_duration_seconds",
        "warren_faults_total",
        "warren_messages_retried_total",
        "warren_messages_dead_lettered_total",
        "warren_messages_in_flight",
        "warren_reconnects_total",
        "warren_build_info",
        "up",
        "rabbitmq_detailed_queue_messages_ready",
        "rabbitmq_detailed_queue_consumers",
    ] {
        assert!(
            read.contains(expected),
            "no panel of warren.json reads {expected}"
        );
    }
}

#[test]
fn the_warren_dashboard_queries_are_valid_promql() {
    let mut rules = String::from("groups:\n  - name: warren-dashboard\n    rules:\n");
    for (number, query) in queries(&warren_dashboard()).iter().enumerate() {
        let expr = serde_json::to_string(&with_grafana_variables_replaced(&query.expr))
            .expect("a string serializes");
        rules.push_str(&format!(
            "      - record: dashboard:query_{number}\n        expr: {expr}\n"
        ));
    }
    let file = std::env::temp_dir().join(format!(
        "warren-dashboard-queries-{}.yml",
        std::process::id()
    ));
    std::fs::write(&file, rules).expect("write the queries as recording rules");
    assert_promtool_succeeds(&["check", "rules"], &file);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn the_metric_names_of_the_runtime_and_of_the_docs_agree() {
    let workers = worker_metrics();
    let docs = read_text("docs/observability.md");
    let section = docs
        .split("\n## ")
        .find(|section| section.starts_with("Metrics\n"))
        .expect("docs/observability.md has a `## Metrics` section");
    let mut documented = BTreeSet::new();
    let mut documented_histograms = BTreeSet::new();
    for row in section.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_owned();
        if cells[2].starts_with("histogram") {
            documented_histograms.insert(name.clone());
        }
        documented.insert(name);
    }
    assert_eq!(
        documented, workers.names,
        "docs/observability.md's metrics table and runtime/src/metrics.rs's NAMES differ"
    );
    assert_eq!(
        documented_histograms, workers.histograms,
        "docs/observability.md and runtime/src/metrics.rs disagree on the histograms"
    );
}

// ---------------------------------------------------------------------------------------
// Prometheus under compose.

#[test]
fn the_compose_scrape_configuration_and_the_rules_it_loads_are_valid() {
    assert_promtool_succeeds(
        &["check", "config"],
        &repository_root().join(COMPOSE_PROMETHEUS),
    );
}

#[test]
fn compose_prometheus_scrapes_rabbitmq_as_the_local_configuration_does() {
    let local = read_yaml(LOCAL_PROMETHEUS);
    let compose = read_yaml(COMPOSE_PROMETHEUS);
    let local_job = scrape_job(&local, "rabbitmq");
    let compose_job = scrape_job(&compose, "rabbitmq");
    assert_eq!(
        metrics_path(local_job),
        "/metrics/detailed",
        "{LOCAL_PROMETHEUS}: job rabbitmq reads the per-queue series of /metrics/detailed"
    );
    assert_eq!(
        metrics_path(compose_job),
        metrics_path(local_job),
        "{COMPOSE_PROMETHEUS} and {LOCAL_PROMETHEUS} read RabbitMQ on different paths"
    );
    assert_eq!(
        scraped_families(compose_job),
        scraped_families(local_job),
        "{COMPOSE_PROMETHEUS} and {LOCAL_PROMETHEUS} ask RabbitMQ for different families"
    );
}

#[test]
fn the_rabbitmq_metrics_the_dashboard_reads_are_scraped() {
    let read = families_read(&warren_dashboard(), &worker_metrics());
    for configuration_file in [LOCAL_PROMETHEUS, COMPOSE_PROMETHEUS] {
        let configuration = read_yaml(configuration_file);
        let families = scraped_families(scrape_job(&configuration, "rabbitmq"));
        for (metric, family) in RABBITMQ_DETAILED_METRICS {
            if read.contains(metric) {
                assert!(
                    families.contains(family),
                    "warren.json reads {metric}, of family {family}, which job rabbitmq of \
                     {configuration_file} does not ask for (it asks for {families:?})"
                );
            }
        }
    }
}

#[test]
fn compose_prometheus_scrapes_every_worker_service_on_its_metrics_port() {
    let compose = read_yaml("compose.yaml");
    let prometheus = read_yaml(COMPOSE_PROMETHEUS);
    let targets = static_targets(scrape_job(&prometheus, "warren"));
    let workers = worker_names();
    for worker in &workers {
        let service = &compose["services"][worker.as_str()];
        let port =
            compose_metrics_port(worker, environment_value(service, "WARREN_METRICS__LISTEN"));
        let target = format!("{worker}:{port}");
        assert_eq!(
            targets.get(&target),
            Some(&Some(worker.clone())),
            "job warren of {COMPOSE_PROMETHEUS} must scrape {target} with label \
             worker: {worker} (add `- targets: [\"{target}\"]` with `labels: {{worker: \
             {worker}}}`); it has {targets:?}"
        );
    }
    for (target, worker) in &targets {
        assert!(
            worker
                .as_ref()
                .is_some_and(|worker| workers.contains(worker)),
            "job warren of {COMPOSE_PROMETHEUS} scrapes {target} for {worker:?}, which is no \
             worker of workers/"
        );
    }
}

#[test]
fn a_new_workers_service_serves_metrics_as_the_others_do() {
    let template = read_text(NEW_WORKER_SERVICE).replace("{name}", "new-worker");
    let mut documents = YamlLoader::load_from_str(&format!("services:\n{template}"))
        .unwrap_or_else(|error| panic!("{NEW_WORKER_SERVICE} is not a YAML service: {error}"));
    let services = documents.remove(0);
    let compose = read_yaml("compose.yaml");
    let echo = environment_value(&compose["services"]["echo"], "WARREN_METRICS__LISTEN");
    let new_worker = environment_value(
        &services["services"]["new-worker"],
        "WARREN_METRICS__LISTEN",
    );
    // Listens on all addresses, with a port.
    let _ = compose_metrics_port("new-worker", new_worker.clone());
    assert_eq!(
        new_worker, echo,
        "`warren new` ({NEW_WORKER_SERVICE}) and compose.yaml give workers different \
         metrics addresses"
    );
}

// ---------------------------------------------------------------------------------------
// Grafana under compose.

#[test]
fn compose_grafana_loads_the_dashboards_from_compose_prometheus() {
    let compose = read_yaml("compose.yaml");
    let grafana = &compose["services"]["grafana"];
    assert!(
        grafana["image"]
            .as_str()
            .is_some_and(|image| image.starts_with("grafana/grafana")),
        "compose.yaml has no grafana service of image grafana/grafana"
    );
    let mounts = bind_mounts(grafana);
    assert_eq!(
        mounts
            .get("./config/grafana/provisioning")
            .map(String::as_str),
        Some("/etc/grafana/provisioning"),
        "compose must mount config/grafana/provisioning where Grafana reads it: {mounts:?}"
    );
    let dashboards_folder = mounts
        .get("./config/grafana/dashboards")
        .unwrap_or_else(|| panic!("compose does not mount config/grafana/dashboards: {mounts:?}"));
    let provisioning = read_yaml(DASHBOARD_PROVISIONING);
    let provider = &provisioning["providers"][0];
    assert_eq!(provider["type"].as_str(), Some("file"));
    assert_eq!(
        provider["options"]["path"].as_str(),
        Some(dashboards_folder.as_str()),
        "{DASHBOARD_PROVISIONING} must read the folder compose mounts the dashboards on"
    );

    let datasources = read_yaml(DATASOURCE_PROVISIONING);
    let datasource = &datasources["datasources"][0];
    assert_eq!(datasource["type"].as_str(), Some("prometheus"));
    assert_eq!(
        datasource["isDefault"].as_bool(),
        Some(true),
        "RabbitMQ-Overview's panels use the default data source"
    );
    let url = datasource["url"]
        .as_str()
        .expect("the data source has a url");
    let host = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("the data source url {url} is not http://HOST:PORT"));
    let prometheus = &compose["services"][host];
    let command: Vec<&str> = prometheus["command"]
        .as_vec()
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_str)
        .collect();
    let configuration_folder = bind_mounts(prometheus)
        .get("./config/prometheus")
        .cloned()
        .unwrap_or_else(|| panic!("compose service `{host}` does not mount config/prometheus"));
    let expected_flag = format!("--config.file={configuration_folder}/compose.yml");
    assert!(
        command.contains(&expected_flag.as_str()),
        "the data source's Prometheus (compose service `{host}`) must run {COMPOSE_PROMETHEUS} \
         ({expected_flag}); its command is {command:?}"
    );
}
