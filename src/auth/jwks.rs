//! Keys published by an identity provider: fetched at start, cached, refreshed when a token
//! names an unknown `kid` (at most once per `refresh_min_interval`, so a flood of bogus `kid`s
//! cannot hammer the provider; a token waits for that fetch rather than being refused) and
//! when the set is older than `MAX_AGE`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::Algorithm;
use prometheus_client::metrics::counter::Counter;

use super::keys::{self, VerificationKey};

/// A published key set is refetched when it is this old, so withdrawn keys go away.
pub const MAX_AGE: Duration = Duration::from_secs(900);

/// Largest key set document accepted.
const MAX_DOCUMENT: usize = 1 << 20;

/// Where the set is published.
#[derive(Debug, Clone)]
pub enum JwksLocation {
    /// The set's URL.
    Url(String),
    /// An issuer whose OpenID configuration names the set's URL.
    Discovery(String),
}

/// The usable keys of one fetched set: by `kid`, and every key (those without a `kid` too).
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<String, VerificationKey>,
    all: Vec<VerificationKey>,
}

/// A cached JSON Web Key Set.
pub struct JwksKeys {
    location: JwksLocation,
    allowed: Vec<Algorithm>,
    min_interval: Duration,
    client: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// Time of the last fetch attempt and the set's URL once known; the lock also makes
    /// concurrent refreshes one.
    last_fetch: tokio::sync::Mutex<Option<(Instant, Option<String>)>>,
    fetched_at: RwLock<Option<Instant>>,
    fetches: Counter,
}

/// Why a key set could not be fetched (logged, never shown to clients).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// HTTP failure or bad status.
    #[error("fetching {url}: {message}")]
    Http {
        /// What was fetched.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The document is not what was expected.
    #[error("{url} is not a usable document: {message}")]
    Document {
        /// What was fetched.
        url: String,
        /// What is wrong with it.
        message: String,
    },
}

/// What `portico check` learns from the identity provider.
#[derive(Debug)]
pub struct Inspection {
    /// The discovery document's `issuer`, when keys are found through discovery.
    pub issuer: Option<String>,
    /// Where the key set was fetched from.
    pub jwks_url: String,
    /// The keys Portico can use.
    pub usable: Vec<VerificationKey>,
    /// Keys it skips, and why.
    pub skipped: Vec<String>,
}

impl JwksKeys {
    /// A key set that is fetched on first use (call `prefetch` to fetch it at start).
    pub fn new(
        location: JwksLocation,
        allowed: Vec<Algorithm>,
        min_interval: Duration,
        timeout: Duration,
        fetches: Counter,
    ) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot build the JWKS client; using defaults");
                reqwest::Client::new()
            });
        Self {
            location,
            allowed,
            min_interval,
            client,
            keys: RwLock::new(Arc::new(KeySet::default())),
            last_fetch: tokio::sync::Mutex::new(None),
            fetched_at: RwLock::new(None),
            fetches,
        }
    }

    /// Fetches the set now; failures are logged and retried when a token needs a key.
    pub async fn prefetch(&self) {
        let mut last = self.last_fetch.lock().await;
        self.refresh(&mut last).await;
    }

    /// The key with `kid`. An unknown `kid` waits for the next fetch the rate limit allows
    /// (at most `refresh_min_interval`; concurrent waiters share one fetch), so a key the
    /// provider has just published is found instead of refused. `Err` only when no set could
    /// ever be fetched.
    pub async fn key(&self, kid: &str) -> Result<Option<VerificationKey>, super::AuthError> {
        if let Some(key) = self.set().by_kid.get(kid).cloned() {
            if self.refresh_if_stale().await {
                // A key the provider withdrew is gone now.
                return Ok(self.set().by_kid.get(kid).cloned());
            }
            return Ok(Some(key));
        }
        let set = self.newest_set(|set| set.by_kid.contains_key(kid)).await?;
        Ok(set.by_kid.get(kid).cloned())
    }

    /// The keys that fit a token without a `kid`: the set's keys of its algorithm.
    pub async fn keys_for(
        &self,
        algorithm: Algorithm,
    ) -> Result<Vec<VerificationKey>, super::AuthError> {
        let fitting = |set: &KeySet| -> Vec<VerificationKey> {
            set.all
                .iter()
                .filter(|k| k.algorithm == algorithm)
                .cloned()
                .collect()
        };
        let found = fitting(&self.set());
        if !found.is_empty() {
            return Ok(found);
        }
        let set = self
            .newest_set(|set| set.all.iter().any(|k| k.algorithm == algorithm))
            .await?;
        Ok(fitting(&set))
    }

    fn set(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .map(|k| k.clone())
            .unwrap_or_else(|_| Arc::new(KeySet::default()))
    }

    fn fetched(&self) -> Option<Instant> {
        self.fetched_at.read().ok().and_then(|t| *t)
    }

    /// A set older than `MAX_AGE` is refetched by one request while the others keep using
    /// it; whether this call refetched it.
    async fn refresh_if_stale(&self) -> bool {
        if self.fetched().is_some_and(|t| t.elapsed() <= MAX_AGE) {
            return false;
        }
        let Ok(mut last) = self.last_fetch.try_lock() else {
            return false;
        };
        if self.recently(&last).is_some() {
            return false;
        }
        self.refresh(&mut last).await;
        true
    }

    /// The first set that has what `wanted` looks for, or else the set as fetched by an
    /// attempt started after the moment of asking: waits for the next fetch the rate limit
    /// allows, unless one began meanwhile.
    async fn newest_set(
        &self,
        wanted: impl Fn(&KeySet) -> bool,
    ) -> Result<Arc<KeySet>, super::AuthError> {
        let asked = Instant::now();
        loop {
            let mut last = self.last_fetch.lock().await;
            // A fetch that ended while this request waited for the lock may hold it.
            let set = self.set();
            if wanted(&set) {
                return Ok(set);
            }
            match self.recently(&last) {
                None => {
                    self.refresh(&mut last).await;
                    break;
                }
                // A fetch began after this request asked: nothing newer exists.
                Some((at, _)) if at >= asked => break,
                Some((_, wait)) => {
                    if self.fetched().is_none() {
                        // Never fetched: answer at once rather than hold every request.
                        return Err(super::AuthError::KeysUnavailable {
                            retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
                        });
                    }
                    drop(last);
                    tokio::time::sleep(wait).await;
                }
            }
        }
        if self.fetched().is_none() {
            return Err(super::AuthError::KeysUnavailable {
                retry_after: self.min_interval.as_secs_f64().ceil().max(1.0) as u64,
            });
        }
        Ok(self.set())
    }

    /// When the last fetch attempt was within `min_interval`: its time and how long until
    /// the next one is allowed.
    fn recently(&self, last: &Option<(Instant, Option<String>)>) -> Option<(Instant, Duration)> {
        let (at, _) = last.as_ref()?;
        let wait = self.min_interval.checked_sub(at.elapsed())?;
        (!wait.is_zero()).then_some((*at, wait))
    }

    async fn refresh(&self, last: &mut Option<(Instant, Option<String>)>) {
        let known_url = last.as_ref().and_then(|(_, url)| url.clone());
        *last = Some((Instant::now(), known_url.clone()));
        self.fetches.inc();
        let url = match known_url {
            Some(url) => url,
            None => match self.discover().await {
                Ok((url, _)) => url,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot find the JWKS URL");
                    return;
                }
            },
        };
        *last = Some((Instant::now(), Some(url.clone())));
        match self.fetch_set(&url).await {
            Ok((set, _)) => {
                tracing::info!(url = %url, keys = set.all.len(), "fetched the JWKS");
                if let Ok(mut keys) = self.keys.write() {
                    *keys = Arc::new(set);
                }
                if let Ok(mut at) = self.fetched_at.write() {
                    *at = Some(Instant::now());
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot fetch the JWKS; keeping the keys I have"),
        }
    }

    /// Fetches discovery (when configured) and the key set once, for `portico check`; the
    /// cache is left alone.
    pub async fn inspect(&self) -> Result<Inspection, FetchError> {
        let (jwks_url, issuer) = self.discover().await?;
        let (set, skipped) = self.fetch_set(&jwks_url).await?;
        Ok(Inspection {
            issuer,
            jwks_url,
            usable: set.all,
            skipped,
        })
    }

    /// The set's URL, and the discovery document's `issuer` when it was found that way.
    async fn discover(&self) -> Result<(String, Option<String>), FetchError> {
        match &self.location {
            JwksLocation::Url(url) => Ok((url.clone(), None)),
            JwksLocation::Discovery(issuer) => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let document = self.get_json(&url).await?;
                let field = |name: &str| {
                    document
                        .get(name)
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_string)
                };
                let jwks_uri = field("jwks_uri").ok_or(FetchError::Document {
                    url,
                    message: "no `jwks_uri`".into(),
                })?;
                Ok((jwks_uri, field("issuer")))
            }
        }
    }

    /// The usable keys of the set at `url`, and a line for each key skipped.
    async fn fetch_set(&self, url: &str) -> Result<(KeySet, Vec<String>), FetchError> {
        let document = self.get_json(url).await?;
        let items = document
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| FetchError::Document {
                url: url.to_string(),
                message: "no `keys` array".into(),
            })?;
        let mut set = KeySet::default();
        let mut skipped = Vec::new();
        for item in items {
            // One odd key (an encryption key, an unknown type) must not hide the others.
            let parsed = serde_json::from_value::<Jwk>(item.clone())
                .map_err(|e| e.to_string())
                .and_then(|jwk| keys::from_jwk(&jwk, &self.allowed));
            match parsed {
                Ok(key) => {
                    if let Some(kid) = &key.kid {
                        set.by_kid.insert(kid.clone(), key.clone());
                    }
                    set.all.push(key);
                }
                Err(e) => {
                    let kid = item.get("kid").and_then(serde_json::Value::as_str);
                    tracing::warn!(url, kid, error = %e, "skipping a JWKS key");
                    skipped.push(format!("key `{}`: {e}", kid.unwrap_or("(no kid)")));
                }
            }
        }
        Ok((set, skipped))
    }

    async fn get_json(&self, url: &str) -> Result<serde_json::Value, FetchError> {
        let http = |message: String| FetchError::Http {
            url: url.to_string(),
            message,
        };
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| http(e.to_string()))?;
        if !response.status().is_success() {
            return Err(http(format!("status {}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| http(e.to_string()))?;
        if body.len() > MAX_DOCUMENT {
            return Err(http(format!("larger than {MAX_DOCUMENT} bytes")));
        }
        serde_json::from_slice(&body).map_err(|e| FetchError::Document {
            url: url.to_string(),
            message: e.to_string(),
        })
    }
}
