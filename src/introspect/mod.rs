//! `portico introspect`: a starter configuration written from the ODBC catalog, one that
//! `check` accepts and `serve` serves: real keys (`keys`), readable names (`names`), money
//! as decimals, a `[server]` section. A table without a key is printed commented out.

mod keys;
mod names;

use std::fmt::Write as _;

pub use crate::source::odbc::catalog::{ColumnInfo, TableInfo};
pub use keys::{choose_key, KeyChoice};
pub use names::api_name;

/// Reads tables, columns, primary keys, unique indexes and row identifiers through ODBC.
pub fn read_catalog(
    connection_string: &str,
) -> Result<Vec<TableInfo>, crate::source::odbc::catalog::CatalogError> {
    crate::source::odbc::catalog::read_tables(connection_string)
}

/// A starter configuration and what its reader must know before serving it.
#[derive(Debug, Clone)]
pub struct Starter {
    /// The configuration file.
    pub text: String,
    /// One line per table printed commented out (no key), for stderr.
    pub warnings: Vec<String>,
}

/// Words in a floating-point column's name that say it holds money. Such a column is
/// proposed as a decimal with 2 places: a float served as a number shows `0.30000000000000004`.
const MONEY_WORDS: [&str; 22] = [
    "price", "cost", "freight", "amount", "amt", "total", "betrag", "preis", "kosten", "gebuehr",
    "fee", "charge", "balance", "salary", "wage", "payment", "paid", "revenue", "umsatz", "summe",
    "money", "budget",
];

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
    // Access's CURRENCY is a scaled 64-bit integer with 4 places: SQL Server's money.
    if name == "currency" {
        return Some(("decimal", "money".into()));
    }
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
        // SQL_FLOAT, SQL_REAL (PostgreSQL's float4), SQL_DOUBLE.
        6 => ("number", "float".into()),
        7 => ("number", "real".into()),
        8 => ("number", "double precision".into()),
        9 | 91 => ("date", "date".into()),
        11 | 93 => ("datetime", "timestamp".into()),
        -7 => ("boolean", "bit".into()),
        _ => return None,
    })
}

/// Why a name cannot be written in a configuration: Portico reads every `.` in a configured
/// name as a qualifier (`schema.table`, `table.column`) and quotes each part apart.
const DOTTED: &str = "its name contains `.`, which a configuration reads as a qualifier \
                      (schema.table, table.column); a `query` resource can select it under \
                      another name";

/// Why a column Portico does not serve is skipped.
fn skip_reason(column: &ColumnInfo) -> String {
    if column.name.contains('.') {
        return DOTTED.to_string();
    }
    let type_name = column.type_name.trim();
    let binary = matches!(column.data_type, -4..=-2)
        || crate::source::ColumnType::parse(type_name) == Some(crate::source::ColumnType::Binary)
        || ["blob", "bytea", "longblob", "mediumblob", "tinyblob"]
            .contains(&type_name.to_ascii_lowercase().as_str());
    if binary {
        format!("binary ({type_name}): Portico serves no binary values")
    } else {
        format!(
            "{type_name} (SQL type {}): no API type for it; a `query` resource can cast it",
            column.data_type
        )
    }
}

/// Whether an API name says the column holds money (`unit_price`, `freight`, `betrag`).
fn named_as_money(api_name: &str) -> bool {
    api_name
        .split('_')
        .any(|word| MONEY_WORDS.iter().any(|money| word.contains(money)))
}

fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// One served column: its API name, catalog description and types.
struct Served<'a> {
    name: String,
    column: &'a ColumnInfo,
    api_type: &'static str,
    column_type: String,
    scale: Option<u32>,
    note: Option<String>,
}

/// Renders a full configuration: `[server]` (listening on `listen`, the file's own when it
/// has one), the source as written in the original file, then one resource per table under
/// `version`; tables without a key are printed commented out, each with a warning.
pub fn render(
    source_name: &str,
    source_table: &toml::Table,
    version: &str,
    tables: &[TableInfo],
    listen: Option<&str>,
) -> Starter {
    let sqlite = source_table.get("dialect").and_then(toml::Value::as_str) == Some("sqlite");
    let mut out = String::new();
    let mut warnings = Vec::new();
    let _ = writeln!(
        out,
        "# Written by `portico introspect` from source `{source_name}`."
    );
    let _ = writeln!(
        out,
        "# Review names, keys and transforms (trim, date formats, codes), run `portico check`,\n\
         # then `portico serve`. Tables without a key are printed commented out (see each one).\n"
    );
    let _ = writeln!(out, "[server]");
    let _ = writeln!(
        out,
        "# `portico serve --listen ADDR` (or PORTICO_LISTEN) overrides this."
    );
    let _ = writeln!(
        out,
        "listen = {}\n",
        quoted(listen.unwrap_or("127.0.0.1:8080"))
    );
    let mut sources = toml::Table::new();
    sources.insert(
        source_name.to_string(),
        toml::Value::Table(source_table.clone()),
    );
    let mut root = toml::Table::new();
    root.insert("sources".into(), toml::Value::Table(sources));
    out.push_str(&toml::to_string(&root).unwrap_or_default());
    let mut resources = names::NameSet::default();
    for table in tables {
        let mut fields = names::NameSet::default();
        let mut served = Vec::new();
        let mut skipped = Vec::new();
        if table.name.contains('.') {
            warnings.push(format!(
                "table {} is skipped: {DOTTED}",
                quoted(&table.name)
            ));
            let _ = writeln!(out, "\n# skipped: table {}, {DOTTED}", quoted(&table.name));
            continue;
        }
        for column in &table.columns {
            let typed = if column.name.contains('.') {
                None
            } else {
                field_types(column, sqlite)
            };
            match typed {
                Some((api_type, column_type)) => {
                    let name = fields.take(&column.name, false);
                    served.push(proposal(name, column, api_type, column_type));
                }
                None => skipped.push(column),
            }
        }
        if served.is_empty() {
            let _ = writeln!(
                out,
                "\n# {}: no column of a type Portico can serve",
                table.name
            );
            continue;
        }
        let is_served = |column: &str| served.iter().any(|s| s.column.name == column);
        let choice = choose_key(table, &is_served);
        let resource = resources.take(&table.name, true);
        let mut section = Vec::new();
        let qualified = match table.schema.as_str() {
            "" | "public" | "dbo" | "main" => table.name.clone(),
            schema => format!("{schema}.{}", table.name),
        };
        section.push(format!("[versions.{version}.resources.{resource}]"));
        section.push(format!("source = {}", quoted(source_name)));
        section.push(format!("table = {}", quoted(&qualified)));
        let key: Vec<String> = choice
            .columns()
            .unwrap_or_default()
            .iter()
            .filter_map(|c| served.iter().find(|s| s.column.name == *c))
            .map(|s| quoted(&s.name))
            .collect();
        match &choice {
            KeyChoice::Primary(_) | KeyChoice::Missing(_) => {}
            KeyChoice::UniqueIndex { name, .. } => section.push(format!(
                "# Key: the unique index {} over NOT NULL columns (no primary key).",
                quoted(name)
            )),
            KeyChoice::RowIdentifier(_) => section.push(
                "# Key: the driver's best row identifier (SQLSpecialColumns; no primary key \
                 or unique index)."
                    .into(),
            ),
        }
        section.push(format!("key = [{}]", key.join(", ")));
        section.push(format!(
            "# Served without a token: configure [auth] and replace this with read_scope = \"{resource}:read\" before exposing it."
        ));
        section.push("anonymous = true".into());
        section.push(String::new());
        section.push(format!("[versions.{version}.resources.{resource}.fields]"));
        for field in &served {
            if let Some(note) = &field.note {
                section.push(format!("# {}: {note}", field.name));
            }
            section.push(field_line(field));
        }
        for column in skipped {
            section.push(format!(
                "# skipped: column {}, {}",
                quoted(&column.name),
                skip_reason(column)
            ));
        }
        let _ = writeln!(out);
        match &choice {
            KeyChoice::Missing(reasons) => {
                warnings.push(format!(
                    "table {} has no key ({}): printed commented out, not served",
                    quoted(&table.name),
                    reasons.join("; ")
                ));
                let _ = writeln!(
                    out,
                    "# NOT SERVED: table {} has no key, and paging without one skips or repeats \
                     rows.\n# Why: {}.\n# Either declare a primary key (or a unique index over \
                     NOT NULL columns) in the database\n# and run `portico introspect` again, or \
                     set `key` below to fields that are unique\n# together, uncomment the \
                     resource and let `portico check` prove them unique.",
                    quoted(&table.name),
                    reasons.join("; ")
                );
                for line in section {
                    if line.is_empty() {
                        let _ = writeln!(out, "#");
                    } else {
                        let _ = writeln!(out, "# {line}");
                    }
                }
            }
            _ => {
                for line in section {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
    }
    Starter {
        text: out,
        warnings,
    }
}

/// What introspect proposes for one column: a float named as money becomes a decimal with 2
/// places over the same column type; a money type keeps its 4.
fn proposal<'a>(
    name: String,
    column: &'a ColumnInfo,
    api_type: &'static str,
    column_type: String,
) -> Served<'a> {
    if api_type == "number" && named_as_money(&name) {
        let note = format!(
            "a binary float ({column_type}) named as money, served as a decimal with 2 places. \
             The column keeps about 7 (single) or 15 (double) significant digits: amounts \
             written beyond that do not read back exactly."
        );
        return Served {
            name,
            column,
            api_type: "decimal",
            column_type,
            scale: Some(2),
            note: Some(note),
        };
    }
    let scale = match api_type {
        "decimal" => crate::catalog::limits::Limits::from_column_type(&column_type)
            .digits
            .map(|(_, s)| s)
            .or(column.scale.and_then(|s| u32::try_from(s).ok()))
            .filter(|s| *s > 0),
        _ => None,
    };
    Served {
        name,
        column,
        api_type,
        column_type,
        scale,
        note: None,
    }
}

fn field_line(field: &Served<'_>) -> String {
    let mut line = format!(
        "{} = {{ column = {}, type = \"{}\", column_type = {}",
        field.name,
        quoted(&field.column.name),
        field.api_type,
        quoted(&field.column_type)
    );
    if let Some(scale) = field.scale {
        let _ = write!(line, ", scale = {scale}");
    }
    if field.column.nullable == Some(false) {
        line.push_str(", nullable = false");
    }
    line.push_str(" }");
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, type_name: &str, data_type: i16) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            data_type,
            type_name: type_name.into(),
            size: None,
            scale: None,
            nullable: Some(false),
            has_default: false,
        }
    }

    fn table(name: &str, columns: Vec<ColumnInfo>, key: &[&str]) -> TableInfo {
        TableInfo {
            schema: String::new(),
            name: name.into(),
            columns,
            primary_key: key.iter().map(|k| k.to_string()).collect(),
            unique_indexes: Vec::new(),
            row_identifier: Vec::new(),
            key_lookup_errors: Vec::new(),
        }
    }

    fn source() -> toml::Table {
        toml::from_str("kind = \"odbc\"\ndialect = \"postgres\"\nconnection_string = \"x\"")
            .unwrap()
    }

    #[test]
    fn money_is_proposed_as_decimal_over_its_own_column_type() {
        let orders = table(
            "Orders",
            vec![
                column("OrderID", "int4", 4),
                column("Freight", "float4", 7),
                column("UnitPrice", "float8", 8),
                column("Discount", "float4", 7),
                column("Fee", "money", 3),
                column("Kosten", "Currency", 8),
            ],
            &["OrderID"],
        );
        let text = render("nw", &source(), "v1", &[orders], None).text;
        for line in [
            "freight = { column = \"Freight\", type = \"decimal\", column_type = \"real\", scale = 2, nullable = false }",
            "unit_price = { column = \"UnitPrice\", type = \"decimal\", column_type = \"double precision\", scale = 2, nullable = false }",
            "discount = { column = \"Discount\", type = \"number\", column_type = \"real\", nullable = false }",
            "fee = { column = \"Fee\", type = \"decimal\", column_type = \"money\", scale = 4, nullable = false }",
            "kosten = { column = \"Kosten\", type = \"decimal\", column_type = \"money\", scale = 4, nullable = false }",
            "# freight: a binary float (real) named as money",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
    }

    #[test]
    fn names_with_a_dot_are_skipped_with_the_reason() {
        let prices = table(
            "Preise",
            vec![column("ID", "integer", 4), column("Preis.Netto", "real", 7)],
            &["ID"],
        );
        let old = table("Kunden.Alt", vec![column("ID", "integer", 4)], &["ID"]);
        let starter = render("nw", &source(), "v1", &[prices, old], None);
        let text = &starter.text;
        assert!(
            text.contains("# skipped: column \"Preis.Netto\", its name contains `.`"),
            "{text}"
        );
        assert!(
            text.contains("# skipped: table \"Kunden.Alt\", its name contains `.`"),
            "{text}"
        );
        let parsed: toml::Table = toml::from_str(text).unwrap();
        let resources = parsed["versions"]["v1"]["resources"].as_table().unwrap();
        assert_eq!(resources.keys().collect::<Vec<_>>(), ["preise"], "{text}");
        assert_eq!(
            resources["preise"]["fields"].as_table().unwrap().len(),
            1,
            "{text}"
        );
        assert_eq!(starter.warnings.len(), 1, "{:?}", starter.warnings);
        assert!(starter.warnings[0].starts_with("table \"Kunden.Alt\" is skipped"));
    }

    #[test]
    fn a_table_without_a_key_is_printed_commented_out_with_a_warning() {
        let sales = table(
            "Umsätze",
            vec![
                column("Kunde", "varchar", 12),
                column("Betrag", "float4", 7),
            ],
            &[],
        );
        let starter = render("nw", &source(), "v1", &[sales], Some("0.0.0.0:9000"));
        let text = &starter.text;
        assert!(text.contains("[server]\n"), "{text}");
        assert!(text.contains("listen = \"0.0.0.0:9000\""), "{text}");
        assert!(
            text.contains("# NOT SERVED: table \"Umsätze\" has no key"),
            "{text}"
        );
        assert!(
            text.contains("# [versions.v1.resources.umsaetze]"),
            "{text}"
        );
        assert!(text.contains("# key = []"), "{text}");
        // Nothing of the resource is live: every line about it is a comment.
        let parsed: toml::Table = toml::from_str(text).unwrap();
        assert!(parsed.get("versions").is_none(), "{text}");
        assert_eq!(starter.warnings.len(), 1);
        assert!(
            starter.warnings[0].contains("\"Umsätze\""),
            "{:?}",
            starter.warnings
        );
    }

    #[test]
    fn binary_columns_are_listed_as_skipped() {
        let customers = table(
            "Customers",
            vec![
                column("CustomerID", "varchar", 12),
                column("Photo", "bytea", -3),
                column("Shape", "geometry", -151),
            ],
            &["CustomerID"],
        );
        let text = render("nw", &source(), "v1", &[customers], None).text;
        assert!(
            text.contains("# skipped: column \"Photo\", binary (bytea)"),
            "{text}"
        );
        assert!(
            text.contains("# skipped: column \"Shape\", geometry"),
            "{text}"
        );
        assert!(text.contains("listen = \"127.0.0.1:8080\""), "{text}");
    }
}
