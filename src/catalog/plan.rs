//! Turns a validated `QuerySpec` into a dialect-neutral `Select`, adding the key for a total
//! order, the keyset position, and the row layout for rendering.

use super::access::FieldMask;
use super::query::{Filter, FilterKind, QueryError, QuerySpec};
use super::Resource;
use crate::source::select::{CmpOp, Condition, OrderTerm, Select};
use crate::source::{ColumnType, Param, Value};

/// A planned list or key lookup.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What to run (one extra row to learn whether another page exists).
    pub select: Select,
    /// Output fields and their column positions in each row.
    pub output: Vec<(usize, usize)>,
    /// Column positions of the order terms, for the next cursor.
    pub order_positions: Vec<usize>,
    /// Canonical sort signature carried by cursors.
    pub signature: String,
    /// Digest of the resource and the client's filters, carried by cursors.
    pub listing: String,
    /// Page size asked for.
    pub limit: usize,
}

/// Plans a listing: `extra` conditions (a parent key, row policies) are added to the client's
/// filters, and fields `mask` hides are never read. `within` names what the path narrows the
/// listing to (a parent's key), so a cursor is bound to it too.
pub fn list(
    resource: &Resource,
    spec: &QuerySpec,
    extra: Vec<Condition>,
    mask: &FieldMask,
    within: &str,
) -> Result<Plan, QueryError> {
    let mut sort = if spec.sort.is_empty() {
        resource.default_sort.clone()
    } else {
        spec.sort.clone()
    };
    for &k in &resource.key {
        if !sort.iter().any(|(i, _)| *i == k) {
            sort.push((k, false));
        }
    }
    let signature = sort
        .iter()
        .map(|&(i, d)| format!("{}{}", if d { "-" } else { "" }, resource.fields[i].name))
        .collect::<Vec<_>>()
        .join(",");
    let listing = listing_digest(resource, spec, within);
    let output: Vec<usize> = spec
        .fields
        .clone()
        .unwrap_or_else(|| (0..resource.fields.len()).collect())
        .into_iter()
        .filter(|&i| !mask.hides(i))
        .collect();

    let mut columns: Vec<(String, ColumnType)> = Vec::new();
    let position = |i: usize, columns: &mut Vec<_>| column_position(columns, &resource.fields[i]);
    let output: Vec<(usize, usize)> = output
        .iter()
        .map(|&i| (i, position(i, &mut columns)))
        .collect();
    let order_positions: Vec<usize> = sort
        .iter()
        .map(|&(i, _)| position(i, &mut columns))
        .collect();
    let order: Vec<OrderTerm> = sort
        .iter()
        .map(|&(i, descending)| {
            let f = &resource.fields[i];
            OrderTerm {
                column: f.column.clone(),
                column_type: f.column_type,
                descending,
                nullable: !f.is_key,
            }
        })
        .collect();

    let after = match &spec.cursor {
        None => None,
        Some(cursor) => {
            let invalid = |m: &str| QueryError {
                place: super::query::Place::Query,
                parameter: "cursor".into(),
                message: m.into(),
            };
            if cursor.sort != signature {
                return Err(invalid(
                    "belongs to a different sort; start again without it",
                ));
            }
            if cursor.listing.as_ref().is_some_and(|l| *l != listing) {
                return Err(invalid(
                    "was issued for another listing (other filters, or another resource); \
                     send it with the filters of the page that gave it, or start again without it",
                ));
            }
            if cursor.values.len() != order.len()
                || !cursor.values.iter().zip(&order).all(|(v, t)| fits(v, t))
            {
                return Err(invalid("is not a cursor this API issued"));
            }
            Some(cursor.values.clone())
        }
    };

    let mut filter: Vec<Condition> = spec
        .filters
        .iter()
        .map(|f| condition(resource, f))
        .collect();
    filter.extend(extra);
    Ok(Plan {
        select: Select {
            relation: resource.relation.clone(),
            columns,
            filter,
            order,
            after,
            limit: spec.limit + 1,
            per_group: None,
        },
        output,
        order_positions,
        signature,
        listing,
        limit: spec.limit,
    })
}

/// The position of `field`'s (column, type) among `columns`, added at the end when missing:
/// one read per (column, type), since two fields over one column may decode it differently
/// (`date` and `datetime` over one text column).
pub fn column_position(columns: &mut Vec<(String, ColumnType)>, field: &super::Field) -> usize {
    match columns
        .iter()
        .position(|(c, t)| *c == field.column && *t == field.column_type)
    {
        Some(p) => p,
        None => {
            columns.push((field.column.clone(), field.column_type));
            columns.len() - 1
        }
    }
}

/// A short digest of the resource and the client's filters (a cursor is opaque, not secret).
fn listing_digest(resource: &Resource, spec: &QuerySpec, within: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(format!(
        "{}/{}|{}|",
        resource.version,
        resource.name,
        within.len()
    ));
    hash.update(within);
    hash.update(spec.filters_key());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash.finalize()[..9])
}

/// A cursor value must have the shape its column decodes to, so it binds cleanly: text only
/// for text columns (a client's text never reaches an integer or date column's comparison).
fn fits(value: &Value, term: &OrderTerm) -> bool {
    match (value, term.column_type) {
        (Value::Null, _) => term.nullable,
        (
            Value::Text(_),
            ColumnType::Char(_)
            | ColumnType::Varchar
            | ColumnType::NChar(_)
            | ColumnType::NVarchar
            | ColumnType::Oem(_)
            | ColumnType::Binary,
        ) => true,
        (Value::Int(_), ColumnType::Integer) => true,
        (Value::Float(f), ColumnType::Float) => f.is_finite(),
        (Value::Decimal(d), ColumnType::Decimal | ColumnType::Money) => {
            super::field::canonical_decimal(d, None).is_some()
        }
        (Value::Date(d), ColumnType::Date) => super::date::Date::parse_iso(d).is_some(),
        (Value::Timestamp(t), ColumnType::Timestamp | ColumnType::TimestampOffset) => {
            super::date::iso_timestamp(t).is_some()
        }
        (Value::Bool(_), ColumnType::Bit) => true,
        _ => false,
    }
}

/// Key lookup conditions from the raw key segments, in key order.
pub fn key_conditions(resource: &Resource, parts: &[String]) -> Result<Vec<Condition>, QueryError> {
    if parts.len() != resource.key.len() {
        let names: Vec<&str> = resource
            .key
            .iter()
            .map(|&i| resource.fields[i].name.as_str())
            .collect();
        return Err(QueryError {
            place: super::query::Place::Path,
            parameter: names.join(","),
            message: format!(
                "must have {} part(s) separated by `,`: {}",
                names.len(),
                names.join(",")
            ),
        });
    }
    resource
        .key
        .iter()
        .zip(parts)
        .map(|(&i, part)| {
            let f = &resource.fields[i];
            let param = f.to_legacy(part).map_err(|m| QueryError {
                place: super::query::Place::Path,
                parameter: f.name.clone(),
                message: m,
            })?;
            Ok(Condition::Compare {
                column: f.column.clone(),
                op: CmpOp::Eq,
                param,
            })
        })
        .collect()
}

fn condition(resource: &Resource, filter: &Filter) -> Condition {
    let field = &resource.fields[filter.field];
    let column = field.column.clone();
    let sentinels = field.null_sentinels();
    let base = match &filter.kind {
        FilterKind::Null(is_null) => {
            let null = Condition::IsNull {
                column: column.clone(),
                negated: !is_null,
            };
            if sentinels.is_empty() {
                return null;
            }
            return if *is_null {
                Condition::Or(vec![
                    null,
                    Condition::In {
                        column,
                        params: sentinels,
                    },
                ])
            } else {
                Condition::And(vec![
                    null,
                    Condition::NotIn {
                        column,
                        params: sentinels,
                    },
                ])
            };
        }
        FilterKind::Compare(op, param) => {
            served_compare(field, *op, param).unwrap_or_else(|| Condition::Compare {
                column: column.clone(),
                op: *op,
                param: param.clone(),
            })
        }
        FilterKind::In(params) => params
            .iter()
            .map(|p| served_compare(field, CmpOp::Eq, p))
            .collect::<Option<Vec<_>>>()
            .map_or_else(
                || Condition::In {
                    column: column.clone(),
                    params: params.clone(),
                },
                Condition::Or,
            ),
        FilterKind::NotIn(params) => params
            .iter()
            .map(|p| served_compare(field, CmpOp::Ne, p))
            .collect::<Option<Vec<_>>>()
            .map_or_else(
                || Condition::NotIn {
                    column: column.clone(),
                    params: params.clone(),
                },
                Condition::And,
            ),
        FilterKind::Prefix(prefix) => Condition::Prefix {
            column: column.clone(),
            prefix: prefix.clone(),
        },
    };
    // A legacy "null" (00000000, blanks) is null to the client: no value filter matches it.
    if sentinels.is_empty() {
        base
    } else {
        Condition::And(vec![
            base,
            Condition::NotIn {
                column,
                params: sentinels,
            },
        ])
    }
}

/// A comparison with the value a decimal field with a scale serves from a binary float column
/// (the stored double rounded to its places): ranges of stored doubles, so `freight=79.19`
/// finds the float4 79.19000244… and an index still serves it. `None` for other fields.
fn served_compare(field: &super::Field, op: CmpOp, param: &Param) -> Option<Condition> {
    use crate::config::FieldType;
    let (
        FieldType::Decimal | FieldType::Money,
        Some(scale),
        ColumnType::Float,
        Value::Float(target),
    ) = (
        field.field_type,
        field.scale,
        field.column_type,
        &param.value,
    )
    else {
        return None;
    };
    let bounds = super::float::bounds(op, *target, scale)?;
    let mut conditions: Vec<Condition> = bounds
        .into_iter()
        .map(|bound| Condition::Compare {
            column: field.column.clone(),
            op: if bound.below { CmpOp::Lt } else { CmpOp::Gte },
            param: Param {
                value: Value::Float(bound.at),
                column_type: ColumnType::Float,
            },
        })
        .collect();
    Some(match (op, conditions.len()) {
        (_, 1) => conditions.remove(0),
        (CmpOp::Ne, _) => Condition::Or(conditions),
        _ => Condition::And(conditions),
    })
}
