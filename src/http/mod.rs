//! The actix application: shared state, routes, middleware, and the server itself.

mod access;
mod admin;
mod changes;
mod docs;
mod health;
mod observe;
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
use crate::config::{parse_duration, parse_size, Config, SourceKind};
use crate::source::mssql::MssqlSource;
use crate::source::odbc::{OdbcSettings, OdbcSource};
use crate::source::Source;
use crate::telemetry::metrics::Metrics;
use problem::ApiError;

/// What every request handler shares.
pub struct AppState {
    /// The compiled API model.
    pub catalog: Catalog,
    /// Sources by name.
    pub sources: HashMap<String, Arc<dyn Source>>,
    /// Rendered responses.
    pub cache: ResponseCache,
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
    /// Swagger UI's configuration.
    pub docs: Arc<utoipa_swagger_ui::Config<'static>>,
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

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration has problems.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {error}")]
    Bind {
        /// Address asked for.
        address: String,
        /// Why.
        error: std::io::Error,
    },
}

impl AppState {
    /// Compiles the catalog and creates every source (connections open on first use).
    pub fn from_config(config: &Config, file: &str) -> Result<Self, crate::config::ConfigError> {
        let metrics = Arc::new(Metrics::new());
        let mut problems = Vec::new();
        let mut catalog = crate::catalog::compile(config)
            .map_err(|found| problems.extend(found))
            .ok();
        let base = std::path::Path::new(file)
            .parent()
            .unwrap_or(std::path::Path::new("."));
        let read_file = |path: &str| std::fs::read(base.join(path));
        let verifier = config.auth.as_ref().and_then(|auth| {
            crate::auth::Verifier::from_config(auth, &read_file, metrics.auth.jwks_fetches.clone())
                .map_err(|found| problems.extend(found))
                .ok()
        });
        let development = config.auth.as_ref().is_some_and(|a| a.development);
        if development && !listens_on_loopback(&config.server.listen) {
            // Anyone can mint tokens for a development secret: such a config stays local.
            problems.push(crate::config::Problem {
                location: "auth.development".into(),
                message: format!(
                    "a development configuration only listens on loopback, not `{}`",
                    config.server.listen
                ),
            });
        }
        let limiter = config.rate_limit.as_ref().and_then(|rl| {
            if rl.requests_per_second.is_finite() && rl.requests_per_second > 0.0 && rl.burst >= 1 {
                Some(crate::auth::RateLimiter::new(
                    rl.requests_per_second,
                    rl.burst,
                ))
            } else {
                problems.push(crate::config::Problem {
                    location: "rate_limit".into(),
                    message: "`requests_per_second` must be above 0 and `burst` at least 1".into(),
                });
                None
            }
        });
        let idempotency_retention = parse_duration(&config.state.idempotency_retention)
            .map_err(|message| {
                problems.push(crate::config::Problem {
                    location: "state.idempotency_retention".into(),
                    message,
                })
            })
            .unwrap_or(Duration::from_secs(86_400));
        let body_timeout = parse_duration(&config.server.body_timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .unwrap_or_else(|| {
                problems.push(crate::config::Problem {
                    location: "server.body_timeout".into(),
                    message: format!(
                        "`{}` is not a duration above zero such as `10s`",
                        config.server.body_timeout
                    ),
                });
                Duration::ZERO
            });
        let takes_creates = catalog.as_ref().is_some_and(|c| {
            c.versions
                .values()
                .flat_map(|v| v.resources.values())
                .any(|r| {
                    r.writes
                        .as_ref()
                        .is_some_and(|w| w.allows(crate::config::WriteOp::Create))
                })
        });
        let feeds = catalog
            .as_ref()
            .map(|c| crate::changes::compile_feeds(config, c))
            .transpose()
            .unwrap_or_else(|found| {
                problems.extend(found);
                None
            })
            .unwrap_or_default()
            .into_iter()
            .map(Arc::new)
            .collect::<Vec<_>>();
        for view in feeds.iter().flat_map(|f| &f.views) {
            let resource = catalog
                .as_mut()
                .and_then(|c| c.versions.get_mut(&view.version))
                .and_then(|v| v.resources.get_mut(&view.resource));
            if let Some(resource) = resource {
                resource.changes = true;
            }
        }
        let state_store = if takes_creates || !feeds.is_empty() || !config.subscriptions.is_empty()
        {
            match crate::state::SqliteStore::open(&base.join(&config.state.path)) {
                Ok(store) => Some(Arc::new(store) as Arc<dyn crate::state::StateStore>),
                Err(e) => {
                    problems.push(crate::config::Problem {
                        location: "state.path".into(),
                        message: e.to_string(),
                    });
                    None
                }
            }
        } else {
            None
        };
        let webhooks = match (&state_store, &catalog) {
            (Some(store), Some(catalog))
                if !feeds.is_empty() || !config.subscriptions.is_empty() =>
            {
                webhooks(config, catalog, &feeds, store.clone(), &metrics)
                    .map_err(|found| problems.extend(found))
                    .ok()
            }
            _ => None,
        };
        let mut catalog = match catalog {
            Some(catalog) if problems.is_empty() => catalog,
            _ => {
                return Err(crate::config::ConfigError {
                    file: file.to_string(),
                    problems,
                })
            }
        };
        let sources = config
            .sources
            .iter()
            .map(|(name, sc)| {
                let duration = |text: &str| parse_duration(text).unwrap_or(Duration::from_secs(5));
                let source: Arc<dyn Source> = match sc.kind {
                    SourceKind::Odbc => Arc::new(OdbcSource::new(
                        OdbcSettings {
                            name: name.clone(),
                            connection_string: sc.connection_string.clone(),
                            dialect: sc.dialect_name().into(),
                            max_concurrency: sc.max_concurrency,
                            queue_timeout: duration(&sc.queue_timeout),
                            query_timeout: duration(&sc.query_timeout),
                            login_timeout: duration(&sc.login_timeout),
                            max_text_bytes: sc.max_text_bytes,
                        },
                        &metrics.sources,
                    )),
                    SourceKind::Mssql => {
                        let built = crate::source::mssql::settings::resolve(name, sc)
                            .map_err(|found| format!("{found:?}"))
                            .and_then(|settings| {
                                MssqlSource::new(settings, &metrics.sources)
                                    .map_err(|e| e.to_string())
                            });
                        match built {
                            Ok(source) => Arc::new(source),
                            Err(message) => {
                                return Err(crate::config::ConfigError {
                                    file: file.to_string(),
                                    problems: vec![crate::config::Problem {
                                        location: format!("sources.{name}"),
                                        message,
                                    }],
                                })
                            }
                        }
                    }
                };
                Ok((name.clone(), source))
            })
            .collect::<Result<_, _>>()?;
        complete_limits(&mut catalog, config);
        let max_bytes = parse_size(&config.cache.max_size).unwrap_or(64 << 20);
        let cache = ResponseCache::new(max_bytes, metrics.cache.clone());
        let documents = catalog
            .versions
            .values()
            .map(|v| {
                let admin_scope = config.auth.as_ref().map(|a| a.admin_scope.as_str());
                let document = crate::openapi::document(v, admin_scope);
                (v.name.clone(), crate::openapi::Rendered::new(&document))
            })
            .collect();
        let mut state = Self {
            documents,
            catalog,
            sources,
            cache,
            metrics,
            verifier: verifier.map(Arc::new),
            limiter,
            admin_scope: config.auth.as_ref().map(|a| a.admin_scope.clone()),
            docs: Arc::new(utoipa_swagger_ui::Config::new(Vec::<&str>::new())),
            state_store,
            idempotency_retention,
            body_timeout,
            feeds,
            webhooks,
            readiness: health::Readiness::default(),
        };
        state.docs = docs::config(&state);
        Ok(state)
    }
}

/// Reads each ODBC table's column widths, precisions, nullability and defaults from its
/// catalog (one connection per source, within its `login_timeout`), so writes and documents
/// know what the columns hold, and bounds text by what the source reads whole. A source that
/// cannot be reached now keeps the declared limits only (logged); declaring `column_type` and
/// `nullable` makes the document independent of the database being up at start.
fn complete_limits(catalog: &mut Catalog, config: &Config) {
    use crate::catalog::limits::{CatalogColumn, Limits};
    use crate::source::odbc::catalog::ColumnReader;
    let mut readers: HashMap<String, Option<ColumnReader>> = HashMap::new();
    let read = |source: &str, table: &str| -> Option<Vec<CatalogColumn>> {
        let settings = config.sources.get(source)?;
        if settings.kind != SourceKind::Odbc {
            return None;
        }
        let dialect: crate::source::Dialect = settings.dialect_name().into();
        let reader = readers.entry(source.to_string()).or_insert_with(|| {
            let timeout = parse_duration(&settings.login_timeout).unwrap_or(Duration::from_secs(5));
            ColumnReader::open(&settings.connection_string, dialect, timeout)
                .map_err(|e| tracing::warn!(source, error = %e, "cannot read the catalog; only declared column limits apply"))
                .ok()
        });
        match reader.as_ref()?.columns(table) {
            Ok(columns) => Some(
                columns
                    .iter()
                    .map(|c| CatalogColumn {
                        name: c.name.clone(),
                        limits: Limits::from_catalog(c, dialect),
                    })
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!(source, table, error = %e, "cannot read the table's catalog; only declared column limits apply");
                None
            }
        }
    };
    for gap in catalog.complete_limits(read) {
        match gap {
            crate::catalog::CatalogGap::Table { location, table } => {
                tracing::warn!(at = %location, %table, "the catalog lists no such table")
            }
            crate::catalog::CatalogGap::Column { location, column } => {
                tracing::warn!(at = %location, %column, "the table's catalog does not list this column")
            }
        }
    }
    for resource in catalog
        .versions
        .values_mut()
        .flat_map(|v| v.resources.values_mut())
    {
        let Some(settings) = config.sources.get(&resource.source) else {
            continue;
        };
        if settings.kind == SourceKind::Odbc {
            let bytes = u32::try_from(settings.max_text_bytes).unwrap_or(u32::MAX);
            for field in &mut resource.fields {
                field.limits.max_bytes = Some(bytes);
            }
        }
    }
}

/// The webhook side: settings checked, configured subscriptions stored and loaded.
fn webhooks(
    config: &Config,
    catalog: &Catalog,
    feeds: &[Arc<crate::changes::Feed>],
    store: Arc<dyn crate::state::StateStore>,
    metrics: &Metrics,
) -> Result<Arc<crate::webhooks::Webhooks>, Vec<crate::config::Problem>> {
    let hub = crate::webhooks::Webhooks::new(config, store, metrics.changes.clone())?;
    let problems = hub.check_config(config, catalog, feeds);
    if !problems.is_empty() {
        return Err(problems);
    }
    hub.sync_config(config).map_err(|e| {
        vec![crate::config::Problem {
            location: "subscriptions".into(),
            message: e.to_string(),
        }]
    })?;
    Ok(Arc::new(hub))
}

fn listens_on_loopback(listen: &str) -> bool {
    match listen.parse::<SocketAddr>() {
        Ok(address) => address.ip().is_loopback(),
        Err(_) => listen.starts_with("localhost:"),
    }
}

/// Registers every route on an actix service config.
pub fn routes(cfg: &mut web::ServiceConfig) {
    routes::register(cfg);
}

/// Binds the listen address and returns the running server and the address it got.
pub fn start(state: AppState, config: &Config) -> Result<(Server, SocketAddr), StartError> {
    let address = config.server.listen.clone();
    let listener = TcpListener::bind(&address).map_err(|error| StartError::Bind {
        address: address.clone(),
        error,
    })?;
    let local = listener.local_addr().map_err(|error| StartError::Bind {
        address: address.clone(),
        error,
    })?;
    let state = web::Data::new(state);
    crate::changes::poller::spawn_all(state.clone().into_inner());
    if let Some(verifier) = state.verifier.clone() {
        // Fetch the identity provider's keys at start rather than on the first request.
        tokio::spawn(async move { verifier.prefetch().await });
    }
    let shutdown =
        parse_duration(&config.server.shutdown_timeout).unwrap_or(Duration::from_secs(10));
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(middleware::from_fn(observe::observe))
            .configure(routes)
    })
    .shutdown_timeout(shutdown.as_secs());
    if let Some(workers) = config.server.workers {
        server = server.workers(workers.max(1));
    }
    let server = server
        .listen(listener)
        .map_err(|error| StartError::Bind { address, error })?
        .run();
    Ok((server, local))
}
