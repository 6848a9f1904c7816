//! SQL Server types on the wire: TYPE_INFO in COLMETADATA and value bytes in ROW
//! (MS-TDS 2.2.5.4, 2.2.5.5, 2.2.7.4, 2.2.7.19).

use super::codepage::{collation_bytes, encode_text, put_b_varchar, put_us_varchar, utf16_bytes};
use super::values::{
    datetime_parts, parse_datetime, parse_datetimeoffset, parse_decimal, parse_time, DAYS_TO_1900,
    TICKS_PER_DAY,
};
use super::{Cell, Collation, Column, SqlType};

/// Bytes of a decimal value at each precision band (the sign byte included).
fn decimal_len(precision: u8) -> u8 {
    match precision {
        0..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

/// Time bytes at a fractional-seconds scale.
pub(super) fn time_len(scale: u8) -> usize {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

/// Whether a column reads its value as PLP (the (max) types and xml).
fn is_plp(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::VarCharMax(_) | SqlType::NVarCharMax | SqlType::VarBinaryMax | SqlType::Xml
    )
}

/// One COLMETADATA column entry (MS-TDS 2.2.7.4): usertype, flags, TYPE_INFO, table, name.
pub(super) fn put_column_meta(out: &mut Vec<u8>, column: &Column) -> Result<(), String> {
    let user_type: u32 = if column.ty == SqlType::RowVersion {
        80
    } else {
        0
    };
    out.extend_from_slice(&user_type.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // nullable, so every column can carry NULL
    let u16_len = |out: &mut Vec<u8>, n: u32| -> Result<(), String> {
        if n == 0 || n > 8000 {
            return Err(format!(
                "length {n} of column {:?} is not 1..=8000",
                column.name
            ));
        }
        out.extend_from_slice(&(n as u16).to_le_bytes());
        Ok(())
    };
    match &column.ty {
        SqlType::Bit => out.extend_from_slice(&[0x68, 1]),
        SqlType::TinyInt => out.extend_from_slice(&[0x26, 1]),
        SqlType::SmallInt => out.extend_from_slice(&[0x26, 2]),
        SqlType::Int => out.extend_from_slice(&[0x26, 4]),
        SqlType::BigInt => out.extend_from_slice(&[0x26, 8]),
        SqlType::Real => out.extend_from_slice(&[0x6D, 4]),
        SqlType::Float => out.extend_from_slice(&[0x6D, 8]),
        SqlType::Decimal(p, s) | SqlType::Numeric(p, s) => {
            if *p == 0 || *p > 38 || s > p {
                return Err(format!("invalid precision/scale ({p},{s})"));
            }
            let ty = if matches!(column.ty, SqlType::Decimal(..)) {
                0x6A
            } else {
                0x6C
            };
            out.extend_from_slice(&[ty, decimal_len(*p), *p, *s]);
        }
        SqlType::Money => out.extend_from_slice(&[0x6E, 8]),
        SqlType::SmallMoney => out.extend_from_slice(&[0x6E, 4]),
        SqlType::Char(n, c) | SqlType::VarChar(n, c) => {
            out.push(if matches!(column.ty, SqlType::Char(..)) {
                0xAF
            } else {
                0xA7
            });
            u16_len(out, *n as u32)?;
            out.extend_from_slice(&collation_bytes(*c));
        }
        SqlType::VarCharMax(c) => {
            out.extend_from_slice(&[0xA7, 0xFF, 0xFF]);
            out.extend_from_slice(&collation_bytes(*c));
        }
        SqlType::Text(c) => {
            out.push(0x23);
            out.extend_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
            out.extend_from_slice(&collation_bytes(*c));
            put_table_name(out);
        }
        SqlType::NChar(n) | SqlType::NVarChar(n) => {
            out.push(if matches!(column.ty, SqlType::NChar(_)) {
                0xEF
            } else {
                0xE7
            });
            u16_len(out, *n as u32 * 2)?;
            out.extend_from_slice(&collation_bytes(Collation::Cp1252));
        }
        SqlType::NVarCharMax => {
            out.extend_from_slice(&[0xE7, 0xFF, 0xFF]);
            out.extend_from_slice(&collation_bytes(Collation::Cp1252));
        }
        SqlType::NText => {
            out.push(0x63);
            out.extend_from_slice(&0x7FFF_FFFEu32.to_le_bytes());
            out.extend_from_slice(&collation_bytes(Collation::Cp1252));
            put_table_name(out);
        }
        SqlType::Date => out.push(0x28),
        SqlType::Time(s) | SqlType::DateTime2(s) | SqlType::DateTimeOffset(s) => {
            if *s > 7 {
                return Err(format!("scale {s} is above 7"));
            }
            let ty = match column.ty {
                SqlType::Time(_) => 0x29,
                SqlType::DateTime2(_) => 0x2A,
                _ => 0x2B,
            };
            out.extend_from_slice(&[ty, *s]);
        }
        SqlType::DateTime => out.extend_from_slice(&[0x6F, 8]),
        SqlType::SmallDateTime => out.extend_from_slice(&[0x6F, 4]),
        SqlType::UniqueIdentifier => out.extend_from_slice(&[0x24, 16]),
        SqlType::Binary(n) | SqlType::VarBinary(n) => {
            out.push(if matches!(column.ty, SqlType::Binary(_)) {
                0xAD
            } else {
                0xA5
            });
            u16_len(out, *n as u32)?;
        }
        SqlType::VarBinaryMax => out.extend_from_slice(&[0xA5, 0xFF, 0xFF]),
        SqlType::Image => {
            out.push(0x22);
            out.extend_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
            put_table_name(out);
        }
        SqlType::RowVersion => out.extend_from_slice(&[0xAD, 8, 0]),
        SqlType::Xml => out.extend_from_slice(&[0xF1, 0]),
    }
    put_b_varchar(out, &column.name)
}

/// TableName of text/ntext/image columns: one part.
fn put_table_name(out: &mut Vec<u8>) {
    out.push(1);
    put_us_varchar(out, "FixtureTable");
}

/// One value of a ROW token in the column's wire format.
pub(super) fn put_cell(out: &mut Vec<u8>, ty: &SqlType, cell: &Cell) -> Result<(), String> {
    let mismatch = || format!("cell {cell:?} cannot be sent in a {ty:?} column");
    if *cell == Cell::Null {
        put_null(out, ty);
        return Ok(());
    }
    match ty {
        SqlType::Bit => {
            let bit = match cell {
                Cell::Bool(b) => *b,
                Cell::Int(0) => false,
                Cell::Int(1) => true,
                _ => return Err(mismatch()),
            };
            out.extend_from_slice(&[1, bit as u8]);
        }
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => {
            let Cell::Int(v) = cell else {
                return Err(mismatch());
            };
            let v = *v;
            match ty {
                SqlType::TinyInt => {
                    let v = u8::try_from(v).map_err(|_| format!("{v} overflows tinyint"))?;
                    out.extend_from_slice(&[1, v]);
                }
                SqlType::SmallInt => {
                    let v = i16::try_from(v).map_err(|_| format!("{v} overflows smallint"))?;
                    out.push(2);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                SqlType::Int => {
                    let v = i32::try_from(v).map_err(|_| format!("{v} overflows int"))?;
                    out.push(4);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                _ => {
                    out.push(8);
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        SqlType::Real | SqlType::Float => {
            let v = match cell {
                Cell::Float(f) => *f,
                Cell::Int(i) => *i as f64,
                _ => return Err(mismatch()),
            };
            if *ty == SqlType::Real {
                out.push(4);
                out.extend_from_slice(&(v as f32).to_le_bytes());
            } else {
                out.push(8);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        SqlType::Decimal(p, s) | SqlType::Numeric(p, s) => {
            let mantissa = match cell {
                Cell::Decimal(text) => parse_decimal(text, *s)?,
                Cell::Int(i) => (*i as i128) * 10i128.pow(*s as u32),
                _ => return Err(mismatch()),
            };
            if mantissa.unsigned_abs() >= 10u128.pow(*p as u32) {
                return Err(format!("{cell:?} does not fit decimal({p},{s})"));
            }
            let len = decimal_len(*p);
            out.push(len);
            out.push(if mantissa < 0 { 0 } else { 1 });
            let magnitude = mantissa.unsigned_abs().to_le_bytes();
            out.extend_from_slice(&magnitude[..len as usize - 1]);
        }
        SqlType::Money | SqlType::SmallMoney => {
            let scaled = match cell {
                Cell::Decimal(text) => parse_decimal(text, 4)?,
                Cell::Int(i) => (*i as i128) * 10_000,
                Cell::Float(f) => (f * 10_000.0).round() as i128,
                _ => return Err(mismatch()),
            };
            if *ty == SqlType::SmallMoney {
                let v =
                    i32::try_from(scaled).map_err(|_| format!("{cell:?} overflows smallmoney"))?;
                out.push(4);
                out.extend_from_slice(&v.to_le_bytes());
            } else {
                let v = i64::try_from(scaled).map_err(|_| format!("{cell:?} overflows money"))?;
                out.push(8);
                out.extend_from_slice(&((v >> 32) as i32).to_le_bytes());
                out.extend_from_slice(&(v as u32).to_le_bytes());
            }
        }
        SqlType::Char(_, c)
        | SqlType::VarChar(_, c)
        | SqlType::VarCharMax(c)
        | SqlType::Text(c) => {
            let mut bytes = match cell {
                Cell::Text(text) => encode_text(*c, text)?,
                Cell::Bytes(bytes) => bytes.clone(),
                _ => return Err(mismatch()),
            };
            if let SqlType::Char(n, _) = ty {
                // char(n) comes back blank-padded, as from a real server.
                if bytes.len() < *n as usize {
                    bytes.resize(*n as usize, b' ');
                }
            }
            if let SqlType::Char(n, _) | SqlType::VarChar(n, _) = ty {
                if bytes.len() > *n as usize {
                    return Err(format!("{cell:?} is longer than {n} bytes"));
                }
            }
            put_var_bytes(out, ty, &bytes)?;
        }
        SqlType::NChar(_) | SqlType::NVarChar(_) | SqlType::NVarCharMax | SqlType::NText => {
            let Cell::Text(text) = cell else {
                return Err(mismatch());
            };
            let mut units = text.encode_utf16().count();
            let mut bytes = utf16_bytes(text);
            if let SqlType::NChar(n) = ty {
                while units < *n as usize {
                    bytes.extend_from_slice(&[b' ', 0]);
                    units += 1;
                }
            }
            if let SqlType::NChar(n) | SqlType::NVarChar(n) = ty {
                if units > *n as usize {
                    return Err(format!("{cell:?} is longer than {n} characters"));
                }
            }
            put_var_bytes(out, ty, &bytes)?;
        }
        SqlType::Xml => {
            let Cell::Text(text) = cell else {
                return Err(mismatch());
            };
            put_plp(out, &utf16_bytes(text));
        }
        SqlType::Binary(_)
        | SqlType::VarBinary(_)
        | SqlType::VarBinaryMax
        | SqlType::Image
        | SqlType::RowVersion => {
            let Cell::Bytes(bytes) = cell else {
                return Err(mismatch());
            };
            let mut bytes = bytes.clone();
            let fixed = match ty {
                SqlType::Binary(n) => Some(*n as usize),
                SqlType::RowVersion => Some(8),
                _ => None,
            };
            if let Some(n) = fixed {
                // binary(n) comes back zero-padded.
                if bytes.len() < n {
                    bytes.resize(n, 0);
                }
            }
            if let SqlType::Binary(n) | SqlType::VarBinary(n) = ty {
                if bytes.len() > *n as usize {
                    return Err(format!("{cell:?} is longer than {n} bytes"));
                }
            }
            if *ty == SqlType::RowVersion && bytes.len() != 8 {
                return Err("a rowversion is 8 bytes".into());
            }
            put_var_bytes(out, ty, &bytes)?;
        }
        SqlType::UniqueIdentifier => {
            let Cell::Guid(text) = cell else {
                return Err(mismatch());
            };
            let uuid = uuid::Uuid::parse_str(text).map_err(|e| format!("guid {text:?}: {e}"))?;
            out.push(16);
            out.extend_from_slice(&guid_wire_bytes(*uuid.as_bytes()));
        }
        SqlType::Date => {
            let (days, ticks) = match cell {
                Cell::Date(text) | Cell::DateTime(text) => parse_datetime(text)?,
                _ => return Err(mismatch()),
            };
            if ticks != 0 {
                return Err(format!(
                    "{cell:?} has a time of day; a date column has none"
                ));
            }
            out.push(3);
            put_date(out, days)?;
        }
        SqlType::Time(scale) => {
            let Cell::Time(text) = cell else {
                return Err(mismatch());
            };
            let ticks = parse_time(text)?;
            out.push(time_len(*scale) as u8);
            put_time(out, ticks, *scale)?;
        }
        SqlType::DateTime2(scale) => {
            let (days, ticks) = match cell {
                Cell::Date(text) | Cell::DateTime(text) => parse_datetime(text)?,
                _ => return Err(mismatch()),
            };
            out.push(time_len(*scale) as u8 + 3);
            put_time(out, ticks, *scale)?;
            put_date(out, days)?;
        }
        SqlType::DateTimeOffset(scale) => {
            let Cell::DateTimeOffset(text) = cell else {
                return Err(mismatch());
            };
            let (days, ticks, offset) = parse_datetimeoffset(text)?;
            // The wire carries UTC plus the offset in minutes.
            let utc = days * TICKS_PER_DAY + ticks as i64 - offset as i64 * 600_000_000;
            out.push(time_len(*scale) as u8 + 5);
            put_time(out, utc.rem_euclid(TICKS_PER_DAY) as u64, *scale)?;
            put_date(out, utc.div_euclid(TICKS_PER_DAY))?;
            out.extend_from_slice(&offset.to_le_bytes());
        }
        SqlType::DateTime | SqlType::SmallDateTime => {
            let (days, ticks) = match cell {
                Cell::Date(text) | Cell::DateTime(text) => parse_datetime(text)?,
                _ => return Err(mismatch()),
            };
            let days = days - DAYS_TO_1900;
            if *ty == SqlType::DateTime {
                let (days, fragments) = datetime_parts(days, ticks);
                out.push(8);
                out.extend_from_slice(&(days as i32).to_le_bytes());
                out.extend_from_slice(&fragments.to_le_bytes());
            } else {
                let mut minutes = (ticks + 300_000_000) / 600_000_000;
                let mut days = days;
                if minutes == 1440 {
                    minutes = 0;
                    days += 1;
                }
                let days = u16::try_from(days).map_err(|_| format!("{cell:?} is out of range"))?;
                out.push(4);
                out.extend_from_slice(&days.to_le_bytes());
                out.extend_from_slice(&(minutes as u16).to_le_bytes());
            }
        }
    }
    Ok(())
}

fn put_null(out: &mut Vec<u8>, ty: &SqlType) {
    match ty {
        _ if is_plp(ty) => out.extend_from_slice(&u64::MAX.to_le_bytes()),
        SqlType::Char(..)
        | SqlType::VarChar(..)
        | SqlType::NChar(_)
        | SqlType::NVarChar(_)
        | SqlType::Binary(_)
        | SqlType::VarBinary(_)
        | SqlType::RowVersion => out.extend_from_slice(&[0xFF, 0xFF]),
        // text/ntext/image and every fixed-size nullable type: a zero length byte.
        _ => out.push(0),
    }
}

/// A value of a USHORTLEN, PLP or text-pointer type.
fn put_var_bytes(out: &mut Vec<u8>, ty: &SqlType, bytes: &[u8]) -> Result<(), String> {
    match ty {
        _ if is_plp(ty) => put_plp(out, bytes),
        SqlType::Text(_) | SqlType::NText | SqlType::Image => {
            out.push(16);
            out.extend_from_slice(&[0x11; 16]); // text pointer
            out.extend_from_slice(&[0; 8]); // timestamp
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        _ => {
            if bytes.len() > 8000 {
                return Err("more than 8000 bytes in a non-max column".into());
            }
            out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }
    Ok(())
}

/// PLP: total length, chunks of at most 8000 bytes, a zero terminator.
fn put_plp(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    for chunk in bytes.chunks(8000) {
        out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&0u32.to_le_bytes());
}

/// SQL Server stores the first three GUID groups little-endian.
pub(super) fn guid_wire_bytes(mut bytes: [u8; 16]) -> [u8; 16] {
    bytes.swap(0, 3);
    bytes.swap(1, 2);
    bytes.swap(4, 5);
    bytes.swap(6, 7);
    bytes
}

fn put_date(out: &mut Vec<u8>, days: i64) -> Result<(), String> {
    if !(0..=3_652_058).contains(&days) {
        return Err(format!("day {days} is outside 0001-01-01..9999-12-31"));
    }
    out.extend_from_slice(&(days as u32).to_le_bytes()[..3]);
    Ok(())
}

/// Ticks (100 ns) at `scale`; digits beyond the scale must be zero.
fn put_time(out: &mut Vec<u8>, ticks: u64, scale: u8) -> Result<(), String> {
    let unit = 10u64.pow(7 - scale as u32);
    if !ticks.is_multiple_of(unit) {
        return Err(format!(
            "time has more fractional digits than scale {scale}"
        ));
    }
    let value = (ticks / unit).to_le_bytes();
    out.extend_from_slice(&value[..time_len(scale)]);
    Ok(())
}
