//! Operations endpoints: metrics and cache purges.

use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::problem::ApiError;
use super::{AppState, Current};

/// Prometheus scrape target.
pub async fn metrics(state: Current) -> HttpResponse {
    state.cache.refresh_gauges().await;
    refresh_change_gauges(&state).await;
    refresh_breaker_gauges(&state);
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render())
}

/// Each serving source's breaker state, from the breaker itself: a reload builds (and drops)
/// a breaker for every source, kept ones too, and a replaced source's breaker may still see
/// the statements of requests in flight; neither may speak for the breaker serving.
fn refresh_breaker_gauges(state: &AppState) {
    for (name, source) in &state.sources {
        let labels = crate::telemetry::metrics::SourceLabels {
            source: name.clone(),
        };
        state
            .metrics
            .sources
            .breaker_state
            .get_or_create(&labels)
            .set(source.breaker_state().level());
    }
}

/// How far behind each feed is, and dead letters waiting, as of now.
async fn refresh_change_gauges(state: &AppState) {
    let changes = &state.metrics.changes;
    let now = crate::changes::now_ms();
    for feed in &state.feeds {
        let polled = feed.polled_ms.load(std::sync::atomic::Ordering::Relaxed);
        let lag = if polled == 0 {
            -1
        } else {
            (now - polled) / 1000
        };
        let labels = crate::telemetry::change_metrics::FeedLabels {
            feed: feed.name.clone(),
        };
        changes.poll_lag.get_or_create(&labels).set(lag);
        // Only a feed that is polled is behind anything.
        if let Some(behind) = feed.lag_ms(now) {
            changes.feed_lag.get_or_create(&labels).set(behind / 1000);
        }
    }
    if let Some(hub) = &state.webhooks {
        if let Ok(dead) = crate::state::off_thread(&hub.store, |s| s.dead_letters()).await {
            changes.dead_letters.set(dead);
        }
    }
}

/// `DELETE /admin/cache`: drops every cached response.
pub async fn purge_all(req: HttpRequest, state: Current) -> Result<HttpResponse, ApiError> {
    super::access::admin(&req, &state).await?;
    state.cache.purge_all();
    state.tell_replicas(crate::state::Notice::PurgeAll).await;
    tracing::info!(target: "portico::audit", action = "cache.purge", scope = "all", "cache purged");
    Ok(HttpResponse::Ok().json(json!({ "purged": "all" })))
}

/// `DELETE /admin/cache/{resource}`: drops one resource's cached responses (every version).
pub async fn purge_resource(req: HttpRequest, state: Current) -> Result<HttpResponse, ApiError> {
    super::access::admin(&req, &state).await?;
    let resource = req
        .match_info()
        .get("resource")
        .unwrap_or_default()
        .to_string();
    let known = state
        .catalog
        .versions
        .values()
        .any(|v| v.resources.contains_key(&resource));
    if !known {
        return Err(ApiError::NotFound(format!(
            "no resource `{resource}` in any version"
        )));
    }
    state.cache.invalidate_resource(&resource);
    state
        .tell_replicas(crate::state::Notice::Invalidate(vec![resource.clone()]))
        .await;
    tracing::info!(target: "portico::audit", action = "cache.purge", scope = ?resource, "cache purged");
    Ok(HttpResponse::Ok().json(json!({ "purged": resource })))
}
