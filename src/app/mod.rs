//! The composition root: `build` makes every part of the service from the configuration and
//! writes nothing (so `portico check` and `portico openapi` can use it); `start` opens
//! Portico's state store, syncs the configured subscriptions and runs the HTTP server, the
//! change pollers, the webhook dispatcher and the identity provider's key prefetch.

pub mod capabilities;
mod catalog_limits;
mod reload;
mod start;
mod tasks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::auth::{RateLimiter, Verifier};
use crate::cache::ResponseCache;
use crate::catalog::Catalog;
use crate::changes::Feed;
use crate::config::{Config, ConfigError, Problem, SourceConfig, SourceKind, WriteOp};
use crate::source::breaker::BreakerSource;
use crate::source::capability::ProfiledSource;
use crate::source::mssql::MssqlSource;
use crate::source::odbc::{OdbcSettings, OdbcSource};
use crate::source::Source;
use crate::telemetry::metrics::Metrics;
use crate::webhooks::DeliverySettings;

pub use reload::{Origin, Proof, Prover, Reloader};
pub use start::{start, start_from, Background, Running, StartError};

/// Every part of the service, built and checked, before anything is written or served.
pub struct Services {
    /// The compiled API model.
    pub catalog: Catalog,
    /// Sources by name (connections open on first use).
    pub sources: HashMap<String, Arc<dyn Source>>,
    /// The ODBC sources (the same as in `sources`) with their drivers' capability profiles.
    pub profiled: HashMap<String, Arc<ProfiledSource>>,
    /// Rendered responses.
    pub cache: Arc<ResponseCache>,
    /// Every exported metric.
    pub metrics: Arc<Metrics>,
    /// Bearer token verification; `None` without `[auth]`.
    pub verifier: Option<Arc<Verifier>>,
    /// Per-principal rate limit.
    pub limiter: Option<RateLimiter>,
    /// The OpenAPI document of each version, rendered once.
    pub documents: HashMap<String, crate::openapi::Rendered>,
    /// Watched tables.
    pub feeds: Vec<Arc<Feed>>,
    /// How webhooks are delivered; `None` without feeds or subscriptions.
    pub delivery: Option<DeliverySettings>,
    /// Portico's own store, opened by `start`; `None` when nothing needs one (no creates, no
    /// feeds, no subscriptions).
    pub state: Option<StateLocation>,
}

/// Where Portico's own store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// A SQLite file: one process.
    Sqlite(PathBuf),
    /// A PostgreSQL database replicas share.
    Postgres {
        /// `postgres://…`.
        url: String,
        /// Connections in the pool.
        pool_size: usize,
    },
}

/// Builds and checks every part of the service, reporting every problem with its location.
/// Reads the sources' catalogs (column limits) and the key files `[auth]` names; writes
/// nothing and opens no state store.
pub fn build(config: &Config, file: &str) -> Result<Services, ConfigError> {
    build_after_draft(config, file, Vec::new(), Arc::new(Metrics::new()), None)
}

/// Reads the file at `path` and builds it: the values the file refuses (a duration such as
/// `soon`) are reported together with every other problem.
pub fn load(path: &Path) -> Result<(Config, Services), ConfigError> {
    load_listening_on(path, None)
}

/// `load`, listening on `listen` instead of `[server] listen` when given (`serve --listen`,
/// `PORTICO_LISTEN`); replaced before anything is checked, so the checks see the address
/// that will be bound.
pub fn load_listening_on(
    path: &Path,
    listen: Option<&str>,
) -> Result<(Config, Services), ConfigError> {
    load_counted(path, listen, Arc::new(Metrics::new()), None)
}

/// `load_listening_on`, its parts counted in `metrics` (a reload keeps the running registry).
fn load_counted(
    path: &Path,
    listen: Option<&str>,
    metrics: Arc<Metrics>,
    running: Option<&catalog_limits::Running>,
) -> Result<(Config, Services), ConfigError> {
    let mut draft = crate::config::load_draft(path)?;
    if let Some(listen) = listen {
        draft.config.server.listen = listen.to_string();
    }
    let file = path.display().to_string();
    let services = build_after_draft(&draft.config, &file, draft.problems, metrics, running)?;
    Ok((draft.config, services))
}

/// What `portico check` has to prove against the databases.
pub enum Inspection {
    /// The configuration builds: every part, ready to serve.
    Ready(Box<(Config, Services)>),
    /// The configuration has problems; what did build can still be proven.
    Broken {
        /// Every problem of the file, each with its location.
        problems: Vec<Problem>,
        /// The resources that compiled.
        catalog: Catalog,
        /// The sources that could be made.
        sources: HashMap<String, Arc<dyn Source>>,
        /// The file as read (`None` when it could not be read at all).
        config: Option<Box<Config>>,
    },
}

/// Reads and builds the file at `path` like `load`; when it has problems, also builds what
/// can be proven anyway (the resources that compiled, the sources that could be made), so
/// `check` reports configuration and database problems in one run.
pub fn inspect(path: &Path) -> Inspection {
    let draft = match crate::config::load_draft(path) {
        Ok(draft) => draft,
        Err(e) => {
            return Inspection::Broken {
                problems: e.problems,
                catalog: Catalog::default(),
                sources: HashMap::new(),
                config: None,
            }
        }
    };
    let file = path.display().to_string();
    match build_after_draft(
        &draft.config,
        &file,
        draft.problems,
        Arc::new(Metrics::new()),
        None,
    ) {
        Ok(services) => Inspection::Ready(Box::new((draft.config, services))),
        Err(e) => {
            let (catalog, _) = crate::catalog::compile_partial(&draft.config);
            let ((sources, _), _) = made_sources(&draft.config, Some(&catalog), &Metrics::new());
            Inspection::Broken {
                problems: e.problems,
                catalog,
                sources,
                config: Some(Box::new(draft.config)),
            }
        }
    }
}

/// Builds `config`, reporting the values its draft refused (`refused`) before every other
/// problem; the parts count in `metrics`.
fn build_after_draft(
    config: &Config,
    file: &str,
    refused: Vec<Problem>,
    metrics: Arc<Metrics>,
    running: Option<&catalog_limits::Running>,
) -> Result<Services, ConfigError> {
    let mut problems = crate::config::validate(config);
    let mut catalog = crate::catalog::compile(config)
        .map_err(|found| problems.extend(found))
        .ok();
    let base = Path::new(file).parent().unwrap_or(Path::new("."));
    let read_file = |path: &str| std::fs::read(base.join(path));
    let verifier = config.auth.as_ref().and_then(|auth| {
        Verifier::from_config(auth, &read_file, metrics.auth.jwks_fetches.clone())
            .map_err(|found| problems.extend(found))
            .ok()
    });
    let limiter = config
        .rate_limit
        .as_ref()
        .map(|rl| RateLimiter::new(rl.requests_per_second, rl.burst));
    let feeds = match &catalog {
        Some(catalog) => crate::changes::compile_feeds(config, catalog)
            .map_err(|found| problems.extend(found))
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let feeds: Vec<Arc<Feed>> = feeds.into_iter().map(Arc::new).collect();
    for view in feeds.iter().flat_map(|f| &f.views) {
        let resource = catalog
            .as_mut()
            .and_then(|c| c.versions.get_mut(&view.version))
            .and_then(|v| v.resources.get_mut(&view.resource));
        if let Some(resource) = resource {
            resource.changes = true;
        }
    }
    // `[webhooks]` is checked whether or not anything is delivered yet.
    let delivery = DeliverySettings::from_config(config)
        .map_err(|found| problems.extend(found))
        .ok();
    if let (Some(settings), Some(catalog)) = (&delivery, &catalog) {
        problems.extend(settings.check_config(config, catalog, &feeds));
    }
    let delivers = !feeds.is_empty() || !config.subscriptions.is_empty();
    let delivery = delivery.filter(|_| delivers);
    let sources =
        sources(config, catalog.as_ref(), &metrics).map_err(|found| problems.extend(found));
    if !refused.is_empty() {
        // A refused value stands in as zero: what the checks then say of it is no news.
        problems.retain(|p| !refused.iter().any(|r| r.location == p.location));
        problems.splice(0..0, refused);
    }
    let (Some(mut catalog), Ok((sources, profiled)), true) =
        (catalog, sources, problems.is_empty())
    else {
        return Err(ConfigError {
            file: file.to_string(),
            problems,
        });
    };
    catalog_limits::complete(&mut catalog, config, running);
    let takes_creates = catalog
        .versions
        .values()
        .flat_map(|v| v.resources.values())
        .any(|r| r.writes.as_ref().is_some_and(|w| w.allows(WriteOp::Create)));
    let state = (takes_creates || delivers).then(|| match &config.state.url {
        Some(url) => StateLocation::Postgres {
            url: url.clone(),
            pool_size: config.state.pool_size,
        },
        None => StateLocation::Sqlite(base.join(&config.state.path)),
    });
    let cache = Arc::new(ResponseCache::new(
        config.cache.max_size,
        metrics.cache.clone(),
        catalog
            .versions
            .values()
            .flat_map(|v| v.resources.values().map(|r| r.name.clone())),
    ));
    let admin_scope = config.auth.as_ref().map(|a| a.admin_scope.as_str());
    let documents = catalog
        .versions
        .values()
        .map(|v| {
            let document = crate::openapi::document(v, admin_scope);
            (v.name.clone(), crate::openapi::Rendered::new(&document))
        })
        .collect();
    Ok(Services {
        catalog,
        sources,
        profiled,
        cache,
        metrics,
        verifier: verifier.map(Arc::new),
        limiter,
        documents,
        feeds,
        delivery,
        state,
    })
}

/// Sources by name, and the ODBC ones with their capability profiles.
type Sources = (
    HashMap<String, Arc<dyn Source>>,
    HashMap<String, Arc<ProfiledSource>>,
);

/// Every source of the configuration, or the problems of those that cannot be made.
fn sources(
    config: &Config,
    catalog: Option<&Catalog>,
    metrics: &Metrics,
) -> Result<Sources, Vec<Problem>> {
    let (sources, problems) = made_sources(config, catalog, metrics);
    match problems.is_empty() {
        true => Ok(sources),
        false => Err(problems),
    }
}

/// The sources that can be made, and the problems of those that cannot.
fn made_sources(
    config: &Config,
    catalog: Option<&Catalog>,
    metrics: &Metrics,
) -> (Sources, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut sources = HashMap::new();
    let mut profiled = HashMap::new();
    for (name, sc) in &config.sources {
        let source: Arc<dyn Source> = match sc.kind {
            SourceKind::Odbc => {
                let odbc = OdbcSource::new(
                    OdbcSettings {
                        name: name.clone(),
                        connection_string: sc.connection_string.clone(),
                        dialect: sc.dialect_name().into(),
                        max_concurrency: sc.max_concurrency.max(1),
                        queue_timeout: sc.queue_timeout,
                        query_timeout: sc.query_timeout,
                        login_timeout: sc.login_timeout,
                        max_text_bytes: sc.max_text_bytes,
                        health_statement: sc.health_statement.clone(),
                        row_by_row: sc.capabilities.block_fetch == Some(false),
                    },
                    &metrics.sources,
                );
                let odbc = breaker(Arc::new(odbc), sc, metrics);
                let source = Arc::new(capabilities::profiled(name, sc, odbc, catalog));
                profiled.insert(name.clone(), source.clone());
                source
            }
            SourceKind::Mssql => {
                let settings = match crate::source::mssql::settings::resolve(name, sc) {
                    Ok(settings) => settings,
                    Err(found) => {
                        problems.extend(found.into_iter().map(|(key, message)| Problem {
                            location: format!("sources.{name}.{key}"),
                            message,
                        }));
                        continue;
                    }
                };
                match MssqlSource::new(settings, &metrics.sources) {
                    Ok(source) => breaker(Arc::new(source), sc, metrics),
                    Err(e) => {
                        problems.push(Problem {
                            location: format!("sources.{name}"),
                            message: e.to_string(),
                        });
                        continue;
                    }
                }
            }
        };
        sources.insert(name.clone(), source);
    }
    ((sources, profiled), problems)
}

/// `driver` behind its circuit breaker: the one place every statement to the database passes,
/// below the capability profile, so a snapshot still fresh in memory answers while it is open.
fn breaker(driver: Arc<dyn Source>, config: &SourceConfig, metrics: &Metrics) -> Arc<dyn Source> {
    Arc::new(BreakerSource::new(driver, config.breaker, &metrics.sources))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused value, a check of the file alone, a check of the compiled model and a
    /// webhook setting are reported together, each once.
    #[test]
    fn load_reports_every_problem_of_a_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portico.toml");
        let text = "[server]\nbody_timeout = \"soon\"\nmax_filter_terms = 0\n\
             [webhooks]\njitter = 2.0\n\
             [sources.erp]\nkind = \"odbc\"\nconnection_string = \"DSN=erp\"\ndialect = \"sqlite\"\n\
             [versions.v1.resources.jobs]\nsource = \"erp\"\ntable = \"JOBS\"\nkey = [\"id\"]\n\
             anonymous = true\ndefault_sort = [\"colour\"]\n\
             [versions.v1.resources.jobs.fields]\nid = { column = \"ID\", type = \"integer\" }\n";
        std::fs::write(&path, text).unwrap();
        let Err(error) = load(&path) else {
            panic!("a broken file was accepted");
        };
        let found: Vec<&str> = error.problems.iter().map(|p| p.location.as_str()).collect();
        assert_eq!(
            found,
            [
                "server.body_timeout",
                "server.max_filter_terms",
                "versions.v1.resources.jobs.default_sort",
                "webhooks.jitter",
            ],
            "{error}"
        );
        assert!(error.problems[0]
            .message
            .contains("`soon` is not a duration"));
        assert!(error.problems[3].message.contains("jitter"));
        assert!(!dir.path().join("portico-state.sqlite3").exists());
    }
}
