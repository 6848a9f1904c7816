//! What the client sent: path segments and keys, query parameters a request may not take,
//! JSON bodies, and the `Idempotency-Key` and `If-Match` headers.

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::Method;
use actix_web::{web, HttpRequest};
use percent_encoding::percent_decode_str;
use serde_json::Value as Json;

use super::problem::ApiError;
use super::{AppState, Current};
use crate::catalog::access::Grant;
use crate::catalog::query::{self, QueryError};
use crate::catalog::{plan, Resource};

/// Largest request body a write accepts.
pub const MAX_BODY: usize = 64 * 1024;

/// The 404 of a path nothing is served at.
pub fn not_served(req: &HttpRequest) -> ApiError {
    ApiError::NotFound(format!("nothing is served at {}", req.path()))
}

/// The raw (still percent-encoded) path segment, so an encoded `,` in a key part survives.
pub fn raw_segment(req: &HttpRequest, index: usize) -> &str {
    req.uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .nth(index)
        .unwrap_or_default()
}

/// The resource named by path segment `index` in the version of segment 0.
pub fn resource_at<'a>(
    state: &'a AppState,
    req: &HttpRequest,
    index: usize,
) -> Result<&'a Resource, ApiError> {
    state
        .catalog
        .resource(raw_segment(req, 0), raw_segment(req, index))
        .ok_or_else(|| not_served(req))
}

/// A key as written in a path: parts separated by `,`, each percent-decoded.
pub fn split_key(raw: &str) -> Result<Vec<String>, QueryError> {
    raw.split(',')
        .map(|part| {
            percent_decode_str(part)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| QueryError {
                    place: crate::catalog::query::Place::Path,
                    parameter: "key".into(),
                    message: "is not valid percent-encoded UTF-8".into(),
                })
        })
        .collect()
}

/// A lookup of one row by its decoded key parts, within what `grant` lets the caller see.
pub fn key_plan(
    resource: &Resource,
    parts: &[String],
    grant: &Grant,
) -> Result<plan::Plan, ApiError> {
    let mut conditions = plan::key_conditions(resource, parts)?;
    conditions.extend(grant.conditions.iter().cloned());
    Ok(plan::list(
        resource,
        &query::QuerySpec::unfiltered(1),
        conditions,
        &grant.mask,
        "",
    )?)
}

/// An item lookup or a write has nothing to filter, sort or page: any query parameter is a
/// mistake.
pub fn no_parameters(req: &HttpRequest) -> Result<(), QueryError> {
    let kind = match *req.method() {
        Method::GET | Method::HEAD => "a single row's lookup",
        _ => "a write",
    };
    match query::pairs(req.query_string())?.into_iter().next() {
        Some((name, _)) => Err(QueryError {
            place: crate::catalog::query::Place::Query,
            parameter: name,
            message: format!("is not a parameter of {kind} (it takes none)"),
        }),
        None => Ok(()),
    }
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let text = text.trim_matches('"');
    if text.is_empty() || text.len() > 255 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadParameter(query::QueryError {
            place: query::Place::Header,
            parameter: "Idempotency-Key".into(),
            message: "must be 1 to 255 visible ASCII characters".into(),
        }));
    }
    Ok(Some(text.to_string()))
}

/// The `If-Match` header as text, if sent.
pub fn if_match(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    req.headers()
        .get(header::IF_MATCH)
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| ApiError::PreconditionFailed("If-Match is not readable text".into()))
}

/// `If-Match: *`: any version of an existing row. `*` belongs alone (RFC 9110 §13.1.1); in a
/// list it still asks for no version, so it never satisfies `require_if_match`.
pub fn names_no_version(header: &str) -> bool {
    header.split(',').any(|tag| tag.trim() == "*")
}

/// Strong comparison (RFC 9110 §13.1.1): `*` matches any row; weak tags never match. The tag
/// of a compressed answer (`"abc-gzip"`) names the same row version as the row's own.
pub fn strong_match(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || crate::cache::tag_matches(tag, etag, false))
}

/// The body as JSON, within `MAX_BODY`, of one of the `accepted` media types, read within the
/// server's `body_timeout` (a body trickled a byte at a time is a 408, not a held worker).
/// A member named twice is refused, whichever copy a parser would keep.
pub async fn read_json(
    req: &HttpRequest,
    payload: web::Payload,
    accepted: &[&str],
) -> Result<Json, ApiError> {
    let media = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if !media.as_deref().is_some_and(|m| accepted.contains(&m)) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "send the body as {}",
            accepted.join(" or ")
        )));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(ApiError::PayloadTooLarge(MAX_BODY));
    }
    let limit = Current::of(req).map_or(std::time::Duration::from_secs(10), |s| s.body_timeout);
    let bytes = tokio::time::timeout(limit, payload.to_bytes_limited(MAX_BODY))
        .await
        .map_err(|_| ApiError::RequestTimeout(limit))?
        .map_err(|_| ApiError::PayloadTooLarge(MAX_BODY))?
        .map_err(|e| ApiError::MalformedBody(format!("the body could not be read: {e}")))?;
    strict_json(&bytes)
}

/// Parses JSON, refusing an object that names a member twice (RFC 8259 leaves the meaning
/// open; parsers disagree on which copy wins).
pub fn strict_json(bytes: &[u8]) -> Result<Json, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde::Deserialize::deserialize(&mut deserializer)
        .and_then(|StrictJson(value)| deserializer.end().map(|()| value))
        .map_err(|e| match e.classify() {
            // The visitor's only error: a repeated member, named in the message.
            serde_json::error::Category::Data => ApiError::MalformedBody(format!("the body {e}")),
            _ => ApiError::MalformedBody(format!(
                "the body is not well-formed JSON (line {}, column {})",
                e.line(),
                e.column()
            )),
        })
}

/// A JSON value whose objects never repeat a member.
struct StrictJson(Json);

impl<'de> serde::Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictJson(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "names the member `{key}` more than once"
                )));
            }
            object.insert(key, value);
        }
        Ok(Json::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_named_twice_is_refused_at_any_depth() {
        for body in [
            r#"{"id": "A", "id": "B"}"#,
            r#"{"money": {"value": "1", "value": "2"}}"#,
            r#"[{"a": 1, "a": 1}]"#,
        ] {
            let error = strict_json(body.as_bytes()).unwrap_err();
            assert!(
                matches!(&error, ApiError::MalformedBody(m) if m.contains("more than once")),
                "{body}: {error}"
            );
        }
        let ok = strict_json(br#"{"a": {"b": [1, 2.5, "x", null, true]}, "b": 1}"#).unwrap();
        assert_eq!(ok["a"]["b"][1], serde_json::json!(2.5));
        assert!(strict_json(b"{\"a\": 1} trailing").is_err());
    }
}
