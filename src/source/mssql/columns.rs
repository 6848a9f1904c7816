//! What `portico check` asks a SQL Server about the columns a resource reads: types no API
//! value can carry, `money` read through f64, and OEM code pages tiberius cannot decode.

use crate::source::{ColumnType, Param, Statement, Value};

/// The catalog query for one table's columns: name, type, CLR-ness, code page.
pub fn statement(table: &str) -> Statement {
    Statement {
        sql: "SELECT c.name, TYPE_NAME(c.user_type_id), ty.is_assembly_type, \
              COLLATIONPROPERTY(c.collation_name, 'CodePage') \
              FROM sys.columns c JOIN sys.types ty ON ty.user_type_id = c.user_type_id \
              WHERE c.object_id = OBJECT_ID(?) ORDER BY c.column_id"
            .into(),
        params: vec![Param {
            value: Value::Text(table.as_bytes().to_vec()),
            column_type: ColumnType::NVarchar,
        }],
        columns: vec![
            ColumnType::NVarchar,
            ColumnType::NVarchar,
            ColumnType::Integer,
            ColumnType::Integer,
        ],
        max_rows: 4096,
    }
}

/// Why a column declared as `declared` cannot be read as it is, given the catalog's answer.
pub fn problem(row: &[Value], declared: ColumnType) -> Option<String> {
    let text = |i: usize| match row.get(i) {
        Some(Value::Text(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        _ => String::new(),
    };
    let int = |i: usize| match row.get(i) {
        Some(Value::Int(n)) => *n,
        Some(Value::Bool(b)) => i64::from(*b),
        _ => 0,
    };
    let (name, type_name, clr, code_page) = (text(0), text(1).to_ascii_lowercase(), int(2), int(3));
    if clr == 1 || type_name == "sql_variant" {
        return Some(format!(
            "column `{name}` is `{type_name}`, which has no single API type; serve it through a \
             `query` resource that casts it (`CAST({name} AS nvarchar(4000))`)"
        ));
    }
    if matches!(type_name.as_str(), "money" | "smallmoney") && declared != ColumnType::Money {
        return Some(format!(
            "column `{name}` is `{type_name}`: declare `column_type = \"money\"` so it is read \
             exactly (as decimal(19,4)), not through a float"
        ));
    }
    if matches!(code_page, 437 | 850) && !matches!(declared, ColumnType::Oem(_)) {
        return Some(format!(
            "column `{name}` uses code page {code_page}: declare `encoding = \"cp{code_page}\"` \
             so SQL Server converts it to Unicode"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, ty: &str, clr: i64, cp: i64) -> Vec<Value> {
        vec![
            Value::Text(name.into()),
            Value::Text(ty.into()),
            Value::Int(clr),
            Value::Int(cp),
        ]
    }

    #[test]
    fn variants_clr_types_float_money_and_oem_text_are_named() {
        assert!(problem(&row("V", "sql_variant", 0, 0), ColumnType::Varchar)
            .unwrap()
            .contains("`V` is `sql_variant`"));
        assert!(problem(&row("G", "geography", 1, 0), ColumnType::Varchar).is_some());
        assert!(problem(&row("Q", "money", 0, 0), ColumnType::Decimal)
            .unwrap()
            .contains("column_type = \"money\""));
        assert_eq!(problem(&row("Q", "money", 0, 0), ColumnType::Money), None);
        assert!(problem(&row("N", "varchar", 0, 850), ColumnType::Varchar)
            .unwrap()
            .contains("cp850"));
        assert_eq!(
            problem(&row("N", "varchar", 0, 850), ColumnType::Oem(None)),
            None
        );
        assert_eq!(
            problem(&row("N", "varchar", 0, 1252), ColumnType::Varchar),
            None
        );
    }
}
