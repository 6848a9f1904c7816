//! What Portico answers with: rows and pages in API shape, JSON bodies, and the responses
//! that carry a row with its ETag.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use serde_json::Value as Json;

use super::problem::ApiError;
use crate::catalog::{plan, Resource};
use crate::state::StoredResponse;

/// One row as its JSON body.
pub fn render_row(
    resource: &Resource,
    plan: &plan::Plan,
    row: &[crate::source::Value],
) -> Result<Vec<u8>, ApiError> {
    render_row_expanded(resource, plan, row, &[])
}

/// One row as its JSON body, with its related rows (`members`).
pub fn render_row_expanded(
    resource: &Resource,
    plan: &plan::Plan,
    row: &[crate::source::Value],
    members: &[Member<'_>],
) -> Result<Vec<u8>, ApiError> {
    json_body(&RowView {
        resource,
        plan,
        row,
        members,
    })
}

/// A list body, `{"data": [...], "next_cursor": ...}`, of `rows` in API shape; with `total`
/// (`count` asked), also `"total"` and `"total_estimated"`.
pub fn render_page(
    resource: &Resource,
    plan: &plan::Plan,
    rows: &[Vec<crate::source::Value>],
    next_cursor: Option<String>,
    total: Option<crate::source::RowCount>,
) -> Result<Vec<u8>, ApiError> {
    render_page_expanded(resource, plan, rows, next_cursor, total, &[])
}

/// A list body whose rows carry their related rows: `members[i]` those of `rows[i]` (none
/// when `members` is empty).
pub fn render_page_expanded(
    resource: &Resource,
    plan: &plan::Plan,
    rows: &[Vec<crate::source::Value>],
    next_cursor: Option<String>,
    total: Option<crate::source::RowCount>,
    members: &[Vec<Member<'_>>],
) -> Result<Vec<u8>, ApiError> {
    let data: Vec<RowView> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| RowView {
            resource,
            plan,
            row,
            members: members.get(i).map_or(&[], Vec::as_slice),
        })
        .collect();
    // Room for the whole body up front (about 24 bytes a value), not a buffer doubled a dozen
    // times on a large page.
    let mut body = Vec::with_capacity(64 + rows.len() * plan.output.len() * 24);
    let page = Page {
        data,
        next_cursor,
        total: total.map(|t| t.rows),
        total_estimated: total.map(|t| t.estimated),
    };
    serde_json::to_writer(&mut body, &page)
        .map_err(|e| ApiError::Internal(format!("cannot render JSON: {e}")))?;
    Ok(body)
}

/// Appends one row's JSON object, as a list page carries it, to `out`.
pub fn write_row(
    out: &mut Vec<u8>,
    resource: &Resource,
    plan: &plan::Plan,
    row: &[crate::source::Value],
) -> Result<(), ApiError> {
    serde_json::to_writer(
        out,
        &RowView {
            resource,
            plan,
            row,
            members: &[],
        },
    )
    .map_err(|e| ApiError::Internal(format!("cannot render JSON: {e}")))
}

/// `value` as JSON bytes.
pub fn json_body<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError::Internal(format!("cannot render JSON: {e}")))
}

/// `200 OK` with a row's body and its ETag.
pub fn row_response(body: Vec<u8>, etag: String) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .content_type("application/json")
        .body(body)
}

/// The response of a create, first time or replayed for its `Idempotency-Key`.
pub fn stored_response(stored: StoredResponse, replayed: bool) -> HttpResponse {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    for (name, value) in &stored.headers {
        response.insert_header((name.as_str(), value.as_str()));
    }
    if replayed {
        response.insert_header(("idempotent-replayed", "true"));
    }
    response.content_type("application/json").body(stored.body)
}

/// One row in API shape, serialized straight from the legacy values (no intermediate map),
/// followed by its related rows.
pub(super) struct RowView<'a> {
    pub(super) resource: &'a Resource,
    pub(super) plan: &'a plan::Plan,
    pub(super) row: &'a [crate::source::Value],
    pub(super) members: &'a [Member<'a>],
}

impl serde::Serialize for RowView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for &(field, position) in &self.plan.output {
            let f = &self.resource.fields[field];
            match self.row.get(position) {
                Some(v) => map.serialize_entry(&f.name, &f.api_value(v))?,
                None => map.serialize_entry(&f.name, &Json::Null)?,
            }
        }
        serialize_members(&mut map, self.members)?;
        map.end()
    }
}

/// The list body: `{"data": [...], "next_cursor": ...}`.
#[derive(serde::Serialize)]
struct Page<'a> {
    data: Vec<RowView<'a>>,
    next_cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_estimated: Option<bool>,
}

/// A relation's member of one row.
pub struct Member<'a> {
    pub(super) name: &'a str,
    pub(super) value: Related<'a>,
}

/// The related rows of one row.
pub(super) enum Related<'a> {
    /// To-one: the row, or null when missing or hidden.
    One(Option<std::sync::Arc<Nested<'a>>>),
    /// To-many: the rows in the related resource's default order, and whether more exist.
    Many(Vec<std::sync::Arc<Nested<'a>>>, bool),
}

/// A related row with its own members.
pub struct Nested<'a> {
    pub(super) resource: &'a Resource,
    pub(super) plan: std::sync::Arc<plan::Plan>,
    pub(super) row: Vec<crate::source::Value>,
    pub(super) members: Vec<Member<'a>>,
}

/// Writes `members` into a row's JSON object: `"customer": {…} | null`, `"operations": […]`
/// and, when a to-many list was cut at its limit, `"operations_truncated": true`.
fn serialize_members<M: serde::ser::SerializeMap>(
    map: &mut M,
    members: &[Member<'_>],
) -> Result<(), M::Error> {
    for member in members {
        map.serialize_entry(member.name, &member.value)?;
        if let Related::Many(_, true) = member.value {
            map.serialize_entry(&format!("{}_truncated", member.name), &true)?;
        }
    }
    Ok(())
}

impl serde::Serialize for Related<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Related::One(None) => serializer.serialize_unit(),
            Related::One(Some(row)) => row.serialize(serializer),
            Related::Many(rows, _) => {
                use serde::ser::SerializeSeq;
                let mut seq = serializer.serialize_seq(Some(rows.len()))?;
                for row in rows {
                    seq.serialize_element(row.as_ref())?;
                }
                seq.end()
            }
        }
    }
}

impl serde::Serialize for Nested<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RowView {
            resource: self.resource,
            plan: &self.plan,
            row: &self.row,
            members: &self.members,
        }
        .serialize(serializer)
    }
}
