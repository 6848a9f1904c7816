//! A `Select` evaluated over rows held in memory, with the semantics the dialects give it when
//! it is pushed down: SQL's three-valued logic (a comparison with NULL holds for no row), NULL
//! sorting first ascending and last descending, exact decimals, keyset positions strictly
//! after the cursor's values, and the row limit. Text compares and sorts by its bytes (SQLite's
//! `BINARY` collation, PostgreSQL's `C`); `prefix` is a case-sensitive byte prefix.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use super::select::{
    Aggregate, Bucket, CmpOp, Condition, MeasureKind, OrderTerm, Relation, Select,
};
use super::{ColumnType, Param, Rows, Value};

/// A table's rows with the columns (and the types they were decoded as) of each position.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Column names and types, in row order.
    pub columns: Vec<(String, ColumnType)>,
    /// The rows.
    pub rows: Rows,
}

impl Table {
    /// The position of `column` read as `column_type`, or else as any type.
    fn position(&self, column: &str, column_type: Option<ColumnType>) -> Option<usize> {
        let named = |(name, _): &(String, ColumnType)| name == column;
        column_type
            .and_then(|t| self.columns.iter().position(|c| named(c) && c.1 == t))
            .or_else(|| self.columns.iter().position(named))
            .or_else(|| {
                self.columns
                    .iter()
                    .position(|(name, _)| name.eq_ignore_ascii_case(column))
            })
    }
}

/// What a select names that the tables at hand do not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the snapshot of `{relation}` has no column `{column}`")]
pub struct MissingColumn {
    /// The table.
    pub relation: String,
    /// The column.
    pub column: String,
}

/// The name a relation's snapshot is kept under.
pub fn relation_name(relation: &Relation) -> &str {
    match relation {
        Relation::Table(name) | Relation::Query(name) => name,
    }
}

/// The columns (with their types, where the select gives one) each relation of `select` must
/// hold for [`evaluate`]: its own, and those of the parents its conditions look into.
pub fn needed_columns(select: &Select) -> HashMap<String, Vec<(String, Option<ColumnType>)>> {
    let mut needs: HashMap<String, Vec<(String, Option<ColumnType>)>> = HashMap::new();
    let own = relation_name(&select.relation).to_string();
    let mut add = |relation: &str, column: &str, column_type: Option<ColumnType>| {
        let list = needs.entry(relation.to_string()).or_default();
        match list.iter_mut().find(|(c, _)| c == column) {
            Some((_, t @ None)) => *t = column_type,
            Some((_, Some(known))) if column_type.is_some_and(|t| t != *known) => {
                list.push((column.to_string(), column_type))
            }
            Some(_) => {}
            None => list.push((column.to_string(), column_type)),
        }
    };
    for (column, column_type) in &select.columns {
        add(&own, column, Some(*column_type));
    }
    for term in &select.order {
        add(&own, &term.column, Some(term.column_type));
    }
    let mut typed: Vec<(String, ColumnType)> = select.columns.clone();
    typed.extend(
        select
            .order
            .iter()
            .map(|t| (t.column.clone(), t.column_type)),
    );
    fn walk(
        relation: &str,
        condition: &Condition,
        typed: &[(String, ColumnType)],
        add: &mut dyn FnMut(&str, &str, Option<ColumnType>),
    ) {
        let type_of = |column: &str| typed.iter().find(|(c, _)| c == column).map(|(_, t)| *t);
        match condition {
            Condition::Compare { column, param, .. } => {
                add(relation, column, Some(param.column_type))
            }
            Condition::In { column, params } | Condition::NotIn { column, params } => add(
                relation,
                column,
                params.first().map(|p| p.column_type).or(type_of(column)),
            ),
            Condition::Prefix { column, .. }
            | Condition::Near { column, .. }
            | Condition::IsNull { column, .. }
            | Condition::LastInsertId { column } => add(relation, column, type_of(column)),
            Condition::InParent {
                column,
                relation: parent,
                key,
                filter,
            } => {
                let key_type = type_of(column);
                add(relation, column, key_type);
                let parent = relation_name(parent).to_string();
                add(&parent, key, key_type);
                for c in filter {
                    walk(&parent, c, &[], add);
                }
            }
            Condition::Or(items) | Condition::And(items) => {
                for c in items {
                    walk(relation, c, typed, add);
                }
            }
        }
    }
    for condition in &select.filter {
        walk(&own, condition, &typed, &mut add);
    }
    needs
}

/// Runs `select` over `tables` (by [`relation_name`]): the rows that pass its conditions and
/// follow its keyset position, in its order, at most `limit` of them, with its columns.
pub fn evaluate(
    select: &Select,
    tables: &HashMap<String, Arc<Table>>,
) -> Result<Rows, MissingColumn> {
    let name = relation_name(&select.relation);
    let table = tables.get(name).ok_or_else(|| MissingColumn {
        relation: name.to_string(),
        column: "*".into(),
    })?;
    let missing = |column: &str| MissingColumn {
        relation: name.to_string(),
        column: column.to_string(),
    };
    let output: Vec<usize> = select
        .columns
        .iter()
        .map(|(c, t)| table.position(c, Some(*t)).ok_or_else(|| missing(c)))
        .collect::<Result<_, _>>()?;
    let order: Vec<(usize, &OrderTerm)> = select
        .order
        .iter()
        .map(|term| {
            table
                .position(&term.column, Some(term.column_type))
                .map(|p| (p, term))
                .ok_or_else(|| missing(&term.column))
        })
        .collect::<Result<_, _>>()?;
    let filter = Condition::And(select.filter.clone());
    let mut passed: Vec<&Vec<Value>> = Vec::new();
    for row in &table.rows {
        if !holds(&filter, row, table, name, tables)? {
            continue;
        }
        if let Some(after) = &select.after {
            let position: Vec<&Value> = order.iter().map(|(p, _)| &row[*p]).collect();
            if compare_in_order(&position, &after.iter().collect::<Vec<_>>(), &order)
                != Ordering::Greater
            {
                continue;
            }
        }
        passed.push(row);
    }
    passed.sort_by(|a, b| {
        let a: Vec<&Value> = order.iter().map(|(p, _)| &a[*p]).collect();
        let b: Vec<&Value> = order.iter().map(|(p, _)| &b[*p]).collect();
        compare_in_order(&a, &b, &order)
    });
    if let Some(group) = &select.per_group {
        // Each group's first rows, as `ROW_NUMBER() OVER (PARTITION BY …)` keeps them.
        let column = table
            .position(&group.column, None)
            .ok_or_else(|| missing(&group.column))?;
        let mut seen: Vec<(&Value, usize)> = Vec::new();
        passed.retain(|row| {
            let value = &row[column];
            match seen
                .iter_mut()
                .find(|(v, _)| sort_order(v, value) == Ordering::Equal)
            {
                Some((_, count)) => {
                    *count += 1;
                    *count <= group.rows
                }
                None => {
                    seen.push((value, 1));
                    group.rows >= 1
                }
            }
        });
    }
    Ok(passed
        .into_iter()
        .take(select.limit)
        .map(|row| output.iter().map(|&p| row[p].clone()).collect())
        .collect())
}

/// Two positions in a total order: term by term, NULL first ascending and last descending.
fn compare_in_order(a: &[&Value], b: &[&Value], order: &[(usize, &OrderTerm)]) -> Ordering {
    for ((a, b), (_, term)) in a.iter().zip(b).zip(order) {
        let ordering = sort_order(a, b);
        let ordering = if term.descending {
            ordering.reverse()
        } else {
            ordering
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

/// Whether `condition` is true for `row` (unknown counts as false: the conditions have no NOT,
/// so a row passes exactly when SQL's three-valued result is true).
fn holds(
    condition: &Condition,
    row: &[Value],
    table: &Table,
    name: &str,
    tables: &HashMap<String, Arc<Table>>,
) -> Result<bool, MissingColumn> {
    let value = |column: &str, column_type: Option<ColumnType>| {
        table
            .position(column, column_type)
            .map(|p| &row[p])
            .ok_or_else(|| MissingColumn {
                relation: name.to_string(),
                column: column.to_string(),
            })
    };
    Ok(match condition {
        Condition::Compare { column, op, param } => {
            let v = value(column, Some(param.column_type))?;
            compare(v, &param.value).is_some_and(|o| op_holds(*op, o))
        }
        Condition::In { column, params } => {
            let v = value(column, params.first().map(|p| p.column_type))?;
            params
                .iter()
                .any(|p| compare(v, &p.value) == Some(Ordering::Equal))
        }
        Condition::NotIn { column, params } => {
            let v = value(column, params.first().map(|p| p.column_type))?;
            // `x NOT IN (…)` is unknown when x or any listed value is NULL and none is equal.
            params
                .iter()
                .all(|p| compare(v, &p.value).is_some_and(|o| o != Ordering::Equal))
        }
        Condition::Prefix { column, prefix } => match value(column, None)? {
            Value::Null => false,
            other => text_of(other).starts_with(prefix),
        },
        Condition::Near {
            column,
            value: target,
            within,
        } => number_of(value(column, None)?).is_some_and(|n| (n - target).abs() <= *within),
        Condition::IsNull { column, negated } => (*value(column, None)? == Value::Null) != *negated,
        // Only a write's read-back names the key its INSERT generated; snapshots serve reads.
        Condition::LastInsertId { .. } => false,
        Condition::InParent {
            column,
            relation,
            key,
            filter,
        } => {
            let v = value(column, None)?;
            if *v == Value::Null {
                return Ok(false);
            }
            let parent_name = relation_name(relation);
            let parent = tables.get(parent_name).ok_or_else(|| MissingColumn {
                relation: parent_name.to_string(),
                column: key.clone(),
            })?;
            let key_at = parent.position(key, None).ok_or_else(|| MissingColumn {
                relation: parent_name.to_string(),
                column: key.clone(),
            })?;
            let all = Condition::And(filter.clone());
            for parent_row in &parent.rows {
                if compare(v, &parent_row[key_at]) == Some(Ordering::Equal)
                    && holds(&all, parent_row, parent, parent_name, tables)?
                {
                    return Ok(true);
                }
            }
            false
        }
        Condition::Or(items) => {
            for item in items {
                if holds(item, row, table, name, tables)? {
                    return Ok(true);
                }
            }
            false
        }
        Condition::And(items) => {
            for item in items {
                if !holds(item, row, table, name, tables)? {
                    return Ok(false);
                }
            }
            true
        }
    })
}

fn op_holds(op: CmpOp, ordering: Ordering) -> bool {
    match op {
        CmpOp::Eq => ordering == Ordering::Equal,
        CmpOp::Ne => ordering != Ordering::Equal,
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Lte => ordering != Ordering::Greater,
        CmpOp::Gt => ordering == Ordering::Greater,
        CmpOp::Gte => ordering != Ordering::Less,
    }
}

/// The order of two values as SQL compares them; `None` when either is NULL (unknown).
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    if *a == Value::Null || *b == Value::Null {
        return None;
    }
    Some(sort_order(a, b))
}

/// A total order of values: NULL first, then numbers (and booleans as 0 and 1), then text,
/// dates and timestamps (as SQLite ranks them).
pub fn sort_order(a: &Value, b: &Value) -> Ordering {
    use Value::{Bool, Date, Decimal, Float, Int, Null, Text, Timestamp};
    let rank = |v: &Value| match v {
        Null => 0,
        Int(_) | Float(_) | Decimal(_) | Bool(_) => 1,
        Text(_) | Date(_) | Timestamp(_) => 2,
    };
    match (a, b) {
        (Int(x), Int(y)) => x.cmp(y),
        (Bool(x), Bool(y)) => x.cmp(y),
        (Float(_), _) | (_, Float(_)) if rank(a) == 1 && rank(b) == 1 => {
            let (x, y) = (number_of(a).unwrap_or(0.0), number_of(b).unwrap_or(0.0));
            x.total_cmp(&y)
        }
        (Int(_) | Decimal(_) | Bool(_), Int(_) | Decimal(_) | Bool(_)) => {
            decimal_order(&decimal_text(a), &decimal_text(b))
        }
        (Date(_) | Timestamp(_), Date(_) | Timestamp(_)) => {
            timestamp_key(&text_of(a)).cmp(&timestamp_key(&text_of(b)))
        }
        _ if rank(a) != rank(b) => rank(a).cmp(&rank(b)),
        _ => text_of(a).cmp(&text_of(b)),
    }
}

fn decimal_text(value: &Value) -> String {
    match value {
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => u8::from(*b).to_string(),
        Value::Decimal(d) => d.clone(),
        _ => "0".into(),
    }
}

fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Decimal(d) => d.parse().ok(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// The bytes `LIKE` sees: text as stored, anything else as its SQL text.
fn text_of(value: &Value) -> Vec<u8> {
    match value {
        Value::Null => Vec::new(),
        Value::Text(t) => t.clone(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Float(f) => f.to_string().into_bytes(),
        Value::Decimal(d) | Value::Date(d) | Value::Timestamp(d) => d.clone().into_bytes(),
        Value::Bool(b) => u8::from(*b).to_string().into_bytes(),
    }
}

/// A timestamp (or date) as comparable text: `T` read as a space, a date at midnight, the
/// fraction without trailing zeros (`…:00.500` equals `…:00.5`, `…:00.000` equals `…:00`).
fn timestamp_key(text: &[u8]) -> Vec<u8> {
    let mut key: Vec<u8> = text
        .iter()
        .map(|&b| if b == b'T' { b' ' } else { b })
        .collect();
    if key.len() == 10 {
        key.extend_from_slice(b" 00:00:00");
    }
    if key.contains(&b'.') {
        while key.last() == Some(&b'0') {
            key.pop();
        }
        if key.last() == Some(&b'.') {
            key.pop();
        }
    }
    key
}

/// Exact order of two decimal texts (`-12.50`, `3`), without floating point.
fn decimal_order(a: &str, b: &str) -> Ordering {
    let (a_negative, a_int, a_frac) = decimal_parts(a);
    let (b_negative, b_int, b_frac) = decimal_parts(b);
    let a_zero = a_int.is_empty() && a_frac.is_empty();
    let b_zero = b_int.is_empty() && b_frac.is_empty();
    let a_sign = if a_zero {
        0
    } else if a_negative {
        -1
    } else {
        1
    };
    let b_sign = if b_zero {
        0
    } else if b_negative {
        -1
    } else {
        1
    };
    if a_sign != b_sign {
        return a_sign.cmp(&b_sign);
    }
    let magnitude = a_int
        .len()
        .cmp(&b_int.len())
        .then_with(|| a_int.cmp(b_int))
        .then_with(|| a_frac.cmp(b_frac));
    if a_sign < 0 {
        magnitude.reverse()
    } else {
        magnitude
    }
}

/// Sign, integer digits without leading zeros, fraction digits without trailing zeros.
fn decimal_parts(text: &str) -> (bool, &str, &str) {
    let text = text.trim();
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    (
        negative,
        int.trim_start_matches('0'),
        frac.trim_end_matches('0'),
    )
}

/// The columns a snapshot reads for `aggregate`: its groups', then its measures'.
pub fn aggregate_columns(aggregate: &Aggregate) -> Vec<(String, ColumnType)> {
    aggregate
        .groups
        .iter()
        .map(|g| (g.column.clone(), g.column_type))
        .chain(
            aggregate
                .measures
                .iter()
                .map(|m| (m.column.clone(), m.column_type)),
        )
        .collect()
}

/// Computes `aggregate` over `rows` (already filtered, laid out as [`aggregate_columns`]):
/// the rows the SQL of `Dialect::aggregate` answers, groups in order, NULL first.
pub fn aggregate(aggregate: &Aggregate, rows: Rows) -> Rows {
    let groups = aggregate.groups.len();
    let nulled = |value: &Value, sentinels: &[Param]| -> Value {
        if sentinels
            .iter()
            .any(|s| compare(value, &s.value) == Some(Ordering::Equal))
        {
            Value::Null
        } else {
            value.clone()
        }
    };
    let mut keyed: Vec<(Vec<Value>, Vec<Value>)> = rows
        .into_iter()
        .map(|row| {
            let key = aggregate
                .groups
                .iter()
                .zip(&row)
                .map(|(g, v)| bucket(&nulled(v, &g.sentinels), g.bucket))
                .collect();
            let measured = aggregate
                .measures
                .iter()
                .zip(row.iter().skip(groups))
                .map(|(m, v)| nulled(v, &m.sentinels))
                .collect();
            (key, measured)
        })
        .collect();
    let key_order = |a: &[Value], b: &[Value]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| sort_order(x, y))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    };
    keyed.sort_by(|a, b| key_order(&a.0, &b.0));
    let mut out: Rows = Vec::new();
    let mut start = 0;
    // No group terms: one group of every row, even of none (as SQL answers).
    while start < keyed.len() || (groups == 0 && out.is_empty()) {
        let end = keyed[start..]
            .iter()
            .position(|(k, _)| key_order(k, &keyed[start].0) != Ordering::Equal)
            .map_or(keyed.len(), |p| start + p);
        let members = &keyed[start..end];
        let mut row: Vec<Value> = members.first().map_or_else(Vec::new, |(k, _)| k.clone());
        row.push(Value::Int(members.len() as i64));
        for (i, m) in aggregate.measures.iter().enumerate() {
            let values = members
                .iter()
                .map(|(_, v)| &v[i])
                .filter(|v| **v != Value::Null);
            row.push(match m.kind {
                MeasureKind::Count => Value::Int(values.count() as i64),
                MeasureKind::Min => values
                    .min_by(|a, b| sort_order(a, b))
                    .cloned()
                    .unwrap_or(Value::Null),
                MeasureKind::Max => values
                    .max_by(|a, b| sort_order(a, b))
                    .cloned()
                    .unwrap_or(Value::Null),
                MeasureKind::Sum { scaled } => exact_sum(values, scaled),
            });
        }
        out.push(row);
        if end == start {
            break;
        }
        start = end;
    }
    out.truncate(aggregate.limit);
    out
}

/// A group's bucket of a stored value, as `Dialect::aggregate` cuts it.
fn bucket(value: &Value, bucket: Bucket) -> Value {
    if *value == Value::Null {
        return Value::Null;
    }
    match bucket {
        Bucket::Value => value.clone(),
        Bucket::TextPrefix(n) | Bucket::DateText(n) => {
            let text = text_of(value);
            Value::Text(text[..n.min(text.len())].to_vec())
        }
        Bucket::Divide(d) => match value {
            Value::Int(i) => Value::Int(i / d),
            other => number_of(other).map_or(Value::Null, |f| Value::Int(f as i64 / d)),
        },
        Bucket::Round(places) => number_of(value).map_or(Value::Null, |f| {
            let scale = 10f64.powi(places as i32);
            Value::Decimal(format!(
                "{:.*}",
                places as usize,
                (f * scale).round() / scale
            ))
        }),
    }
}

/// The exact sum of decimal values as decimal text; with `scaled`, of each value rounded to
/// that many places as a whole number (the caller places the point). NULL for no values.
fn exact_sum<'a>(values: impl Iterator<Item = &'a Value>, scaled: Option<u32>) -> Value {
    let mut total: i128 = 0;
    let mut scale: u32 = 0;
    let mut any = false;
    for value in values {
        any = true;
        let (mantissa, places) = match scaled {
            Some(places) => {
                let f = number_of(value).unwrap_or(0.0);
                ((f * 10f64.powi(places as i32)).round() as i128, 0)
            }
            None => scaled_decimal(&decimal_text(value)),
        };
        if places > scale {
            total = total.saturating_mul(10i128.saturating_pow(places - scale));
            scale = places;
        }
        total =
            total.saturating_add(mantissa.saturating_mul(10i128.saturating_pow(scale - places)));
    }
    if !any {
        return Value::Null;
    }
    Value::Decimal(scaled_text(total, scale))
}

/// The whole number `value` × 10^-`scale` as decimal text with exactly `scale` places
/// (`(-1250, 2)` is `-12.50`).
pub fn scaled_text(value: i128, scale: u32) -> String {
    let digits = format!(
        "{:0>width$}",
        value.unsigned_abs(),
        width = scale as usize + 1
    );
    let (int, frac) = digits.split_at(digits.len() - scale as usize);
    let sign = if value < 0 { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// A decimal text as a whole number and its decimal places (`-12.50` is `(-1250, 2)`).
fn scaled_decimal(text: &str) -> (i128, u32) {
    let (negative, int, frac) = decimal_parts(text);
    let digits: i128 = format!("0{int}{frac}").parse().unwrap_or(0);
    (if negative { -digits } else { digits }, frac.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Param;

    fn text(s: &str) -> Value {
        Value::Text(s.as_bytes().to_vec())
    }

    fn table() -> HashMap<String, Arc<Table>> {
        let rows = vec![
            vec![
                Value::Int(1),
                text("Berlin"),
                Value::Decimal("12.7500".into()),
            ],
            vec![Value::Int(2), Value::Null, Value::Decimal("800".into())],
            vec![Value::Int(3), text("bern"), Value::Decimal("-0.5".into())],
            vec![Value::Int(4), text("Bern"), Value::Null],
        ];
        let columns = vec![
            ("ID".into(), ColumnType::Integer),
            ("CITY".into(), ColumnType::Varchar),
            ("FREIGHT".into(), ColumnType::Decimal),
        ];
        HashMap::from([("T".to_string(), Arc::new(Table { columns, rows }))])
    }

    fn select(filter: Vec<Condition>, order: Vec<OrderTerm>, after: Option<Vec<Value>>) -> Select {
        Select {
            relation: Relation::Table("T".into()),
            columns: vec![("ID".into(), ColumnType::Integer)],
            filter,
            order,
            after,
            limit: 10,
            per_group: None,
        }
    }

    fn term(column: &str, column_type: ColumnType, descending: bool) -> OrderTerm {
        OrderTerm {
            column: column.into(),
            column_type,
            descending,
            nullable: column != "ID",
        }
    }

    fn ids(rows: Rows) -> Vec<i64> {
        rows.into_iter()
            .map(|r| match r[0] {
                Value::Int(i) => i,
                _ => panic!("{r:?}"),
            })
            .collect()
    }

    fn money(op: CmpOp, amount: &str) -> Condition {
        Condition::Compare {
            column: "FREIGHT".into(),
            op,
            param: Param {
                value: Value::Decimal(amount.into()),
                column_type: ColumnType::Decimal,
            },
        }
    }

    #[test]
    fn nulls_sort_first_ascending_and_last_descending_with_the_key_breaking_ties() {
        let by_city = |descending| {
            select(
                vec![],
                vec![
                    term("CITY", ColumnType::Varchar, descending),
                    term("ID", ColumnType::Integer, false),
                ],
                None,
            )
        };
        // Bytes: upper case before lower case, as SQLite's BINARY collation.
        assert_eq!(
            ids(evaluate(&by_city(false), &table()).unwrap()),
            [2, 1, 4, 3]
        );
        assert_eq!(
            ids(evaluate(&by_city(true), &table()).unwrap()),
            [3, 4, 1, 2]
        );
    }

    #[test]
    fn decimals_compare_exactly_and_null_matches_no_comparison() {
        let run = |c| ids(evaluate(&select(vec![c], vec![], None), &table()).unwrap());
        assert_eq!(run(money(CmpOp::Eq, "12.75")), [1]);
        assert_eq!(run(money(CmpOp::Gt, "12.75")), [2]);
        assert_eq!(run(money(CmpOp::Lt, "0")), [3]);
        assert_eq!(run(money(CmpOp::Ne, "800")), [1, 3]);
        assert_eq!(
            run(Condition::NotIn {
                column: "CITY".into(),
                params: vec![Param {
                    value: text("Bern"),
                    column_type: ColumnType::Varchar
                }],
            }),
            [1, 3]
        );
        assert_eq!(
            run(Condition::IsNull {
                column: "CITY".into(),
                negated: false
            }),
            [2]
        );
        assert_eq!(
            run(Condition::Prefix {
                column: "CITY".into(),
                prefix: b"Be".to_vec()
            }),
            [1, 4]
        );
        assert_eq!(
            run(Condition::Or(vec![
                money(CmpOp::Gt, "100"),
                money(CmpOp::Lt, "0")
            ])),
            [2, 3]
        );
    }

    #[test]
    fn keyset_pages_continue_strictly_after_the_cursor_through_nulls() {
        let order = || {
            vec![
                term("FREIGHT", ColumnType::Decimal, true),
                term("ID", ColumnType::Integer, false),
            ]
        };
        let all = ids(evaluate(&select(vec![], order(), None), &table()).unwrap());
        assert_eq!(all, [2, 1, 3, 4]);
        let after =
            |values| ids(evaluate(&select(vec![], order(), Some(values)), &table()).unwrap());
        assert_eq!(
            after(vec![Value::Decimal("12.7500".into()), Value::Int(1)]),
            [3, 4]
        );
        assert_eq!(
            after(vec![Value::Decimal("-0.5".into()), Value::Int(3)]),
            [4]
        );
        assert_eq!(after(vec![Value::Null, Value::Int(4)]), Vec::<i64>::new());
    }

    #[test]
    fn timestamps_compare_whatever_their_fraction_and_separator() {
        let a = Value::Timestamp("1994-08-04 00:00:00".into());
        assert_eq!(
            compare(&a, &Value::Timestamp("1994-08-04T00:00:00.000".into())),
            Some(Ordering::Equal)
        );
        assert_eq!(
            compare(&a, &Value::Date("1994-08-04".into())),
            Some(Ordering::Equal)
        );
        assert_eq!(
            compare(&Value::Timestamp("1994-08-04 00:00:00.5".into()), &a),
            Some(Ordering::Greater)
        );
        assert_eq!(decimal_order("-0012.50", "-12.5"), Ordering::Equal);
        assert_eq!(decimal_order("-2", "-10"), Ordering::Greater);
        assert_eq!(decimal_order("0.00", "-0"), Ordering::Equal);
    }

    #[test]
    fn parents_are_looked_into_for_inherited_conditions() {
        let mut tables = table();
        tables.insert(
            "P".into(),
            Arc::new(Table {
                columns: vec![
                    ("PID".into(), ColumnType::Integer),
                    ("OPEN".into(), ColumnType::Varchar),
                ],
                rows: vec![
                    vec![Value::Int(1), text("Y")],
                    vec![Value::Int(3), text("N")],
                ],
            }),
        );
        let in_open = Condition::InParent {
            column: "ID".into(),
            relation: Relation::Table("P".into()),
            key: "PID".into(),
            filter: vec![Condition::Compare {
                column: "OPEN".into(),
                op: CmpOp::Eq,
                param: Param {
                    value: text("Y"),
                    column_type: ColumnType::Varchar,
                },
            }],
        };
        let s = select(vec![in_open], vec![], None);
        assert_eq!(ids(evaluate(&s, &tables).unwrap()), [1]);
        let needs = needed_columns(&s);
        assert_eq!(
            needs["P"],
            [
                ("PID".to_string(), Some(ColumnType::Integer)),
                ("OPEN".to_string(), Some(ColumnType::Varchar))
            ]
        );
    }

    #[test]
    fn aggregates_in_memory_merge_sentinels_into_the_null_group_and_sum_exactly() {
        use crate::source::select::{GroupTerm, Measure};
        let rows: Rows = [
            ("20260315", "0.10"),
            ("20260301", "0.20"),
            ("00000000", "0.10"),
            ("20260402", "0.20"),
        ]
        .iter()
        .map(|(due, amount)| vec![text(due), Value::Float(amount.parse().unwrap())])
        .chain([vec![Value::Null, Value::Float(0.1)]])
        .collect();
        let aggregate = Aggregate {
            relation: Relation::Table("T".into()),
            filter: vec![],
            groups: vec![GroupTerm {
                column: "DUE".into(),
                column_type: ColumnType::Char(Some(8)),
                sentinels: vec![Param {
                    value: text("00000000"),
                    column_type: ColumnType::Char(Some(8)),
                }],
                bucket: Bucket::TextPrefix(6),
            }],
            measures: vec![Measure {
                column: "AMT".into(),
                column_type: ColumnType::Float,
                sentinels: vec![],
                kind: MeasureKind::Sum { scaled: Some(2) },
            }],
            limit: 10,
        };
        assert_eq!(
            super::aggregate(&aggregate, rows),
            vec![
                vec![Value::Null, Value::Int(2), Value::Decimal("20".into())],
                vec![text("202603"), Value::Int(2), Value::Decimal("30".into())],
                vec![text("202604"), Value::Int(1), Value::Decimal("20".into())],
            ]
        );
        let empty = Aggregate {
            groups: vec![],
            ..aggregate
        };
        assert_eq!(
            super::aggregate(&empty, vec![]),
            vec![vec![Value::Int(0), Value::Null]]
        );
    }
}
