//! Turning candidate rows into events: compare with what was recorded, derive stable ids.

use sha2::{Digest, Sha256};

use crate::source::Value;

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The row appeared.
    Created,
    /// The row's content changed.
    Updated,
    /// The row is gone.
    Deleted,
}

impl EventKind {
    /// `created`, `updated`, `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Updated => "updated",
            EventKind::Deleted => "deleted",
        }
    }

    /// Parses `as_str`'s spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "created" => Some(EventKind::Created),
            "updated" => Some(EventKind::Updated),
            "deleted" => Some(EventKind::Deleted),
            _ => None,
        }
    }
}

/// Values as stable JSON text (the state store's spelling of keys and rows).
pub fn values_json(values: &[Value]) -> String {
    serde_json::to_string(values).unwrap_or_default()
}

/// The hash of a row's legacy values.
pub fn row_hash(row: &[Value]) -> String {
    hex(&Sha256::digest(values_json(row).as_bytes())[..16])
}

/// The event id of the `seq`-th change of `key` in `feed`, to content `hash` (or deletion):
/// the same change detected twice gets the same id, so it is stored and delivered once.
pub fn event_id(feed: &str, key: &str, seq: i64, hash: Option<&str>) -> String {
    let mut digest = Sha256::new();
    for part in [feed, key, &seq.to_string(), hash.unwrap_or("deleted")] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    format!("evt_{}", hex(&digest.finalize()[..16]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_feed_key_sequence_and_content_only() {
        let a = event_id("shop.JOBHDR", "[\"J1\"]", 1, Some("h1"));
        assert_eq!(a, event_id("shop.JOBHDR", "[\"J1\"]", 1, Some("h1")));
        assert!(a.starts_with("evt_") && a.len() == 36);
        for other in [
            event_id("shop.JOBOPS", "[\"J1\"]", 1, Some("h1")),
            event_id("shop.JOBHDR", "[\"J2\"]", 1, Some("h1")),
            event_id("shop.JOBHDR", "[\"J1\"]", 2, Some("h1")),
            event_id("shop.JOBHDR", "[\"J1\"]", 1, Some("h2")),
            event_id("shop.JOBHDR", "[\"J1\"]", 1, None),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn row_hashes_follow_content() {
        let row = [Value::Text(b"J1".to_vec()), Value::Decimal("1.50".into())];
        assert_eq!(row_hash(&row), row_hash(&row.clone()));
        assert_ne!(
            row_hash(&row),
            row_hash(&[Value::Text(b"J1".to_vec()), Value::Decimal("1.5".into())])
        );
    }
}
