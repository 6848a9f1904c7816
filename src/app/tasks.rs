//! The tasks that run beside the HTTP server (shared by `start`'s `Background` and the
//! reloader, which stops and starts pollers one by one), and how a feed's poller is made.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::cache::ResponseCache;
use crate::catalog::Catalog;
use crate::changes::lease::{FeedLease, Fleet};
use crate::changes::poller::{EventSink, Poller};
use crate::changes::Feed;
use crate::state::StateStore;
use crate::telemetry::metrics::Metrics;
use crate::webhooks::Webhooks;

/// The tasks running beside the server: the change pollers by feed name (a reload stops and
/// starts them one by one), and the rest.
#[derive(Default)]
pub(super) struct Tasks {
    pollers: HashMap<String, tokio::task::AbortHandle>,
    others: Vec<tokio::task::AbortHandle>,
}

impl Tasks {
    /// Spawns `task` beside the server.
    pub(super) fn spawn<F>(&mut self, task: F)
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.others.push(tokio::spawn(task).abort_handle());
    }

    /// Starts polling with `poller` (its feed's earlier poll loop, if any, stopped).
    pub(super) fn poll(&mut self, poller: Poller) {
        let name = poller.feed.name.clone();
        let handle = tokio::spawn(poller.run()).abort_handle();
        if let Some(old) = self.pollers.insert(name, handle) {
            old.abort();
        }
    }

    /// Stops polling feed `name`.
    pub(super) fn stop_polling(&mut self, name: &str) {
        if let Some(handle) = self.pollers.remove(name) {
            handle.abort();
        }
    }

    /// Stops every task.
    pub(super) fn abort_all(&self) {
        for task in self.pollers.values().chain(&self.others) {
            task.abort();
        }
    }
}

/// The tasks of a running service, shared by its `Background` and its reloader.
pub(super) type SharedTasks = Arc<Mutex<Tasks>>;

/// Locks `tasks`; a panic while one was held leaves handles that are still whole.
pub(super) fn lock(tasks: &SharedTasks) -> std::sync::MutexGuard<'_, Tasks> {
    tasks
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a poller of a feed needs beside the feed: the parts of the running service.
pub(super) struct PollContext<'a> {
    pub(super) store: &'a Arc<dyn StateStore>,
    pub(super) sources: &'a HashMap<String, Arc<dyn crate::source::Source>>,
    pub(super) cache: &'a Arc<ResponseCache>,
    pub(super) catalog: &'a Catalog,
    pub(super) webhooks: &'a Option<Arc<Webhooks>>,
    pub(super) metrics: &'a Metrics,
    pub(super) fleet: &'a Option<Arc<Fleet>>,
}

impl PollContext<'_> {
    /// The poller of `feed`; `None` when its source is not configured.
    pub(super) fn poller(&self, feed: &Arc<Feed>) -> Option<Poller> {
        Some(Poller {
            feed: feed.clone(),
            source: self.sources.get(&feed.source)?.clone(),
            store: self.store.clone(),
            cache: self.cache.clone(),
            affected: self.catalog.affected_by_write(&feed.source, &feed.table),
            sink: self.webhooks.clone().map(|hub| hub as Arc<dyn EventSink>),
            metrics: self.metrics.changes.clone(),
            fleet: self.fleet.clone(),
            lease: FeedLease::default(),
        })
    }
}
