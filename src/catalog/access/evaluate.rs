//! Row policies applied to a row Portico already holds (an event), the way the database
//! applies them to a query: a row is shown only when every condition holds.

use std::cmp::Ordering;

use crate::source::select::{CmpOp, Condition};
use crate::source::Value;

/// Whether `condition` holds for the row whose columns `column` looks up. A condition Portico
/// cannot decide here withholds the row.
pub fn holds(condition: &Condition, column: &dyn Fn(&str) -> Option<Value>) -> bool {
    let compare = |name: &str, param: &Value| column(name).and_then(|v| compare(&v, param));
    match condition {
        Condition::Compare {
            column: c,
            op,
            param,
        } => compare(c, &param.value).is_some_and(|o| match op {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Lte => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Gte => o != Ordering::Less,
        }),
        Condition::In { column: c, params } => params
            .iter()
            .any(|p| compare(c, &p.value) == Some(Ordering::Equal)),
        Condition::NotIn { column: c, params } => {
            column(c).is_some_and(|v| v != Value::Null)
                && params
                    .iter()
                    .all(|p| compare(c, &p.value).is_some_and(|o| o != Ordering::Equal))
        }
        Condition::Prefix { column: c, prefix } => match column(c) {
            Some(Value::Text(bytes)) => bytes.starts_with(prefix),
            _ => false,
        },
        Condition::IsNull { column: c, negated } => {
            column(c).is_some_and(|v| (v == Value::Null) != *negated)
        }
        // The parent's row is not at hand: withheld (feeds refuse such principals up front).
        // `Near` guards writes only; no policy is made of it.
        Condition::LastInsertId { .. } | Condition::InParent { .. } | Condition::Near { .. } => {
            false
        }
        Condition::Or(all) => all.iter().any(|c| holds(c, column)),
        Condition::And(all) => all.iter().all(|c| holds(c, column)),
    }
}

/// SQL comparison of a stored value with a bound one; `None` when either is NULL or they
/// cannot be compared. CHAR padding is not significant, as in SQL.
fn compare(stored: &Value, bound: &Value) -> Option<Ordering> {
    let trimmed = |b: &[u8]| b.trim_ascii_end().to_vec();
    match (stored, bound) {
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Text(a), Value::Text(b)) => Some(trimmed(a).cmp(&trimmed(b))),
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Date(a), Value::Date(b)) | (Value::Timestamp(a), Value::Timestamp(b)) => {
            Some(a.cmp(b))
        }
        (a, b) => number(a)?.partial_cmp(&number(b)?),
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Decimal(d) => d.parse().ok(),
        Value::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{ColumnType, Param};

    fn text(s: &str) -> Param {
        Param {
            value: Value::Text(s.as_bytes().to_vec()),
            column_type: ColumnType::Char(Some(8)),
        }
    }

    #[test]
    fn conditions_hold_as_in_sql() {
        let row = |name: &str| match name {
            "CUST_NO" => Some(Value::Text(b"C00002  ".to_vec())),
            "AMOUNT" => Some(Value::Decimal("12.50".into())),
            "NOTE" => Some(Value::Null),
            _ => None,
        };
        let eq = |c: &str, p: Param| Condition::Compare {
            column: c.into(),
            op: CmpOp::Eq,
            param: p,
        };
        assert!(holds(&eq("CUST_NO", text("C00002")), &row));
        assert!(!holds(&eq("CUST_NO", text("C00001")), &row));
        assert!(!holds(&eq("NOTE", text("x")), &row), "NULL never equals");
        assert!(
            !holds(&eq("MISSING", text("x")), &row),
            "unknown columns withhold"
        );
        let amount = Param {
            value: Value::Int(10),
            column_type: ColumnType::Decimal,
        };
        let gt = Condition::Compare {
            column: "AMOUNT".into(),
            op: CmpOp::Gt,
            param: amount,
        };
        assert!(holds(&gt, &row));
        let within = Condition::In {
            column: "CUST_NO".into(),
            params: vec![text("C00009"), text("C00002")],
        };
        assert!(holds(&within, &row));
        assert!(!holds(
            &Condition::And(vec![within.clone(), eq("CUST_NO", text("C9"))]),
            &row
        ));
        assert!(holds(
            &Condition::Or(vec![within, eq("CUST_NO", text("C9"))]),
            &row
        ));
        assert!(holds(
            &Condition::IsNull {
                column: "NOTE".into(),
                negated: false
            },
            &row
        ));
    }
}
