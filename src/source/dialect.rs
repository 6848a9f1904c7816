//! SQL generation per dialect: quoting, parameters, NULL ordering, keyset paging, row limits.

use super::select::{
    Aggregate, Bucket, CmpOp, Condition, MeasureKind, OrderTerm, Relation, Select,
};
use super::{ColumnType, Param, Statement, Value};
use crate::config::{DialectName, StampClock};

/// The SQL dialect of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL / MariaDB.
    MySql,
    /// SQL Server 2008+: `TOP`, never `OFFSET … FETCH`.
    TSql,
    /// Standard SQL only; the row limit is applied by fetching no more rows.
    Generic,
}

impl From<DialectName> for Dialect {
    fn from(name: DialectName) -> Self {
        match name {
            DialectName::Sqlite => Dialect::Sqlite,
            DialectName::Postgres => Dialect::Postgres,
            DialectName::Mysql => Dialect::MySql,
            DialectName::Tsql => Dialect::TSql,
            DialectName::Generic => Dialect::Generic,
        }
    }
}

impl Dialect {
    /// The dialect's name as configured (`sqlite`, `postgres`, `mysql`, `tsql`, `generic`).
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
            Dialect::TSql => "tsql",
            Dialect::Generic => "generic",
        }
    }

    /// Quotes an identifier from configuration; dotted names are quoted part by part.
    pub fn quote(self, name: &str) -> String {
        // Written into one string: every statement quotes each of its columns.
        let (open, close) = match self {
            Dialect::MySql => ('`', '`'),
            Dialect::TSql => ('[', ']'),
            _ => ('"', '"'),
        };
        let mut quoted = String::with_capacity(name.len() + 4);
        for (i, part) in name.split('.').enumerate() {
            if i > 0 {
                quoted.push('.');
            }
            quoted.push(open);
            for c in part.chars() {
                if c == close {
                    quoted.push(close);
                }
                quoted.push(c);
            }
            quoted.push(close);
        }
        quoted
    }

    /// Parameters a `prefix` condition binds: MySQL and T-SQL match the pattern twice (under
    /// the column's collation for the index, then exactly).
    pub fn prefix_parameters(self) -> usize {
        match self {
            Dialect::MySql | Dialect::TSql => 2,
            _ => 1,
        }
    }

    /// A statement that proves the database answers.
    pub fn ping(self) -> &'static str {
        "SELECT 1"
    }

    /// The SQL of the database's current time on `clock`, as a timestamp without an offset;
    /// `None` where standard SQL has no portable spelling (`generic`).
    pub fn current_timestamp(self, clock: StampClock) -> Option<&'static str> {
        Some(match (self, clock) {
            (Dialect::Sqlite, StampClock::Local) => "datetime('now', 'localtime')",
            (Dialect::Sqlite, StampClock::Utc) => "datetime('now')",
            (Dialect::Postgres, StampClock::Local) => "LOCALTIMESTAMP",
            (Dialect::Postgres, StampClock::Utc) => "(CURRENT_TIMESTAMP AT TIME ZONE 'UTC')",
            (Dialect::MySql, StampClock::Local) => "NOW()",
            (Dialect::MySql, StampClock::Utc) => "UTC_TIMESTAMP()",
            (Dialect::TSql, StampClock::Local) => "SYSDATETIME()",
            (Dialect::TSql, StampClock::Utc) => "SYSUTCDATETIME()",
            (Dialect::Generic, _) => return None,
        })
    }

    /// A statement reading the database's current time on `clock` (one row, one timestamp).
    pub fn clock(self, clock: StampClock) -> Option<Statement> {
        self.current_timestamp(clock).map(|now| Statement {
            sql: format!("SELECT {now}"),
            params: Vec::new(),
            columns: vec![ColumnType::Timestamp],
            max_rows: 1,
        })
    }

    /// Renders a SELECT: columns, conditions, keyset position, total order and row limit.
    pub fn select(self, select: &Select) -> Statement {
        let mut sql = SqlWriter {
            dialect: self,
            sql: String::with_capacity(256),
            params: Vec::new(),
        };
        sql.push("SELECT ");
        sql.push(&self.top(select.limit));
        for (i, (column, column_type)) in select.columns.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.read_column(column, *column_type);
        }
        sql.push(" FROM ");
        let grouped = select.per_group.as_ref().filter(|_| self.numbers_rows());
        if let Some(group) = grouped {
            // Each group's first rows: numbered in the select's order within the group.
            sql.push("(SELECT *, ROW_NUMBER() OVER (PARTITION BY ");
            sql.column(&group.column);
            sql.push(" ORDER BY ");
            for (i, term) in select.order.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.order_term(term);
            }
            sql.push(") AS portico_rn FROM ");
        }
        sql.relation(&select.relation, "portico_q");
        let mut conditions: Vec<Condition> = select.filter.clone();
        if let Some(after) = &select.after {
            conditions.push(keyset_after(&select.order, after));
        }
        if !conditions.is_empty() {
            sql.push(" WHERE ");
            sql.condition(&Condition::And(conditions));
        }
        if let Some(group) = grouped {
            sql.push(&format!(") portico_g WHERE portico_rn <= {}", group.rows));
        }
        if !select.order.is_empty() {
            sql.push(" ORDER BY ");
            for (i, term) in select.order.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.order_term(term);
            }
        }
        sql.push(&self.limit(select.limit));
        Statement {
            sql: sql.sql,
            params: sql.params,
            columns: select.columns.iter().map(|(_, t)| *t).collect(),
            max_rows: select.limit,
        }
    }

    /// `SELECT COUNT(*)` of the rows `select` filters: its order, keyset position, columns and
    /// limit play no part.
    pub fn count(self, select: &Select) -> Statement {
        let mut sql = SqlWriter {
            dialect: self,
            sql: String::with_capacity(128),
            params: Vec::new(),
        };
        sql.push("SELECT COUNT(*) FROM ");
        sql.relation(&select.relation, "portico_q");
        if !select.filter.is_empty() {
            sql.push(" WHERE ");
            sql.condition(&Condition::And(select.filter.clone()));
        }
        Statement {
            sql: sql.sql,
            params: sql.params,
            columns: vec![ColumnType::Integer],
            max_rows: 1,
        }
    }

    /// A statement reading the database's own estimate of a table's rows (one row, a whole
    /// number; negative when it has none), where the dialect keeps one that costs no scan:
    /// PostgreSQL's `pg_class.reltuples` (-1 until the table was analyzed), SQL Server's
    /// `sys.partitions` rows of the heap or clustered index. `None` elsewhere and for a query.
    pub fn estimate(self, relation: &Relation) -> Option<Statement> {
        let Relation::Table(table) = relation else {
            return None;
        };
        let sql = match self {
            Dialect::Postgres => {
                "SELECT CAST(reltuples AS bigint) FROM pg_class \
                 WHERE oid = to_regclass(CAST(? AS text))"
            }
            Dialect::TSql => {
                "SELECT CAST(COALESCE(SUM(p.rows), -1) AS bigint) FROM sys.partitions p \
                 WHERE p.object_id = OBJECT_ID(?) AND p.index_id IN (0, 1)"
            }
            _ => return None,
        };
        Some(Statement {
            sql: sql.into(),
            params: vec![Param {
                value: Value::Text(self.quote(table).into_bytes()),
                column_type: ColumnType::Varchar,
            }],
            columns: vec![ColumnType::Integer],
            max_rows: 1,
        })
    }

    /// Renders an aggregate: a derived table computes each group's bucket and each measured
    /// value (sentinels turned to NULL), so the outer GROUP BY names plain columns and every
    /// parameter is bound once, on every dialect (T-SQL cannot group by position).
    pub fn aggregate(self, aggregate: &Aggregate) -> Statement {
        let mut sql = SqlWriter {
            dialect: self,
            sql: String::with_capacity(256),
            params: Vec::new(),
        };
        let groups: Vec<String> = (0..aggregate.groups.len())
            .map(|i| format!("portico_g{i}"))
            .collect();
        sql.push("SELECT ");
        sql.push(&self.top(aggregate.limit));
        let mut outer: Vec<String> = aggregate
            .groups
            .iter()
            .zip(&groups)
            .map(|(g, name)| {
                let read = match g.bucket {
                    Bucket::Value | Bucket::Round(_) => g.column_type,
                    _ => ColumnType::Varchar,
                };
                self.cast_for_reading(name, read)
            })
            .collect();
        outer.push("COUNT(*)".into());
        for (i, m) in aggregate.measures.iter().enumerate() {
            let name = format!("portico_m{i}");
            outer.push(match m.kind {
                MeasureKind::Count => format!("COUNT({name})"),
                MeasureKind::Min => self.cast_for_reading(&format!("MIN({name})"), m.column_type),
                MeasureKind::Max => self.cast_for_reading(&format!("MAX({name})"), m.column_type),
                MeasureKind::Sum { scaled } => match (self, scaled, m.column_type) {
                    // SQL Server sums an int as an int (and overflows), money as money (read
                    // as a double); a decimal's sum keeps its scale.
                    (Dialect::TSql, Some(_), _) | (Dialect::TSql, None, ColumnType::Integer) => {
                        format!("SUM(CAST({name} AS decimal(38,0)))")
                    }
                    (Dialect::TSql, None, ColumnType::Money) => {
                        format!("CAST(SUM({name}) AS decimal(38,4))")
                    }
                    _ => format!("SUM({name})"),
                },
            });
        }
        sql.push(&outer.join(", "));
        sql.push(" FROM (SELECT ");
        let mut inner_count = 0;
        for (g, name) in aggregate.groups.iter().zip(&groups) {
            if inner_count > 0 {
                sql.push(", ");
            }
            inner_count += 1;
            sql.bucket(&g.column, &g.sentinels, g.bucket);
            sql.push(" AS ");
            sql.push(name);
        }
        for (i, m) in aggregate.measures.iter().enumerate() {
            if inner_count > 0 {
                sql.push(", ");
            }
            inner_count += 1;
            match m.kind {
                MeasureKind::Sum {
                    scaled: Some(places),
                } => {
                    let int = match self {
                        Dialect::Sqlite => "INTEGER",
                        Dialect::MySql => "SIGNED",
                        _ => "BIGINT",
                    };
                    sql.push("CAST(ROUND(");
                    sql.nulled(&m.column, &m.sentinels);
                    sql.push(&format!(" * 1{}", "0".repeat(places as usize)));
                    sql.push(if self == Dialect::TSql { ", 0)" } else { ")" });
                    sql.push(&format!(" AS {int})"));
                }
                _ => sql.nulled(&m.column, &m.sentinels),
            }
            sql.push(&format!(" AS portico_m{i}"));
        }
        if inner_count == 0 {
            sql.push("1 AS portico_one");
        }
        sql.push(" FROM ");
        sql.relation(&aggregate.relation, "portico_q");
        if !aggregate.filter.is_empty() {
            sql.push(" WHERE ");
            sql.condition(&Condition::And(aggregate.filter.clone()));
        }
        sql.push(") portico_a");
        if !groups.is_empty() {
            sql.push(" GROUP BY ");
            sql.push(&groups.join(", "));
            sql.push(" ORDER BY ");
            let order: Vec<String> = groups
                .iter()
                .map(|g| match self {
                    // NULL first, as the other databases sort it.
                    Dialect::Postgres => format!("{g} NULLS FIRST"),
                    Dialect::Generic => format!("CASE WHEN {g} IS NULL THEN 0 ELSE 1 END, {g}"),
                    _ => g.clone(),
                })
                .collect();
            sql.push(&order.join(", "));
        }
        sql.push(&self.limit(aggregate.limit));
        Statement {
            sql: sql.sql,
            params: sql.params,
            columns: aggregate.result_types(),
            max_rows: aggregate.limit,
        }
    }

    /// `expr`, cast where the dialect must convert what it reads (`read_cast`).
    fn cast_for_reading(self, expr: &str, column_type: ColumnType) -> String {
        match self.read_cast(column_type) {
            Some(cast) => format!("CAST({expr} AS {cast})"),
            None => expr.to_string(),
        }
    }

    /// `SELECT {body}` of at most `rows` rows: `body` is written by hand (what a `Select` cannot
    /// say, such as `GROUP BY`), the row limit in the dialect's spelling, as `select` writes it.
    pub fn select_text(self, body: &str, rows: usize, columns: Vec<ColumnType>) -> Statement {
        Statement {
            sql: format!("SELECT {}{body}{}", self.top(rows), self.limit(rows)),
            params: Vec::new(),
            columns,
            max_rows: rows,
        }
    }

    /// A FROM item: a quoted table, or a configured query as a derived table under `alias`.
    pub fn from_item(self, relation: &Relation, alias: &str) -> String {
        match relation {
            Relation::Table(name) => self.quote(name),
            Relation::Query(query) => format!("({query}) {alias}"),
        }
    }

    /// Whether the dialect numbers rows within groups (`ROW_NUMBER() OVER (PARTITION BY …)`),
    /// so a select's `per_group` is pushed down; `generic` reads every row of the batch
    /// (up to its limit) and the caller keeps each group's first.
    pub fn numbers_rows(self) -> bool {
        !matches!(self, Dialect::Generic)
    }

    /// The row limit that follows `SELECT` (T-SQL's `TOP`), or nothing.
    fn top(self, rows: usize) -> String {
        match self {
            Dialect::TSql => format!("TOP ({rows}) "),
            _ => String::new(),
        }
    }

    /// The row limit that ends the statement (`LIMIT`), or nothing: `generic` only stops
    /// fetching after `max_rows`.
    fn limit(self, rows: usize) -> String {
        match self {
            Dialect::Sqlite | Dialect::Postgres | Dialect::MySql => format!(" LIMIT {rows}"),
            Dialect::TSql | Dialect::Generic => String::new(),
        }
    }
}

impl Dialect {
    /// The type a column of `column_type` is read as, when the dialect must convert it. A
    /// binary float is read as the double it holds (or widens to), so a keyset cursor carries
    /// the stored value exactly: MariaDB prints a FLOAT to 6 digits and PostgreSQL a `real` as
    /// the shortest text of a float4, both different doubles.
    pub fn read_cast(self, column_type: ColumnType) -> Option<String> {
        match (self, column_type) {
            (Dialect::MySql | Dialect::Postgres, ColumnType::Float) => {
                self.double_type().map(String::from)
            }
            (Dialect::TSql, ColumnType::Money) => Some("decimal(19,4)".into()),
            (Dialect::TSql, ColumnType::Oem(Some(n))) => Some(format!("nvarchar({n})")),
            (Dialect::TSql, ColumnType::Oem(None)) => Some("nvarchar(max)".into()),
            _ => None,
        }
    }

    /// The dialect's name of a double, where a binary float parameter is sent as text cast to
    /// it (`SqlWriter::param`).
    fn double_type(self) -> Option<&'static str> {
        match self {
            Dialect::MySql => Some("DOUBLE"),
            Dialect::Postgres => Some("double precision"),
            _ => None,
        }
    }

    /// The condition (SQL and parameters) of the rows strictly after `values` in `order`, for
    /// statements written around it (the SQL Server change strategies).
    pub fn keyset(self, order: &[OrderTerm], values: &[Value]) -> (String, Vec<Param>) {
        let mut sql = SqlWriter {
            dialect: self,
            sql: String::new(),
            params: Vec::new(),
        };
        sql.condition(&keyset_after(order, values));
        (sql.sql, sql.params)
    }
}

/// Rows strictly after `values` in `order`, where NULL sorts before every value.
fn keyset_after(order: &[OrderTerm], values: &[Value]) -> Condition {
    let mut tail: Option<Condition> = None;
    for (term, value) in order.iter().zip(values).rev() {
        let column = term.column.clone();
        let is_null = || Condition::IsNull {
            column: column.clone(),
            negated: false,
        };
        let equal_then =
            |tail: Option<Condition>, head: Condition| tail.map(|t| Condition::And(vec![head, t]));
        let mut any = Vec::new();
        if *value == Value::Null {
            // After NULL: larger values when ascending; only NULLs with a larger tail otherwise.
            if let Some(c) = equal_then(tail.clone(), is_null()) {
                any.push(c);
            }
            if !term.descending {
                any.push(Condition::IsNull {
                    column: column.clone(),
                    negated: true,
                });
            }
        } else {
            let param = Param {
                value: value.clone(),
                column_type: term.column_type,
            };
            let op = if term.descending {
                CmpOp::Lt
            } else {
                CmpOp::Gt
            };
            any.push(Condition::Compare {
                column: column.clone(),
                op,
                param: param.clone(),
            });
            if term.descending && term.nullable {
                any.push(is_null());
            }
            let eq = Condition::Compare {
                column: column.clone(),
                op: CmpOp::Eq,
                param,
            };
            if let Some(c) = equal_then(tail.clone(), eq) {
                any.push(c);
            }
        }
        tail = Some(match any.len() {
            0 => Condition::Or(vec![]),
            1 => any.remove(0),
            _ => Condition::Or(any),
        });
    }
    tail.unwrap_or(Condition::Or(vec![]))
}

/// Builds SQL text and its parameter list side by side.
pub(super) struct SqlWriter {
    pub(super) dialect: Dialect,
    pub(super) sql: String,
    pub(super) params: Vec<Param>,
}

impl SqlWriter {
    pub(super) fn push(&mut self, s: &str) {
        self.sql.push_str(s);
    }

    pub(super) fn column(&mut self, name: &str) {
        let quoted = self.dialect.quote(name);
        self.sql.push_str(&quoted);
    }

    /// A column in a select list. SQL Server converts what tiberius cannot read exactly:
    /// `money` (which it decodes as f64) to `decimal(19,4)`, OEM code pages to Unicode; every
    /// other dialect reads a binary float as its exact double (`Dialect::read_cast`).
    pub(crate) fn read_column(&mut self, name: &str, column_type: ColumnType) {
        let quoted = self.dialect.quote(name);
        if self.dialect == Dialect::Sqlite && column_type == ColumnType::Float {
            // SQLite's driver prints a REAL to 15 digits, which may name another double; 17
            // always name the stored one. Whatever else the column holds is read as it is.
            // Unnamed: an ORDER BY the column's name would sort this text.
            self.sql.push_str(&format!(
                "CASE WHEN typeof({quoted}) = 'real' THEN printf('%!.17g', {quoted}) \
                 ELSE {quoted} END"
            ));
            return;
        }
        let Some(cast) = self.dialect.read_cast(column_type) else {
            return self.column(name);
        };
        if column_type == ColumnType::Float {
            // Unnamed, so an ORDER BY the column sorts the column (and can use its index).
            self.sql.push_str(&format!("CAST({quoted} AS {cast})"));
            return;
        }
        let alias = self.dialect.quote(name.rsplit('.').next().unwrap_or(name));
        self.sql
            .push_str(&format!("CAST({quoted} AS {cast}) AS {alias}"));
    }

    /// The column, NULL where it holds one of `sentinels` (stored values meaning null).
    fn nulled(&mut self, column: &str, sentinels: &[Param]) {
        if sentinels.is_empty() {
            return self.column(column);
        }
        self.push("CASE WHEN ");
        self.column(column);
        self.push(" IN ");
        self.list(sentinels);
        self.push(" THEN NULL ELSE ");
        self.column(column);
        self.push(" END");
    }

    /// A group's bucket of the (nulled) column, in the dialect's spelling.
    fn bucket(&mut self, column: &str, sentinels: &[Param], bucket: Bucket) {
        let dialect = self.dialect;
        let (open, close) = match (bucket, dialect) {
            (Bucket::Value, _) => (String::new(), String::new()),
            (Bucket::Round(n), _) => ("ROUND(".into(), format!(", {n})")),
            (Bucket::TextPrefix(n) | Bucket::DateText(n), Dialect::Sqlite) => {
                ("substr(".into(), format!(", 1, {n})"))
            }
            (Bucket::TextPrefix(n), Dialect::Generic) => {
                ("SUBSTRING(".into(), format!(" FROM 1 FOR {n})"))
            }
            (Bucket::TextPrefix(n), _) => ("LEFT(".into(), format!(", {n})")),
            (Bucket::Divide(d), Dialect::MySql) => (String::new(), format!(" DIV {d}")),
            (Bucket::Divide(d), Dialect::Sqlite) => ("CAST(".into(), format!(" AS INTEGER) / {d}")),
            (Bucket::Divide(d), _) => ("CAST(".into(), format!(" AS BIGINT) / {d}")),
            (Bucket::DateText(n), Dialect::Postgres) => {
                ("to_char(".into(), format!(", '{}')", &"YYYY-MM-DD"[..n]))
            }
            (Bucket::DateText(n), Dialect::MySql) => (
                "DATE_FORMAT(".into(),
                format!(
                    ", '{}')",
                    match n {
                        4 => "%Y",
                        7 => "%Y-%m",
                        _ => "%Y-%m-%d",
                    }
                ),
            ),
            (Bucket::DateText(n), Dialect::TSql) => {
                (format!("CONVERT(char({n}), "), ", 126)".into())
            }
            (Bucket::DateText(n), Dialect::Generic) => (
                "SUBSTRING(CAST(".into(),
                format!(" AS VARCHAR(30)) FROM 1 FOR {n})"),
            ),
        };
        self.push(&open);
        self.nulled(column, sentinels);
        self.push(&close);
    }

    /// A FROM item: a quoted table, or a configured query under `alias`.
    fn relation(&mut self, relation: &Relation, alias: &str) {
        let item = self.dialect.from_item(relation, alias);
        self.push(&item);
    }

    pub(super) fn param(&mut self, param: Param) {
        if let (Value::Float(f), Some(double)) = (&param.value, self.dialect.double_type()) {
            // Bound as a double, MariaDB's driver sends 15 digits and psqlODBC leaves the type
            // to the server, which makes it a float4 beside a `real` column: either moves a
            // keyset position off the stored value. Its shortest round-trip text, cast, is
            // exactly the double on both.
            self.sql.push_str(&format!("CAST(? AS {double})"));
            self.params.push(Param {
                value: Value::Text(format!("{f:?}").into_bytes()),
                column_type: ColumnType::Varchar,
            });
            return;
        }
        self.sql.push('?');
        self.params.push(param);
    }

    fn order_term(&mut self, term: &OrderTerm) {
        // NULL sorts first ascending and last descending, the same on every database.
        if term.nullable && self.dialect == Dialect::Generic {
            self.push("CASE WHEN ");
            self.column(&term.column);
            self.push(" IS NULL THEN 0 ELSE 1 END");
            self.push(if term.descending { " DESC, " } else { ", " });
        }
        self.column(&term.column);
        if term.descending {
            self.push(" DESC");
        }
        if term.nullable && self.dialect == Dialect::Postgres {
            self.push(if term.descending {
                " NULLS LAST"
            } else {
                " NULLS FIRST"
            });
        }
    }

    fn list(&mut self, params: &[Param]) {
        self.push("(");
        for (i, p) in params.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.param(p.clone());
        }
        self.push(")");
    }

    /// A prefix match with the meaning of `Condition::Prefix` (exact bytes, case counts) on
    /// every dialect but generic. SQLite's `LIKE` ignores ASCII case, so it uses `GLOB`.
    /// MySQL / MariaDB and SQL Server match under the column's collation first (so an index
    /// finds the rows; their default collations ignore case) and then again under a binary
    /// collation.
    fn prefix(&mut self, column: &str, prefix: &[u8]) {
        let text = |pattern: Vec<u8>| Param {
            value: Value::Text(pattern),
            column_type: ColumnType::Varchar,
        };
        if self.dialect == Dialect::Sqlite {
            // GLOB's wildcards `*`, `?` and `[` are literal inside brackets.
            let mut pattern = Vec::with_capacity(prefix.len() + 4);
            for &b in prefix {
                match b {
                    b'*' | b'?' | b'[' => pattern.extend_from_slice(&[b'[', b, b']']),
                    _ => pattern.push(b),
                }
            }
            pattern.push(b'*');
            self.column(column);
            self.push(" GLOB ");
            self.param(text(pattern));
            return;
        }
        let mut pattern = Vec::with_capacity(prefix.len() + 4);
        for &b in prefix {
            if matches!(b, b'!' | b'%' | b'_' | b'[') {
                pattern.push(b'!');
            }
            pattern.push(b);
        }
        pattern.push(b'%');
        let recheck = self.dialect.prefix_parameters() == 2;
        if recheck {
            self.push("(");
        }
        self.column(column);
        self.push(" LIKE ");
        self.param(text(pattern.clone()));
        self.push(" ESCAPE '!'");
        match self.dialect {
            Dialect::MySql => {
                // Converted first, so the collation fits whatever the connection's character
                // set is.
                self.push(" AND ");
                self.column(column);
                self.push(" LIKE CONVERT(");
                self.param(text(pattern));
                self.push(" USING utf8mb4) COLLATE utf8mb4_bin ESCAPE '!')");
            }
            Dialect::TSql => {
                // Unicode first: a binary collation's code page could change varchar text.
                self.push(" AND CAST(");
                self.column(column);
                self.push(" AS nvarchar(max)) COLLATE Latin1_General_BIN2 LIKE ");
                self.param(text(pattern));
                self.push(" ESCAPE '!')");
            }
            _ => {}
        }
    }

    pub(super) fn condition(&mut self, condition: &Condition) {
        match condition {
            Condition::Compare { column, op, param } => {
                self.column(column);
                self.push(" ");
                self.push(op.sql());
                self.push(" ");
                self.param(param.clone());
            }
            Condition::Near {
                column,
                value,
                within,
            } => {
                self.push("ABS(");
                self.column(column);
                self.push(" - ");
                self.param(Param {
                    value: Value::Float(*value),
                    column_type: super::ColumnType::Float,
                });
                self.push(") <= ");
                self.param(Param {
                    value: Value::Float(*within),
                    column_type: super::ColumnType::Float,
                });
            }
            Condition::In { column, params } => {
                self.column(column);
                self.push(" IN ");
                self.list(params);
            }
            Condition::NotIn { column, params } => {
                self.column(column);
                self.push(" NOT IN ");
                self.list(params);
            }
            Condition::Prefix { column, prefix } => self.prefix(column, prefix),
            Condition::LastInsertId { column } => {
                self.column(column);
                self.push(" = ");
                self.push(self.dialect.last_insert_id().unwrap_or("NULL"));
            }
            Condition::InParent {
                column,
                relation,
                key,
                filter,
            } => {
                // Unqualified names inside the subquery resolve to the parent's columns first.
                self.column(column);
                self.push(" IN (SELECT ");
                self.column(key);
                self.push(" FROM ");
                self.relation(relation, "portico_p");
                self.push(" WHERE ");
                self.condition(&Condition::And(filter.clone()));
                self.push(")");
            }
            Condition::IsNull { column, negated } => {
                self.column(column);
                self.push(if *negated { " IS NOT NULL" } else { " IS NULL" });
            }
            Condition::Or(items) | Condition::And(items) => {
                let (joiner, empty) = match condition {
                    Condition::Or(_) => (" OR ", "1=0"),
                    _ => (" AND ", "1=1"),
                };
                if items.is_empty() {
                    self.push(empty);
                    return;
                }
                self.push("(");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.push(joiner);
                    }
                    self.condition(item);
                }
                self.push(")");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::select::{GroupTerm, Measure};
    use crate::source::ColumnType;

    fn term(column: &str, descending: bool, nullable: bool) -> OrderTerm {
        OrderTerm {
            column: column.into(),
            column_type: ColumnType::Varchar,
            descending,
            nullable,
        }
    }

    fn select(order: Vec<OrderTerm>, after: Option<Vec<Value>>) -> Select {
        Select {
            relation: Relation::Table("dbo.JOBS".into()),
            columns: vec![("JOB_NO".into(), ColumnType::Char(Some(8)))],
            filter: vec![],
            order,
            after,
            limit: 51,
            per_group: None,
        }
    }

    #[test]
    fn identifiers_are_quoted_per_dialect_and_cannot_break_out() {
        assert_eq!(Dialect::Postgres.quote("dbo.JOBS"), "\"dbo\".\"JOBS\"");
        assert_eq!(Dialect::MySql.quote("a`b"), "`a``b`");
        assert_eq!(Dialect::TSql.quote("x]y"), "[x]]y]");
        assert_eq!(Dialect::Sqlite.quote("x\"y"), "\"x\"\"y\"");
    }

    #[test]
    fn the_clock_is_read_on_the_columns_clock_and_not_guessed_for_generic_sql() {
        let sql = |d: Dialect, c| d.clock(c).map(|s| s.sql);
        assert_eq!(
            sql(Dialect::Sqlite, StampClock::Local).as_deref(),
            Some("SELECT datetime('now', 'localtime')")
        );
        assert_eq!(
            sql(Dialect::TSql, StampClock::Utc).as_deref(),
            Some("SELECT SYSUTCDATETIME()")
        );
        assert_eq!(
            sql(Dialect::MySql, StampClock::Local).as_deref(),
            Some("SELECT NOW()")
        );
        assert_eq!(
            sql(Dialect::Postgres, StampClock::Local).as_deref(),
            Some("SELECT LOCALTIMESTAMP")
        );
        assert!(Dialect::Generic.clock(StampClock::Local).is_none());
        assert_eq!(
            Dialect::Postgres.clock(StampClock::Utc).unwrap().columns,
            [ColumnType::Timestamp]
        );
    }

    #[test]
    fn tsql_pages_with_top_and_never_offset() {
        let s = Dialect::TSql.select(&select(vec![term("JOB_NO", false, false)], None));
        assert_eq!(
            s.sql,
            "SELECT TOP (51) [JOB_NO] FROM [dbo].[JOBS] ORDER BY [JOB_NO]"
        );
        assert!(!s.sql.contains("OFFSET"));
    }

    #[test]
    fn tsql_reads_money_exactly_and_oem_text_as_unicode() {
        let mut s = select(vec![term("JOB_NO", false, false)], None);
        s.columns.push(("QUOTE".into(), ColumnType::Money));
        s.columns.push(("NOTE".into(), ColumnType::Oem(Some(30))));
        assert_eq!(
            Dialect::TSql.select(&s).sql,
            "SELECT TOP (51) [JOB_NO], CAST([QUOTE] AS decimal(19,4)) AS [QUOTE], \
             CAST([NOTE] AS nvarchar(30)) AS [NOTE] FROM [dbo].[JOBS] ORDER BY [JOB_NO]"
        );
        assert!(Dialect::Postgres
            .select(&s)
            .sql
            .contains("\"QUOTE\", \"NOTE\""));
    }

    #[test]
    fn floats_are_read_and_compared_as_exact_doubles() {
        let mut s = select(
            vec![OrderTerm {
                column: "FREIGHT".into(),
                column_type: ColumnType::Float,
                descending: true,
                nullable: false,
            }],
            Some(vec![Value::Float(f64::from(97.8f32))]),
        );
        s.columns = vec![("FREIGHT".into(), ColumnType::Float)];
        let st = Dialect::MySql.select(&s);
        assert_eq!(
            st.sql,
            "SELECT CAST(`FREIGHT` AS DOUBLE) FROM `dbo`.`JOBS` \
             WHERE (`FREIGHT` < CAST(? AS DOUBLE)) ORDER BY `FREIGHT` DESC LIMIT 51"
        );
        assert_eq!(
            st.params[0].value,
            Value::Text(b"97.80000305175781".to_vec())
        );
        let st = Dialect::Postgres.select(&s);
        assert!(
            st.sql
                .starts_with("SELECT CAST(\"FREIGHT\" AS double precision) FROM")
                && st.sql.contains("\"FREIGHT\" < CAST(? AS double precision)"),
            "{}",
            st.sql
        );
        // SQLite binds a double exactly, but its driver prints one to 15 digits.
        let st = Dialect::Sqlite.select(&s);
        assert!(
            st.sql.starts_with(
                "SELECT CASE WHEN typeof(\"FREIGHT\") = 'real' THEN printf('%!.17g', \"FREIGHT\") \
                 ELSE \"FREIGHT\" END FROM"
            ) && st.sql.contains("\"FREIGHT\" < ?"),
            "{}",
            st.sql
        );
        assert_eq!(st.params[0].value, Value::Float(f64::from(97.8f32)));
    }

    #[test]
    fn limit_dialects_append_limit_and_generic_only_caps_fetching() {
        let s = Dialect::Sqlite.select(&select(vec![term("JOB_NO", false, false)], None));
        assert!(s.sql.ends_with("ORDER BY \"JOB_NO\" LIMIT 51"), "{}", s.sql);
        let g = Dialect::Generic.select(&select(vec![term("JOB_NO", false, false)], None));
        assert!(!g.sql.contains("LIMIT"));
        assert_eq!(g.max_rows, 51);
    }

    #[test]
    fn postgres_orders_nulls_like_the_other_databases() {
        let s = Dialect::Postgres.select(&select(
            vec![term("DUE", true, true), term("JOB_NO", false, false)],
            None,
        ));
        assert!(s
            .sql
            .ends_with("ORDER BY \"DUE\" DESC NULLS LAST, \"JOB_NO\" LIMIT 51"));
    }

    #[test]
    fn keyset_expands_ties_and_nulls_into_bound_parameters() {
        let s = Dialect::Sqlite.select(&select(
            vec![term("DUE", true, true), term("JOB_NO", false, false)],
            Some(vec![
                Value::Text(b"20240101".to_vec()),
                Value::Text(b"J1".to_vec()),
            ]),
        ));
        assert!(
            s.sql.contains(
                "WHERE ((\"DUE\" < ? OR \"DUE\" IS NULL OR (\"DUE\" = ? AND \"JOB_NO\" > ?)))"
            ),
            "{}",
            s.sql
        );
        assert_eq!(s.params.len(), 3);

        let s = Dialect::Sqlite.select(&select(
            vec![term("DUE", false, true), term("JOB_NO", false, false)],
            Some(vec![Value::Null, Value::Text(b"J1".to_vec())]),
        ));
        assert!(
            s.sql
                .contains("((\"DUE\" IS NULL AND \"JOB_NO\" > ?) OR \"DUE\" IS NOT NULL)"),
            "{}",
            s.sql
        );
    }

    #[test]
    fn prefix_filters_escape_wildcards_and_count_case_on_every_dialect() {
        let mut s = select(vec![], None);
        s.filter.push(Condition::Prefix {
            column: "NAME".into(),
            prefix: b"50%_off![*?".to_vec(),
        });
        let like = Value::Text(b"50!%!_off!!![*?%".to_vec());
        let st = Dialect::Postgres.select(&s);
        assert!(
            st.sql.contains("WHERE (\"NAME\" LIKE ? ESCAPE '!')"),
            "{}",
            st.sql
        );
        assert_eq!(st.params[0].value, like);
        // SQLite's LIKE ignores ASCII case; GLOB does not, and brackets its wildcards.
        let st = Dialect::Sqlite.select(&s);
        assert!(st.sql.contains("WHERE (\"NAME\" GLOB ?)"), "{}", st.sql);
        assert_eq!(
            st.params[0].value,
            Value::Text(b"50%_off![[][*][?]*".to_vec())
        );
        // MariaDB's `_ci` collations: the collated LIKE for the index, then a binary one.
        let st = Dialect::MySql.select(&s);
        assert!(
            st.sql.contains(
                "WHERE ((`NAME` LIKE ? ESCAPE '!' AND `NAME` LIKE CONVERT(? USING utf8mb4) \
                 COLLATE utf8mb4_bin ESCAPE '!'))"
            ),
            "{}",
            st.sql
        );
        assert_eq!((&st.params[0].value, &st.params[1].value), (&like, &like));
        let st = Dialect::TSql.select(&s);
        assert!(
            st.sql.contains(
                "WHERE (([NAME] LIKE ? ESCAPE '!' AND CAST([NAME] AS nvarchar(max)) \
                 COLLATE Latin1_General_BIN2 LIKE ? ESCAPE '!'))"
            ),
            "{}",
            st.sql
        );
        assert_eq!(st.params.len(), 2);
        // What the bound-parameter limit counts for a prefix is what each dialect binds.
        for dialect in [
            Dialect::Sqlite,
            Dialect::Postgres,
            Dialect::MySql,
            Dialect::TSql,
            Dialect::Generic,
        ] {
            assert_eq!(
                dialect.select(&s).params.len(),
                dialect.prefix_parameters(),
                "{dialect:?}"
            );
        }
    }

    fn aggregate(groups: Vec<GroupTerm>, measures: Vec<Measure>) -> Aggregate {
        Aggregate {
            relation: Relation::Table("JOBS".into()),
            filter: vec![],
            groups,
            measures,
            limit: 11,
        }
    }

    #[test]
    fn aggregates_bucket_the_stored_form_per_dialect_and_null_the_sentinels() {
        let due = |column_type, bucket| GroupTerm {
            column: "DUE".into(),
            column_type,
            sentinels: vec![Param {
                value: Value::Int(0),
                column_type: ColumnType::Integer,
            }],
            bucket,
        };
        let sum = |scaled| Measure {
            column: "AMT".into(),
            column_type: ColumnType::Decimal,
            sentinels: vec![],
            kind: MeasureKind::Sum { scaled },
        };
        let by_month = aggregate(
            vec![due(ColumnType::Integer, Bucket::Divide(100))],
            vec![sum(Some(2))],
        );
        assert_eq!(
            Dialect::MySql.aggregate(&by_month).sql,
            "SELECT portico_g0, COUNT(*), SUM(portico_m0) FROM (SELECT CASE WHEN `DUE` IN (?) \
             THEN NULL ELSE `DUE` END DIV 100 AS portico_g0, CAST(ROUND(`AMT` * 100) AS SIGNED) \
             AS portico_m0 FROM `JOBS`) portico_a GROUP BY portico_g0 ORDER BY portico_g0 LIMIT 11"
        );
        let sqlite = Dialect::Sqlite.aggregate(&by_month);
        assert!(
            sqlite.sql.contains(
                "CAST(CASE WHEN \"DUE\" IN (?) THEN NULL ELSE \"DUE\" END AS INTEGER) / 100"
            ) && sqlite.sql.contains("CAST(ROUND(\"AMT\" * 100) AS INTEGER)"),
            "{}",
            sqlite.sql
        );
        assert_eq!(sqlite.params.len(), 1, "each parameter bound once");
        let native = aggregate(
            vec![GroupTerm {
                sentinels: vec![],
                ..due(ColumnType::Date, Bucket::DateText(7))
            }],
            vec![sum(None)],
        );
        let pg = Dialect::Postgres.aggregate(&native).sql;
        assert!(
            pg.contains("to_char(\"DUE\", 'YYYY-MM') AS portico_g0")
                && pg.ends_with("ORDER BY portico_g0 NULLS FIRST LIMIT 11"),
            "{pg}"
        );
        assert!(Dialect::MySql
            .aggregate(&native)
            .sql
            .contains("DATE_FORMAT(`DUE`, '%Y-%m')"));
        assert!(Dialect::TSql
            .aggregate(&native)
            .sql
            .starts_with("SELECT TOP (11) portico_g0"));
        // No group: one row of every row.
        let total = aggregate(vec![], vec![]);
        assert_eq!(
            Dialect::Sqlite.aggregate(&total).sql,
            "SELECT COUNT(*) FROM (SELECT 1 AS portico_one FROM \"JOBS\") portico_a LIMIT 11"
        );
    }

    #[test]
    fn counts_ignore_order_position_and_limit_and_estimates_exist_where_cheap() {
        let mut s = select(
            vec![term("JOB_NO", false, false)],
            Some(vec![Value::Text(b"J1".to_vec())]),
        );
        s.filter.push(Condition::IsNull {
            column: "DUE".into(),
            negated: false,
        });
        assert_eq!(
            Dialect::TSql.count(&s).sql,
            "SELECT COUNT(*) FROM [dbo].[JOBS] WHERE ([DUE] IS NULL)"
        );
        let relation = Relation::Table("dbo.JOBS".into());
        let pg = Dialect::Postgres.estimate(&relation).unwrap();
        assert!(pg.sql.contains("reltuples"));
        assert_eq!(
            pg.params[0].value,
            Value::Text(b"\"dbo\".\"JOBS\"".to_vec())
        );
        assert!(Dialect::MySql.estimate(&relation).is_none());
        assert!(Dialect::Postgres
            .estimate(&Relation::Query("SELECT 1".into()))
            .is_none());
    }
}
