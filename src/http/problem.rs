//! RFC 9457 problem details: the one place errors become HTTP responses.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::auth::AuthError;
use crate::cache::LoadError;
use crate::catalog::query::QueryError;
pub use crate::catalog::write::FieldError;
use crate::problem_kind::{self, ProblemKind};
use crate::source::SourceError;

/// Everything a request can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// No such version, resource or row (or the row is hidden).
    #[error("{0}")]
    NotFound(String),
    /// A query parameter or key the client wrote is wrong.
    #[error(transparent)]
    BadParameter(#[from] QueryError),
    /// The bearer token is missing (where one is needed) or invalid.
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    /// The token lacks the scope this needs; the second part says where the token may carry
    /// it unread (a claim `[auth] scope_claim` does not name).
    #[error("the token lacks the scope `{0}`{hint}", hint = .1.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    InsufficientScope(String, Option<String>),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The principal's rate limit is spent for now.
    #[error("rate limit reached")]
    RateLimited(std::time::Duration),
    /// The route exists but not for this method; the methods it allows.
    #[error("method not allowed")]
    MethodNotAllowed(String),
    /// The request body is not JSON, or not well-formed.
    #[error("{0}")]
    MalformedBody(String),
    /// The request body is not a media type this accepts.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// `Accept` takes no representation this path produces.
    #[error("{0}")]
    NotAcceptable(String),
    /// The client did not send its body within the time allowed.
    #[error("the request body did not arrive within {} s", .0.as_secs_f64())]
    RequestTimeout(std::time::Duration),
    /// The request body is over the limit, in bytes.
    #[error("the request body is over {0} bytes")]
    PayloadTooLarge(usize),
    /// The body breaks the resource's rules: every problem, with its JSON pointer.
    #[error("the request body is invalid")]
    Invalid(Vec<FieldError>),
    /// The write conflicts with the database's constraints or another request.
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` names a version the row no longer has.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The resource needs `If-Match` on this method.
    #[error("{0}")]
    PreconditionRequired(String),
    /// A pull-feed cursor points into pruned history.
    #[error("{0}")]
    CursorExpired(String),
    /// An `Idempotency-Key` was reused with another request body.
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// The legacy database could not answer.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A fault of Portico itself (logged; the response says nothing more).
    #[error("internal error: {0}")]
    Internal(String),
    /// A reloaded configuration was refused: every problem, with its location.
    #[error("the configuration was refused")]
    ConfigurationRefused(Vec<crate::config::Problem>),
}

/// The JSON body of a problem response.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// Stable URI reference naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: &'static str,
    /// HTTP status.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// The offending query parameter, when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// Every problem of an invalid body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// Every problem of a refused configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<crate::config::Problem>>,
}

/// Media type of problem responses.
pub const PROBLEM_JSON: &str = "application/problem+json";

impl ApiError {
    /// The kind of problem this is, from the one table of kinds.
    pub fn kind(&self) -> &'static ProblemKind {
        match self {
            ApiError::NotFound(_) => &problem_kind::NOT_FOUND,
            ApiError::Unauthorized(AuthError::KeysUnavailable { .. }) => {
                &problem_kind::AUTH_UNAVAILABLE
            }
            ApiError::Unauthorized(AuthError::SeveralHeaders) => &problem_kind::INVALID_REQUEST,
            ApiError::Unauthorized(_) => &problem_kind::UNAUTHORIZED,
            ApiError::InsufficientScope(..) => &problem_kind::INSUFFICIENT_SCOPE,
            ApiError::Forbidden(_) => &problem_kind::FORBIDDEN,
            ApiError::RateLimited(_) => &problem_kind::RATE_LIMITED,
            ApiError::BadParameter(_) => &problem_kind::BAD_PARAMETER,
            ApiError::MethodNotAllowed(_) => &problem_kind::METHOD_NOT_ALLOWED,
            ApiError::MalformedBody(_) => &problem_kind::MALFORMED_BODY,
            ApiError::UnsupportedMediaType(_) => &problem_kind::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotAcceptable(_) => &problem_kind::NOT_ACCEPTABLE,
            ApiError::RequestTimeout(_) => &problem_kind::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => &problem_kind::PAYLOAD_TOO_LARGE,
            ApiError::Invalid(_) => &problem_kind::VALIDATION,
            ApiError::Conflict(_) | ApiError::Source(SourceError::Constraint { .. }) => {
                &problem_kind::CONFLICT
            }
            ApiError::PreconditionFailed(_) => &problem_kind::PRECONDITION_FAILED,
            ApiError::PreconditionRequired(_) => &problem_kind::PRECONDITION_REQUIRED,
            ApiError::IdempotencyKeyReused(_) => &problem_kind::IDEMPOTENCY_KEY_REUSED,
            ApiError::CursorExpired(_) => &problem_kind::CURSOR_EXPIRED,
            ApiError::Source(SourceError::Busy { .. }) => &problem_kind::SOURCE_BUSY,
            ApiError::Source(SourceError::Unavailable { .. } | SourceError::BreakerOpen { .. }) => {
                &problem_kind::SOURCE_UNAVAILABLE
            }
            ApiError::Source(SourceError::Timeout { .. }) => &problem_kind::SOURCE_TIMEOUT,
            ApiError::Internal(_) => &problem_kind::INTERNAL,
            ApiError::ConfigurationRefused(_) => &problem_kind::CONFIGURATION_REFUSED,
            ApiError::Source(SourceError::Query { .. }) => &problem_kind::SOURCE_ERROR,
            ApiError::Source(SourceError::Unsupported { .. }) => {
                &problem_kind::UNSUPPORTED_BY_SOURCE
            }
        }
    }

    /// Short reason for the audit log when the request was refused (401, 403, 429).
    pub fn refusal(&self) -> Option<&'static str> {
        match self {
            ApiError::Unauthorized(e) => Some(e.reason()),
            ApiError::InsufficientScope(..) => Some("missing_scope"),
            ApiError::Forbidden(_) => Some("forbidden"),
            ApiError::RateLimited(_) => Some("rate_limited"),
            _ => None,
        }
    }

    /// `WWW-Authenticate` for 401 and scope failures (RFC 6750 §3).
    fn challenge(&self) -> Option<String> {
        match self {
            ApiError::Unauthorized(AuthError::Missing) => Some("Bearer realm=\"portico\"".into()),
            ApiError::Unauthorized(AuthError::KeysUnavailable { .. }) => None,
            ApiError::Unauthorized(e @ AuthError::SeveralHeaders) => Some(format!(
                "Bearer realm=\"portico\", error=\"invalid_request\", error_description=\"{e}\""
            )),
            ApiError::Unauthorized(e) => Some(format!(
                "Bearer realm=\"portico\", error=\"invalid_token\", error_description=\"{e}\""
            )),
            ApiError::InsufficientScope(scope, _) => Some(format!(
                "Bearer realm=\"portico\", error=\"insufficient_scope\", scope=\"{scope}\""
            )),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Source(
                SourceError::Busy { retry_after, .. }
                | SourceError::BreakerOpen { retry_after, .. },
            ) => Some(retry_after.as_secs().max(1)),
            ApiError::Source(SourceError::Unavailable { .. } | SourceError::Timeout { .. }) => {
                Some(5)
            }
            ApiError::Unauthorized(AuthError::KeysUnavailable { retry_after }) => {
                Some((*retry_after).max(1))
            }
            ApiError::RateLimited(wait) => Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            _ => None,
        }
    }

    /// The problem body; details of database failures stay in the log, never in the response.
    pub fn problem(&self) -> Problem {
        let kind = self.kind();
        let (detail, parameter) = match self {
            ApiError::NotFound(d)
            | ApiError::Forbidden(d)
            | ApiError::MalformedBody(d)
            | ApiError::UnsupportedMediaType(d)
            | ApiError::NotAcceptable(d)
            | ApiError::Conflict(d)
            | ApiError::PreconditionFailed(d)
            | ApiError::PreconditionRequired(d)
            | ApiError::IdempotencyKeyReused(d) => (d.clone(), None),
            ApiError::CursorExpired(d) => (d.clone(), Some("after".to_string())),
            ApiError::PayloadTooLarge(_) | ApiError::RequestTimeout(_) => (self.to_string(), None),
            ApiError::Invalid(errors) => (
                match errors.as_slice() {
                    [one] => format!("{} {}", pointer_name(&one.pointer), one.detail),
                    many => format!("{} problems in the request body", many.len()),
                },
                None,
            ),
            ApiError::Unauthorized(_) | ApiError::InsufficientScope(..) => (self.to_string(), None),
            ApiError::RateLimited(_) => (
                "this caller's request rate is over its limit; retry after the given seconds"
                    .to_string(),
                None,
            ),
            ApiError::BadParameter(e) => (e.to_string(), Some(e.parameter.clone())),
            ApiError::MethodNotAllowed(_) => (
                "this resource does not accept that method".to_string(),
                None,
            ),
            ApiError::Source(e) => (public_detail(e), None),
            ApiError::Internal(_) => ("Portico failed; the log has the details".to_string(), None),
            ApiError::ConfigurationRefused(problems) => (
                format!(
                    "{} problem(s) in the configuration file; the running configuration keeps serving",
                    problems.len()
                ),
                None,
            ),
        };
        Problem {
            kind: kind.type_uri(),
            title: kind.title,
            status: kind.status,
            detail,
            parameter,
            errors: match self {
                ApiError::Invalid(errors) => Some(errors.clone()),
                _ => None,
            },
            problems: match self {
                ApiError::ConfigurationRefused(problems) => Some(problems.clone()),
                _ => None,
            },
        }
    }
}

fn pointer_name(pointer: &str) -> String {
    if pointer.is_empty() {
        "the body".to_string()
    } else {
        format!("`{}`", pointer.trim_start_matches('/'))
    }
}

fn public_detail(error: &SourceError) -> String {
    match error {
        SourceError::Busy { source_name, .. } => {
            format!("source `{source_name}` is serving as many queries as it is allowed to; retry shortly")
        }
        SourceError::Unavailable { source_name, .. } => {
            format!("source `{source_name}` cannot be reached")
        }
        SourceError::BreakerOpen { source_name, .. } => format!(
            "source `{source_name}` is failing: its circuit breaker is open and no statements \
             are sent to it until the cool-down ends; retry after the given seconds"
        ),
        SourceError::Timeout {
            source_name,
            timeout,
        } => {
            format!(
                "source `{source_name}` did not answer within {} ms",
                timeout.as_millis()
            )
        }
        SourceError::Constraint { violation, .. } => {
            format!("the write {}", violation.detail(None))
        }
        SourceError::Query { source_name, .. } => {
            format!(
                "source `{source_name}` refused the query; the operator should run `portico check`"
            )
        }
        // What of the request cannot be done; the source, the capability, how it is known
        // and the fix are the operator's (the log line, `portico check`).
        SourceError::Unsupported { request, .. } => format!(
            "the data source behind this resource cannot do what this request needs: \
             {request}; the operator's log and `portico check` say why"
        ),
    }
}

impl LoadError for ApiError {
    fn is_source_outage(&self) -> bool {
        matches!(self, ApiError::Source(e) if e.is_outage())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        // Every status in the table is a valid one (a test checks).
        StatusCode::from_u16(self.kind().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Source(e) => tracing::warn!(error = %e, "source failure"),
            ApiError::Internal(e) => tracing::error!(error = %e, "internal failure"),
            _ => {}
        }
        let problem = self.problem();
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        if let Some(seconds) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if let Some(challenge) = self.challenge() {
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        if let ApiError::MethodNotAllowed(allow) = self {
            response.insert_header((header::ALLOW, allow.clone()));
        }
        response.body(serde_json::to_string(&problem).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsupported_request_tells_the_client_what_not_how_to_configure() {
        let error = ApiError::Source(SourceError::Unsupported {
            source_name: "access".into(),
            request: "listing rows in order (every page is in order)".into(),
            needs: "ORDER BY (capabilities.order_by = false, probed at start) to read `Orders`"
                .into(),
            fix: "serve its tables from memory with [sources.access] snapshot = { … }".into(),
        });
        let problem = error.problem();
        assert_eq!(problem.status, 501);
        assert_eq!(
            problem.detail,
            "the data source behind this resource cannot do what this request needs: listing \
             rows in order (every page is in order); the operator's log and `portico check` \
             say why"
        );
        // The operator's text stays in the error, which the log line prints.
        let logged = error.to_string();
        assert!(logged.contains("source `access`") && logged.contains("snapshot = {"));
    }

    #[test]
    fn an_open_breaker_is_unavailable_for_the_cool_down_left() {
        let error = ApiError::Source(SourceError::BreakerOpen {
            source_name: "erp".into(),
            retry_after: std::time::Duration::from_secs(17),
        });
        let problem = error.problem();
        assert_eq!(problem.status, 503);
        assert_eq!(problem.kind, "/problems/source-unavailable");
        assert!(
            problem.detail.contains("`erp`") && problem.detail.contains("circuit breaker is open"),
            "{}",
            problem.detail
        );
        assert_eq!(error.retry_after(), Some(17));
        assert!(error.is_source_outage(), "a stale copy may answer");
    }
}
