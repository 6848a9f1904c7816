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
    /// The column has a default value.
    pub has_default: bool,
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

/// One connection that reads the columns of a source's tables.
pub struct ColumnReader {
    conn: Connection<'static>,
}

impl ColumnReader {
    /// Connects within `login_timeout`. A SQLite file that does not exist is not created:
    /// reading a catalog must leave no empty database behind.
    pub fn open(
        connection_string: &str,
        dialect: crate::source::Dialect,
        login_timeout: std::time::Duration,
    ) -> Result<Self, odbc_api::Error> {
        let no_create = dialect == crate::source::Dialect::Sqlite
            && !connection_string.to_ascii_lowercase().contains("nocreat");
        let connection_string = if no_create {
            format!("{};NoCreat=1", connection_string.trim_end_matches(';'))
        } else {
            connection_string.to_string()
        };
        let options = ConnectionOptions {
            login_timeout_sec: u32::try_from(login_timeout.as_secs()).ok(),
            ..ConnectionOptions::default()
        };
        let conn =
            odbc_api::environment()?.connect_with_connection_string(&connection_string, options)?;
        Ok(Self { conn })
    }

    /// The columns of one table, named as in configuration (`JOBS` or `dbo.JOBS`).
    pub fn columns(&self, table: &str) -> Result<Vec<ColumnInfo>, odbc_api::Error> {
        let (schema, name) = table.rsplit_once('.').unwrap_or(("", table));
        let mut found = columns(&self.conn, "", schema, name)?;
        // A database that folds unquoted names (PostgreSQL) may keep the table in lower case.
        if found.is_empty() && name != name.to_ascii_lowercase() {
            found = columns(&self.conn, "", schema, &name.to_ascii_lowercase())?;
        }
        Ok(found)
    }

    /// The names of the columns `sql` answers with, as the driver describes its result set
    /// (`check` runs a query resource's query as `SELECT * FROM (…) WHERE 1=0`).
    pub fn result_columns(&self, sql: &str) -> Result<Vec<String>, odbc_api::Error> {
        use odbc_api::ResultSetMetadata;
        let Some(mut cursor) = self.conn.execute(sql, (), None)? else {
            return Ok(Vec::new());
        };
        cursor.column_names()?.collect()
    }
}

/// The columns of the table named `name` exactly, of one schema. Catalog arguments are
/// patterns (`_` matches any character), so `JOB_LINES` would also bring `JOBXLINES`.
fn columns(
    conn: &Connection<'_>,
    catalog: &str,
    schema: &str,
    name: &str,
) -> Result<Vec<ColumnInfo>, odbc_api::Error> {
    let mut first_schema: Option<String> = None;
    let mut out = Vec::new();
    for row in conn.columns(catalog, schema, name, "")? {
        let row = row?;
        if !text(row.table.as_bytes()).eq_ignore_ascii_case(name) {
            continue;
        }
        let in_schema = text(row.schema.as_bytes());
        if first_schema.get_or_insert_with(|| in_schema.clone()) != &in_schema {
            continue;
        }
        out.push(column_info(&row));
    }
    Ok(out)
}

fn column_info(row: &odbc_api::ColumnsRow) -> ColumnInfo {
    ColumnInfo {
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
        // MariaDB's driver spells "no default" as the text NULL.
        has_default: row
            .column_default
            .as_bytes()
            .is_some_and(|d| !d.is_empty() && !d.eq_ignore_ascii_case(b"NULL")),
    }
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
