//! Liveness and readiness.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Every source answers a trivial query; 503 naming the ones that do not.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let answer = state
        .readiness
        .checked
        .get_with((), async {
            let mut sources = serde_json::Map::new();
            let mut ready = true;
            for (name, source) in &state.sources {
                let status = match source.ping().await {
                    Ok(()) => "ok",
                    Err(e) => {
                        tracing::warn!(source = %name, error = %e, "source not ready");
                        ready = false;
                        "unavailable"
                    }
                };
                sources.insert(name.clone(), json!(status));
            }
            std::sync::Arc::new((ready, sources))
        })
        .await;
    let (ready, sources) = &*answer;
    let status = if *ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(status).json(json!({
        "status": if *ready { "ready" } else { "unavailable" },
        "sources": sources,
    }))
}

/// The last readiness answer, kept for `READINESS_TTL`: probes, however many and whoever sends
/// them (the endpoint needs no token), ping each source at most once a second, and concurrent
/// probes share one round of pings.
pub struct Readiness {
    checked: moka::future::Cache<(), std::sync::Arc<Answer>>,
}

/// Whether every source answered, and each source's status.
type Answer = (bool, serde_json::Map<String, serde_json::Value>);

/// How long a readiness answer is reused.
const READINESS_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl Default for Readiness {
    fn default() -> Self {
        Self {
            checked: moka::future::Cache::builder()
                .max_capacity(1)
                .time_to_live(READINESS_TTL)
                .build(),
        }
    }
}
