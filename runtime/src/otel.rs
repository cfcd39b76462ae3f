//! OpenTelemetry traces, exported over OTLP/HTTP (protobuf) when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and
//! not at all otherwise.
//!
//! Each message a worker handles is one span (kind consumer, named `process <type>`,
//! attributed per the OpenTelemetry messaging conventions), the child of the span that
//! sent the message: the envelope's `traceparent`/`tracestate` are read with
//! OpenTelemetry's `TraceContextPropagator`. The span's id is the hop's
//! ([`warren_messages::Attributes::hop_trace`] when nothing is exported), so what the
//! work sends carries it and the next hop's span is its child: one request through the
//! order pipeline is one trace, a span per hop.
//!
//! The SDK's environment conventions hold: `OTEL_SERVICE_NAME` (default: the worker's
//! binary name, `warren-orders`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` (and
//! `_ARG`), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_*`;
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn export off. Spans are
//! exported in batches from a thread of the SDK's own, through a bounded queue: a
//! collector that is slow or unreachable costs dropped spans, never a worker's time.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Duration;

use lapin::message::Delivery;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::{Key, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};
use warren_messages::{Attributes, TraceParent};

use crate::metrics::Outcome;

/// The exporter of this process, once [`init`] found an endpoint.
static EXPORT: OnceLock<Export> = OnceLock::new();

/// How long a stopping worker waits for its last spans to be sent.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

struct Export {
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

/// Stops the exporter when dropped, sending what is queued (bounded by a short
/// timeout).
#[must_use = "dropping the guard stops the span exporter"]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
    }
}

/// Whether the environment asks for spans to be exported.
fn export_wanted() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED")
        .is_ok_and(|value| value.trim().eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER")
            .is_ok_and(|value| value.trim().eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Starts exporting spans when the environment names an endpoint, with `binary` as
/// the service name unless the environment gives one. Call it before the async runtime
/// starts (the exporter's HTTP client is a blocking one, on the SDK's own thread).
pub fn init(binary: &str) -> Option<OtelGuard> {
    if !export_wanted() {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(error) => {
            tracing::warn!(%error, "cannot export traces; running without");
            return None;
        }
    };
    let detected = Resource::builder().build();
    let named_by_environment = detected
        .get(&Key::new("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    let resource = if named_by_environment {
        detected
    } else {
        Resource::builder()
            .with_service_name(binary.to_owned())
            .build()
    };
    let provider = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build();
    let export = Export {
        tracer: provider.tracer("warren-runtime"),
        propagator: TraceContextPropagator::new(),
    };
    if EXPORT.set(export).is_err() {
        // Started already (a second worker in one process): that exporter serves both.
        return None;
    }
    tracing::info!("exporting traces over OTLP/HTTP");
    Some(OtelGuard { provider })
}

/// The span of one message's work, when spans are exported.
pub(crate) struct HopSpan(Span);

/// The trace context of the work on `attributes`, whose own is `parent` (see the
/// module's doc), and its span when spans are exported. `message_type` is the
/// manifest's name for the type (a span name a sender cannot choose).
pub(crate) fn start_hop(
    attributes: &Attributes,
    parent: Option<TraceParent>,
    delivery: &Delivery,
    worker: &'static str,
    message_type: &'static str,
) -> (TraceParent, Option<HopSpan>) {
    let Some(export) = EXPORT.get() else {
        return (TraceParent::next_hop(parent), None);
    };
    let parent_context = export.propagator.extract(&Carrier(attributes));
    let span = export
        .tracer
        .span_builder(Cow::Owned(format!("process {message_type}")))
        .with_kind(SpanKind::Consumer)
        .with_attributes([
            KeyValue::new("messaging.system", "rabbitmq"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new(
                "messaging.destination.name",
                delivery.exchange.as_str().to_owned(),
            ),
            KeyValue::new(
                "messaging.rabbitmq.destination.routing_key",
                delivery.routing_key.as_str().to_owned(),
            ),
            KeyValue::new("messaging.message.id", attributes.id.clone()),
            KeyValue::new(
                "messaging.message.conversation_id",
                attributes.correlation_id().to_owned(),
            ),
            KeyValue::new(
                "messaging.message.body.size",
                i64::try_from(delivery.data.len()).unwrap_or(i64::MAX),
            ),
            KeyValue::new("warren.worker", worker),
            KeyValue::new("warren.message_type", message_type),
        ])
        .start_with_context(&export.tracer, &parent_context);
    let context = span.span_context();
    let hop = TraceParent {
        trace_id: u128::from_be_bytes(context.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(context.span_id().to_bytes()),
        flags: context.trace_flags().to_u8(),
    };
    // An invalid context (the SDK made none) falls back to warren's own ids.
    if hop.trace_id == 0 || hop.span_id == 0 {
        return (TraceParent::next_hop(parent), Some(HopSpan(span)));
    }
    (hop, Some(HopSpan(span)))
}

impl HopSpan {
    /// Ends the span with the message's outcome.
    pub(crate) fn end(mut self, outcome: Outcome) {
        self.0
            .set_attribute(KeyValue::new("warren.outcome", outcome.label()));
        if outcome == Outcome::Error {
            self.0
                .set_attribute(KeyValue::new("error.type", "rejected"));
            self.0.set_status(Status::error("dead-lettered or faulted"));
        }
        self.0.end();
    }
}

/// The envelope's trace attributes as the propagator reads them.
struct Carrier<'a>(&'a Attributes);

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.0.traceparent.as_deref(),
            "tracestate" => self.0.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::Context;
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };

    use super::*;

    /// The context a propagator reads from `attributes`.
    fn extracted(attributes: &Attributes) -> Context {
        TraceContextPropagator::new().extract(&Carrier(attributes))
    }

    /// warren's own `traceparent` is what OpenTelemetry's propagator reads and writes:
    /// the same ids, the same text.
    #[test]
    fn warren_trace_context_is_the_w3c_propagators() {
        let mut attributes = Attributes::request_of_type("dev.warren.echo.v1", None, "/t");
        attributes.tracestate = Some("vendor=abc".to_owned());
        let hop = attributes.hop_trace();
        let parent = attributes.trace_parent().expect("a request starts a trace");

        let context = extracted(&attributes);
        let span = context.span();
        let read = span.span_context();
        assert!(read.is_remote());
        assert_eq!(read.trace_id().to_bytes(), parent.trace_id.to_be_bytes());
        assert_eq!(read.span_id().to_bytes(), parent.span_id.to_be_bytes());
        assert_eq!(read.trace_state().header(), "vendor=abc");

        let child = SpanContext::new(
            TraceId::from_bytes(hop.trace_id.to_be_bytes()),
            SpanId::from_bytes(hop.span_id.to_be_bytes()),
            TraceFlags::new(hop.flags),
            false,
            TraceState::default(),
        );
        let mut written = HashMap::new();
        TraceContextPropagator::new().inject_context(
            &Context::new().with_remote_span_context(child),
            &mut written,
        );
        assert_eq!(written.get("traceparent"), Some(&hop.to_string()));
        assert_eq!(hop.trace_id, parent.trace_id, "one trace");
        assert_ne!(hop.span_id, parent.span_id, "a span of its own");
    }

    #[test]
    fn a_missing_or_bad_traceparent_gives_no_parent() {
        let mut attributes = Attributes::request_of_type("dev.warren.echo.v1", None, "/t");
        attributes.traceparent = Some("00-zz-1-01".to_owned());
        assert!(!extracted(&attributes).span().span_context().is_valid());
        attributes.traceparent = None;
        assert!(!extracted(&attributes).span().span_context().is_valid());
    }
}
