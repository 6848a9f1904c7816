//! The statements of a write transaction, the row's ETag, and the compare-and-set conditions
//! that make `If-Match` hold in the very statement that writes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::catalog::plan::Plan;
use crate::catalog::Resource;
use crate::source::select::{CmpOp, Condition, Relation, Select};
use crate::source::write::{Change, Rollback, Step};
use crate::source::{ColumnType, Dialect, Param, Statement, Value};

/// The ETag of a row as the caller sees it: a hash of the legacy values of the fields `plan`
/// reads (hidden fields never enter it, so it reveals nothing about them).
pub fn row_etag(resource: &Resource, plan: &Plan, row: &[Value]) -> String {
    let mut hash = HashWriter(Sha256::new());
    for &(field, position) in &plan.output {
        hash.0.update(resource.fields[field].name.as_bytes());
        hash.0.update([0]);
        let value = row.get(position).unwrap_or(&Value::Null);
        // Serialized straight into the hash (the same bytes as `to_vec`, no buffer per value);
        // a `Value` always serializes and the writer never fails.
        serde_json::to_writer(&mut hash, value).ok();
        hash.0.update([0]);
    }
    format!("\"{}\"", URL_SAFE_NO_PAD.encode(&hash.0.finalize()[..16]))
}

/// Feeds what is written to it into a hash.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Conditions that hold only while the row still has the values of `row` (as read by `plan`).
/// Binary floating point never compares reliably after a text round trip, nor do SQLite's
/// decimals (stored as doubles), so those columns are left out.
pub fn cas_conditions(
    dialect: Dialect,
    resource: &Resource,
    plan: &Plan,
    row: &[Value],
) -> Vec<Condition> {
    // One condition per column. Fields reading one column as different types (`date` and
    // `datetime` over one text column) compare with the reading that keeps the most of the
    // stored value: a date cut from a timestamp would never equal the column again.
    let mut readings: Vec<(usize, usize)> = Vec::new();
    for &(field, position) in &plan.output {
        let column = &resource.fields[field].column;
        match readings
            .iter_mut()
            .find(|(f, _)| resource.fields[*f].column == *column)
        {
            Some(chosen) => {
                if fidelity(resource.fields[field].column_type)
                    > fidelity(resource.fields[chosen.0].column_type)
                {
                    *chosen = (field, position);
                }
            }
            None => readings.push((field, position)),
        }
    }
    let mut conditions = Vec::new();
    for (field, position) in readings {
        let f = &resource.fields[field];
        if f.column_type == ColumnType::Float {
            continue;
        }
        let value = row.get(position).cloned().unwrap_or(Value::Null);
        // SQLite keeps a DECIMAL as a double, which its driver renders to 15 digits: equal to
        // what was read means within half a unit of the field's last place.
        if dialect == Dialect::Sqlite && f.column_type == ColumnType::Decimal {
            let read = match &value {
                Value::Decimal(d) => d.parse::<f64>().ok(),
                Value::Float(x) => Some(*x),
                Value::Int(i) => Some(*i as f64),
                _ => None,
            };
            if let Some(read) = read {
                let places = f
                    .limits
                    .digits
                    .map(|(_, s)| s)
                    .or(f.scale)
                    .unwrap_or(6)
                    .min(12);
                conditions.push(Condition::Near {
                    column: f.column.clone(),
                    value: read,
                    within: 0.5 * 10f64.powi(-(places as i32)),
                });
                continue;
            }
        }
        conditions.push(if value == Value::Null {
            Condition::IsNull {
                column: f.column.clone(),
                negated: false,
            }
        } else {
            Condition::Compare {
                column: f.column.clone(),
                op: CmpOp::Eq,
                param: Param {
                    value,
                    column_type: f.column_type,
                },
            }
        });
    }
    conditions
}

/// How much of a stored value a reading as `column_type` keeps: text keeps every byte, a
/// timestamp the whole date and time, the rest may drop a part (a date its time).
fn fidelity(column_type: ColumnType) -> u8 {
    match column_type {
        ColumnType::Char(_)
        | ColumnType::Varchar
        | ColumnType::NChar(_)
        | ColumnType::NVarchar
        | ColumnType::Oem(_)
        | ColumnType::Binary => 2,
        ColumnType::Timestamp | ColumnType::TimestampOffset => 1,
        _ => 0,
    }
}

/// INSERT, then the new row read back within the caller's row policies (`readback`).
pub fn create_steps(
    dialect: Dialect,
    table: &str,
    values: Vec<(String, Param)>,
    readback: Statement,
) -> Vec<Step> {
    vec![
        Step::Execute {
            statement: dialect.change(&Change::Insert {
                table: table.to_string(),
                values,
            }),
            expect_one: None,
        },
        Step::Read {
            statement: readback,
            require_row: Some(Rollback::Hidden),
        },
    ]
}

/// UPDATE of the row `filter` selects (key, policies, and the compare-and-set when the caller
/// sent `If-Match`), then the row read back.
pub fn update_steps(
    dialect: Dialect,
    table: &str,
    set: Vec<(String, Param)>,
    filter: Vec<Condition>,
    missing: Rollback,
    readback: Statement,
) -> Vec<Step> {
    let mut steps = guarded(
        dialect,
        table,
        &filter,
        missing,
        Change::Update {
            table: table.to_string(),
            set,
            filter: filter.clone(),
        },
    );
    steps.push(Step::Read {
        statement: readback,
        require_row: Some(Rollback::Hidden),
    });
    steps
}

/// DELETE of the row `filter` selects.
pub fn delete_steps(
    dialect: Dialect,
    table: &str,
    filter: Vec<Condition>,
    missing: Rollback,
) -> Vec<Step> {
    guarded(
        dialect,
        table,
        &filter,
        missing,
        Change::Delete {
            table: table.to_string(),
            filter: filter.clone(),
        },
    )
}

/// A change that must touch exactly one row. Where row counts are rows matched, the count
/// says so; MySQL counts rows changed, so the row is first read and locked instead.
fn guarded(
    dialect: Dialect,
    table: &str,
    filter: &[Condition],
    missing: Rollback,
    change: Change,
) -> Vec<Step> {
    let statement = dialect.change(&change);
    if dialect.counts_matched_rows() {
        return vec![Step::Execute {
            statement,
            expect_one: Some(missing),
        }];
    }
    // The filter starts with the key: reading its first column is enough to lock the row.
    let key_column = filter.iter().find_map(|c| match c {
        Condition::Compare { column, param, .. } => Some((column.clone(), param.column_type)),
        _ => None,
    });
    let mut lock = dialect.select(&Select {
        relation: Relation::Table(table.to_string()),
        columns: key_column.into_iter().collect(),
        filter: filter.to_vec(),
        order: Vec::new(),
        after: None,
        limit: 1,
        per_group: None,
    });
    lock.sql.push_str(dialect.lock_rows());
    vec![
        Step::Read {
            statement: lock,
            require_row: Some(missing),
        },
        Step::Execute {
            statement,
            expect_one: None,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_locks_the_row_before_writing_and_the_others_count_matches() {
        let filter = vec![Condition::Compare {
            column: "CUST_NO".into(),
            op: CmpOp::Eq,
            param: Param {
                value: Value::Text(b"C1".to_vec()),
                column_type: ColumnType::Char(Some(6)),
            },
        }];
        let steps = delete_steps(
            Dialect::MySql,
            "CUSTOMERS",
            filter.clone(),
            Rollback::Changed,
        );
        let Step::Read {
            statement,
            require_row,
        } = &steps[0]
        else {
            panic!("a locking read first");
        };
        assert_eq!(
            statement.sql,
            "SELECT `CUST_NO` FROM `CUSTOMERS` WHERE (`CUST_NO` = ?) LIMIT 1 FOR UPDATE"
        );
        assert_eq!(*require_row, Some(Rollback::Changed));
        let steps = delete_steps(Dialect::Postgres, "CUSTOMERS", filter, Rollback::NotFound);
        assert!(matches!(
            &steps[..],
            [Step::Execute {
                expect_one: Some(Rollback::NotFound),
                ..
            }]
        ));
    }
}
