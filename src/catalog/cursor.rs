//! Opaque keyset cursors: the sort they belong to and the last row's legacy sort values.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::source::Value;

/// A position in a sorted listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Canonical sort the cursor was issued for (`-due_date,id`).
    #[serde(rename = "s")]
    pub sort: String,
    /// Legacy values of the sort columns of the last row served.
    #[serde(rename = "v")]
    pub values: Vec<Value>,
    /// The listing it was issued for: a digest of the resource and the client's filters, so a
    /// cursor sent without those filters (or to another resource) is refused, never a page
    /// of other rows.
    /// Absent from cursors issued before it existed, which are still taken.
    #[serde(rename = "q", default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<String>,
}

impl Cursor {
    /// The opaque text a client passes back.
    pub fn encode(&self) -> String {
        // Serializing plain data cannot fail; an empty cursor would only restart the listing.
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a cursor; `None` for anything this API did not issue.
    pub fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor {
            sort: "-due,id".into(),
            values: vec![Value::Null, Value::Text(b"J 1 ".to_vec())],
            listing: Some("x".into()),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("not a cursor"), None);
        assert_eq!(Cursor::decode("eyJ4IjoxfQ"), None);
    }

    #[test]
    fn a_float_comes_back_as_the_very_same_double() {
        // The widened float4 values of 97.8 and 224.73, and neighbours of 0.3.
        for f in [
            f64::from(97.8f32),
            f64::from(224.73f32),
            0.1 + 0.2,
            0.3f64.next_down(),
            f64::from(442.05f32),
        ] {
            let c = Cursor {
                sort: "freight,id".into(),
                values: vec![Value::Float(f)],
                listing: None,
            };
            let back = Cursor::decode(&c.encode()).unwrap();
            assert_eq!(back.values, [Value::Float(f)], "{f:?}");
            assert_eq!(
                serde_json::from_str::<f64>(&format!("{f:?}"))
                    .unwrap()
                    .to_bits(),
                f.to_bits()
            );
        }
    }
}
