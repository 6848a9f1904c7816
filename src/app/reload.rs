//! Reloading the configuration file while serving (`SIGHUP`, `POST /admin/reload`): the file
//! is read and built as `load` does (nothing written), its new and changed resources proven
//! against their databases (`Prover`: `portico check`'s proofs), compared with the
//! running configuration, and swapped in at once. Sources whose settings did not change keep
//! their pools, only the changed resources' cached answers are dropped, and only the changed
//! feeds' pollers restart. The metrics, the state store and the rate limiter's counts stay.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use futures_util::future::{BoxFuture, LocalBoxFuture};

use super::tasks::{lock, PollContext, SharedTasks};
use super::Services;
use crate::changes::lease::Fleet;
use crate::config::{Config, Problem};
use crate::http::{AppState, Live, Reload, ReloadError, Reloaded};
use crate::source::Source;
use crate::state::Notice;
use crate::webhooks::Webhooks;

/// Where a reload reads the configuration again: the file `serve` was started with, and the
/// listen address that overrides its `[server] listen` (`--listen`, `PORTICO_LISTEN`).
#[derive(Clone)]
pub struct Origin {
    /// The configuration file.
    pub path: PathBuf,
    /// `serve --listen` or `PORTICO_LISTEN`, when given.
    pub listen: Option<String>,
    /// What proves a new file's changed resources against their databases before it is
    /// swapped in (`portico check`'s proofs; `check` sits above `app`, so `main` gives it).
    pub prover: Option<Prover>,
}

/// What a reload asks its [`Prover`] to prove: the new catalog over the sources it would serve
/// with (the running ones where they are kept, so an open breaker is respected).
pub struct Proof<'a> {
    /// The new file.
    pub config: &'a Config,
    /// Its compiled catalog.
    pub catalog: &'a crate::catalog::Catalog,
    /// The sources the new configuration would read.
    pub sources: &'a HashMap<String, Arc<dyn Source>>,
    /// Its feeds.
    pub feeds: &'a [Arc<crate::changes::Feed>],
    /// The resources (by name, any version) that are new or changed: the only ones proven.
    pub resources: &'a BTreeSet<String>,
}

/// Proves a [`Proof`]: every problem found, each at its location. Run on a thread of its own
/// (with a runtime of its own: the proofs need not be `Send`).
pub type Prover = Arc<dyn for<'a> Fn(Proof<'a>) -> LocalBoxFuture<'a, Vec<Problem>> + Send + Sync>;

/// Reloads the configuration of one running service; one reload at a time.
pub struct Reloader {
    origin: Origin,
    // Weak: the server's state owns this reloader (`POST /admin/reload`), and both go when
    // the server stops.
    live: Weak<Live>,
    tasks: SharedTasks,
    fleet: Option<Arc<Fleet>>,
    /// The configuration serving, and its generation.
    serving: tokio::sync::Mutex<(Config, u64)>,
}

impl Reloader {
    /// The reloader of the service serving `config` (generation 1) from `live`.
    pub(super) fn new(
        origin: Origin,
        config: Config,
        live: &Arc<Live>,
        tasks: SharedTasks,
        fleet: Option<Arc<Fleet>>,
    ) -> Self {
        Self {
            origin,
            live: Arc::downgrade(live),
            tasks,
            fleet,
            serving: tokio::sync::Mutex::new((config, 1)),
        }
    }

    /// Reads the file again and swaps it in, or refuses it (every problem listed) and keeps
    /// the running configuration; counted in `portico_config_reloads`.
    pub async fn reload_file(&self) -> Result<Reloaded, ReloadError> {
        let Some(live) = self.live.upgrade() else {
            return Err(ReloadError::Failed("the server has stopped".into()));
        };
        let metrics = live.current().metrics.clone();
        let outcome = self.apply(&live).await;
        metrics.reloads.count(match &outcome {
            Ok(_) => "applied",
            Err(ReloadError::Refused(_)) => "refused",
            Err(_) => "failed",
        });
        outcome
    }

    async fn apply(&self, live: &Live) -> Result<Reloaded, ReloadError> {
        let mut serving = self.serving.lock().await;
        let current = live.current();
        let (path, listen) = (self.origin.path.clone(), self.origin.listen.clone());
        let metrics = current.metrics.clone();
        // What the running configuration read of the catalogs stands in for a source that
        // serves on unchanged but cannot be read now (or whose breaker is open).
        let running = super::catalog_limits::Running {
            catalog: current.catalog.clone(),
            sources: current.sources.clone(),
            config: serving.0.clone(),
        };
        // Building reads key files and the sources' catalogs: blocking work.
        let built = tokio::task::spawn_blocking(move || {
            super::load_counted(&path, listen.as_deref(), metrics, Some(&running))
        })
        .await
        .map_err(|e| ReloadError::Failed(format!("building the configuration failed: {e}")))?;
        let (config, services) = match built {
            Ok(built) => built,
            Err(e) => {
                let mut problems = e.problems;
                problems.extend(self.restart_only_in_draft(&serving.0, &problems));
                return Err(ReloadError::Refused(problems));
            }
        };
        let bound = bound_at_start(&serving.0, &config, &current, &services);
        if !bound.is_empty() {
            return Err(ReloadError::Refused(bound));
        }
        let plan = Plan::new(&serving.0, &config, &current, &services);
        if let Some(prove) = &self.origin.prover {
            // The kept sources are the running ones: their pools and breakers.
            let sources: HashMap<String, Arc<dyn Source>> = services
                .sources
                .iter()
                .map(|(name, fresh)| {
                    let kept = plan
                        .sources_kept
                        .contains(name)
                        .then(|| current.sources.get(name))
                        .flatten();
                    (name.clone(), kept.unwrap_or(fresh).clone())
                })
                .collect();
            let (prove, config, catalog, feeds, resources) = (
                prove.clone(),
                config.clone(),
                services.catalog.clone(),
                services.feeds.clone(),
                plan.caches_dropped.clone(),
            );
            let proven = tokio::task::spawn_blocking(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(runtime.block_on(prove(Proof {
                    config: &config,
                    catalog: &catalog,
                    sources: &sources,
                    feeds: &feeds,
                    resources: &resources,
                })))
            })
            .await;
            let problems = match proven {
                Ok(Ok(problems)) => problems,
                Ok(Err(e)) => return Err(ReloadError::Failed(format!("cannot prove it: {e}"))),
                Err(e) => return Err(ReloadError::Failed(format!("proving it failed: {e}"))),
            };
            if !problems.is_empty() {
                return Err(ReloadError::Refused(problems));
            }
        }
        let (state, report, started) = self
            .assemble(&config, services, &current, &plan, serving.1 + 1)
            .await?;
        let state = Arc::new(state);
        live.swap(state.clone());
        serving.1 += 1;
        serving.0 = config;
        self.follow_up(&state, &current, &plan, started).await;
        state.metrics.reloads.serving(serving.1);
        let report = Reloaded {
            generation: serving.1,
            ..report
        };
        tracing::info!(
            generation = report.generation,
            sources_rebuilt = ?report.sources_rebuilt,
            sources_added = ?report.sources_added,
            sources_removed = ?report.sources_removed,
            caches_dropped = ?report.caches_dropped,
            feeds_started = ?report.feeds_started,
            feeds_stopped = ?report.feeds_stopped,
            "configuration reloaded"
        );
        Ok(report)
    }

    /// The settings bound at start that the file (as far as it reads) changes, for a file
    /// refused for other problems: one answer names them all. A location already refused
    /// (its value stands in as a zero) is not named twice.
    fn restart_only_in_draft(&self, serving: &Config, found: &[Problem]) -> Vec<Problem> {
        let Ok(mut draft) = crate::config::load_draft(&self.origin.path) else {
            return Vec::new();
        };
        if let Some(listen) = &self.origin.listen {
            draft.config.server.listen = listen.clone();
        }
        restart_only(serving, &draft.config)
            .into_iter()
            .filter(|p| !found.iter().any(|f| f.location.starts_with(&p.location)))
            .collect()
    }

    /// The new serving state (configuration `generation`): the kept sources and feeds
    /// reused, the rest from `services`; the subscriptions synced with the file. Also what
    /// changed, and the feeds to start.
    async fn assemble(
        &self,
        config: &Config,
        services: Services,
        current: &AppState,
        plan: &Plan,
        generation: u64,
    ) -> Result<(AppState, Reloaded, Vec<Arc<crate::changes::Feed>>), ReloadError> {
        let Services {
            catalog,
            sources: built,
            profiled,
            verifier,
            limiter,
            documents,
            feeds,
            delivery,
            ..
        } = services;
        let catalog = Arc::new(catalog);
        let mut sources: HashMap<String, Arc<dyn Source>> = HashMap::new();
        for (name, source) in built {
            let kept = plan.sources_kept.contains(&name);
            let source = match current.sources.get(&name) {
                Some(running) if kept => running.clone(),
                _ => source,
            };
            sources.insert(name, source);
        }
        let webhooks = match (&current.webhooks, delivery, &current.state_store) {
            (Some(hub), _, _) => Some(hub.clone()),
            (None, Some(settings), Some(store)) => Some(Arc::new(Webhooks::new(
                settings,
                store.clone(),
                catalog.clone(),
                current.metrics.changes.clone(),
            ))),
            _ => None,
        };
        if let Some(hub) = &webhooks {
            let (hub, config) = (hub.clone(), config.clone());
            tokio::task::spawn_blocking(move || hub.sync_config(&config))
                .await
                .map_err(|e| ReloadError::Failed(e.to_string()))?
                .map_err(|e| {
                    ReloadError::Failed(format!("cannot store the configured subscriptions: {e}"))
                })?;
        }
        let (mut kept_feeds, mut started) = (Vec::new(), Vec::new());
        let feeds: Vec<_> = feeds
            .into_iter()
            .map(
                |feed| match current.feeds.iter().find(|f| f.name == feed.name) {
                    Some(running) if plan.feeds_kept.contains(&feed.name) => {
                        kept_feeds.push(feed.name.clone());
                        running.clone()
                    }
                    _ => {
                        started.push(feed.clone());
                        feed
                    }
                },
            )
            .collect();
        let stopped: Vec<String> = current
            .feeds
            .iter()
            .filter(|f| !kept_feeds.contains(&f.name))
            .map(|f| f.name.clone())
            .collect();
        for (name, source) in profiled {
            if !plan.sources_kept.contains(&name) {
                // Probed now rather than on the first request, as at start.
                tokio::spawn(async move { source.probe().await });
            }
        }
        let auth_kept = plan.same_auth;
        let verifier = match auth_kept {
            true => current.verifier.clone(),
            false => verifier,
        };
        if let (false, Some(verifier)) = (auth_kept, &verifier) {
            let verifier = verifier.clone();
            tokio::spawn(async move { verifier.prefetch().await });
        }
        let limiter = match plan.same_rate_limit {
            true => current.limiter.clone(),
            false => limiter.map(Arc::new),
        };
        let state = AppState {
            docs: crate::http::docs_config(&catalog),
            catalog,
            sources,
            cache: current.cache.clone(),
            metrics: current.metrics.clone(),
            verifier,
            limiter,
            admin_scope: config.auth.as_ref().map(|a| a.admin_scope.clone()),
            documents,
            state_store: current.state_store.clone(),
            idempotency_retention: config.state.idempotency_retention,
            idempotency_lease: config.state.idempotency_lease,
            event_retention: config.state.event_retention,
            body_timeout: config.server.body_timeout,
            feeds,
            webhooks,
            readiness: crate::http::Readiness::new(config.server.ready_max_feed_lag),
            cache_epochs: {
                let mut epochs = (*current.cache_epochs).clone();
                for resource in &plan.caches_dropped {
                    epochs.insert(resource.clone(), generation);
                }
                Arc::new(epochs)
            },
        };
        let report = Reloaded {
            generation: 0,
            changed: plan.changed,
            sources_kept: sorted(&plan.sources_kept),
            sources_rebuilt: sorted(&plan.sources_rebuilt),
            sources_added: sorted(&plan.sources_added),
            sources_removed: sorted(&plan.sources_removed),
            caches_dropped: sorted(&plan.caches_dropped),
            feeds_started: started.iter().map(|f| f.name.clone()).collect(),
            feeds_stopped: stopped,
            feeds_kept: kept_feeds,
        };
        Ok((state, report, started))
    }

    /// After the swap: drops the changed resources' cached answers (and tells the other
    /// replicas), stops the pollers of removed and changed feeds and starts the new ones.
    async fn follow_up(
        &self,
        state: &AppState,
        previous: &AppState,
        plan: &Plan,
        started: Vec<Arc<crate::changes::Feed>>,
    ) {
        if plan.purge_all {
            state.cache.purge_all();
            state.tell_replicas(Notice::PurgeAll).await;
        } else if !plan.caches_dropped.is_empty() {
            for resource in &plan.caches_dropped {
                state.cache.invalidate_resource(resource);
            }
            let dropped = sorted(&plan.caches_dropped);
            state.tell_replicas(Notice::Invalidate(dropped)).await;
        }
        if let Some(hub) = &state.webhooks {
            // Events found from now on are shaped and authorized by the new catalog.
            hub.set_catalog(state.catalog.clone());
        }
        let new_hub = previous.webhooks.is_none() && state.webhooks.is_some();
        let mut tasks = lock(&self.tasks);
        for feed in &previous.feeds {
            if !state.feeds.iter().any(|f| Arc::ptr_eq(f, feed)) {
                tasks.stop_polling(&feed.name);
            }
        }
        if let Some(store) = &state.state_store {
            let context = PollContext {
                store,
                sources: &state.sources,
                cache: &state.cache,
                catalog: &state.catalog,
                webhooks: &state.webhooks,
                metrics: &state.metrics,
                fleet: &self.fleet,
            };
            for feed in &started {
                if let Some(poller) = context.poller(feed) {
                    tasks.poll(poller);
                }
            }
        }
        if let (true, Some(hub)) = (new_hub, &state.webhooks) {
            tasks.spawn(crate::webhooks::dispatch::run(hub.clone()));
        }
    }
}

impl Reload for Reloader {
    fn reload(&self) -> BoxFuture<'_, Result<Reloaded, ReloadError>> {
        Box::pin(self.reload_file())
    }
}

/// What a reload keeps, rebuilds and drops.
#[derive(Debug, Default)]
struct Plan {
    /// Anything differs from the running configuration.
    changed: bool,
    sources_kept: BTreeSet<String>,
    sources_rebuilt: BTreeSet<String>,
    sources_added: BTreeSet<String>,
    sources_removed: BTreeSet<String>,
    /// Resources (by name, any version) whose cached answers are dropped.
    caches_dropped: BTreeSet<String>,
    /// Every cached answer is dropped (`[auth]`, `[cache]` or `[server]` changed).
    purge_all: bool,
    /// Feeds polling on: same source, and no resource over their table changed.
    feeds_kept: BTreeSet<String>,
    same_auth: bool,
    same_rate_limit: bool,
}

impl Plan {
    fn new(old: &Config, new: &Config, current: &AppState, services: &Services) -> Self {
        let mut plan = Plan {
            changed: old != new,
            same_auth: old.auth == new.auth,
            same_rate_limit: old.rate_limit == new.rate_limit,
            ..Plan::default()
        };
        for (name, settings) in &new.sources {
            match old.sources.get(name) {
                Some(was) if was == settings && current.sources.contains_key(name) => {
                    plan.sources_kept.insert(name.clone())
                }
                Some(_) => plan.sources_rebuilt.insert(name.clone()),
                None => plan.sources_added.insert(name.clone()),
            };
        }
        for name in old.sources.keys().filter(|n| !new.sources.contains_key(*n)) {
            plan.sources_removed.insert(name.clone());
        }
        // What every answer depends on: the grants, the TTLs, the server's limits.
        plan.purge_all = !plan.same_auth || old.cache != new.cache || old.server != new.server;
        plan.caches_dropped = match plan.purge_all {
            true => all_resources(old, new)
                .flat_map(|(_, names)| names)
                .cloned()
                .collect(),
            false => changed_resources(old, new, &plan.sources_kept),
        };
        for feed in &services.feeds {
            let Some(running) = current.feeds.iter().find(|f| f.name == feed.name) else {
                continue;
            };
            let mut readers = current
                .catalog
                .affected_by_write(&running.source, &running.table)
                .into_iter()
                .chain(
                    services
                        .catalog
                        .affected_by_write(&feed.source, &feed.table),
                );
            // A feed reads the columns every resource over its table shows.
            let untouched = plan.sources_kept.contains(&feed.source)
                && running.source == feed.source
                && running.table == feed.table
                && !readers.any(|r| resource_differs(old, new, &r));
            if untouched {
                plan.feeds_kept.insert(feed.name.clone());
            }
        }
        plan
    }
}

/// The resources (by name, any version) added, removed or changed, or reading a source that
/// is not kept.
fn changed_resources(old: &Config, new: &Config, kept: &BTreeSet<String>) -> BTreeSet<String> {
    let mut changed = BTreeSet::new();
    for (version, names) in all_resources(old, new) {
        for name in names {
            let was = old
                .versions
                .get(version)
                .and_then(|v| v.resources.get(name));
            let is = new
                .versions
                .get(version)
                .and_then(|v| v.resources.get(name));
            let same = match (was, is) {
                (Some(was), Some(is)) => was == is && kept.contains(&is.source),
                _ => false,
            };
            if !same {
                changed.insert(name.clone());
            }
        }
    }
    changed
}

/// Whether resource `name` differs between the two configurations in any version.
fn resource_differs(old: &Config, new: &Config, name: &str) -> bool {
    all_resources(old, new).any(|(version, names)| {
        names.iter().any(|n| *n == name)
            && old
                .versions
                .get(version)
                .and_then(|v| v.resources.get(name))
                != new
                    .versions
                    .get(version)
                    .and_then(|v| v.resources.get(name))
    })
}

/// Every version of either configuration with the resource names either has in it.
fn all_resources<'a>(
    old: &'a Config,
    new: &'a Config,
) -> impl Iterator<Item = (&'a String, Vec<&'a String>)> {
    let versions: BTreeSet<&String> = old.versions.keys().chain(new.versions.keys()).collect();
    versions.into_iter().map(move |version| {
        let names: BTreeSet<&String> = [old, new]
            .iter()
            .filter_map(|c| c.versions.get(version))
            .flat_map(|v| v.resources.keys())
            .collect();
        (version, names.into_iter().collect())
    })
}

/// The settings a reload cannot change (the server's socket and workers, the state store,
/// webhook delivery, the cache's size, trace export): each one that differs, as a problem naming it; and
/// the state store when the new file needs one and none was opened at start.
fn bound_at_start(
    old: &Config,
    new: &Config,
    current: &AppState,
    services: &Services,
) -> Vec<Problem> {
    let mut problems = restart_only(old, new);
    if current.state_store.is_none() && services.state.is_some() {
        problems.push(Problem {
            location: "state".into(),
            message: "the configuration now needs Portico's state store (creates, feeds or \
                      subscriptions), which is opened at start: restart to apply it"
                .into(),
        });
    }
    problems
}

/// The settings bound at start that differ between `old` and `new`, each as a problem.
fn restart_only(old: &Config, new: &Config) -> Vec<Problem> {
    let (was, is) = (&old.server, &new.server);
    [
        ("server.listen", was.listen != is.listen),
        ("server.workers", was.workers != is.workers),
        (
            "server.shutdown_timeout",
            was.shutdown_timeout != is.shutdown_timeout,
        ),
        ("server.cors", was.cors != is.cors),
        ("server.compression", was.compression != is.compression),
        ("cache.max_size", old.cache.max_size != new.cache.max_size),
        ("state", old.state != new.state),
        ("webhooks", old.webhooks != new.webhooks),
        // The trace exporter is installed with the process's subscriber, once.
        ("telemetry", old.telemetry != new.telemetry),
    ]
    .into_iter()
    .filter(|(_, differs)| *differs)
    .map(|(location, _)| Problem {
        location: location.to_string(),
        message: "changes only with a restart; the running configuration keeps serving".into(),
    })
    .collect()
}

fn sorted(names: &BTreeSet<String>) -> Vec<String> {
    names.iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[server]\nlisten = \"127.0.0.1:0\"\n\
        [sources.erp]\nkind = \"odbc\"\nconnection_string = \"DSN=erp\"\ndialect = \"sqlite\"\n\
        [sources.crm]\nkind = \"odbc\"\nconnection_string = \"DSN=crm\"\ndialect = \"sqlite\"\n\
        [versions.v1.resources.jobs]\nsource = \"erp\"\ntable = \"JOBS\"\nkey = [\"id\"]\nanonymous = true\n\
        [versions.v1.resources.jobs.fields]\nid = { column = \"ID\", type = \"integer\" }\n\
        [versions.v1.resources.people]\nsource = \"crm\"\ntable = \"PEOPLE\"\nkey = [\"id\"]\nanonymous = true\n\
        [versions.v1.resources.people.fields]\nid = { column = \"ID\", type = \"integer\" }\n";

    fn parse(text: &str) -> Config {
        crate::config::parse("test.toml", text, &|_| None).unwrap()
    }

    fn kept(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn settings_bound_at_start_are_named_and_others_are_not() {
        let old = parse(BASE);
        let new = parse(&BASE.replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\nworkers = 3\nbody_timeout = \"3s\"\n[state]\npath = \"other.sqlite3\"\n[telemetry]\nservice_name = \"erp-api\"",
        ));
        let named: Vec<String> = restart_only(&old, &new)
            .into_iter()
            .map(|p| p.location)
            .collect();
        assert_eq!(named, ["server.workers", "state", "telemetry"]);
        assert!(restart_only(&old, &parse(BASE)).is_empty());
    }

    #[test]
    fn a_resource_changes_with_its_settings_or_its_source() {
        let old = parse(BASE);
        let renamed = parse(&BASE.replace("table = \"PEOPLE\"", "table = \"PERSONS\""));
        assert_eq!(
            changed_resources(&old, &renamed, &kept(&["erp", "crm"])),
            kept(&["people"])
        );
        // The same settings over a rebuilt source: its answers may differ.
        assert_eq!(
            changed_resources(&old, &parse(BASE), &kept(&["crm"])),
            kept(&["jobs"])
        );
        let without = parse(&BASE.replace(
            "versions.v1.resources.people",
            "versions.v2.resources.people",
        ));
        assert_eq!(
            changed_resources(&old, &without, &kept(&["erp", "crm"])),
            kept(&["people"]),
            "moved to another version: gone from one, new in the other"
        );
        assert!(resource_differs(&old, &renamed, "people"));
        assert!(!resource_differs(&old, &renamed, "jobs"));
    }
}
