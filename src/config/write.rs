//! Configuration of writes: which operations a resource accepts, values Portico sets itself,
//! and Portico's own state store (idempotency keys).

use std::time::Duration;

use serde::Deserialize;

use super::DateFormat;

/// A write operation a resource may allow.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum WriteOp {
    /// `POST /{v}/{resource}`.
    Create,
    /// `PATCH /{v}/{resource}/{key}`.
    Update,
    /// `DELETE /{v}/{resource}/{key}`.
    Delete,
}

/// A value Portico writes into a column the API does not expose (`LAST_UPD = now`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteValueConfig {
    /// `now` (timestamp), `today` (date), `{sub}`, `{claims.path}`, or a literal.
    pub value: WriteValueText,
    /// Legacy column type, e.g. `char(8)` or `timestamp`; `varchar` when absent.
    pub column_type: Option<String>,
    /// How `today` is stored (`yyyymmdd`, `cyymmdd`, `iso`…).
    pub format: Option<DateFormat>,
    /// Operations that set it; `["create", "update"]` when absent.
    pub on: Option<Vec<WriteOp>>,
}

/// A literal or keyword of a write value.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum WriteValueText {
    /// Integer literal.
    Integer(i64),
    /// Text: a keyword, a claim reference or a literal.
    Text(String),
}

/// Portico's own durable store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// SQLite file, relative to the configuration file's folder.
    #[serde(default = "default_state_path")]
    pub path: String,
    /// How long an `Idempotency-Key` is remembered.
    #[serde(
        default = "default_retention",
        deserialize_with = "super::units::duration"
    )]
    pub idempotency_retention: Duration,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            path: default_state_path(),
            idempotency_retention: default_retention(),
        }
    }
}

fn default_state_path() -> String {
    "portico-state.sqlite3".into()
}

fn default_retention() -> Duration {
    Duration::from_secs(86_400)
}
