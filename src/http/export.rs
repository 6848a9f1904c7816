//! Streamed exports of a list: `Accept: application/x-ndjson` or `text/csv` streams every row
//! the list's filters, sort, `fields`, row policies and masks select, in chunks read by keyset.
//!
//! Each chunk is its own short statement after the last row's position (no transaction or
//! database cursor stays open between chunks), waits for the source's concurrency limit like
//! any read, and is read only when actix has taken the previous one (the body is a `Stream`
//! polled as the socket drains). The first chunk is read before the response starts, so a
//! failure there is a normal problem+json; a failure later aborts the response.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};

use super::problem::ApiError;
use super::render::write_row;
use super::AppState;
use crate::catalog::cursor::Cursor;
use crate::catalog::field::ApiValue;
use crate::catalog::{plan::Plan, Resource};
use crate::config::FieldType;
use crate::source::{Rows, Source, SourceError};
use crate::telemetry::metrics::ExportMetrics;

/// NDJSON media type.
pub const NDJSON: &str = "application/x-ndjson";
/// CSV media type, as the response's `Content-Type` names it.
pub const CSV: &str = "text/csv; charset=utf-8";

/// A representation of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The page: `{"data": [...], "next_cursor": ...}`.
    Json,
    /// Every row, one JSON object a line.
    Ndjson,
    /// Every row, RFC 4180 CSV with a header row.
    Csv,
}

/// What a list answers with under the request's `Accept` (q-values count; JSON without
/// `Accept` and on ties); 406 when it takes none of them.
pub fn negotiate(req: &HttpRequest) -> Result<Format, ApiError> {
    let values: Vec<&str> = req
        .headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .collect();
    choose(&values).ok_or_else(|| {
        ApiError::NotAcceptable(format!(
            "this list is served as application/json, {NDJSON} or text/csv; `Accept: {}` \
             takes none of them",
            values.join(", ")
        ))
    })
}

/// An export streams the rows alone: `expand` (related rows) is refused on it, not ignored.
pub fn without_expand(expand: Option<&str>) -> Result<(), ApiError> {
    match expand {
        None => Ok(()),
        Some(_) => Err(crate::catalog::query::QueryError {
            place: crate::catalog::query::Place::Query,
            parameter: "expand".into(),
            message: "is not available on an NDJSON or CSV export; page the JSON list to \
                      read related rows"
                .into(),
        }
        .into()),
    }
}

/// The best format for `Accept` header values; `None` when they take none.
fn choose(values: &[&str]) -> Option<Format> {
    let ranges: Vec<(&str, &str, f32)> = values
        .iter()
        .flat_map(|v| v.split(','))
        .filter_map(media_range)
        .collect();
    if ranges.is_empty() {
        // No `Accept` (or only blanks): anything goes.
        return Some(Format::Json);
    }
    let offers = [
        (Format::Json, "application", "json"),
        (Format::Ndjson, "application", "x-ndjson"),
        (Format::Csv, "text", "csv"),
    ];
    let mut best: Option<(Format, f32)> = None;
    for (format, kind, sub) in offers {
        // The most specific range that matches decides the quality (RFC 9110 §12.5.1).
        let quality = ranges
            .iter()
            .filter_map(|&(k, s, q)| {
                let specificity = match (k, s) {
                    _ if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(sub) => 2,
                    ("*", "*") => 0,
                    _ if k.eq_ignore_ascii_case(kind) && s == "*" => 1,
                    _ => return None,
                };
                Some((specificity, q))
            })
            .max_by_key(|&(specificity, _)| specificity)
            .map(|(_, q)| q);
        if let Some(q) = quality.filter(|&q| q > 0.0) {
            // Ties keep the earlier offer: JSON stays the default.
            if best.is_none_or(|(_, b)| q > b) {
                best = Some((format, q));
            }
        }
    }
    best.map(|(format, _)| format)
}

/// One media range of `Accept`: type, subtype and quality; `None` for an empty or malformed
/// one (ignored, as if absent).
fn media_range(text: &str) -> Option<(&str, &str, f32)> {
    let mut parts = text.split(';');
    let (kind, sub) = parts.next()?.trim().split_once('/')?;
    let (kind, sub) = (kind.trim(), sub.trim());
    if kind.is_empty() || sub.is_empty() {
        return None;
    }
    let mut quality = 1.0;
    for parameter in parts {
        if let Some((name, value)) = parameter.split_once('=') {
            if name.trim().eq_ignore_ascii_case("q") {
                quality = value.trim().parse::<f32>().ok()?.clamp(0.0, 1.0);
            }
        }
    }
    Some((kind, sub, quality))
}

/// A failure after the first bytes: the response is aborted (no final chunk), so it never
/// looks like a complete export.
#[derive(Debug, thiserror::Error)]
#[error("export of `{resource}` aborted after {rows} rows: {cause}")]
pub struct ExportAborted {
    resource: String,
    rows: u64,
    cause: SourceError,
}

/// Streams the rows `plan` selects as `format` (NDJSON or CSV), at most the resource's
/// `max_export_rows`; past it the export ends with a marker carrying the cursor to resume.
pub async fn stream(
    state: &AppState,
    resource: &Resource,
    plan: Plan,
    format: Format,
) -> Result<HttpResponse, ApiError> {
    let source = Arc::clone(state.source(resource)?);
    let mut export = Export {
        source,
        resource: resource.clone(),
        plan,
        format,
        remaining: resource.max_export_rows,
        sent: 0,
        asked: 0,
        finished: false,
        metrics: state.metrics.exports.clone(),
    };
    let first = export.read().await?;
    let mut body = Vec::new();
    if format == Format::Csv {
        csv_header(&mut body, &export.resource, &export.plan);
    }
    export.render(first, &mut body)?;
    export.metrics.started.inc();
    let chunks = futures_util::stream::unfold(
        (export, Some(Bytes::from(body))),
        |(mut export, first)| async move {
            if let Some(bytes) = first {
                return Some((Ok(bytes), (export, None)));
            }
            if export.finished {
                return None;
            }
            let mut body = Vec::new();
            let outcome = match export.read().await {
                Ok(rows) => export.render(rows, &mut body),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) if body.is_empty() => None,
                Ok(()) => Some((Ok(Bytes::from(body)), (export, None))),
                Err(e) => {
                    export.finished = true;
                    export.metrics.failures.inc();
                    let cause = match e {
                        ApiError::Source(cause) => cause,
                        other => SourceError::Query {
                            source_name: export.source.name().to_string(),
                            detail: other.to_string(),
                        },
                    };
                    let aborted = ExportAborted {
                        resource: format!("{}/{}", export.resource.version, export.resource.name),
                        rows: export.sent,
                        cause,
                    };
                    tracing::error!(error = %aborted, "export aborted");
                    Some((Err(aborted), (export, None)))
                }
            }
        },
    );
    let (content_type, extension) = match format {
        Format::Csv => (CSV, "csv"),
        _ => (NDJSON, "ndjson"),
    };
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}.{extension}\"", resource.name),
        ))
        // Never cached, here or by anyone on the way: an export is read afresh each time.
        .insert_header((header::CACHE_CONTROL, "no-store"));
    // One `Vary` header: the CORS layer keeps only the first.
    response.insert_header((
        header::VARY,
        if resource.access.anonymous {
            "Authorization, Accept"
        } else {
            "Accept"
        },
    ));
    Ok(response.streaming(chunks))
}

/// The state of one export between chunks.
struct Export {
    source: Arc<dyn Source>,
    resource: Resource,
    /// The list's plan; its `after` moves to the last row written.
    plan: Plan,
    format: Format,
    /// Rows still allowed under `max_export_rows`.
    remaining: u64,
    /// Rows written.
    sent: u64,
    /// Rows the last read asked for.
    asked: usize,
    finished: bool,
    metrics: ExportMetrics,
}

impl Export {
    /// The next chunk: rows after the last one written (one more than still allowed, to learn
    /// whether the cap cuts the export short).
    async fn read(&mut self) -> Result<Rows, ApiError> {
        let chunk = self.resource.export_chunk_rows.max(1);
        self.asked = usize::try_from(self.remaining.saturating_add(1))
            .unwrap_or(usize::MAX)
            .min(chunk);
        let mut select = self.plan.select.clone();
        select.limit = self.asked;
        Ok(self.source.select(select).await?)
    }

    /// Writes a chunk's rows, moves the position past them, and the truncation marker when
    /// the cap cuts the export.
    fn render(&mut self, rows: Rows, out: &mut Vec<u8>) -> Result<(), ApiError> {
        let allowed = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        let truncated = rows.len() > allowed;
        let taken = &rows[..rows.len().min(allowed)];
        for row in taken {
            match self.format {
                Format::Csv => csv_row(out, &self.resource, &self.plan, row),
                _ => {
                    write_row(out, &self.resource, &self.plan, row)?;
                    out.push(b'\n');
                }
            }
        }
        if let Some(last) = taken.last() {
            self.plan.select.after = Some(
                self.plan
                    .order_positions
                    .iter()
                    .map(|&p| last[p].clone())
                    .collect(),
            );
        }
        let count = taken.len() as u64;
        self.remaining -= count;
        self.sent += count;
        self.metrics.rows.inc_by(count);
        if truncated {
            self.finished = true;
            self.metrics.truncated.inc();
            self.marker(out);
        } else if rows.len() < self.asked {
            self.finished = true;
        }
        Ok(())
    }

    /// The last line of an export the cap cut short: the cap and the cursor that resumes
    /// after the last row written (on the list or on another export).
    fn marker(&self, out: &mut Vec<u8>) {
        let cursor = Cursor {
            sort: self.plan.signature.clone(),
            listing: Some(self.plan.listing.clone()),
            values: self.plan.select.after.clone().unwrap_or_default(),
        }
        .encode();
        let cap = self.resource.max_export_rows;
        match self.format {
            Format::Csv => out.extend_from_slice(
                format!("#truncated: max_export_rows={cap}; next_cursor={cursor}\r\n").as_bytes(),
            ),
            _ => {
                let marker = serde_json::json!({
                    "@truncated": { "max_export_rows": cap, "next_cursor": cursor }
                });
                out.extend_from_slice(marker.to_string().as_bytes());
                out.push(b'\n');
            }
        }
    }
}

/// The header row: the output fields' names, a `money` field as `name.value` and
/// `name.currency`.
fn csv_header(out: &mut Vec<u8>, resource: &Resource, plan: &Plan) {
    let mut first = true;
    for &(index, _) in &plan.output {
        let field = &resource.fields[index];
        let names: Vec<String> = if field.field_type == FieldType::Money {
            vec![
                format!("{}.value", field.name),
                format!("{}.currency", field.name),
            ]
        } else {
            vec![field.name.clone()]
        };
        for name in names {
            if !first {
                out.push(b',');
            }
            first = false;
            csv_cell(out, &name);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// One row: a cell per header column; null is an empty cell, an empty text `""`.
fn csv_row(out: &mut Vec<u8>, resource: &Resource, plan: &Plan, row: &[crate::source::Value]) {
    for (n, &(index, position)) in plan.output.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let field = &resource.fields[index];
        let value = row
            .get(position)
            .map_or(ApiValue::Null, |v| field.api_value(v));
        let money = field.field_type == FieldType::Money;
        match value {
            ApiValue::Null if money => out.push(b','),
            ApiValue::Null => {}
            ApiValue::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
            ApiValue::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
            ApiValue::Number(number) => out.extend_from_slice(number.to_string().as_bytes()),
            ApiValue::Text(text) => csv_cell(out, &text),
            ApiValue::Money { value, currency } => {
                csv_cell(out, &value);
                out.push(b',');
                if let Some(currency) = currency {
                    csv_cell(out, currency);
                }
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// A text cell, RFC 4180: quoted when it holds a comma, a quote, CR or LF (quotes doubled),
/// and when empty, so an empty text differs from null (an empty cell). Nothing else is
/// changed: a leading `=` stays (see README on spreadsheets).
fn csv_cell(out: &mut Vec<u8>, text: &str) {
    let quote = text.is_empty()
        || text
            .bytes()
            .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if !quote {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    out.push(b'"');
    for byte in text.bytes() {
        if byte == b'"' {
            out.push(b'"');
        }
        out.push(byte);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_by_quality_and_keeps_json_as_the_default() {
        assert_eq!(choose(&[]), Some(Format::Json));
        assert_eq!(choose(&[""]), Some(Format::Json));
        assert_eq!(choose(&["*/*"]), Some(Format::Json));
        assert_eq!(choose(&["text/csv"]), Some(Format::Csv));
        assert_eq!(choose(&["application/x-ndjson"]), Some(Format::Ndjson));
        assert_eq!(choose(&["TEXT/CSV; charset=utf-8"]), Some(Format::Csv));
        assert_eq!(
            choose(&["application/json;q=0.5, text/csv"]),
            Some(Format::Csv)
        );
        assert_eq!(
            choose(&["text/csv;q=0.4", "application/x-ndjson;q=0.9"]),
            Some(Format::Ndjson)
        );
        // A browser's Accept: JSON through `*/*`.
        assert_eq!(
            choose(&["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"]),
            Some(Format::Json)
        );
        // `text/*` reaches CSV only; the most specific range decides.
        assert_eq!(choose(&["text/*"]), Some(Format::Csv));
        assert_eq!(choose(&["*/*;q=0.1, text/csv"]), Some(Format::Csv));
        assert_eq!(choose(&["*/*, application/json;q=0"]), Some(Format::Ndjson));
        assert_eq!(choose(&["application/xml"]), None);
        assert_eq!(choose(&["text/csv;q=0"]), None);
        assert_eq!(choose(&["image/png, text/html"]), None);
    }

    #[test]
    fn cells_are_quoted_as_rfc_4180_says() {
        let cell = |text: &str| {
            let mut out = Vec::new();
            csv_cell(&mut out, text);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell(""), "\"\"");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\r\nlines"), "\"two\r\nlines\"");
        assert_eq!(cell("=1+1"), "=1+1");
        assert_eq!(cell(" padded "), " padded ");
    }
}
