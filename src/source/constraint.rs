//! Recognises a database's constraint violations in its driver messages, so a refused write
//! can say which rule it broke without passing the database's own text on.

/// The kind of rule a write broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstraintKind {
    /// A unique index or primary key.
    Unique,
    /// A foreign key.
    ForeignKey,
    /// A CHECK constraint.
    Check,
    /// A NOT NULL column.
    NotNull,
    /// Integrity violation of another kind.
    Other,
}

impl ConstraintKind {
    /// Words for a problem detail.
    pub fn describe(self) -> &'static str {
        match self {
            ConstraintKind::Unique => "unique",
            ConstraintKind::ForeignKey => "foreign key",
            ConstraintKind::Check => "check",
            ConstraintKind::NotNull => "not-null",
            ConstraintKind::Other => "integrity",
        }
    }
}

/// A constraint violation: its kind, and its name or column when the driver says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Kind of rule.
    pub kind: ConstraintKind,
    /// Constraint name (`customers_pkey`).
    pub name: Option<String>,
    /// Column the rule is on (`CUST_NO`), without its table.
    pub column: Option<String>,
}

impl Violation {
    /// `breaks the database's unique constraint `pk`; nothing was written`, naming the
    /// constraint, else `field` (the API's name of the column), else the column.
    pub fn detail(&self, field: Option<&str>) -> String {
        // SQLite reports a named CHECK where the others report a column.
        let named = match (&self.name, field, &self.column) {
            (Some(name), _, _) => format!(" `{name}`"),
            (None, Some(field), _) => format!(" on `{field}`"),
            (None, None, Some(other)) => format!(" `{other}`"),
            (None, None, None) => String::new(),
        };
        format!(
            "breaks the database's {} constraint{named}; nothing was written",
            self.kind.describe()
        )
    }
}

/// Reads a violation from an SQLSTATE and driver message; `None` when it is not one.
pub fn recognise(state: &[u8; 5], message: &str) -> Option<Violation> {
    let lower = message.to_ascii_lowercase();
    let integrity = state.starts_with(b"23") || lower.contains("constraint failed");
    if !integrity {
        return None;
    }
    let kind = if lower.contains("unique") || lower.contains("duplicate") {
        ConstraintKind::Unique
    } else if lower.contains("foreign key") {
        ConstraintKind::ForeignKey
    } else if lower.contains("not-null")
        || lower.contains("not null")
        || lower.contains("cannot be null")
    {
        ConstraintKind::NotNull
    } else if lower.contains("check") || lower.contains("` failed for `") {
        // MariaDB: CONSTRAINT `name` failed for `db`.`table`.
        ConstraintKind::Check
    } else {
        ConstraintKind::Other
    };
    Some(Violation {
        kind,
        name: quoted_after(message, "constraint ")
            .or_else(|| quoted_after(message, "CONSTRAINT "))
            .or_else(|| quoted_after(message, "for key ")),
        column: column_of(message),
    })
}

/// The first `"name"`, `` `name` `` or `'name'` right after `marker`.
fn quoted_after(message: &str, marker: &str) -> Option<String> {
    let rest = &message[message.find(marker)? + marker.len()..];
    let open = rest
        .chars()
        .next()
        .filter(|c| matches!(c, '"' | '`' | '\''))?;
    let body = &rest[1..];
    let name = &body[..body.find(open)?];
    // MariaDB names keys `table.PRIMARY`; the key is what matters.
    Some(name.rsplit('.').next().unwrap_or(name).to_string())
}

/// The column: SQLite's `failed: TABLE.COLUMN`, PostgreSQL's `in column "C"`, MariaDB's
/// `Column 'C' cannot be null`.
fn column_of(message: &str) -> Option<String> {
    if let Some(at) = message.find("constraint failed: ") {
        let rest = &message[at + "constraint failed: ".len()..];
        let first = rest.split([',', ' ', '(', ')']).next()?;
        return first.rsplit('.').next().map(str::to_string);
    }
    quoted_after(message, "in column ").or_else(|| quoted_after(message, "Column "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_databases_messages_are_recognised() {
        let sqlite = recognise(
            b"HY000",
            "[SQLite]UNIQUE constraint failed: CUSTOMERS.CUST_NO (19)",
        )
        .unwrap();
        assert_eq!(sqlite.kind, ConstraintKind::Unique);
        assert_eq!(sqlite.column.as_deref(), Some("CUST_NO"));

        let pg = recognise(
            b"23505",
            "ERROR: duplicate key value violates unique constraint \"customers_pkey\";",
        )
        .unwrap();
        assert_eq!(pg.kind, ConstraintKind::Unique);
        assert_eq!(pg.name.as_deref(), Some("customers_pkey"));

        let maria = recognise(
            b"23000",
            "[ma-3.1.15]Duplicate entry 'C001' for key 'PRIMARY'",
        )
        .unwrap();
        assert_eq!(maria.kind, ConstraintKind::Unique);
        assert_eq!(maria.name.as_deref(), Some("PRIMARY"));

        let check = recognise(
            b"23000",
            "CONSTRAINT `credit_positive` failed for `db`.`CUSTOMERS`",
        )
        .unwrap();
        assert_eq!(check.kind, ConstraintKind::Check);
        assert_eq!(check.name.as_deref(), Some("credit_positive"));

        let not_null = recognise(
            b"23502",
            "null value in column \"NAME\" of relation \"customers\" violates not-null constraint",
        )
        .unwrap();
        assert_eq!(not_null.kind, ConstraintKind::NotNull);
        assert_eq!(not_null.column.as_deref(), Some("NAME"));

        assert_eq!(recognise(b"42S02", "no such table: X"), None);
    }
}
