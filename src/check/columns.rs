//! Whether every column a resource names is there: a table's columns from the catalog
//! (ODBC `SQLColumns`, SQL Server's `sys.columns`), a query's from its result set, compared
//! the way the database resolves names, with the closest existing name suggested.

use std::collections::{HashMap, HashSet};

use crate::catalog::Resource;
use crate::config::{Problem, SourceConfig, SourceKind};
use crate::source::select::Relation;
use crate::source::{ColumnType, Dialect, Param, Source, Statement, Value};

/// What the database says of a relation's columns.
#[derive(Debug, Clone)]
pub(super) enum Known {
    /// Its columns, in order, and those of them the database keeps as a date or time type
    /// (compared as the instants they are, not as text; never on SQLite, which keeps text).
    Columns {
        /// Every column's name.
        names: Vec<String>,
        /// The names of the date and time columns.
        dated: Vec<String>,
    },
    /// Nothing could be read (logged), or the catalog lists no such table (a synonym, or a
    /// table that is not there): the resource's query itself proves which.
    Unknown,
}

/// The key a relation's columns are kept under.
pub(super) fn relation_key(relation: &Relation) -> String {
    match relation {
        Relation::Table(table) => format!("table:{table}"),
        Relation::Query(query) => format!("query:{query}"),
    }
}

/// The columns of each of `relations` (distinct by `relation_key`) as `source` describes them.
pub(super) async fn read(
    settings: Option<&SourceConfig>,
    source: &dyn Source,
    relations: Vec<Relation>,
) -> HashMap<String, Known> {
    match settings {
        Some(settings) if settings.kind == SourceKind::Odbc => {
            let settings = settings.clone();
            let dialect = source.dialect();
            let keys: Vec<String> = relations.iter().map(relation_key).collect();
            let read =
                tokio::task::spawn_blocking(move || read_odbc(&settings, dialect, relations))
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "reading the catalog stopped");
                        Vec::new()
                    });
            keys.into_iter()
                .zip(read.into_iter().chain(std::iter::repeat(Known::Unknown)))
                .collect()
        }
        Some(_) => {
            let mut known = HashMap::new();
            for relation in relations {
                let found = read_tsql(source, &relation).await;
                known.insert(relation_key(&relation), found);
            }
            known
        }
        None => HashMap::new(),
    }
}

/// One connection for every relation of an ODBC source.
fn read_odbc(settings: &SourceConfig, dialect: Dialect, relations: Vec<Relation>) -> Vec<Known> {
    use crate::source::odbc::catalog::ColumnReader;
    let reader =
        match ColumnReader::open(&settings.connection_string, dialect, settings.login_timeout) {
            Ok(reader) => reader,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the catalog; columns are not compared");
                return Vec::new();
            }
        };
    relations
        .iter()
        .map(|relation| {
            // ODBC's date, time and timestamp types, old (9-11) and new (91-93) codes.
            let found = match relation {
                Relation::Table(table) => reader.columns(table).map(|columns| {
                    columns
                        .into_iter()
                        .map(|c| (c.name, matches!(c.data_type, 9..=11 | 91..=93)))
                        .collect::<Vec<_>>()
                }),
                Relation::Query(query) => {
                    reader.result_columns(&format!("SELECT * FROM ({query}) portico_q WHERE 1=0"))
                }
            };
            match found {
                Ok(columns) if columns.is_empty() => Known::Unknown,
                Ok(columns) => {
                    let typed = dialect != Dialect::Sqlite;
                    Known::Columns {
                        dated: columns
                            .iter()
                            .filter(|(_, dated)| typed && *dated)
                            .map(|(name, _)| name.clone())
                            .collect(),
                        names: columns.into_iter().map(|(name, _)| name).collect(),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read a relation's columns");
                    Known::Unknown
                }
            }
        })
        .collect()
}

/// A SQL Server table's columns from `sys.columns`; a query's from
/// `sys.dm_exec_describe_first_result_set` (SQL Server 2012 and later).
async fn read_tsql(source: &dyn Source, relation: &Relation) -> Known {
    let statement = match relation {
        Relation::Table(table) => crate::source::mssql::columns::statement(table),
        Relation::Query(query) => Statement {
            sql: "SELECT name, system_type_name \
                  FROM sys.dm_exec_describe_first_result_set(?, NULL, 0) \
                  WHERE is_hidden = 0 ORDER BY column_ordinal"
                .into(),
            params: vec![Param {
                value: Value::Text(query.as_bytes().to_vec()),
                column_type: ColumnType::NVarchar,
            }],
            columns: vec![ColumnType::NVarchar, ColumnType::NVarchar],
            max_rows: 4096,
        },
    };
    match source.query(statement).await {
        Ok(rows) if rows.is_empty() => Known::Unknown,
        Ok(rows) => {
            let text = |value: Option<&Value>| match value {
                Some(Value::Text(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
                _ => None,
            };
            let mut names = Vec::new();
            let mut dated = Vec::new();
            for row in &rows {
                let Some(name) = text(row.first()) else {
                    continue;
                };
                // `datetime2(7)` and `datetimeoffset(7)` carry their scale.
                let type_name = text(row.get(1)).unwrap_or_default().to_ascii_lowercase();
                let base = type_name.split('(').next().unwrap_or_default();
                if TSQL_DATED.contains(&base) {
                    dated.push(name.clone());
                }
                names.push(name);
            }
            Known::Columns { names, dated }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a relation's columns");
            Known::Unknown
        }
    }
}

/// SQL Server's date and time types.
const TSQL_DATED: [&str; 6] = [
    "date",
    "datetime",
    "datetime2",
    "smalldatetime",
    "datetimeoffset",
    "time",
];

/// Whether `configured` names `actual` as the database resolves a quoted name: PostgreSQL
/// exactly; SQLite ignoring ASCII case; MariaDB, SQL Server and others ignoring case.
pub(super) fn resolves(dialect: Dialect, configured: &str, actual: &str) -> bool {
    // A qualified name (`t.COL`) names its last part.
    let configured = configured.rsplit('.').next().unwrap_or(configured);
    match dialect {
        Dialect::Postgres => configured == actual,
        Dialect::Sqlite => configured.eq_ignore_ascii_case(actual),
        Dialect::MySql | Dialect::TSql | Dialect::Generic => {
            configured.to_lowercase() == actual.to_lowercase()
        }
    }
}

/// The existing name closest to `wanted` (edit distance, ignoring case), when close enough to
/// be a slip: at most a third of its characters, and at least one.
pub(super) fn closest<'a>(wanted: &str, names: &'a [String]) -> Option<&'a str> {
    let wanted = wanted.to_lowercase();
    let most = (wanted.chars().count() / 3).max(1);
    names
        .iter()
        .map(|name| (distance(&wanted, &name.to_lowercase()), name))
        .filter(|(d, _)| *d <= most)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name.as_str())
}

/// Levenshtein distance in characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// What the columns of one resource are missing.
#[derive(Debug, Default)]
pub(super) struct Missing {
    /// One per column that is not there, at the field (or policy) naming it.
    pub problems: Vec<Problem>,
    /// Indexes of the fields whose column is not there.
    pub fields: HashSet<usize>,
}

/// The columns `resource` names (its fields', its row policies') that `columns` lacks.
pub(super) fn missing(
    resource: &Resource,
    dialect: Dialect,
    columns: &[String],
    at: &str,
) -> Missing {
    let relation = match &resource.relation {
        Relation::Table(table) => format!("table `{table}`"),
        Relation::Query(_) => "the query's result".to_string(),
    };
    let mut out = Missing::default();
    let mut absent = |column: &str, location: String| -> bool {
        if columns.iter().any(|c| resolves(dialect, column, c)) {
            return false;
        }
        out.problems.push(Problem {
            location,
            message: absent_message(column, &relation, dialect, columns),
        });
        true
    };
    for (i, field) in resource.fields.iter().enumerate() {
        if absent(&field.column, format!("{at}.fields.{}", field.name)) {
            out.fields.insert(i);
        }
    }
    for (i, policy) in resource.access.policies.iter().enumerate() {
        let mut seen = HashSet::new();
        for column in policy.columns() {
            let of_field = resource.fields.iter().any(|f| f.column == column);
            if !of_field && seen.insert(column) {
                absent(column, format!("{at}.row_policies[{i}].condition"));
            }
        }
    }
    out
}

/// "column `Quantityy` is not in table `Order Details`; did you mean `Quantity`?"
pub(super) fn absent_message(
    column: &str,
    relation: &str,
    dialect: Dialect,
    columns: &[String],
) -> String {
    if let Some((qualifier, name)) = column.rsplit_once('.') {
        let near = closest(name, columns)
            .map(|near| format!(" (did you mean `{near}`?)"))
            .unwrap_or_default();
        return format!(
            "column `{column}` is read as column `{name}` of `{qualifier}` (a `.` in a \
             configured name is a qualifier), which is not in {relation}{near}; a column whose \
             own name contains `.` is served through a `query` resource that selects it under \
             another name"
        );
    }
    let mut message = format!("column `{column}` is not in {relation}");
    if let Some(near) = closest(column, columns) {
        message.push_str(&format!("; did you mean `{near}`?"));
        if near.eq_ignore_ascii_case(column) && dialect == Dialect::Postgres {
            message.push_str(" (PostgreSQL compares quoted names exactly)");
        }
    }
    if dialect == Dialect::Sqlite {
        message.push_str(" (SQLite would serve the name itself as text on every row)");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_the_way_each_database_resolves_quoted_names() {
        assert!(resolves(Dialect::Sqlite, "orderid", "OrderID"));
        assert!(!resolves(Dialect::Postgres, "orderid", "OrderID"));
        assert!(resolves(Dialect::Postgres, "OrderID", "OrderID"));
        assert!(resolves(Dialect::MySql, "STRASSE", "strasse"));
        assert!(resolves(Dialect::MySql, "STRÄSSE", "strässe"));
        assert!(resolves(Dialect::TSql, "o.OrderID", "ORDERID"));
    }

    #[test]
    fn a_slip_suggests_the_closest_column_and_a_stranger_nothing() {
        let names: Vec<String> = ["OrderID", "ProductID", "Quantity", "UnitPrice"]
            .map(String::from)
            .to_vec();
        assert_eq!(closest("Quantityy", &names), Some("Quantity"));
        assert_eq!(closest("orderid", &names), Some("OrderID"));
        assert_eq!(closest("OrderNo", &names), Some("OrderID"));
        assert_eq!(closest("Colour", &names), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn the_message_names_the_column_the_relation_and_the_suggestion() {
        let names = vec!["Quantity".to_string()];
        let message = absent_message(
            "Quantityy",
            "table `Order Details`",
            Dialect::Postgres,
            &names,
        );
        assert_eq!(
            message,
            "column `Quantityy` is not in table `Order Details`; did you mean `Quantity`?"
        );
        let message = absent_message("quantity", "table `T`", Dialect::Postgres, &names);
        assert!(message.ends_with("(PostgreSQL compares quoted names exactly)"));
        // A dotted name is a qualified one, even when a column is named exactly so.
        let names = vec!["Preis.Netto".to_string(), "OrderID".to_string()];
        let message = absent_message("Preis.Netto", "table `P`", Dialect::Sqlite, &names);
        assert!(
            message.starts_with(
                "column `Preis.Netto` is read as column `Netto` of `Preis` (a `.` in a \
                 configured name is a qualifier), which is not in table `P`; a column whose \
                 own name contains `.`"
            ),
            "{message}"
        );
        let message = absent_message("o.OrderNo", "the query's result", Dialect::Sqlite, &names);
        assert!(message.contains("(did you mean `OrderID`?)"), "{message}");
    }
}
