//! What every operation of a document shares: the problem responses, the read responses, the
//! bearer requirement, deprecation.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Ref, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::Deprecated;

use super::BEARER;
use crate::catalog::{Resource, Version};
use crate::problem_kind::ProblemKind;

/// The JSON media type.
pub(super) const JSON: &str = "application/json";
const PROBLEM_JSON: &str = "application/problem+json";

/// The status of a named problem response.
pub fn problem_status(name: &str) -> Option<u16> {
    ProblemKind::documented_by(name).map(|kind| kind.status)
}

/// The problem responses, for `components.responses`: one per documented kind of the table.
pub fn problem_responses() -> Vec<(String, Response)> {
    ProblemKind::documented()
        .map(|(name, kind)| {
            let description = kind.description;
            let example = serde_json::json!({
                "type": kind.type_uri(),
                // The example's title is the description's first clause, not the kind's
                // served title (kept as the published documents have it).
                "title": description.split(';').next().unwrap_or(description),
                "status": kind.status,
                "detail": kind.example,
            });
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .example(Some(example))
                .build();
            let mut response = ResponseBuilder::new()
                .description(description)
                .content(PROBLEM_JSON, content);
            if matches!(kind.status, 429 | 503) {
                response = response.header("Retry-After", seconds_header());
            }
            if kind.status == 405 {
                response = response.header(
                    "Allow",
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .description(Some("The methods the path takes."))
                        .build(),
                );
            }
            (name.to_string(), response.build())
        })
        .collect()
}

fn seconds_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
        .description(Some("Seconds to wait before retrying."))
        .build()
}

/// `deprecated: true` on every operation of a deprecated version.
pub(super) fn deprecated(version: &Version) -> Option<Deprecated> {
    version.deprecated.map(|_| Deprecated::True)
}

/// A read's responses: `ok`, 304, the named problems, and those every read can meet.
pub(super) fn responses(ok: Response, errors: &[&str], auth: bool) -> utoipa::openapi::Responses {
    let mut builder = ResponsesBuilder::new().response("200", ok).response(
        "304",
        ResponseBuilder::new().description("Not modified: the `If-None-Match` tag still holds."),
    );
    let mut names: Vec<&str> = errors.to_vec();
    if auth {
        names.extend(["Unauthorized", "Forbidden", "RateLimited"]);
    }
    names.extend(["UnsupportedBySource", "SourceError", "Unavailable"]);
    for name in names {
        if let Some(status) = problem_status(name) {
            builder = builder.response(status.to_string(), Ref::from_response_name(name));
        }
    }
    builder.build()
}

/// The bearer requirement with the read scope; anonymous resources also accept no token.
pub(super) fn security(resource: &Resource, auth: bool) -> Option<Vec<SecurityRequirement>> {
    if !auth {
        // Without `[auth]` no operation needs a token.
        return Some(Vec::new());
    }
    let scopes: Vec<String> = resource.access.read_scope.iter().cloned().collect();
    let mut requirements = Vec::new();
    if resource.access.anonymous {
        requirements.push(SecurityRequirement::default());
    }
    requirements.push(SecurityRequirement::new(BEARER, scopes));
    Some(requirements)
}
