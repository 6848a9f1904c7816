//! Row policies applied to a row Portico already holds (a change event), the way the database
//! applies them to a query, so a feed never shows a row that `GET` hides.
//!
//! The database compares text under its collation, which Portico does not know: PostgreSQL
//! compares bytes by default, MariaDB's default `utf8mb4_general_ci` ignores case and accents,
//! `utf8mb4_unicode_ci` also ignores control characters, SQL Server's `CI_AS` ignores case,
//! language collations put `ch` after `h` (Czech) or `aa` after `z` (Danish) and equate `ä`
//! with `ae` (German phone book), and trailing blanks count on some engines and not on others.
//! So the evaluation is three-valued: a condition holds, fails, or Portico cannot tell
//! ([`Verdict`]), and a row it cannot tell about is withheld (fail closed); the caller logs
//! and counts it. Saying "holds" where the database would hide the row is a leak; withholding
//! never is. The rule for text:
//!
//! - Equality (`=`, `<>`, `IN`, `NOT IN`): texts equal byte for byte are equal. Texts of
//!   printable ASCII are unequal when, case and everything but letters and digits set aside,
//!   one uses a letter or digit (other than 0) the other does not: `O` and `X`, `C00001` and
//!   `C00002`. Anything else is undecided: case or punctuation differences, the same letters
//!   and digits in another number or order (ICU's numeric ordering equates `C0002` and `C2`,
//!   Hungarian collations `ccs` and `cscs`), control characters (ignorable under Unicode
//!   collations), any non-ASCII character (a collation may equate `ß` and `ss`, `å` and `aa`,
//!   `é` and `e`).
//! - Trailing spaces (only `' '`: a tab or line break is a character like any other) follow the
//!   source's engine ([`TextRules`]): PostgreSQL and MariaDB/MySQL ignore them against a
//!   `char(n)` / `nchar(n)` field (MariaDB/MySQL under a PAD SPACE collation, which `GET`'s
//!   padded operand needs to find a CHAR row at all), SQL Server against every text field.
//!   Elsewhere (SQLite, which never pads and whose columns may be declared `COLLATE RTRIM`;
//!   MariaDB's `varchar` under a PAD SPACE or NO PAD collation; PostgreSQL's `varchar`; the
//!   generic dialect) they must not change the answer, or Portico cannot tell.
//! - Order (`<`, `<=`, `>`, `>=`) is decided only between texts equal as above (then `<=` and
//!   `>=` hold, `<` and `>` fail): language collations and ICU's numeric ordering sort the rest
//!   their own ways. A row policy that orders text cannot be applied to an event's row: its
//!   events are withheld and counted; use `=` / `IN`.
//! - A prefix (`LIKE 'p%'`) is decided when the byte match and the case-folded one agree (LIKE
//!   ignores case under SQLite and `_ci` collations), and trailing blanks change nothing.
//!
//! Numbers compare as values: integers and decimals exactly, whatever their size. A float only
//! between whole numbers below 2^24 (a single-precision column widens `0.1` to
//! `0.100000001…` before it compares). A number the row holds as text only when the text is the
//! number's own spelling (`12`, `-12.5`), which is then equal to it: SQLite compares text with a
//! number as text, MySQL as doubles, SQL Server converts. Booleans compare as values, ISO dates
//! (`YYYY-MM-DD`) in their order, and timestamps only when spelled alike (a driver writes
//! `.000` or an offset the bound value lacks). NULL makes a comparison false, as
//! SQL's unknown does in a WHERE clause: every condition here is free of negation (`<>` and
//! `NOT IN` are comparisons of their own), so "unknown" and "false" end the same way. `AND`
//! and `OR` combine "cannot tell" as SQL's three-valued logic combines unknown: `AND` fails
//! when any part fails, `OR` holds when any part holds, otherwise a part Portico cannot tell
//! about leaves the whole untold.

use std::cmp::Ordering;

use crate::source::select::{CmpOp, Condition};
use crate::source::{ColumnType, Dialect, Param, Value};

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

/// How the source's engine compares text, as far as the engine alone tells: whether trailing
/// spaces count (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRules {
    engine: Dialect,
}

impl TextRules {
    /// The rules of a source speaking `dialect`.
    pub fn of(dialect: Dialect) -> Self {
        TextRules { engine: dialect }
    }

    /// Whether the engine ignores trailing spaces when it compares a field of `column_type`;
    /// `false` also where Portico cannot tell (then blanks must not change the answer).
    fn ignores_trailing_spaces(self, column_type: ColumnType) -> bool {
        let fixed = matches!(column_type, ColumnType::Char(_) | ColumnType::NChar(_));
        match self.engine {
            // bpchar; MariaDB/MySQL CHAR under PAD SPACE. Under NO PAD a stored CHAR reads
            // unpadded and never equals the padded operand, but the rows this shows then are
            // those equal to it but for padding: a CHAR cannot hold two such values.
            Dialect::Postgres | Dialect::MySql => fixed,
            // ANSI padding in every comparison, char and varchar alike.
            Dialect::TSql => true,
            // SQLite never pads, but a column may be `COLLATE RTRIM`; generic: unknown.
            Dialect::Sqlite | Dialect::Generic => false,
        }
    }
}

/// What every one of `conditions` says together (a grant's conditions all apply).
pub fn evaluate_all(
    conditions: &[Condition],
    rules: TextRules,
    column: &dyn Fn(&str) -> Option<Value>,
) -> Verdict {
    Verdict::and(conditions.iter().map(|c| evaluate(c, rules, column)))
}

/// What `condition` says about the row whose columns `column` looks up, on an engine that
/// compares text by `rules`.
pub fn evaluate(
    condition: &Condition,
    rules: TextRules,
    column: &dyn Fn(&str) -> Option<Value>,
) -> Verdict {
    let stored = |name: &str| column(name).ok_or(Doubt::MissingColumn);
    match condition {
        Condition::Compare {
            column: c,
            op,
            param,
        } => compare(stored(c), param, *op, rules),
        Condition::In { column: c, params } => {
            let value = stored(c);
            Verdict::or(
                params
                    .iter()
                    .map(|p| compare(value.clone(), p, CmpOp::Eq, rules)),
            )
        }
        Condition::NotIn { column: c, params } => {
            let value = stored(c);
            Verdict::and(
                params
                    .iter()
                    .map(|p| compare(value.clone(), p, CmpOp::Ne, rules)),
            )
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
        Condition::Or(all) => Verdict::or(all.iter().map(|c| evaluate(c, rules, column))),
        Condition::And(all) => Verdict::and(all.iter().map(|c| evaluate(c, rules, column))),
    }
}

/// `stored op param`, as the database compares them.
fn compare(stored: Result<Value, Doubt>, param: &Param, op: CmpOp, rules: TextRules) -> Verdict {
    let stored = match stored {
        Ok(value) => value,
        Err(doubt) => return Verdict::Unknown(doubt),
    };
    let ordering = match (&stored, &param.value) {
        // SQL's unknown: the row is not returned.
        (Value::Null, _) | (_, Value::Null) => return Verdict::Fails,
        (Value::Text(a), Value::Text(b)) => {
            let padded = rules.ignores_trailing_spaces(param.column_type);
            if matches!(op, CmpOp::Eq | CmpOp::Ne) {
                text_equality(a, b, padded).map(|equal| {
                    if equal {
                        Ordering::Equal
                    } else {
                        // Only equality is asked; any unequal ordering answers it.
                        Ordering::Less
                    }
                })
            } else {
                text_order(a, b, padded)
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

/// `text` without its trailing spaces (SQL's CHAR padding is spaces only, never tabs or line
/// breaks).
fn without_trailing_spaces(text: &[u8]) -> &[u8] {
    let end = text.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    &text[..end]
}

/// The two texts as the engine compares them: without trailing spaces where it ignores them;
/// `Doubt::Collation` where it may not and they would change the answer.
fn as_compared<'a>(
    stored: &'a [u8],
    bound: &'a [u8],
    padded: bool,
) -> Result<(&'a [u8], &'a [u8]), Doubt> {
    let (a, b) = (
        without_trailing_spaces(stored),
        without_trailing_spaces(bound),
    );
    if padded {
        Ok((a, b))
    } else if (a == b) == (stored == bound) {
        Ok((stored, bound))
    } else {
        Err(Doubt::Collation)
    }
}

/// Whether two texts are equal under every collation Portico allows for (see the module
/// documentation), or `Doubt::Collation` when collations may disagree.
fn text_equality(stored: &[u8], bound: &[u8], padded: bool) -> Result<bool, Doubt> {
    let (a, b) = as_compared(stored, bound, padded)?;
    // Equal bytes are equal under any collation.
    if a == b {
        return Ok(true);
    }
    // Collations equate some texts whose letters and digits differ only in number or order
    // (ICU's numeric ordering `C0002` = `C2`, Hungarian contractions `ccs` = `cscs`), never
    // two that do not use the same letters and digits (zeros aside).
    match (fold(a), fold(b)) {
        (Some(x), Some(y)) if characters(&x) != characters(&y) => Ok(false),
        _ => Err(Doubt::Collation),
    }
}

/// Which of the (folded) ASCII letters and digits a text uses, zeros aside (a numeric
/// collation ignores leading zeros).
fn characters(folded: &[u8]) -> [bool; 128] {
    let mut used = [false; 128];
    for &b in folded.iter().filter(|&&b| b != b'0') {
        used[usize::from(b & 0x7f)] = true;
    }
    used
}

/// The order of two texts, known only when they are equal (collations order the rest each
/// their own way), or `Doubt::Collation`.
fn text_order(stored: &[u8], bound: &[u8], padded: bool) -> Result<Ordering, Doubt> {
    match as_compared(stored, bound, padded)? {
        (a, b) if a == b => Ok(Ordering::Equal),
        _ => Err(Doubt::Collation),
    }
}

/// `stored LIKE 'prefix%'`, decided when the byte and case-folded matches agree and trailing
/// blanks of the stored text do not matter.
fn starts_with(stored: &[u8], prefix: &[u8]) -> Verdict {
    let exact = stored.starts_with(prefix);
    if without_trailing_spaces(stored).starts_with(prefix) != exact {
        return Verdict::Unknown(Doubt::Collation);
    }
    let lower = |text: &[u8]| -> Option<Vec<u8>> {
        text.iter()
            .map(|&b| (b == b' ' || b.is_ascii_graphic()).then(|| b.to_ascii_lowercase()))
            .collect()
    };
    match (lower(stored), lower(prefix)) {
        (Some(x), Some(y)) if x.starts_with(&y) == exact => Verdict::from_bool(exact),
        // Matching bytes match under any collation.
        _ if exact => Verdict::Holds,
        _ => Verdict::Unknown(Doubt::Collation),
    }
}

/// The letters and digits of a text of printable ASCII, in lower case: two texts whose folds
/// differ are unequal under every collation Portico allows for (case and punctuation may be
/// ignored, letters and digits are not). `None` for text with a control character (ignorable
/// under Unicode collations) or any non-ASCII character (`ß` = `ss`, `å` = `aa`, `ä` = `ae`
/// under some collations).
fn fold(text: &[u8]) -> Option<Vec<u8>> {
    let mut folded = Vec::with_capacity(text.len());
    for &b in text {
        if b.is_ascii_alphanumeric() {
            folded.push(b.to_ascii_lowercase());
        } else if !(b == b' ' || b.is_ascii_punctuation()) {
            return None;
        }
    }
    Some(folded)
}

/// Non-text values in SQL order; `None` when they cannot be compared here.
fn value_order(stored: &Value, bound: &Value) -> Option<Ordering> {
    match (stored, bound) {
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        // ISO dates (`YYYY-MM-DD`) order as their text.
        (Value::Date(a), Value::Date(b)) if is_iso_date(a) && is_iso_date(b) => Some(a.cmp(b)),
        // A driver's rendering of a timestamp (fraction digits, offsets) need not match the
        // bound one's: only the same text is surely the same instant.
        (Value::Date(a), Value::Date(b)) | (Value::Timestamp(a), Value::Timestamp(b)) => {
            (a == b).then_some(Ordering::Equal)
        }
        (a, b) => number_order(a, b),
    }
}

/// `YYYY-MM-DD`.
fn is_iso_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Two numbers in order: integers and decimals exactly; a float, or a number held as text
/// (which an engine may compare as a double), only when a double holds both exactly enough
/// (magnitudes within 2^53) and agrees with the exact order where there is one.
fn number_order(a: &Value, b: &Value) -> Option<Ordering> {
    let exact = match (Exact::of(a), Exact::of(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => None,
    };
    // A number held as text: SQLite compares it with a number as text, SQL Server converts
    // it (or fails), MySQL as a double. They agree only that the number's own spelling is
    // equal to it.
    if matches!(a, Value::Text(_)) != matches!(b, Value::Text(_)) {
        let text = match (a, b) {
            (Value::Text(t), _) | (_, Value::Text(t)) => t,
            _ => return None,
        };
        return (is_canonical_number(text) && exact == Some(Ordering::Equal))
            .then_some(Ordering::Equal);
    }
    let approximate = |v: &Value| matches!(v, Value::Float(_) | Value::Text(_));
    if !approximate(a) && !approximate(b) {
        return exact;
    }
    // A float may be a single-precision column the engine widens (0.1 is not 0.1f widened):
    // decided only between whole numbers a single-precision float holds exactly.
    const EXACT_IN_A_FLOAT: f64 = 16_777_216.0; // 2^24
    let (x, y) = (double(a)?, double(b)?);
    let whole = |v: f64| v.fract() == 0.0 && v.abs() < EXACT_IN_A_FLOAT;
    if !whole(x) || !whole(y) {
        return None;
    }
    let order = x.partial_cmp(&y)?;
    match exact {
        Some(e) if e != order => None,
        _ => Some(order),
    }
}

/// `-12.5`, `0`, `12`: no sign but `-`, no leading or trailing zeros, no blanks or exponent.
fn is_canonical_number(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let (whole, fraction) = match digits.iter().position(|&b| b == b'.') {
        Some(dot) => (&digits[..dot], Some(&digits[dot + 1..])),
        None => (digits, None),
    };
    let whole_ok = whole == b"0"
        || (whole.first().is_some_and(|&d| (b'1'..=b'9').contains(&d))
            && whole.iter().all(u8::is_ascii_digit));
    let fraction_ok = fraction
        .is_none_or(|f| f.last().is_some_and(|&d| d != b'0') && f.iter().all(u8::is_ascii_digit));
    whole_ok && fraction_ok && text != b"-0"
}

/// The number a value holds, as a double; `None` when it holds none.
fn double(value: &Value) -> Option<f64> {
    match value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Decimal(d) => d.parse().ok(),
        Value::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// An exact decimal number: sign, integer digits without leading zeros, fraction digits
/// without trailing zeros (zero is never negative), so equal numbers are equal values.
#[derive(Debug, PartialEq, Eq)]
struct Exact {
    negative: bool,
    whole: Vec<u8>,
    fraction: Vec<u8>,
}

impl Exact {
    /// The exact number an integer, a decimal or a decimal text holds (`-0012.50`); `None`
    /// for a float, an exponent or anything else.
    fn of(value: &Value) -> Option<Exact> {
        let text = match value {
            Value::Int(i) => i.to_string(),
            Value::Decimal(d) => d.clone(),
            Value::Text(t) => std::str::from_utf8(t).ok()?.trim().to_string(),
            _ => return None,
        };
        let (negative, digits) = match text.as_bytes() {
            [b'-', rest @ ..] => (true, rest),
            [b'+', rest @ ..] => (false, rest),
            rest => (false, rest),
        };
        let (whole, fraction) = match digits.iter().position(|&b| b == b'.') {
            Some(dot) => (&digits[..dot], &digits[dot + 1..]),
            None => (digits, &digits[digits.len()..]),
        };
        let all_digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
        if whole.len() + fraction.len() == 0 || !all_digits(whole) || !all_digits(fraction) {
            return None;
        }
        let start = whole.iter().position(|&b| b != b'0').unwrap_or(whole.len());
        let end = fraction
            .iter()
            .rposition(|&b| b != b'0')
            .map_or(0, |i| i + 1);
        let (whole, fraction) = (whole[start..].to_vec(), fraction[..end].to_vec());
        let zero = whole.is_empty() && fraction.is_empty();
        Some(Exact {
            negative: negative && !zero,
            whole,
            fraction,
        })
    }

    /// The order of the magnitudes: more integer digits is larger, then digit by digit.
    fn magnitude_cmp(&self, other: &Exact) -> Ordering {
        (self.whole.len(), &self.whole, &self.fraction).cmp(&(
            other.whole.len(),
            &other.whole,
            &other.fraction,
        ))
    }
}

impl Ord for Exact {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, false) => self.magnitude_cmp(other),
            (true, true) => other.magnitude_cmp(self),
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
        }
    }
}

impl PartialOrd for Exact {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{ColumnType, Param};

    /// Whether `condition` holds for the row on PostgreSQL (which pads `char(n)`).
    fn holds(condition: &Condition, column: &dyn Fn(&str) -> Option<Value>) -> bool {
        evaluate(condition, TextRules::of(Dialect::Postgres), column) == Verdict::Holds
    }

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

    /// What `condition` says about a row whose `NAME` holds `stored`, on MariaDB.
    fn on(stored: &str, condition: &Condition) -> Verdict {
        on_engine(Dialect::MySql, stored, condition)
    }

    fn on_engine(engine: Dialect, stored: &str, condition: &Condition) -> Verdict {
        let value = Value::Text(stored.as_bytes().to_vec());
        evaluate(condition, TextRules::of(engine), &|name: &str| {
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
        assert_eq!(on("e", &cmp(Eq, varchar("x"))), Verdict::Fails);
        assert_eq!(on("y", &cmp(Ne, varchar("x"))), Verdict::Holds);
        assert_eq!(on("x", &cmp(Eq, varchar("x"))), Verdict::Holds);
        // Non-ASCII text is decided only when equal byte for byte (`ä` = `ae` in German2).
        assert_eq!(on("ß", &cmp(Eq, varchar("s"))), UNTOLD);
        assert_eq!(on("é", &cmp(Eq, varchar("x"))), UNTOLD);
        assert_eq!(on("ß", &cmp(Eq, varchar("ß"))), Verdict::Holds);
        // Trailing blanks count on some engines: untold against varchar, not against char(n).
        assert_eq!(on("x ", &cmp(Eq, varchar("x"))), UNTOLD);
        assert_eq!(on("x ", &cmp(Eq, text("x"))), Verdict::Holds);
        // Order: decided only between equal texts.
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
        let rules = TextRules::of(Dialect::MySql);
        assert_eq!(evaluate(&not_in(&["q"]), rules, &null), Verdict::Fails);
        assert_eq!(
            evaluate(&cmp(Eq, varchar("q")), rules, &|_: &str| None),
            Verdict::Unknown(Doubt::MissingColumn)
        );
    }

    /// A `char(8)` operand as the catalog binds it: padded to the width with spaces.
    fn char8(s: &str) -> Param {
        Param {
            value: Value::Text(format!("{s:<8}").into_bytes()),
            column_type: ColumnType::Char(Some(8)),
        }
    }

    #[test]
    fn only_spaces_are_char_padding_never_tabs_or_line_breaks() {
        use CmpOp::*;
        for engine in [Dialect::Postgres, Dialect::MySql, Dialect::TSql] {
            for stored in ["C00002\r", "C00002\n", "C00002\t", "C00002 \r"] {
                let eq = on_engine(engine, stored, &cmp(Eq, char8("C00002")));
                assert_eq!(eq, UNTOLD, "{engine:?}: {stored:?} = 'C00002  '");
                let ne = on_engine(engine, stored, &cmp(Ne, char8("C00002")));
                assert_eq!(ne, UNTOLD, "{engine:?}: {stored:?} <> 'C00002  '");
            }
            // `ab\t` sorts before `ab` padded with spaces.
            assert_eq!(on_engine(engine, "ab\t", &cmp(Gte, char8("ab"))), UNTOLD);
            // Spaces are padding.
            let padded = on_engine(engine, "C00002", &cmp(Eq, char8("C00002")));
            assert_eq!(padded, Verdict::Holds, "{engine:?}");
        }
        // Against varchar a tab or a line break is never trimmed either.
        assert_eq!(on("x\t", &cmp(Eq, varchar("x"))), UNTOLD);
        assert_eq!(on("x\r\n", &cmp(Ne, varchar("x"))), UNTOLD);
    }

    #[test]
    fn control_characters_are_not_folded_like_letters() {
        use CmpOp::*;
        // `utf8mb4_unicode_ci` and `uca1400_ai_ci` ignore them: 'a\x01' = 'a'.
        assert_eq!(on("a\x01", &cmp(Ne, varchar("a"))), UNTOLD);
        assert_eq!(on("a\x01", &cmp(Eq, varchar("a"))), UNTOLD);
        assert_eq!(on("a\x7f", &cmp(Ne, varchar("a"))), UNTOLD);
        let within = Condition::NotIn {
            column: "NAME".into(),
            params: vec![varchar("a"), varchar("b")],
        };
        assert_eq!(on("\x01b", &within), UNTOLD);
        // Equal bytes are equal under any collation.
        assert_eq!(on("a\x01", &cmp(Eq, varchar("a\x01"))), Verdict::Holds);
    }

    #[test]
    fn trailing_blanks_follow_the_engine() {
        use CmpOp::*;
        use Dialect::*;
        let (eq, ne) = (cmp(Eq, char8("C00002")), cmp(Ne, char8("C00002")));
        // SQLite never pads a char(8) column (and `COLLATE RTRIM` would ignore blanks).
        assert_eq!(on_engine(Sqlite, "C00002", &eq), UNTOLD);
        assert_eq!(on_engine(Sqlite, "C00002", &ne), UNTOLD);
        assert_eq!(on_engine(Sqlite, "C00002  ", &eq), Verdict::Holds);
        assert_eq!(on_engine(Sqlite, "C00003", &eq), Verdict::Fails);
        assert_eq!(on_engine(Generic, "C00002", &eq), UNTOLD);
        // PostgreSQL's bpchar and MariaDB's CHAR ignore trailing spaces; varchar may not.
        for engine in [Postgres, MySql] {
            assert_eq!(on_engine(engine, "C00002", &eq), Verdict::Holds);
            assert_eq!(on_engine(engine, "C00002", &ne), Verdict::Fails);
            let untold = on_engine(engine, "x ", &cmp(Eq, varchar("x")));
            assert_eq!(untold, UNTOLD, "{engine:?}");
            let decided = on_engine(engine, "x ", &cmp(Eq, varchar("y")));
            assert_eq!(decided, Verdict::Fails, "{engine:?}");
        }
        // SQL Server pads every text comparison.
        assert_eq!(
            on_engine(TSql, "x ", &cmp(Eq, varchar("x"))),
            Verdict::Holds
        );
        assert_eq!(
            on_engine(TSql, "x", &cmp(Ne, varchar("x  "))),
            Verdict::Fails
        );
        assert_eq!(on_engine(TSql, "C00002", &eq), Verdict::Holds);
    }

    #[test]
    fn text_order_is_decided_only_between_equal_texts() {
        use CmpOp::*;
        // Czech sorts `ch` after `h`, Danish `aa` after `z`, Lithuanian `y` right after `i`,
        // ICU's numeric ordering `a10` after `a9`.
        for (stored, op, bound) in [
            ("ch", Lt, "h"),
            ("aa", Lt, "z"),
            ("y", Gt, "j"),
            ("a10", Lt, "a9"),
            ("abc", Lt, "abd"),
            ("b", Gte, "abc"),
        ] {
            assert_eq!(
                on(stored, &cmp(op, varchar(bound))),
                UNTOLD,
                "{stored} {bound}"
            );
        }
        assert_eq!(on("ab", &cmp(Lte, varchar("ab"))), Verdict::Holds);
        assert_eq!(on("ab", &cmp(Gte, varchar("ab"))), Verdict::Holds);
        assert_eq!(on("ab", &cmp(Lt, varchar("ab"))), Verdict::Fails);
        assert_eq!(on("ab", &cmp(Gt, varchar("ab"))), Verdict::Fails);
        // Equal once CHAR padding is set aside, where the engine pads.
        assert_eq!(on("ab", &cmp(Gte, char8("ab"))), Verdict::Holds);
        let sqlite = on_engine(Dialect::Sqlite, "ab", &cmp(Gte, char8("ab")));
        assert_eq!(sqlite, UNTOLD);
    }

    #[test]
    fn numbers_beyond_a_double_compare_exactly_or_not_at_all() {
        use CmpOp::*;
        let number = |value: Value| Param {
            value,
            column_type: ColumnType::Decimal,
        };
        let on_value = |stored: Value, op: CmpOp, bound: Value| {
            let condition = cmp(op, number(bound));
            evaluate(&condition, TextRules::of(Dialect::MySql), &|name: &str| {
                (name == "NAME").then(|| stored.clone())
            })
        };
        let big = || Value::Int(9_007_199_254_740_992); // 2^53
        let decimal = |d: &str| Value::Decimal(d.into());
        // 2^53 + 1 and 2^53 are the same double.
        let above = decimal("9007199254740993");
        assert_eq!(on_value(above.clone(), Eq, big()), Verdict::Fails);
        assert_eq!(on_value(above.clone(), Ne, big()), Verdict::Holds);
        assert_eq!(on_value(above, Gt, big()), Verdict::Holds);
        let huge = decimal("-123456789012345678901234567890.5");
        assert_eq!(
            on_value(huge.clone(), Lt, Value::Int(i64::MIN)),
            Verdict::Holds
        );
        assert_eq!(
            on_value(huge, Eq, decimal("-123456789012345678901234567890.50")),
            Verdict::Holds
        );
        assert_eq!(on_value(decimal("-0.0"), Eq, Value::Int(0)), Verdict::Holds);
        assert_eq!(
            on_value(decimal("012.50"), Eq, decimal("12.5")),
            Verdict::Holds
        );
        assert_eq!(
            on_value(decimal("0.45"), Lt, decimal("0.5")),
            Verdict::Holds
        );
        // A number held as text may be compared as a double: beyond 2^53 it is not decided.
        let text = |t: &str| Value::Text(t.as_bytes().to_vec());
        let doubt = Verdict::Unknown(Doubt::Incomparable);
        assert_eq!(on_value(text("9007199254740993"), Eq, big()), doubt);
        assert_eq!(on_value(text("9007199254740993"), Ne, big()), doubt);
        // SQLite compares a number with text as text, MySQL as a double: only the number's own
        // spelling is surely equal to it.
        assert_eq!(on_value(text(" 12 "), Eq, Value::Int(12)), doubt);
        assert_eq!(on_value(text("012"), Eq, Value::Int(12)), doubt);
        assert_eq!(on_value(text("12"), Eq, Value::Int(12)), Verdict::Holds);
        assert_eq!(on_value(text("12.5"), Ne, decimal("12.50")), Verdict::Fails);
        assert_eq!(on_value(text("12"), Ne, Value::Int(13)), doubt);
        assert_eq!(
            on_value(Value::Float(1e20), Ne, Value::Int(i64::MAX)),
            doubt
        );
        // A single-precision 0.1 widens to 0.100000001…: fractions of floats are not decided.
        assert_eq!(on_value(Value::Float(0.1), Eq, Value::Float(0.1)), doubt);
        assert_eq!(on_value(Value::Float(0.5), Lt, decimal("0.75")), doubt);
        assert_eq!(
            on_value(Value::Float(3.0), Lt, Value::Int(4)),
            Verdict::Holds
        );
    }

    #[test]
    fn timestamps_are_decided_only_when_spelled_alike_and_dates_when_iso() {
        let on = |stored: Value, op: CmpOp, bound: Value| {
            let condition = Condition::Compare {
                column: "AT".into(),
                op,
                param: Param {
                    value: bound,
                    column_type: ColumnType::Timestamp,
                },
            };
            evaluate(&condition, TextRules::of(Dialect::TSql), &|name: &str| {
                (name == "AT").then(|| stored.clone())
            })
        };
        let at = |t: &str| Value::Timestamp(t.into());
        let doubt = Verdict::Unknown(Doubt::Incomparable);
        // SQL Server's datetime renders `.000`; the same instant bound without it.
        assert_eq!(
            on(
                at("2024-05-01 10:00:00.000"),
                CmpOp::Ne,
                at("2024-05-01 10:00:00")
            ),
            doubt
        );
        assert_eq!(
            on(
                at("2024-05-01 10:00:00"),
                CmpOp::Eq,
                at("2024-05-01 10:00:00")
            ),
            Verdict::Holds
        );
        let day = |d: &str| Value::Date(d.into());
        assert_eq!(
            on(day("2024-05-01"), CmpOp::Lt, day("2024-05-02")),
            Verdict::Holds
        );
        assert_eq!(on(day("2024-5-1"), CmpOp::Lt, day("2024-05-02")), doubt);
    }

    #[test]
    fn texts_are_unequal_only_when_they_use_other_letters_or_digits() {
        let ne = |stored: &str, bound: &str| {
            let condition = Condition::Compare {
                column: "CODE".into(),
                op: CmpOp::Ne,
                param: Param {
                    value: Value::Text(bound.as_bytes().to_vec()),
                    column_type: ColumnType::Varchar,
                },
            };
            evaluate(
                &condition,
                TextRules::of(Dialect::Postgres),
                &|name: &str| (name == "CODE").then(|| Value::Text(stored.as_bytes().to_vec())),
            )
        };
        let doubt = Verdict::Unknown(Doubt::Collation);
        assert_eq!(ne("O", "X"), Verdict::Holds);
        assert_eq!(ne("C00001", "C00002"), Verdict::Holds);
        // ICU's numeric ordering equates these; Hungarian collations equate `ccs` and `cscs`.
        assert_eq!(ne("C0002", "C2"), doubt);
        assert_eq!(ne("ccs", "cscs"), doubt);
        assert_eq!(ne("08:00:00.0000000", "08:00:00"), doubt);
    }
}
