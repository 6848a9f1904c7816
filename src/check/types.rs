//! Whether each field's declared type fits its data: a bounded sample of rows read through the
//! same decoder and field transform that serve them, counting the values that read as null
//! (`Field::read_checked`) or lose part of themselves (`decode::from_text_checked`).

use std::collections::HashSet;

use crate::catalog::{Field, Resource};
use crate::config::{DateFormat, FieldType, Problem};
use crate::source::decode::{from_text_checked, may_lose};
use crate::source::select::Select;
use crate::source::{ColumnType, Source, SourceError, Value};

use super::keys::shown;

/// Texts of bad values kept for choosing a type that fits them.
const KEPT: usize = 100;

/// What a sample said of one field.
#[derive(Default)]
struct Tally {
    /// Values that do not read as declared (served as null).
    unreadable: usize,
    /// Values that lose part of themselves (a time of day).
    lossy: usize,
    /// The first bad value, and what it is served as.
    example: Option<(String, String)>,
    /// Texts of bad values.
    texts: Vec<String>,
}

impl Tally {
    fn note(&mut self, text: String, served: String) {
        if self.example.is_none() {
            self.example = Some((text.clone(), served));
        }
        if self.texts.len() < KEPT {
            self.texts.push(text);
        }
    }
}

/// Reads up to `rows` rows of `resource` (the fields not in `skip`) and reports each field
/// whose values do not fit its declared type.
pub(super) async fn sample(
    source: &dyn Source,
    resource: &Resource,
    skip: &HashSet<usize>,
    rows: usize,
    at: &str,
) -> Result<Vec<Problem>, SourceError> {
    let read: Vec<usize> = (0..resource.fields.len())
        .filter(|i| !skip.contains(i))
        .collect();
    if read.is_empty() || rows == 0 {
        return Ok(Vec::new());
    }
    // Each column as declared (what is served) and, where decoding can drop part of a value,
    // once more as plain text to see what it dropped.
    let mut columns: Vec<(String, ColumnType)> = read
        .iter()
        .map(|&i| {
            let field = &resource.fields[i];
            (field.column.clone(), field.column_type)
        })
        .collect();
    let mut raw: Vec<Option<usize>> = Vec::new();
    for &i in &read {
        let field = &resource.fields[i];
        raw.push(may_lose(field.column_type).then(|| {
            columns.push((field.column.clone(), ColumnType::Varchar));
            columns.len() - 1
        }));
    }
    let statement = source.dialect().select(&Select {
        relation: resource.relation.clone(),
        columns,
        filter: Vec::new(),
        order: Vec::new(),
        after: None,
        limit: rows,
    });
    let sampled = source.query(statement).await?;
    let mut problems = Vec::new();
    for (n, &i) in read.iter().enumerate() {
        let field = &resource.fields[i];
        let mut tally = Tally::default();
        for row in &sampled {
            let value = row.get(n).unwrap_or(&Value::Null);
            if field.read_checked(value).is_err() {
                tally.unreadable += 1;
                tally.note(shown(value), "null".into());
                continue;
            }
            let Some(Value::Text(bytes)) = raw[n].and_then(|r| row.get(r)) else {
                continue;
            };
            let decoded = from_text_checked(bytes, field.column_type);
            if decoded.loss.is_some() {
                tally.lossy += 1;
                let served = field.read(&decoded.value);
                let served = served.as_str().map_or(served.to_string(), str::to_string);
                tally.note(String::from_utf8_lossy(bytes).trim().to_string(), served);
            }
        }
        if let Some(message) = judgement(field, &tally, sampled.len()) {
            problems.push(Problem {
                location: format!("{at}.fields.{}", field.name),
                message,
            });
        }
    }
    Ok(problems)
}

/// The message for a field whose sample had bad values.
fn judgement(field: &Field, tally: &Tally, sampled: usize) -> Option<String> {
    let (text, served) = tally.example.as_ref()?;
    let declared = type_name(field.field_type);
    let mut message = if tally.unreadable > 0 {
        format!(
            "declared `{declared}`, but {} of the {sampled} rows sampled hold values that do \
             not read as `{declared}` (e.g. `{text}`): they are served as null",
            tally.unreadable
        )
    } else {
        format!(
            "declared `{declared}`, but {} of the {sampled} rows sampled hold a time of day \
             that is dropped (e.g. `{text}` is served as `{served}`), and filters on the field \
             compare dates with text that has times",
            tally.lossy
        )
    };
    if let Some(fits) = fitting(field, &tally.texts) {
        message.push_str(&format!("; `{}` fits them", type_name(fits)));
    }
    Some(message)
}

/// The first of the usual types that reads every one of `texts` whole.
fn fitting(field: &Field, texts: &[String]) -> Option<FieldType> {
    [
        FieldType::Integer,
        FieldType::Decimal,
        FieldType::Date,
        FieldType::Datetime,
        FieldType::String,
    ]
    .into_iter()
    .filter(|&candidate| candidate != field.field_type)
    .find(|&candidate| {
        let column_type = match candidate {
            FieldType::Integer => ColumnType::Integer,
            FieldType::Decimal => ColumnType::Decimal,
            FieldType::Date => ColumnType::Date,
            FieldType::Datetime => ColumnType::Timestamp,
            _ => ColumnType::Varchar,
        };
        let as_candidate = Field {
            field_type: candidate,
            column_type,
            codes: Vec::new(),
            bool_values: None,
            date_format: DateFormat::Iso,
            scale: None,
            currency: None,
            ..field.clone()
        };
        texts.iter().all(|text| {
            let decoded = from_text_checked(text.as_bytes(), column_type);
            decoded.loss.is_none() && as_candidate.read_checked(&decoded.value).is_ok()
        })
    })
}

/// A type as configuration spells it.
fn type_name(field_type: FieldType) -> &'static str {
    match field_type {
        FieldType::String => "string",
        FieldType::Integer => "integer",
        FieldType::Number => "number",
        FieldType::Decimal => "decimal",
        FieldType::Boolean => "boolean",
        FieldType::Date => "date",
        FieldType::Datetime => "datetime",
        FieldType::Money => "money",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::field::tests_support::field;

    #[test]
    fn the_type_that_fits_is_the_first_that_reads_every_bad_value_whole() {
        let integer = field(FieldType::Integer, ColumnType::Integer);
        let texts = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            fitting(&integer, &texts(&["VINET", "C001"])),
            Some(FieldType::String)
        );
        assert_eq!(
            fitting(&integer, &texts(&["12.50"])),
            Some(FieldType::Decimal)
        );
        let date = field(FieldType::Date, ColumnType::Date);
        assert_eq!(
            fitting(&date, &texts(&["1994-08-04 15:30:00"])),
            Some(FieldType::Datetime)
        );
    }

    #[test]
    fn a_judgement_counts_shows_an_example_and_suggests() {
        let integer = field(FieldType::Integer, ColumnType::Integer);
        let mut tally = Tally {
            unreadable: 2,
            ..Tally::default()
        };
        tally.note("VINET".into(), "null".into());
        tally.note("TOMSP".into(), "null".into());
        assert_eq!(
            judgement(&integer, &tally, 5).as_deref(),
            Some(
                "declared `integer`, but 2 of the 5 rows sampled hold values that do not read \
                 as `integer` (e.g. `VINET`): they are served as null; `string` fits them"
            )
        );
        assert!(judgement(&integer, &Tally::default(), 5).is_none());
    }
}
