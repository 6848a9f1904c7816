//! Keys published by an identity provider: fetched at start, cached, refreshed when a token
//! names an unknown `kid` (at most once per `refresh_min_interval`, so a flood of bogus `kid`s
//! cannot hammer the provider) and when the set is older than `MAX_AGE`.

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

/// A cached JSON Web Key Set.
pub struct JwksKeys {
    location: JwksLocation,
    allowed: Vec<Algorithm>,
    min_interval: Duration,
    client: reqwest::Client,
    keys: RwLock<Arc<HashMap<String, VerificationKey>>>,
    /// Time of the last fetch attempt; the lock also makes concurrent refreshes one.
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
            keys: RwLock::new(Arc::new(HashMap::new())),
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

    /// The key with `kid`, refreshing the set when it is unknown (rate limited).
    /// `Err` only when no set could ever be fetched.
    pub async fn key(&self, kid: &str) -> Result<Option<VerificationKey>, super::AuthError> {
        let stale = self
            .fetched_at
            .read()
            .map(|t| t.is_none_or(|t| t.elapsed() > MAX_AGE))
            .unwrap_or(true);
        if let Some(key) = self.cached(kid) {
            if stale {
                // One request refreshes an old set; the others keep using it meanwhile.
                if let Ok(mut last) = self.last_fetch.try_lock() {
                    let recently = last
                        .as_ref()
                        .is_some_and(|(at, _)| at.elapsed() < self.min_interval);
                    if !recently {
                        self.refresh(&mut last).await;
                        // A key the provider withdrew is gone now.
                        return Ok(self.cached(kid));
                    }
                }
            }
            return Ok(Some(key));
        }
        // An unknown kid waits for at most one fetch per `min_interval`.
        let mut last = self.last_fetch.lock().await;
        // Another request may have refreshed while this one waited.
        if let Some(key) = self.cached(kid) {
            return Ok(Some(key));
        }
        let recently = last
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < self.min_interval);
        if !recently {
            self.refresh(&mut last).await;
        }
        if self.fetched_at.read().map(|t| t.is_none()).unwrap_or(true) {
            return Err(super::AuthError::KeysUnavailable);
        }
        Ok(self.cached(kid))
    }

    fn cached(&self, kid: &str) -> Option<VerificationKey> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    async fn refresh(&self, last: &mut Option<(Instant, Option<String>)>) {
        let known_url = last.as_ref().and_then(|(_, url)| url.clone());
        *last = Some((Instant::now(), known_url.clone()));
        self.fetches.inc();
        let url = match known_url {
            Some(url) => url,
            None => match self.jwks_url().await {
                Ok(url) => url,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot find the JWKS URL");
                    return;
                }
            },
        };
        *last = Some((Instant::now(), Some(url.clone())));
        match self.fetch_set(&url).await {
            Ok(set) => {
                tracing::info!(url = %url, keys = set.len(), "fetched the JWKS");
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

    async fn jwks_url(&self) -> Result<String, FetchError> {
        match &self.location {
            JwksLocation::Url(url) => Ok(url.clone()),
            JwksLocation::Discovery(issuer) => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let document = self.get_json(&url).await?;
                document
                    .get("jwks_uri")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string)
                    .ok_or(FetchError::Document {
                        url,
                        message: "no `jwks_uri`".into(),
                    })
            }
        }
    }

    async fn fetch_set(&self, url: &str) -> Result<HashMap<String, VerificationKey>, FetchError> {
        let document = self.get_json(url).await?;
        let items = document
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| FetchError::Document {
                url: url.to_string(),
                message: "no `keys` array".into(),
            })?;
        let mut set = HashMap::new();
        for item in items {
            // One odd key (an encryption key, an unknown type) must not hide the others.
            let parsed = serde_json::from_value::<Jwk>(item.clone())
                .map_err(|e| e.to_string())
                .and_then(|jwk| keys::from_jwk(&jwk, &self.allowed));
            match parsed {
                Ok(key) => match key.kid.clone() {
                    Some(kid) => {
                        set.insert(kid, key);
                    }
                    None => tracing::warn!(url, "skipping a JWKS key without `kid`"),
                },
                Err(e) => {
                    tracing::warn!(url, kid = ?item.get("kid"), error = %e, "skipping a JWKS key")
                }
            }
        }
        Ok(set)
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
