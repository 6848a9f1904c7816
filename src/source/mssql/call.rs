//! Stored procedure calls on SQL Server: `EXEC` with inputs as parameters and outputs through
//! declared variables, selected after the procedure's own result sets.

use futures_util::TryStreamExt;
use tiberius::{Query, QueryItem};

use super::{pool, Inner};
use crate::source::call::{Call, CallOutcome, CallParam, ResultSet};
use crate::source::{ColumnType, SourceError, Value};

/// The T-SQL for `call`: `DECLARE` outputs, `EXEC`, `SELECT` outputs.
pub fn tsql(call: &Call) -> Option<String> {
    let name = call.sql.strip_prefix("{CALL ")?.rsplit_once('(')?.0;
    let mut declare = Vec::new();
    let mut args = Vec::new();
    let mut outs = Vec::new();
    for (i, param) in call.params.iter().enumerate() {
        match param {
            CallParam::In(_) => args.push("?".to_string()),
            CallParam::Out(column_type) => {
                let var = format!("@o{}", i + 1);
                declare.push(format!("{var} {}", out_type(*column_type)));
                args.push(format!("{var} OUTPUT"));
                outs.push(var);
            }
        }
    }
    let mut sql = String::new();
    if !declare.is_empty() {
        sql.push_str(&format!("DECLARE {}; ", declare.join(", ")));
    }
    sql.push_str(&format!("EXEC {name} {}", args.join(", ")));
    if !outs.is_empty() {
        sql.push_str(&format!("; SELECT {}", outs.join(", ")));
    }
    Some(sql)
}

/// Output variables take the procedure's value by implicit conversion; decimals travel as
/// text so their scale is the procedure's own.
fn out_type(column_type: ColumnType) -> &'static str {
    match column_type {
        ColumnType::Integer => "bigint",
        ColumnType::Float => "float",
        ColumnType::Bit => "bit",
        ColumnType::Date => "date",
        ColumnType::Timestamp => "datetime2",
        ColumnType::TimestampOffset => "datetimeoffset",
        ColumnType::Binary => "varbinary(max)",
        _ => "nvarchar(4000)",
    }
}

/// Runs `call` on `client`, in the caller's transaction.
pub async fn run(
    source: &Inner,
    client: &mut pool::Client,
    call: &Call,
) -> Result<CallOutcome, SourceError> {
    let Some(sql) = tsql(call) else {
        return Err(SourceError::Query {
            source_name: source.settings.name.clone(),
            detail: format!("not a procedure call: {}", call.sql),
        });
    };
    let inputs: Vec<_> = call
        .params
        .iter()
        .filter_map(|p| match p {
            CallParam::In(param) => Some(param.clone()),
            CallParam::Out(_) => None,
        })
        .collect();
    let prepared = super::statement::prepare("", &sql, &inputs);
    let mut query = Query::new(prepared.sql);
    for param in prepared.params {
        query.bind(param);
    }
    let mut stream = query.query(client).await.map_err(|e| source.classify(e))?;
    let mut sets: Vec<(ResultSet, Vec<ColumnType>)> = Vec::new();
    while let Some(item) = stream.try_next().await.map_err(|e| source.classify(e))? {
        match item {
            QueryItem::Metadata(meta) => {
                let columns: Vec<String> = meta
                    .columns()
                    .iter()
                    .map(|c| c.name().to_string())
                    .collect();
                let types = columns
                    .iter()
                    .map(|name| {
                        call.result_types
                            .iter()
                            .find(|(known, _)| known.eq_ignore_ascii_case(name))
                            .map_or(ColumnType::NVarchar, |(_, t)| *t)
                    })
                    .collect();
                sets.push((
                    ResultSet {
                        columns,
                        rows: Vec::new(),
                    },
                    types,
                ));
            }
            QueryItem::Row(row) => {
                if let Some((set, types)) = sets.last_mut() {
                    if set.rows.len() < call.max_rows {
                        set.rows.push(
                            row.cells()
                                .zip(types.iter())
                                .map(|((_, data), t)| super::decode::value(data, *t))
                                .collect(),
                        );
                    }
                }
            }
        }
    }
    let out_types: Vec<ColumnType> = call
        .params
        .iter()
        .filter_map(|p| match p {
            CallParam::Out(t) => Some(*t),
            CallParam::In(_) => None,
        })
        .collect();
    let mut outputs = Vec::new();
    if !out_types.is_empty() {
        // The outputs' SELECT is the last result set; its values are re-typed per output.
        let last = sets.pop().map(|(set, _)| set);
        let row = last.and_then(|set| set.rows.into_iter().next());
        outputs = match row {
            Some(values) => values
                .into_iter()
                .zip(&out_types)
                .map(|(v, t)| retype(v, *t))
                .collect(),
            None => vec![Value::Null; out_types.len()],
        };
    }
    Ok(CallOutcome {
        outputs,
        result_sets: sets.into_iter().map(|(set, _)| set).collect(),
    })
}

/// A value read as text, decoded for the output's declared type.
fn retype(value: Value, column_type: ColumnType) -> Value {
    match value {
        Value::Text(bytes) => crate::source::decode::from_text(&bytes, column_type),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{Dialect, Param};

    #[test]
    fn outputs_are_declared_passed_and_selected() {
        let call = Call {
            sql: Dialect::TSql.call("dbo.reschedule", 3),
            params: vec![
                CallParam::In(Param {
                    value: Value::Int(1),
                    column_type: ColumnType::Integer,
                }),
                CallParam::Out(ColumnType::Integer),
                CallParam::Out(ColumnType::Decimal),
            ],
            result_types: vec![],
            max_rows: 10,
            commit: true,
        };
        assert_eq!(
            tsql(&call).unwrap(),
            "DECLARE @o2 bigint, @o3 nvarchar(4000); EXEC [dbo].[reschedule] ?, @o2 OUTPUT, @o3 OUTPUT; SELECT @o2, @o3"
        );
    }
}
