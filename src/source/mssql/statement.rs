//! A `Statement` as tiberius sends it: `?` markers numbered `@P1…`, parameters typed so
//! SQL Server compares them the way the column's own values compare, and the read isolation.

use tiberius::numeric::Numeric;
use tiberius::ColumnData;

use crate::config::Isolation;
use crate::source::{ColumnType, Param, Value};

/// SQL text for sp_executesql and its parameters.
#[derive(Debug)]
pub struct Prepared {
    /// T-SQL with `@P1…` parameters.
    pub sql: String,
    /// Parameter values in order.
    pub params: Vec<ColumnData<'static>>,
}

/// The statement that starts reads at `isolation`, when it is not the server's default.
pub fn isolation_prefix(isolation: Isolation) -> &'static str {
    match isolation {
        Isolation::ReadCommitted => "",
        Isolation::Snapshot => "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; ",
        Isolation::ReadUncommitted => "SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED; ",
    }
}

/// Numbers the `?` markers of `sql` (outside literals, quoted names and comments) and binds
/// `params`.
pub fn prepare(prefix: &str, sql: &str, params: &[Param]) -> Prepared {
    let mut out = String::with_capacity(prefix.len() + sql.len() + params.len() * 8);
    out.push_str(prefix);
    let mut next = params.iter();
    let mut n = 0;
    let mut chars = sql.chars().peekable();
    let mut closing: Option<char> = None;
    while let Some(c) = chars.next() {
        out.push(c);
        match closing {
            Some('\n') if c == '\n' => closing = None,
            Some('*') if c == '*' && chars.peek() == Some(&'/') => {
                out.push('/');
                chars.next();
                closing = None;
            }
            Some(end) if end == c && end != '\n' && end != '*' => {
                // A doubled quote inside a literal or name is an escaped one.
                if chars.peek() == Some(&end) {
                    out.push(end);
                    chars.next();
                } else {
                    closing = None;
                }
            }
            Some(_) => {}
            None => match c {
                '\'' | '"' => closing = Some(c),
                '[' => closing = Some(']'),
                '-' if chars.peek() == Some(&'-') => closing = Some('\n'),
                '/' if chars.peek() == Some(&'*') => {
                    out.push('*');
                    chars.next();
                    closing = Some('*');
                }
                '?' => {
                    out.pop();
                    n += 1;
                    match next.next() {
                        Some(param) if narrow_text(param) => {
                            out.push_str(&format!("CAST(@P{n} AS varchar(8000))"))
                        }
                        _ => out.push_str(&format!("@P{n}")),
                    }
                }
                _ => {}
            },
        }
    }
    Prepared {
        sql: out,
        params: params.iter().map(bind).collect(),
    }
}

/// Text compared with a single-byte `char`/`varchar` column. tiberius sends every string as
/// nvarchar, and an nvarchar parameter makes SQL Server convert the column instead (an index
/// scan under the SQL_* collations old databases use), so it is cast back to varchar.
fn narrow_text(param: &Param) -> bool {
    matches!(param.value, Value::Text(_))
        && matches!(param.column_type, ColumnType::Char(_) | ColumnType::Varchar)
}

/// The tiberius value of a parameter.
pub fn bind(param: &Param) -> ColumnData<'static> {
    match (&param.value, param.column_type) {
        (Value::Null, _) => ColumnData::String(None),
        (Value::Int(i), ColumnType::Bit) => ColumnData::Bit(Some(*i != 0)),
        (Value::Int(i), _) => ColumnData::I64(Some(*i)),
        (Value::Float(f), _) => ColumnData::F64(Some(*f)),
        (Value::Bool(b), _) => ColumnData::Bit(Some(*b)),
        (Value::Decimal(d), _) => match numeric(d) {
            Some(n) => ColumnData::Numeric(Some(n)),
            None => ColumnData::String(Some(d.clone().into())),
        },
        // Language-independent spellings: `YYYY-MM-DD` reads as year-day-month in some
        // languages when the column is `datetime`.
        (Value::Date(d), _) => ColumnData::String(Some(d.replace('-', "").into())),
        (Value::Timestamp(t), _) => ColumnData::String(Some(t.replacen(' ', "T", 1).into())),
        (Value::Text(bytes), ColumnType::Binary) => match hex(bytes) {
            Some(raw) => ColumnData::Binary(Some(raw.into())),
            None => ColumnData::String(Some(String::from_utf8_lossy(bytes).into_owned().into())),
        },
        (Value::Text(bytes), _) => {
            ColumnData::String(Some(String::from_utf8_lossy(bytes).into_owned().into()))
        }
    }
}

/// `-12.50` as a scaled integer.
fn numeric(text: &str) -> Option<Numeric> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let scale = u8::try_from(frac.len()).ok().filter(|s| *s <= 37)?;
    let digits: i128 = format!("{int}{frac}").parse().ok()?;
    Some(Numeric::new_with_scale(digits, scale))
}

/// `0x1A2B` or `1A2B` as bytes.
fn hex(text: &[u8]) -> Option<Vec<u8>> {
    let text = text.strip_prefix(b"0x").unwrap_or(text);
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(value: Value, column_type: ColumnType) -> Param {
        Param { value, column_type }
    }

    #[test]
    fn markers_are_numbered_outside_literals_names_and_comments() {
        let params = vec![
            p(Value::Text(b"J1".to_vec()), ColumnType::Char(Some(8))),
            p(Value::Int(3), ColumnType::Integer),
            p(Value::Text("Ünï".as_bytes().to_vec()), ColumnType::NVarchar),
        ];
        let prepared = prepare(
            "",
            "SELECT [a?], 'it''s ?' FROM t -- why?\nWHERE x = ? /* ? */ AND y = ? AND z LIKE ? ESCAPE '!'",
            &params,
        );
        assert_eq!(
            prepared.sql,
            "SELECT [a?], 'it''s ?' FROM t -- why?\nWHERE x = CAST(@P1 AS varchar(8000)) /* ? */ AND y = @P2 AND z LIKE @P3 ESCAPE '!'"
        );
        assert_eq!(prepared.params.len(), 3);
    }

    #[test]
    fn values_bind_exactly_and_dates_in_language_independent_forms() {
        let bound = |v: Value, t: ColumnType| format!("{:?}", bind(&p(v, t)));
        assert!(bound(Value::Decimal("-12.50".into()), ColumnType::Decimal).contains("-12.50"));
        assert!(bound(Value::Date("2024-02-29".into()), ColumnType::Date).contains("20240229"));
        assert!(bound(
            Value::Timestamp("2024-02-29 13:45:00".into()),
            ColumnType::Timestamp
        )
        .contains("2024-02-29T13:45:00"));
        assert!(bound(Value::Text(b"0x00FF".to_vec()), ColumnType::Binary).contains("[0, 255]"));
        assert!(bound(Value::Int(1), ColumnType::Bit).contains("Bit(Some(true))"));
    }

    #[test]
    fn isolation_prefixes_only_what_differs_from_the_default() {
        assert_eq!(isolation_prefix(Isolation::ReadCommitted), "");
        let p = prepare(isolation_prefix(Isolation::Snapshot), "SELECT 1", &[]);
        assert_eq!(p.sql, "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; SELECT 1");
    }
}
