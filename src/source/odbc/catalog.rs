//! What an ODBC catalog says of tables and columns (SQLTables, SQLColumns, SQLPrimaryKeys):
//! `introspect` writes a configuration from it, `serve` and `check` read each served table's
//! column widths, precisions and nullability from it.

use odbc_api::{Connection, ConnectionOptions};

/// One column as the catalog describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// ODBC SQL data type code.
    pub data_type: i16,
    /// The database's own type name (`INTEGER`, `int unsigned`, `bpchar`).
    pub type_name: String,
    /// Declared size (characters or precision).
    pub size: Option<i32>,
    /// Decimal digits (scale).
    pub scale: Option<i16>,
    /// `Some(false)` for a NOT NULL column; `None` when the driver cannot tell.
    pub nullable: Option<bool>,
}

/// One table or view.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// Schema, when the database has them.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Columns in order.
    pub columns: Vec<ColumnInfo>,
    /// Primary key columns in key order.
    pub primary_key: Vec<String>,
}

fn connect(connection_string: &str) -> Result<Connection<'static>, odbc_api::Error> {
    odbc_api::environment()?
        .connect_with_connection_string(connection_string, ConnectionOptions::default())
}

/// Reads every table and view with its columns and primary key.
pub fn read_tables(connection_string: &str) -> Result<Vec<TableInfo>, odbc_api::Error> {
    let conn = connect(connection_string)?;
    let mut tables = Vec::new();
    for row in conn.tables("", "", "", "")? {
        let row = row?;
        let kind = text(row.table_type.as_bytes()).to_ascii_uppercase();
        let name = text(row.table.as_bytes());
        if !(kind == "TABLE" || kind == "VIEW") || name.starts_with("sqlite_") {
            continue;
        }
        tables.push((
            text(row.catalog.as_bytes()),
            text(row.schema.as_bytes()),
            name,
        ));
    }
    tables
        .into_iter()
        .map(|(catalog, schema, name)| {
            let columns = columns(&conn, &catalog, &schema, &name)?;
            let primary_key = primary_key(&conn, &catalog, &schema, &name)?;
            Ok(TableInfo {
                schema,
                name,
                columns,
                primary_key,
            })
        })
        .collect()
}

/// Reads the columns of one table, named as in configuration (`JOBS` or `dbo.JOBS`).
pub fn read_columns(
    connection_string: &str,
    table: &str,
) -> Result<Vec<ColumnInfo>, odbc_api::Error> {
    let conn = connect(connection_string)?;
    let (schema, name) = table.rsplit_once('.').unwrap_or(("", table));
    let found = columns(&conn, "", schema, name)?;
    // A database that folds unquoted names (PostgreSQL) may keep the table in lower case.
    if found.is_empty() && name != name.to_ascii_lowercase() {
        return columns(&conn, "", schema, &name.to_ascii_lowercase());
    }
    Ok(found)
}

fn columns(
    conn: &Connection<'_>,
    catalog: &str,
    schema: &str,
    name: &str,
) -> Result<Vec<ColumnInfo>, odbc_api::Error> {
    let mut columns = Vec::new();
    for row in conn.columns(catalog, schema, name, "")? {
        let row = row?;
        columns.push(ColumnInfo {
            name: text(row.column_name.as_bytes()),
            data_type: row.data_type,
            type_name: text(row.type_name.as_bytes()),
            size: row.column_size.as_opt().copied(),
            scale: row.decimal_digits.as_opt().copied(),
            // SQL_NO_NULLS = 0, SQL_NULLABLE = 1, SQL_NULLABLE_UNKNOWN = 2.
            nullable: match row.nullable {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            },
        });
    }
    Ok(columns)
}

fn primary_key(
    conn: &Connection<'_>,
    catalog: &str,
    schema: &str,
    name: &str,
) -> Result<Vec<String>, odbc_api::Error> {
    let catalog = (!catalog.is_empty()).then_some(catalog);
    let schema = (!schema.is_empty()).then_some(schema);
    let mut keys = Vec::new();
    for row in conn.primary_keys(catalog, schema, name)? {
        let row = row?;
        keys.push((row.key_seq, text(row.column.as_bytes())));
    }
    keys.sort();
    Ok(keys.into_iter().map(|(_, c)| c).collect())
}

fn text(bytes: Option<&[u8]>) -> String {
    bytes
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}
