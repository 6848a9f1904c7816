//! The write rules of `catalog::write::body` as JSON Schema patterns, so a client (and a
//! generator working from the document) learns them before sending.

use crate::catalog::Field;
use crate::config::DateFormat;

/// Characters a text column takes: no C0 control or DEL, unless the field allows them (NUL
/// never).
fn character(f: &Field, blank_too: bool) -> &'static str {
    match (f.allow_control, blank_too) {
        (false, true) => r"[^\u0000-\u001f\u007f]",
        (false, false) => r"[^\u0000-\u001f\u007f ]",
        (true, true) => r"[^\u0000]",
        (true, false) => r"[^\u0000 ]",
    }
}

/// `body::text_rule` as a pattern: something besides blanks in a key or required field, no
/// trailing blank where CHAR padding would drop it.
pub fn text_pattern(f: &Field) -> String {
    let any = character(f, true);
    let solid = character(f, false);
    let needed = f.is_key || f.required;
    match (f.trim, needed) {
        (true, true) => format!("^{any}*{solid}$"),
        (true, false) => format!("^({any}*{solid})?$"),
        (false, true) => format!("^{any}*{solid}{any}*$"),
        (false, false) => format!("^{any}*$"),
    }
}

/// A decimal within the column's precision and scale (or its scale, when that is all that is
/// known).
pub fn decimal_pattern(f: &Field) -> String {
    let (whole, places) = match (f.limits.digits, f.scale) {
        (Some((precision, scale)), _) => {
            let whole = precision.saturating_sub(scale);
            (
                if whole == 0 {
                    "0".to_string()
                } else {
                    format!("[0-9]{{1,{whole}}}")
                },
                Some(scale),
            )
        }
        (None, scale) => ("[0-9]+".to_string(), scale),
    };
    match places {
        Some(0) => format!("^-?{whole}$"),
        Some(places) => format!(r"^-?{whole}(\.[0-9]{{1,{places}}})?$"),
        None => format!(r"^-?{whole}(\.[0-9]+)?$"),
    }
}

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
