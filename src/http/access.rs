//! The edge of auth: who the caller is (token or anonymous), its rate limit, what it may
//! read of a resource, and the audit line of every refusal.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest};

use super::problem::ApiError;
use super::AppState;
use crate::auth::{AuthError, Principal};
use crate::catalog::access::{Denial, Grant, Verb};
use crate::catalog::Resource;

/// Tracing target of the audit log.
pub const AUDIT: &str = "portico::audit";

/// The caller of `req`: a verified token's principal, or the anonymous one when there is no
/// `Authorization` header. Spends one token of its rate limit. The principal is kept in the
/// request's extensions for the audit log.
pub async fn principal(req: &HttpRequest, state: &AppState) -> Result<Arc<Principal>, ApiError> {
    let mut headers = req.headers().get_all(header::AUTHORIZATION);
    let authorization = match (headers.next(), headers.next()) {
        (_, Some(_)) => Some(Err(AuthError::SeveralHeaders)),
        (first, None) => first.map(|v| v.to_str().map_err(|_| AuthError::Malformed)),
    };
    let verified = match (authorization, &state.verifier) {
        (None, _) => Ok(Arc::new(Principal::anonymous())),
        (Some(Ok(value)), Some(verifier)) => verifier.verify_header(value).await,
        (Some(Err(e)), _) => Err(e),
        // No [auth]: every resource is anonymous, and a token cannot be checked.
        (Some(_), None) => Err(AuthError::UnknownKey),
    };
    let client = || {
        let address = req.peer_addr().map(|a| a.ip().to_string());
        format!("ip:{}", address.unwrap_or_default())
    };
    let principal = match verified {
        Ok(principal) => principal,
        Err(e) => {
            // Refused tokens spend the client address's bucket, so guessing is throttled too.
            if let Some(limiter) = &state.limiter {
                limiter.admit(&client()).map_err(ApiError::RateLimited)?;
            }
            return Err(e.into());
        }
    };
    req.extensions_mut().insert(principal.clone());
    if let Some(limiter) = &state.limiter {
        let key = match &principal.subject {
            Some(subject) => format!("sub:{subject}"),
            None => client(),
        };
        limiter.admit(&key).map_err(ApiError::RateLimited)?;
    }
    Ok(principal)
}

/// What `principal` may read of `resource`.
pub fn grant(resource: &Resource, principal: &Principal) -> Result<Grant, ApiError> {
    authorize(resource, principal, Verb::Read)
}

/// What `principal` may write of `resource`: writes always need a verified token, and what a
/// read needs too (a write answers with the row as stored, and even `{}` would read it).
pub fn write_grant(resource: &Resource, principal: &Principal) -> Result<Grant, ApiError> {
    if !principal.authenticated {
        return Err(AuthError::Missing.into());
    }
    authorize(resource, principal, Verb::Write)
}

fn authorize(resource: &Resource, principal: &Principal, verb: Verb) -> Result<Grant, ApiError> {
    resource
        .access
        .authorize(principal, verb)
        .map_err(|denial| match denial {
            Denial::Unauthenticated => ApiError::Unauthorized(AuthError::Missing),
            Denial::MissingScope(scope) => {
                let hint = principal.scope_hint(&scope);
                ApiError::InsufficientScope(scope, hint)
            }
            other => ApiError::Forbidden(other.to_string()),
        })
}

/// The admin endpoints: the admin scope when [auth] is configured, loopback otherwise.
pub async fn admin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    match &state.admin_scope {
        Some(scope) => {
            let principal = principal(req, state).await?;
            if !principal.authenticated {
                return Err(AuthError::Missing.into());
            }
            if !principal.has_scope(scope) {
                return Err(ApiError::InsufficientScope(
                    scope.clone(),
                    principal.scope_hint(scope),
                ));
            }
            Ok(())
        }
        None => match req.peer_addr() {
            Some(addr) if addr.ip().is_loopback() => Ok(()),
            _ => Err(ApiError::Forbidden(
                "without [auth], administration is only accepted from loopback".into(),
            )),
        },
    }
}

/// Logs a refused request: who, what and why; never the token.
pub fn audit_refusal(req: &HttpRequest, status: u16, error: &ApiError) {
    let Some(reason) = error.refusal() else {
        return;
    };
    let extensions = req.extensions();
    let who = match extensions.get::<Arc<Principal>>() {
        Some(principal) => principal.name(),
        // A token came but did not verify: nobody can be named.
        None if req.headers().contains_key(header::AUTHORIZATION) => "unverified",
        None => "anonymous",
    };
    let client = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    tracing::warn!(
        target: AUDIT,
        event = "refused",
        who,
        client = %client,
        method = %req.method(),
        path = %req.path(),
        status,
        reason,
        detail = %error,
        "request refused"
    );
}
