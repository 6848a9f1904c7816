//! Events in the API shape of a version: what a webhook body and the pull feed carry.

use serde_json::{json, Map, Value as Json};

use super::{EventKind, Feed, FeedView};
use crate::catalog::access::evaluate::{evaluate_all, TextRules, Verdict};
use crate::catalog::access::Grant;
use crate::catalog::Resource;
use crate::source::Value;
use crate::telemetry::change_metrics::ChangeMetrics;
use crate::value::date::Date;

/// An event as stored: its id, what happened, and the legacy values.
#[derive(Debug, Clone)]
pub struct EventRecord<'a> {
    /// Stable id.
    pub id: &'a str,
    /// What happened.
    pub kind: EventKind,
    /// The row's legacy values in feed column order (the last known ones when deleted).
    pub row: &'a [Value],
    /// The key's change counter (`None` for events stored before it was kept).
    pub sequence: Option<i64>,
    /// When it was detected (ms since the epoch).
    pub detected_ms: i64,
}

/// The event as `grant` may see it through `resource` (the `view` of `feed` in a version):
/// `{id, type, timestamp, data: {key, sequence, row}}`; `None` when a row policy withholds the row,
/// or cannot be decided on it under the text rules of the feed's source (then logged at debug and counted in
/// `portico_change_events_withheld_total` of `metrics`).
pub fn event_json(
    feed: &Feed,
    view: &FeedView,
    resource: &Resource,
    grant: &Grant,
    event: &EventRecord<'_>,
    metrics: &ChangeMetrics,
) -> Option<Json> {
    let column = |name: &str| feed.position(name).and_then(|i| event.row.get(i).cloned());
    match evaluate_all(&grant.conditions, TextRules::of(feed.dialect), &column) {
        Verdict::Holds => {}
        Verdict::Fails => return None,
        // Fail closed, but never quietly: a reader missing events can find out why.
        Verdict::Unknown(doubt) => {
            tracing::debug!(
                feed = %feed.name,
                resource = %view.resource,
                event = %event.id,
                reason = doubt.reason(),
                "event withheld: its row policy cannot be decided on the row"
            );
            metrics.count_withheld(&feed.name, doubt.reason());
            return None;
        }
    }
    let value = |field: usize| {
        let position = view.positions.get(field)?;
        Some(resource.fields[field].read(event.row.get(*position)?))
    };
    let key: Vec<String> = resource
        .key
        .iter()
        .map(|&i| match value(i) {
            Some(Json::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        })
        .collect();
    let mut row = Map::new();
    for (i, field) in resource.fields.iter().enumerate() {
        if !grant.mask.hides(i) {
            row.insert(field.name.clone(), value(i).unwrap_or(Json::Null));
        }
    }
    let mut data = Map::new();
    data.insert("key".into(), Json::String(key.join(",")));
    // The consumer's ordering rule: apply an event only if its sequence is above the last
    // one applied for its key (retries and resends may deliver out of order).
    if let Some(sequence) = event.sequence {
        data.insert("sequence".into(), json!(sequence));
    }
    data.insert("row".into(), Json::Object(row));
    Some(json!({
        "id": event.id,
        "type": format!("{}.{}", view.resource, event.kind.as_str()),
        "timestamp": rfc3339(event.detected_ms),
        "data": data,
    }))
}

/// `2026-11-23T10:00:00.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let date = Date::from_days(days).map_or_else(|| "1970-01-01".into(), |d| d.iso());
    let seconds = rest / 1000;
    format!(
        "{date}T{:02}:{:02}:{:02}.{:03}Z",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60,
        rest % 1000
    )
}

/// Whether `pattern` (`jobs.updated`, `jobs.*`, `*`) selects the event type `kind` of `resource`.
pub fn selects(pattern: &str, resource: &str, kind: EventKind) -> bool {
    match pattern.split_once('.') {
        _ if pattern == "*" => true,
        Some((r, "*")) => r == resource,
        Some((r, k)) => r == resource && k == kind.as_str(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_428_000_123), "2026-11-23T10:00:00.123Z");
    }

    #[test]
    fn patterns_select_types() {
        assert!(selects("*", "jobs", EventKind::Deleted));
        assert!(selects("jobs.*", "jobs", EventKind::Created));
        assert!(selects("jobs.updated", "jobs", EventKind::Updated));
        assert!(!selects("jobs.updated", "jobs", EventKind::Created));
        assert!(!selects("customers.*", "jobs", EventKind::Created));
        assert!(!selects("jobs", "jobs", EventKind::Created));
    }
}
