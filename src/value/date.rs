//! Calendar dates: ISO 8601 parsing and printing, day arithmetic, HTTP dates and the
//! driver timestamps every layer shares.

/// A validated calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    /// Year, 1 to 9999.
    pub year: u32,
    /// Month, 1 to 12.
    pub month: u32,
    /// Day of month.
    pub day: u32,
}

impl Date {
    /// A date if the parts name a real day.
    pub fn new(year: u32, month: u32, day: u32) -> Option<Self> {
        let leap =
            (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        ((1..=9999).contains(&year) && (1..=days).contains(&day)).then_some(Self {
            year,
            month,
            day,
        })
    }

    /// Days since 1970-01-01 (negative before), by Howard Hinnant's `days_from_civil`.
    pub fn days_since_epoch(&self) -> i64 {
        let (m, d) = (i64::from(self.month), i64::from(self.day));
        let y = i64::from(self.year) - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` after 1970-01-01, by Howard Hinnant's `civil_from_days`.
    pub fn from_days(days: i64) -> Option<Self> {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self::new(
            u32::try_from(year).ok()?,
            u32::try_from(month).ok()?,
            u32::try_from(day).ok()?,
        )
    }

    /// The first second of the day, UTC, as an RFC 9110 HTTP-date
    /// (`Wed, 30 Jun 2027 00:00:00 GMT`).
    pub fn http_date(&self) -> String {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let weekday = DAYS[self.days_since_epoch().rem_euclid(7) as usize];
        format!(
            "{weekday}, {:02} {} {:04} 00:00:00 GMT",
            self.day,
            MONTHS[(self.month - 1) as usize],
            self.year
        )
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse_iso(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        Self::new(
            digits(&text[0..4])?,
            digits(&text[5..7])?,
            digits(&text[8..10])?,
        )
    }

    /// ISO 8601 text.
    pub fn iso(&self) -> String {
        let mut text = String::with_capacity(10);
        self.push_iso(&mut text);
        text
    }

    /// Appends `YYYY-MM-DD` to `text` (what `iso` returns, without formatting machinery: it
    /// runs for every date of every row served).
    pub fn push_iso(&self, text: &mut String) {
        let digit = |n: u32| char::from(b'0' + (n % 10) as u8);
        let year = self.year;
        for n in [year / 1000, year / 100, year / 10, year] {
            text.push(digit(n));
        }
        text.push('-');
        text.push(digit(self.month / 10));
        text.push(digit(self.month));
        text.push('-');
        text.push(digit(self.day / 10));
        text.push(digit(self.day));
    }
}

/// The number `text` spells in ASCII digits only (no sign, no spaces).
pub(crate) fn digits(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The current UTC date and the SQL timestamp text of this second (`2024-01-05 10:00:00`).
pub fn utc_now() -> (Date, String) {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, second) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let date = Date::from_days(days).unwrap_or(Date {
        year: 1970,
        month: 1,
        day: 1,
    });
    let time = format!(
        "{} {:02}:{:02}:{:02}",
        date.iso(),
        second / 3600,
        second % 3600 / 60,
        second % 60
    );
    (date, time)
}

/// Whole seconds since 1970-01-01 00:00:00 of a driver's timestamp text without an offset
/// (`2024-01-05 10:00:00.250` or `2024-01-05T10:00:00`; the fraction is dropped), read as if
/// it were UTC; `None` for anything else.
pub fn timestamp_seconds(text: &str) -> Option<i64> {
    let iso = iso_timestamp(text)?;
    let (day, clock) = iso.split_once('T')?;
    let clock = clock.split('.').next()?;
    let mut parts = clock.split(':').map(digits);
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = Date::parse_iso(day)?.days_since_epoch();
    Some(days * 86_400 + i64::from(h * 3600 + m * 60 + s))
}

/// The SQL timestamp text (`2024-01-05 10:00:00`) of `seconds` after 1970-01-01 00:00:00.
pub fn sql_timestamp(seconds: i64) -> Option<String> {
    let (days, second) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let date = Date::from_days(days)?;
    Some(format!(
        "{} {:02}:{:02}:{:02}",
        date.iso(),
        second / 3600,
        second % 3600 / 60,
        second % 60
    ))
}

/// Normalizes a driver's timestamp text (`2024-01-05 10:00:00.000`) to ISO 8601
/// (`2024-01-05T10:00:00`), dropping an all-zero fraction; an offset (`+01:00`, as SQL
/// Server's `datetimeoffset` has) is kept.
pub fn iso_timestamp(text: &str) -> Option<String> {
    let text = text.trim();
    let date = Date::parse_iso(text.get(..10)?)?;
    let rest = text[10..].trim_start_matches(['T', ' ']);
    let mut iso = String::with_capacity(32);
    date.push_iso(&mut iso);
    iso.push('T');
    if rest.is_empty() {
        iso.push_str("00:00:00");
        return Some(iso);
    }
    let (rest, offset) = split_offset(rest)?;
    let (clock, fraction) = rest.split_once('.').unwrap_or((rest, ""));
    let valid = clock.split(':').count() == 3
        && clock
            .split(':')
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return None;
    }
    let fraction = fraction.trim_end_matches('0');
    iso.push_str(clock);
    if !fraction.is_empty() {
        iso.push('.');
        iso.push_str(fraction);
    }
    iso.push_str(offset);
    Some(iso)
}

/// `10:00:00 +01:00` → (`10:00:00`, `+01:00`); `Z` stays `Z`; no offset → empty.
fn split_offset(rest: &str) -> Option<(&str, &str)> {
    if let Some(clock) = rest.strip_suffix('Z') {
        return Some((clock.trim_end(), "Z"));
    }
    match rest.rfind(['+', '-']) {
        Some(at) => {
            let offset = &rest[at..];
            let valid = offset.len() == 6
                && offset.as_bytes()[3] == b':'
                && offset[1..3]
                    .bytes()
                    .chain(offset[4..].bytes())
                    .all(|b| b.is_ascii_digit());
            valid.then(|| (rest[..at].trim_end(), offset))
        }
        None => Some((rest, "")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_days_and_http_dates() {
        assert_eq!(Date::new(1970, 1, 1).unwrap().days_since_epoch(), 0);
        assert_eq!(Date::new(2000, 3, 1).unwrap().days_since_epoch(), 11_017);
        assert_eq!(
            Date::new(2027, 6, 30).unwrap().http_date(),
            "Wed, 30 Jun 2027 00:00:00 GMT"
        );
        assert_eq!(
            Date::new(2024, 2, 29).unwrap().http_date(),
            "Thu, 29 Feb 2024 00:00:00 GMT"
        );
        for date in [(1970, 1, 1), (2000, 2, 29), (2024, 12, 31), (1899, 3, 1)] {
            let d = Date::new(date.0, date.1, date.2).unwrap();
            assert_eq!(Date::from_days(d.days_since_epoch()), Some(d));
        }
    }

    #[test]
    fn impossible_dates_are_rejected() {
        assert_eq!(Date::parse_iso("2023-02-29"), None);
        assert_eq!(Date::parse_iso("2024-1-5"), None);
    }

    #[test]
    fn timestamps_convert_to_seconds_and_back() {
        let at = timestamp_seconds("2024-02-29 13:45:30.1234567").unwrap();
        assert_eq!(at, timestamp_seconds("2024-02-29T13:45:30").unwrap());
        assert_eq!(at % 86_400, 13 * 3600 + 45 * 60 + 30);
        assert_eq!(sql_timestamp(at).as_deref(), Some("2024-02-29 13:45:30"));
        assert_eq!(sql_timestamp(0).as_deref(), Some("1970-01-01 00:00:00"));
        let sentinel = timestamp_seconds("9999-12-31 23:59:59").unwrap();
        assert_eq!(
            sql_timestamp(sentinel).as_deref(),
            Some("9999-12-31 23:59:59")
        );
        assert_eq!(sql_timestamp(sentinel + 1), None);
        for refused in [
            "2024-02-30 00:00:00",
            "2024-01-05 24:00:00",
            "2024-01-05 10:00:00 +01:00",
            "soon",
        ] {
            assert_eq!(timestamp_seconds(refused), None, "{refused}");
        }
    }

    #[test]
    fn timestamps_become_iso() {
        assert_eq!(
            iso_timestamp("2024-01-05 10:00:00.000").as_deref(),
            Some("2024-01-05T10:00:00")
        );
        assert_eq!(
            iso_timestamp("2024-01-05 10:00:00.250").as_deref(),
            Some("2024-01-05T10:00:00.25")
        );
        assert_eq!(iso_timestamp("2024-01-05 10:00").as_deref(), None);
        assert_eq!(
            iso_timestamp("2024-02-29 13:45:30.1234500 +01:00").as_deref(),
            Some("2024-02-29T13:45:30.12345+01:00")
        );
        assert_eq!(
            iso_timestamp("2024-02-29 13:45:30 -05:30").as_deref(),
            Some("2024-02-29T13:45:30-05:30")
        );
        assert_eq!(iso_timestamp("2024-02-29 13:45:30 +1").as_deref(), None);
    }
}
