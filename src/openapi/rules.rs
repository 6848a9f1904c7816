//! The write rules of `catalog::write::body` as JSON Schema patterns, so a client (and a
//! generator working from the document) learns them before sending.

use utoipa::openapi::schema::{Object, Schema};
use utoipa::openapi::RefOr;

use super::schema;
use crate::catalog::Field;
use crate::config::{DateFormat, FieldType};

/// The schema of a value a client writes into `f` (a body member, a procedure input), with
/// every rule `catalog::write::body` enforces: null only where the column takes it (or a
/// sentinel stands for it), text within the column's width and without what it cannot hold,
/// whole numbers within its range, decimals within its precision and scale, dates within
/// the legacy format's years.
pub fn written(f: &Field) -> Schema {
    let mut strict = f.clone();
    strict.is_key = f.is_key || f.required || (f.limits.not_null() && f.null_values.is_empty());
    let mut schema = schema::field(&strict, None);
    let Schema::Object(object) = &mut schema else {
        return schema;
    };
    match f.field_type {
        FieldType::String if f.codes.is_empty() => {
            object.max_length = f.max_length().map(|max| max as usize);
            object.min_length = (f.is_key || f.required).then_some(1);
            object.pattern = Some(text_pattern(f));
        }
        FieldType::Integer => {
            if let Some((low, high)) = f.limits.range {
                object.minimum = isize::try_from(low).ok().map(Into::into);
                object.maximum = isize::try_from(high).ok().map(Into::into);
            }
            describe(
                object,
                "A whole number; written with a point or an exponent (`7.0`) it is read as a \
                 double, so only up to 2^53."
                    .into(),
            );
        }
        FieldType::Decimal => object.pattern = Some(decimal_pattern(f)),
        FieldType::Money => {
            if let Some(RefOr::T(Schema::Object(value))) = object.properties.get_mut("value") {
                value.pattern = Some(decimal_pattern(f));
            }
        }
        FieldType::Date => {
            let (pattern, years) = date_range(f.date_format).unwrap_or((ANY_YEAR, "0001 to 9999"));
            object.pattern = Some(pattern.into());
            describe(
                object,
                format!("The legacy format holds the years {years} only."),
            );
        }
        _ => {}
    }
    if f.field_type == FieldType::String && !f.null_values.is_empty() {
        let sentinels: Vec<String> = f.null_values.iter().map(|v| format!("`{v}`")).collect();
        describe(
            object,
            format!(
                "The legacy values {} mean null here: written as text they are refused (send null).",
                sentinels.join(", ")
            ),
        );
    }
    if let Some(encoding) = f.encoding.filter(|_| f.field_type == FieldType::String) {
        describe(
            object,
            format!(
                "Stored in {}: characters it cannot store are refused with a 422.",
                encoding.name()
            ),
        );
    }
    schema
}

/// Appends a rule to a schema's description.
pub fn describe(object: &mut Object, rule: String) {
    object.description = Some(match object.description.take() {
        Some(text) => format!("{text} {rule}"),
        None => rule,
    });
}

/// Characters a text column takes: no C0 or C1 control or DEL, unless the field allows them (NUL
/// never).
fn character(f: &Field, blank_too: bool) -> &'static str {
    match (f.allow_control, blank_too) {
        (false, true) => r"[^\u0000-\u001f\u007f-\u009f]",
        (false, false) => r"[^\u0000-\u001f\u007f-\u009f ]",
        (true, true) => r"[^\u0000]",
        (true, false) => r"[^\u0000 ]",
    }
}

/// `body::text_rule` as a pattern: something besides blanks in a key or required field, no
/// blank at either end of a trimmed field.
pub fn text_pattern(f: &Field) -> String {
    let any = character(f, true);
    let solid = character(f, false);
    let needed = f.is_key || f.required;
    match (f.trim, needed) {
        (true, true) => format!("^{solid}({any}*{solid})?$"),
        (true, false) => format!("^({solid}({any}*{solid})?)?$"),
        (false, true) => format!("^{any}*{solid}{any}*$"),
        (false, false) => format!("^{any}*$"),
    }
}

/// `body::decimal` as a pattern: a decimal within the column's precision and scale (or its
/// scale, when that is all that is known); leading zeros and zeros past the scale change no
/// digit, so they pass.
pub fn decimal_pattern(f: &Field) -> String {
    let (whole, places) = match (f.limits.digits, f.scale) {
        (Some((precision, scale)), _) => {
            let whole = precision.saturating_sub(scale);
            (
                if whole == 0 {
                    "0+".to_string()
                } else {
                    format!("0*[0-9]{{1,{whole}}}")
                },
                Some(scale),
            )
        }
        (None, scale) => ("[0-9]+".to_string(), scale),
    };
    match places {
        Some(0) => format!(r"^-?{whole}(\.0+)?$"),
        Some(places) => format!(r"^-?{whole}(\.[0-9]{{1,{places}}}0*)?$"),
        None => format!(r"^-?{whole}(\.[0-9]+)?$"),
    }
}

/// `YYYY-MM-DD` of the years every format holds (RFC 3339 also has a year 0000).
const ANY_YEAR: &str = r"^(?!0000)[0-9]{4}-[0-9]{2}-[0-9]{2}$";

/// The years a legacy date format holds, when it cannot hold every year from 1 to 9999: the
/// pattern of `YYYY-MM-DD` within them, and the range in words.
pub fn date_range(format: DateFormat) -> Option<(&'static str, &'static str)> {
    match format {
        DateFormat::Cyymmdd => Some((
            r"^(19|2[0-8])[0-9]{2}-[0-9]{2}-[0-9]{2}$",
            "1900 to 2899 (CYYMMDD)",
        )),
        DateFormat::Iso | DateFormat::Yyyymmdd | DateFormat::MmDdYyyy => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::write::text_rule;
    use crate::config::FieldType;
    use crate::source::ColumnType;

    fn field(trim: bool, needed: bool, allow_control: bool) -> Field {
        let mut f = crate::catalog::field::tests_support::field(
            FieldType::String,
            if trim {
                ColumnType::Char(Some(40))
            } else {
                ColumnType::Varchar
            },
        );
        f.trim = trim;
        f.required = needed;
        f.allow_control = allow_control;
        f
    }

    #[test]
    fn each_text_pattern_says_what_the_write_check_does() {
        let samples = [
            "", " ", "   ", "a", " a", "a ", "a b", " a b ", "ab", "a\tb", "a\u{7f}", "a\u{85}",
            "\u{a0}", "Café", "日本", "😀 x", "x\r", "\u{1}",
        ];
        for trim in [true, false] {
            for needed in [true, false] {
                for allow in [true, false] {
                    let f = field(trim, needed, allow);
                    let pattern = regex_lite::Regex::new(&text_pattern(&f)).unwrap();
                    for sample in samples {
                        assert_eq!(
                            pattern.is_match(sample),
                            text_rule(&f, sample).is_ok(),
                            "{sample:?} trim={trim} needed={needed} allow={allow}: {}",
                            text_pattern(&f)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_value_that_would_read_back_as_null_or_cut_is_refused() {
        use crate::catalog::write::legacy_value;
        use serde_json::json;
        let mut f = field(true, false, false);
        f.null_values = vec!["N/A".into(), "".into()];
        assert!(legacy_value(&f, &json!("N/A")).is_err(), "a null sentinel");
        assert!(legacy_value(&f, &json!("")).is_err(), "a blank sentinel");
        assert!(legacy_value(&f, &json!(null)).is_ok());
        assert!(legacy_value(&f, &json!("NA")).is_ok());
        // No more bytes than the source reads whole (max_text_bytes).
        let mut g = field(false, false, false);
        g.limits.max_bytes = Some(5);
        assert!(legacy_value(&g, &json!("abcde")).is_ok());
        assert!(legacy_value(&g, &json!("日本")).is_err(), "6 bytes");
        assert_eq!(
            g.max_length(),
            Some(1),
            "the document counts 4 bytes a character"
        );
    }

    #[test]
    fn a_not_null_column_without_default_or_sentinel_is_required_on_create() {
        let mut f = field(false, false, false);
        f.limits.nullable = Some(false);
        assert!(f.required_on_create());
        f.limits.has_default = true;
        assert!(!f.required_on_create());
        f.limits.has_default = false;
        f.null_values = vec!["".into()];
        assert!(!f.required_on_create());
    }

    #[test]
    fn each_decimal_pattern_says_what_the_write_check_does() {
        let samples = [
            "0",
            "-0",
            "1",
            "-1",
            "12.5",
            "123456789.12",
            "1234567890",
            "1.239",
            "1.230",
            "0000000001",
            "00.50",
            "+1",
            ".5",
            "5.",
            " 12",
            "12\n",
            "1e3",
            "",
            "-",
            "0.00001",
            "99.99",
            "9.999",
            "100",
            "5.000",
            "0.5",
        ];
        for (digits, scale) in [
            (Some((11, 2)), Some(2)),
            (Some((2, 2)), Some(2)),
            (Some((7, 0)), None),
            (None, Some(2)),
            (None, None),
        ] {
            let mut f = crate::catalog::field::tests_support::field(
                FieldType::Decimal,
                ColumnType::Decimal,
            );
            f.limits.digits = digits;
            f.scale = scale;
            let pattern = regex_lite::Regex::new(&decimal_pattern(&f)).unwrap();
            for sample in samples {
                let accepted =
                    crate::catalog::write::legacy_value(&f, &serde_json::json!(sample)).is_ok();
                assert_eq!(
                    pattern.is_match(sample),
                    accepted,
                    "{sample:?} with {digits:?}/{scale:?}: {}",
                    decimal_pattern(&f)
                );
            }
        }
    }
}
