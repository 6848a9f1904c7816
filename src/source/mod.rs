//! Legacy databases: the `Source` contract, the values that cross it, and SQL generation.

pub mod breaker;
pub mod call;
pub mod capability;
pub mod constraint;
pub mod decode;
pub mod diagnostic;
pub mod dialect;
pub mod memory;
pub mod meters;
pub mod mssql;
pub mod odbc;
pub mod select;
pub mod snapshot;
pub mod statement_span;
pub mod write;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use breaker::BreakerState;
pub use dialect::Dialect;

/// How a value is stored in the legacy column; decides decoding and parameter binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Fixed-width, blank-padded text of the given length.
    Char(Option<u32>),
    /// Variable-width text.
    Varchar,
    /// Fixed-width Unicode text (`nchar`).
    NChar(Option<u32>),
    /// Variable-width Unicode text (`nvarchar`, `ntext`, `xml`).
    NVarchar,
    /// Single-byte text in an OEM code page (CP437, CP850) that SQL Server converts to
    /// Unicode for us (`CAST(… AS nvarchar)`), of the given width.
    Oem(Option<u32>),
    /// SQL Server `money`/`smallmoney`: exact, read as `decimal(19,4)`.
    Money,
    /// Bytes (`binary`, `varbinary`, `image`, `rowversion`), served as hex text.
    Binary,
    /// Whole number.
    Integer,
    /// Exact decimal (DECIMAL, NUMERIC, money).
    Decimal,
    /// Binary floating point.
    Float,
    /// SQL DATE.
    Date,
    /// SQL TIMESTAMP / DATETIME.
    Timestamp,
    /// A timestamp with its UTC offset (SQL Server `datetimeoffset`).
    TimestampOffset,
    /// SQL BIT / BOOLEAN.
    Bit,
}

impl ColumnType {
    /// Parses the `column_type` spelling used in configuration (`char(8)`, `decimal(15,2)`).
    pub fn parse(text: &str) -> Option<Self> {
        Self::parse_spelling(text).ok()
    }

    /// Parses a `column_type`; `Err` says why Portico cannot serve it.
    pub fn parse_spelling(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let (base, args) = match lower.find('(') {
            Some(i) => (
                lower[..i].trim(),
                Some(lower[i + 1..].trim_end_matches(')')),
            ),
            None => (lower.as_str(), None),
        };
        let width = || -> Result<Option<u32>, String> {
            match args.map(str::trim) {
                None | Some("max") => Ok(None),
                Some(a) => a
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("`{text}` has no valid width")),
            }
        };
        Ok(match base {
            "char" | "character" => ColumnType::Char(width()?),
            "nchar" => ColumnType::NChar(width()?),
            "varchar" | "text" | "character varying" | "clob" => {
                width()?;
                ColumnType::Varchar
            }
            "nvarchar" | "ntext" | "xml" | "uniqueidentifier" | "time" => {
                width()?;
                ColumnType::NVarchar
            }
            "integer" | "int" | "smallint" | "bigint" | "tinyint" => ColumnType::Integer,
            "decimal" | "numeric" => ColumnType::Decimal,
            "money" | "smallmoney" => ColumnType::Money,
            "float" | "real" | "double" | "double precision" => ColumnType::Float,
            "date" => ColumnType::Date,
            "timestamp" | "datetime" | "datetime2" | "smalldatetime" => ColumnType::Timestamp,
            "datetimeoffset" | "timestamp with time zone" | "timestamptz" => {
                ColumnType::TimestampOffset
            }
            "bit" | "boolean" | "bool" => ColumnType::Bit,
            "binary" | "varbinary" | "image" | "rowversion" => ColumnType::Binary,
            "sql_variant" | "geography" | "geometry" | "hierarchyid" => {
                return Err(format!(
                    "`{base}` values have no single API type; select the column through a \
                     `query` resource that casts it (`CAST(col AS nvarchar(4000))`)"
                ))
            }
            _ => {
                return Err(format!(
                    "`{text}` is not a type Portico serves (char(n), varchar, nchar(n), \
                     nvarchar, integer, decimal, money, float, date, time, datetime, \
                     datetimeoffset, bit, binary, uniqueidentifier, xml)"
                ))
            }
        })
    }
}

/// A value read from, or bound into, a legacy database.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "t", content = "v")]
pub enum Value {
    /// SQL NULL.
    #[serde(rename = "n")]
    Null,
    /// Whole number.
    #[serde(rename = "i")]
    Int(i64),
    /// Floating point.
    #[serde(rename = "f")]
    Float(f64),
    /// Exact decimal in canonical text (`-12.50`).
    #[serde(rename = "d")]
    Decimal(String),
    /// Text as the database stored it: bytes, possibly in a legacy code page.
    #[serde(rename = "s", with = "bytes_as_base64")]
    Text(Vec<u8>),
    /// `YYYY-MM-DD`.
    #[serde(rename = "D")]
    Date(String),
    /// `YYYY-MM-DD HH:MM:SS[.fff]`.
    #[serde(rename = "T")]
    Timestamp(String),
    /// Boolean.
    #[serde(rename = "b")]
    Bool(bool),
}

mod bytes_as_base64 {
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD_NO_PAD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD_NO_PAD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// A bound parameter: a value and the column type it is compared with.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// The value.
    pub value: Value,
    /// The legacy type of the column the value meets.
    pub column_type: ColumnType,
}

/// SQL text with typed parameters, ready for one source.
#[derive(Debug, Clone)]
pub struct Statement {
    /// SQL text; parameters are `?` markers.
    pub sql: String,
    /// Parameters in marker order.
    pub params: Vec<Param>,
    /// How to decode each result column.
    pub columns: Vec<ColumnType>,
    /// Stop fetching after this many rows.
    pub max_rows: usize,
}

/// Rows of values, in statement column order.
pub type Rows = Vec<Vec<Value>>;

/// Why a source could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// All query slots are taken and none freed up in time.
    #[error("source `{source_name}` is saturated")]
    Busy {
        /// Source name.
        source_name: String,
        /// Suggested wait before retrying.
        retry_after: Duration,
    },
    /// The database could not be reached.
    #[error("source `{source_name}` is unreachable: {detail}")]
    Unavailable {
        /// Source name.
        source_name: String,
        /// Driver message (for logs only).
        detail: String,
    },
    /// The query took longer than the configured timeout.
    #[error("source `{source_name}` did not answer within {timeout:?}")]
    Timeout {
        /// Source name.
        source_name: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The source's circuit breaker is open: nothing is sent to the database for now.
    #[error("source `{source_name}`'s circuit breaker is open: nothing is sent to it for {retry_after:?}")]
    BreakerOpen {
        /// Source name.
        source_name: String,
        /// The cool-down left (at least a second).
        retry_after: Duration,
    },
    /// The database refused a write because it breaks one of its constraints.
    #[error("source `{source_name}` refused a write: {detail}")]
    Constraint {
        /// Source name.
        source_name: String,
        /// Which rule.
        violation: constraint::Violation,
        /// Driver message (for logs only).
        detail: String,
    },
    /// The database refused the statement.
    #[error("source `{source_name}` refused a query: {detail}")]
    Query {
        /// Source name.
        source_name: String,
        /// Driver message (for logs only).
        detail: String,
    },
    /// The request needs what the source's driver cannot do (its capability profile), and
    /// nothing in Portico does it instead. The message (for the log and `portico check`)
    /// names the source, what is missing and the fix; a client is told `request` only.
    #[error("source `{source_name}` cannot serve this: it needs {needs}; {fix}")]
    Unsupported {
        /// Source name.
        source_name: String,
        /// What of the request cannot be done, in the client's terms (`listing rows in
        /// order`): no source, table, column or setting.
        request: String,
        /// What is missing (`ORDER BY (capabilities.order_by = false)`).
        needs: String,
        /// What the operator can do about it.
        fix: String,
    },
}

impl SourceError {
    /// Whether the source is out (unreachable, too slow, saturated) rather than refusing this
    /// statement: another try later may succeed.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            SourceError::Unavailable { .. }
                | SourceError::Timeout { .. }
                | SourceError::Busy { .. }
                | SourceError::BreakerOpen { .. }
        )
    }
}

/// How many rows a listing holds, and whether the number is the database's estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCount {
    /// The number of rows.
    pub rows: u64,
    /// Read from the database's statistics (`Dialect::estimate`) rather than counted.
    pub estimated: bool,
}

/// The whole number in the first cell of `rows` (a `COUNT(*)` or an estimate).
fn first_number(rows: &Rows) -> Option<i64> {
    match rows.first().and_then(|row| row.first())? {
        Value::Int(n) => Some(*n),
        Value::Decimal(text) => text.split('.').next()?.parse().ok(),
        Value::Text(bytes) => std::str::from_utf8(bytes).ok()?.trim().parse().ok(),
        Value::Float(f) => Some(*f as i64),
        _ => None,
    }
}

/// A boxed future, so `Source` can be used as a trait object.
pub type SourceFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SourceError>> + Send + 'a>>;

/// A legacy database that runs statements and yields rows of `Value`.
pub trait Source: Send + Sync {
    /// The name given in configuration.
    fn name(&self) -> &str;
    /// The dialect statements for this source must be written in.
    fn dialect(&self) -> Dialect;
    /// Runs a read statement.
    fn query(&self, statement: Statement) -> SourceFuture<'_, Rows>;
    /// Runs the steps of a write in one transaction on one connection: committed when every
    /// step finds what it expects, rolled back otherwise (and on any error or timeout).
    fn write(&self, steps: Vec<write::Step>) -> SourceFuture<'_, write::WriteOutcome>;
    /// Calls a stored procedure in a transaction (committed only for a writing procedure).
    fn call(&self, call: call::Call) -> SourceFuture<'_, call::CallOutcome>;
    /// Checks that the database answers.
    fn ping(&self) -> SourceFuture<'_, ()>;
    /// Whether statements reach the database now (`breaker::BreakerSource`); a source
    /// without a breaker of its own is always closed.
    fn breaker_state(&self) -> BreakerState {
        BreakerState::Closed
    }
    /// Counts the rows `select` filters (its order, position and limit play no part). With
    /// `estimate`, an unfiltered table is answered from the database's statistics where the
    /// dialect keeps a cheap estimate and it has one; otherwise the rows are counted.
    fn count(&self, select: select::Select, estimate: bool) -> SourceFuture<'_, RowCount> {
        Box::pin(async move {
            let dialect = self.dialect();
            if estimate && select.filter.is_empty() {
                if let Some(statement) = dialect.estimate(&select.relation) {
                    let rows = self.query(statement).await?;
                    if let Some(n) = first_number(&rows).filter(|n| *n >= 0) {
                        return Ok(RowCount {
                            rows: n as u64,
                            estimated: true,
                        });
                    }
                }
            }
            let rows = self.query(dialect.count(&select)).await?;
            let n = first_number(&rows).ok_or_else(|| SourceError::Query {
                source_name: self.name().to_string(),
                detail: "COUNT(*) answered no whole number".into(),
            })?;
            Ok(RowCount {
                rows: n.max(0) as u64,
                estimated: false,
            })
        })
    }

    /// Runs an aggregate: rendered in the source's dialect, unless the source answers it
    /// another way (an in-memory snapshot).
    fn aggregate(&self, aggregate: select::Aggregate) -> SourceFuture<'_, Rows> {
        Box::pin(async move {
            let statement = self.dialect().aggregate(&aggregate);
            self.query(statement).await
        })
    }

    /// Runs a SELECT: rendered in the source's dialect and run as a query, unless the source
    /// answers it another way (an in-memory snapshot) or cannot (its capability profile).
    fn select(&self, select: select::Select) -> SourceFuture<'_, Rows> {
        Box::pin(async move {
            let statement = self.dialect().select(&select);
            self.query(statement).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types_parse_from_config_spellings() {
        assert_eq!(
            ColumnType::parse("CHAR(8)"),
            Some(ColumnType::Char(Some(8)))
        );
        assert_eq!(ColumnType::parse("char"), Some(ColumnType::Char(None)));
        assert_eq!(
            ColumnType::parse("decimal(15,2)"),
            Some(ColumnType::Decimal)
        );
        assert_eq!(ColumnType::parse("int"), Some(ColumnType::Integer));
        assert_eq!(ColumnType::parse("char(x)"), None);
        assert_eq!(ColumnType::parse("geometry"), None);
        assert_eq!(ColumnType::parse("money"), Some(ColumnType::Money));
        assert_eq!(
            ColumnType::parse("nchar(4)"),
            Some(ColumnType::NChar(Some(4)))
        );
        assert_eq!(
            ColumnType::parse("varbinary(max)"),
            Some(ColumnType::Binary)
        );
        assert_eq!(ColumnType::parse("rowversion"), Some(ColumnType::Binary));
        assert!(ColumnType::parse_spelling("sql_variant")
            .unwrap_err()
            .contains("no single API type"));
    }

    #[test]
    fn values_round_trip_through_json_including_legacy_bytes() {
        let values = vec![
            Value::Null,
            Value::Int(-4),
            Value::Decimal("12345678901234.56".into()),
            Value::Text(vec![0x43, 0x61, 0x66, 0xE9]),
            Value::Date("2024-02-29".into()),
        ];
        let json = serde_json::to_string(&values).unwrap();
        let back: Vec<Value> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, values);
    }
}
