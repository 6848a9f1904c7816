//! The actix application: shared state, routes, middleware, and the server itself.

mod access;
mod admin;
mod aggregates;
mod compress;
mod console;
mod cors;
mod docs;
mod expand;
mod export;
mod feed;
mod health;
mod live;
mod observe;
mod overview;
pub mod problem;
mod procedures;
mod render;
mod request;
mod resources;
mod routes;
mod subscriptions;
mod writes;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{middleware, web, App, HttpServer};

use crate::cache::ResponseCache;
use crate::catalog::Catalog;
use crate::config::ServerConfig;
use crate::source::Source;
use crate::telemetry::metrics::Metrics;
pub use health::Readiness;
pub use live::{Current, Live, Reload, ReloadError, Reloaded};
use problem::ApiError;

/// What every request handler shares.
pub struct AppState {
    /// The compiled API model.
    pub catalog: Arc<Catalog>,
    /// Sources by name.
    pub sources: HashMap<String, Arc<dyn Source>>,
    /// Rendered responses.
    pub cache: Arc<ResponseCache>,
    /// Every exported metric.
    pub metrics: Arc<Metrics>,
    /// Bearer token verification; `None` without [auth].
    pub verifier: Option<Arc<crate::auth::Verifier>>,
    /// Per-principal rate limit (shared across reloads: its counts survive them).
    pub limiter: Option<Arc<crate::auth::RateLimiter>>,
    /// Scope of the admin endpoints; `None` (loopback only) without [auth].
    pub admin_scope: Option<String>,
    /// The OpenAPI document of each version, rendered once.
    pub documents: HashMap<String, crate::openapi::Rendered>,
    /// Swagger UI's settings: the versions' documents it offers.
    pub docs: Arc<utoipa_swagger_ui::Config<'static>>,
    /// Portico's own durable state; opened when a resource takes creates (idempotency keys) or
    /// anything is delivered (feeds, subscriptions).
    pub state_store: Option<Arc<dyn crate::state::StateStore>>,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_retention: Duration,
    /// How long an `Idempotency-Key` claim in flight blocks the key.
    pub idempotency_lease: Duration,
    /// How long change events are kept (named when a pull-feed cursor has expired).
    pub event_retention: Duration,
    /// How long a client may take to send a request body.
    pub body_timeout: Duration,
    /// Watched tables.
    pub feeds: Vec<Arc<crate::changes::Feed>>,
    /// Webhook subscriptions and delivery; `None` without feeds and subscriptions.
    pub webhooks: Option<Arc<crate::webhooks::Webhooks>>,
    /// The last answer of `/readyz`, reused for a second.
    pub readiness: health::Readiness,
    /// The configuration generation in which each resource's answers last changed (a reload
    /// that dropped its cached answers); absent: unchanged since start. Part of every cache
    /// key, so a request still served by an earlier configuration never leaves its answer
    /// for the requests of a later one.
    pub cache_epochs: Arc<HashMap<String, u64>>,
}

impl AppState {
    /// Tells the other replicas sharing the state store (cached answers they hold went stale);
    /// nothing to do without a shared store.
    pub async fn tell_replicas(&self, notice: crate::state::Notice) {
        if let Some(store) = &self.state_store {
            crate::state::publish(store, notice).await;
        }
    }

    /// The source a resource reads from.
    pub fn source(
        &self,
        resource: &crate::catalog::Resource,
    ) -> Result<&Arc<dyn Source>, ApiError> {
        self.sources.get(&resource.source).ok_or_else(|| {
            ApiError::Internal(format!("source `{}` is not configured", resource.source))
        })
    }
}

/// Swagger UI's settings for `catalog`: each version's document.
pub fn docs_config(catalog: &Catalog) -> Arc<utoipa_swagger_ui::Config<'static>> {
    docs::config(catalog)
}

/// Binds `[server] listen` and runs the HTTP server over `state` (each request served from
/// the state current when it arrives); returns the running server and the address it got.
pub fn serve(state: Arc<Live>, settings: &ServerConfig) -> std::io::Result<(Server, SocketAddr)> {
    let listener = TcpListener::bind(&settings.listen)?;
    let local = listener.local_addr()?;
    let state = web::Data::from(state);
    let compression = web::Data::new(settings.compression.clone());
    let cross_origin = settings.cors.clone();
    let mut server = HttpServer::new(move || {
        // Outermost last: observe sees every answer, a preflight never reaches compression or
        // a handler, and CORS headers go on every answer, problem+json included.
        App::new()
            .app_data(state.clone())
            .app_data(compression.clone())
            .wrap(middleware::from_fn(compress::compress))
            .wrap(middleware::Condition::new(
                cross_origin.is_some(),
                cors::layer(cross_origin.as_ref()),
            ))
            .wrap(middleware::from_fn(cors::refusals))
            .wrap(middleware::from_fn(observe::observe))
            .configure(routes::register)
    })
    .shutdown_timeout(settings.shutdown_timeout.as_secs());
    if let Some(workers) = settings.workers {
        server = server.workers(workers.max(1));
    }
    Ok((server.listen(listener)?.run(), local))
}
