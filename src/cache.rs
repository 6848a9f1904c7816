//! The response cache: rendered pages in moka, bounded in bytes, per-resource TTLs, one query
//! per key however many requests miss it at once, stale entries for source outages, ETags.

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::Expiry;
use sha2::{Digest, Sha256};

use crate::telemetry::metrics::CacheMetrics;

/// What the cache needs to know of a loader's error.
pub trait LoadError: Clone + Display + Send + Sync + 'static {
    /// Whether the source is out (unreachable, too slow, saturated), so that a stale copy may
    /// answer where `stale_if_error` allows it.
    fn is_source_outage(&self) -> bool;
}

/// What identifies a cached response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Resource name (what invalidation targets).
    pub resource: String,
    /// Version of the resource.
    pub version: String,
    /// The parsed request (a listing's filters, sort, fields, limit and cursor; a lookup's
    /// decoded key), so spellings of one request share an entry and junk makes none.
    pub request: String,
    /// Identity of the row policies and field mask that applied; empty without any.
    pub identity: String,
}

impl CacheKey {
    fn weight(&self) -> usize {
        self.resource.len() + self.version.len() + self.request.len() + self.identity.len()
    }
}

/// A rendered response body with its validator.
#[derive(Debug)]
pub struct CachedPage {
    /// JSON body.
    pub body: Bytes,
    /// Strong ETag derived from the body.
    pub etag: String,
    /// Cursor of the next page, for the `Link` header.
    pub next_cursor: Option<String>,
    /// When it was rendered.
    pub rendered: Instant,
    fresh_for: Duration,
    stale_for: Duration,
}

impl CachedPage {
    /// Wraps a rendered body, computing its ETag.
    pub fn new(body: Vec<u8>, next_cursor: Option<String>) -> Self {
        let digest = Sha256::digest(&body);
        let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest[..16]));
        Self::with_etag(body, etag, next_cursor)
    }

    /// Wraps a rendered body whose ETag is known (a row's version).
    pub fn with_etag(body: Vec<u8>, etag: String, next_cursor: Option<String>) -> Self {
        Self {
            etag,
            body: Bytes::from(body),
            next_cursor,
            rendered: Instant::now(),
            fresh_for: Duration::ZERO,
            stale_for: Duration::ZERO,
        }
    }
}

/// How long a resource's responses live.
#[derive(Debug, Clone, Copy)]
pub struct Lifetime {
    /// Fresh for this long; zero means not cached.
    pub ttl: Duration,
    /// Kept this much longer, to be served if the source fails.
    pub stale_if_error: Option<Duration>,
}

/// Whether an answer came fresh or from a stale entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Rendered within its TTL (or just now).
    Fresh,
    /// Past its TTL, served because the source failed.
    Stale,
}

/// Per-entry lifetime: the TTL for fresh entries, TTL plus the stale window for stale ones.
struct KeepFor {
    stale: bool,
}

impl Expiry<CacheKey, Arc<CachedPage>> for KeepFor {
    fn expire_after_create(
        &self,
        _: &CacheKey,
        page: &Arc<CachedPage>,
        _: Instant,
    ) -> Option<Duration> {
        Some(if self.stale {
            page.fresh_for + page.stale_for
        } else {
            page.fresh_for
        })
    }
}

/// Rendered responses, shared by every worker.
pub struct ResponseCache {
    fresh: Cache<CacheKey, Arc<CachedPage>>,
    stale: Cache<CacheKey, Arc<CachedPage>>,
    metrics: CacheMetrics,
}

fn build(
    max_bytes: u64,
    expiry: impl Expiry<CacheKey, Arc<CachedPage>> + Send + Sync + 'static,
    metrics: &CacheMetrics,
) -> Cache<CacheKey, Arc<CachedPage>> {
    let evictions = metrics.evictions.clone();
    Cache::builder()
        .max_capacity(max_bytes)
        .weigher(|key: &CacheKey, page: &Arc<CachedPage>| {
            let weight = key.weight() + page.body.len() + page.etag.len() + 96;
            u32::try_from(weight).unwrap_or(u32::MAX)
        })
        .expire_after(expiry)
        .support_invalidation_closures()
        .eviction_listener(move |_, _, cause| {
            if cause == RemovalCause::Size {
                evictions.inc();
            }
        })
        .build()
}

impl ResponseCache {
    /// A cache holding at most `max_bytes`: three quarters for fresh entries, one quarter for
    /// the stale copies kept for `stale_if_error`.
    pub fn new(max_bytes: u64, metrics: CacheMetrics) -> Self {
        Self {
            fresh: build(
                max_bytes - max_bytes / 4,
                KeepFor { stale: false },
                &metrics,
            ),
            stale: build(max_bytes / 4, KeepFor { stale: true }, &metrics),
            metrics,
        }
    }

    /// Answers from the cache or runs `load` once for every concurrent miss of `key`.
    /// `bypass` (a client's `no-cache`) skips the lookup but stores the new answer.
    pub async fn get_or_load<F, E>(
        &self,
        key: CacheKey,
        lifetime: Lifetime,
        bypass: bool,
        load: F,
    ) -> Result<(Arc<CachedPage>, Freshness), E>
    where
        F: Future<Output = Result<CachedPage, E>>,
        E: LoadError,
    {
        if lifetime.ttl.is_zero() {
            return Ok((Arc::new(load.await?), Freshness::Fresh));
        }
        let stamp = |mut page: CachedPage| {
            page.fresh_for = lifetime.ttl;
            page.stale_for = lifetime.stale_if_error.unwrap_or_default();
            Arc::new(page)
        };
        let result = if bypass {
            match load.await {
                Ok(page) => {
                    let page = stamp(page);
                    self.fresh.insert(key.clone(), page.clone()).await;
                    self.metrics.misses.inc();
                    Ok((page, true))
                }
                Err(e) => Err(e),
            }
        } else {
            if let Some(hit) = self.fresh.get(&key).await {
                self.metrics.hits.inc();
                return Ok((hit, Freshness::Fresh));
            }
            let ran = AtomicBool::new(false);
            let loaded = self
                .fresh
                .try_get_with(key.clone(), async {
                    ran.store(true, Ordering::Relaxed);
                    load.await.map(stamp)
                })
                .await;
            let ran = ran.load(Ordering::Relaxed);
            if ran {
                self.metrics.misses.inc();
            } else if loaded.is_ok() {
                self.metrics.coalesced.inc();
            }
            loaded
                .map(|page| (page, ran))
                .map_err(|shared| (*shared).clone())
        };
        match result {
            Ok((page, stored_here)) => {
                if stored_here && lifetime.stale_if_error.is_some() {
                    self.stale.insert(key, page.clone()).await;
                }
                Ok((page, Freshness::Fresh))
            }
            Err(e) if lifetime.stale_if_error.is_some() && e.is_source_outage() => {
                match self.stale.get(&key).await {
                    Some(old) => {
                        self.metrics.stale_served.inc();
                        tracing::warn!(error = %e, resource = %key.resource, version = %key.version, "source failed; serving a stale response");
                        Ok((old, Freshness::Stale))
                    }
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Drops every response of `resource` (in every version).
    pub fn invalidate_resource(&self, resource: &str) {
        for cache in [&self.fresh, &self.stale] {
            let name = resource.to_string();
            if cache
                .invalidate_entries_if(move |key, _| key.resource == name)
                .is_err()
            {
                // Closures are enabled at build time; if that ever fails, drop everything.
                cache.invalidate_all();
            }
        }
    }

    /// Drops every response.
    pub fn purge_all(&self) {
        self.fresh.invalidate_all();
        self.stale.invalidate_all();
    }

    /// Applies pending evictions and refreshes the size gauges.
    pub async fn refresh_gauges(&self) {
        self.fresh.run_pending_tasks().await;
        self.stale.run_pending_tasks().await;
        let bytes = self.fresh.weighted_size() + self.stale.weighted_size();
        let entries = self.fresh.entry_count() + self.stale.entry_count();
        self.metrics
            .bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.metrics
            .entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }
}

/// Whether an `If-None-Match` header value matches `etag` (weak comparison, RFC 9110).
pub fn none_match(header: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    header.trim() == "*"
        || header
            .split(',')
            .any(|candidate| bare(candidate) == bare(etag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_uses_weak_comparison() {
        assert!(none_match("\"abc\"", "\"abc\""));
        assert!(none_match("W/\"abc\", \"def\"", "\"abc\""));
        assert!(none_match("*", "\"abc\""));
        assert!(!none_match("\"abd\"", "\"abc\""));
    }

    #[test]
    fn etags_are_strong_and_follow_the_body() {
        let a = CachedPage::new(b"{}".to_vec(), None);
        let b = CachedPage::new(b"{}".to_vec(), None);
        let c = CachedPage::new(b"[]".to_vec(), None);
        assert_eq!(a.etag, b.etag);
        assert_ne!(a.etag, c.etag);
        assert!(a.etag.starts_with('"') && !a.etag.starts_with("W/"));
    }
}
