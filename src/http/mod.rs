//! The actix application: shared state, routes, middleware, and the server itself.

mod access;
mod admin;
mod changes;
mod docs;
mod health;
mod observe;
pub mod problem;
mod procedures;
mod resources;
mod subscriptions;
mod writes;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{middleware, web, App, HttpRequest, HttpResponse, HttpServer};

use crate::cache::ResponseCache;
use crate::catalog::Catalog;
use crate::config::ServerConfig;
use crate::source::Source;
use crate::telemetry::metrics::Metrics;
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
    /// Per-principal rate limit.
    pub limiter: Option<crate::auth::RateLimiter>,
    /// Scope of the admin endpoints; `None` (loopback only) without [auth].
    pub admin_scope: Option<String>,
    /// The OpenAPI document of each version, rendered once.
    pub documents: HashMap<String, crate::openapi::Rendered>,
    /// Portico's own durable state; opened when a resource takes creates (idempotency keys).
    pub state_store: Option<Arc<dyn crate::state::StateStore>>,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_retention: Duration,
    /// How long a client may take to send a request body.
    pub body_timeout: Duration,
    /// Watched tables.
    pub feeds: Vec<Arc<crate::changes::Feed>>,
    /// Webhook subscriptions and delivery; `None` without feeds.
    pub webhooks: Option<Arc<crate::webhooks::Webhooks>>,
    /// The last answer of `/readyz`, reused for a second.
    pub readiness: health::Readiness,
}

impl AppState {
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

/// Registers every route on an actix service config.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(read_only("/", versions))
        .service(read_only("/healthz", health::healthz))
        .service(read_only("/readyz", health::readyz))
        .service(read_only("/metrics", admin::metrics))
        .service(read_only("/openapi/{file}", openapi_document))
        .service(read_only("/docs", docs::redirect))
        .service(read_only("/docs/{file:.*}", docs::asset))
        .service(
            // A scope: other paths skip these patterns with one prefix comparison.
            web::scope("/admin")
                .service(
                    web::resource("/cache")
                        .route(web::delete().to(admin::purge_all))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/cache/{resource}")
                        .route(web::delete().to(admin::purge_resource))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/subscriptions")
                        .route(web::get().to(subscriptions::list))
                        .route(web::post().to(subscriptions::create))
                        .default_service(web::to(|| allow("GET, POST"))),
                )
                .service(
                    web::resource("/subscriptions/{name}")
                        .route(web::get().to(subscriptions::get))
                        .route(web::delete().to(subscriptions::delete))
                        .default_service(web::to(|| allow("GET, DELETE"))),
                )
                .service(
                    web::resource("/subscriptions/{name}/{action}")
                        .route(web::post().to(subscriptions::act))
                        .default_service(web::to(|| allow("POST"))),
                )
                .service(
                    web::resource(["/deliveries", "/dead-letters"])
                        .route(web::get().to(subscriptions::deliveries))
                        .default_service(web::to(|| allow("GET"))),
                )
                .service(
                    web::resource("/deliveries/{id}")
                        .route(web::get().to(subscriptions::delivery))
                        .default_service(web::to(|| allow("GET"))),
                )
                .service(
                    web::resource("/deliveries/{id}/resend")
                        .route(web::post().to(subscriptions::resend))
                        .default_service(web::to(|| allow("POST"))),
                )
                .default_service(web::to(not_found)),
        )
        // `/{version}/{resource}[/{key}[/{child}]]`, routed by shape in `resources::dispatch`.
        .default_service(web::to(resources::dispatch));
}

/// `GET /`: the versions, their status and where their documents are.
async fn versions(state: web::Data<AppState>) -> HttpResponse {
    let versions: Vec<serde_json::Value> = state
        .catalog
        .versions
        .values()
        .map(|v| {
            serde_json::json!({
                "name": v.name,
                "description": v.description,
                "status": if v.deprecated.is_some() { "deprecated" } else { "current" },
                "deprecated": v.deprecated.map(|d| d.iso()),
                "sunset": v.sunset.map(|d| d.iso()),
                "links": {
                    "self": format!("/{}", v.name),
                    "openapi": format!("/openapi/{}.json", v.name),
                },
            })
        })
        .collect();
    HttpResponse::Ok().json(serde_json::json!({ "versions": versions }))
}

/// `GET /openapi/{version}.json` (or `.yaml`).
async fn openapi_document(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let file = req.match_info().get("file").unwrap_or_default();
    let (version, yaml) = match file.strip_suffix(".json") {
        Some(version) => (version, false),
        None => (file.strip_suffix(".yaml").unwrap_or(file), true),
    };
    state
        .documents
        .get(version)
        .filter(|_| file.ends_with(".json") || file.ends_with(".yaml"))
        .map(|document| match yaml {
            false => HttpResponse::Ok()
                .content_type("application/json")
                .body(document.json.clone()),
            true => HttpResponse::Ok()
                .content_type("application/yaml")
                .body(document.yaml.clone()),
        })
        .ok_or_else(|| ApiError::NotFound(format!("no OpenAPI document at {}", req.path())))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    allow("DELETE").await
}

/// A path answered to GET and HEAD; any other method is a 405 naming them.
fn read_only<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(|| allow("GET, HEAD")))
}

async fn allow(methods: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(methods.into()))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "nothing is served at {}",
        req.path()
    )))
}

/// Binds `[server] listen` and runs the HTTP server over `state`; returns the running server
/// and the address it got.
pub fn serve(state: AppState, settings: &ServerConfig) -> std::io::Result<(Server, SocketAddr)> {
    let listener = TcpListener::bind(&settings.listen)?;
    let local = listener.local_addr()?;
    let docs = web::Data::new(docs::config(&state.catalog));
    let state = web::Data::new(state);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(docs.clone())
            .wrap(middleware::from_fn(observe::observe))
            .configure(routes)
    })
    .shutdown_timeout(settings.shutdown_timeout.as_secs());
    if let Some(workers) = settings.workers {
        server = server.workers(workers.max(1));
    }
    Ok((server.listen(listener)?.run(), local))
}
