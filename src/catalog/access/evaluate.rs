//! Row policies applied to a row Portico already holds (a change event), the way the database
//! applies them to a query, so a feed never shows a row that `GET` hides.
//!
//! The database compares text under its collation, which Portico does not know: PostgreSQL
//! and SQLite compare bytes, MariaDB's default `utf8mb4_general_ci` ignores case and accents,
//! SQL Server's `CI_AS` ignores case, and trailing blanks count on some engines and not on
//! others. So the evaluation is three-valued: a condition holds, fails, or Portico cannot tell
//! ([`Verdict`]), and a row it cannot tell about is withheld (fail closed); the caller logs
//! and counts it. The rule for text:
//!
//! - Equality (`=`, `<>`, `IN`, `NOT IN`) is decided only when the byte comparison and a
//!   case- and accent-folded one agree. Folding knows ASCII and the accented letters of
//!   Latin-1 (`é` → `e`); text with any other non-ASCII character is decided only when it is
//!   equal byte for byte (a collation may equate `ß` and `ss`, or `æ` and `ae`).
//! - Trailing blanks are not significant against a `char(n)` / `nchar(n)` field (SQL's CHAR
//!   comparison, which every engine but SQLite applies; declare SQLite's columns `varchar`).
//!   Against any other column they must not change the answer, or Portico cannot tell.
//! - Order (`<`, `<=`, `>`, `>=`) is decided only between texts of letters and digits (a
//!   locale collation may ignore or reorder punctuation and blanks) whose byte order and
//!   folded order agree.
//! - A prefix (`LIKE 'p%'`) is decided when the byte and folded matches agree (LIKE ignores
//!   case under SQLite and `_ci` collations).
//!
//! Numbers, dates, timestamps and booleans compare as values. NULL makes a comparison false,
//! as SQL's unknown does in a WHERE clause: every condition here is free of negation (`<>` and
//! `NOT IN` are comparisons of their own), so "unknown" and "false" end the same way. `AND`
//! and `OR` combine "cannot tell" as SQL's three-valued logic combines unknown: `AND` fails
//! when any part fails, `OR` holds when any part holds, otherwise a part Portico cannot tell
//! about leaves the whole untold.

use std::cmp::Ordering;

use crate::source::select::{CmpOp, Condition};
use crate::source::{ColumnType, Param, Value};

/// What a condition says about one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The database would return the row.
    Holds,
    /// The database would not return the row.
    Fails,
    /// Portico cannot tell what the database would do, and why; the row is withheld.
    Unknown(Doubt),
}

/// Why a condition cannot be decided from the row alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doubt {
    /// A text comparison the database's collation decides (case, accents, trailing blanks,
    /// characters Portico does not fold, the order of punctuation).
    Collation,
    /// The row does not carry a column the condition reads.
    MissingColumn,
    /// The values are of types only the database knows how to compare.
    Incomparable,
    /// The condition needs other rows (a parent's row policies) or is not a row policy.
    OtherRows,
}

impl Doubt {
    /// The label of the withheld-events metric (`reason`).
    pub fn reason(self) -> &'static str {
        match self {
            Doubt::Collation => "collation",
            Doubt::MissingColumn => "missing_column",
            Doubt::Incomparable => "incomparable",
            Doubt::OtherRows => "other_rows",
        }
    }
}

impl Verdict {
    fn from_bool(b: bool) -> Self {
        if b {
            Verdict::Holds
        } else {
            Verdict::Fails
        }
    }

    /// SQL's AND: fails when any part fails; otherwise the first doubt, if any.
    fn and(parts: impl IntoIterator<Item = Verdict>) -> Self {
        let mut doubt = None;
        for part in parts {
            match part {
                Verdict::Fails => return Verdict::Fails,
                Verdict::Unknown(d) => doubt = doubt.or(Some(d)),
                Verdict::Holds => {}
            }
        }
        doubt.map_or(Verdict::Holds, Verdict::Unknown)
    }

    /// SQL's OR: holds when any part holds; otherwise the first doubt, if any.
    fn or(parts: impl IntoIterator<Item = Verdict>) -> Self {
        let mut doubt = None;
        for part in parts {
            match part {
                Verdict::Holds => return Verdict::Holds,
                Verdict::Unknown(d) => doubt = doubt.or(Some(d)),
                Verdict::Fails => {}
            }
        }
        doubt.map_or(Verdict::Fails, Verdict::Unknown)
    }
}

/// What every one of `conditions` says together (a grant's conditions all apply).
pub fn evaluate_all(conditions: &[Condition], column: &dyn Fn(&str) -> Option<Value>) -> Verdict {
    Verdict::and(conditions.iter().map(|c| evaluate(c, column)))
}

/// Whether `condition` holds for the row whose columns `column` looks up; a condition Portico
/// cannot decide here does not hold (the row is withheld).
pub fn holds(condition: &Condition, column: &dyn Fn(&str) -> Option<Value>) -> bool {
    evaluate(condition, column) == Verdict::Holds
}

/// What `condition` says about the row whose columns `column` looks up.
pub fn evaluate(condition: &Condition, column: &dyn Fn(&str) -> Option<Value>) -> Verdict {
    let stored = |name: &str| column(name).ok_or(Doubt::MissingColumn);
    match condition {
        Condition::Compare {
            column: c,
            op,
            param,
        } => compare(stored(c), param, *op),
        Condition::In { column: c, params } => {
            let value = stored(c);
            Verdict::or(params.iter().map(|p| compare(value.clone(), p, CmpOp::Eq)))
        }
        Condition::NotIn { column: c, params } => {
            let value = stored(c);
            Verdict::and(params.iter().map(|p| compare(value.clone(), p, CmpOp::Ne)))
        }
        Condition::Prefix { column: c, prefix } => match stored(c) {
            Ok(Value::Text(bytes)) => starts_with(&bytes, prefix),
            Ok(Value::Null) => Verdict::Fails,
            Ok(_) => Verdict::Unknown(Doubt::Incomparable),
            Err(doubt) => Verdict::Unknown(doubt),
        },
        Condition::IsNull { column: c, negated } => match stored(c) {
            Ok(v) => Verdict::from_bool((v == Value::Null) != *negated),
            Err(doubt) => Verdict::Unknown(doubt),
        },
        // The parent's row is not at hand (feeds refuse such principals up front). `Near`
        // guards writes only; no policy is made of it.
        Condition::LastInsertId { .. } | Condition::InParent { .. } | Condition::Near { .. } => {
            Verdict::Unknown(Doubt::OtherRows)
        }
        Condition::Or(all) => Verdict::or(all.iter().map(|c| evaluate(c, column))),
        Condition::And(all) => Verdict::and(all.iter().map(|c| evaluate(c, column))),
    }
}

/// `stored op param`, as the database compares them.
fn compare(stored: Result<Value, Doubt>, param: &Param, op: CmpOp) -> Verdict {
    let stored = match stored {
        Ok(value) => value,
        Err(doubt) => return Verdict::Unknown(doubt),
    };
    let ordering = match (&stored, &param.value) {
        // SQL's unknown: the row is not returned.
        (Value::Null, _) | (_, Value::Null) => return Verdict::Fails,
        (Value::Text(a), Value::Text(b)) => {
            let fixed = matches!(
                param.column_type,
                ColumnType::Char(_) | ColumnType::NChar(_)
            );
            if matches!(op, CmpOp::Eq | CmpOp::Ne) {
                text_equality(a, b, fixed).map(|equal| {
                    if equal {
                        Ordering::Equal
                    } else {
                        // Only equality is asked; any unequal ordering answers it.
                        Ordering::Less
                    }
                })
            } else {
                text_order(a, b, fixed)
            }
        }
        (a, b) => value_order(a, b).ok_or(Doubt::Incomparable),
    };
    match ordering {
        Ok(o) => Verdict::from_bool(match op {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Lte => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Gte => o != Ordering::Less,
        }),
        Err(doubt) => Verdict::Unknown(doubt),
    }
}

/// Whether two texts are equal under every collation Portico allows for (see the module
/// documentation), or `Doubt::Collation` when collations disagree.
fn text_equality(stored: &[u8], bound: &[u8], fixed: bool) -> Result<bool, Doubt> {
    let (a, b) = (stored.trim_ascii_end(), bound.trim_ascii_end());
    let exact = a == b;
    if !fixed && (stored == bound) != exact {
        return Err(Doubt::Collation);
    }
    match (fold(a), fold(b)) {
        (Some(x), Some(y)) if (x == y) == exact => Ok(exact),
        // Equal bytes are equal under any collation.
        _ if exact => Ok(true),
        _ => Err(Doubt::Collation),
    }
}

/// The order of two texts under every collation Portico allows for, or `Doubt::Collation`.
fn text_order(stored: &[u8], bound: &[u8], fixed: bool) -> Result<Ordering, Doubt> {
    let (a, b) = (stored.trim_ascii_end(), bound.trim_ascii_end());
    let exact = a.cmp(b);
    if !fixed && stored.cmp(bound) != exact {
        return Err(Doubt::Collation);
    }
    if exact == Ordering::Equal {
        return Ok(Ordering::Equal);
    }
    let letters_and_digits = |text: &str| {
        text.chars()
            .all(|c| fold_char(c).is_some_and(|f| f.is_ascii_alphanumeric()))
    };
    match (fold(a), fold(b)) {
        (Some(x), Some(y))
            if x.cmp(&y) == exact
                && std::str::from_utf8(a).is_ok_and(letters_and_digits)
                && std::str::from_utf8(b).is_ok_and(letters_and_digits) =>
        {
            Ok(exact)
        }
        _ => Err(Doubt::Collation),
    }
}

/// `stored LIKE 'prefix%'`, decided when the byte and folded matches agree and trailing
/// blanks of the stored text do not matter.
fn starts_with(stored: &[u8], prefix: &[u8]) -> Verdict {
    let exact = stored.starts_with(prefix);
    if stored.trim_ascii_end().starts_with(prefix) != exact {
        return Verdict::Unknown(Doubt::Collation);
    }
    match (fold(stored), fold(prefix)) {
        (Some(x), Some(y)) if x.starts_with(&y) == exact => Verdict::from_bool(exact),
        // Matching bytes match under any collation.
        _ if exact => Verdict::Holds,
        _ => Verdict::Unknown(Doubt::Collation),
    }
}

/// The text in lower case without accents, or `None` when it is not UTF-8 or holds a
/// character folding does not know.
fn fold(text: &[u8]) -> Option<String> {
    std::str::from_utf8(text)
        .ok()?
        .chars()
        .map(fold_char)
        .collect()
}

/// ASCII in lower case, and the accented letters of Latin-1 as their base letter; `None` for
/// any other character (`ß`, `æ`, `ø` and the rest compare differently under each collation).
fn fold_char(c: char) -> Option<char> {
    if c.is_ascii() {
        return Some(c.to_ascii_lowercase());
    }
    Some(match c {
        'À'..='Å' | 'à'..='å' => 'a',
        'Ç' | 'ç' => 'c',
        'È'..='Ë' | 'è'..='ë' => 'e',
        'Ì'..='Ï' | 'ì'..='ï' => 'i',
        'Ñ' | 'ñ' => 'n',
        'Ò'..='Ö' | 'ò'..='ö' => 'o',
        'Ù'..='Ü' | 'ù'..='ü' => 'u',
        'Ý' | 'ý' | 'ÿ' => 'y',
        _ => return None,
    })
}

/// Non-text values in SQL order; `None` when they cannot be compared here.
fn value_order(stored: &Value, bound: &Value) -> Option<Ordering> {
    match (stored, bound) {
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

    fn varchar(s: &str) -> Param {
        Param {
            value: Value::Text(s.as_bytes().to_vec()),
            column_type: ColumnType::Varchar,
        }
    }

    fn cmp(op: CmpOp, param: Param) -> Condition {
        Condition::Compare {
            column: "NAME".into(),
            op,
            param,
        }
    }

    fn on(stored: &str, condition: &Condition) -> Verdict {
        let value = Value::Text(stored.as_bytes().to_vec());
        evaluate(condition, &|name: &str| {
            (name == "NAME").then(|| value.clone())
        })
    }

    const UNTOLD: Verdict = Verdict::Unknown(Doubt::Collation);

    #[test]
    fn text_that_collations_compare_differently_is_never_guessed() {
        use CmpOp::*;
        // Case and accents: the byte and folded comparisons disagree.
        assert_eq!(on("X", &cmp(Ne, varchar("x"))), UNTOLD);
        assert_eq!(on("C00002", &cmp(Eq, varchar("c00002"))), UNTOLD);
        assert_eq!(on("é", &cmp(Eq, varchar("e"))), UNTOLD);
        assert_eq!(on("É", &cmp(Ne, varchar("é"))), UNTOLD);
        // They agree: decided.
        assert_eq!(on("é", &cmp(Eq, varchar("x"))), Verdict::Fails);
        assert_eq!(on("y", &cmp(Ne, varchar("x"))), Verdict::Holds);
        assert_eq!(on("x", &cmp(Eq, varchar("x"))), Verdict::Holds);
        // Characters folding does not know are decided only when equal byte for byte.
        assert_eq!(on("ß", &cmp(Eq, varchar("s"))), UNTOLD);
        assert_eq!(on("ß", &cmp(Eq, varchar("ß"))), Verdict::Holds);
        // Trailing blanks count on some engines: untold against varchar, not against char(n).
        assert_eq!(on("x ", &cmp(Eq, varchar("x"))), UNTOLD);
        assert_eq!(on("x ", &cmp(Eq, text("x"))), Verdict::Holds);
        // Order: letters and digits whose byte and folded orders agree.
        assert_eq!(on("abc", &cmp(Lt, varchar("abd"))), Verdict::Holds);
        assert_eq!(on("b", &cmp(Gte, varchar("abc"))), Verdict::Holds);
        assert_eq!(on("B", &cmp(Lt, varchar("a"))), UNTOLD);
        assert_eq!(on("a-c", &cmp(Lt, varchar("ab"))), UNTOLD);
        // LIKE ignores case under SQLite and `_ci` collations.
        let prefix = |p: &str| Condition::Prefix {
            column: "NAME".into(),
            prefix: p.as_bytes().to_vec(),
        };
        assert_eq!(on("abc", &prefix("ab")), Verdict::Holds);
        assert_eq!(on("ABC", &prefix("ab")), UNTOLD);
        assert_eq!(on("xbc", &prefix("ab")), Verdict::Fails);
    }

    #[test]
    fn and_or_and_not_in_combine_doubt_as_sql_combines_unknown() {
        use CmpOp::*;
        let untold = cmp(Ne, varchar("x"));
        let (yes, no) = (cmp(Ne, varchar("q")), cmp(Eq, varchar("q")));
        let and = |a: &Condition, b: &Condition| Condition::And(vec![a.clone(), b.clone()]);
        let or = |a: &Condition, b: &Condition| Condition::Or(vec![a.clone(), b.clone()]);
        assert_eq!(on("X", &and(&untold, &no)), Verdict::Fails);
        assert_eq!(on("X", &and(&untold, &yes)), UNTOLD);
        assert_eq!(on("X", &or(&untold, &yes)), Verdict::Holds);
        assert_eq!(on("X", &or(&untold, &no)), UNTOLD);
        let not_in = |values: &[&str]| Condition::NotIn {
            column: "NAME".into(),
            params: values.iter().map(|v| varchar(v)).collect(),
        };
        assert_eq!(on("X", &not_in(&["q", "x"])), UNTOLD);
        assert_eq!(on("X", &not_in(&["X", "x"])), Verdict::Fails);
        assert_eq!(on("z", &not_in(&["q", "x"])), Verdict::Holds);
        let null = |name: &str| (name == "NAME").then_some(Value::Null);
        assert_eq!(evaluate(&not_in(&["q"]), &null), Verdict::Fails);
        assert_eq!(
            evaluate(&cmp(Eq, varchar("q")), &|_: &str| None),
            Verdict::Unknown(Doubt::MissingColumn)
        );
    }
}
