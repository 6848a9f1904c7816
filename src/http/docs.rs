//! What describes the API: the versions at `/`, their OpenAPI documents at
//! `/openapi/{version}.json`, and Swagger UI at `/docs`, from assets embedded in the binary (no
//! network needed), reading those documents.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use utoipa_swagger_ui::{Config, Url};

use super::problem::ApiError;
use super::Current;
use crate::catalog::Catalog;

/// The Swagger UI configuration: one entry per version, the newest first.
pub fn config(catalog: &Catalog) -> Arc<Config<'static>> {
    let urls: Vec<Url<'static>> = catalog
        .versions
        .values()
        .rev()
        .enumerate()
        .map(|(i, v)| {
            let url = intern(format!("/openapi/{}.json", v.name));
            Url::with_primary(intern(v.name.clone()), url, i == 0)
        })
        .collect();
    Arc::new(
        Config::new(urls)
            .try_it_out_enabled(true)
            .persist_authorization(true)
            .display_operation_id(true)
            // Swagger UI would otherwise ask validator.swagger.io for a badge.
            .validator_url("none"),
    )
}

/// Swagger UI's `Config<'static>` wants static names: each distinct one is leaked once.
fn intern(text: String) -> &'static str {
    static SEEN: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = seen.iter().find(|s| **s == text) {
        return known;
    }
    let leaked: &'static str = Box::leak(text.into_boxed_str());
    seen.push(leaked);
    leaked
}

/// `GET /docs` → `/docs/`, where relative asset paths resolve.
pub async fn redirect() -> HttpResponse {
    HttpResponse::MovedPermanently()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// `GET /docs/{file}`: the UI's page and assets.
pub async fn asset(req: HttpRequest, state: Current) -> Result<HttpResponse, ApiError> {
    let file = req.match_info().get("file").unwrap_or_default();
    match utoipa_swagger_ui::serve(file, state.docs.clone()) {
        Ok(Some(found)) => {
            let mut response = HttpResponse::Ok();
            if found.gzpipped {
                response.insert_header((header::CONTENT_ENCODING, "gzip"));
            }
            Ok(response
                .content_type(found.content_type)
                .body(found.bytes.to_vec()))
        }
        Ok(None) => Err(super::request::not_served(&req)),
        Err(e) => Err(ApiError::Internal(format!("Swagger UI: {e}"))),
    }
}

/// `GET /`: the versions, their status and where their documents are.
pub async fn versions(state: Current) -> HttpResponse {
    let versions: Vec<serde_json::Value> = state
        .catalog
        .versions
        .values()
        .map(|v| {
            serde_json::json!({
                "name": v.name,
                "description": v.description,
                "status": if v.deprecated.is_some() { "deprecated" } else { "current" },
                "deprecated": v.deprecated.map(|d| d.iso()),
                "sunset": v.sunset.map(|d| d.iso()),
                "links": {
                    "self": format!("/{}", v.name),
                    "openapi": format!("/openapi/{}.json", v.name),
                },
            })
        })
        .collect();
    HttpResponse::Ok().json(serde_json::json!({ "versions": versions }))
}

/// `GET /openapi/{version}.json` (or `.yaml`).
pub async fn openapi_document(req: HttpRequest, state: Current) -> Result<HttpResponse, ApiError> {
    let file = req.match_info().get("file").unwrap_or_default();
    let (version, yaml) = match file.strip_suffix(".json") {
        Some(version) => (version, false),
        None => (file.strip_suffix(".yaml").unwrap_or(file), true),
    };
    state
        .documents
        .get(version)
        .filter(|_| file.ends_with(".json") || file.ends_with(".yaml"))
        .map(|document| match yaml {
            false => HttpResponse::Ok()
                .content_type("application/json")
                .body(document.json.clone()),
            true => HttpResponse::Ok()
                .content_type("application/yaml")
                .body(document.yaml.clone()),
        })
        .ok_or_else(|| ApiError::NotFound(format!("no OpenAPI document at {}", req.path())))
}
