//! Values Portico writes into columns the API does not expose: `now`, `today`, the caller's
//! subject or a claim, or a literal, placed in the column exactly as the old programs write it.

use crate::auth::Principal;
use crate::catalog::date::{utc_now, Date};
use crate::config::{DateFormat, WriteOp, WriteValueConfig, WriteValueText};
use crate::source::{ColumnType, Param, Value};

/// Where a fixed value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixedSource {
    /// The current UTC date and time.
    Now,
    /// The current UTC date, in a legacy format.
    Today(DateFormat),
    /// The token's `sub`.
    Subject,
    /// A claim at a dotted path.
    Claim(String),
    /// Literal text.
    Text(String),
    /// Literal number.
    Integer(i64),
}

/// A column Portico sets on write.
#[derive(Debug, Clone)]
pub struct FixedValue {
    /// Column name.
    pub column: String,
    /// Its legacy type.
    pub column_type: ColumnType,
    /// The value.
    pub source: FixedSource,
    /// Operations that set it.
    pub on: Vec<WriteOp>,
}

impl FixedValue {
    /// Compiles one `write_values` entry.
    pub fn compile(column: &str, wc: &WriteValueConfig) -> Result<Self, String> {
        let column_type = match &wc.column_type {
            Some(text) => {
                ColumnType::parse(text).ok_or_else(|| format!("unknown column_type `{text}`"))?
            }
            None => ColumnType::Varchar,
        };
        let source = match &wc.value {
            WriteValueText::Integer(i) => FixedSource::Integer(*i),
            WriteValueText::Text(text) => match text.as_str() {
                "now" => FixedSource::Now,
                "today" => FixedSource::Today(wc.format.unwrap_or(DateFormat::Iso)),
                "{sub}" => FixedSource::Subject,
                _ => match text
                    .strip_prefix("{claims.")
                    .and_then(|t| t.strip_suffix('}'))
                {
                    Some(path) if !path.is_empty() => FixedSource::Claim(path.to_string()),
                    _ if text.starts_with('{') => {
                        return Err(format!(
                        "`{text}`: use `now`, `today`, `{{sub}}`, `{{claims.path}}` or a literal"
                    ))
                    }
                    _ => FixedSource::Text(text.clone()),
                },
            },
        };
        if wc.format.is_some() && source != FixedSource::Today(wc.format.unwrap_or(DateFormat::Iso))
        {
            return Err("`format` only applies to `today`".into());
        }
        let on = wc
            .on
            .clone()
            .unwrap_or_else(|| vec![WriteOp::Create, WriteOp::Update]);
        if on.contains(&WriteOp::Delete) {
            return Err("`on` names `create` and `update`; a delete writes no values".into());
        }
        let value = Self {
            column: column.to_string(),
            column_type,
            source,
            on,
        };
        // Literals and clocks are checked now; claims only exist per request.
        if !matches!(value.source, FixedSource::Subject | FixedSource::Claim(_)) {
            value.resolve(&Principal::anonymous())?;
        }
        Ok(value)
    }

    /// The legacy value for this write by `principal`.
    pub fn resolve(&self, principal: &Principal) -> Result<Param, String> {
        let (today, now) = utc_now();
        let text = match &self.source {
            FixedSource::Now => match self.column_type {
                ColumnType::Timestamp => return Ok(self.param(Value::Timestamp(now))),
                ColumnType::Date => return Ok(self.param(Value::Date(today.iso()))),
                _ => now,
            },
            FixedSource::Today(format) => {
                let text = legacy_date(today, *format)?;
                match self.column_type {
                    ColumnType::Date => return Ok(self.param(Value::Date(text))),
                    ColumnType::Timestamp => {
                        return Ok(self.param(Value::Timestamp(format!("{text} 00:00:00"))))
                    }
                    _ => text,
                }
            }
            FixedSource::Subject => principal
                .subject
                .clone()
                .ok_or("the token has no `sub` claim, which this write records")?,
            FixedSource::Claim(path) => match principal.claim(path) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => {
                    return Err(format!(
                        "the token has no usable `{path}` claim, which this write records"
                    ))
                }
            },
            FixedSource::Text(t) => t.clone(),
            FixedSource::Integer(i) => i.to_string(),
        };
        self.typed(text)
    }

    fn param(&self, value: Value) -> Param {
        Param {
            value,
            column_type: self.column_type,
        }
    }

    fn typed(&self, text: String) -> Result<Param, String> {
        let value = match self.column_type {
            ColumnType::Integer => Value::Int(
                text.parse()
                    .map_err(|_| format!("`{text}` is not a whole number for {}", self.column))?,
            ),
            ColumnType::Decimal | ColumnType::Money => Value::Decimal(
                crate::catalog::field::canonical_decimal(&text, None)
                    .ok_or_else(|| format!("`{text}` is not a decimal for {}", self.column))?,
            ),
            ColumnType::Float => Value::Float(
                text.parse()
                    .map_err(|_| format!("`{text}` is not a number for {}", self.column))?,
            ),
            ColumnType::Bit => Value::Bool(matches!(text.as_str(), "1" | "true" | "Y")),
            ColumnType::Date => Value::Date(text),
            ColumnType::Timestamp | ColumnType::TimestampOffset => Value::Timestamp(text),
            ColumnType::Char(width) | ColumnType::NChar(width) | ColumnType::Oem(width) => {
                let length = text.chars().count();
                let mut bytes = text.into_bytes();
                if let Some(n) = width.map(|n| n as usize) {
                    if length > n {
                        return Err(format!(
                            "the value is longer than {}'s {n} characters",
                            self.column
                        ));
                    }
                    bytes.resize(bytes.len() + n - length, b' ');
                }
                Value::Text(bytes)
            }
            ColumnType::Varchar | ColumnType::NVarchar | ColumnType::Binary => {
                Value::Text(text.into_bytes())
            }
        };
        Ok(self.param(value))
    }
}

fn legacy_date(date: Date, format: DateFormat) -> Result<String, String> {
    date.legacy(format)
        .ok_or_else(|| "today does not fit the legacy date format".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(
        text: &str,
        column_type: &str,
        format: Option<DateFormat>,
    ) -> Result<FixedValue, String> {
        FixedValue::compile(
            "C",
            &WriteValueConfig {
                value: WriteValueText::Text(text.into()),
                column_type: Some(column_type.into()),
                format,
                on: None,
            },
        )
    }

    #[test]
    fn clocks_claims_and_literals_become_legacy_values() {
        let today = value("today", "char(8)", Some(DateFormat::Yyyymmdd)).unwrap();
        let Value::Text(bytes) = today.resolve(&Principal::anonymous()).unwrap().value else {
            panic!("text expected");
        };
        assert_eq!(bytes.len(), 8);
        assert!(bytes.iter().all(u8::is_ascii_digit));

        let now = value("now", "timestamp", None).unwrap();
        assert!(matches!(
            now.resolve(&Principal::anonymous()).unwrap().value,
            Value::Timestamp(t) if t.len() == 19
        ));

        let user = value("{sub}", "char(10)", None).unwrap();
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), "alice".into());
        let alice = Principal::from_claims(claims, &[]);
        assert_eq!(
            user.resolve(&alice).unwrap().value,
            Value::Text(b"alice     ".to_vec())
        );
        assert!(user.resolve(&Principal::anonymous()).is_err());

        assert!(value("{nope}", "varchar", None).is_err());
        assert!(value("abc", "integer", None).is_err());
        assert!(value("now", "varchar", Some(DateFormat::Yyyymmdd)).is_err());
    }
}
