//! Request ids, one structured log line and the HTTP metrics of every request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::field::Empty;
use tracing::Instrument;

use super::problem::ApiError;
use super::routes::{serves, Route};
use super::Current;
use crate::telemetry::metrics::{HttpLabels, RefusalLabels, RouteLabels};
use crate::telemetry::traces;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A new request id: a random per-process prefix and a counter, unique without a syscall.
fn next_request_id() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    format!("{prefix}-{:x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Tags the request with an id (the caller's, when it sent a sane one), logs its outcome,
/// counts it by route and status, and echoes the id in the response.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(next_request_id);
    let started = Instant::now();
    // The state this request is served from, whatever a reload swaps in meanwhile.
    let state = Current::pin(&req);
    let method = method_label(req.method());
    // The route table's label: computed without the router's regular expressions (asking
    // actix for the matched pattern would match the path again).
    let route = Route::of(
        req.match_info().as_str(),
        req.path(),
        |version, resource, segment| {
            state
                .as_ref()
                .is_some_and(|s| serves(&s.catalog, version, resource, segment))
        },
    )
    .label();
    // The raw path stays out of the span: exported, it would carry keys and filter values.
    let span = tracing::info_span!(
        "request",
        id = %id,
        method,
        route,
        otel.name = Empty,
        otel.kind = Empty,
        otel.status_code = Empty,
        http.request.method = Empty,
        http.route = Empty,
        http.response.status_code = Empty,
    );
    if traces::on() {
        span.record("otel.name", format!("{method} {route}"));
        span.record("otel.kind", "server");
        span.record("http.request.method", method);
        span.record("http.route", route);
        let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        traces::continue_trace(&span, header("traceparent"), header("tracestate"));
    }
    let mut response = next.call(req).instrument(span.clone()).await?;
    if traces::on() {
        let status = response.status();
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "error");
        }
    }
    let refusal = response
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .and_then(|e| {
            let reason = e.refusal()?;
            span.in_scope(|| {
                super::access::audit_refusal(response.request(), response.status().as_u16(), e)
            });
            Some(reason)
        });
    if let Some(state) = &state {
        if let Some(reason) = refusal {
            state
                .metrics
                .auth
                .refused
                .get_or_create(&RefusalLabels { reason })
                .inc();
        }
        state
            .metrics
            .http_seconds
            .get_or_create(&RouteLabels { route })
            .observe(started.elapsed().as_secs_f64());
        state
            .metrics
            .http_requests
            .get_or_create(&HttpLabels {
                route,
                method,
                status: response.status().as_u16(),
            })
            .inc();
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    if let Some(state) = &state {
        let first = response.request().path().split('/').find(|s| !s.is_empty());
        if let Some(version) = first.and_then(|v| state.catalog.versions.get(v)) {
            for (name, value) in &version.deprecation_headers {
                if let Ok(value) = HeaderValue::from_str(value) {
                    response
                        .headers_mut()
                        .insert(HeaderName::from_static(name), value);
                }
            }
        }
    }
    span.in_scope(|| {
        tracing::info!(
            path = %response.request().path(),
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "served"
        )
    });
    Ok(response)
}
