//! Stored procedure calls through ODBC: `{CALL …}` with input and output parameters bound in
//! one collection, every result set fetched, outputs read once the results are consumed.

use odbc_api::buffers::{Indicator, TextRowSet};
use odbc_api::handles::Statement;
use odbc_api::parameter::{InputParameter, VarCharBox};
use odbc_api::sys::ParamType;
use odbc_api::{Connection, Cursor, ParameterCollection, ResultSetMetadata};

use super::bind;
use crate::source::call::{Call, CallOutcome, CallParam, ResultSet};
use crate::source::decode::from_text as decode;
use crate::source::{ColumnType, Value};

/// The parameters of one call: inputs as bound values, outputs as text buffers.
struct CallParams {
    slots: Vec<Slot>,
}

enum Slot {
    In(Box<dyn InputParameter>),
    Out(VarCharBox),
}

// SAFETY: every buffer is owned by `self` and outlives the statement execution that uses it;
// output buffers are bound mutably and only read after the statement is done.
unsafe impl ParameterCollection for CallParams {
    fn parameter_set_size(&self) -> usize {
        1
    }

    unsafe fn bind_parameters_to(
        &mut self,
        stmt: &mut impl Statement,
    ) -> Result<(), odbc_api::Error> {
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let number = (index + 1) as u16;
            match slot {
                Slot::In(value) => {
                    value.assert_completness();
                    unsafe { stmt.bind_input_parameter(number, value.as_ref()) }
                        .into_result(stmt)?;
                }
                Slot::Out(buffer) => {
                    unsafe { stmt.bind_parameter(number, ParamType::Output, buffer) }
                        .into_result(stmt)?;
                }
            }
        }
        Ok(())
    }
}

/// Runs `call` on `conn` (in the caller's transaction).
pub(super) fn run(
    conn: &Connection<'static>,
    call: &Call,
    timeout_secs: usize,
    max_text_bytes: usize,
) -> Result<CallOutcome, odbc_api::Error> {
    let mut params = CallParams {
        slots: call
            .params
            .iter()
            .map(|p| match p {
                CallParam::In(param) => Slot::In(bind(param)),
                CallParam::Out(_) => Slot::Out(VarCharBox::from_buffer(
                    vec![0u8; max_text_bytes + 1].into_boxed_slice(),
                    Indicator::Null,
                )),
            })
            .collect(),
    };
    let mut result_sets = Vec::new();
    let mut cursor = conn.execute(&call.sql, &mut params, Some(timeout_secs))?;
    while let Some(mut current) = cursor {
        if current.num_result_cols()? > 0 {
            let (set, back) = fetch(current, call, max_text_bytes)?;
            result_sets.push(set);
            current = back;
        }
        cursor = current.more_results()?;
    }
    let outputs = call
        .params
        .iter()
        .zip(&params.slots)
        .filter_map(|(p, slot)| match (p, slot) {
            (CallParam::Out(column_type), Slot::Out(buffer)) => Some(
                buffer
                    .as_bytes()
                    .map_or(Value::Null, |bytes| decode(bytes, *column_type)),
            ),
            _ => None,
        })
        .collect();
    Ok(CallOutcome {
        outputs,
        result_sets,
    })
}

fn fetch<C: Cursor>(
    mut cursor: C,
    call: &Call,
    max_text_bytes: usize,
) -> Result<(ResultSet, C), odbc_api::Error> {
    let columns: Vec<String> = cursor.column_names()?.collect::<Result<_, _>>()?;
    let types: Vec<ColumnType> = columns
        .iter()
        .map(|name| {
            call.result_types
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(name))
                .map_or(ColumnType::Varchar, |(_, t)| *t)
        })
        .collect();
    let batch = call.max_rows.clamp(1, 500);
    let buffer = TextRowSet::for_cursor(batch, &mut cursor, Some(max_text_bytes))?;
    let mut block = cursor.bind_buffer(buffer)?;
    let mut rows = Vec::new();
    while let Some(set) = block.fetch()? {
        for r in 0..set.num_rows() {
            if rows.len() < call.max_rows {
                rows.push(
                    (0..set.num_cols())
                        .map(|c| set.at(c, r).map_or(Value::Null, |b| decode(b, types[c])))
                        .collect(),
                );
            }
        }
    }
    let (cursor, _buffer) = block.unbind()?;
    Ok((ResultSet { columns, rows }, cursor))
}
