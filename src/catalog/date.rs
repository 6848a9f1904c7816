//! Calendar dates in the shapes legacy systems store them, converted to and from ISO 8601.

use crate::config::DateFormat;
use crate::value::date::digits;
pub use crate::value::date::{iso_timestamp, utc_now, Date};

/// The legacy formats of configuration (`date_format`).
impl Date {
    /// Parses a legacy representation.
    pub fn parse_legacy(text: &str, format: DateFormat) -> Option<Self> {
        match format {
            DateFormat::Iso => Self::parse_iso(text.get(..10)?),
            DateFormat::Yyyymmdd => {
                if text.len() != 8 {
                    return None;
                }
                Self::new(
                    digits(&text[0..4])?,
                    digits(&text[4..6])?,
                    digits(&text[6..8])?,
                )
            }
            DateFormat::Cyymmdd => {
                let n = digits(text)?;
                let (century, yy, mmdd) = (n / 1_000_000, (n / 10_000) % 100, n % 10_000);
                Self::new(1900 + century * 100 + yy, mmdd / 100, mmdd % 100)
            }
            DateFormat::MmDdYyyy => {
                let mut parts = text.split('/');
                let (m, d, y) = (parts.next()?, parts.next()?, parts.next()?);
                if parts.next().is_some() || y.len() != 4 {
                    return None;
                }
                Self::new(digits(y)?, digits(m)?, digits(d)?)
            }
        }
    }

    /// The legacy text for `format` (CYYMMDD as its digits); `None` when the format cannot
    /// hold this date (CYYMMDD covers 1900 to 2899).
    pub fn legacy(&self, format: DateFormat) -> Option<String> {
        Some(match format {
            DateFormat::Iso => self.iso(),
            DateFormat::Yyyymmdd => format!("{:04}{:02}{:02}", self.year, self.month, self.day),
            DateFormat::Cyymmdd => {
                if !(1900..=2899).contains(&self.year) {
                    return None;
                }
                let c = (self.year - 1900) / 100;
                format!(
                    "{}{:02}{:02}{:02}",
                    c,
                    self.year % 100,
                    self.month,
                    self.day
                )
            }
            DateFormat::MmDdYyyy => format!("{:02}/{:02}/{:04}", self.month, self.day, self.year),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_legacy_format_round_trips() {
        let d = Date::new(2024, 2, 29).unwrap();
        for (format, text) in [
            (DateFormat::Iso, "2024-02-29"),
            (DateFormat::Yyyymmdd, "20240229"),
            (DateFormat::Cyymmdd, "1240229"),
            (DateFormat::MmDdYyyy, "02/29/2024"),
        ] {
            assert_eq!(d.legacy(format).as_deref(), Some(text));
            assert_eq!(Date::parse_legacy(text, format), Some(d));
        }
        assert_eq!(
            Date::parse_legacy("991231", DateFormat::Cyymmdd),
            Date::new(1999, 12, 31)
        );
    }

    #[test]
    fn impossible_dates_are_rejected() {
        assert_eq!(Date::parse_legacy("00000000", DateFormat::Yyyymmdd), None);
        assert_eq!(Date::parse_legacy("2024131", DateFormat::Cyymmdd), None);
        assert_eq!(
            Date::new(1899, 1, 1).unwrap().legacy(DateFormat::Cyymmdd),
            None
        );
    }
}
