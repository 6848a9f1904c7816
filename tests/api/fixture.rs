//! The legacy fixture every backend gets: the same rows, written the way old programs write
//! them, and the API values Portico must serve for them (the model the tests compare with).

use serde_json::{json, Value};

/// The database behind a suite run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SQLite through the SQLite3 ODBC driver.
    Sqlite,
    /// PostgreSQL through psqlODBC.
    Postgres,
    /// MariaDB through MariaDB Connector/ODBC.
    MariaDb,
    /// The SQLite database again, through the generic dialect (no LIMIT, portable NULL order).
    Generic,
    /// A real SQL Server at `MSSQL_URL`, natively through tiberius.
    Mssql,
}

impl Kind {
    /// Dialect name in configuration.
    pub fn dialect(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
            Kind::MariaDb => "mysql",
            Kind::Generic => "generic",
            Kind::Mssql => "tsql",
        }
    }

    /// The database that stores the fixture.
    pub fn storage(self) -> Kind {
        match self {
            Kind::Generic => Kind::Sqlite,
            other => other,
        }
    }

    /// Quotes an identifier for fixture SQL.
    pub fn quote(self, name: &str) -> String {
        match self {
            Kind::MariaDb => format!("`{name}`"),
            Kind::Mssql => format!("[{name}]"),
            _ => format!("\"{name}\""),
        }
    }

    /// Whether DECIMAL columns store every digit (SQLite keeps DECIMAL as a double).
    pub fn exact_decimals(self) -> bool {
        self.storage() != Kind::Sqlite
    }
}

/// The big amount that must come back with every digit.
pub const BIG_AMOUNT: &str = "12345678901234.56";

/// One legacy job row.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub customer: String,
    pub status: &'static str,
    /// Raw CHAR(8): `YYYYMMDD`, `00000000` or blank.
    pub due: String,
    /// Integer YYYYMMDD.
    pub ordered: u32,
    /// CYYMMDD, 0 when not shipped.
    pub shipped: u32,
    /// MM/DD/YYYY or blank.
    pub closed: String,
    pub amount: Option<String>,
    pub priority: Option<i64>,
    pub rush: bool,
    pub description: String,
    pub created: String,
    pub updated: String,
}

fn add_days(y: u32, m: u32, d: u32, days: u32) -> (u32, u32, u32) {
    let (mut y, mut m, mut d) = (y, m, d);
    for _ in 0..days {
        let len = match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            _ if y % 4 == 0 => 29,
            _ => 28,
        };
        d += 1;
        if d > len {
            d = 1;
            m += 1;
            if m > 12 {
                m = 1;
                y += 1;
            }
        }
    }
    (y, m, d)
}

/// The fixture rows: ties and NULLs in sort columns, every sentinel, both CYY centuries.
pub fn jobs(kind: Kind) -> Vec<Job> {
    let mut out = Vec::new();
    for i in 0..150u32 {
        let (dy, dm, dd) = add_days(2024, 1, 1, (i * 3) % 50);
        let due = match i % 10 {
            0 => "00000000".to_string(),
            5 => String::new(),
            _ => format!("{dy:04}{dm:02}{dd:02}"),
        };
        let shipped = match (i % 4, i % 2) {
            (0, _) => 0,
            (_, 0) => 991_200 + (i % 28) + 1,
            _ => 1_240_100 + (i % 28) + 1,
        };
        let status = ["O", "H", "C"][(i % 3) as usize];
        let closed = if status == "C" {
            format!("{:02}/{:02}/2024", 1 + i % 12, 1 + i % 28)
        } else {
            String::new()
        };
        let amount = match i {
            1 if kind.exact_decimals() => Some(BIG_AMOUNT.to_string()),
            1 => Some("1234.56".to_string()),
            _ if i % 9 == 0 => None,
            _ => Some(format!("{}.{:02}", (i * 37) % 1000, i % 100)),
        };
        let (cy, cm, cd) = add_days(2022, 1, 1, i);
        out.push(Job {
            id: format!("J{i:04}"),
            customer: format!("C{:03}", i % 7),
            status,
            due,
            ordered: 20230100 + (i % 28) + 1,
            shipped,
            closed,
            amount,
            priority: if i % 5 == 0 {
                None
            } else {
                Some(i64::from(i % 3) + 1)
            },
            rush: i % 4 == 0,
            description: if i % 6 == 0 {
                format!("Café {i}")
            } else {
                format!("Part {i}")
            },
            created: format!("{cy:04}-{cm:02}-{cd:02}"),
            updated: format!("2024-03-01 {:02}:{:02}:00", 10 + i / 60, i % 60),
        });
    }
    let mut comma = out[7].clone();
    comma.id = "J,COMMA".into();
    out.push(comma);
    out
}

fn iso_from_digits(d: &str) -> Value {
    if d.len() != 8 || d == "00000000" {
        return Value::Null;
    }
    json!(format!("{}-{}-{}", &d[0..4], &d[4..6], &d[6..8]))
}

impl Job {
    /// What the API must serve for this row.
    pub fn api(&self) -> Value {
        let shipped = if self.shipped == 0 {
            Value::Null
        } else {
            let year = 1900 + (self.shipped / 1_000_000) * 100 + (self.shipped / 10_000) % 100;
            json!(format!(
                "{year:04}-{:02}-{:02}",
                (self.shipped / 100) % 100,
                self.shipped % 100
            ))
        };
        let closed = if self.closed.is_empty() {
            Value::Null
        } else {
            json!(format!(
                "{}-{}-{}",
                &self.closed[6..10],
                &self.closed[0..2],
                &self.closed[3..5]
            ))
        };
        json!({
            "id": self.id,
            "customer_id": self.customer,
            "status": match self.status { "O" => "open", "H" => "held", _ => "closed" },
            "due_on": iso_from_digits(&self.due),
            "ordered_on": iso_from_digits(&self.ordered.to_string()),
            "shipped_on": shipped,
            "closed_on": closed,
            "amount": self.amount,
            "priority": self.priority,
            "rush": self.rush,
            "description": self.description,
            "created_on": self.created,
            "updated_at": self.updated.replacen(' ', "T", 1),
        })
    }
}

fn text(kind: Kind, value: &str, pad: Option<usize>) -> String {
    let padded = match (kind, pad) {
        // SQLite keeps CHAR values as written: store them padded, as the old programs did.
        (Kind::Sqlite, Some(n)) => format!("{value:<n$}"),
        _ => value.to_string(),
    };
    format!("'{}'", padded.replace('\'', "''"))
}

fn legacy_text(kind: Kind, value: &str) -> String {
    if kind.storage() != Kind::Sqlite || value.is_ascii() {
        return text(kind, value, None);
    }
    // The SQLite fixture stores Windows-1252 bytes, like a 1990s program would.
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(value);
    let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
    format!("CAST(X'{hex}' AS TEXT)")
}

/// DDL and inserts that build the fixture.
pub fn sql(kind: Kind) -> Vec<String> {
    let q = |n: &str| kind.quote(n);
    let timestamp = match kind {
        Kind::MariaDb => "DATETIME",
        // T-SQL's TIMESTAMP is rowversion.
        Kind::Mssql => "DATETIME2(0)",
        _ => "TIMESTAMP",
    };
    let mut statements = vec![
        format!(
            "CREATE TABLE {} ({} CHAR(8) NOT NULL PRIMARY KEY, {} CHAR(6) NOT NULL, {} CHAR(1) NOT NULL, \
             {} CHAR(8) NOT NULL, {} INTEGER NOT NULL, {} INTEGER NOT NULL, {} VARCHAR(10) NOT NULL, \
             {} DECIMAL(17,2), {} INTEGER, {} CHAR(1) NOT NULL, {} VARCHAR(40), {} DATE NOT NULL, {} {timestamp} NOT NULL)",
            q("JOBS"), q("JOB_NO"), q("CUST_NO"), q("STATUS"), q("DUE_DT"), q("ORDER_DT"), q("SHIP_DT"),
            q("CLOSE_DT"), q("AMOUNT"), q("PRIORITY"), q("RUSH"), q("DESCR"), q("CREATED"), q("UPD_TS")
        ),
        format!(
            "CREATE TABLE {} ({} CHAR(8) NOT NULL, {} INTEGER NOT NULL, {} CHAR(6) NOT NULL, {} DECIMAL(7,2) NOT NULL, PRIMARY KEY ({}, {}))",
            q("OPS"), q("JOB_NO"), q("SEQ"), q("WORK_CTR"), q("HOURS"), q("JOB_NO"), q("SEQ")
        ),
    ];
    let all = jobs(kind);
    for chunk in all.chunks(50) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|j| {
                format!(
                    "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                    text(kind, &j.id, Some(8)),
                    text(kind, &j.customer, Some(6)),
                    text(kind, j.status, Some(1)),
                    text(kind, &j.due, Some(8)),
                    j.ordered,
                    j.shipped,
                    text(kind, &j.closed, None),
                    j.amount.clone().unwrap_or_else(|| "NULL".into()),
                    j.priority.map_or("NULL".into(), |p| p.to_string()),
                    text(kind, if j.rush { "Y" } else { "N" }, Some(1)),
                    legacy_text(kind, &j.description),
                    text(kind, &j.created, None),
                    text(kind, &j.updated, None),
                )
            })
            .collect();
        statements.push(format!(
            "INSERT INTO {} VALUES {}",
            q("JOBS"),
            rows.join(", ")
        ));
    }
    let ops: Vec<String> = ops()
        .iter()
        .map(|(job, seq, ctr, hours)| {
            format!(
                "({}, {seq}, {}, {hours})",
                text(kind, job, Some(8)),
                text(kind, ctr, Some(6))
            )
        })
        .collect();
    statements.push(format!(
        "INSERT INTO {} VALUES {}",
        q("OPS"),
        ops.join(", ")
    ));
    statements
}

/// Operations: two per job for a few jobs, including the job whose key holds a comma.
pub fn ops() -> Vec<(String, i64, String, String)> {
    let mut out = Vec::new();
    for job in ["J0003", "J0004", "J,COMMA"] {
        for (seq, ctr) in [(10, "SAW"), (20, "LATHE")] {
            out.push((
                job.to_string(),
                seq,
                ctr.to_string(),
                format!("{}.25", seq / 10),
            ));
        }
    }
    out
}

/// The Portico configuration for this fixture.
pub fn config(kind: Kind, connection_string: &str, source_extra: &str) -> String {
    let encoding = if kind.storage() == Kind::Sqlite {
        ", encoding = \"windows-1252\""
    } else {
        ""
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 2

[sources.legacy]
{kind_lines}
connection_string = "{cs}"
{source_extra}

[versions.v1.resources.jobs]
source = "legacy"
table = "JOBS"
key = ["id"]
anonymous = true
max_limit = 100

[versions.v1.resources.jobs.fields]
id = {{ column = "JOB_NO", type = "string", column_type = "char(8)" }}
customer_id = {{ column = "CUST_NO", type = "string", column_type = "char(6)" }}
status = {{ column = "STATUS", type = "string", column_type = "char(1)", codes = {{ O = "open", H = "held", C = "closed" }} }}
due_on = {{ column = "DUE_DT", type = "date", format = "yyyymmdd", null_values = ["00000000", ""] }}
ordered_on = {{ column = "ORDER_DT", type = "date", format = "yyyymmdd", column_type = "integer" }}
shipped_on = {{ column = "SHIP_DT", type = "date", format = "cyymmdd", null_values = ["0"] }}
closed_on = {{ column = "CLOSE_DT", type = "date", format = "mm/dd/yyyy", null_values = [""] }}
amount = {{ column = "AMOUNT", type = "decimal", scale = 2 }}
priority = {{ column = "PRIORITY", type = "integer" }}
rush = {{ column = "RUSH", type = "boolean", column_type = "char(1)", true_value = "Y", false_value = "N" }}
description = {{ column = "DESCR", type = "string"{encoding} }}
created_on = {{ column = "CREATED", type = "date" }}
updated_at = {{ column = "UPD_TS", type = "datetime" }}

[versions.v1.resources.operations]
source = "legacy"
table = "OPS"
key = ["job_id", "seq"]
anonymous = true
parent = {{ resource = "jobs", field = "job_id" }}

[versions.v1.resources.operations.fields]
job_id = {{ column = "JOB_NO", type = "string", column_type = "char(8)" }}
seq = {{ column = "SEQ", type = "integer" }}
work_center = {{ column = "WORK_CTR", type = "string", column_type = "char(6)" }}
hours = {{ column = "HOURS", type = "decimal", scale = 2 }}
"#,
        kind_lines = match kind {
            Kind::Mssql => "kind = \"mssql\"".to_string(),
            _ => format!("kind = \"odbc\"\ndialect = \"{}\"", kind.dialect()),
        },
        cs = connection_string,
    )
}
