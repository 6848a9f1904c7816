//! A resource field: its legacy column and the transforms between legacy and API values.

use std::borrow::Cow;

use encoding_rs::Encoding;
use serde_json::Value as Json;

use super::date::{iso_timestamp, Date};
use crate::config::{DateFormat, FieldConfig, FieldType, Problem, SourceKind};
use crate::source::{ColumnType, Param, Value};

/// One field of a resource, compiled from configuration.
#[derive(Debug, Clone)]
pub struct Field {
    /// API name.
    pub name: String,
    /// Legacy column.
    pub column: String,
    /// API type.
    pub field_type: FieldType,
    /// Legacy column type.
    pub column_type: ColumnType,
    /// Human description.
    pub description: Option<String>,
    /// Trim CHAR padding on read.
    pub trim: bool,
    /// Legacy code page; UTF-8 when absent.
    pub encoding: Option<&'static Encoding>,
    /// Legacy values that mean null.
    pub null_values: Vec<String>,
    /// Legacy code → API value.
    pub codes: Vec<(String, String)>,
    /// Date storage format.
    pub date_format: DateFormat,
    /// Legacy true / false spellings for text-stored booleans.
    pub bool_values: Option<(String, String)>,
    /// Decimal places to pad to.
    pub scale: Option<u32>,
    /// Currency of a money field.
    pub currency: Option<String>,
    /// Clients may filter on it.
    pub filterable: bool,
    /// Clients may sort on it.
    pub sortable: bool,
    /// Legacy order equals API order, so range filters push down.
    pub order_preserving: bool,
    /// Part of the resource key (never null).
    pub is_key: bool,
    /// Clients never write it.
    pub read_only: bool,
    /// Must be given on create.
    pub required: bool,
    /// Text may hold control characters.
    pub allow_control: bool,
    /// What the legacy column can hold.
    pub limits: super::limits::Limits,
}

/// Why a client value cannot be turned into a legacy value.
pub type ValueError = String;

/// An API value as read from a legacy value, borrowing what it can from the row and the field:
/// rendered straight into a response body, it costs no `serde_json::Value` per cell.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiValue<'a> {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A binary floating-point number.
    Number(serde_json::Number),
    /// A string (text, a code's API value, an exact decimal, an ISO date or timestamp).
    Text(Cow<'a, str>),
    /// `{"value": "12.50", "currency": "USD"}`.
    Money {
        /// Exact decimal.
        value: String,
        /// The field's currency (`null` when it has none).
        currency: Option<&'a str>,
    },
}

impl serde::Serialize for ApiValue<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ApiValue::Null => serializer.serialize_unit(),
            ApiValue::Bool(b) => serializer.serialize_bool(*b),
            ApiValue::Int(i) => serializer.serialize_i64(*i),
            ApiValue::Number(n) => n.serialize(serializer),
            ApiValue::Text(t) => serializer.serialize_str(t),
            ApiValue::Money { value, currency } => {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("value", value)?;
                map.serialize_entry("currency", currency)?;
                map.end()
            }
        }
    }
}

impl From<ApiValue<'_>> for Json {
    fn from(value: ApiValue<'_>) -> Self {
        match value {
            ApiValue::Null => Json::Null,
            ApiValue::Bool(b) => Json::Bool(b),
            ApiValue::Int(i) => Json::from(i),
            ApiValue::Number(n) => Json::Number(n),
            ApiValue::Text(t) => Json::String(t.into_owned()),
            ApiValue::Money { value, currency } => {
                serde_json::json!({ "value": value, "currency": currency })
            }
        }
    }
}

/// A legacy value that does not read as its field's type (served as null).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the legacy value does not read as {field_type:?}")]
pub struct Misfit {
    /// The type it was read as.
    pub field_type: FieldType,
}

impl Field {
    /// A create must give it: required, a key the database does not generate, or a NOT NULL
    /// column without a default or a sentinel to stand for "no value".
    pub fn required_on_create(&self) -> bool {
        self.required
            || self.is_key
            || (self.limits.not_null() && !self.limits.has_default && self.null_values.is_empty())
    }

    /// The most characters a written text may have: the column's width, and what the source
    /// reads whole (`max_text_bytes`, four bytes a character unless a one-byte code page).
    pub fn max_length(&self) -> Option<u32> {
        let per_char = if self.encoding.is_some() { 1 } else { 4 };
        let by_bytes = self.limits.max_bytes.map(|bytes| bytes / per_char);
        match (self.limits.max_chars, by_bytes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Converts a legacy value to its API value. Data that breaks its declared shape becomes
    /// null (and a warning), so one bad legacy row cannot fail a whole page.
    pub fn read(&self, value: &Value) -> Json {
        self.api_value(value).into()
    }

    /// Like [`Self::read`], as an [`ApiValue`] that borrows from `value` and the field.
    pub fn api_value<'a>(&'a self, value: &'a Value) -> ApiValue<'a> {
        self.read_api(value).unwrap_or_else(|_| {
            tracing::warn!(field = %self.name, column = %self.column, value = ?value, "legacy value does not fit its field; served as null");
            ApiValue::Null
        })
    }

    /// Converts a legacy value to its API value, or says that it does not read as the
    /// field's type (what `read` serves as null; `portico check` counts them in a sample).
    pub fn read_checked(&self, value: &Value) -> Result<Json, Misfit> {
        self.read_api(value).map(Json::from)
    }

    /// [`Self::read_checked`] as an [`ApiValue`].
    pub fn read_api<'a>(&'a self, value: &'a Value) -> Result<ApiValue<'a>, Misfit> {
        let api = match value {
            Value::Null => return Ok(ApiValue::Null),
            Value::Text(bytes) => {
                let text = self.decode_text(bytes);
                // Blanks around the value (CHAR padding, right-justified codes); writes refuse
                // them on a trimmed field, so what is written reads back.
                let text = match text {
                    Cow::Borrowed(t) if self.trim => Cow::Borrowed(t.trim_matches(' ')),
                    Cow::Owned(t) if self.trim => Cow::Owned(t.trim_matches(' ').to_string()),
                    text => text,
                };
                if self.null_values.iter().any(|n| *n == text) {
                    return Ok(ApiValue::Null);
                }
                self.api_from_text(text)
            }
            Value::Int(i) => {
                if self.field_type == FieldType::Integer && self.null_values.is_empty() {
                    return Ok(ApiValue::Int(*i));
                }
                let text = i.to_string();
                if self.null_values.contains(&text) {
                    return Ok(ApiValue::Null);
                }
                self.api_from_text(Cow::Owned(text))
            }
            Value::Float(f) => match (self.field_type, self.scale) {
                // A single-precision column's value as it was written: its shortest float4
                // text (0.05, not the 0.05000000074505806 its double reading shows).
                (FieldType::Number, _) if self.limits.single_precision => {
                    let single = (*f as f32).to_string().parse::<f64>().unwrap_or(*f);
                    serde_json::Number::from_f64(single).map(ApiValue::Number)
                }
                (FieldType::Number, _) => serde_json::Number::from_f64(*f).map(ApiValue::Number),
                (FieldType::Decimal | FieldType::Money, Some(scale)) => {
                    self.api_from_text(Cow::Owned(super::float::served(*f, scale)))
                }
                _ => self.api_from_text(Cow::Owned(f.to_string())),
            },
            Value::Decimal(d) | Value::Date(d) | Value::Timestamp(d) => {
                if self.null_values.contains(d) {
                    return Ok(ApiValue::Null);
                }
                self.api_from_text(Cow::Borrowed(d))
            }
            Value::Bool(b) => match self.field_type {
                FieldType::Boolean => Some(ApiValue::Bool(*b)),
                _ => self.api_from_text(Cow::Borrowed(if *b { "1" } else { "0" })),
            },
        };
        api.ok_or(Misfit {
            field_type: self.field_type,
        })
    }

    fn decode_text<'a>(&self, bytes: &'a [u8]) -> std::borrow::Cow<'a, str> {
        match self.encoding {
            Some(encoding) => encoding.decode_without_bom_handling(bytes).0,
            None => String::from_utf8_lossy(bytes),
        }
    }

    fn api_from_text<'a>(&'a self, text: Cow<'a, str>) -> Option<ApiValue<'a>> {
        match self.field_type {
            FieldType::String => {
                let api = self.codes.iter().find(|(legacy, _)| **legacy == *text);
                // An unknown code is passed through so the data is never hidden.
                Some(ApiValue::Text(match api {
                    Some((_, api)) => Cow::Borrowed(api.as_str()),
                    None => text,
                }))
            }
            FieldType::Integer => text.parse::<i64>().ok().map(ApiValue::Int),
            FieldType::Number => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(ApiValue::Number),
            FieldType::Decimal => {
                canonical_decimal(&text, self.scale).map(|d| ApiValue::Text(Cow::Owned(d)))
            }
            FieldType::Money => canonical_decimal(&text, self.scale).map(|value| ApiValue::Money {
                value,
                currency: self.currency.as_deref(),
            }),
            FieldType::Boolean => self.parse_legacy_bool(&text).map(ApiValue::Bool),
            FieldType::Date => {
                // A YYYYMMDD number loses its leading zeros (0530-12-30 is 5301230).
                let padded;
                let text = if self.date_format == DateFormat::Yyyymmdd
                    && text.len() < 8
                    && !text.is_empty()
                    && text.bytes().all(|b| b.is_ascii_digit())
                {
                    padded = format!("{text:0>8}");
                    padded.as_str()
                } else {
                    &*text
                };
                Date::parse_legacy(text, self.date_format)
                    .map(|d| ApiValue::Text(Cow::Owned(d.iso())))
            }
            FieldType::Datetime => iso_timestamp(&text).map(|t| ApiValue::Text(Cow::Owned(t))),
        }
    }

    fn parse_legacy_bool(&self, text: &str) -> Option<bool> {
        if let Some((t, f)) = &self.bool_values {
            return if text == t {
                Some(true)
            } else if text == f {
                Some(false)
            } else {
                None
            };
        }
        match text {
            "1" | "Y" | "y" | "T" | "t" | "true" => Some(true),
            "0" | "N" | "n" | "F" | "f" | "false" => Some(false),
            _ => None,
        }
    }

    /// Converts an API value written by a client (query string, path, cursor) into the legacy
    /// value stored in the column, exactly as the old programs write it.
    pub fn to_legacy(&self, api: &str) -> Result<Param, ValueError> {
        let legacy = match self.field_type {
            FieldType::String => {
                if self.codes.is_empty() {
                    Legacy::Text(api.to_string())
                } else {
                    let code = self.codes.iter().find(|(_, a)| a == api).ok_or_else(|| {
                        let allowed: Vec<&str> =
                            self.codes.iter().map(|(_, a)| a.as_str()).collect();
                        format!("must be one of: {}", allowed.join(", "))
                    })?;
                    Legacy::Text(code.0.clone())
                }
            }
            FieldType::Integer => {
                Legacy::Int(api.parse().map_err(|_| "must be an integer".to_string())?)
            }
            FieldType::Number => {
                let f: f64 = api.parse().map_err(|_| "must be a number".to_string())?;
                if !f.is_finite() {
                    return Err("must be a finite number".into());
                }
                Legacy::Float(f)
            }
            // A money filter compares the amount.
            FieldType::Decimal | FieldType::Money => Legacy::Decimal(
                canonical_decimal(api, None).ok_or("must be a decimal number such as 12.50")?,
            ),
            FieldType::Boolean => {
                let b = match api {
                    "true" => true,
                    "false" => false,
                    _ => return Err("must be true or false".into()),
                };
                match &self.bool_values {
                    Some((t, f)) => Legacy::Text(if b { t.clone() } else { f.clone() }),
                    None => Legacy::Bool(b),
                }
            }
            FieldType::Date => {
                let date = Date::parse_iso(api).ok_or("must be a date written YYYY-MM-DD")?;
                let text = date
                    .legacy(self.date_format)
                    .ok_or("is outside the range the legacy date format can hold")?;
                if self.date_format == DateFormat::Iso {
                    Legacy::Date(text)
                } else {
                    Legacy::Text(text)
                }
            }
            FieldType::Datetime => {
                // Offsets are only ever read (datetimeoffset), never written or compared.
                let iso = iso_timestamp(api)
                    .filter(|iso| !iso[11..].contains(['+', '-', 'Z']))
                    .ok_or("must be a date-time written YYYY-MM-DDTHH:MM:SS")?;
                Legacy::Timestamp(iso.replacen('T', " ", 1))
            }
        };
        self.to_column(legacy)
    }

    /// What a write of null stores: the first sentinel the old programs use, else NULL.
    pub fn null_for_write(&self) -> Param {
        self.null_values
            .first()
            .and_then(|sentinel| self.to_column(Legacy::Text(sentinel.clone())).ok())
            .unwrap_or(Param {
                value: Value::Null,
                column_type: self.column_type,
            })
    }

    /// Sentinel values that mean null, as legacy parameters (padded and unpadded).
    pub fn null_sentinels(&self) -> Vec<Param> {
        let mut out: Vec<Param> = Vec::new();
        for sentinel in &self.null_values {
            let mut candidates = vec![self.to_column(Legacy::Text(sentinel.clone()))];
            if self.trim {
                candidates.push(self.column_param(Value::Text(sentinel.clone().into_bytes())));
            }
            for param in candidates.into_iter().flatten() {
                if !out.contains(&param) {
                    out.push(param);
                }
            }
        }
        out
    }

    fn column_param(&self, value: Value) -> Result<Param, ValueError> {
        Ok(Param {
            value,
            column_type: self.column_type,
        })
    }

    /// Places a legacy value into the column's type: padding, code page, numeric text.
    fn to_column(&self, legacy: Legacy) -> Result<Param, ValueError> {
        let value = match self.column_type {
            ColumnType::Char(_)
            | ColumnType::Varchar
            | ColumnType::NChar(_)
            | ColumnType::NVarchar
            | ColumnType::Oem(_)
            | ColumnType::Binary => {
                let text = match legacy {
                    Legacy::Text(t)
                    | Legacy::Decimal(t)
                    | Legacy::Date(t)
                    | Legacy::Timestamp(t) => t,
                    Legacy::Int(i) => i.to_string(),
                    Legacy::Float(f) => f.to_string(),
                    Legacy::Bool(b) => (if b { "1" } else { "0" }).to_string(),
                };
                Value::Text(self.encode_padded(&text)?)
            }
            ColumnType::Integer => Value::Int(match legacy {
                Legacy::Int(i) => i,
                Legacy::Bool(b) => i64::from(b),
                Legacy::Text(t) => t
                    .trim()
                    .parse()
                    .map_err(|_| "must be an integer".to_string())?,
                _ => return Err("cannot be compared with an integer column".into()),
            }),
            ColumnType::Decimal | ColumnType::Money => Value::Decimal(match legacy {
                Legacy::Decimal(d) => d,
                Legacy::Int(i) => i.to_string(),
                Legacy::Text(t) => canonical_decimal(&t, None).ok_or("must be a decimal number")?,
                _ => return Err("cannot be compared with a decimal column".into()),
            }),
            ColumnType::Float => {
                let f: f64 = match legacy {
                    Legacy::Float(f) => f,
                    Legacy::Int(i) => i as f64,
                    Legacy::Decimal(t) | Legacy::Text(t) => {
                        t.parse().map_err(|_| "must be a number".to_string())?
                    }
                    _ => return Err("cannot be compared with a number column".into()),
                };
                // A number meets a single-precision column as the float4 it is served from,
                // so `eq` finds the row served as that number.
                Value::Float(
                    if self.limits.single_precision && self.field_type == FieldType::Number {
                        f64::from(f as f32)
                    } else {
                        f
                    },
                )
            }
            ColumnType::Date => match legacy {
                Legacy::Date(d) | Legacy::Text(d) => Value::Date(d),
                _ => return Err("cannot be compared with a date column".into()),
            },
            ColumnType::Timestamp | ColumnType::TimestampOffset => match legacy {
                Legacy::Timestamp(t) => Value::Timestamp(t),
                Legacy::Date(d) => Value::Timestamp(format!("{d} 00:00:00")),
                _ => return Err("cannot be compared with a timestamp column".into()),
            },
            ColumnType::Bit => match legacy {
                Legacy::Bool(b) => Value::Bool(b),
                Legacy::Int(i) => Value::Bool(i != 0),
                _ => return Err("cannot be compared with a bit column".into()),
            },
        };
        self.column_param(value)
    }

    fn encode_padded(&self, text: &str) -> Result<Vec<u8>, ValueError> {
        let mut bytes = self.legacy_prefix(text)?;
        // A number or date kept as text must fit the column too (a VARCHAR(n) would cut it).
        if let Some(max) = self.limits.max_chars {
            let length = match self.encoding {
                Some(_) => bytes.len(),
                None => text.chars().count(),
            };
            if length > max as usize {
                return Err(format!("is longer than the column's {max} characters"));
            }
        }
        if let ColumnType::Char(Some(n)) | ColumnType::NChar(Some(n)) | ColumnType::Oem(Some(n)) =
            self.column_type
        {
            let n = n as usize;
            // A legacy code page has one byte per character; text without one is UTF-8.
            let length = match self.encoding {
                Some(_) => bytes.len(),
                None => text.chars().count(),
            };
            if length > n {
                return Err(format!("is longer than the column's {n} characters"));
            }
            bytes.resize(bytes.len() + n - length, b' ');
        }
        Ok(bytes)
    }

    /// Encodes text in the column's code page, unpadded (also a `LIKE` prefix). U+0000 is
    /// refused: drivers and the old programs end text there, so what was written could never
    /// be read back (or matched by its ETag) whole.
    pub fn legacy_prefix(&self, api: &str) -> Result<Vec<u8>, ValueError> {
        if api.contains('\0') {
            return Err("contains U+0000 (NUL), which a legacy text column cannot hold".into());
        }
        match self.encoding {
            Some(encoding) => {
                let (bytes, _, unmappable) = encoding.encode(api);
                if unmappable {
                    return Err(format!(
                        "contains characters that {} cannot store",
                        encoding.name()
                    ));
                }
                Ok(bytes.into_owned())
            }
            None => Ok(api.as_bytes().to_vec()),
        }
    }
}

enum Legacy {
    Text(String),
    Int(i64),
    Float(f64),
    Decimal(String),
    Bool(bool),
    Date(String),
    Timestamp(String),
}

/// Canonical exact decimal text (`-0012.5` → `-12.5`), padded (or stripped of trailing zeros)
/// to `scale` places; no float ever.
pub fn canonical_decimal(text: &str, scale: Option<u32>) -> Option<String> {
    let text = text.trim();
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let mut frac = frac.to_string();
    if let Some(scale) = scale {
        // Zeros past the scale go (money is read as decimal(19,4)); other digits never do.
        while frac.len() > scale as usize && frac.ends_with('0') {
            frac.pop();
        }
        while frac.len() < scale as usize {
            frac.push('0');
        }
    }
    let zero = int == "0" && frac.bytes().all(|b| b == b'0');
    let sign = if negative && !zero { "-" } else { "" };
    Some(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

// Compiling a field from configuration: shared by resources (build.rs) and procedures.

/// Query parameters that cannot be field names.
pub const RESERVED: [&str; 5] = ["limit", "cursor", "sort", "fields", "count"];

/// Whether `name` may appear in a URL as a version, resource or procedure name.
pub fn is_url_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn is_field_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The code page of a text column. SQL Server sends text already decoded by the column's
/// collation, except the OEM code pages tiberius cannot decode, which it is asked to convert.
fn text_encoding(
    fc: &FieldConfig,
    column_type: ColumnType,
    kind: Option<SourceKind>,
    at: &str,
    problems: &mut Vec<Problem>,
) -> (ColumnType, Option<&'static encoding_rs::Encoding>) {
    let Some(label) = &fc.encoding else {
        return (column_type, None);
    };
    let oem = matches!(
        label.to_ascii_lowercase().as_str(),
        "cp437" | "ibm437" | "cp850" | "ibm850"
    );
    // `varchar(n)` keeps no width as a column type; the cast to nvarchar needs it.
    let width = match column_type {
        ColumnType::Char(width) => width,
        _ => fc
            .column_type
            .as_deref()
            .and_then(|t| t.split_once('('))
            .and_then(|(_, n)| n.trim_end_matches(')').trim().parse().ok()),
    };
    let mut refuse = |message: String| {
        problems.push(problem(format!("{at}.encoding"), message));
        (column_type, None)
    };
    match (kind, oem) {
        (Some(SourceKind::Mssql), true) => (ColumnType::Oem(width), None),
        (Some(SourceKind::Mssql), false) => refuse(format!(
            "SQL Server sends `{}` decoded by its collation; `encoding` is only for CP437 and \
             CP850 columns (`cp437`, `cp850`)",
            fc.column
        )),
        (_, true) => refuse(format!(
            "`{label}` text is converted by SQL Server itself, so only `mssql` sources read it"
        )),
        _ => match encoding_rs::Encoding::for_label(label.as_bytes()) {
            Some(found) => (column_type, Some(found)),
            None => refuse(format!("unknown encoding `{label}`")),
        },
    }
}

/// Compiles one field of a resource or procedure; `None` when it has problems (pushed).
pub fn compile_field(
    name: &str,
    fc: &FieldConfig,
    key: &[String],
    kind: Option<SourceKind>,
    at: &str,
    problems: &mut Vec<Problem>,
) -> Option<Field> {
    let before = problems.len();
    if !is_field_name(name) {
        problems.push(problem(
            at,
            "field names start with a letter and use only letters, digits and `_`",
        ));
    }
    if RESERVED.contains(&name) {
        problems.push(problem(
            at,
            format!("`{name}` is a reserved query parameter"),
        ));
    }
    if fc.column.trim().is_empty() {
        problems.push(problem(format!("{at}.column"), "must name a column"));
    }
    let format = fc.format.unwrap_or(DateFormat::Iso);
    let column_type = match &fc.column_type {
        Some(text) => ColumnType::parse_spelling(text).unwrap_or_else(|why| {
            problems.push(problem(
                format!("{at}.column_type"),
                format!("column `{}`: {why}", fc.column),
            ));
            ColumnType::Varchar
        }),
        None => inferred_column_type(fc.field_type, format),
    };
    let (column_type, encoding) = text_encoding(fc, column_type, kind, at, problems);
    if fc.format.is_some() && fc.field_type != FieldType::Date {
        problems.push(problem(
            format!("{at}.format"),
            "only `date` fields have a format",
        ));
    }
    if !fc.codes.is_empty() && fc.field_type != FieldType::String {
        problems.push(problem(
            format!("{at}.codes"),
            "only `string` fields have codes",
        ));
    }
    if fc.scale.is_some() && !matches!(fc.field_type, FieldType::Decimal | FieldType::Money) {
        problems.push(problem(
            format!("{at}.scale"),
            "only `decimal` and `money` fields have a scale",
        ));
    }
    match (&fc.currency, fc.field_type) {
        (Some(c), FieldType::Money)
            if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) =>
        {
            problems.push(problem(
                format!("{at}.currency"),
                "an ISO 4217 code such as `USD`",
            ))
        }
        (None, FieldType::Money) => problems.push(problem(
            format!("{at}.currency"),
            "a `money` field names its `currency` (`USD`)",
        )),
        (Some(_), other) if other != FieldType::Money => problems.push(problem(
            format!("{at}.currency"),
            "only `money` fields have a currency",
        )),
        _ => {}
    }
    let bool_values = match (&fc.true_value, &fc.false_value) {
        (Some(t), Some(f)) if fc.field_type == FieldType::Boolean => Some((t.clone(), f.clone())),
        (None, None) => None,
        _ => {
            problems.push(problem(
                at,
                "`true_value` and `false_value` go together, on `boolean` fields",
            ));
            None
        }
    };
    let order_preserving = fc.codes.is_empty()
        && !(fc.field_type == FieldType::Date && format == DateFormat::MmDdYyyy)
        && !(fc.field_type == FieldType::String && column_type == ColumnType::Integer)
        && bool_values.as_ref().is_none_or(|(t, f)| f < t);
    let sortable = match fc.sortable {
        Some(true) if !order_preserving => {
            problems.push(problem(
                format!("{at}.sortable"),
                "its legacy representation does not sort in API order (code map or MM/DD/YYYY text), so it cannot be sortable",
            ));
            false
        }
        Some(s) => s,
        None => order_preserving,
    };
    if problems.len() > before {
        return None;
    }
    Some(Field {
        name: name.to_string(),
        column: fc.column.clone(),
        field_type: fc.field_type,
        column_type,
        description: fc.description.clone(),
        trim: fc.trim.unwrap_or(matches!(
            column_type,
            ColumnType::Char(_) | ColumnType::NChar(_) | ColumnType::Oem(Some(_))
        )),
        encoding,
        null_values: fc.null_values.clone(),
        codes: fc
            .codes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        date_format: format,
        bool_values,
        scale: fc.scale,
        currency: fc.currency.clone(),
        filterable: fc.filterable,
        sortable,
        order_preserving,
        is_key: key.iter().any(|k| k == name),
        read_only: fc.read_only,
        required: fc.required,
        allow_control: fc.allow_control,
        limits: super::limits::Limits {
            nullable: fc.nullable,
            ..fc.column_type
                .as_deref()
                .map(super::limits::Limits::from_column_type)
                .unwrap_or_default()
        },
    })
}

fn inferred_column_type(field_type: FieldType, format: DateFormat) -> ColumnType {
    match field_type {
        FieldType::String => ColumnType::Varchar,
        FieldType::Integer => ColumnType::Integer,
        FieldType::Number => ColumnType::Float,
        FieldType::Decimal | FieldType::Money => ColumnType::Decimal,
        FieldType::Boolean => ColumnType::Bit,
        FieldType::Date => match format {
            DateFormat::Iso => ColumnType::Date,
            DateFormat::Yyyymmdd => ColumnType::Char(Some(8)),
            DateFormat::Cyymmdd => ColumnType::Integer,
            DateFormat::MmDdYyyy => ColumnType::Varchar,
        },
        FieldType::Datetime => ColumnType::Timestamp,
    }
}

fn problem(location: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        location: location.into(),
        message: message.into(),
    }
}

/// A plain field for other modules' unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::field;
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn field(field_type: FieldType, column_type: ColumnType) -> Field {
        Field {
            name: "f".into(),
            column: "F".into(),
            field_type,
            column_type,
            description: None,
            trim: matches!(column_type, ColumnType::Char(_)),
            encoding: None,
            null_values: vec![],
            codes: vec![],
            date_format: DateFormat::Iso,
            bool_values: None,
            scale: None,
            currency: None,
            filterable: true,
            sortable: true,
            order_preserving: true,
            is_key: false,
            read_only: false,
            required: false,
            allow_control: false,
            limits: Default::default(),
        }
    }

    #[test]
    fn money_is_an_exact_amount_with_its_currency_and_filters_on_the_amount() {
        let mut quote = field(FieldType::Money, ColumnType::Decimal);
        quote.scale = Some(2);
        quote.currency = Some("USD".into());
        assert_eq!(
            quote.read(&Value::Decimal("1234.5".into())),
            serde_json::json!({"value": "1234.50", "currency": "USD"})
        );
        assert_eq!(quote.read(&Value::Null), Json::Null);
        assert_eq!(
            quote.to_legacy("99.9").unwrap().value,
            Value::Decimal("99.9".into())
        );
        assert!(quote.to_legacy("lots").is_err());
    }

    #[test]
    fn floats_are_served_to_their_scale_or_as_the_float4_they_are() {
        let stored = Value::Float(f64::from(79.19f32));
        let mut freight = field(FieldType::Decimal, ColumnType::Float);
        assert_eq!(freight.read(&stored), Json::from("79.19000244140625"));
        freight.scale = Some(2);
        assert_eq!(freight.read(&stored), Json::from("79.19"));
        let mut discount = field(FieldType::Number, ColumnType::Float);
        let single = Value::Float(f64::from(0.05f32));
        assert_eq!(discount.read(&single).to_string(), "0.05000000074505806");
        assert_eq!(
            discount.to_legacy("0.05").unwrap().value,
            Value::Float(0.05)
        );
        discount.limits.single_precision = true;
        assert_eq!(discount.read(&single).to_string(), "0.05");
        assert_eq!(discount.to_legacy("0.05").unwrap().value, single);
    }

    #[test]
    fn decimals_stay_exact() {
        assert_eq!(
            canonical_decimal("12345678901234.56", None).as_deref(),
            Some("12345678901234.56")
        );
        assert_eq!(
            canonical_decimal("-0012.5", Some(2)).as_deref(),
            Some("-12.50")
        );
        assert_eq!(canonical_decimal("-0.00", None).as_deref(), Some("0.00"));
        assert_eq!(canonical_decimal("1e3", None), None);
        assert_eq!(
            canonical_decimal("12.5000", Some(2)).as_deref(),
            Some("12.50")
        );
        assert_eq!(
            canonical_decimal("12.5001", Some(2)).as_deref(),
            Some("12.5001")
        );
        assert_eq!(canonical_decimal(".", None), None);
    }

    #[test]
    fn char_keys_trim_on_read_and_pad_on_the_way_down() {
        let f = field(FieldType::String, ColumnType::Char(Some(6)));
        assert_eq!(f.read(&Value::Text(b"C001  ".to_vec())), Json::from("C001"));
        assert_eq!(
            f.to_legacy("C001").unwrap().value,
            Value::Text(b"C001  ".to_vec())
        );
        assert!(f.to_legacy("C0000001").is_err());
    }

    #[test]
    fn yyyymmdd_with_sentinels() {
        let mut f = field(FieldType::Date, ColumnType::Char(Some(8)));
        f.date_format = DateFormat::Yyyymmdd;
        f.null_values = vec!["00000000".into(), "".into()];
        assert_eq!(
            f.read(&Value::Text(b"20240105".to_vec())),
            Json::from("2024-01-05")
        );
        assert_eq!(f.read(&Value::Text(b"00000000".to_vec())), Json::Null);
        assert_eq!(f.read(&Value::Text(b"        ".to_vec())), Json::Null);
        assert_eq!(
            f.to_legacy("2024-01-05").unwrap().value,
            Value::Text(b"20240105".to_vec())
        );
        assert!(f.to_legacy("2024-13-05").is_err());
        let sentinels = f.null_sentinels();
        assert!(sentinels
            .iter()
            .any(|p| p.value == Value::Text(b"        ".to_vec())));
        assert!(sentinels
            .iter()
            .any(|p| p.value == Value::Text(b"".to_vec())));
    }

    #[test]
    fn a_yyyymmdd_number_before_the_year_1000_reads_back() {
        let mut f = field(FieldType::Date, ColumnType::Integer);
        f.date_format = DateFormat::Yyyymmdd;
        let stored = f.to_legacy("0530-12-30").unwrap().value;
        assert_eq!(stored, Value::Int(5_301_230));
        assert_eq!(f.read(&stored), Json::from("0530-12-30"));
        assert_eq!(f.read(&Value::Int(10_101)), Json::from("0001-01-01"));
    }

    #[test]
    fn trimming_takes_blanks_only() {
        let f = field(FieldType::String, ColumnType::Char(Some(6)));
        assert_eq!(f.read(&Value::Text(b" C1   ".to_vec())), Json::from("C1"));
        assert_eq!(
            f.read(&Value::Text(b"\tC1\r ".to_vec())),
            Json::from("\tC1\r")
        );
    }

    #[test]
    fn cyymmdd_integers() {
        let mut f = field(FieldType::Date, ColumnType::Integer);
        f.date_format = DateFormat::Cyymmdd;
        assert_eq!(f.read(&Value::Int(1240105)), Json::from("2024-01-05"));
        assert_eq!(f.to_legacy("1999-12-31").unwrap().value, Value::Int(991231));
    }

    #[test]
    fn codes_map_both_ways_and_reject_unknown_values() {
        let mut f = field(FieldType::String, ColumnType::Char(Some(1)));
        f.codes = vec![("O".into(), "open".into()), ("C".into(), "closed".into())];
        assert_eq!(f.read(&Value::Text(b"O".to_vec())), Json::from("open"));
        assert_eq!(
            f.to_legacy("closed").unwrap().value,
            Value::Text(b"C".to_vec())
        );
        let err = f.to_legacy("gone").unwrap_err();
        assert!(err.contains("open, closed"), "{err}");
    }

    #[test]
    fn cp1252_text_decodes_and_encodes() {
        let mut f = field(FieldType::String, ColumnType::Varchar);
        f.encoding = Encoding::for_label(b"windows-1252");
        assert_eq!(
            f.read(&Value::Text(b"Caf\xe9".to_vec())),
            Json::from("Café")
        );
        assert_eq!(
            f.to_legacy("Café").unwrap().value,
            Value::Text(b"Caf\xe9".to_vec())
        );
        assert!(f.to_legacy("日本").is_err());
    }

    #[test]
    fn booleans_from_y_and_n() {
        let mut f = field(FieldType::Boolean, ColumnType::Char(Some(1)));
        f.bool_values = Some(("Y".into(), "N".into()));
        assert_eq!(f.read(&Value::Text(b"Y".to_vec())), Json::Bool(true));
        assert_eq!(
            f.to_legacy("false").unwrap().value,
            Value::Text(b"N".to_vec())
        );
        assert!(f.to_legacy("no").is_err());
    }
}
