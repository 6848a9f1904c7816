//! A client's JSON body checked against the fields and turned into legacy column values,
//! with every problem reported at once, each at its JSON pointer.

use serde_json::Value as Json;

use crate::catalog::access::Grant;
use crate::catalog::field::canonical_decimal;
use crate::catalog::{Field, Resource};
use crate::config::FieldType;
use crate::source::Param;

/// One problem of a request body, located by its JSON pointer (RFC 6901).
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct FieldError {
    /// Where in the body (`/due_on`; empty for the whole body).
    pub pointer: String,
    /// What is wrong there.
    pub detail: String,
}

impl FieldError {
    /// A problem at the top-level member `name` (escaped per RFC 6901).
    pub fn at(name: &str, detail: impl Into<String>) -> Self {
        Self {
            pointer: format!("/{}", name.replace('~', "~0").replace('/', "~1")),
            detail: detail.into(),
        }
    }
}

/// Column values of a new row: fields index and legacy value. Required fields (and keys the
/// database does not generate) must be present.
pub fn create_values(
    resource: &Resource,
    body: &Json,
    grant: &Grant,
) -> Result<Vec<(usize, Param)>, Vec<FieldError>> {
    let mask = &grant.mask;
    let (mut values, mut errors) = convert(resource, body, grant, &[])?;
    let Json::Object(map) = body else {
        return Err(errors);
    };
    for (i, f) in resource.fields.iter().enumerate() {
        if map.contains_key(&f.name) || is_twin(resource, i) || f.read_only {
            continue;
        }
        if f.required_on_create() && !mask.hides(i) {
            let why = if f.required || f.is_key {
                "is required"
            } else {
                "is required: its column is NOT NULL without a default"
            };
            errors.push(FieldError::at(&f.name, why));
        } else if !f.null_values.is_empty() {
            // An absent field is stored the way the old programs store "no value".
            values.push((i, f.null_for_write()));
        }
    }
    finish(values, errors)
}

/// Column values a JSON merge patch (RFC 7396) sets. Key fields may only repeat the key in
/// the URL (`key` holds its legacy values by field index).
pub fn update_values(
    resource: &Resource,
    body: &Json,
    grant: &Grant,
    key: &[(usize, Param)],
) -> Result<Vec<(usize, Param)>, Vec<FieldError>> {
    let (values, errors) = convert(resource, body, grant, key)?;
    finish(values, errors)
}

fn finish(
    values: Vec<(usize, Param)>,
    errors: Vec<FieldError>,
) -> Result<Vec<(usize, Param)>, Vec<FieldError>> {
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

type Converted = (Vec<(usize, Param)>, Vec<FieldError>);

fn convert(
    resource: &Resource,
    body: &Json,
    grant: &Grant,
    key: &[(usize, Param)],
) -> Result<Converted, Vec<FieldError>> {
    let mask = &grant.mask;
    let Json::Object(map) = body else {
        return Err(vec![FieldError {
            pointer: String::new(),
            detail: "must be a JSON object of fields".into(),
        }]);
    };
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for (name, json) in map {
        // A field the caller may not see is as unknown as one that does not exist.
        let Some(i) = resource.visible_field(name, mask) else {
            errors.push(FieldError::at(
                name,
                format!(
                    "is not a field of this resource (fields: {})",
                    resource.field_names(mask)
                ),
            ));
            continue;
        };
        let f = &resource.fields[i];
        if f.read_only || is_twin(resource, i) {
            errors.push(FieldError::at(name, "is read-only"));
            continue;
        }
        if let Some((_, scope)) = grant.unwritable.iter().find(|(j, _)| *j == i) {
            errors.push(FieldError::at(
                name,
                format!("is written only with the scope `{scope}`, which the token lacks"),
            ));
            continue;
        }
        match legacy_value(f, json) {
            Err(detail) => errors.push(FieldError::at(name, detail)),
            Ok(param) => match key.iter().find(|(k, _)| *k == i) {
                Some((_, current)) if *current != param => errors.push(FieldError::at(
                    name,
                    "is part of the key, which a PATCH cannot change",
                )),
                Some(_) => {}
                None => values.push((i, param)),
            },
        }
    }
    Ok((values, errors))
}

/// A field reading the same column as an earlier one is written through that one only.
fn is_twin(resource: &Resource, index: usize) -> bool {
    let column = &resource.fields[index].column;
    resource.fields[..index].iter().any(|f| f.column == *column)
}

/// One JSON value in the field's API type, turned into the legacy value. A value whose legacy
/// form is one of the field's null sentinels is refused: it would read back as null.
pub fn legacy_value(f: &Field, json: &Json) -> Result<Param, String> {
    let param = legacy_param(f, json)?;
    if !json.is_null() && f.null_sentinels().contains(&param) {
        return Err("is stored as the legacy value that means null here; send null".into());
    }
    Ok(param)
}

fn legacy_param(f: &Field, json: &Json) -> Result<Param, String> {
    if json.is_null() {
        if f.is_key || f.required {
            return Err("cannot be null".into());
        }
        if f.limits.not_null() && f.null_values.is_empty() {
            return Err("cannot be null: its column is NOT NULL".into());
        }
        return Ok(f.null_for_write());
    }
    let wrong = || {
        Err(match f.field_type {
            FieldType::String => "must be a string".to_string(),
            FieldType::Integer => "must be an integer".into(),
            FieldType::Number => "must be a number".into(),
            FieldType::Decimal => "must be a decimal written as a string, such as \"12.50\"".into(),
            FieldType::Money => {
                "must be an object {\"value\": \"12.50\", \"currency\": \"…\"}".into()
            }
            FieldType::Boolean => "must be true or false".into(),
            FieldType::Date => "must be a date string written YYYY-MM-DD".into(),
            FieldType::Datetime => "must be a date-time string written YYYY-MM-DDTHH:MM:SS".into(),
        })
    };
    match (f.field_type, json) {
        (FieldType::String, Json::String(text)) => {
            if f.codes.is_empty() {
                text_rule(f, text)?;
            }
            f.to_legacy(text)
        }
        (FieldType::Integer, Json::Number(n)) => {
            // JSON Schema counts 7.0 as an integer, so it is one here too; a number written
            // with a point or exponent is a double, exact up to 2^53 only.
            let whole = n
                .as_f64()
                .filter(|x| x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0);
            let Some(i) = n.as_i64().or(whole.map(|x| x as i64)) else {
                return wrong();
            };
            if let Some((low, high)) = f.limits.range {
                if !(low..=high).contains(&i) {
                    return Err(format!("must be between {low} and {high}"));
                }
            }
            f.to_legacy(&i.to_string())
        }
        (FieldType::Number, Json::Number(n)) => match n.as_f64() {
            Some(x) => f.to_legacy(&x.to_string()),
            None => wrong(),
        },
        (FieldType::Decimal, Json::String(text)) => decimal(f, text),
        (FieldType::Money, Json::Object(money)) => {
            if let Some(other) = money.keys().find(|k| *k != "value" && *k != "currency") {
                return Err(format!("has no member `{other}` (only value and currency)"));
            }
            match money.get("currency") {
                None => {}
                Some(Json::String(c)) if Some(c) == f.currency.as_ref() => {}
                Some(_) => {
                    return Err(format!(
                        "is kept in {} only",
                        f.currency.as_deref().unwrap_or("one currency")
                    ))
                }
            }
            match money.get("value") {
                Some(Json::String(text)) => decimal(f, text),
                _ => wrong(),
            }
        }
        (FieldType::Boolean, Json::Bool(b)) => f.to_legacy(if *b { "true" } else { "false" }),
        (FieldType::Date | FieldType::Datetime, Json::String(text)) => f.to_legacy(text),
        _ => wrong(),
    }
}

/// A written decimal: `-`, digits, and a fraction after a point, nothing else (no `+`, no
/// bare point, no blanks), within the column's precision and scale; leading zeros and zeros
/// past the scale change no digit and pass. `openapi::rules::decimal_pattern` states it.
fn decimal(f: &Field, text: &str) -> Result<Param, String> {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = body.split_once('.').unwrap_or((body, "0"));
    let plain = !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    let canonical = canonical_decimal(text, None)
        .filter(|_| plain)
        .ok_or("must be a decimal number such as \"12.50\"")?;
    f.limits.check_decimal(&canonical)?;
    if let (None, Some(scale)) = (f.limits.digits, f.scale) {
        let places = canonical
            .split_once('.')
            .map_or(0, |(_, frac)| frac.trim_end_matches('0').len());
        if places > scale as usize {
            return Err(format!("has more than {scale} decimal places"));
        }
    }
    f.to_legacy(&canonical)
}

/// What text a column can hold as the old programs read it: no control characters (C0, DEL
/// and C1, unless the field allows them), no blank at either end of a trimmed field (reads
/// drop them), something besides blanks in a key or a required field, and no more bytes
/// than the source reads whole. `openapi::rules` states it as a pattern and a maxLength.
pub fn text_rule(f: &Field, text: &str) -> Result<(), String> {
    if !f.allow_control {
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(format!(
                "contains the control character U+{:04X}, which the column does not take",
                u32::from(c)
            ));
        }
    }
    let blank = text.chars().all(|c| c == ' ');
    if f.is_key && blank {
        return Err("is a key and cannot be empty or blank".into());
    }
    if f.required && blank {
        return Err("is required and cannot be empty or blank".into());
    }
    if f.trim && (text.starts_with(' ') || text.ends_with(' ')) {
        return Err("starts or ends with a blank, which the field's trimming would drop".into());
    }
    // The column's width is checked where every text-stored value is encoded
    // (`Field::to_legacy`); what the source reads whole is this rule's own.
    if let Some(max) = f.limits.max_bytes {
        // Encoded as stored; an unencodable text is refused by the encoding itself.
        let stored = f.legacy_prefix(text).map_or(0, |bytes| bytes.len());
        if stored > max as usize {
            return Err(format!(
                "is longer than the {max} bytes the source reads whole (max_text_bytes)"
            ));
        }
    }
    Ok(())
}
