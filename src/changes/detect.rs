//! Turning candidate rows into events: compare with what was recorded, derive stable ids.

use sha2::{Digest, Sha256};

use crate::source::Value;
use crate::state::KnownRow;

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

/// What a read's finding makes of a key: its change counter counts every announced change,
/// deletes included, so a row deleted and created again gets new event ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing to announce: the row is as recorded, or stays gone.
    Unchanged,
    /// The row is recorded with change counter `seq` (announced as `kind` when the feed
    /// announces; a baseline records it without counting).
    Recorded {
        /// Created (no live row recorded) or updated.
        kind: EventKind,
        /// The key's change counter after it.
        seq: i64,
    },
    /// The recorded row is gone: it stays as a tombstone with counter `seq`.
    Deleted {
        /// The key's change counter after it.
        seq: i64,
    },
}

/// Compares what a read found of a key (the hash of its row, `None` when the read says it
/// was deleted) with what was recorded. Depends on nothing else, so the same finding against
/// the same record (a poll repeated after a crash) gives the same counter, hence the same id.
pub fn compare(previous: Option<&KnownRow>, found: Option<&str>, announce: bool) -> Change {
    let live = previous.filter(|p| !p.deleted);
    let counter = previous.map_or(0, |p| p.seq);
    match (found, live) {
        (Some(hash), Some(p)) if p.hash == hash => Change::Unchanged,
        (Some(_), live) => Change::Recorded {
            kind: match live {
                Some(_) => EventKind::Updated,
                None => EventKind::Created,
            },
            seq: counter + i64::from(announce),
        },
        (None, Some(_)) => Change::Deleted { seq: counter + 1 },
        (None, None) => Change::Unchanged,
    }
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

    fn known(hash: &str, seq: i64, deleted: bool) -> KnownRow {
        KnownRow {
            hash: hash.into(),
            seq,
            row: Some("[]".into()),
            deleted,
        }
    }

    #[test]
    fn a_key_counts_every_change_across_deletes() {
        // Created, deleted, created again with the very same content, then updated.
        assert_eq!(
            compare(None, Some("h1"), true),
            Change::Recorded {
                kind: EventKind::Created,
                seq: 1
            }
        );
        let created = known("h1", 1, false);
        assert_eq!(compare(Some(&created), Some("h1"), true), Change::Unchanged);
        assert_eq!(
            compare(Some(&created), None, true),
            Change::Deleted { seq: 2 }
        );
        let tombstone = known("h1", 2, true);
        assert_eq!(compare(Some(&tombstone), None, true), Change::Unchanged);
        assert_eq!(
            compare(Some(&tombstone), Some("h1"), true),
            Change::Recorded {
                kind: EventKind::Created,
                seq: 3
            }
        );
        assert_eq!(
            compare(Some(&known("h1", 3, false)), Some("h2"), true),
            Change::Recorded {
                kind: EventKind::Updated,
                seq: 4
            }
        );
        // Each change of the key has its own id; the same finding twice has the same one.
        let ids = [(1, Some("h1")), (2, None), (3, Some("h1")), (4, Some("h2"))]
            .map(|(seq, hash)| event_id("shop.CUST", "[\"C09999\"]", seq, hash));
        assert_eq!(
            ids.iter().collect::<std::collections::BTreeSet<_>>().len(),
            4
        );
        assert_eq!(
            compare(Some(&tombstone), Some("h1"), true),
            compare(Some(&tombstone.clone()), Some("h1"), true)
        );
        // A baseline records without counting.
        assert_eq!(
            compare(Some(&tombstone), Some("h1"), false),
            Change::Recorded {
                kind: EventKind::Created,
                seq: 2
            }
        );
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
