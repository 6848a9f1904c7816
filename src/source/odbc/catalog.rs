//! What an ODBC catalog says of tables and columns (SQLTables, SQLColumns, SQLPrimaryKeys,
//! SQLStatistics, SQLSpecialColumns): `introspect` writes a configuration from it, `serve` and
//! `check` read each served table's column widths, precisions and nullability from it. Catalog
//! results are read row by row (`SQLFetch` and `SQLGetData`), which every driver does, even one
//! that refuses the row array size of a block cursor (mdbtools).

use odbc_api::handles::{AnyHandle, Record, Statement, StatementImpl};
use odbc_api::{Connection, ConnectionOptions, Cursor, ResultSetMetadata};

/// Why the catalog could not be read: the driver's error, printed without its control
/// characters (`source::diagnostic`).
#[derive(Debug)]
pub struct CatalogError(pub odbc_api::Error);

impl std::fmt::Display for CatalogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::source::diagnostic::driver_text(&self.0))
    }
}

impl std::error::Error for CatalogError {}

impl From<odbc_api::Error> for CatalogError {
    fn from(error: odbc_api::Error) -> Self {
        CatalogError(error)
    }
}

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
    /// Unique indexes (SQLStatistics); most drivers list the primary key's among them.
    pub unique_indexes: Vec<UniqueIndex>,
    /// The driver's best row identifier (SQLSpecialColumns), as it answers it.
    pub row_identifier: Vec<RowIdentifierColumn>,
    /// Key lookups the driver refused, each with its error: a table whose key could not be
    /// looked up says why.
    pub key_lookup_errors: Vec<String>,
}

/// A unique index as SQLStatistics lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueIndex {
    /// Index name.
    pub name: String,
    /// Columns in index order (an expression index lists its expression, not a column).
    pub columns: Vec<String>,
    /// The index covers only the rows a condition selects (a partial index).
    pub filtered: bool,
}

/// One column of the best row identifier a driver offers (SQLSpecialColumns, SQL_BEST_ROWID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowIdentifierColumn {
    /// Column name.
    pub name: String,
    /// How long the identifier holds: `SQL_SCOPE_CURROW` 0, `SQL_SCOPE_TRANSACTION` 1,
    /// `SQL_SCOPE_SESSION` 2; `None` when the driver does not say.
    pub scope: Option<i16>,
    /// `SQL_PC_UNKNOWN` 0, `SQL_PC_NOT_PSEUDO` 1, `SQL_PC_PSEUDO` 2 (PostgreSQL's `ctid`);
    /// `None` when the driver does not say.
    pub pseudo: Option<i16>,
}

fn connect(connection_string: &str) -> Result<Connection<'static>, odbc_api::Error> {
    super::connect(connection_string, ConnectionOptions::default())
}

/// A catalog result's cells as text, by 1-based column, row by row.
struct TextRow(Vec<Option<String>>);

impl TextRow {
    /// The cell, `None` when NULL or absent.
    fn cell(&self, column: usize) -> Option<String> {
        self.0.get(column - 1).cloned().flatten()
    }

    fn text(&self, column: usize) -> String {
        self.cell(column).unwrap_or_default()
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

/// Reads every table and view of the connection's database with its columns and what may
/// key it: primary key, unique indexes, the driver's best row identifier.
pub fn read_tables(connection_string: &str) -> Result<Vec<TableInfo>, CatalogError> {
    let conn = connect(connection_string)?;
    // MariaDB's driver lists the tables of every database on the server (its catalogs):
    // only the connection's own are this source's.
    let current = conn.current_catalog().unwrap_or_default();
    let mut tables = Vec::new();
    // TABLE_CAT, TABLE_SCHEM, TABLE_NAME, TABLE_TYPE.
    for row in text_rows(conn.preallocate()?.into_tables_cursor("", "", "", "")?)? {
        let kind = row.text(4).to_ascii_uppercase();
        let name = row.text(3);
        if !(kind == "TABLE" || kind == "VIEW") || name.starts_with("sqlite_") {
            continue;
        }
        let catalog = row.text(1);
        if !current.is_empty() && !catalog.is_empty() && catalog != current {
            continue;
        }
        tables.push((catalog, row.text(2), name));
    }
    let partial = partial_indexes(&conn);
    tables
        .into_iter()
        .map(|(catalog, schema, name)| {
            let columns = columns(&conn, &catalog, &schema, &name)?;
            let primary_key = primary_key(&conn, &catalog, &schema, &name)?;
            // A driver that cannot list indexes or row identifiers leaves the table without
            // that kind of key; introspect says which lookup failed.
            let mut key_lookup_errors = Vec::new();
            let unique_indexes =
                unique_indexes(&conn, &catalog, &schema, &name).unwrap_or_else(|e| {
                    key_lookup_errors.push(format!("SQLStatistics: {}", one_line(&e)));
                    Vec::new()
                });
            let unique_indexes = unique_indexes
                .into_iter()
                .map(|mut index| {
                    index.filtered |= partial.iter().any(|(s, t, i)| {
                        (s.is_empty() || schema.is_empty() || *s == schema)
                            && *t == name
                            && *i == index.name
                    });
                    index
                })
                .collect();
            let row_identifier =
                row_identifier(&conn, &catalog, &schema, &name).unwrap_or_else(|e| {
                    key_lookup_errors.push(format!("SQLSpecialColumns: {}", one_line(&e)));
                    Vec::new()
                });
            Ok(TableInfo {
                schema,
                name,
                columns,
                primary_key,
                unique_indexes,
                row_identifier,
                key_lookup_errors,
            })
        })
        .collect()
}

/// The partial indexes of the database, as (schema, table, index). SQLStatistics should say so
/// in FILTER_CONDITION, but the PostgreSQL and SQLite drivers leave it empty, so those two
/// databases are asked directly; elsewhere (or when asking fails) the column is all there is.
fn partial_indexes(conn: &Connection<'_>) -> Vec<(String, String, String)> {
    let dbms = conn
        .database_management_system_name()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let query = if dbms.contains("postgres") {
        "SELECT n.nspname, t.relname, i.relname FROM pg_catalog.pg_index x \
         JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid \
         JOIN pg_catalog.pg_class t ON t.oid = x.indrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
         WHERE x.indpred IS NOT NULL"
    } else if dbms.contains("sqlite") {
        "SELECT '', m.name, l.name FROM sqlite_master m, pragma_index_list(m.name) l \
         WHERE m.type = 'table' AND l.partial = 1"
    } else {
        return Vec::new();
    };
    let rows = conn
        .execute(query, (), None)
        .and_then(|cursor| cursor.map_or(Ok(Vec::new()), text_rows));
    match rows {
        Ok(rows) => rows
            .into_iter()
            .map(|row| (row.text(1), row.text(2), row.text(3)))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %one_line(&e), "cannot list the partial indexes; trusting SQLStatistics");
            Vec::new()
        }
    }
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
    ) -> Result<Self, CatalogError> {
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
    pub fn columns(&self, table: &str) -> Result<Vec<ColumnInfo>, CatalogError> {
        let (schema, name) = table.rsplit_once('.').unwrap_or(("", table));
        let mut found = columns(&self.conn, "", schema, name)?;
        // A database that folds unquoted names (PostgreSQL) may keep the table in lower case.
        if found.is_empty() && name != name.to_ascii_lowercase() {
            found = columns(&self.conn, "", schema, &name.to_ascii_lowercase())?;
        }
        Ok(found)
    }

    /// The columns `sql` answers with, as the driver describes its result set (`check` runs a
    /// query resource's query as `SELECT * FROM (…) WHERE 1=0`): each name, and whether its
    /// type is a date or time type (`DataType::Date`, `Time`, `Timestamp`).
    pub fn result_columns(&self, sql: &str) -> Result<Vec<(String, bool)>, CatalogError> {
        use odbc_api::{DataType, ResultSetMetadata};
        let Some(mut cursor) = self.conn.execute(sql, (), None)? else {
            return Ok(Vec::new());
        };
        let names: Vec<String> = cursor.column_names()?.collect::<Result<_, _>>()?;
        let mut columns = Vec::with_capacity(names.len());
        for (i, name) in names.into_iter().enumerate() {
            let number = u16::try_from(i + 1).unwrap_or(u16::MAX);
            let dated = matches!(
                cursor.col_data_type(number)?,
                DataType::Date | DataType::Time { .. } | DataType::Timestamp { .. }
            );
            columns.push((name, dated));
        }
        Ok(columns)
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
    let (catalog_z, schema_z, name_z, column_z) = (
        Terminated::new(catalog),
        Terminated::new(schema),
        Terminated::new(name),
        Terminated::new(""),
    );
    let cursor = conn.preallocate()?.into_columns_cursor(
        catalog_z.text(),
        schema_z.text(),
        name_z.text(),
        column_z.text(),
    )?;
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
    let (catalog_z, schema_z, name_z) = (
        Terminated::new(catalog),
        Terminated::new(schema),
        Terminated::new(name),
    );
    let catalog = (!catalog.is_empty()).then_some(catalog_z.text());
    let schema = (!schema.is_empty()).then_some(schema_z.text());
    let mut keys: Vec<(i16, String)> = Vec::new();
    let cursor = match conn
        .preallocate()?
        .into_primary_keys_cursor(catalog, schema, name_z.text())
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

/// An index's columns with their ordinal positions.
type IndexColumns = Vec<(i64, String)>;

/// The unique indexes of one table, from SQLStatistics with `SQL_INDEX_UNIQUE`.
fn unique_indexes(
    conn: &Connection<'_>,
    catalog: &str,
    schema: &str,
    name: &str,
) -> Result<Vec<UniqueIndex>, odbc_api::Error> {
    // SQL_INDEX_UNIQUE = 0; SQL_QUICK = 0 (statistics are not needed, only the indexes).
    let rows = catalog_rows(
        conn,
        "SQLStatistics",
        // SAFETY: a statement handle of this connection, and names that live through the call.
        |statement, [catalog, schema, name]| unsafe {
            ffi::SQLStatistics(
                statement, catalog.0, catalog.1, schema.0, schema.1, name.0, name.1, 0, 0,
            )
        },
        [catalog, schema, name],
    )?;
    // Columns: 4 NON_UNIQUE, 6 INDEX_NAME, 7 TYPE (0 is the table's statistics row),
    // 8 ORDINAL_POSITION, 9 COLUMN_NAME, 13 FILTER_CONDITION.
    // Index name, (ordinal position, column) pairs, partial.
    let mut found: Vec<(String, IndexColumns, bool)> = Vec::new();
    for row in rows {
        let (Some(index), Some(column)) = (row.cell(6), row.cell(9)) else {
            continue;
        };
        if row.number::<i64>(7) == Some(0) || row.number::<i64>(4) == Some(1) {
            continue;
        }
        let filtered = row.cell(13).is_some_and(|f| !f.trim().is_empty());
        let position = row.number::<i64>(8).unwrap_or(0);
        match found.iter_mut().find(|(n, _, _)| *n == index) {
            Some((_, columns, partial)) => {
                columns.push((position, column));
                *partial |= filtered;
            }
            None => found.push((index, vec![(position, column)], filtered)),
        }
    }
    Ok(found
        .into_iter()
        .map(|(name, mut columns, filtered)| {
            columns.sort();
            UniqueIndex {
                name,
                columns: columns.into_iter().map(|(_, c)| c).collect(),
                filtered,
            }
        })
        .collect())
}

/// The driver's best row identifier of one table: SQLSpecialColumns with `SQL_BEST_ROWID`,
/// asked for the session scope and for columns that hold no NULL.
fn row_identifier(
    conn: &Connection<'_>,
    catalog: &str,
    schema: &str,
    name: &str,
) -> Result<Vec<RowIdentifierColumn>, odbc_api::Error> {
    // SQL_BEST_ROWID = 1, SQL_SCOPE_SESSION = 2, SQL_NO_NULLS = 0.
    let rows = catalog_rows(
        conn,
        "SQLSpecialColumns",
        // SAFETY: a statement handle of this connection, and names that live through the call.
        |statement, [catalog, schema, name]| unsafe {
            ffi::SQLSpecialColumns(
                statement, 1, catalog.0, catalog.1, schema.0, schema.1, name.0, name.1, 2, 0,
            )
        },
        [catalog, schema, name],
    )?;
    // Columns: 1 SCOPE, 2 COLUMN_NAME, 8 PSEUDO_COLUMN.
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(RowIdentifierColumn {
                name: row.cell(2)?,
                scope: row.number(1),
                pseudo: row.number(8),
            })
        })
        .collect())
}

/// A text argument of a catalog function: pointer and length, or null and 0 when empty.
type Argument = (*const u8, i16);

/// A name passed to a catalog function with its length and followed in memory by a NUL: some
/// drivers (mdbtools 1.0) read a name up to a NUL whatever length they are given, and then
/// read past it into whatever the allocator left there (tables "without columns").
struct Terminated(String);

impl Terminated {
    fn new(name: &str) -> Self {
        Self(format!("{name}\0"))
    }

    /// The name, without its NUL.
    fn text(&self) -> &str {
        &self.0[..self.0.len() - 1]
    }
}

/// Runs a catalog function odbc-api does not wrap on a fresh statement handle and reads its
/// result set as text. `call` gets the statement and the three names as (pointer, length),
/// narrow (UTF-8) as odbc-api passes them on this platform.
fn catalog_rows(
    conn: &Connection<'_>,
    function: &'static str,
    call: impl FnOnce(odbc_api::sys::HStmt, [Argument; 3]) -> odbc_api::sys::SqlReturn,
    names: [&str; 3],
) -> Result<Vec<TextRow>, odbc_api::Error> {
    let statement: StatementImpl<'_> = conn.preallocate()?.into_handle();
    let names = names.map(Terminated::new);
    let mut arguments = [(std::ptr::null(), 0i16); 3];
    for (argument, name) in arguments.iter_mut().zip(&names) {
        let name = name.text();
        if !name.is_empty() {
            let length = i16::try_from(name.len())
                .map_err(|_| odbc_api::Error::NoDiagnostics { function })?;
            *argument = (name.as_ptr(), length);
        }
    }
    // The names outlive the call: `names` borrows them for this whole function.
    let outcome = call(statement.as_sys(), arguments);
    match outcome {
        odbc_api::sys::SqlReturn::SUCCESS | odbc_api::sys::SqlReturn::SUCCESS_WITH_INFO => {}
        odbc_api::sys::SqlReturn::NO_DATA => return Ok(Vec::new()),
        _ => return Err(diagnostics(&statement, function)),
    }
    // SAFETY: a catalog function that succeeded leaves the statement positioned on its
    // result set, the state a cursor requires.
    let mut cursor = unsafe { odbc_api::CursorImpl::new(statement) };
    if cursor.num_result_cols()? == 0 {
        return Ok(Vec::new());
    }
    text_rows(cursor)
}

/// The error a failed catalog call left on its statement.
fn diagnostics(statement: &impl AnyHandle, function: &'static str) -> odbc_api::Error {
    let mut record = Record::with_capacity(512);
    if record.fill_from(statement, 1) {
        odbc_api::Error::Diagnostics { record, function }
    } else {
        odbc_api::Error::NoDiagnostics { function }
    }
}

fn one_line(error: &odbc_api::Error) -> String {
    crate::source::diagnostic::driver_text(error)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The two ODBC catalog functions odbc-api (29) and odbc-sys (0.31) do not declare, narrow as
/// the rest of the calls on this platform. The driver manager odbc-sys links provides them.
mod ffi {
    use odbc_api::sys::{HStmt, SqlReturn};

    #[link(name = "odbc")]
    extern "system" {
        /// SQLStatistics(StatementHandle, CatalogName, NameLength1, SchemaName, NameLength2,
        /// TableName, NameLength3, Unique, Reserved).
        #[allow(clippy::too_many_arguments)]
        pub fn SQLStatistics(
            statement: HStmt,
            catalog: *const u8,
            catalog_length: i16,
            schema: *const u8,
            schema_length: i16,
            table: *const u8,
            table_length: i16,
            unique: u16,
            reserved: u16,
        ) -> SqlReturn;

        /// SQLSpecialColumns(StatementHandle, IdentifierType, CatalogName, NameLength1,
        /// SchemaName, NameLength2, TableName, NameLength3, Scope, Nullable).
        #[allow(clippy::too_many_arguments)]
        pub fn SQLSpecialColumns(
            statement: HStmt,
            identifier_type: u16,
            catalog: *const u8,
            catalog_length: i16,
            schema: *const u8,
            schema_length: i16,
            table: *const u8,
            table_length: i16,
            scope: u16,
            nullable: u16,
        ) -> SqlReturn;
    }
}

/// A driver (or the driver manager for it) saying it has no such function: `IM001`.
fn not_implemented(error: &odbc_api::Error) -> bool {
    matches!(error, odbc_api::Error::Diagnostics { record, .. } if &record.state.0 == b"IM001")
}
