//! tiberius values to `Value`s: rendered the way an ODBC driver renders the same column, then
//! decoded by the shared text decoder, so both ways into SQL Server give the same API values.

use std::fmt::Write;

use tiberius::time::{Date, DateTime, DateTime2, SmallDateTime, Time};
use tiberius::ColumnData;

use crate::source::decode::from_text;
use crate::source::{ColumnType, Value};
use crate::value::date;

/// The value of one cell, decoded for the column's configured type.
pub fn value(data: &ColumnData<'_>, column_type: ColumnType) -> Value {
    let text = match data {
        ColumnData::U8(Some(v)) => return number(i64::from(*v), column_type),
        ColumnData::I16(Some(v)) => return number(i64::from(*v), column_type),
        ColumnData::I32(Some(v)) => return number(i64::from(*v), column_type),
        ColumnData::I64(Some(v)) => return number(*v, column_type),
        ColumnData::F32(Some(v)) => v.to_string(),
        ColumnData::F64(Some(v)) => v.to_string(),
        ColumnData::Bit(Some(b)) => (if *b { "1" } else { "0" }).to_string(),
        ColumnData::String(Some(s)) => return from_text(s.as_bytes(), column_type),
        ColumnData::Guid(Some(g)) => g.to_string().to_ascii_uppercase(),
        ColumnData::Binary(Some(b)) => hex(b),
        ColumnData::Numeric(Some(n)) => n.to_string(),
        ColumnData::Xml(Some(x)) => x.to_string(),
        ColumnData::DateTime(Some(d)) => datetime(*d),
        ColumnData::SmallDateTime(Some(d)) => smalldatetime(*d),
        ColumnData::Date(Some(d)) => day(*d),
        ColumnData::Time(Some(t)) => clock(*t),
        ColumnData::DateTime2(Some(d)) => datetime2(*d, 0),
        ColumnData::DateTimeOffset(Some(d)) => {
            // Stored in UTC; shown at its offset, as the server itself shows it.
            let offset = d.offset();
            let sign = if offset < 0 { '-' } else { '+' };
            let abs = offset.unsigned_abs();
            format!(
                "{} {sign}{:02}:{:02}",
                datetime2(d.datetime2(), i64::from(offset)),
                abs / 60,
                abs % 60
            )
        }
        _ => return Value::Null,
    };
    from_text(text.as_bytes(), column_type)
}

fn number(v: i64, column_type: ColumnType) -> Value {
    match column_type {
        ColumnType::Integer | ColumnType::Float => Value::Int(v),
        ColumnType::Bit => Value::Bool(v != 0),
        other => from_text(v.to_string().as_bytes(), other),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02X}");
    }
    out
}

/// Days since 0001-01-01 as `YYYY-MM-DD` (days from 1970 shifted by 719,162).
fn iso_day(days_since_year_one: i64) -> String {
    date::Date::from_days(days_since_year_one - 719_162)
        .map(|d| d.iso())
        .unwrap_or_default()
}

fn day(d: Date) -> String {
    iso_day(i64::from(d.days()))
}

/// `HH:MM:SS` plus `.f…` at `scale` digits when non-zero, from `nanos` since midnight.
fn hms(nanos: u64, scale: u8) -> String {
    let seconds = nanos / 1_000_000_000;
    let mut out = format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    if scale > 0 {
        let fraction = format!("{:09}", nanos % 1_000_000_000);
        out.push('.');
        out.push_str(&fraction[..usize::from(scale.min(9))]);
    }
    out
}

fn time_nanos(t: Time) -> u64 {
    let scale = u32::from(t.scale().min(9));
    t.increments() * 10u64.pow(9 - scale)
}

fn clock(t: Time) -> String {
    hms(time_nanos(t), t.scale())
}

/// `datetime2` shifted by `offset_minutes` (for `datetimeoffset`).
fn datetime2(d: DateTime2, offset_minutes: i64) -> String {
    const DAY: i64 = 86_400_000_000_000;
    let nanos = time_nanos(d.time()) as i64 + offset_minutes * 60_000_000_000;
    let days = i64::from(d.date().days()) + nanos.div_euclid(DAY);
    format!(
        "{} {}",
        iso_day(days),
        hms(nanos.rem_euclid(DAY) as u64, d.time().scale())
    )
}

/// `datetime`: days since 1900-01-01 and 1/300 s ticks, shown to the millisecond.
fn datetime(d: DateTime) -> String {
    let millis = (u64::from(d.seconds_fragments()) * 10 + 1) / 3;
    let days = i64::from(d.days()) + 693_595;
    format!("{} {}", iso_day(days), hms(millis * 1_000_000, 3))
}

/// `smalldatetime`: days since 1900-01-01 and minutes.
fn smalldatetime(d: SmallDateTime) -> String {
    let days = i64::from(d.days()) + 693_595;
    let nanos = u64::from(d.seconds_fragments()) * 60_000_000_000;
    format!("{} {}", iso_day(days), hms(nanos, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiberius::time::DateTimeOffset;

    fn text(v: Value) -> String {
        match v {
            Value::Text(b) => String::from_utf8(b).unwrap(),
            Value::Timestamp(t) | Value::Date(t) | Value::Decimal(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn temporal_values_render_like_the_odbc_driver() {
        // 2024-02-29 is day 738,944 since 0001-01-01 and day 45,349 since 1900-01-01.
        let date = Date::new(738_944);
        assert_eq!(
            value(&ColumnData::Date(Some(date)), ColumnType::Date),
            Value::Date("2024-02-29".into())
        );
        let t = Time::new(495_301_234_567, 7); // 13:45:30.1234567
        assert_eq!(
            text(value(&ColumnData::Time(Some(t)), ColumnType::NVarchar)),
            "13:45:30.1234567"
        );
        assert_eq!(
            text(value(
                &ColumnData::DateTime2(Some(DateTime2::new(date, t))),
                ColumnType::Timestamp
            )),
            "2024-02-29 13:45:30.1234567"
        );
        // 13:45:30.123 is 14,859,037 ticks of 1/300 s.
        let dt = DateTime::new(45_349, 14_859_037);
        assert_eq!(
            text(value(
                &ColumnData::DateTime(Some(dt)),
                ColumnType::Timestamp
            )),
            "2024-02-29 13:45:30.123"
        );
        let small = SmallDateTime::new(45_349, 13 * 60 + 45);
        assert_eq!(
            text(value(
                &ColumnData::SmallDateTime(Some(small)),
                ColumnType::Timestamp
            )),
            "2024-02-29 13:45:00"
        );
        // 23:30 UTC on the 28th at +01:00 is 00:30 on the 29th.
        let utc = DateTime2::new(Date::new(738_943), Time::new(84_600, 0));
        let offset = DateTimeOffset::new(utc, 60);
        assert_eq!(
            text(value(
                &ColumnData::DateTimeOffset(Some(offset)),
                ColumnType::Timestamp
            )),
            "2024-02-29 00:30:00 +01:00"
        );
    }

    #[test]
    fn exact_numbers_guids_and_bytes() {
        let n = tiberius::numeric::Numeric::new_with_scale(-1234567890123456789, 4);
        assert_eq!(
            value(&ColumnData::Numeric(Some(n)), ColumnType::Money),
            Value::Decimal("-123456789012345.6789".into())
        );
        assert_eq!(
            value(&ColumnData::I32(Some(7)), ColumnType::Integer),
            Value::Int(7)
        );
        assert_eq!(
            value(&ColumnData::U8(Some(1)), ColumnType::Bit),
            Value::Bool(true)
        );
        assert_eq!(
            value(&ColumnData::Bit(Some(false)), ColumnType::Bit),
            Value::Bool(false)
        );
        assert_eq!(
            value(&ColumnData::I32(Some(42)), ColumnType::Char(Some(4))),
            Value::Text(b"42".to_vec())
        );
        assert_eq!(
            text(value(
                &ColumnData::Binary(Some(vec![0, 0, 0, 0, 0, 0, 0x07, 0xD1].into())),
                ColumnType::Binary
            )),
            "00000000000007D1"
        );
        let guid = tiberius::Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").unwrap();
        assert_eq!(
            text(value(&ColumnData::Guid(Some(guid)), ColumnType::NVarchar)),
            "6F9619FF-8B86-D011-B42D-00C04FC964FF"
        );
        assert_eq!(
            value(&ColumnData::I64(None), ColumnType::Integer),
            Value::Null
        );
    }
}
