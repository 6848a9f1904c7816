//! Dialect-neutral writes: INSERT, UPDATE, DELETE, and the transaction script a write runs as.

use super::dialect::SqlWriter;
use super::select::Condition;
use super::{Dialect, Param, Rows, Statement, Value};

/// One change to a table; every value is a bound parameter (NULL is written as `NULL`).
#[derive(Debug, Clone)]
pub enum Change {
    /// `INSERT INTO table (columns) VALUES (...)`.
    Insert {
        /// Table, possibly schema-qualified.
        table: String,
        /// Columns and their values.
        values: Vec<(String, Param)>,
    },
    /// `UPDATE table SET ... WHERE ...`.
    Update {
        /// Table.
        table: String,
        /// Columns and their new values.
        set: Vec<(String, Param)>,
        /// Which rows.
        filter: Vec<Condition>,
    },
    /// `DELETE FROM table WHERE ...`.
    Delete {
        /// Table.
        table: String,
        /// Which rows.
        filter: Vec<Condition>,
    },
}

/// Why a write was rolled back on purpose (not a database failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollback {
    /// No row matched the key (and the caller's row policies).
    NotFound,
    /// The row no longer has the values the caller's `If-Match` names.
    Changed,
    /// The written row would be outside the caller's row policies.
    Hidden,
}

/// One statement of a write transaction and what it must find.
#[derive(Debug, Clone)]
pub enum Step {
    /// Runs a change; unless it touched exactly one row, the transaction rolls back with the
    /// given reason (only on dialects whose row counts mean rows matched).
    Execute {
        /// The statement.
        statement: Statement,
        /// Roll back unless exactly one row was matched.
        expect_one: Option<Rollback>,
    },
    /// Runs a query; its rows are the transaction's result (the last read wins).
    Read {
        /// The statement.
        statement: Statement,
        /// Roll back when it finds no row.
        require_row: Option<Rollback>,
    },
}

/// How a write transaction ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// Committed; the rows of the last `Read` step.
    Committed(Rows),
    /// Rolled back on purpose.
    RolledBack(Rollback),
}

impl Dialect {
    /// The expression for the key the connection's last INSERT generated, where there is one.
    pub fn last_insert_id(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => Some("last_insert_rowid()"),
            Dialect::Postgres => Some("lastval()"),
            Dialect::MySql => Some("LAST_INSERT_ID()"),
            // SCOPE_IDENTITY() is empty in a later batch; @@IDENTITY is the session's.
            Dialect::TSql => Some("@@IDENTITY"),
            Dialect::Generic => None,
        }
    }

    /// Whether an UPDATE's row count is the rows matched (MySQL counts rows changed).
    pub fn counts_matched_rows(self) -> bool {
        self != Dialect::MySql
    }

    /// The clause that locks the rows a SELECT reads until the transaction ends.
    pub fn lock_rows(self) -> &'static str {
        match self {
            Dialect::Postgres | Dialect::MySql => " FOR UPDATE",
            _ => "",
        }
    }

    /// Renders a change.
    pub fn change(self, change: &Change) -> Statement {
        let mut sql = SqlWriter {
            dialect: self,
            sql: String::with_capacity(128),
            params: Vec::new(),
        };
        match change {
            Change::Insert { table, values } => {
                sql.push("INSERT INTO ");
                sql.push(&self.quote(table));
                if values.is_empty() {
                    sql.push(match self {
                        Dialect::MySql => " () VALUES ()",
                        _ => " DEFAULT VALUES",
                    });
                } else {
                    sql.push(" (");
                    for (i, (column, _)) in values.iter().enumerate() {
                        if i > 0 {
                            sql.push(", ");
                        }
                        sql.column(column);
                    }
                    sql.push(") VALUES (");
                    for (i, (_, param)) in values.iter().enumerate() {
                        if i > 0 {
                            sql.push(", ");
                        }
                        value(&mut sql, param);
                    }
                    sql.push(")");
                }
            }
            Change::Update { table, set, filter } => {
                sql.push("UPDATE ");
                sql.push(&self.quote(table));
                sql.push(" SET ");
                for (i, (column, param)) in set.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.column(column);
                    sql.push(" = ");
                    value(&mut sql, param);
                }
                where_clause(&mut sql, filter);
            }
            Change::Delete { table, filter } => {
                sql.push("DELETE FROM ");
                sql.push(&self.quote(table));
                where_clause(&mut sql, filter);
            }
        }
        Statement {
            sql: sql.sql,
            params: sql.params,
            columns: Vec::new(),
            max_rows: 0,
        }
    }
}

/// A NULL is written as the literal, so no driver has to guess a type for a typeless NULL.
fn value(sql: &mut SqlWriter, param: &Param) {
    if param.value == Value::Null {
        sql.push("NULL");
    } else {
        sql.param(param.clone());
    }
}

fn where_clause(sql: &mut SqlWriter, filter: &[Condition]) {
    sql.push(" WHERE ");
    sql.condition(&Condition::And(filter.to_vec()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::select::CmpOp;
    use crate::source::ColumnType;

    fn text(s: &str) -> Param {
        Param {
            value: Value::Text(s.as_bytes().to_vec()),
            column_type: ColumnType::Char(Some(6)),
        }
    }

    #[test]
    fn changes_bind_every_value_and_write_null_literally() {
        let insert = Dialect::MySql.change(&Change::Insert {
            table: "CUSTOMERS".into(),
            values: vec![
                ("CUST_NO".into(), text("C9    ")),
                (
                    "NAME".into(),
                    Param {
                        value: Value::Null,
                        column_type: ColumnType::Varchar,
                    },
                ),
            ],
        });
        assert_eq!(
            insert.sql,
            "INSERT INTO `CUSTOMERS` (`CUST_NO`, `NAME`) VALUES (?, NULL)"
        );
        assert_eq!(insert.params.len(), 1);

        let key = Condition::Compare {
            column: "CUST_NO".into(),
            op: CmpOp::Eq,
            param: text("C9"),
        };
        let update = Dialect::Postgres.change(&Change::Update {
            table: "dbo.CUSTOMERS".into(),
            set: vec![("NAME".into(), text("x'; DROP TABLE x; --"))],
            filter: vec![key.clone()],
        });
        assert_eq!(
            update.sql,
            "UPDATE \"dbo\".\"CUSTOMERS\" SET \"NAME\" = ? WHERE (\"CUST_NO\" = ?)"
        );
        assert_eq!(update.params.len(), 2);

        let delete = Dialect::TSql.change(&Change::Delete {
            table: "CUSTOMERS".into(),
            filter: vec![key],
        });
        assert_eq!(delete.sql, "DELETE FROM [CUSTOMERS] WHERE ([CUST_NO] = ?)");
    }

    #[test]
    fn generated_keys_are_read_back_with_the_dialects_own_function() {
        let insert = Dialect::Sqlite.change(&Change::Insert {
            table: "T".into(),
            values: vec![],
        });
        assert_eq!(insert.sql, "INSERT INTO \"T\" DEFAULT VALUES");
        let mut sql = SqlWriter {
            dialect: Dialect::Postgres,
            sql: String::new(),
            params: Vec::new(),
        };
        sql.condition(&Condition::LastInsertId {
            column: "ID".into(),
        });
        assert_eq!(sql.sql, "\"ID\" = lastval()");
        assert_eq!(Dialect::Generic.last_insert_id(), None);
    }
}
