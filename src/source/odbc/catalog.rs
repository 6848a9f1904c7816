//! What an ODBC catalog says of tables and columns (SQLTables, SQLColumns, SQLPrimaryKeys):
//! `introspect` writes a configuration from it, `serve` and `check` read each served table's
//! column widths, precisions and nullability from it. Catalog results are read row by row
//! (`SQLFetch` and `SQLGetData`), which every driver does, even one that refuses the row array
//! size of a block cursor (mdbtools).

use odbc_api::{Connection, ConnectionOptions, Cursor};

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
    super::connect(connection_string, ConnectionOptions::default())
}

/// A catalog result's cells as text, by 1-based column, row by row.
struct TextRow(Vec<Option<String>>);

impl TextRow {
    fn text(&self, column: usize) -> String {
        self.0
            .get(column - 1)
            .cloned()
            .flatten()
            .unwrap_or_default()
    }

    fn number<T: std::str::FromStr>(&self, column: usize) -> Option<T> {
        self.0.get(column - 1)?.as_deref()?.trim().parse().ok()
    }
}

/// Every row of `cursor`, fetched one at a time.
fn text_rows(mut cursor: impl Cursor) -> Result<Vec<TextRow>, odbc_api::Error> {
    let columns = u16::try_from(cursor.num_result_cols()?).unwrap_or(0);
    let mut rows = Vec::new();
    let mut buffer = Vec::new();
    while let Some(mut row) = cursor.next_row()? {
        let mut cells = Vec::with_capacity(usize::from(columns));
        for c in 1..=columns {
            buffer.clear();
            let present = row.get_text(c, &mut buffer)?;
            cells.push(present.then(|| String::from_utf8_lossy(&buffer).into_owned()));
        }
        rows.push(TextRow(cells));
    }
    Ok(rows)
}

/// Reads every table and view with its columns and primary key.
pub fn read_tables(connection_string: &str) -> Result<Vec<TableInfo>, odbc_api::Error> {
    let conn = connect(connection_string)?;
    let mut tables = Vec::new();
    // TABLE_CAT, TABLE_SCHEM, TABLE_NAME, TABLE_TYPE.
    for row in text_rows(conn.preallocate()?.into_tables_cursor("", "", "", "")?)? {
        let kind = row.text(4).to_ascii_uppercase();
        let name = row.text(3);
        if !(kind == "TABLE" || kind == "VIEW") || name.starts_with("sqlite_") {
            continue;
        }
        tables.push((row.text(1), row.text(2), name));
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
        let conn = super::connect(&connection_string, options)?;
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
    let cursor = conn
        .preallocate()?
        .into_columns_cursor(catalog, schema, name, "")?;
    for row in text_rows(cursor)? {
        if !row.text(3).eq_ignore_ascii_case(name) {
            continue;
        }
        let in_schema = row.text(2);
        if first_schema.get_or_insert_with(|| in_schema.clone()) != &in_schema {
            continue;
        }
        out.push(column_info(&row));
    }
    Ok(out)
}

/// A row of `SQLColumns`: COLUMN_NAME (4), DATA_TYPE (5), TYPE_NAME (6), COLUMN_SIZE (7),
/// DECIMAL_DIGITS (9), NULLABLE (11), COLUMN_DEF (13).
fn column_info(row: &TextRow) -> ColumnInfo {
    let default = row.text(13);
    ColumnInfo {
        name: row.text(4),
        data_type: row.number(5).unwrap_or(0),
        type_name: row.text(6),
        size: row.number(7),
        scale: row.number(9),
        // SQL_NO_NULLS = 0, SQL_NULLABLE = 1, SQL_NULLABLE_UNKNOWN = 2.
        nullable: match row.number::<i16>(11) {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        // MariaDB's driver spells "no default" as the text NULL.
        has_default: !default.is_empty() && !default.eq_ignore_ascii_case("NULL"),
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
    let mut keys: Vec<(i16, String)> = Vec::new();
    let cursor = match conn
        .preallocate()?
        .into_primary_keys_cursor(catalog, schema, name)
    {
        Ok(cursor) => cursor,
        // The driver has no SQLPrimaryKeys (mdbtools): it names no key.
        Err(e) if not_implemented(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    // COLUMN_NAME (4), KEY_SEQ (5).
    for row in text_rows(cursor)? {
        keys.push((row.number(5).unwrap_or(0), row.text(4)));
    }
    keys.sort();
    Ok(keys.into_iter().map(|(_, c)| c).collect())
}

/// A driver (or the driver manager for it) saying it has no such function: `IM001`.
fn not_implemented(error: &odbc_api::Error) -> bool {
    matches!(error, odbc_api::Error::Diagnostics { record, .. } if &record.state.0 == b"IM001")
}
