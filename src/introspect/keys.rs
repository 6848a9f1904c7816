//! The key introspect proposes for a table: its primary key, else a unique index whose
//! columns are all NOT NULL, else the driver's best row identifier when that is a real column
//! that lasts; else none, with the reason each kind was refused. A key that is not unique
//! makes keyset paging skip or repeat rows, so nothing weaker stands in.

use crate::source::odbc::catalog::{ColumnInfo, TableInfo};

/// `SQL_PC_PSEUDO`: the driver's row identifier is no column of the table (`ctid`, `ROWID`).
const PSEUDO_COLUMN: i16 = 2;
/// `SQL_SCOPE_SESSION`: the identifier holds for the rest of the session, the longest scope
/// ODBC knows; narrower ones (the current row, the transaction) do not hold between pages.
const SCOPE_SESSION: i16 = 2;

/// A table's key and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChoice {
    /// The primary key (SQLPrimaryKeys).
    Primary(Vec<String>),
    /// A unique index over NOT NULL columns (SQLStatistics).
    UniqueIndex {
        /// Index name.
        name: String,
        /// Its columns, in index order.
        columns: Vec<String>,
    },
    /// The driver's best row identifier (SQLSpecialColumns): real NOT NULL columns it vouches
    /// for for a whole session.
    RowIdentifier(Vec<String>),
    /// No key; why each kind was refused.
    Missing(Vec<String>),
}

impl KeyChoice {
    /// The key's columns, as the catalog names them; `None` when there is no key.
    pub fn columns(&self) -> Option<&[String]> {
        match self {
            KeyChoice::Primary(columns)
            | KeyChoice::UniqueIndex { columns, .. }
            | KeyChoice::RowIdentifier(columns) => Some(columns),
            KeyChoice::Missing(_) => None,
        }
    }
}

/// Chooses the key of `table`; `served` says whether a column (by catalog name) is of a type
/// Portico serves, since a key column must be a field.
pub fn choose_key(table: &TableInfo, served: &dyn Fn(&str) -> bool) -> KeyChoice {
    let mut refused = Vec::new();
    let column = |name: &str| table.columns.iter().find(|c| c.name == name);

    match table.primary_key.iter().find(|c| !served(c)) {
        _ if table.primary_key.is_empty() => refused.push("no primary key".to_string()),
        Some(unserved) => refused.push(format!(
            "the primary key's column `{unserved}` is of a type Portico does not serve"
        )),
        None => return KeyChoice::Primary(table.primary_key.clone()),
    }

    let mut usable: Vec<(&String, &Vec<String>)> = Vec::new();
    for index in &table.unique_indexes {
        let flaw = if index.filtered {
            Some("covers only the rows its condition selects".to_string())
        } else {
            index
                .columns
                .iter()
                .find_map(|name| column_flaw(column(name), name, served))
        };
        match flaw {
            Some(flaw) => refused.push(format!("unique index `{}`: {flaw}", index.name)),
            None => usable.push((&index.name, &index.columns)),
        }
    }
    if table.unique_indexes.is_empty() {
        refused.push("no unique index".to_string());
    }
    // The narrowest index makes the shortest URLs; the name decides ties, so runs agree.
    if let Some((name, columns)) = usable.into_iter().min_by_key(|(n, c)| (c.len(), *n)) {
        return KeyChoice::UniqueIndex {
            name: name.clone(),
            columns: columns.clone(),
        };
    }

    let identifier = &table.row_identifier;
    // SQLite's driver offers a unique index as the row identifier, partial ones included.
    let names: Vec<&str> = identifier.iter().map(|p| p.name.as_str()).collect();
    let partial = table
        .unique_indexes
        .iter()
        .find(|index| index.filtered && index.columns == names);
    let flaw = identifier.iter().find_map(|part| {
        if let Some(index) = partial {
            return Some(format!(
                "it is the partial unique index \"{}\", unique only among the rows its \
                 condition selects",
                index.name
            ));
        }
        if part.pseudo == Some(PSEUDO_COLUMN) || column(&part.name).is_none() {
            Some(format!(
                "`{}` is a pseudo-column, not a column of the table: it changes when the \
                 database moves the row",
                part.name
            ))
        } else if part.scope != Some(SCOPE_SESSION) {
            Some(format!(
                "`{}` holds only {}",
                part.name,
                match part.scope {
                    Some(0) => "while the cursor is on the row",
                    Some(1) => "for one transaction",
                    _ => "for as long as the driver does not say",
                }
            ))
        } else {
            column_flaw(column(&part.name), &part.name, served)
        }
    });
    match flaw {
        _ if identifier.is_empty() => {
            refused.push("the driver offers no row identifier".to_string());
        }
        Some(flaw) => refused.push(format!("the driver's row identifier: {flaw}")),
        None => {
            return KeyChoice::RowIdentifier(identifier.iter().map(|p| p.name.clone()).collect())
        }
    }
    refused.extend(
        table
            .key_lookup_errors
            .iter()
            .map(|e| format!("the driver could not answer {e}")),
    );
    KeyChoice::Missing(refused)
}

/// Why a column cannot be part of a key: absent from the table, possibly NULL (a unique
/// index admits many NULLs; a driver that cannot tell proves nothing), or not served.
fn column_flaw(
    column: Option<&ColumnInfo>,
    name: &str,
    served: &dyn Fn(&str) -> bool,
) -> Option<String> {
    match column {
        None => Some(format!(
            "`{name}` is not a column of the table (an expression?)"
        )),
        Some(c) if c.nullable != Some(false) => Some(format!("`{name}` may be NULL")),
        Some(_) if !served(name) => Some(format!("`{name}` is of a type Portico does not serve")),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::odbc::catalog::{RowIdentifierColumn, UniqueIndex};

    fn column(name: &str, nullable: Option<bool>) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            data_type: 4,
            type_name: "integer".into(),
            size: None,
            scale: None,
            nullable,
            has_default: false,
        }
    }

    fn index(name: &str, columns: &[&str]) -> UniqueIndex {
        UniqueIndex {
            name: name.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            filtered: false,
        }
    }

    fn rowid(name: &str, scope: i16, pseudo: i16) -> RowIdentifierColumn {
        RowIdentifierColumn {
            name: name.into(),
            scope: Some(scope),
            pseudo: Some(pseudo),
        }
    }

    /// `Order Details` as the SQLite driver describes it: no primary key, a unique index on
    /// (OrderID, ProductID), both NOT NULL; `Note` may be NULL, `Photo` is binary.
    fn order_details() -> TableInfo {
        TableInfo {
            schema: String::new(),
            name: "Order Details".into(),
            columns: vec![
                column("OrderID", Some(false)),
                column("ProductID", Some(false)),
                column("Note", Some(true)),
                column("Photo", Some(false)),
            ],
            primary_key: Vec::new(),
            unique_indexes: Vec::new(),
            row_identifier: Vec::new(),
            key_lookup_errors: Vec::new(),
        }
    }

    fn all_served(name: &str) -> bool {
        name != "Photo"
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn the_primary_key_comes_first() {
        let mut table = order_details();
        table.primary_key = strings(&["OrderID"]);
        table.unique_indexes = vec![index("ux", &["ProductID"])];
        assert_eq!(
            choose_key(&table, &all_served),
            KeyChoice::Primary(strings(&["OrderID"]))
        );
    }

    #[test]
    fn a_unique_index_over_not_null_columns_is_a_key() {
        let mut table = order_details();
        table.unique_indexes = vec![
            index("wide", &["OrderID", "ProductID", "Note"]),
            index("Order Details Key", &["OrderID", "ProductID"]),
            index("by_note", &["Note"]),
        ];
        table.row_identifier = vec![rowid("OrderID", 2, 1)];
        assert_eq!(
            choose_key(&table, &all_served),
            KeyChoice::UniqueIndex {
                name: "Order Details Key".into(),
                columns: strings(&["OrderID", "ProductID"]),
            }
        );
    }

    #[test]
    fn nullable_partial_and_expression_indexes_are_refused() {
        let mut table = order_details();
        let mut partial = index("partial", &["OrderID"]);
        partial.filtered = true;
        table.unique_indexes = vec![
            index("by_note", &["Note"]),
            partial,
            index("by_expression", &["lower(Note)"]),
            index("by_photo", &["Photo"]),
        ];
        let KeyChoice::Missing(reasons) = choose_key(&table, &all_served) else {
            panic!("no key")
        };
        let reasons = reasons.join("; ");
        for expected in [
            "no primary key",
            "unique index `by_note`: `Note` may be NULL",
            "unique index `partial`: covers only the rows",
            "unique index `by_expression`: `lower(Note)` is not a column",
            "unique index `by_photo`: `Photo` is of a type Portico does not serve",
            "the driver offers no row identifier",
        ] {
            assert!(reasons.contains(expected), "{expected} in {reasons}");
        }
    }

    #[test]
    fn a_nullability_the_driver_cannot_tell_proves_nothing() {
        let mut table = order_details();
        table.columns[0].nullable = None;
        table.unique_indexes = vec![index("ux", &["OrderID"])];
        assert!(matches!(
            choose_key(&table, &all_served),
            KeyChoice::Missing(_)
        ));
    }

    #[test]
    fn a_row_identifier_must_be_a_real_column_that_lasts_the_session() {
        let mut table = order_details();
        table.row_identifier = vec![rowid("OrderID", 2, 1), rowid("ProductID", 2, 1)];
        assert_eq!(
            choose_key(&table, &all_served),
            KeyChoice::RowIdentifier(strings(&["OrderID", "ProductID"]))
        );
        // SQLite's _ROWID_, PostgreSQL's ctid: pseudo-columns, never listed by SQLColumns.
        for (identifier, reason) in [
            (rowid("_ROWID_", 2, 2), "`_ROWID_` is a pseudo-column"),
            (rowid("ctid", 2, 0), "`ctid` is a pseudo-column"),
            (rowid("OrderID", 0, 1), "while the cursor is on the row"),
            (rowid("OrderID", 1, 1), "for one transaction"),
            (rowid("Note", 2, 1), "`Note` may be NULL"),
        ] {
            table.row_identifier = vec![identifier];
            let KeyChoice::Missing(reasons) = choose_key(&table, &all_served) else {
                panic!("{reason}: no key")
            };
            assert!(reasons.join("; ").contains(reason), "{reason}: {reasons:?}");
        }
    }

    #[test]
    fn a_lookup_the_driver_refused_is_named() {
        let mut table = order_details();
        table.key_lookup_errors = vec!["SQLStatistics: HYC00 optional feature".into()];
        let KeyChoice::Missing(reasons) = choose_key(&table, &all_served) else {
            panic!("no key")
        };
        assert!(reasons.iter().any(|r| r.contains("SQLStatistics: HYC00")));
    }
}
