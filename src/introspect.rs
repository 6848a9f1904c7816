//! `portico introspect`: a starter configuration written from the ODBC catalog.

use std::fmt::Write as _;

use odbc_api::{Connection, ConnectionOptions};

/// One column as the catalog describes it.
#[derive(Debug, Clone)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// ODBC SQL data type code.
    pub data_type: i16,
    /// Declared size (characters or precision).
    pub size: Option<i32>,
    /// Decimal digits (scale).
    pub scale: Option<i16>,
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

/// Reads tables, columns and primary keys through ODBC.
pub fn read_catalog(connection_string: &str) -> Result<Vec<TableInfo>, odbc_api::Error> {
    let env = odbc_api::environment()?;
    let conn =
        env.connect_with_connection_string(connection_string, ConnectionOptions::default())?;
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
        .map(|(catalog, schema, name)| describe(&conn, &catalog, &schema, name))
        .collect()
}

fn describe(
    conn: &Connection<'_>,
    catalog: &str,
    schema: &str,
    name: String,
) -> Result<TableInfo, odbc_api::Error> {
    let mut columns = Vec::new();
    for row in conn.columns(catalog, schema, &name, "")? {
        let row = row?;
        columns.push(ColumnInfo {
            name: text(row.column_name.as_bytes()),
            data_type: row.data_type,
            size: row.column_size.as_opt().copied(),
            scale: row.decimal_digits.as_opt().copied(),
        });
    }
    let catalog_opt = (!catalog.is_empty()).then_some(catalog);
    let schema_opt = (!schema.is_empty()).then_some(schema);
    let mut keys = Vec::new();
    for row in conn.primary_keys(catalog_opt, schema_opt, &name)? {
        let row = row?;
        keys.push((row.key_seq, text(row.column.as_bytes())));
    }
    keys.sort();
    Ok(TableInfo {
        schema: schema.to_string(),
        name,
        columns,
        primary_key: keys.into_iter().map(|(_, c)| c).collect(),
    })
}

fn text(bytes: Option<&[u8]>) -> String {
    bytes
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// API type and column type for an ODBC SQL type code; `None` for types Portico cannot serve.
fn field_types(column: &ColumnInfo) -> Option<(&'static str, String)> {
    let size = column.size.unwrap_or(0);
    Some(match column.data_type {
        1 | -8 if size > 0 => ("string", format!("char({size})")),
        1 | -8 | 12 | -1 | -9 | -10 => ("string", "varchar".into()),
        2 | 3 => ("decimal", "decimal".into()),
        4 | 5 | -5 | -6 => ("integer", "integer".into()),
        6..=8 => ("number", "float".into()),
        9 | 91 => ("date", "date".into()),
        11 | 93 => ("datetime", "timestamp".into()),
        -7 => ("boolean", "bit".into()),
        _ => return None,
    })
}

/// An API name for a legacy identifier: lower case, `_` for anything else.
fn api_name(identifier: &str, url: bool) -> String {
    let mut name: String = identifier
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, if url { 't' } else { 'f' });
    }
    if crate::catalog::RESERVED.contains(&name.as_str()) {
        name.push('_');
    }
    name
}

fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// Renders a full configuration: the source as written in the original file, then one
/// resource per table under `version`.
pub fn render(
    source_name: &str,
    source_table: &toml::Table,
    version: &str,
    tables: &[TableInfo],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by `portico introspect` from source `{source_name}`."
    );
    let _ = writeln!(
        out,
        "# Review names, keys and transforms (trim, date formats, codes) before publishing.\n"
    );
    let mut sources = toml::Table::new();
    sources.insert(
        source_name.to_string(),
        toml::Value::Table(source_table.clone()),
    );
    let mut root = toml::Table::new();
    root.insert("sources".into(), toml::Value::Table(sources));
    out.push_str(&toml::to_string(&root).unwrap_or_default());
    for table in tables {
        let served: Vec<(String, &ColumnInfo, (&str, String))> = table
            .columns
            .iter()
            .filter_map(|c| field_types(c).map(|t| (api_name(&c.name, false), c, t)))
            .collect();
        if served.is_empty() {
            let _ = writeln!(
                out,
                "\n# {}: no column of a type Portico can serve",
                table.name
            );
            continue;
        }
        let key_of = |column: &str| {
            served
                .iter()
                .find(|(_, c, _)| c.name == column)
                .map(|(n, _, _)| n.clone())
        };
        let mut key: Vec<String> = table.primary_key.iter().filter_map(|c| key_of(c)).collect();
        let _ = writeln!(out);
        if key.is_empty() || key.len() != table.primary_key.len() {
            let _ = writeln!(
                out,
                "# {}: no usable primary key; the first column stands in. Choose the real key.",
                table.name
            );
            key = vec![served[0].0.clone()];
        }
        let qualified = match table.schema.as_str() {
            "" | "public" | "dbo" | "main" => table.name.clone(),
            schema => format!("{schema}.{}", table.name),
        };
        let resource = api_name(&table.name, true);
        let _ = writeln!(out, "[versions.{version}.resources.{resource}]");
        let _ = writeln!(out, "source = {}", quoted(source_name));
        let _ = writeln!(out, "table = {}", quoted(&qualified));
        let keys: Vec<String> = key.iter().map(|k| quoted(k)).collect();
        let _ = writeln!(out, "key = [{}]", keys.join(", "));
        let _ = writeln!(
            out,
            "# Served without a token: configure [auth] and replace this with read_scope = \"{resource}:read\" before exposing it."
        );
        let _ = writeln!(out, "anonymous = true");
        let _ = writeln!(out, "\n[versions.{version}.resources.{resource}.fields]");
        for column in &table.columns {
            match served.iter().find(|(_, c, _)| c.name == column.name) {
                Some((name, c, (api_type, column_type))) => {
                    let mut line = format!(
                        "{name} = {{ column = {}, type = \"{api_type}\", column_type = \"{column_type}\"",
                        quoted(&c.name)
                    );
                    if *api_type == "decimal" {
                        if let Some(scale) = c.scale.filter(|s| *s > 0) {
                            let _ = write!(line, ", scale = {scale}");
                        }
                    }
                    line.push_str(" }");
                    let _ = writeln!(out, "{line}");
                }
                None => {
                    let _ = writeln!(
                        out,
                        "# {}: SQL type {} has no API type; not served",
                        column.name, column.data_type
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_names_are_safe_and_avoid_reserved_words() {
        assert_eq!(api_name("CUST NO", false), "cust_no");
        assert_eq!(api_name("1ST", false), "f1st");
        assert_eq!(api_name("LIMIT", false), "limit_");
    }
}
