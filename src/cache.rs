//! The response cache: rendered pages in moka, bounded in bytes, per-resource TTLs, one query
//! per key however many requests miss it at once, stale entries for source outages, ETags.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::Expiry;
use tracing::Instrument;

use crate::config::ContentCoding;
use crate::telemetry::metrics::{CacheMetrics, CodingLabels};

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
    /// Other resources the answer read (related rows of `?expand=`): invalidating any of
    /// them drops it too.
    pub depends_on: Vec<String>,
    /// The configuration generation of the newest settings among those resources: requests
    /// served by configurations that differ there never share an answer (a request that
    /// began before a reload may reach the cache after the reload dropped its resource).
    pub epoch: u64,
}

impl CacheKey {
    fn weight(&self) -> usize {
        self.resource.len()
            + self.version.len()
            + self.request.len()
            + self.identity.len()
            + self.depends_on.iter().map(String::len).sum::<usize>()
    }

    /// Whether invalidating `resource` concerns this answer.
    fn reads(&self, resource: &str) -> bool {
        self.resource == resource || self.depends_on.iter().any(|r| r == resource)
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
    generation: Generation,
    /// The body compressed, made on first need and kept (and weighed) with the page.
    variants: Variants,
}

/// A page's compressed bodies, one per content coding.
#[derive(Debug, Default)]
struct Variants {
    br: tokio::sync::OnceCell<Bytes>,
    gzip: tokio::sync::OnceCell<Bytes>,
}

impl Variants {
    fn of(&self, coding: ContentCoding) -> &tokio::sync::OnceCell<Bytes> {
        match coding {
            ContentCoding::Br => &self.br,
            ContentCoding::Gzip => &self.gzip,
        }
    }

    /// Bytes held by the variants made so far.
    fn len(&self) -> usize {
        [&self.br, &self.gzip]
            .iter()
            .filter_map(|cell| cell.get())
            .map(Bytes::len)
            .sum()
    }
}

impl CachedPage {
    /// Wraps a rendered body, computing its ETag.
    pub fn new(body: Vec<u8>, next_cursor: Option<String>) -> Self {
        // A strong validator needs no cryptographic hash: 128 bits of xxh3 tell bodies apart,
        // at a fraction of SHA-256's cost on every uncached answer.
        let digest = xxhash_rust::xxh3::xxh3_128(&body).to_le_bytes();
        let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(digest));
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
            generation: Generation::default(),
            variants: Variants::default(),
        }
    }

    /// The body in `coding`, compressed on first need (once, however many requests ask at
    /// the same time) and kept with the page; `Ok(true)` when this call compressed it. The
    /// error is a compression task that did not finish.
    async fn encoded(&self, coding: ContentCoding) -> Result<(Bytes, bool), EncodeError> {
        let made = AtomicBool::new(false);
        let body = self
            .variants
            .of(coding)
            .get_or_try_init(|| async {
                made.store(true, Ordering::Relaxed);
                let body = self.body.clone();
                // Off the worker thread: a large page takes milliseconds to compress.
                tokio::task::spawn_blocking(move || encode(coding, &body))
                    .await
                    .map(Bytes::from)
                    .map_err(|e| EncodeError(e.to_string()))
            })
            .await?;
        Ok((body.clone(), made.load(Ordering::Relaxed)))
    }
}

/// A compression task that panicked or was cancelled.
#[derive(Debug, thiserror::Error)]
#[error("compressing a cached body failed: {0}")]
pub struct EncodeError(String);

/// `body` compressed in `coding`. The levels favour size over speed: a cached body is
/// compressed once and served many times.
pub fn encode(coding: ContentCoding, body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    // Writing into a `Vec` cannot fail.
    match coding {
        ContentCoding::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::new(6),
            );
            encoder.write_all(body).ok();
            encoder.finish().unwrap_or_default()
        }
        ContentCoding::Br => {
            let mut out = Vec::with_capacity(body.len() / 4);
            {
                // Quality 5 of 11: most of brotli's gain at a fraction of its top level's time.
                let mut encoder = brotli::CompressorWriter::new(&mut out, 32 << 10, 5, 22);
                encoder.write_all(body).ok();
            }
            out
        }
    }
}

/// The entity tag of the `coding` variant of the representation tagged `etag`: the same tag
/// with `-br` or `-gzip` inside the quotes (`"abc"` -> `"abc-gzip"`), since its bytes differ.
pub fn variant_tag(etag: &str, coding: ContentCoding) -> String {
    match etag.strip_suffix('"') {
        Some(open) => format!("{open}-{}\"", coding.token()),
        None => format!("{etag}-{}", coding.token()),
    }
}

/// Whether the entity tag `tag` (as a client sent it) names the representation tagged `etag`
/// or one of its coded variants. Weak comparison ignores `W/`; strong comparison (`weak`
/// false) never matches a weak tag.
pub fn tag_matches(tag: &str, etag: &str, weak: bool) -> bool {
    let (tag, etag) = (tag.trim(), etag.trim());
    let strip = |t: &'_ str| -> Option<(bool, String)> {
        let (is_weak, quoted) = match t.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let opaque = quoted.strip_prefix('"')?.strip_suffix('"')?;
        Some((is_weak, opaque.to_string()))
    };
    let (Some((tag_weak, tag)), Some((etag_weak, etag))) = (strip(tag), strip(etag)) else {
        return false;
    };
    if !weak && (tag_weak || etag_weak) {
        return false;
    }
    tag == etag
        || [ContentCoding::Br, ContentCoding::Gzip].iter().any(|c| {
            tag.strip_suffix(c.token())
                .and_then(|t| t.strip_suffix('-'))
                .is_some_and(|t| t == etag)
        })
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

/// How many invalidations a resource has seen: a page loaded under an older generation was
/// (or may have been) read before a write and is never stored or served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Generation {
    /// `purge_all` calls.
    purges: u64,
    /// `invalidate_resource` calls for the page's resource and every resource it read (a
    /// sum of counters that only grow: it changes whenever one of them does).
    resource: u64,
}

impl Generation {
    /// Whether an invalidation came between this generation and `later`.
    fn is_older_than(self, later: Generation) -> bool {
        self.purges < later.purges || self.resource < later.resource
    }
}

/// How a miss ended, shared with the requests that waited for it.
enum Miss<E> {
    /// The loader failed.
    Failed(E),
    /// The loader answered, but its resource was invalidated meanwhile: not stored.
    Outdated(Arc<CachedPage>),
}

/// Rendered responses, shared by every worker.
pub struct ResponseCache {
    fresh: Cache<CacheKey, Arc<CachedPage>>,
    stale: Cache<CacheKey, Arc<CachedPage>>,
    metrics: CacheMetrics,
    purges: AtomicU64,
    /// `invalidate_resource` calls per resource of the catalog; built once, never locked.
    invalidations: HashMap<String, AtomicU64>,
    /// Shared by names outside the catalog: invalidating one makes them all outdated.
    unlisted: AtomicU64,
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
            let weight =
                key.weight() + page.body.len() + page.variants.len() + page.etag.len() + 96;
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
    /// the stale copies kept for `stale_if_error`. `resources` are the names keys will carry
    /// (each gets its own invalidation counter).
    pub fn new(
        max_bytes: u64,
        metrics: CacheMetrics,
        resources: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            fresh: build(
                max_bytes - max_bytes / 4,
                KeepFor { stale: false },
                &metrics,
            ),
            stale: build(max_bytes / 4, KeepFor { stale: true }, &metrics),
            metrics,
            purges: AtomicU64::new(0),
            invalidations: resources
                .into_iter()
                .map(|name| (name, AtomicU64::new(0)))
                .collect(),
            unlisted: AtomicU64::new(0),
        }
    }

    /// The invalidation counter of `resource`.
    fn invalidations(&self, resource: &str) -> &AtomicU64 {
        self.invalidations.get(resource).unwrap_or(&self.unlisted)
    }

    /// The invalidation counters of every resource `key`'s answer reads.
    fn counters(&self, key: &CacheKey) -> Vec<&AtomicU64> {
        std::iter::once(&key.resource)
            .chain(&key.depends_on)
            .map(|r| self.invalidations(r))
            .collect()
    }

    /// The current generation of the responses counted by `invalidations`.
    fn generation(&self, invalidations: &[&AtomicU64]) -> Generation {
        Generation {
            purges: self.purges.load(Ordering::SeqCst),
            resource: invalidations
                .iter()
                .map(|c| c.load(Ordering::SeqCst))
                .fold(0, u64::wrapping_add),
        }
    }

    /// Whether `page` was loaded under the current generation of `invalidations`.
    fn is_current(&self, invalidations: &[&AtomicU64], page: &CachedPage) -> bool {
        page.generation == self.generation(invalidations)
    }

    /// Answers from the cache or runs `load` once for every concurrent miss of `key`.
    /// `bypass` (a client's `no-cache`) skips the lookup but stores the new answer. An answer
    /// whose load started before an invalidation of its resource is returned (to every request
    /// that waited for it and started before that invalidation too) but not stored; a request
    /// that started after the invalidation runs its own `load` instead, so it sees the write.
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
        let span = crate::telemetry::traces::exported_span!(
            "cache.lookup",
            cache.resource = %key.resource,
            cache.result = tracing::field::Empty
        );
        self.lookup(key, lifetime, bypass, load, &span)
            .instrument(span.clone())
            .await
    }

    /// [`Cache::get_or_load`] inside its span, which learns what the lookup found.
    async fn lookup<F, E>(
        &self,
        key: CacheKey,
        lifetime: Lifetime,
        bypass: bool,
        load: F,
        span: &tracing::Span,
    ) -> Result<(Arc<CachedPage>, Freshness), E>
    where
        F: Future<Output = Result<CachedPage, E>>,
        E: LoadError,
    {
        let found = |result: &'static str| span.record("cache.result", result);
        if lifetime.ttl.is_zero() {
            found("uncached");
            return Ok((Arc::new(load.await?), Freshness::Fresh));
        }
        let counters = self.counters(&key);
        let invalidations = counters.as_slice();
        // Read before the load starts: a write that lands while it runs changes it.
        let generation = self.generation(invalidations);
        let stamp = |mut page: CachedPage| {
            page.fresh_for = lifetime.ttl;
            page.stale_for = lifetime.stale_if_error.unwrap_or_default();
            page.generation = generation;
            Arc::new(page)
        };
        // Loads this request's own answer and stores it if no invalidation came meanwhile.
        let load_alone = |load| async {
            let page = stamp(load.await?);
            if self.is_current(invalidations, &page) {
                self.fresh.insert(key.clone(), page.clone()).await;
            }
            self.metrics.misses.inc();
            Ok((page, true))
        };
        // Pinned here so that moka may run it or leave it unpolled for this request to run.
        let mut load = pin!(load);
        let result = if bypass {
            found("bypass");
            load_alone(load).await
        } else {
            if let Some(hit) = self.fresh.get(&key).await {
                if self.is_current(invalidations, &hit) {
                    self.metrics.hits.inc();
                    found("hit");
                    return Ok((hit, Freshness::Fresh));
                }
                // Stored by a load that checked its generation just before an invalidation.
                self.fresh.invalidate(&key).await;
            }
            // A request that joined a load begun before a write it must see tries once more
            // to share a load begun after it (with the others that arrived meanwhile), then
            // runs its own.
            let mut attempts = 0;
            loop {
                attempts += 1;
                let ran = AtomicBool::new(false);
                let loaded = self
                    .fresh
                    .try_get_with(key.clone(), async {
                        ran.store(true, Ordering::Relaxed);
                        match load.as_mut().await {
                            Ok(page) => {
                                let page = stamp(page);
                                if self.is_current(invalidations, &page) {
                                    Ok(page)
                                } else {
                                    // An error to moka, so that it stores nothing.
                                    Err(Miss::Outdated(page))
                                }
                            }
                            Err(e) => Err(Miss::Failed(e)),
                        }
                    })
                    .await;
                let ran = ran.load(Ordering::Relaxed);
                let loaded = match loaded {
                    Ok(page) => Ok(page),
                    Err(shared) => match &*shared {
                        Miss::Outdated(page) => Ok(page.clone()),
                        Miss::Failed(e) => Err(e.clone()),
                    },
                };
                match loaded {
                    // Another request's load, begun before the write: this request's own
                    // `load` did not run.
                    Ok(page) if !ran && page.generation.is_older_than(generation) => {
                        if attempts < 2 {
                            continue;
                        }
                        found("miss");
                        break load_alone(load).await;
                    }
                    loaded => {
                        if ran {
                            self.metrics.misses.inc();
                            found("miss");
                        } else if loaded.is_ok() {
                            self.metrics.coalesced.inc();
                            found("coalesced");
                        }
                        break loaded.map(|page| (page, ran));
                    }
                }
            }
        };
        match result {
            Ok((page, stored_here)) => {
                if stored_here
                    && lifetime.stale_if_error.is_some()
                    && self.is_current(invalidations, &page)
                {
                    self.stale.insert(key, page.clone()).await;
                }
                Ok((page, Freshness::Fresh))
            }
            Err(e) if lifetime.stale_if_error.is_some() && e.is_source_outage() => {
                match self.stale.get(&key).await {
                    Some(old) if self.is_current(invalidations, &old) => {
                        self.metrics.stale_served.inc();
                        found("stale");
                        tracing::warn!(error = %e, resource = %key.resource, version = %key.version, "source failed; serving a stale response");
                        Ok((old, Freshness::Stale))
                    }
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The body of `page` (the answer cached under `key`) in `coding`: compressed the first
    /// time it is asked for, then served from the entry. A new variant is counted and the
    /// entry weighed again (it grew), if the cache still holds this very page.
    pub async fn encoded(
        &self,
        key: &CacheKey,
        page: &Arc<CachedPage>,
        coding: ContentCoding,
    ) -> Result<Bytes, EncodeError> {
        let (body, made) = page.encoded(coding).await?;
        if made {
            self.metrics
                .compressions
                .get_or_create(&CodingLabels {
                    encoding: coding.token(),
                })
                .inc();
            for cache in [&self.fresh, &self.stale] {
                cache
                    .entry(key.clone())
                    .and_compute_with(|held| {
                        let same = held.is_some_and(|e| Arc::ptr_eq(e.value(), page));
                        // Put again: moka weighs an entry when it is written. The expiry stays.
                        let op = if same {
                            moka::ops::compute::Op::Put(page.clone())
                        } else {
                            moka::ops::compute::Op::Nop
                        };
                        std::future::ready(op)
                    })
                    .await;
            }
        }
        Ok(body)
    }

    /// Drops every response of `resource` (in every version); loads of it already running
    /// are not stored.
    pub fn invalidate_resource(&self, resource: &str) {
        self.invalidations(resource).fetch_add(1, Ordering::SeqCst);
        for cache in [&self.fresh, &self.stale] {
            let name = resource.to_string();
            if cache
                .invalidate_entries_if(move |key, _| key.reads(&name))
                .is_err()
            {
                // Closures are enabled at build time; if that ever fails, drop everything.
                cache.invalidate_all();
            }
        }
    }

    /// Drops every response; loads already running are not stored.
    pub fn purge_all(&self) {
        self.purges.fetch_add(1, Ordering::SeqCst);
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

/// Whether an `If-None-Match` header value matches `etag` or a coded variant of it (weak
/// comparison, RFC 9110): a client that holds any coding of an unchanged page gets a 304.
pub fn none_match(header: &str, etag: &str) -> bool {
    header.trim() == "*"
        || header
            .split(',')
            .any(|candidate| tag_matches(candidate, etag, true))
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
    fn coded_variants_have_their_own_tags_and_name_their_page() {
        assert_eq!(variant_tag("\"abc\"", ContentCoding::Gzip), "\"abc-gzip\"");
        assert_eq!(variant_tag("W/\"abc\"", ContentCoding::Br), "W/\"abc-br\"");
        // If-None-Match: any coding of the page, weak or strong.
        assert!(none_match("\"abc-gzip\"", "\"abc\""));
        assert!(none_match("\"x\", W/\"abc-br\"", "\"abc\""));
        assert!(!none_match("\"abd-gzip\"", "\"abc\""));
        assert!(!none_match("\"abc-zstd\"", "\"abc\""));
        assert!(!none_match("\"abc-\"", "\"abc\""));
        // If-Match: strong only.
        assert!(tag_matches("\"abc-br\"", "\"abc\"", false));
        assert!(tag_matches("\"abc\"", "\"abc\"", false));
        assert!(!tag_matches("W/\"abc-br\"", "\"abc\"", false));
        assert!(!tag_matches("abc", "\"abc\"", true));
    }

    #[tokio::test]
    async fn a_cached_page_is_compressed_once_per_coding_and_weighed_with_its_variants() {
        use std::io::Read;
        let metrics = CacheMetrics::default();
        let cache = ResponseCache::new(1 << 20, metrics.clone(), ["jobs".to_string()]);
        let text = "{\"data\":[".to_string() + &"{\"job_id\":\"J0001\"},".repeat(200) + "]}";
        let load = || async { page(&text).await };
        let (cached, _) = cache
            .get_or_load(jobs_key(), CACHED, false, load())
            .await
            .unwrap();
        cache.refresh_gauges().await;
        let before = cache.fresh.weighted_size();
        let gzip = cache
            .encoded(&jobs_key(), &cached, ContentCoding::Gzip)
            .await
            .unwrap();
        let br = cache
            .encoded(&jobs_key(), &cached, ContentCoding::Br)
            .await
            .unwrap();
        // Asked again, from the entry the cache holds: nothing is compressed again.
        let (again, _) = cache
            .get_or_load(jobs_key(), CACHED, false, load())
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&again, &cached));
        let gzip_again = cache
            .encoded(&jobs_key(), &again, ContentCoding::Gzip)
            .await
            .unwrap();
        assert_eq!(gzip, gzip_again);
        let count = |coding: &'static str| {
            metrics
                .compressions
                .get_or_create(&CodingLabels { encoding: coding })
                .get()
        };
        assert_eq!((count("gzip"), count("br")), (1, 1));
        cache.refresh_gauges().await;
        let after = cache.fresh.weighted_size();
        assert_eq!(after - before, (gzip.len() + br.len()) as u64);
        let mut decoded = String::new();
        flate2::read::GzDecoder::new(&gzip[..])
            .read_to_string(&mut decoded)
            .unwrap();
        assert_eq!(decoded, text);
        let mut decoded = String::new();
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_string(&mut decoded)
            .unwrap();
        assert_eq!(decoded, text);
        assert!(gzip.len() < text.len() / 5 && br.len() < text.len() / 5);
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

    /// A loader's error for these tests; `Refused(true)` is a source outage.
    #[derive(Debug, Clone)]
    struct Refused(bool);

    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("refused")
        }
    }

    impl LoadError for Refused {
        fn is_source_outage(&self) -> bool {
            self.0
        }
    }

    fn jobs_key() -> CacheKey {
        CacheKey {
            resource: "jobs".into(),
            version: "v1".into(),
            request: "list:".into(),
            identity: String::new(),
            depends_on: Vec::new(),
            epoch: 0,
        }
    }

    const CACHED: Lifetime = Lifetime {
        ttl: Duration::from_secs(60),
        stale_if_error: Some(Duration::from_secs(60)),
    };

    async fn page(text: &str) -> Result<CachedPage, Refused> {
        Ok(CachedPage::new(text.as_bytes().to_vec(), None))
    }

    /// Starts a load of `jobs` that answers "old", runs `meanwhile` while it is under way
    /// (with a second request waiting for it), then lets it finish; returns what both requests
    /// got and what the next request gets when a load would answer "new".
    async fn load_across(meanwhile: impl FnOnce(&ResponseCache)) -> [String; 3] {
        let cache = ResponseCache::new(1 << 20, CacheMetrics::default(), ["jobs".to_string()]);
        let started = AtomicBool::new(false);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let first = cache.get_or_load(jobs_key(), CACHED, false, async {
            started.store(true, Ordering::SeqCst);
            released.await.map_err(|_| Refused(false))?;
            page("old").await
        });
        let waiter = async {
            while !started.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
            cache
                .get_or_load(jobs_key(), CACHED, false, page("unused"))
                .await
        };
        let control = async {
            while !started.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
            // Lets the waiter join the running load.
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
            meanwhile(&cache);
            release.send(()).map_err(|_| Refused(false))
        };
        let (first, waiter, sent) = tokio::join!(first, waiter, control);
        sent.unwrap();
        let next = cache
            .get_or_load(jobs_key(), CACHED, false, page("new"))
            .await;
        let text = |answer: Result<(Arc<CachedPage>, Freshness), Refused>| {
            String::from_utf8(answer.unwrap().0.body.to_vec()).unwrap()
        };
        [text(first), text(waiter), text(next)]
    }

    #[tokio::test]
    async fn a_load_under_way_when_its_resource_is_invalidated_is_not_stored() {
        let got = load_across(|cache| cache.invalidate_resource("jobs")).await;
        assert_eq!(got, ["old", "old", "new"]);
        let got = load_across(ResponseCache::purge_all).await;
        assert_eq!(got, ["old", "old", "new"]);
        // Another resource's invalidation does not concern this load.
        let got = load_across(|cache| cache.invalidate_resource("customers")).await;
        assert_eq!(got, ["old", "old", "old"]);
    }

    /// Request A starts a load of `jobs` that answers "old"; `write` runs while it is under
    /// way; `late` requests arrive after the write and wait for A's load (their own loads would
    /// answer "new"); then A's load finishes. Returns what A, each late request and a later
    /// request got, and how many of the late requests' loads ran.
    async fn read_after_write(
        write: impl FnOnce(&ResponseCache),
        late: usize,
    ) -> (Vec<String>, usize) {
        let cache = ResponseCache::new(1 << 20, CacheMetrics::default(), ["jobs".to_string()]);
        let started = AtomicBool::new(false);
        let written = AtomicBool::new(false);
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let a = cache.get_or_load(jobs_key(), CACHED, false, async {
            started.store(true, Ordering::SeqCst);
            released.await.map_err(|_| Refused(false))?;
            page("old").await
        });
        let after_the_write = (0..late).map(|_| async {
            while !written.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
            cache
                .get_or_load(jobs_key(), CACHED, false, async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    page("new").await
                })
                .await
        });
        let control = async {
            while !started.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
            write(&cache);
            written.store(true, Ordering::SeqCst);
            // Lets the late requests join the running load.
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
            release.send(()).map_err(|_| Refused(false))
        };
        let (a, late, sent) =
            tokio::join!(a, futures_util::future::join_all(after_the_write), control);
        sent.unwrap();
        let later = cache
            .get_or_load(jobs_key(), CACHED, false, page("unused"))
            .await;
        let text = |answer: Result<(Arc<CachedPage>, Freshness), Refused>| {
            String::from_utf8(answer.unwrap().0.body.to_vec()).unwrap()
        };
        let got = std::iter::once(a)
            .chain(late)
            .chain(std::iter::once(later))
            .map(text)
            .collect();
        (got, loads.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_read_that_starts_after_a_write_never_gets_a_page_loaded_before_it() {
        for write in [
            (|cache: &ResponseCache| cache.invalidate_resource("jobs")) as fn(&ResponseCache),
            ResponseCache::purge_all,
        ] {
            let (got, b_loads) = read_after_write(write, 1).await;
            // A started before the write and may see the old row; B and later reads may not.
            assert_eq!(got, ["old", "new", "new"]);
            assert_eq!(b_loads, 1, "B loaded the page itself");
        }
        // Another resource's write does not concern B: it shares A's load, which is stored.
        let (got, b_loads) =
            read_after_write(|cache| cache.invalidate_resource("customers"), 1).await;
        assert_eq!(got, ["old", "old", "old"]);
        assert_eq!(b_loads, 0);
    }

    #[tokio::test]
    async fn reads_that_start_after_a_write_share_one_new_load() {
        let (got, loads) = read_after_write(|cache| cache.invalidate_resource("jobs"), 2).await;
        assert_eq!(got, ["old", "new", "new", "new"]);
        assert_eq!(loads, 1, "B and C shared one load");
    }

    #[test]
    fn names_outside_the_catalog_share_one_counter() {
        let cache = ResponseCache::new(1 << 20, CacheMetrics::default(), ["jobs".to_string()]);
        let ghost = cache.generation(&[cache.invalidations("ghost")]);
        let jobs = cache.generation(&[cache.invalidations("jobs")]);
        cache.invalidate_resource("phantom");
        assert!(ghost.is_older_than(cache.generation(&[cache.invalidations("ghost")])));
        assert_eq!(cache.generation(&[cache.invalidations("jobs")]), jobs);
        cache.invalidate_resource("jobs");
        assert!(jobs.is_older_than(cache.generation(&[cache.invalidations("jobs")])));
    }

    #[tokio::test]
    async fn a_page_stored_under_an_older_generation_is_not_served() {
        // As if a load had checked its generation just before an invalidation and been
        // stored just after it.
        let cache = ResponseCache::new(1 << 20, CacheMetrics::default(), ["jobs".to_string()]);
        let mut old = CachedPage::new(b"old".to_vec(), None);
        (old.fresh_for, old.stale_for) = (CACHED.ttl, Duration::from_secs(60));
        let old = Arc::new(old);
        cache.invalidate_resource("jobs");
        cache.fresh.insert(jobs_key(), old.clone()).await;
        cache.stale.insert(jobs_key(), old).await;
        let (fresh, _) = cache
            .get_or_load(jobs_key(), CACHED, false, page("new"))
            .await
            .unwrap();
        assert_eq!(&fresh.body[..], b"new");

        let cache = ResponseCache::new(1 << 20, CacheMetrics::default(), ["jobs".to_string()]);
        let mut old = CachedPage::new(b"old".to_vec(), None);
        (old.fresh_for, old.stale_for) = (CACHED.ttl, Duration::from_secs(60));
        cache.invalidate_resource("jobs");
        cache.stale.insert(jobs_key(), Arc::new(old)).await;
        let outage = cache
            .get_or_load(jobs_key(), CACHED, false, async { Err(Refused(true)) })
            .await;
        assert!(
            outage.is_err(),
            "no stale copy from before the invalidation"
        );
    }

    /// A page of `jobs` that expanded `customers`: a write to `customers` drops it and keeps a
    /// load under way from being stored; a write to another resource does not.
    #[tokio::test]
    async fn a_page_that_read_another_resource_follows_its_invalidations() {
        let cache = ResponseCache::new(
            1 << 20,
            CacheMetrics::default(),
            [
                "jobs".to_string(),
                "customers".to_string(),
                "plants".to_string(),
            ],
        );
        let expanded = CacheKey {
            depends_on: vec!["customers".into()],
            ..jobs_key()
        };
        let get = |text: &'static str| {
            let key = expanded.clone();
            let cache = &cache;
            async move {
                let (page, _) = cache
                    .get_or_load(key, CACHED, false, page(text))
                    .await
                    .unwrap();
                String::from_utf8(page.body.to_vec()).unwrap()
            }
        };
        assert_eq!(get("old").await, "old");
        assert_eq!(get("unused").await, "old");
        cache.invalidate_resource("plants");
        assert_eq!(get("unused").await, "old");
        cache.invalidate_resource("customers");
        assert_eq!(get("new").await, "new");
        // A load that began before a write to `customers` is answered but not stored.
        let counters = cache.counters(&expanded);
        let before = cache.generation(&counters);
        cache.invalidate_resource("customers");
        assert!(before.is_older_than(cache.generation(&counters)));
        assert_eq!(get("newer").await, "newer");
    }
}
