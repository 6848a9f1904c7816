//! A dialect-neutral SELECT: what to read, never how to spell it.

use super::{ColumnType, Param};

/// Where rows come from.
#[derive(Debug, Clone)]
pub enum Relation {
    /// A table or view, possibly schema-qualified (`dbo.JOBS`).
    Table(String),
    /// A read-only SELECT from configuration.
    Query(String),
}

/// Comparison operators that push down to SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
}

impl CmpOp {
    /// The SQL spelling.
    pub fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Lte => "<=",
            CmpOp::Gt => ">",
            CmpOp::Gte => ">=",
        }
    }
}

/// A WHERE condition on configured columns; values are always parameters.
#[derive(Debug, Clone)]
pub enum Condition {
    /// `column op ?`
    Compare {
        /// Column name from configuration.
        column: String,
        /// Operator.
        op: CmpOp,
        /// Bound value.
        param: Param,
    },
    /// `column IN (?, ...)`
    In {
        /// Column name.
        column: String,
        /// Bound values (never empty).
        params: Vec<Param>,
    },
    /// `column NOT IN (?, ...)`
    NotIn {
        /// Column name.
        column: String,
        /// Bound values (never empty).
        params: Vec<Param>,
    },
    /// The column's text starts with exactly these bytes: case and accents count, and no
    /// character is a wildcard ([`prefix_matches`]). Rendered per dialect (`LIKE`, `GLOB`, a
    /// binary collation); only `generic` leaves the meaning to the database's `LIKE`.
    Prefix {
        /// Column name.
        column: String,
        /// The literal prefix (bytes in the column's encoding).
        prefix: Vec<u8>,
    },
    /// `ABS(column - ?) <= ?`: a number kept as a binary double (SQLite's DECIMAL) equals the
    /// value read when it is within half a unit of the field's last decimal place.
    Near {
        /// Column name.
        column: String,
        /// The value read.
        value: f64,
        /// The largest difference that is still the same value.
        within: f64,
    },
    /// `column IS NULL` (or `IS NOT NULL` when negated).
    IsNull {
        /// Column name.
        column: String,
        /// `IS NOT NULL` instead.
        negated: bool,
    },
    /// `column = <the key the connection's last INSERT generated>`, read back in the same
    /// transaction.
    LastInsertId {
        /// Column name.
        column: String,
    },
    /// `column IN (SELECT key FROM relation WHERE filter…)`: rows whose parent row passes
    /// the parent's conditions (a nested resource's inherited row policies).
    InParent {
        /// This relation's column holding the parent key.
        column: String,
        /// The parent's rows.
        relation: Relation,
        /// The parent's key column.
        key: String,
        /// Conditions on the parent's rows (never empty).
        filter: Vec<Condition>,
    },
    /// Any of the conditions.
    Or(Vec<Condition>),
    /// All of the conditions.
    And(Vec<Condition>),
}

/// What `Condition::Prefix` means for a text already read: its bytes start with `prefix`'s.
pub fn prefix_matches(text: &[u8], prefix: &[u8]) -> bool {
    text.starts_with(prefix)
}

/// One ORDER BY term.
#[derive(Debug, Clone)]
pub struct OrderTerm {
    /// Column name.
    pub column: String,
    /// Legacy type, to bind keyset values.
    pub column_type: ColumnType,
    /// Descending.
    pub descending: bool,
    /// May hold NULL (keys never do).
    pub nullable: bool,
}

/// A SELECT with optional keyset position and row limit.
#[derive(Debug, Clone)]
pub struct Select {
    /// Source of rows.
    pub relation: Relation,
    /// Columns to read, with their legacy types.
    pub columns: Vec<(String, ColumnType)>,
    /// Conditions, all of which must hold.
    pub filter: Vec<Condition>,
    /// Total order; its last terms are the key, so it is unique.
    pub order: Vec<OrderTerm>,
    /// Keyset position: rows strictly after these values of `order`.
    pub after: Option<Vec<super::Value>>,
    /// Maximum rows to return.
    pub limit: usize,
    /// At most this many rows per value of a column, the first in `order` (the related rows
    /// of each parent row in one batched read).
    pub per_group: Option<PerGroup>,
}

/// The first `rows` rows (in the select's order) of each value of `column`.
#[derive(Debug, Clone)]
pub struct PerGroup {
    /// Column whose values form the groups.
    pub column: String,
    /// Rows kept per group.
    pub rows: usize,
}

/// How a grouped column's stored value is cut into a bucket, so that rows of one day, month
/// or year form one group. Every bucket keeps the stored order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// The stored value itself.
    Value,
    /// The first `n` characters of stored text (`yyyymmdd` text: 4 a year, 6 a month).
    TextPrefix(usize),
    /// A stored whole number divided by this, dropping the rest (`yyyymmdd` as a number:
    /// 10000 a year, 100 a month).
    Divide(i64),
    /// A native DATE or TIMESTAMP column as `YYYY`, `YYYY-MM` or `YYYY-MM-DD` text (the
    /// number of characters kept: 4, 7 or 10).
    DateText(usize),
    /// A number rounded to this many decimal places: a decimal kept as a binary double
    /// (SQLite's DECIMAL) grouped at its field's scale, so `0.1 + 0.2` and `0.3` are one group.
    Round(u32),
}

/// One GROUP BY term.
#[derive(Debug, Clone)]
pub struct GroupTerm {
    /// Column name.
    pub column: String,
    /// How the column is read.
    pub column_type: ColumnType,
    /// Stored values that mean null (they form the null group).
    pub sentinels: Vec<Param>,
    /// How the value is cut.
    pub bucket: Bucket,
}

/// What an aggregate computes over a column of each group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeasureKind {
    /// The exact sum, read as decimal text. With `scaled`, each value is first rounded to
    /// that many decimal places and summed as a whole number (the caller places the point):
    /// a binary double (SQLite's DECIMAL, a float column) summed as it is drifts.
    Sum {
        /// Decimal places of the scaled whole numbers summed instead.
        scaled: Option<u32>,
    },
    /// How many rows have a value (not null).
    Count,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
}

/// One aggregate over a column.
#[derive(Debug, Clone)]
pub struct Measure {
    /// Column name.
    pub column: String,
    /// How the column is read.
    pub column_type: ColumnType,
    /// Stored values that mean null (never summed, counted or compared).
    pub sentinels: Vec<Param>,
    /// What is computed.
    pub kind: MeasureKind,
}

/// `SELECT groups…, COUNT(*), measures… FROM relation WHERE filter GROUP BY groups ORDER BY
/// groups`, at most `limit` groups. Each row holds the group values, then the row count, then
/// one value per measure.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// Source of rows.
    pub relation: Relation,
    /// Conditions, all of which must hold.
    pub filter: Vec<Condition>,
    /// Group terms (none: one group of every row).
    pub groups: Vec<GroupTerm>,
    /// Aggregates computed per group.
    pub measures: Vec<Measure>,
    /// Maximum groups to return.
    pub limit: usize,
}

impl Aggregate {
    /// How each result column is decoded: the groups, the row count, the measures.
    pub fn result_types(&self) -> Vec<ColumnType> {
        let mut types: Vec<ColumnType> = self
            .groups
            .iter()
            .map(|g| match g.bucket {
                Bucket::Value | Bucket::Round(_) => g.column_type,
                Bucket::TextPrefix(_) | Bucket::DateText(_) => ColumnType::Varchar,
                Bucket::Divide(_) => ColumnType::Integer,
            })
            .collect();
        types.push(ColumnType::Integer);
        types.extend(self.measures.iter().map(|m| match m.kind {
            MeasureKind::Sum { .. } => ColumnType::Decimal,
            MeasureKind::Count => ColumnType::Integer,
            MeasureKind::Min | MeasureKind::Max => m.column_type,
        }));
        types
    }
}
