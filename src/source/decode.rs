//! Values from the text a driver renders a column as; shared by every source so the same
//! column gives the same API value whichever way it was reached.

use super::{ColumnType, Value};

/// What decoding dropped of a value it still read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Loss {
    /// A `date` column type keeps the date of a text that also holds a time of day.
    #[error("its time of day `{0}` is dropped")]
    TimeOfDay(String),
    /// A `date` column type keeps the date of a text that goes on with a zero time
    /// (`00:00:00`): the same day, but text that filters and cursors never equal.
    #[error("its midnight `{0}` is dropped")]
    Midnight(String),
}

/// A decoded value and what decoding dropped of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The value served.
    pub value: Value,
    /// What the text held that `value` does not.
    pub loss: Option<Loss>,
}

/// Whether decoding text as `column_type` can drop part of a value (`from_text_checked`
/// says when it did): only `date`, which keeps the first ten characters.
pub fn may_lose(column_type: ColumnType) -> bool {
    column_type == ColumnType::Date
}

/// Turns a driver's text rendering of a column into a typed value.
pub fn from_text(bytes: &[u8], column_type: ColumnType) -> Value {
    from_text_checked(bytes, column_type).value
}

/// Decodes like `from_text` and says what the value lost: a `date` read of
/// `1994-08-04 15:30:00` is `1994-08-04` and loses `15:30:00`; one of `1994-08-04 00:00:00`
/// loses its midnight (any text after the date is lost: the stored text is not the date).
pub fn from_text_checked(bytes: &[u8], column_type: ColumnType) -> Decoded {
    let text = || std::str::from_utf8(bytes).map(str::trim);
    if column_type == ColumnType::Date {
        if let Some((day, rest)) = text().ok().and_then(|t| Some((t.get(..10)?, t.get(10..)?))) {
            if !rest.is_empty() {
                let time = rest.trim_start_matches(['T', ' ']).to_string();
                let midnight = time.bytes().all(|b| matches!(b, b'0' | b':' | b'.'));
                return Decoded {
                    value: Value::Date(day.to_string()),
                    loss: Some(if midnight {
                        Loss::Midnight(time)
                    } else {
                        Loss::TimeOfDay(time)
                    }),
                };
            }
        }
    }
    let value = match column_type {
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
            Ok(t) if t.len() >= 10 => match t.get(..10) {
                Some(day) => Value::Date(day.to_string()),
                None => Value::Text(bytes.to_vec()),
            },
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
    };
    Decoded { value, loss: None }
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

    #[test]
    fn a_date_read_of_a_time_of_day_says_it_dropped_it() {
        let read = from_text_checked(b"1994-08-04 15:30:00", ColumnType::Date);
        assert_eq!(read.value, Value::Date("1994-08-04".into()));
        assert_eq!(read.loss, Some(Loss::TimeOfDay("15:30:00".into())));
        assert_eq!(
            from_text_checked(b" 1994-08-04 ", ColumnType::Date).loss,
            None
        );
        // A zero time is no time of day, but the stored text is still not the date.
        for (midnight, rest) in [
            (&b"1994-08-04 00:00:00"[..], "00:00:00"),
            (b"1994-08-04T00:00:00.000", "00:00:00.000"),
        ] {
            let read = from_text_checked(midnight, ColumnType::Date);
            assert_eq!(read.value, Value::Date("1994-08-04".into()));
            assert_eq!(read.loss, Some(Loss::Midnight(rest.into())));
        }
        let text = from_text_checked(b"1994-08-04 15:30:00", ColumnType::Varchar);
        assert_eq!(text.loss, None);
        assert!(may_lose(ColumnType::Date) && !may_lose(ColumnType::Timestamp));
    }
}
