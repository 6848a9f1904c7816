//! Literal values of the fixture API: exact decimals and the proleptic Gregorian calendar of the
//! date/time types (days since 0001-01-01, 100 ns ticks since midnight).

/// 100 ns ticks in a day (the unit of time(7)).
pub(super) const TICKS_PER_DAY: i64 = 864_000_000_000;
/// Days from 0001-01-01 to 1900-01-01 (the epoch of datetime/smalldatetime).
pub(super) const DAYS_TO_1900: i64 = 693_595;

/// datetime: days since 1900 and 1/300 s ticks, rounded like SQL Server (.000/.003/.007).
pub(super) fn datetime_parts(days: i64, ticks: u64) -> (i64, u32) {
    let fragments = (ticks * 3 + 50_000) / 100_000;
    if fragments == 300 * 86_400 {
        (days + 1, 0)
    } else {
        (days, fragments as u32)
    }
}

/// "-12.5" at `scale` as an integer mantissa; digits beyond the scale must be zero.
pub(super) fn parse_decimal(text: &str, scale: u8) -> Result<i128, String> {
    let bad = || format!("{text:?} is not a decimal at scale {scale}");
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let scale = scale as usize;
    if frac.len() > scale && frac[scale..].bytes().any(|b| b != b'0') {
        return Err(bad());
    }
    let mut digits = String::from(int);
    digits.push_str(&frac[..frac.len().min(scale)]);
    digits.extend(std::iter::repeat_n('0', scale.saturating_sub(frac.len())));
    let magnitude: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| bad())?
    };
    Ok(if negative { -magnitude } else { magnitude })
}

/// Canonical text of a mantissa at a scale: "-12.50".
pub(super) fn format_decimal(negative: bool, magnitude: u128, scale: u8) -> String {
    let digits = format!("{magnitude:0>width$}", width = scale as usize + 1);
    let (int, frac) = digits.split_at(digits.len() - scale as usize);
    let sign = if negative && magnitude != 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// Days from 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of `days_from_civil`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

/// Days since 0001-01-01 of "YYYY-MM-DD".
pub(super) fn parse_date(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a YYYY-MM-DD date");
    let mut parts = text.trim().splitn(3, '-');
    let mut next = || -> Result<i64, String> {
        let part = parts.next().ok_or_else(bad)?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse().map_err(|_| bad())
    };
    let (y, m, d) = (next()?, next()?, next()?);
    if !(1..=9999).contains(&y) || !(1..=12).contains(&m) || d < 1 {
        return Err(bad());
    }
    let days = days_from_civil(y, m as u32, d as u32);
    // Reject 2023-02-30 and the like: the day must map back to itself.
    if civil_from_days(days) != (y, m as u32, d as u32) {
        return Err(bad());
    }
    Ok(days - days_from_civil(1, 1, 1))
}

/// 100 ns ticks since midnight of "HH:MM[:SS[.fffffff]]".
pub(super) fn parse_time(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a HH:MM:SS.fffffff time");
    let (hms, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    let fields: Vec<&str> = hms.split(':').collect();
    if !(2..=3).contains(&fields.len()) || frac.len() > 7 {
        return Err(bad());
    }
    let num = |s: &str, max: u64| -> Result<u64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let v: u64 = s.parse().map_err(|_| bad())?;
        if v > max {
            return Err(bad());
        }
        Ok(v)
    };
    let h = num(fields[0], 23)?;
    let m = num(fields[1], 59)?;
    let s = match fields.get(2) {
        Some(s) => num(s, 59)?,
        None => 0,
    };
    let frac = if frac.is_empty() {
        0
    } else {
        num(frac, 9_999_999)? * 10u64.pow(7 - frac.len() as u32)
    };
    Ok(((h * 60 + m) * 60 + s) * 10_000_000 + frac)
}

/// (days since 0001-01-01, ticks since midnight) of "YYYY-MM-DD[ HH:MM[:SS[.f]]]".
pub(super) fn parse_datetime(text: &str) -> Result<(i64, u64), String> {
    let text = text.trim();
    match text.split_once([' ', 'T']) {
        Some((date, time)) => Ok((parse_date(date)?, parse_time(time)?)),
        None => Ok((parse_date(text)?, 0)),
    }
}

/// (local days, local ticks, offset minutes) of "YYYY-MM-DD HH:MM:SS.f +HH:MM".
pub(super) fn parse_datetimeoffset(text: &str) -> Result<(i64, u64, i16), String> {
    let bad = || format!("{text:?} is not a 'YYYY-MM-DD HH:MM:SS.f +HH:MM' value");
    let text = text.trim();
    let at = text.rfind(['+', '-']).ok_or_else(bad)?;
    let (local, offset) = text.split_at(at);
    // A '-' inside the date part is not an offset.
    if !local.contains(':') {
        return Err(bad());
    }
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let (oh, om) = offset[1..].split_once(':').ok_or_else(bad)?;
    let oh: i16 = oh.parse().map_err(|_| bad())?;
    let om: i16 = om.parse().map_err(|_| bad())?;
    if oh > 14 || om > 59 {
        return Err(bad());
    }
    let (days, ticks) = parse_datetime(local.trim_end())?;
    Ok((days, ticks, sign * (oh * 60 + om)))
}

/// "YYYY-MM-DD" of days since 0001-01-01.
pub(super) fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days + days_from_civil(1, 1, 1));
    format!("{y:04}-{m:02}-{d:02}")
}

/// "HH:MM:SS[.f]" of ticks since midnight, with `scale` fractional digits.
pub(super) fn format_time(ticks: u64, scale: u8) -> String {
    let secs = ticks / 10_000_000;
    let hms = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if scale == 0 {
        return hms;
    }
    let frac = format!("{:07}", ticks % 10_000_000);
    format!("{hms}.{}", &frac[..scale as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        assert_eq!(parse_date("0001-01-01"), Ok(0));
        assert_eq!(parse_date("1900-01-01"), Ok(DAYS_TO_1900));
        assert_eq!(format_date(parse_date("2024-02-29").unwrap()), "2024-02-29");
        assert!(parse_date("2023-02-29").is_err());
        assert_eq!(parse_time("13:45:30.1234567"), Ok(495_301_234_567));
        assert_eq!(format_time(495_301_234_567, 7), "13:45:30.1234567");
        assert_eq!(format_time(495_300_000_000, 3), "13:45:30.000");
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("12.5", 2), Ok(1250));
        assert_eq!(parse_decimal("-12.50", 2), Ok(-1250));
        assert_eq!(parse_decimal("7", 0), Ok(7));
        assert!(parse_decimal("1.234", 2).is_err());
        assert_eq!(format_decimal(true, 1250, 2), "-12.50");
        assert_eq!(format_decimal(false, 5, 2), "0.05");
        assert_eq!(format_decimal(false, 5, 0), "5");
    }
}
