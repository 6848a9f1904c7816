//! Liveness and readiness.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::json;

use super::{AppState, Current};

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Every source answers a trivial query and, with `[server] ready_max_feed_lag`, no change
/// feed is further behind the database than that; 503 naming what is not ready.
pub async fn readyz(state: Current) -> HttpResponse {
    let answer = probe(&state).await;
    let (ready, sources, feeds) = &*answer;
    let status = if *ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "status": if *ready { "ready" } else { "unavailable" },
        "sources": sources,
    });
    if let Some(feeds) = feeds {
        body["feeds"] = json!(feeds);
    }
    HttpResponse::build(status).json(body)
}

/// The readiness answer: the last one when it is younger than `READINESS_TTL`, otherwise a
/// fresh round of pings shared by every concurrent caller.
pub async fn probe(state: &AppState) -> std::sync::Arc<Answer> {
    state
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
            let feeds = state.readiness.max_feed_lag.map(|bound| {
                let (feeds, behind) = feed_lags(&state.feeds, bound);
                ready &= !behind;
                feeds
            });
            std::sync::Arc::new((ready, sources, feeds))
        })
        .await
}

/// Each polled feed's lag and whether it is within `bound`; true when one is not.
fn feed_lags(
    feeds: &[std::sync::Arc<crate::changes::Feed>],
    bound: std::time::Duration,
) -> (serde_json::Map<String, serde_json::Value>, bool) {
    let now = crate::changes::now_ms();
    let mut answer = serde_json::Map::new();
    let mut any_behind = false;
    for feed in feeds {
        let Some(lag_ms) = feed.lag_ms(now) else {
            continue;
        };
        let behind = u128::try_from(lag_ms).unwrap_or(0) > bound.as_millis();
        if behind {
            tracing::warn!(feed = %feed.name, lag_seconds = lag_ms / 1000, "change feed behind the database beyond ready_max_feed_lag");
        }
        any_behind |= behind;
        answer.insert(
            feed.name.clone(),
            json!({"status": if behind { "behind" } else { "ok" }, "lag_seconds": lag_ms / 1000}),
        );
    }
    (answer, any_behind)
}

/// The last readiness answer, kept for `READINESS_TTL`: probes, however many and whoever sends
/// them (the endpoint needs no token), ping each source at most once a second, and concurrent
/// probes share one round of pings.
pub struct Readiness {
    checked: moka::future::Cache<(), std::sync::Arc<Answer>>,
    /// `[server] ready_max_feed_lag`.
    max_feed_lag: Option<std::time::Duration>,
}

/// Whether everything is ready, each source's status, and each feed's (with a lag bound).
pub type Answer = (
    bool,
    serde_json::Map<String, serde_json::Value>,
    Option<serde_json::Map<String, serde_json::Value>>,
);

/// How long a readiness answer is reused.
const READINESS_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl Readiness {
    /// Readiness that also holds every feed to `max_feed_lag`, when given.
    pub fn new(max_feed_lag: Option<std::time::Duration>) -> Self {
        Self {
            checked: moka::future::Cache::builder()
                .max_capacity(1)
                .time_to_live(READINESS_TTL)
                .build(),
            max_feed_lag,
        }
    }
}
