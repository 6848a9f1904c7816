//! `GET /admin/overview`: what an operator watches, in one document (the console reads it):
//! each source's health, pool, queue, breaker and latency; the cache; each feed's lag and
//! failures; each subscription's deliveries; the versions and their dates. It names no
//! connection string, secret or token.

use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{json, Value as Json};

use super::problem::ApiError;
use super::{access, AppState, Current};
use crate::changes::render::rfc3339;
use crate::telemetry::change_metrics::FeedLabels;
use crate::telemetry::latency::{summarize, Latency};
use crate::telemetry::metrics::SourceLabels;

/// `GET /admin/overview` (admin scope).
pub async fn overview(req: HttpRequest, state: Current) -> Result<HttpResponse, ApiError> {
    access::admin(&req, &state).await?;
    let readiness = super::health::probe(&state).await;
    let (_, health, _) = &*readiness;
    let body = json!({
        "generated_at": rfc3339(crate::changes::now_ms()),
        "sources": sources(&state, health),
        "cache": cache(&state).await,
        "feeds": feeds(&state),
        "subscriptions": subscriptions(&state).await?,
        "versions": versions(&state),
    });
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(body))
}

fn sources(state: &AppState, health: &serde_json::Map<String, Json>) -> Vec<Json> {
    let meters = &state.metrics.sources;
    let mut names: Vec<&String> = state.sources.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let source = &state.sources[name];
            let labels = SourceLabels {
                source: name.clone(),
            };
            let gauge =
                |family: &Family<SourceLabels, Gauge>| family.get(&labels).map_or(0, |g| g.get());
            let counter =
                |family: &Family<SourceLabels, Counter>| family.get(&labels).map_or(0, |c| c.get());
            let latency = meters
                .query_seconds
                .get(&labels)
                .map(|h| summarize(&h))
                .unwrap_or(Latency {
                    count: 0,
                    mean_seconds: None,
                    p95_seconds: None,
                });
            let ms = |seconds: Option<f64>| seconds.map(|s| (s * 1e6).round() / 1e3);
            json!({
                "name": name,
                "dialect": source.dialect().name(),
                "health": health.get(name.as_str()).and_then(Json::as_str).unwrap_or("unknown"),
                "breaker": source.breaker_state().as_str(),
                "connections_in_use": gauge(&meters.in_use),
                "connections_max": gauge(&meters.connections_max),
                "waiting": gauge(&meters.waiting),
                "shed": counter(&meters.shed),
                "statements": counter(&meters.queries),
                "latency_mean_ms": ms(latency.mean_seconds),
                "latency_p95_ms": ms(latency.p95_seconds),
            })
        })
        .collect()
}

async fn cache(state: &AppState) -> Json {
    state.cache.refresh_gauges().await;
    let metrics = &state.metrics.cache;
    let (hits, misses) = (metrics.hits.get(), metrics.misses.get());
    let answered = hits + misses;
    json!({
        "hits": hits,
        "misses": misses,
        "hit_rate": (answered > 0).then(|| hits as f64 / answered as f64),
        "stale_served": metrics.stale_served.get(),
        "entries": metrics.entries.get(),
        "bytes": metrics.bytes.get(),
    })
}

fn feeds(state: &AppState) -> Vec<Json> {
    let now = crate::changes::now_ms();
    state
        .feeds
        .iter()
        .map(|feed| {
            let labels = FeedLabels {
                feed: feed.name.clone(),
            };
            let errors = state
                .metrics
                .changes
                .poll_errors
                .get(&labels)
                .map_or(0, |c| c.get());
            let polled = feed.polled_ms.load(Ordering::Relaxed);
            let resources: Vec<String> = feed
                .views
                .iter()
                .map(|v| format!("{}/{}", v.version, v.resource))
                .collect();
            json!({
                "name": feed.name,
                "resources": resources,
                "strategy": feed.strategy_name.as_str(),
                "lag_seconds": feed.lag_ms(now).map(|lag| lag / 1000),
                "last_poll_at": (polled > 0).then(|| rfc3339(polled)),
                "poll_errors": errors,
                "last_error": feed.last_failure().map(|f| json!({
                    "at": rfc3339(f.at_ms),
                    "kind": f.kind,
                })),
            })
        })
        .collect()
}

async fn subscriptions(state: &AppState) -> Result<Vec<Json>, ApiError> {
    let Some(hub) = &state.webhooks else {
        return Ok(Vec::new());
    };
    let (records, counts) = crate::state::off_thread(&hub.store, |s| {
        Ok((s.subscriptions()?, s.delivery_counts()?))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(records
        .iter()
        .map(|record| {
            let counted = counts
                .iter()
                .find(|c| c.subscription == record.name)
                .cloned()
                .unwrap_or_default();
            json!({
                "name": record.name,
                "version": record.version,
                "enabled": record.enabled,
                "disabled_reason": record.disabled_reason,
                "delivered": counted.delivered,
                "pending": counted.pending,
                "retrying": counted.retrying,
                "dead_letters": counted.dead,
            })
        })
        .collect())
}

fn versions(state: &AppState) -> Vec<Json> {
    state
        .catalog
        .versions
        .values()
        .map(|v| {
            json!({
                "name": v.name,
                "status": if v.deprecated.is_some() { "deprecated" } else { "current" },
                "deprecated": v.deprecated.map(|d| d.iso()),
                "sunset": v.sunset.map(|d| d.iso()),
            })
        })
        .collect()
}
