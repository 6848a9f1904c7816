//! `portico introspect`: a starter configuration written from the ODBC catalog.

use std::fmt::Write as _;

pub use crate::source::odbc::catalog::{ColumnInfo, TableInfo};

/// Reads tables, columns and primary keys through ODBC.
pub fn read_catalog(connection_string: &str) -> Result<Vec<TableInfo>, odbc_api::Error> {
    crate::source::odbc::catalog::read_tables(connection_string)
}

/// API type and column type of a column; `None` for types Portico cannot serve. A type name
/// that is a declaration Portico reads (`CHAR(8)`, `DECIMAL(11,2)`, `smallint`) is kept as the
/// column type, so the widths and precisions that bound writes are written down; otherwise
/// the ODBC type code decides.
fn field_types(column: &ColumnInfo, sqlite: bool) -> Option<(&'static str, String)> {
    let (api, spelled) = column_types(column)?;
    // SQLite keeps every integer in 64 bits, whatever the declaration says.
    if sqlite && api == "integer" {
        return Some((api, "bigint".into()));
    }
    Some((api, spelled))
}

fn column_types(column: &ColumnInfo) -> Option<(&'static str, String)> {
    use crate::source::ColumnType;
    let name = column.type_name.trim().to_ascii_lowercase();
    let size = column.size.unwrap_or(0);
    if let Ok(column_type) = ColumnType::parse_spelling(&name) {
        let api = match column_type {
            ColumnType::Char(_)
            | ColumnType::Varchar
            | ColumnType::NChar(_)
            | ColumnType::NVarchar
            | ColumnType::Oem(_) => "string",
            ColumnType::Integer => "integer",
            ColumnType::Decimal | ColumnType::Money => "decimal",
            ColumnType::Float => "number",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "datetime",
            ColumnType::Bit => "boolean",
            ColumnType::TimestampOffset | ColumnType::Binary => return None,
        };
        let spelled = match column_type {
            // A bare name gets the size the catalog gives.
            ColumnType::Char(None) | ColumnType::NChar(None) if size > 0 => {
                format!("{name}({size})")
            }
            ColumnType::Varchar | ColumnType::NVarchar
                if !name.contains('(') && size > 0 && size < 8001 =>
            {
                format!(
                    "{}({size})",
                    name.split_whitespace().next().unwrap_or("varchar")
                )
            }
            ColumnType::Decimal if !name.contains('(') && size > 0 => {
                format!("{name}({size},{})", column.scale.unwrap_or(0).max(0))
            }
            _ => name.clone(),
        };
        return Some((api, spelled));
    }
    Some(match column.data_type {
        1 | -8 if size > 0 => ("string", format!("char({size})")),
        12 | -9 if size > 0 && size < 8001 => ("string", format!("varchar({size})")),
        1 | -8 | 12 | -1 | -9 | -10 => ("string", "varchar".into()),
        2 | 3 if size > 0 => (
            "decimal",
            format!("decimal({size},{})", column.scale.unwrap_or(0).max(0)),
        ),
        2 | 3 => ("decimal", "decimal".into()),
        5 => ("integer", "smallint".into()),
        -5 => ("integer", "bigint".into()),
        4 | -6 => ("integer", "integer".into()),
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
    let sqlite = source_table.get("dialect").and_then(toml::Value::as_str) == Some("sqlite");
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
            .filter_map(|c| field_types(c, sqlite).map(|t| (api_name(&c.name, false), c, t)))
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
                        let scale = crate::catalog::limits::Limits::from_column_type(column_type)
                            .digits
                            .map(|(_, s)| s)
                            .or(c.scale.and_then(|s| u32::try_from(s).ok()));
                        if let Some(scale) = scale.filter(|s| *s > 0) {
                            let _ = write!(line, ", scale = {scale}");
                        }
                    }
                    if c.nullable == Some(false) {
                        line.push_str(", nullable = false");
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
