//! What a legacy column can hold, read from its declared type (`varchar(30)`,
//! `decimal(9,2)`, `smallint`), so a write is refused before the database truncates it.

use crate::source::odbc::catalog::ColumnInfo;
use crate::source::Dialect;

/// A column's name and the bounds its database's catalog gives it.
#[derive(Debug, Clone)]
pub struct CatalogColumn {
    /// Column name as the catalog spells it.
    pub name: String,
    /// Its bounds.
    pub limits: Limits,
}

/// Bounds of a column's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Longest text, in characters.
    pub max_chars: Option<u32>,
    /// Decimal precision and scale: total digits and digits after the point.
    pub digits: Option<(u32, u32)>,
    /// Smallest and largest whole number.
    pub range: Option<(i64, i64)>,
    /// Whether the column takes NULL (`nullable` in the file, else the catalog's NOT NULL).
    pub nullable: Option<bool>,
    /// The catalog gives the column a default (so a create may leave it out).
    pub has_default: bool,
    /// Longest text value, in bytes, the source reads whole (`max_text_bytes`).
    pub max_bytes: Option<u32>,
    /// A binary float of single precision (the catalog's `SQL_REAL`: PostgreSQL's `real`,
    /// MariaDB's `FLOAT`), read as the double it widens to.
    pub single_precision: bool,
}

impl Limits {
    /// Reads the bounds from a `column_type` spelling; unknown spellings bound nothing.
    pub fn from_column_type(text: &str) -> Self {
        let lower = text.trim().to_ascii_lowercase();
        let (base, args) = match lower.split_once('(') {
            Some((base, rest)) => (base.trim(), rest.trim_end_matches(')')),
            None => (lower.as_str(), ""),
        };
        let numbers: Vec<u32> = args
            .split(',')
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        let mut limits = Limits::default();
        match base {
            "char" | "character" | "nchar" | "varchar" | "nvarchar" | "character varying" => {
                limits.max_chars = numbers.first().copied();
            }
            "decimal" | "numeric" => {
                let precision = numbers.first().copied().unwrap_or(18);
                limits.digits = Some((precision, numbers.get(1).copied().unwrap_or(0)));
            }
            "money" => limits.digits = Some((19, 4)),
            "smallmoney" => limits.digits = Some((10, 4)),
            "smallint" => limits.range = Some((i16::MIN.into(), i16::MAX.into())),
            "int" | "integer" => limits.range = Some((i32::MIN.into(), i32::MAX.into())),
            "bigint" => limits.range = Some((i64::MIN, i64::MAX)),
            _ => {}
        }
        limits
    }

    /// Reads the bounds the database's catalog gives a column. SQLite keeps every integer
    /// in 64 bits whatever its declared type; SQL Server's `tinyint` is unsigned; the size
    /// psqlODBC reports for `text` is its own setting, not the column's.
    pub fn from_catalog(column: &ColumnInfo, dialect: Dialect) -> Self {
        let sqlite = dialect == Dialect::Sqlite;
        let mut limits = Self::from_declaration_or_code(column, sqlite);
        if dialect == Dialect::TSql && column.data_type == -6 {
            limits.range = Some((0, 255));
        }
        if dialect == Dialect::Postgres && column.data_type == -1 {
            limits.max_chars = None;
        }
        // SQLite keeps every REAL in 64 bits.
        limits.single_precision = column.data_type == 7 && dialect != Dialect::Sqlite;
        limits
    }

    fn from_declaration_or_code(column: &ColumnInfo, sqlite: bool) -> Self {
        // A weak driver (SQLite's) calls every column VARCHAR with a wrong size, but its type
        // name is the declaration (`CHAR(8)`, `DECIMAL(11,2)`): a declaration wins.
        let declared = Limits::from_column_type(&column.type_name);
        let from_codes = Limits::from_type_code(column, sqlite);
        let named = column.type_name.contains('(');
        Limits {
            max_chars: if named { declared.max_chars } else { None }.or(from_codes.max_chars),
            digits: if named { declared.digits } else { None }.or(from_codes.digits),
            range: if sqlite {
                from_codes
                    .range
                    .or(declared.range.map(|_| (i64::MIN, i64::MAX)))
            } else {
                from_codes.range.or(declared.range)
            },
            nullable: column.nullable,
            has_default: column.has_default,
            max_bytes: None,
            single_precision: false,
        }
    }

    /// The column refuses NULL.
    pub fn not_null(&self) -> bool {
        self.nullable == Some(false)
    }

    fn from_type_code(column: &ColumnInfo, sqlite: bool) -> Self {
        let size = column
            .size
            .and_then(|s| u32::try_from(s).ok())
            .filter(|s| *s > 0);
        let scale = column
            .scale
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(0);
        let unsigned = column.type_name.to_ascii_lowercase().contains("unsigned");
        let mut limits = Limits::default();
        // ODBC SQL type codes (sql.h / sqlext.h).
        match column.data_type {
            1 | 12 | -1 | -8 | -9 | -10 => limits.max_chars = size,
            2 | 3 => {
                limits.digits = size.map(|p| (p, scale));
                if scale == 0 {
                    limits.range = size.filter(|p| *p <= 18).map(|p| {
                        let most = 10_i64.pow(p) - 1;
                        (if unsigned { 0 } else { -most }, most)
                    });
                }
            }
            _ if sqlite && matches!(column.data_type, -6 | 5 | 4 | -5) => {
                limits.range = Some((i64::MIN, i64::MAX));
            }
            -6 if unsigned => limits.range = Some((0, 255)),
            -6 => limits.range = Some((i8::MIN.into(), i8::MAX.into())),
            5 if unsigned => limits.range = Some((0, u16::MAX.into())),
            5 => limits.range = Some((i16::MIN.into(), i16::MAX.into())),
            4 if unsigned => limits.range = Some((0, u32::MAX.into())),
            4 => limits.range = Some((i32::MIN.into(), i32::MAX.into())),
            -5 if unsigned => limits.range = Some((0, i64::MAX)),
            -5 => limits.range = Some((i64::MIN, i64::MAX)),
            _ => {}
        }
        limits
    }

    /// What the configuration declares, completed by what the catalog says.
    pub fn completed_by(self, catalog: Limits) -> Self {
        Limits {
            max_chars: self.max_chars.or(catalog.max_chars),
            digits: self.digits.or(catalog.digits),
            range: self.range.or(catalog.range),
            nullable: self.nullable.or(catalog.nullable),
            has_default: self.has_default || catalog.has_default,
            max_bytes: self.max_bytes.or(catalog.max_bytes),
            single_precision: self.single_precision || catalog.single_precision,
        }
    }

    /// Checks exact decimal text (canonical: optional `-`, digits, optional fraction).
    pub fn check_decimal(&self, text: &str) -> Result<(), String> {
        let Some((precision, scale)) = self.digits else {
            return Ok(());
        };
        let body = text.trim_start_matches('-');
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        let frac = frac.trim_end_matches('0');
        let int = int.trim_start_matches('0');
        if frac.len() > scale as usize {
            return Err(format!("has more than {scale} decimal places"));
        }
        if int.len() > precision.saturating_sub(scale) as usize {
            return Err(format!(
                "has more than {} digits before the decimal point",
                precision.saturating_sub(scale)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_come_from_the_declared_type() {
        assert_eq!(Limits::from_column_type("VARCHAR(30)").max_chars, Some(30));
        assert_eq!(Limits::from_column_type("char(8)").max_chars, Some(8));
        assert_eq!(Limits::from_column_type("varchar").max_chars, None);
        assert_eq!(
            Limits::from_column_type("smallint").range,
            Some((-32768, 32767))
        );
        let money = Limits::from_column_type("decimal(7,2)");
        assert!(money.check_decimal("12345.67").is_ok());
        assert!(money.check_decimal("12345.670").is_ok());
        assert!(money.check_decimal("123456.7").is_err());
        assert!(money.check_decimal("1.234").is_err());
        assert!(money.check_decimal("-00012.5").is_ok());
    }

    fn column(data_type: i16, type_name: &str, size: i32, scale: i16, nullable: i16) -> ColumnInfo {
        ColumnInfo {
            name: "C".into(),
            data_type,
            type_name: type_name.into(),
            size: Some(size),
            scale: Some(scale),
            nullable: match nullable {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            },
            has_default: false,
        }
    }

    #[test]
    fn a_weak_drivers_type_name_is_read_as_the_declaration() {
        // SQLite's driver calls CHAR(8) a VARCHAR and gives DECIMAL(11,2) the precision 2.
        let key = Limits::from_catalog(&column(12, "CHAR(8)", 8, 0, 0), Dialect::Sqlite);
        assert_eq!((key.max_chars, key.not_null()), (Some(8), true));
        let credit = Limits::from_catalog(&column(12, "DECIMAL(11,2)", 2, 0, 1), Dialect::Sqlite);
        assert_eq!((credit.digits, credit.not_null()), (Some((11, 2)), false));
        // SQLite keeps every INTEGER in 64 bits; PostgreSQL's int4 is 32.
        let sqlite = Limits::from_catalog(&column(4, "INTEGER", 9, 0, 1), Dialect::Sqlite);
        assert_eq!(sqlite.range, Some((i64::MIN, i64::MAX)));
        let postgres = Limits::from_catalog(&column(4, "int4", 10, 0, 1), Dialect::Postgres);
        assert_eq!(postgres.range, Some((i32::MIN.into(), i32::MAX.into())));
        let unsigned =
            Limits::from_catalog(&column(-6, "tinyint unsigned", 3, 0, 2), Dialect::MySql);
        assert_eq!(
            (unsigned.range, unsigned.not_null()),
            (Some((0, 255)), false)
        );
        let numeric = Limits::from_catalog(&column(2, "numeric", 7, 0, 1), Dialect::Postgres);
        assert_eq!(numeric.range, Some((-9_999_999, 9_999_999)));
        let tsql = Limits::from_catalog(&column(-6, "tinyint", 3, 0, 1), Dialect::TSql);
        assert_eq!(tsql.range, Some((0, 255)));
        let text = Limits::from_catalog(&column(-1, "text", 8190, 0, 1), Dialect::Postgres);
        assert_eq!(text.max_chars, None);
        // SQL_REAL is a float4, except in SQLite, which keeps every REAL in 64 bits.
        let real = |dialect| Limits::from_catalog(&column(7, "real", 24, 0, 1), dialect);
        assert!(real(Dialect::Postgres).single_precision && real(Dialect::MySql).single_precision);
        assert!(!real(Dialect::Sqlite).single_precision);
        assert!(
            !Limits::from_catalog(&column(8, "double", 53, 0, 1), Dialect::MySql).single_precision
        );
        // A declaration in the configuration wins over the catalog.
        let declared = Limits::from_column_type("char(6)").completed_by(key);
        assert_eq!((declared.max_chars, declared.not_null()), (Some(6), true));
        // `nullable = true` in the file wins over the catalog's NOT NULL.
        let loosened = Limits {
            nullable: Some(true),
            ..Limits::default()
        }
        .completed_by(key);
        assert!(!loosened.not_null());
    }
}
