//! Running what `build` made: the state store is opened, the configured subscriptions are
//! stored, then the HTTP server, the change pollers, the webhook dispatcher, the state
//! store's pruning and the identity provider's key prefetch start.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::dev::Server;

use super::Services;
use crate::changes::poller::{EventSink, Poller};
use crate::config::Config;
use crate::state::retention::Retention;
use crate::state::{SqliteStore, StateError, StateStore};
use crate::webhooks::Webhooks;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Portico's state store could not be opened.
    #[error("cannot open the state store {path}: {error}")]
    State {
        /// The file asked for.
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

/// Opens the state store, syncs `[subscriptions]`, binds the listen address and starts every
/// background task; returns the running server and the address it got.
pub fn start(services: Services, config: &Config) -> Result<(Server, SocketAddr), StartError> {
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
        state_path,
    } = services;
    let state_store = match &state_path {
        Some(path) => match SqliteStore::open(path) {
            Ok(store) => Some(Arc::new(store) as Arc<dyn StateStore>),
            Err(error) => {
                return Err(StartError::State {
                    path: path.display().to_string(),
                    error,
                })
            }
        },
        None => None,
    };
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
        .flat_map(|store| feeds.iter().map(move |feed| (store, feed)))
        .filter_map(|(store, feed)| {
            Some(Poller {
                feed: feed.clone(),
                source: sources.get(&feed.source)?.clone(),
                store: store.clone(),
                cache: cache.clone(),
                affected: catalog.affected_by_write(&feed.source, &feed.table),
                sink: webhooks.clone().map(|hub| hub as Arc<dyn EventSink>),
                metrics: metrics.changes.clone(),
            })
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
    let state = crate::http::AppState {
        catalog,
        sources,
        cache,
        metrics,
        verifier: verifier.clone(),
        limiter,
        admin_scope: config.auth.as_ref().map(|a| a.admin_scope.clone()),
        documents,
        state_store,
        idempotency_retention: config.state.idempotency_retention,
        event_retention: config.state.event_retention,
        body_timeout: config.server.body_timeout,
        feeds,
        webhooks: webhooks.clone(),
        readiness: crate::http::Readiness::new(config.server.ready_max_feed_lag),
    };
    let (server, address) =
        crate::http::serve(state, &config.server).map_err(|error| StartError::Bind {
            address: config.server.listen.clone(),
            error,
        })?;
    for poller in pollers {
        tokio::spawn(poller.run());
    }
    if let Some(hub) = webhooks {
        tokio::spawn(crate::webhooks::dispatch::run(hub));
    }
    if let Some(pruning) = pruning {
        tokio::spawn(pruning);
    }
    for source in profiled.into_values() {
        // Probed now rather than on the first request (which waits for it otherwise).
        tokio::spawn(async move { source.probe().await });
    }
    if let Some(verifier) = verifier {
        // Fetch the identity provider's keys at start rather than on the first request.
        tokio::spawn(async move { verifier.prefetch().await });
    }
    Ok((server, address))
}
