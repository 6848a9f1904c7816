//! Whether a resource's key is a key in the data: no two rows share its values
//! (`GROUP BY key HAVING COUNT(*) > 1`) and none holds NULL, each probe bounded to a few rows.
//! Where the database cannot run those probes (a weak driver), the key columns are read in
//! key order through `Source::select` (a snapshot answers from memory) and counted here,
//! up to [`READ_KEYS`] rows.

use std::collections::HashMap;

use crate::catalog::{Field, Resource};
use crate::config::Problem;
use crate::source::select::{OrderTerm, Select};
use crate::source::{ColumnType, Dialect, Source, SourceError, Value};

/// Most duplicate keys (and NULL-key rows) read; the examples are the smallest of them.
const SEEN: usize = 50;
/// Examples shown in a message.
const EXAMPLES: usize = 3;
/// Most rows whose keys are read and counted when the database cannot group them; a larger
/// table is proven over its first rows in key order only, and a warning says so.
pub(super) const READ_KEYS: usize = 100_000;

/// What the key probes found.
#[derive(Debug, Default)]
pub(super) struct Proof {
    /// Duplicate or NULL keys.
    pub problems: Vec<Problem>,
    /// What was left unproven.
    pub warnings: Vec<Problem>,
}

/// Why a key could not be proven at all.
#[derive(Debug)]
pub(super) struct Unproven {
    /// Why the database refused the grouping probes.
    pub grouped: SourceError,
    /// Why reading the keys in order failed too (none: it was not tried, the source is out).
    pub ordered: Option<SourceError>,
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

/// The key's problems in the data: duplicate values, NULLs. The database groups the keys;
/// when it cannot, they are read in key order and counted here.
pub(super) async fn probe(
    source: &dyn Source,
    resource: &Resource,
    at: &str,
) -> Result<Proof, Unproven> {
    let key: Vec<&Field> = resource.key.iter().map(|&i| &resource.fields[i]).collect();
    let grouped = match grouped(source, resource, &key, at).await {
        Ok(problems) => {
            return Ok(Proof {
                problems,
                warnings: Vec::new(),
            })
        }
        Err(e) => e,
    };
    if grouped.is_outage() {
        return Err(Unproven {
            grouped,
            ordered: None,
        });
    }
    tracing::info!(source = source.name(), resource = %resource.name, error = %grouped, "the database cannot group the key; reading the keys in order instead");
    read_in_order(source, resource, &key, at)
        .await
        .map_err(|ordered| Unproven {
            grouped,
            ordered: Some(ordered),
        })
}

/// How the key is named in a message.
fn named(key: &[&Field]) -> String {
    key.iter()
        .map(|f| format!("`{}` (column `{}`)", f.name, f.column))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key's problems, found by the database: `GROUP BY key HAVING COUNT(*) > 1`, and
/// `WHERE key IS NULL`.
async fn grouped(
    source: &dyn Source,
    resource: &Resource,
    key: &[&Field],
    at: &str,
) -> Result<Vec<Problem>, SourceError> {
    let dialect = source.dialect();
    let quoted: Vec<String> = key.iter().map(|f| dialect.quote(&f.column)).collect();
    let list = quoted.join(", ");
    let named = named(key);
    let relation = dialect.from_item(&resource.relation, "portico_q");
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
        .query(dialect.select_text(
            &format!(
                "{list}, COUNT(*) FROM {relation} WHERE {not_null} GROUP BY {list} \
                 HAVING COUNT(*) > 1{order}"
            ),
            SEEN,
            columns,
        ))
        .await?;
    if !duplicates.is_empty() {
        let examples: Vec<(&[Value], String)> = duplicates
            .iter()
            .take(EXAMPLES)
            .map(|row| {
                let (count, values) = row.split_last().unwrap_or((&Value::Null, &[]));
                (values, shown(count))
            })
            .collect();
        problems.push(Problem {
            location: location.clone(),
            message: not_unique(&named, &count_seen(duplicates.len()), &examples),
        });
    }

    let any_null = quoted
        .iter()
        .map(|c| format!("{c} IS NULL"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let nulls = source
        .query(dialect.select_text(
            &format!("{} FROM {relation} WHERE {any_null}", quoted[0]),
            SEEN,
            vec![key[0].column_type],
        ))
        .await?;
    if !nulls.is_empty() {
        problems.push(Problem {
            location,
            message: null_keys(&named, &count_seen(nulls.len())),
        });
    }
    Ok(problems)
}

/// The message for duplicate keys: how many, and examples of each with its row count.
fn not_unique(named: &str, how_many: &str, examples: &[(&[Value], String)]) -> String {
    let examples = examples
        .iter()
        .map(|(values, count)| {
            let values: Vec<String> = values.iter().map(shown).collect();
            let value = match values.as_slice() {
                [one] => one.clone(),
                many => format!("({})", many.join(", ")),
            };
            format!("`{value}` in {count} rows")
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "the key {named} is not unique in the data: {how_many} key value(s) occur in more \
         than one row (e.g. {examples}); a lookup by key answers one of them and keyset \
         pages skip rows. Key on columns that are unique together (a primary key or a \
         unique index)"
    )
}

/// The message for rows whose key is NULL.
fn null_keys(named: &str, how_many: &str) -> String {
    format!(
        "the key {named} is NULL in {how_many} row(s): such a row cannot be looked up by key \
         and breaks keyset paging"
    )
}

/// The key's problems, found by reading the key columns of up to [`READ_KEYS`] rows in key
/// order through `Source::select` (which a snapshot answers from memory, and a driver that
/// sorts but cannot group runs) and counting equal keys and NULLs here.
async fn read_in_order(
    source: &dyn Source,
    resource: &Resource,
    key: &[&Field],
    at: &str,
) -> Result<Proof, SourceError> {
    let select = Select {
        relation: resource.relation.clone(),
        columns: key
            .iter()
            .map(|f| (f.column.clone(), f.column_type))
            .collect(),
        filter: Vec::new(),
        order: key
            .iter()
            .map(|f| OrderTerm {
                column: f.column.clone(),
                column_type: f.column_type,
                descending: false,
                nullable: false,
            })
            .collect(),
        after: None,
        limit: READ_KEYS + 1,
        per_group: None,
    };
    let mut rows = source.select(select).await?;
    let beyond = rows.len() > READ_KEYS;
    rows.truncate(READ_KEYS);
    let counted = count_keys(&rows);
    let named = named(key);
    let location = format!("{at}.key");
    let mut proof = Proof::default();
    // Past the bound, the last key read may have more rows unread: "at least".
    let at_least = |n: usize| {
        if beyond {
            format!("at least {n}")
        } else {
            n.to_string()
        }
    };
    if !counted.duplicates.is_empty() {
        let examples: Vec<(&[Value], String)> = counted
            .duplicates
            .iter()
            .take(EXAMPLES)
            .map(|(values, count)| (values.as_slice(), count.to_string()))
            .collect();
        proof.problems.push(Problem {
            location: location.clone(),
            message: not_unique(&named, &at_least(counted.duplicates.len()), &examples),
        });
    }
    if counted.nulls > 0 {
        proof.problems.push(Problem {
            location: location.clone(),
            message: null_keys(&named, &at_least(counted.nulls)),
        });
    }
    if beyond {
        proof.warnings.push(Problem {
            location,
            message: format!(
                "the database cannot group the key, so its first {READ_KEYS} rows in key order \
                 were read and counted instead; the rest of the table was not: the key is not \
                 proven unique beyond them (skip with --skip-key-probe {})",
                resource.name
            ),
        });
    }
    Ok(proof)
}

/// Keys counted in rows read in key order.
#[derive(Debug, Default, PartialEq)]
struct Counted {
    /// Each key value held by more than one row, with its row count, in the order read.
    duplicates: Vec<(Vec<Value>, usize)>,
    /// Rows whose key holds NULL.
    nulls: usize,
}

/// Counts equal keys and NULL keys in `rows` (each a key's values). Equal keys are counted
/// wherever they are, not only side by side: a database's collation may sort unequal texts
/// between equal ones.
fn count_keys(rows: &[Vec<Value>]) -> Counted {
    let mut counted = Counted::default();
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    let mut order: Vec<&Vec<Value>> = Vec::new();
    for row in rows {
        if row.contains(&Value::Null) {
            counted.nulls += 1;
            continue;
        }
        // Values of one column share a type, so their JSON is a faithful identity.
        let identity = serde_json::to_string(row).unwrap_or_default();
        let next = order.len();
        let entry = seen.entry(identity).or_insert((next, 0));
        if entry.0 == next {
            order.push(row);
        }
        entry.1 += 1;
    }
    let mut duplicates: Vec<(usize, usize)> =
        seen.into_values().filter(|(_, count)| *count > 1).collect();
    duplicates.sort_unstable();
    counted.duplicates = duplicates
        .into_iter()
        .map(|(first, count)| (order[first].clone(), count))
        .collect();
    counted
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
    use crate::source::select::Relation;

    #[test]
    fn probes_are_bounded_in_each_dialect() {
        let body = "\"K\", COUNT(*) FROM \"T\" GROUP BY \"K\" HAVING COUNT(*) > 1";
        let columns = || vec![ColumnType::Integer, ColumnType::Integer];
        assert!(Dialect::Sqlite
            .select_text(body, 50, columns())
            .sql
            .ends_with("HAVING COUNT(*) > 1 LIMIT 50"));
        assert!(Dialect::TSql
            .select_text(body, 50, columns())
            .sql
            .starts_with("SELECT TOP (50) "));
        let generic = Dialect::Generic.select_text(body, 50, columns());
        assert!(!generic.sql.contains("LIMIT"));
        assert_eq!(generic.max_rows, 50);
        assert_eq!(
            Dialect::MySql.from_item(&Relation::Table("Order Details".into()), "portico_q"),
            "`Order Details`"
        );
        assert_eq!(
            Dialect::Postgres.from_item(&Relation::Query("SELECT 1 AS a".into()), "portico_q"),
            "(SELECT 1 AS a) portico_q"
        );
        assert_eq!(count_seen(3), "3");
        assert_eq!(count_seen(50), "at least 50");
    }

    #[test]
    fn keys_read_in_order_are_counted_wherever_equal_ones_are() {
        let text = |s: &str| Value::Text(s.as_bytes().to_vec());
        let rows = vec![
            vec![Value::Null, Value::Int(1)],
            vec![text("a"), Value::Int(1)],
            vec![text("A"), Value::Int(1)],
            vec![text("a"), Value::Int(1)],
            vec![text("b"), Value::Int(1)],
            vec![text("b"), Value::Int(2)],
            vec![text("c"), Value::Null],
            vec![text("d"), Value::Int(4)],
            vec![text("d"), Value::Int(4)],
            vec![text("d"), Value::Int(4)],
        ];
        assert_eq!(
            count_keys(&rows),
            Counted {
                duplicates: vec![
                    (vec![text("a"), Value::Int(1)], 2),
                    (vec![text("d"), Value::Int(4)], 3),
                ],
                nulls: 2,
            }
        );
        assert_eq!(count_keys(&[]), Counted::default());
    }
}
