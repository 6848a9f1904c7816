//! Webhooks: subscriptions, signing, delivery with retries and dead letters, the SSRF guard.

pub mod dispatch;
pub mod guard;
pub mod schedule;
pub mod sign;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::auth::Principal;
use crate::catalog::access::Verb;
use crate::catalog::Catalog;
use crate::changes::poller::EventSink;
use crate::changes::render::{event_json, selects, EventRecord};
use crate::changes::{EventKind, Feed};
use crate::config::{Config, Problem};
use crate::state::{NewDelivery, SecretRecord, StateError, StateStore, SubscriptionRecord};
use crate::telemetry::change_metrics::ChangeMetrics;
use guard::{AddressGuard, GuardedResolver};
use schedule::Schedule;
use sign::Secret;

/// A subscription ready to deliver to.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// As stored.
    pub record: SubscriptionRecord,
    /// Whom the subscription reads as: its scopes and claims.
    pub principal: Principal,
}

impl Subscription {
    fn new(record: SubscriptionRecord) -> Self {
        let principal = principal(&record.name, &record.scopes, &record.claims);
        Self { record, principal }
    }

    /// The secrets that sign an attempt at `now_ms`: the current one and those rotated out
    /// less than the grace period ago.
    pub fn signing_secrets(&self, now_ms: i64) -> Vec<Secret> {
        self.record
            .secrets
            .iter()
            .filter(|s| s.expires_ms.is_none_or(|at| at > now_ms))
            .filter_map(|s| Secret::parse(&s.secret).ok())
            .collect()
    }
}

/// Whom a subscription reads as: its scopes and claims, like a token's.
pub fn principal(
    name: &str,
    scopes: &[String],
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Principal {
    let mut principal = Principal::from_claims(claims.clone(), &[]);
    principal.subject = Some(format!("subscription:{name}"));
    principal.scopes = scopes.iter().cloned().collect();
    principal
}

/// Why a subscription reading as `principal` would receive nothing of some resource its
/// `events` select: the resource's read scope, a claim its row policies need, or row policies
/// inherited from a parent (which an event alone cannot apply). `None` when it sees them all.
pub fn blind_spot(
    version: &str,
    patterns: &[String],
    principal: &Principal,
    catalog: &Catalog,
    feeds: &[Arc<Feed>],
) -> Option<String> {
    let watched = feeds
        .iter()
        .flat_map(|f| &f.views)
        .filter(|v| v.version == version)
        .filter(|v| {
            let kinds = [EventKind::Created, EventKind::Updated, EventKind::Deleted];
            patterns
                .iter()
                .any(|p| kinds.iter().any(|&k| selects(p, &v.resource, k)))
        });
    for view in watched {
        let Some(resource) = catalog.resource(version, &view.resource) else {
            continue;
        };
        match resource.access.authorize(principal, Verb::Read) {
            Err(denial) => {
                return Some(format!(
                    "would receive no `{}` event: {denial}; give the subscription the `scopes` \
                     and `claims` a reader of `{}` needs",
                    view.resource, view.resource
                ))
            }
            Ok(grant) => {
                if let Some(parent) = grant.through_parent {
                    return Some(format!(
                        "would receive no `{}` event: its rows are filtered by the row policies \
                         of `{parent}`, which an event alone cannot apply; give the subscription \
                         a scope those policies do not restrict",
                        view.resource
                    ));
                }
            }
        }
    }
    None
}

/// How deliveries are made, checked and ready to use: built from `[webhooks]` without
/// touching the state store, so `portico check` can build it too.
pub struct DeliverySettings {
    /// Retry schedule.
    pub schedule: Schedule,
    /// Which targets may be reached.
    pub guard: Arc<AddressGuard>,
    /// How long a rotated-out secret keeps signing.
    pub grace: Duration,
    per_subscription: usize,
    max_in_flight: usize,
    dispatch_interval: Duration,
    client: reqwest::Client,
    /// Deliveries go through `[webhooks] proxy`, which resolves targets itself: each target
    /// is resolved and checked before every attempt instead.
    via_proxy: bool,
    /// This replica's name on the deliveries it claims.
    replica: String,
    /// How long a claim reserves a delivery (`[state] delivery_lease`).
    claim_lease: Duration,
}

impl std::fmt::Debug for DeliverySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliverySettings").finish_non_exhaustive()
    }
}

impl DeliverySettings {
    /// Builds the delivery side from `[webhooks]`; problems carry their location.
    pub fn from_config(config: &Config) -> Result<Self, Vec<Problem>> {
        let settings = &config.webhooks;
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(Problem {
                location: format!("webhooks.{key}"),
                message,
            })
        };
        let schedule = Schedule::new(&settings.retry_schedule, settings.jitter)
            .map_err(|e| problem(e.key(), e.to_string()))
            .ok();
        let guard = AddressGuard::new(&settings.allow_private)
            .map_err(|m| problem("allow_private", m))
            .ok();
        let (Some(schedule), Some(guard), true) = (schedule, guard, problems.is_empty()) else {
            return Err(problems);
        };
        let guard = Arc::new(guard);
        let timeout = settings.timeout;
        // Never an environment proxy: it would resolve and reach targets the guard never saw.
        let builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("Portico-Webhooks/", env!("CARGO_PKG_VERSION")));
        let builder = match &settings.proxy {
            // Every connection goes to the operator's proxy; targets are checked per attempt.
            Some(proxy) => builder.proxy(parse_proxy(proxy).map_err(|message| {
                vec![Problem {
                    location: "webhooks.proxy".into(),
                    message,
                }]
            })?),
            None => builder.dns_resolver(Arc::new(GuardedResolver(guard.clone()))),
        };
        let client = builder.build().map_err(|e| {
            vec![Problem {
                location: "webhooks".into(),
                message: format!("cannot build the HTTP client: {e}"),
            }]
        })?;
        Ok(Self {
            schedule,
            guard,
            grace: settings.secret_grace,
            per_subscription: settings.max_in_flight_per_subscription.max(1),
            max_in_flight: settings.max_in_flight.max(1),
            dispatch_interval: settings.dispatch_interval.max(Duration::from_millis(10)),
            client,
            via_proxy: settings.proxy.is_some(),
            replica: config.state.replica_name(),
            claim_lease: config.state.delivery_lease,
        })
    }

    /// Checks `[subscriptions]` against the catalog and the guard.
    pub fn check_config(
        &self,
        config: &Config,
        catalog: &Catalog,
        feeds: &[Arc<Feed>],
    ) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (name, sc) in &config.subscriptions {
            let mut problem = |key: &str, message: String| {
                problems.push(Problem {
                    location: format!("subscriptions.{name}.{key}"),
                    message,
                })
            };
            if let Err(message) = self.guard.check_url(&sc.url) {
                problem("url", message);
            }
            if let Err(message) = Secret::parse(&sc.secret) {
                problem("secret", message);
            }
            if let Err(message) = check_patterns(&sc.version, &sc.events, catalog, feeds) {
                problem("events", message);
            } else {
                let reader = principal(name, &sc.scopes, &sc.claims);
                if let Some(message) = blind_spot(&sc.version, &sc.events, &reader, catalog, feeds)
                {
                    problem("scopes", message);
                }
            }
        }
        problems
    }
}

/// The webhooks hub: the delivery settings, the subscriptions in memory, and the store.
pub struct Webhooks {
    /// Where subscriptions and deliveries live.
    pub store: Arc<dyn StateStore>,
    /// How deliveries are made.
    pub delivery: DeliverySettings,
    /// The API model events are shaped and authorized by (a reload swaps it).
    catalog: RwLock<Arc<Catalog>>,
    subscriptions: RwLock<Vec<Arc<Subscription>>>,
    wake: tokio::sync::Notify,
    metrics: ChangeMetrics,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

impl Webhooks {
    /// The hub over the state store; subscriptions are loaded by `sync_config`.
    pub fn new(
        delivery: DeliverySettings,
        store: Arc<dyn StateStore>,
        catalog: Arc<Catalog>,
        metrics: ChangeMetrics,
    ) -> Self {
        Self {
            store,
            delivery,
            catalog: RwLock::new(catalog),
            subscriptions: RwLock::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
            metrics,
        }
    }

    /// Stores the subscriptions of the configuration (a changed secret is rotated: the old
    /// one signs for the grace period), disables stored ones the configuration dropped, and
    /// loads them all.
    pub fn sync_config(&self, config: &Config) -> Result<(), StateError> {
        let now = crate::state::unix_now_ms();
        let stored = self.store.subscriptions()?;
        for (name, sc) in &config.subscriptions {
            let previous = stored.iter().find(|s| &s.name == name);
            let mut secrets = vec![SecretRecord {
                secret: sc.secret.clone(),
                expires_ms: None,
            }];
            let grace_end = now + self.delivery.grace.as_millis() as i64;
            // An endpoint that answered 410 Gone stays off across restarts until an operator
            // enables it (or the configuration names another URL).
            let gone = previous
                .filter(|p| p.url == sc.url && !p.enabled)
                .and_then(|p| p.disabled_reason.clone());
            for old in previous.map(|p| p.secrets.clone()).unwrap_or_default() {
                if old.secret != sc.secret && old.expires_ms.is_none_or(|at| at > now) {
                    secrets.push(SecretRecord {
                        expires_ms: Some(old.expires_ms.unwrap_or(grace_end)),
                        ..old
                    });
                }
            }
            self.store.put_subscription(&SubscriptionRecord {
                name: name.clone(),
                url: sc.url.clone(),
                version: sc.version.clone(),
                events: sc.events.clone(),
                scopes: sc.scopes.clone(),
                claims: sc.claims.clone(),
                secrets,
                enabled: sc.enabled && gone.is_none(),
                disabled_reason: gone,
                ordered: sc.ordered,
                origin: "config".into(),
                created_ms: previous.map_or(now, |p| p.created_ms),
            })?;
        }
        for gone in stored
            .into_iter()
            .filter(|s| s.origin == "config" && !config.subscriptions.contains_key(&s.name))
        {
            tracing::warn!(subscription = %gone.name, "subscription left the configuration: disabled");
            self.store.put_subscription(&SubscriptionRecord {
                enabled: false,
                ..gone
            })?;
        }
        // Replicas already running (a rolling upgrade that changed [subscriptions]) reload.
        self.changed()
    }

    /// Shapes and authorizes the events found from now on by `catalog` (a reloaded
    /// configuration's).
    pub fn set_catalog(&self, catalog: Arc<Catalog>) {
        match self.catalog.write() {
            Ok(mut held) => *held = catalog,
            Err(poisoned) => *poisoned.into_inner() = catalog,
        }
    }

    /// The API model events are shaped and authorized by now.
    fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(held) => held.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reloads the subscriptions from the store (after the admin API changed one).
    pub fn reload(&self) -> Result<(), StateError> {
        let loaded = self
            .store
            .subscriptions()?
            .into_iter()
            .map(|r| Arc::new(Subscription::new(r)))
            .collect();
        if let Ok(mut held) = self.subscriptions.write() {
            *held = loaded;
        }
        self.wake();
        Ok(())
    }

    /// The subscriptions in memory.
    pub fn subscriptions(&self) -> Vec<Arc<Subscription>> {
        self.subscriptions
            .read()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// One subscription.
    pub fn subscription(&self, name: &str) -> Option<Arc<Subscription>> {
        let held = self.subscriptions.read().ok()?;
        held.iter().find(|s| s.record.name == name).cloned()
    }

    /// Disables a subscription whose endpoint is gone (410), saying why; its pending
    /// deliveries wait until it is enabled again.
    pub fn disable_gone(&self, name: &str, reason: String) -> Result<(), StateError> {
        let Some(subscription) = self.subscription(name) else {
            return Ok(()); // deleted meanwhile
        };
        if !subscription.record.enabled {
            return Ok(()); // another attempt got there first
        }
        self.store.put_subscription(&SubscriptionRecord {
            enabled: false,
            disabled_reason: Some(reason),
            ..subscription.record.clone()
        })?;
        self.changed()
    }

    /// Reloads the subscriptions after this replica changed them, and tells the other
    /// replicas sharing the store to reload too.
    fn changed(&self) -> Result<(), StateError> {
        self.reload()?;
        crate::state::tell(self.store.as_ref(), &crate::state::Notice::Subscriptions);
        Ok(())
    }

    /// Tells the dispatcher deliveries may be due.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// One delivery per enabled subscription that selects the event and may see its row, with
    /// the body in the API shape of the subscription's version.
    pub fn deliveries_for(
        &self,
        feed: &Feed,
        event: &EventRecord<'_>,
        now_ms: i64,
    ) -> Vec<NewDelivery> {
        let first = now_ms + self.delivery.schedule.first().as_millis() as i64;
        let mut deliveries = Vec::new();
        let catalog = self.catalog();
        for subscription in self.subscriptions() {
            let record = &subscription.record;
            if !record.enabled {
                continue;
            }
            for view in feed.views.iter().filter(|v| v.version == record.version) {
                let selected = record
                    .events
                    .iter()
                    .any(|p| selects(p, &view.resource, event.kind));
                let Some(resource) = catalog.resource(&view.version, &view.resource) else {
                    continue;
                };
                if !selected {
                    continue;
                }
                let grant = match resource
                    .access
                    .authorize(&subscription.principal, Verb::Read)
                {
                    Ok(grant) => grant,
                    Err(denial) => {
                        tracing::debug!(subscription = %record.name, %denial, "event withheld");
                        continue;
                    }
                };
                if let Some(body) = event_json(feed, view, resource, &grant, event, &self.metrics) {
                    deliveries.push(NewDelivery {
                        subscription: record.name.clone(),
                        body: serde_json::to_vec(&body).unwrap_or_default(),
                        next_ms: first,
                    });
                }
            }
        }
        deliveries
    }
}

impl EventSink for Webhooks {
    fn deliveries_for(
        &self,
        feed: &Feed,
        event: &EventRecord<'_>,
        now_ms: i64,
    ) -> Vec<NewDelivery> {
        Webhooks::deliveries_for(self, feed, event, now_ms)
    }

    fn committed(&self) {
        self.wake();
    }
}

/// The configured proxy: an `http` or `https` URL (credentials in it are never logged).
fn parse_proxy(text: &str) -> Result<reqwest::Proxy, String> {
    let url = reqwest::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or("must be an http or https URL such as `http://proxy.corp:3128`")?;
    reqwest::Proxy::all(url).map_err(|e| format!("is not a usable proxy: {e}"))
}

/// Checks event patterns: `*`, or `<resource>.<kind|*>` of a resource of `version` whose table
/// has a change feed.
pub fn check_patterns(
    version: &str,
    patterns: &[String],
    catalog: &Catalog,
    feeds: &[Arc<Feed>],
) -> Result<(), String> {
    if !catalog.versions.contains_key(version) {
        return Err(format!("there is no version `{version}`"));
    }
    if patterns.is_empty() {
        return Err("name at least one event type (or `*`)".into());
    }
    for pattern in patterns.iter().filter(|p| p.as_str() != "*") {
        let Some((resource, kind)) = pattern.split_once('.') else {
            return Err(format!(
                "`{pattern}` is not `<resource>.<created|updated|deleted|*>`"
            ));
        };
        if kind != "*" && EventKind::parse(kind).is_none() {
            return Err(format!(
                "`{pattern}`: `{kind}` is not created, updated, deleted or *"
            ));
        }
        if !feeds.iter().any(|f| f.view(version, resource).is_some()) {
            return Err(format!(
                "`{pattern}`: {version} has no resource `{resource}` whose changes are watched"
            ));
        }
        let sees_deletes = feeds
            .iter()
            .filter(|f| f.view(version, resource).is_some())
            .any(|f| f.sees_deletes());
        if kind == "deleted" && !sees_deletes {
            return Err(format!(
                "`{pattern}`: the changes of `{resource}` are found by a strategy that never \
                 sees deleted rows (high_water_mark without reconcile_interval, rowversion); \
                 no such event would come"
            ));
        }
    }
    Ok(())
}
