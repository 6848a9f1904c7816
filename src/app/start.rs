//! Running what `build` made: the state store is opened, the configured subscriptions are
//! stored, then the HTTP server, the change pollers, the webhook dispatcher, the state
//! store's pruning and the identity provider's key prefetch start.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::dev::Server;

use super::reload::{Origin, Reloader};
use super::tasks::{lock, PollContext, SharedTasks};
use super::Services;
use super::StateLocation;
use crate::cache::ResponseCache;
use crate::changes::lease::Fleet;
use crate::changes::poller::Poller;
use crate::config::Config;
use crate::state::retention::Retention;
use crate::state::{Notice, PgStore, SqliteStore, StateError, StateStore};
use crate::telemetry::state_metrics::StateMetrics;
use crate::webhooks::Webhooks;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Portico's state store could not be opened.
    #[error("cannot open the state store {path}: {error}")]
    State {
        /// The file (or the PostgreSQL server) asked for.
        path: String,
        /// Why.
        error: StateError,
    },
    /// The configured subscriptions could not be stored.
    #[error("cannot store the configured subscriptions: {0}")]
    Subscriptions(StateError),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {error}")]
    Bind {
        /// Address asked for.
        address: String,
        /// Why.
        error: std::io::Error,
    },
}

/// The server started: await `server`; `background` is everything that runs beside it.
pub struct Running {
    /// The HTTP server, running once awaited or spawned.
    pub server: Server,
    /// The address it listens on (the port the system gave for `:0`).
    pub address: SocketAddr,
    /// Pollers, the webhook dispatcher, retention, heartbeats and notices.
    pub background: Background,
    /// What reloads the configuration file (`SIGHUP`); `None` when not started from a file.
    pub reloader: Option<Arc<Reloader>>,
}

/// The work that runs beside the HTTP server. It stops when dropped, so a server stopped in
/// a process that goes on (tests, a reload) leaves nothing polling or delivering.
#[must_use = "the background work stops when this is dropped"]
pub struct Background {
    tasks: SharedTasks,
    fleet: Option<(Arc<Fleet>, Arc<dyn StateStore>)>,
}

impl Background {
    fn spawn<F>(&mut self, task: F)
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        lock(&self.tasks).spawn(task);
    }

    /// Gives this replica's feed leases up (the other replicas take its feeds at once), then
    /// stops everything.
    pub async fn stop(self) {
        if let Some((fleet, store)) = &self.fleet {
            fleet.stop(store).await;
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        lock(&self.tasks).abort_all();
    }
}

/// Opens the state store, syncs `[subscriptions]`, binds the listen address and starts every
/// background task. Nothing reloads it: see [`start_from`].
pub fn start(services: Services, config: &Config) -> Result<Running, StartError> {
    launch(services, config, None)
}

/// `start`, for services loaded from the file `origin` names: `POST /admin/reload` and the
/// returned `reloader` read it again and swap it in.
pub fn start_from(
    services: Services,
    config: &Config,
    origin: Origin,
) -> Result<Running, StartError> {
    launch(services, config, Some(origin))
}

/// Starts everything; with an `origin`, reloads of that file are served.
fn launch(
    services: Services,
    config: &Config,
    origin: Option<Origin>,
) -> Result<Running, StartError> {
    let Services {
        catalog,
        sources,
        profiled,
        cache,
        metrics,
        verifier,
        limiter,
        documents,
        feeds,
        delivery,
        state,
    } = services;
    let state_store = state
        .as_ref()
        .map(|location| open_store(location, &metrics.state))
        .transpose()?;
    // Replicas sharing the store take turns on each feed; a store of one process needs none.
    let fleet = state_store
        .as_ref()
        .filter(|store| store.shared())
        .map(|_| {
            Arc::new(Fleet::new(
                config.state.replica_name(),
                config.state.feed_lease,
                feeds.len(),
            ))
        });
    let catalog = Arc::new(catalog);
    let webhooks = match (delivery, &state_store) {
        (Some(settings), Some(store)) => {
            let hub = Webhooks::new(
                settings,
                store.clone(),
                catalog.clone(),
                metrics.changes.clone(),
            );
            hub.sync_config(config).map_err(StartError::Subscriptions)?;
            Some(Arc::new(hub))
        }
        _ => None,
    };
    let pollers: Vec<Poller> = state_store
        .iter()
        .flat_map(|store| {
            let context = PollContext {
                store,
                sources: &sources,
                cache: &cache,
                catalog: &catalog,
                webhooks: &webhooks,
                metrics: &metrics,
                fleet: &fleet,
            };
            feeds
                .iter()
                .filter_map(|feed| context.poller(feed))
                .collect::<Vec<_>>()
        })
        .collect();
    // Retention runs wherever there is a store; feeds that keep no row values have any an
    // older Portico recorded cleared.
    let pruning = state_store.clone().map(|store| {
        let slim: Vec<String> = feeds
            .iter()
            .filter(|f| !f.keeps_rows())
            .map(|f| f.name.clone())
            .collect();
        let retention = Retention::new(&config.state);
        crate::state::retention::run(store, retention, metrics.state.clone(), slim)
    });
    let (cache_for_notices, state_metrics) = (cache.clone(), metrics.state.clone());
    metrics.reloads.serving(1);
    let state = crate::http::AppState {
        docs: crate::http::docs_config(&catalog),
        catalog,
        sources,
        cache,
        metrics,
        verifier: verifier.clone(),
        limiter: limiter.map(Arc::new),
        admin_scope: config.auth.as_ref().map(|a| a.admin_scope.clone()),
        documents,
        state_store: state_store.clone(),
        idempotency_retention: config.state.idempotency_retention,
        idempotency_lease: config.state.idempotency_lease,
        event_retention: config.state.event_retention,
        body_timeout: config.server.body_timeout,
        feeds,
        webhooks: webhooks.clone(),
        readiness: crate::http::Readiness::new(config.server.ready_max_feed_lag),
        cache_epochs: Default::default(),
    };
    let live = Arc::new(crate::http::Live::new(state));
    let (server, address) =
        crate::http::serve(live.clone(), &config.server).map_err(|error| StartError::Bind {
            address: config.server.listen.clone(),
            error,
        })?;
    let tasks = SharedTasks::default();
    let mut background = Background {
        tasks: tasks.clone(),
        fleet: fleet.clone().zip(state_store.clone()),
    };
    let reloader = origin.map(|origin| {
        let reloader = Arc::new(Reloader::new(
            origin,
            config.clone(),
            &live,
            tasks.clone(),
            fleet.clone(),
        ));
        live.set_reload(reloader.clone());
        reloader
    });
    if let (Some(fleet), Some(store)) = (&fleet, &state_store) {
        background.spawn(fleet.clone().heartbeat(store.clone()));
        background.spawn(give_leases_up_on_stop(fleet.clone(), store.clone()));
    }
    if let Some(notices) = state_store.as_ref().and_then(|s| s.notices()) {
        background.spawn(follow(
            notices,
            cache_for_notices,
            webhooks.clone(),
            state_metrics,
        ));
    }
    for poller in pollers {
        lock(&tasks).poll(poller);
    }
    if let Some(hub) = webhooks {
        background.spawn(crate::webhooks::dispatch::run(hub));
    }
    if let Some(pruning) = pruning {
        background.spawn(pruning);
    }
    for source in profiled.into_values() {
        // Probed now rather than on the first request (which waits for it otherwise).
        background.spawn(async move { source.probe().await });
    }
    if let Some(verifier) = verifier {
        // Fetch the identity provider's keys at start rather than on the first request.
        background.spawn(async move { verifier.prefetch().await });
    }
    Ok(Running {
        server,
        address,
        background,
        reloader,
    })
}

/// Opens the store `location` names.
fn open_store(
    location: &StateLocation,
    metrics: &StateMetrics,
) -> Result<Arc<dyn StateStore>, StartError> {
    match location {
        StateLocation::Sqlite(path) => SqliteStore::open(path)
            .map(|s| Arc::new(s) as Arc<dyn StateStore>)
            .map_err(|error| StartError::State {
                path: path.display().to_string(),
                error,
            }),
        StateLocation::Postgres { url, pool_size } => {
            PgStore::open_counted(url, *pool_size, metrics.clone())
                .map(|s| Arc::new(s) as Arc<dyn StateStore>)
                .map_err(|error| StartError::State {
                    path: without_password(url),
                    error,
                })
        }
    }
}

/// A `postgres://` URL fit for a log line: the password left out.
fn without_password(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(config) => format!(
            "postgres://{}@{}:{}/{}",
            config.get_user().unwrap_or(""),
            config
                .get_hosts()
                .iter()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            config.get_ports().first().copied().unwrap_or(5432),
            config.get_dbname().unwrap_or("")
        ),
        Err(_) => "state.url".into(),
    }
}

/// When the process is asked to stop (SIGTERM, SIGINT: what actix-web drains on), gives its
/// feed leases up while requests drain, so the other replicas poll the feeds at once.
async fn give_leases_up_on_stop(fleet: Arc<Fleet>, store: Arc<dyn StateStore>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    fleet.stop(&store).await;
}

/// Applies what the other replicas tell: cached answers they made stale, subscriptions they
/// changed; after notices may have been missed, the whole cache and every subscription.
async fn follow(
    mut notices: tokio::sync::broadcast::Receiver<Notice>,
    cache: Arc<ResponseCache>,
    webhooks: Option<Arc<Webhooks>>,
    metrics: StateMetrics,
) {
    use tokio::sync::broadcast::error::RecvError;
    let reload = |webhooks: &Option<Arc<Webhooks>>| {
        if let Some(hub) = webhooks {
            if let Err(error) = hub.reload() {
                tracing::warn!(%error, "cannot reload the subscriptions another replica changed");
            }
        }
    };
    loop {
        match notices.recv().await {
            Ok(Notice::Invalidate(resources)) => {
                for resource in &resources {
                    cache.invalidate_resource(resource);
                }
            }
            Ok(Notice::PurgeAll) => cache.purge_all(),
            Ok(Notice::Subscriptions) => reload(&webhooks),
            Ok(Notice::Resync) | Err(RecvError::Lagged(_)) => {
                metrics.cache_resyncs.inc();
                cache.purge_all();
                reload(&webhooks);
            }
            Err(RecvError::Closed) => return,
        }
    }
}
