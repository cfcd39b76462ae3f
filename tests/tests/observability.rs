//! Observability end to end (docs/observability.md): one pipeline order is one trace
//! across the four workers' log files, parented hop to hop, found again by `warren logs
//! --trace`, and one trace of four spans at an OTLP/HTTP collector; each worker's
//! `/metrics` counts what it did, with a real histogram; no log line holds the broker
//! password; a collector that never answers slows no worker.

use std::path::Path;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;
use warren_e2e::metrics::{http_get, metrics_address, sample};
use warren_e2e::vhost::rabbitmqctl;
use warren_e2e::{StoreFolder, Vhost};

const PLACE: &str = "dev.warren.orders.place.v1";

/// The hops of one order, in the order the request passes them.
const HOPS: [(&str, &str); 4] = [
    ("orders", "dev.warren.orders.place.v1"),
    ("inventory", "dev.warren.inventory.reserve.v1"),
    ("payments", "dev.warren.payments.charge.v1"),
    ("shipping", "dev.warren.shipping.book.v1"),
];

/// How long the log lines and counts of one order may take to appear.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A broker user of one test with a password no other text holds, deleted when dropped.
struct BrokerUser {
    name: String,
    password: String,
}

impl BrokerUser {
    async fn create(vhost: &Vhost) -> BrokerUser {
        let name = format!("warren-test-{}", uuid::Uuid::new_v4().simple());
        let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_user", &name, &password]).await;
        let user = BrokerUser { name, password };
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            vhost.name(),
            &user.name,
            ".*",
            ".*",
            ".*",
        ])
        .await;
        user
    }

    /// `vhost`'s URL with this user's credentials.
    fn url(&self, vhost: &Vhost) -> String {
        let path = vhost
            .amqp_url()
            .rsplit_once('/')
            .map_or("", |(_, path)| path);
        format!(
            "amqp://{}:{}@127.0.0.1:5672/{path}",
            self.name, self.password
        )
    }
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "delete_user", &self.name])
            .output();
    }
}

/// Every JSON line of every log file in `folder`.
fn log_lines(folder: &Path) -> Vec<(String, Value)> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(folder).expect("log folder").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let parsed = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("{name}: not a JSON line ({error}): {line}"));
            lines.push((name.clone(), parsed));
        }
    }
    lines
}

/// The `handled` line of each hop of the trace `trace_id`, once all four are written.
async fn hop_lines(folder: &Path, trace_id: &str) -> Vec<Value> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let lines = log_lines(folder);
        let hops: Vec<Option<Value>> = HOPS
            .iter()
            .map(|(worker, message_type)| {
                lines
                    .iter()
                    .map(|(_, line)| line)
                    .find(|line| {
                        line["trace_id"] == trace_id
                            && line["worker"] == *worker
                            && line["message_type"] == *message_type
                            && line["message"] == "handled"
                    })
                    .cloned()
            })
            .collect();
        if hops.iter().all(Option::is_some) {
            return hops.into_iter().flatten().collect();
        }
        assert!(
            Instant::now() < deadline,
            "not every hop logged trace {trace_id}: {hops:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `@<path>` of the order example `name` (docs/examples), as `warren request` takes it.
fn order_example(name: &str) -> String {
    format!(
        "@{}/../docs/examples/{PLACE}/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Scrapes `address` until `ready` holds for its exposition, and returns that; fails
/// the test, saying it waited for `what`, after [`SETTLE_TIMEOUT`].
async fn scrape_until(address: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let (status, body) = http_get(address, "/metrics").await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{address}");
        if ready(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{address} never showed {what}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_order_is_one_trace_in_the_logs_and_counted_in_the_metrics() {
    let vhost = Vhost::create().await;
    let user = BrokerUser::create(&vhost).await;
    let url = user.url(&vhost);
    let store = StoreFolder::new();
    let logs = StoreFolder::new();
    let mut workers = Vec::new();
    for (name, _) in HOPS {
        let worker = vhost
            .worker(&format!("warren-{name}"))
            .env("WARREN_AMQP_URL", url.as_str())
            .env("WARREN_LOG__DIR", logs.path())
            // A filter above info keeps each message's identity on its lines all the
            // same (the session's info lines stay: they say when the worker is ready).
            .env(
                "WARREN_LOG",
                if name == "shipping" {
                    "warn,warren_runtime::session=info,warren_runtime::metrics=info"
                } else {
                    "info"
                },
            )
            .env("WARREN_METRICS__LISTEN", "127.0.0.1:0")
            .store(&store)
            .start()
            .await;
        workers.push((name, worker));
    }

    let output = vhost
        .warren_with_env(
            &["request", PLACE, &order_example("ok-one-apple")],
            &[("WARREN_AMQP_URL", url.as_str())],
        )
        .await;
    assert!(output.status.success(), "{}", output.stderr);
    let outcome: Value = serde_json::from_str(output.stdout.trim()).expect("one JSON outcome");
    assert_eq!(outcome["type"], "dev.warren.orders.completed.v1");
    let traceparent = outcome["traceparent"].as_str().expect("a traceparent");
    let trace_id = traceparent.split('-').nth(1).expect("a trace id");

    // Each hop's line is the child of the one before: the trace is parented hop to hop.
    let hops = hop_lines(logs.path(), trace_id).await;
    for pair in hops.windows(2) {
        assert_eq!(
            pair[1]["parent_span_id"], pair[0]["span_id"],
            "{} is not the child of {}",
            pair[1]["worker"], pair[0]["worker"]
        );
    }
    for hop in &hops {
        for field in ["message_id", "correlation_id", "span_id", "timestamp"] {
            assert!(hop[field].is_string(), "{field} missing: {hop}");
        }
        assert_eq!(hop["correlation_id"], hops[0]["message_id"]);
        assert_eq!(hop["outcome"], "ok");
    }

    // `warren logs --trace` finds the same lines, merged in time order.
    let found = vhost
        .warren(&[
            "logs",
            "--dir",
            &logs.path().to_string_lossy(),
            "--trace",
            trace_id,
            "--json",
        ])
        .await;
    assert!(found.status.success(), "{}", found.stderr);
    let found: Vec<Value> = found
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let times: Vec<&str> = found
        .iter()
        .map(|line| line["timestamp"].as_str().expect("timestamp"))
        .collect();
    assert!(times.is_sorted(), "not in time order: {times:?}");
    for (worker, message_type) in HOPS {
        assert!(
            found
                .iter()
                .any(|line| line["worker"] == worker && line["message_type"] == message_type),
            "warren logs --trace left out {worker}: {found:?}"
        );
    }
    assert!(found.iter().all(|line| line["trace_id"] == trace_id));

    // Each worker counted the one message of its hop, and the histogram has buckets.
    for (name, worker) in &workers {
        let message_type = HOPS
            .iter()
            .find(|(hop, _)| hop == name)
            .map(|(_, message_type)| *message_type)
            .expect("a hop");
        let address = metrics_address(worker);
        let labels = format!("worker=\"{name}\",message_type=\"{message_type}\"");
        let counted =
            format!("messaging_process_duration_seconds_count{{{labels},outcome=\"ok\"}}");
        let exposition = scrape_until(&address, &format!("{counted} 1"), |body| {
            sample(body, &counted) == Some(1.0)
        })
        .await;
        assert_eq!(
            sample(
                &exposition,
                &format!("warren_messages_consumed_total{{{labels}}}")
            ),
            Some(1.0),
            "{exposition}"
        );
        let buckets = exposition
            .lines()
            .filter(|line| {
                line.starts_with(&format!(
                    "messaging_process_duration_seconds_bucket{{{labels},outcome=\"ok\","
                ))
            })
            .count();
        assert_eq!(buckets, 15, "14 bounds and +Inf: {exposition}");
        assert_eq!(
            sample(
                &exposition,
                &format!(
                    "messaging_process_duration_seconds_bucket{{{labels},outcome=\"ok\",le=\"+Inf\"}}"
                )
            ),
            Some(1.0)
        );
        let (status, _) = http_get(&address, "/elsewhere").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
    }

    // A declined card is a refusal of the domain, not an error.
    let refused = vhost
        .warren_with_env(
            &[
                "request",
                PLACE,
                &order_example("fault-card_declined-test-card"),
            ],
            &[("WARREN_AMQP_URL", url.as_str())],
        )
        .await;
    assert_eq!(
        refused.status.code(),
        Some(1),
        "a fault: {}",
        refused.stdout
    );
    let (_, payments) = workers
        .iter()
        .find(|(name, _)| *name == "payments")
        .expect("payments");
    let charge = "worker=\"payments\",message_type=\"dev.warren.payments.charge.v1\"";
    let refusals =
        format!("messaging_process_duration_seconds_count{{{charge},outcome=\"refused\"}}");
    let errors = format!("messaging_process_duration_seconds_count{{{charge},outcome=\"error\"}}");
    let body = scrape_until(&metrics_address(payments), "a refusal", |body| {
        sample(body, &refusals) == Some(1.0)
    })
    .await;
    assert_eq!(sample(&body, &errors), Some(0.0), "{body}");

    // The password is in every worker's URL, and in no log line.
    let every_line = log_lines(logs.path());
    assert!(!every_line.is_empty());
    for (file, line) in &every_line {
        assert!(
            !line.to_string().contains(&user.password),
            "{file} holds the password: {line}"
        );
    }
    for (_, worker) in &workers {
        assert!(!worker.stderr().contains(&user.password));
    }
}

/// The spans an OTLP/HTTP collector of the test's own received, each with the
/// `service.name` of the process that sent it.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Span)>>>;

/// Starts a collector on a free port: it answers every `POST /v1/traces` with 200 and
/// keeps the spans. Returns its base URL and what it received.
async fn start_collector() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("an address");
    let received = Received::default();
    let keep = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_exports(stream, keep.clone()));
        }
    });
    (format!("http://{address}"), received)
}

/// Reads requests from one connection (kept alive) until it closes.
async fn serve_exports(mut stream: tokio::net::TcpStream, received: Received) {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 8192];
    loop {
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            }
        }
        let body: Vec<u8> = buffer.drain(..head_end + length).skip(head_end).collect();
        assert!(head.starts_with("post /v1/traces "), "{head}");
        assert!(
            head.contains("content-type: application/x-protobuf"),
            "{head}"
        );
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == "service.name")
                .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
                .map(|value| match value {
                    AnyValue::StringValue(name) => name.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            let mut received = received.lock().expect("lock");
            for scope in resource_spans.scope_spans {
                received.extend(scope.spans.into_iter().map(|span| (service.clone(), span)));
            }
        }
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if stream.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// A string attribute of `span`.
fn span_attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(
            |attribute| match attribute.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(text) => Some(text.clone()),
                AnyValue::IntValue(number) => Some(number.to_string()),
                _ => None,
            },
        )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// With an OTLP/HTTP collector at `OTEL_EXPORTER_OTLP_ENDPOINT`, one order is one
/// trace: a span from each of the four workers (their binary names as service names),
/// each the child of the one before, the first the child of the request's.
#[tokio::test(flavor = "multi_thread")]
async fn one_order_is_one_exported_trace_with_a_span_per_hop() {
    let (endpoint, received) = start_collector().await;
    let vhost = Vhost::create().await;
    let store = StoreFolder::new();
    let mut workers = Vec::new();
    for (name, _) in HOPS {
        let worker = vhost
            .worker(&format!("warren-{name}"))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .store(&store)
            .start()
            .await;
        workers.push(worker);
    }
    let output = vhost
        .warren(&["request", PLACE, &order_example("ok-one-apple")])
        .await;
    assert!(output.status.success(), "{}", output.stderr);
    let outcome: Value = serde_json::from_str(output.stdout.trim()).expect("one JSON outcome");
    let trace_id = outcome["trace_id"].as_str().expect("a trace id").to_owned();

    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let hops: Vec<Span> = loop {
        let spans = received.lock().expect("lock").clone();
        let found: Vec<Option<Span>> = HOPS
            .iter()
            .map(|(worker, message_type)| {
                spans
                    .iter()
                    .find(|(service, span)| {
                        *service == format!("warren-{worker}")
                            && hex(&span.trace_id) == trace_id
                            && span.name == format!("process {message_type}")
                    })
                    .map(|(_, span)| span.clone())
            })
            .collect();
        if found.iter().all(Option::is_some) {
            break found.into_iter().flatten().collect();
        }
        assert!(
            Instant::now() < deadline,
            "not every hop exported a span of trace {trace_id}: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for pair in hops.windows(2) {
        assert_eq!(
            hex(&pair[1].parent_span_id),
            hex(&pair[0].span_id),
            "{} is not the child of {}",
            pair[1].name,
            pair[0].name
        );
    }
    let first = &hops[0];
    assert_eq!(first.kind, 5, "consumer");
    assert_eq!(
        span_attribute(first, "messaging.system").as_deref(),
        Some("rabbitmq")
    );
    assert_eq!(
        span_attribute(first, "messaging.destination.name").as_deref(),
        Some("warren.commands")
    );
    assert_eq!(
        span_attribute(first, "messaging.message.conversation_id"),
        outcome["correlationid"].as_str().map(str::to_owned)
    );
    assert_eq!(
        span_attribute(first, "warren.outcome").as_deref(),
        Some("ok")
    );
    assert_eq!(
        first.parent_span_id.len(),
        8,
        "the request's span is its parent"
    );
}

/// A collector that accepts connections and never answers holds no worker up.
#[tokio::test(flavor = "multi_thread")]
async fn an_unanswering_collector_slows_no_worker() {
    // Bound, never accepted: every export waits for its timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let endpoint = format!("http://{}", silent.local_addr().expect("an address"));
    let vhost = Vhost::create().await;
    let _echo = vhost
        .worker("warren-echo")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())
        .env("OTEL_BSP_SCHEDULE_DELAY", "10")
        .env("OTEL_BSP_MAX_QUEUE_SIZE", "16")
        .start()
        .await;
    let output = vhost
        .warren(&[
            "request",
            "dev.warren.echo.v1",
            r#"{"n":1}"#,
            "--count",
            "200",
            "--timeout",
            "20s",
        ])
        .await;
    assert!(output.status.success(), "{}", output.stderr);
    assert_eq!(output.stdout.lines().count(), 200);
    drop(silent);
}

/// `/metrics` counts exactly what was sent: results, a fault, a dead letter.
#[tokio::test(flavor = "multi_thread")]
async fn the_counters_match_what_was_sent() {
    let vhost = Vhost::create().await;
    let echo = vhost
        .worker("warren-echo")
        .env("WARREN_METRICS__LISTEN", "127.0.0.1:0")
        .start()
        .await;
    let sent = vhost
        .warren(&[
            "request",
            "dev.warren.echo.v1",
            r#"{"n":1}"#,
            "--count",
            "25",
        ])
        .await;
    assert!(sent.status.success(), "{}", sent.stderr);
    let refused = vhost
        .warren(&["request", "dev.warren.echo.v1", "[1]"])
        .await;
    assert_eq!(
        refused.status.code(),
        Some(1),
        "a fault: {}",
        refused.stdout
    );

    let address = metrics_address(&echo);
    let echo_type = "worker=\"echo\",message_type=\"dev.warren.echo.v1\"";
    let expected = [
        (format!("warren_messages_consumed_total{{{echo_type}}}"), 26.0),
        ("warren_messages_acked_total{worker=\"echo\"}".to_owned(), 26.0),
        (
            format!("messaging_process_duration_seconds_count{{{echo_type},outcome=\"ok\"}}"),
            25.0,
        ),
        (
            format!("messaging_process_duration_seconds_count{{{echo_type},outcome=\"error\"}}"),
            1.0,
        ),
        (
            "warren_messages_published_total{worker=\"echo\",message_type=\"dev.warren.echo.replied.v1\"}"
                .to_owned(),
            25.0,
        ),
        (
            "warren_messages_published_total{worker=\"echo\",message_type=\"dev.warren.fault.v1\"}"
                .to_owned(),
            1.0,
        ),
        (
            "warren_faults_total{worker=\"echo\",code=\"invalid_payload\"}".to_owned(),
            1.0,
        ),
        ("warren_messages_in_flight{worker=\"echo\"}".to_owned(), 0.0),
    ];
    // The last ack is counted just after the outcome it follows is sent.
    let body = scrape_until(&address, &format!("{expected:?}"), |body| {
        expected
            .iter()
            .all(|(series, want)| sample(body, series) == Some(*want))
    })
    .await;
    let dead_letters: f64 = body
        .lines()
        .filter(|line| line.starts_with("warren_messages_dead_lettered_total{"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(dead_letters, 1.0, "{body}");
}
