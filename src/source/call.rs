//! Calls of stored procedures: inputs bound as parameters, outputs and result sets back.

use super::{ColumnType, Dialect, Param, Rows, Value};

/// One parameter of a call, in call order.
#[derive(Debug, Clone)]
pub enum CallParam {
    /// A value the procedure reads.
    In(Param),
    /// A value the procedure sets, decoded as this legacy type.
    Out(ColumnType),
}

/// A procedure call, ready for one source.
#[derive(Debug, Clone)]
pub struct Call {
    /// `{CALL name(?, ?)}`.
    pub sql: String,
    /// Parameters in marker order.
    pub params: Vec<CallParam>,
    /// Legacy types of known result columns, by column name (others are text).
    pub result_types: Vec<(String, ColumnType)>,
    /// Stop fetching a result set after this many rows.
    pub max_rows: usize,
    /// Commit (a writing procedure) or roll back (a reading one) when the call is done.
    pub commit: bool,
}

/// One result set.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultSet {
    /// Column names as the database reports them.
    pub columns: Vec<String>,
    /// Rows.
    pub rows: Rows,
}

/// What a call returned.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome {
    /// Output parameters, in call order.
    pub outputs: Vec<Value>,
    /// Result sets, in order.
    pub result_sets: Vec<ResultSet>,
}

impl Dialect {
    /// The ODBC escape for calling `procedure` with `count` parameter markers.
    pub fn call(self, procedure: &str, count: usize) -> String {
        let markers = vec!["?"; count].join(", ");
        format!("{{CALL {}({markers})}}", self.quote(procedure))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_use_the_odbc_escape_with_a_quoted_name() {
        assert_eq!(
            Dialect::MySql.call("shop.reschedule", 3),
            "{CALL `shop`.`reschedule`(?, ?, ?)}"
        );
        assert_eq!(Dialect::Postgres.call("f", 0), "{CALL \"f\"()}");
    }
}
