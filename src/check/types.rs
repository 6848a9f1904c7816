//! Whether each field's declared type fits its data: a bounded sample of rows read through the
//! same decoder and field transform that serve them, counting the values that read as null
//! (`Field::read_checked`) or lose part of themselves (`decode::from_text_checked`): a time of
//! day, or, over a column that holds text, anything after the date (`00:00:00` included).
//! The same sample shows NULLs in a field taken as never null, and text cut to the source's
//! `max_text_bytes`.

use std::collections::HashSet;

use serde_json::Value as Json;

use crate::catalog::date::Date;
use crate::catalog::{Field, Resource};
use crate::config::{DateFormat, FieldType, Problem};
use crate::source::decode::{from_text_checked, may_lose, Loss};
use crate::source::select::Select;
use crate::source::{ColumnType, Dialect, Source, SourceError, Value};

use super::keys::shown;

/// Texts of bad values kept for choosing a type that fits them.
const KEPT: usize = 100;

/// How many sampled values went wrong one way, and the first of them.
#[derive(Default)]
struct Kind {
    /// How many.
    count: usize,
    /// The first, and what it is served as.
    example: Option<(String, String)>,
}

/// What a sample said of one field, one count and one example per way a value goes wrong.
#[derive(Default)]
struct Tally {
    /// Values that do not read as declared (served as null).
    unreadable: Kind,
    /// Dates whose time of day is dropped.
    time_of_day: Kind,
    /// Dates stored as text that goes on after the date with a zero time (`00:00:00`).
    midnight: Kind,
    /// Texts of bad values.
    texts: Vec<String>,
    /// NULLs read (a field taken as never null must hold none).
    nulls: usize,
    /// Texts read.
    texts_read: usize,
    /// Texts that fill the most bytes the source reads whole: cut, or exactly that long.
    full: usize,
}

impl Tally {
    fn note(&mut self, kind: fn(&mut Tally) -> &mut Kind, text: String, served: String) {
        if self.texts.len() < KEPT {
            self.texts.push(text.clone());
        }
        let kind = kind(self);
        kind.count += 1;
        if kind.example.is_none() {
            kind.example = Some((text, served));
        }
    }
}

/// Reads up to `rows` rows of `resource` (the fields not in `skip`) and reports each field
/// whose values do not fit its declared type. `dated(column)` says the database keeps the
/// column as a date or time type, which it compares as an instant: a date read of its
/// `1996-07-05 00:00:00` is the same day; over text, the stored text is not the date.
pub(super) async fn sample(
    source: &dyn Source,
    resource: &Resource,
    skip: &HashSet<usize>,
    dated: &dyn Fn(&str) -> bool,
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
    // once more whole to see what it dropped: as a timestamp, whose buffer has room for one
    // whatever width the driver reports (SQLite says 10 for a column declared DATE).
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
            columns.push((field.column.clone(), ColumnType::Timestamp));
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
        per_group: None,
    });
    let sampled = source.query(statement).await?;
    let mut problems = Vec::new();
    let mut texts = Vec::new();
    for (n, &i) in read.iter().enumerate() {
        let field = &resource.fields[i];
        let mut tally = Tally::default();
        let text_column = !dated(&field.column);
        for row in &sampled {
            let value = row.get(n).unwrap_or(&Value::Null);
            match (value, field.limits.max_bytes) {
                (Value::Null, _) => tally.nulls += 1,
                (Value::Text(bytes), Some(max)) => {
                    tally.texts_read += 1;
                    if bytes.len() >= max as usize {
                        tally.full += 1;
                    }
                }
                _ => {}
            }
            let read = match field.read_checked(value) {
                Ok(read) => read,
                Err(_) => {
                    tally.note(|t| &mut t.unreadable, shown(value), "null".into());
                    continue;
                }
            };
            // A date kept as text is compared by filters and cursors as that text: it must be
            // exactly the date written back in the field's format, or `eq` misses the row.
            if let (FieldType::Date, Value::Text(bytes), Json::String(served)) =
                (field.field_type, value, &read)
            {
                let text = String::from_utf8_lossy(bytes);
                let text = if field.trim {
                    text.trim_matches(' ')
                } else {
                    &text[..]
                };
                let written = Date::parse_legacy(text, field.date_format)
                    .and_then(|d| d.legacy(field.date_format));
                if written.as_deref() != Some(text) {
                    tally.note(|t| &mut t.midnight, text.to_string(), served.clone());
                    continue;
                }
            }
            let bytes = match raw[n].and_then(|r| row.get(r)) {
                Some(Value::Timestamp(text)) => text.as_bytes(),
                Some(Value::Text(bytes)) => bytes.as_slice(),
                _ => continue,
            };
            let decoded = from_text_checked(bytes, field.column_type);
            let kind: fn(&mut Tally) -> &mut Kind = match decoded.loss {
                Some(Loss::TimeOfDay(_)) => |t| &mut t.time_of_day,
                Some(Loss::Midnight(_)) if text_column => |t| &mut t.midnight,
                _ => continue,
            };
            let served = field.read(&decoded.value);
            let served = served.as_str().map_or(served.to_string(), str::to_string);
            let text = String::from_utf8_lossy(bytes).trim().to_string();
            tally.note(kind, text, served);
        }
        let location = format!("{at}.fields.{}", field.name);
        if let Some(message) = judgement(field, &tally, sampled.len()) {
            problems.push(Problem {
                location: location.clone(),
                message,
            });
        }
        // A key's NULLs are the key probe's to report.
        if tally.nulls > 0 && field.limits.not_null() && !field.is_key {
            problems.push(Problem {
                location: location.clone(),
                message: format!(
                    "taken as never null (`nullable = false`, or the database's catalog says \
                     NOT NULL), but {} of the {} rows sampled hold NULL: the API document and \
                     the write rules promise a value the data does not have; set \
                     nullable = true",
                    tally.nulls,
                    sampled.len()
                ),
            });
        }
        if tally.texts_read > 0 {
            texts.push((i, tally.full));
        }
    }
    if !texts.is_empty() {
        problems.extend(cut_texts(source, resource, &texts, rows, sampled.len(), at).await);
    }
    Ok(problems)
}

/// The fields of `texts` (field index, how many sampled values filled `max_text_bytes`) whose
/// values the source cuts: where the dialect can measure them in the database, those with
/// values longer than the bound, with how many and the longest (a driver may cut below the
/// bound, so what was read cannot tell); otherwise those with values that filled it.
async fn cut_texts(
    source: &dyn Source,
    resource: &Resource,
    texts: &[(usize, usize)],
    rows: usize,
    sampled: usize,
    at: &str,
) -> Vec<Problem> {
    let dialect = source.dialect();
    let measured: Option<Vec<Vec<Value>>> = match texts
        .iter()
        .map(|&(i, _)| byte_length(dialect, &dialect.quote(&resource.fields[i].column)))
        .collect::<Option<Vec<String>>>()
    {
        Some(lengths) => {
            let body = format!(
                "{} FROM {}",
                lengths.join(", "),
                dialect.from_item(&resource.relation, "portico_q")
            );
            let columns = vec![ColumnType::Integer; lengths.len()];
            source
                .query(dialect.select_text(&body, rows, columns))
                .await
                .ok()
        }
        None => None,
    };
    let mut problems = Vec::new();
    for (n, &(i, reached)) in texts.iter().enumerate() {
        let field = &resource.fields[i];
        let max = field.limits.max_bytes.unwrap_or_default();
        let setting = format!("[sources.{}] max_text_bytes", source.name());
        let lengths = measured.as_ref().map(|rows| {
            rows.iter()
                .filter_map(|row| match row.get(n) {
                    Some(Value::Int(length)) => u64::try_from(*length).ok(),
                    _ => None,
                })
                .filter(|length| *length > u64::from(max))
                .collect::<Vec<u64>>()
        });
        let message = match lengths {
            Some(longer) if longer.is_empty() => continue,
            Some(longer) => format!(
                "{} of the {sampled} rows sampled hold text longer than the {max} bytes the \
                 source reads whole (the longest: {} bytes): they are served cut short; raise \
                 {setting} to at least that",
                longer.len(),
                longer.iter().max().copied().unwrap_or_default()
            ),
            None if reached == 0 => continue,
            None => format!(
                "{reached} of the {sampled} rows sampled hold text that fills the {max} bytes \
                 the source reads whole: longer values are served cut to {max} bytes; raise \
                 {setting} above the column's longest value"
            ),
        };
        problems.push(Problem {
            location: format!("{at}.fields.{}", field.name),
            message,
        });
    }
    problems
}

/// SQL for the length of a column's value in bytes, where the dialect has it.
fn byte_length(dialect: Dialect, column: &str) -> Option<String> {
    match dialect {
        Dialect::Sqlite => Some(format!("LENGTH(CAST({column} AS BLOB))")),
        Dialect::Postgres | Dialect::MySql => Some(format!("OCTET_LENGTH({column})")),
        Dialect::TSql => Some(format!("DATALENGTH({column})")),
        Dialect::Generic => None,
    }
}

/// The message for a field whose sample had bad values: each way they went wrong, with its
/// count and its own example.
fn judgement(field: &Field, tally: &Tally, sampled: usize) -> Option<String> {
    let declared = type_name(field.field_type);
    let mut parts = Vec::new();
    if let Some((text, _)) = &tally.unreadable.example {
        parts.push((
            tally.unreadable.count,
            format!(
                "hold values that do not read as `{declared}` (e.g. `{text}`): they are served \
                 as null"
            ),
        ));
    }
    if let Some((text, served)) = &tally.time_of_day.example {
        parts.push((
            tally.time_of_day.count,
            format!(
                "hold a time of day that is dropped (e.g. `{text}` is served as `{served}`), \
                 and filters on the field compare dates with text that has times"
            ),
        ));
    }
    if let Some((text, served)) = &tally.midnight.example {
        parts.push((
            tally.midnight.count,
            format!(
                "hold text that goes on after the date (e.g. `{text}` is served as \
                 `{served}`): the column holds text, which is not the date, so `eq`, `in` and \
                 `lte` filters skip those rows and paging sorted by the field repeats them"
            ),
        ));
    }
    if parts.is_empty() {
        return None;
    }
    let mut message = format!("declared `{declared}`, but ");
    for (n, (count, what)) in parts.iter().enumerate() {
        match n {
            0 => message.push_str(&format!("{count} of the {sampled} rows sampled {what}")),
            _ => message.push_str(&format!("; {count} {what}")),
        }
    }
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
        let mut tally = Tally::default();
        tally.note(|t| &mut t.unreadable, "VINET".into(), "null".into());
        tally.note(|t| &mut t.unreadable, "TOMSP".into(), "null".into());
        assert_eq!(
            judgement(&integer, &tally, 5).as_deref(),
            Some(
                "declared `integer`, but 2 of the 5 rows sampled hold values that do not read \
                 as `integer` (e.g. `VINET`): they are served as null; `string` fits them"
            )
        );
        assert!(judgement(&integer, &Tally::default(), 5).is_none());
    }

    #[test]
    fn each_way_a_value_goes_wrong_keeps_its_own_count_and_example() {
        let date = field(FieldType::Date, ColumnType::Date);
        let mut tally = Tally::default();
        tally.note(
            |t| &mut t.time_of_day,
            "1994-08-04 15:30:00".into(),
            "1994-08-04".into(),
        );
        tally.note(|t| &mut t.unreadable, "soon".into(), "null".into());
        tally.note(
            |t| &mut t.time_of_day,
            "1994-08-05 16:30:00".into(),
            "1994-08-05".into(),
        );
        tally.note(
            |t| &mut t.midnight,
            "1994-08-06 00:00:00".into(),
            "1994-08-06".into(),
        );
        assert_eq!(
            judgement(&date, &tally, 9).as_deref(),
            Some(
                "declared `date`, but 1 of the 9 rows sampled hold values that do not read as \
                 `date` (e.g. `soon`): they are served as null; 2 hold a time of day that is \
                 dropped (e.g. `1994-08-04 15:30:00` is served as `1994-08-04`), and filters \
                 on the field compare dates with text that has times; 1 hold text that goes \
                 on after the date (e.g. `1994-08-06 00:00:00` is served as `1994-08-06`): \
                 the column holds text, which is not the date, so `eq`, `in` and `lte` filters \
                 skip those rows and paging sorted by the field repeats them; `string` fits \
                 them"
            )
        );
        let mut midnights = Tally::default();
        midnights.note(
            |t| &mut t.midnight,
            "1996-07-05 00:00:00".into(),
            "1996-07-05".into(),
        );
        let message = judgement(&date, &midnights, 4).unwrap_or_default();
        assert!(
            message.starts_with("declared `date`, but 1 of the 4 rows sampled hold text that")
                && message.ends_with("; `datetime` fits them"),
            "{message}"
        );
    }
}
