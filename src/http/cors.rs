//! Cross-origin requests (`[server.cors]`, through actix-cors): preflights answered before
//! any handler runs (no token, no database), refused ones as problem+json, and no CORS header
//! at all on an answer to an origin that is not allowed.

use actix_cors::{Cors, CorsError};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::HttpResponse;

use super::problem::ApiError;
use crate::config::CorsConfig;

/// The CORS layer of `config`; without one, a layer that allows nothing (and is not mounted).
pub fn layer(config: Option<&CorsConfig>) -> Cors {
    let Some(config) = config else {
        return Cors::default();
    };
    // An origin that is not allowed is served as if it had sent no `Origin`: a browser then
    // keeps the answer from the page, and other clients are not concerned.
    let mut cors = Cors::default()
        .block_on_origin_mismatch(false)
        .allowed_methods(config.allowed_methods.iter().map(String::as_str))
        .allowed_headers(config.allowed_headers.iter().map(String::as_str))
        .expose_headers(config.exposed_headers.iter().map(String::as_str))
        .max_age(usize::try_from(config.max_age.as_secs()).ok());
    if config.any_origin() {
        cors = cors.allow_any_origin().send_wildcard();
    } else {
        for origin in &config.allowed_origins {
            cors = cors.allowed_origin(origin);
        }
    }
    if config.allow_credentials {
        cors = cors.supports_credentials();
    }
    cors
}

/// Turns a refused preflight into problem+json (403, saying what was refused and which setting
/// allows it), and strips the CORS headers actix-cors adds to answers that allow no origin.
pub async fn refusals(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let mut response = next.call(req).await?;
    let refusal = response
        .response()
        .error()
        .and_then(|e| e.as_error::<CorsError>())
        .map(|e| refusal(e, response.request()));
    if let Some(refusal) = refusal {
        let (request, _) = response.into_parts();
        let answer = HttpResponse::from_error(refusal);
        return Ok(ServiceResponse::new(request, answer).map_into_right_body());
    }
    let headers = response.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        headers.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
        headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
    }
    Ok(response.map_into_left_body())
}

/// What a refused preflight asked for, and the setting that would allow it.
fn refusal(error: &CorsError, req: &actix_web::HttpRequest) -> ApiError {
    let asked = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    ApiError::Forbidden(match error {
        CorsError::OriginNotAllowed => format!(
            "pages from `{}` may not call this API (server.cors.allowed_origins)",
            asked(header::ORIGIN)
        ),
        CorsError::MethodNotAllowed => format!(
            "pages from other origins may not send `{}` (server.cors.allowed_methods)",
            asked(header::ACCESS_CONTROL_REQUEST_METHOD)
        ),
        CorsError::HeadersNotAllowed => format!(
            "pages from other origins may not send some of the headers `{}` \
             (server.cors.allowed_headers)",
            asked(header::ACCESS_CONTROL_REQUEST_HEADERS)
        ),
        other => format!("cross-origin request refused: {other}"),
    })
}
