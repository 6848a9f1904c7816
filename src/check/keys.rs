//! Whether a resource's key is a key in the data: no two rows share its values
//! (`GROUP BY key HAVING COUNT(*) > 1`) and none holds NULL, each probe bounded to a few rows.

use crate::catalog::Resource;
use crate::config::Problem;
use crate::source::select::Relation;
use crate::source::{ColumnType, Dialect, Source, SourceError, Statement, Value};

/// Most duplicate keys (and NULL-key rows) read; the examples are the smallest of them.
const SEEN: usize = 50;
/// Examples shown in a message.
const EXAMPLES: usize = 3;

/// The FROM item of `relation`: a quoted table, or the query as a derived table.
pub(super) fn from(dialect: Dialect, relation: &Relation) -> String {
    match relation {
        Relation::Table(table) => dialect.quote(table),
        Relation::Query(query) => format!("({query}) portico_q"),
    }
}

/// `SELECT {body}` of at most `rows` rows, in the dialect's spelling.
pub(super) fn limited(
    dialect: Dialect,
    body: &str,
    rows: usize,
    columns: Vec<ColumnType>,
) -> Statement {
    let sql = match dialect {
        Dialect::TSql => format!("SELECT TOP ({rows}) {body}"),
        Dialect::Sqlite | Dialect::Postgres | Dialect::MySql => {
            format!("SELECT {body} LIMIT {rows}")
        }
        Dialect::Generic => format!("SELECT {body}"),
    };
    Statement {
        sql,
        params: Vec::new(),
        columns,
        max_rows: rows,
    }
}

/// A value as a message shows it.
pub(super) fn shown(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Decimal(t) | Value::Date(t) | Value::Timestamp(t) => t.clone(),
        Value::Text(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::Bool(b) => b.to_string(),
    }
}

/// The key's problems in the data: duplicate values, NULLs.
pub(super) async fn probe(
    source: &dyn Source,
    resource: &Resource,
    at: &str,
) -> Result<Vec<Problem>, SourceError> {
    let dialect = source.dialect();
    let key: Vec<_> = resource.key.iter().map(|&i| &resource.fields[i]).collect();
    let quoted: Vec<String> = key.iter().map(|f| dialect.quote(&f.column)).collect();
    let list = quoted.join(", ");
    let named = key
        .iter()
        .map(|f| format!("`{}` (column `{}`)", f.name, f.column))
        .collect::<Vec<_>>()
        .join(", ");
    let relation = from(dialect, &resource.relation);
    let location = format!("{at}.key");
    let mut problems = Vec::new();

    let not_null = quoted
        .iter()
        .map(|c| format!("{c} IS NOT NULL"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let mut columns: Vec<ColumnType> = key.iter().map(|f| f.column_type).collect();
    columns.push(ColumnType::Integer);
    // Ordered, so the examples are the smallest keys; standard SQL only where the dialect
    // is unknown (a weak driver may not sort).
    let order = match dialect {
        Dialect::Generic => String::new(),
        _ => format!(" ORDER BY {list}"),
    };
    let duplicates = source
        .query(limited(
            dialect,
            &format!(
                "{list}, COUNT(*) FROM {relation} WHERE {not_null} GROUP BY {list} \
                 HAVING COUNT(*) > 1{order}"
            ),
            SEEN,
            columns,
        ))
        .await?;
    if !duplicates.is_empty() {
        let examples = duplicates
            .iter()
            .take(EXAMPLES)
            .map(|row| {
                let (count, values) = row.split_last().unwrap_or((&Value::Null, &[]));
                let values: Vec<String> = values.iter().map(shown).collect();
                let value = match values.as_slice() {
                    [one] => one.clone(),
                    many => format!("({})", many.join(", ")),
                };
                format!("`{value}` in {} rows", shown(count))
            })
            .collect::<Vec<_>>()
            .join(", ");
        problems.push(Problem {
            location: location.clone(),
            message: format!(
                "the key {named} is not unique in the data: {} key value(s) occur in more \
                 than one row (e.g. {examples}); a lookup by key answers one of them and keyset \
                 pages skip rows. Key on columns that are unique together (a primary key or a \
                 unique index)",
                count_seen(duplicates.len()),
            ),
        });
    }

    let any_null = quoted
        .iter()
        .map(|c| format!("{c} IS NULL"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let nulls = source
        .query(limited(
            dialect,
            &format!("{} FROM {relation} WHERE {any_null}", quoted[0]),
            SEEN,
            vec![key[0].column_type],
        ))
        .await?;
    if !nulls.is_empty() {
        problems.push(Problem {
            location,
            message: format!(
                "the key {named} is NULL in {} row(s): such a row cannot be looked up by key \
                 and breaks keyset paging",
                count_seen(nulls.len()),
            ),
        });
    }
    Ok(problems)
}

/// `n`, or "at least n" when the probe stopped at its bound.
fn count_seen(n: usize) -> String {
    if n >= SEEN {
        format!("at least {n}")
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_bounded_in_each_dialect() {
        let body = "\"K\", COUNT(*) FROM \"T\" GROUP BY \"K\" HAVING COUNT(*) > 1";
        let columns = || vec![ColumnType::Integer, ColumnType::Integer];
        assert!(limited(Dialect::Sqlite, body, 50, columns())
            .sql
            .ends_with("HAVING COUNT(*) > 1 LIMIT 50"));
        assert!(limited(Dialect::TSql, body, 50, columns())
            .sql
            .starts_with("SELECT TOP (50) "));
        let generic = limited(Dialect::Generic, body, 50, columns());
        assert!(!generic.sql.contains("LIMIT"));
        assert_eq!(generic.max_rows, 50);
        assert_eq!(
            from(Dialect::MySql, &Relation::Table("Order Details".into())),
            "`Order Details`"
        );
        assert_eq!(
            from(Dialect::Postgres, &Relation::Query("SELECT 1 AS a".into())),
            "(SELECT 1 AS a) portico_q"
        );
        assert_eq!(count_seen(3), "3");
        assert_eq!(count_seen(50), "at least 50");
    }
}
