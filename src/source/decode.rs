//! Values from the text a driver renders a column as; shared by every source so the same
//! column gives the same API value whichever way it was reached.

use super::{ColumnType, Value};

/// Turns a driver's text rendering of a column into a typed value.
pub fn from_text(bytes: &[u8], column_type: ColumnType) -> Value {
    let text = || std::str::from_utf8(bytes).map(str::trim);
    match column_type {
        ColumnType::Char(_)
        | ColumnType::Varchar
        | ColumnType::NChar(_)
        | ColumnType::NVarchar
        | ColumnType::Oem(_)
        | ColumnType::Binary => Value::Text(bytes.to_vec()),
        ColumnType::Integer => match text().ok().and_then(|t| t.parse().ok()) {
            Some(i) => Value::Int(i),
            None => Value::Text(bytes.to_vec()),
        },
        ColumnType::Float => match text().ok().and_then(|t| t.parse().ok()) {
            Some(f) => Value::Float(f),
            None => Value::Text(bytes.to_vec()),
        },
        ColumnType::Decimal | ColumnType::Money => match text() {
            Ok(t) if is_plain_decimal(t) => Value::Decimal(t.trim_start_matches('+').to_string()),
            _ => Value::Text(bytes.to_vec()),
        },
        ColumnType::Date => match text() {
            Ok(t) if t.len() >= 10 => Value::Date(t[..10].to_string()),
            _ => Value::Text(bytes.to_vec()),
        },
        ColumnType::Timestamp | ColumnType::TimestampOffset => match text() {
            Ok(t) => Value::Timestamp(t.to_string()),
            _ => Value::Text(bytes.to_vec()),
        },
        ColumnType::Bit => match text() {
            Ok("1" | "t" | "true" | "TRUE" | "Y" | "y") => Value::Bool(true),
            Ok("0" | "f" | "false" | "FALSE" | "N" | "n") => Value::Bool(false),
            _ => Value::Text(bytes.to_vec()),
        },
    }
}

fn is_plain_decimal(t: &str) -> bool {
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    !(int.is_empty() && frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_keeps_decimals_exact_and_legacy_bytes_raw() {
        assert_eq!(
            from_text(b"12345678901234.56", ColumnType::Decimal),
            Value::Decimal("12345678901234.56".into())
        );
        assert_eq!(from_text(b" 42 ", ColumnType::Integer), Value::Int(42));
        assert_eq!(
            from_text(b"2024-02-29 00:00:00", ColumnType::Date),
            Value::Date("2024-02-29".into())
        );
        assert_eq!(
            from_text(&[0xE9], ColumnType::Varchar),
            Value::Text(vec![0xE9])
        );
        assert_eq!(from_text(b"1", ColumnType::Bit), Value::Bool(true));
        assert_eq!(
            from_text(b"1e5", ColumnType::Decimal),
            Value::Text(b"1e5".to_vec())
        );
    }
}
