//! What a legacy column can hold, read from its declared type (`varchar(30)`,
//! `decimal(9,2)`, `smallint`), so a write is refused before the database truncates it.

/// Bounds of a column's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Longest text, in characters.
    pub max_chars: Option<u32>,
    /// Decimal precision and scale: total digits and digits after the point.
    pub digits: Option<(u32, u32)>,
    /// Smallest and largest whole number.
    pub range: Option<(i64, i64)>,
}

impl Limits {
    /// Reads the bounds from a `column_type` spelling; unknown spellings bound nothing.
    pub fn from_column_type(text: &str) -> Self {
        let lower = text.trim().to_ascii_lowercase();
        let (base, args) = match lower.split_once('(') {
            Some((base, rest)) => (base.trim(), rest.trim_end_matches(')')),
            None => (lower.as_str(), ""),
        };
        let numbers: Vec<u32> = args
            .split(',')
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        let mut limits = Limits::default();
        match base {
            "char" | "character" | "nchar" | "varchar" | "nvarchar" | "character varying" => {
                limits.max_chars = numbers.first().copied();
            }
            "decimal" | "numeric" => {
                let precision = numbers.first().copied().unwrap_or(18);
                limits.digits = Some((precision, numbers.get(1).copied().unwrap_or(0)));
            }
            "money" => limits.digits = Some((19, 4)),
            "smallmoney" => limits.digits = Some((10, 4)),
            "smallint" => limits.range = Some((i16::MIN.into(), i16::MAX.into())),
            "int" | "integer" => limits.range = Some((i32::MIN.into(), i32::MAX.into())),
            _ => {}
        }
        limits
    }

    /// Checks exact decimal text (canonical: optional `-`, digits, optional fraction).
    pub fn check_decimal(&self, text: &str) -> Result<(), String> {
        let Some((precision, scale)) = self.digits else {
            return Ok(());
        };
        let body = text.trim_start_matches('-');
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        let frac = frac.trim_end_matches('0');
        let int = int.trim_start_matches('0');
        if frac.len() > scale as usize {
            return Err(format!("has more than {scale} decimal places"));
        }
        if int.len() > precision.saturating_sub(scale) as usize {
            return Err(format!(
                "has more than {} digits before the decimal point",
                precision.saturating_sub(scale)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_come_from_the_declared_type() {
        assert_eq!(Limits::from_column_type("VARCHAR(30)").max_chars, Some(30));
        assert_eq!(Limits::from_column_type("char(8)").max_chars, Some(8));
        assert_eq!(Limits::from_column_type("varchar").max_chars, None);
        assert_eq!(
            Limits::from_column_type("smallint").range,
            Some((-32768, 32767))
        );
        let money = Limits::from_column_type("decimal(7,2)");
        assert!(money.check_decimal("12345.67").is_ok());
        assert!(money.check_decimal("12345.670").is_ok());
        assert!(money.check_decimal("123456.7").is_err());
        assert!(money.check_decimal("1.234").is_err());
        assert!(money.check_decimal("-00012.5").is_ok());
    }
}
