//! `GET /{v}/{resource}/changes?after=<cursor>&limit=<n>`: the change events of a resource, in
//! order, for consumers that cannot receive webhooks. Row policies and field masks apply to
//! each event as to a read of the row.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::access;
use super::problem::ApiError;
use super::AppState;
use crate::auth::Principal;
use crate::catalog::query::{pairs, QueryError};
use crate::catalog::Resource;
use crate::changes::render::{event_json, EventRecord};
use crate::changes::EventKind;
use crate::source::Value;

/// Events per page without `limit`, and the most with it.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

fn bad(parameter: &str, message: &str) -> ApiError {
    ApiError::BadParameter(QueryError {
        place: crate::catalog::query::Place::Query,
        parameter: parameter.into(),
        message: message.into(),
    })
}

/// One page of events after the cursor; `next_cursor` is always given (resume from it later).
pub async fn feed(
    req: &HttpRequest,
    state: &AppState,
    resource: &Resource,
    principal: &Principal,
) -> Result<HttpResponse, ApiError> {
    let grant = access::grant(resource, principal)?;
    if let Some(parent) = &grant.through_parent {
        // Withholding such events one by one would look like a quiet feed: refuse instead.
        return Err(ApiError::Forbidden(format!(
            "the events of {} are filtered by the row policies of {parent}, which an event alone \
             cannot apply; this feed is for tokens those policies do not restrict",
            resource.name
        )));
    }
    let (mut after, mut limit) = (0_i64, DEFAULT_LIMIT);
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in pairs(req.query_string())? {
        if seen.contains(&name) {
            return Err(bad(&name, "is given more than once"));
        }
        seen.push(name.clone());
        match name.as_str() {
            "after" => {
                // As the document says: 1 to 18 digits, nothing else.
                let digits =
                    (1..=18).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit());
                after = value
                    .parse()
                    .ok()
                    .filter(|_| digits)
                    .ok_or_else(|| bad("after", "is not a cursor this feed gave"))?
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad("limit", "must be a whole number from 1 to 1000"))?
            }
            _ => {
                return Err(bad(
                    &name,
                    "is not a parameter of a change feed (after, limit)",
                ))
            }
        }
    }
    let feed = state
        .feeds
        .iter()
        .find(|f| f.view(&resource.version, &resource.name).is_some())
        .ok_or_else(|| ApiError::NotFound(format!("{} has no change feed", resource.name)))?;
    let view = feed
        .view(&resource.version, &resource.name)
        .ok_or_else(|| ApiError::Internal("feed view vanished".into()))?;
    let store = state
        .state_store
        .clone()
        .ok_or_else(|| ApiError::Internal("change feed without a state store".into()))?;
    let name = feed.name.clone();
    let (given, events, pruned) = crate::state::off_thread(&store, move |s| {
        let given = after == 0 || s.has_event(&name, after)?;
        let events = s.events_after(&name, after, limit)?;
        // Read after the events: pruning in between shows here, never as a silent gap.
        Ok((given, events, s.pruned_through(&name)?))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    // The cursors this feed gives: 0, the position of one of its events, or where its pruned
    // events end. Any other number (ahead of the log, another feed's) would skip events.
    if !given && after > pruned {
        return Err(bad("after", "is not a cursor this feed gave"));
    }
    if after > 0 && after < pruned {
        return Err(cursor_expired(
            resource,
            after,
            pruned,
            state.event_retention,
        ));
    }
    let has_more = events.len() == limit;
    // A reader at 0 of a feed whose events were all pruned goes on from the pruned ones.
    let next_cursor = events.last().map_or(after.max(pruned), |e| e.seq);
    let data: Vec<serde_json::Value> = events
        .iter()
        .filter_map(|event| {
            let row: Vec<Value> = serde_json::from_str(event.row.as_deref()?).ok()?;
            let record = EventRecord {
                id: &event.id,
                kind: EventKind::parse(&event.kind)?,
                row: &row,
                sequence: event.key_seq,
                detected_ms: event.detected_ms,
            };
            event_json(
                feed,
                view,
                resource,
                &grant,
                &record,
                &state.metrics.changes,
            )
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "data": data,
            "next_cursor": next_cursor.to_string(),
            "has_more": has_more,
        })))
}

/// The 410 for a cursor with pruned events after it: what happened and how to go on.
fn cursor_expired(
    resource: &Resource,
    after: i64,
    pruned: i64,
    retention: std::time::Duration,
) -> ApiError {
    let hours = retention.as_secs_f64() / 3600.0;
    let kept = if hours >= 48.0 {
        format!("{:.0} days", hours / 24.0)
    } else if hours >= 1.0 {
        format!("{hours:.0} hours")
    } else {
        format!("{} s", retention.as_secs_f64())
    };
    ApiError::CursorExpired(format!(
        "the events of {name} after cursor {after} were pruned (events are kept {kept}); read \
         {name} again, then follow its changes from after=0, the oldest event kept (cursor \
         {pruned} on)",
        name = resource.name
    ))
}
