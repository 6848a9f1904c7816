//! The serving state, swappable by a configuration reload: each request takes the state once
//! (`Current`) and finishes on it, whatever a reload swaps in meanwhile.

use std::sync::{Arc, RwLock};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use futures_util::future::BoxFuture;
use serde::Serialize;

use super::problem::ApiError;
use super::AppState;
use crate::config::Problem;

/// The state new requests are served from, and what reloads it.
pub struct Live {
    // A read lock and an `Arc` clone once per request; written only by a reload. Cheaper to
    // keep than a dependency, and uncontended in practice.
    state: RwLock<Arc<AppState>>,
    reload: std::sync::OnceLock<Arc<dyn Reload>>,
}

impl Live {
    /// Serves `state` until a reload swaps another in.
    pub fn new(state: AppState) -> Self {
        Self {
            state: RwLock::new(Arc::new(state)),
            reload: std::sync::OnceLock::new(),
        }
    }

    /// The state new requests are served from.
    pub fn current(&self) -> Arc<AppState> {
        match self.state.read() {
            Ok(state) => state.clone(),
            // A panic while swapping cannot leave a half-written `Arc`: the value is whole.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Serves `state` to every request that starts from now on; requests in flight finish
    /// on the state they took.
    pub fn swap(&self, state: Arc<AppState>) {
        match self.state.write() {
            Ok(mut current) => *current = state,
            Err(poisoned) => *poisoned.into_inner() = state,
        }
    }

    /// Names what `POST /admin/reload` runs; the first one set stays.
    pub fn set_reload(&self, reload: Arc<dyn Reload>) {
        let _ = self.reload.set(reload);
    }

    /// What reloads the configuration; `None` for a service started without a file.
    pub fn reloader(&self) -> Option<Arc<dyn Reload>> {
        self.reload.get().cloned()
    }
}

/// The state one request is served from: taken once per request (the first extraction pins
/// it in the request's extensions), so every part of a request sees one configuration.
/// Derefs to [`AppState`].
#[derive(Clone)]
pub struct Current(Arc<AppState>);

impl Current {
    /// The state `req` is served from; `None` outside the application (no `Live` state).
    pub fn of(req: &HttpRequest) -> Option<Current> {
        if let Some(pinned) = req.extensions().get::<Current>() {
            return Some(pinned.clone());
        }
        let live = req.app_data::<web::Data<Live>>()?;
        let current = Current(live.current());
        req.extensions_mut().insert(current.clone());
        Some(current)
    }

    /// Pins the current state on a request before it reaches the router (the middleware
    /// that labels and counts it sees the same state as its handler).
    pub fn pin(req: &actix_web::dev::ServiceRequest) -> Option<Current> {
        let live = req.app_data::<web::Data<Live>>()?;
        let current = Current(live.current());
        req.extensions_mut().insert(current.clone());
        Some(current)
    }
}

impl std::ops::Deref for Current {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.0
    }
}

impl FromRequest for Current {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(
            Current::of(req).ok_or_else(|| ApiError::Internal("no serving state".into())),
        )
    }
}

/// What `POST /admin/reload` and `SIGHUP` run; the composition root implements it.
pub trait Reload: Send + Sync {
    /// Re-reads the configuration file, checks it completely and swaps it in; or refuses it,
    /// and the running configuration keeps serving.
    fn reload(&self) -> BoxFuture<'_, Result<Reloaded, ReloadError>>;
}

/// What a reload changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reloaded {
    /// The configuration's generation now serving (1 at start).
    pub generation: u64,
    /// Whether anything differed from the running configuration.
    pub changed: bool,
    /// Sources whose settings did not change: their pools were kept.
    pub sources_kept: Vec<String>,
    /// Sources whose settings changed: built afresh.
    pub sources_rebuilt: Vec<String>,
    /// Sources new in the file.
    pub sources_added: Vec<String>,
    /// Sources no longer in the file: dropped.
    pub sources_removed: Vec<String>,
    /// Resources whose cached answers were dropped (every resource when `[auth]` or a
    /// setting every answer depends on changed).
    pub caches_dropped: Vec<String>,
    /// Change feeds whose polling started (new or changed).
    pub feeds_started: Vec<String>,
    /// Change feeds whose polling stopped (removed or changed).
    pub feeds_stopped: Vec<String>,
    /// Change feeds polling on undisturbed.
    pub feeds_kept: Vec<String>,
}

/// Why a reload was not applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// The file has problems (every one of them), or changes settings bound at start.
    #[error("the configuration was refused: {} problem(s)", .0.len())]
    Refused(Vec<Problem>),
    /// The service was not started from a file.
    #[error("this Portico was not started from a configuration file")]
    NoFile,
    /// The new configuration could not be put in place (the state store refused the
    /// configured subscriptions); the old one keeps serving.
    #[error("the configuration could not be applied: {0}")]
    Failed(String),
}

/// `POST /admin/reload`: re-reads the configuration file and swaps it in.
pub async fn reload(req: HttpRequest, state: Current) -> Result<HttpResponse, ApiError> {
    super::access::admin(&req, &state).await?;
    let reloader = req
        .app_data::<web::Data<Live>>()
        .and_then(|live| live.reloader())
        .ok_or_else(|| ApiError::Conflict(ReloadError::NoFile.to_string()))?;
    match reloader.reload().await {
        Ok(reloaded) => {
            tracing::info!(target: "portico::audit", action = "config.reload", generation = reloaded.generation, "configuration reloaded");
            Ok(HttpResponse::Ok().json(reloaded))
        }
        Err(ReloadError::Refused(problems)) => Err(ApiError::ConfigurationRefused(problems)),
        Err(e @ ReloadError::NoFile) => Err(ApiError::Conflict(e.to_string())),
        Err(ReloadError::Failed(why)) => Err(ApiError::Internal(why)),
    }
}
