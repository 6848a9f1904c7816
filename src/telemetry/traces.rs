//! Distributed traces: spans exported to an OpenTelemetry collector over OTLP/HTTP, when
//! `[telemetry] otlp_endpoint` is set. Off, no layer is installed and [`exported_span!`]
//! makes disabled spans, so the request path pays one relaxed load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Context;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether spans are exported (set once, when the exporting layer is installed).
static ON: AtomicBool = AtomicBool::new(false);

/// Notes that the exporting layer is installed: from now on spans are made.
pub(super) fn switch_on() {
    ON.store(true, Ordering::Relaxed);
}

/// Whether spans are exported in this process.
#[inline]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// An INFO span of Portico's, or a disabled one when traces are off (so that then nothing is
/// allocated and no field is formatted). Its fields may be recorded later either way.
macro_rules! exported_span {
    ($($arg:tt)*) => {
        if $crate::telemetry::traces::on() {
            ::tracing::info_span!($($arg)*)
        } else {
            ::tracing::Span::none()
        }
    };
}
pub(crate) use exported_span;

/// Why traces cannot be exported as configured.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The OTLP exporter could not be made (an endpoint it refuses, no HTTP client).
    #[error("cannot export traces to `{endpoint}`: {source}")]
    Exporter {
        /// `{otlp_endpoint}/v1/traces`.
        endpoint: String,
        /// What the exporter said.
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// The running exporter; [`Traces::shutdown`] sends what is still buffered.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Exports the spans still buffered and stops the exporter (at the end of `serve`).
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "cannot flush the last spans");
        }
    }
}

/// Where and how spans are exported (from `[telemetry]`).
#[derive(Debug, Clone)]
pub struct Export {
    /// Base URL of the OTLP/HTTP collector; `/v1/traces` is appended.
    pub endpoint: String,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Share of new traces recorded (parent-based).
    pub sample_ratio: f64,
    /// How long one export may take.
    pub timeout: Duration,
}

/// The exporting pieces (batch exporter, parent-based ratio sampler, resource); the caller
/// installs the layer made from [`Traces::layer`].
pub(super) fn exporter(export: &Export) -> Result<Traces, TraceError> {
    let endpoint = format!("{}/v1/traces", export.endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint.clone())
        .with_timeout(export.timeout)
        .build()
        .map_err(|source| TraceError::Exporter { endpoint, source })?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            export.sample_ratio,
        ))))
        .with_resource(
            Resource::builder_empty()
                .with_service_name(export.service_name.clone())
                .build(),
        )
        .build();
    Ok(Traces { provider })
}

impl Traces {
    /// The tracing layer that turns Portico's spans into OpenTelemetry spans.
    pub(super) fn layer<S>(
        &self,
    ) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("portico"))
            // Span attributes are exactly the fields Portico names, nothing about the code.
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_level(false)
            .with_tracked_inactivity(false)
    }
}

/// Makes `span` a child of the caller's trace when `traceparent` (with its `tracestate`)
/// names one; a missing or malformed header leaves it a new trace's root.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    use opentelemetry::trace::TraceContextExt as _;
    let Some(traceparent) = traceparent.filter(|_| on()) else {
        return;
    };
    let mut carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    if let Some(tracestate) = tracestate {
        carrier.insert("tracestate".into(), tracestate.into());
    }
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        // Fails only when the span is disabled or already started: nothing to follow then.
        let _ = span.set_parent(parent);
    }
}

/// The W3C `traceparent` (and `tracestate`) naming `span`, to send with an outgoing request;
/// empty when traces are off or the span is not recorded.
pub fn trace_headers(span: &tracing::Span) -> HashMap<String, String> {
    let mut headers = HashMap::new();
    if on() {
        let context: Context = span.context();
        TraceContextPropagator::new().inject_context(&context, &mut headers);
    }
    headers
}
