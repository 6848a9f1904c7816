//! Row policies on change events against real databases: the in-memory evaluator a feed uses
//! agrees with the SQL `GET` runs wherever it decides, on SQLite, PostgreSQL and MariaDB (under
//! `utf8mb4_general_ci`, which ignores case and accents, and `utf8mb4_unicode_ci`, which also
//! ignores control characters), and a restricted feed never carries an event for a row its
//! `GET` hides.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use portico::catalog::access::evaluate::{evaluate, TextRules, Verdict};
use portico::source::odbc::{OdbcSettings, OdbcSource};
use portico::source::select::{CmpOp, Condition, OrderTerm, Relation, Select};
use portico::source::{ColumnType, Dialect, Param, Source, Value};
use serde_json::json;

use crate::auth::{hs_token, SECRET};
use crate::changes::quote_words;
use crate::fixture::Kind;
use crate::harness::{execute, fresh_database, Portico};
use crate::idp::{AUDIENCE, ISSUER};

/// A row of `PROBE`: `ID`, `NAME`, `CODE`, `QTY`.
type Row = (i64, Option<&'static str>, Option<&'static str>, Option<i64>);

/// Names differing only in case, accents and trailing blanks; characters collations treat
/// their own ways (`ß`, `-`, control characters); a trailing tab and a trailing CR, which are
/// not padding; NULLs; codes in a blank-padded CHAR(8) (row 17's left unpadded where the engine
/// lets it, as SQLite does); numbers.
const ROWS: [Row; 20] = [
    (1, Some("x"), Some("C00002"), Some(1)),
    (2, Some("X"), Some("c00002"), Some(2)),
    (3, Some("é"), Some("C00003"), Some(3)),
    (4, Some("e"), None, Some(4)),
    (5, Some("É"), Some("C00002"), None),
    (6, Some("x "), Some("C00001"), Some(5)),
    (7, Some("abc"), Some("C00001"), Some(6)),
    (8, Some("ABC"), Some("C00004"), Some(7)),
    (9, Some("Abd"), Some("C00004"), Some(8)),
    (10, None, Some("C00005"), Some(9)),
    (11, Some("b"), Some("C00005"), Some(10)),
    (12, Some("y"), Some("C00006"), Some(11)),
    (13, Some("ß"), Some("C00006"), Some(12)),
    (14, Some("s"), Some("C00007"), Some(13)),
    (15, Some("ss"), Some("C00007"), Some(14)),
    (16, Some("a-c"), Some("C00008"), Some(15)),
    (17, Some("x\u{1}"), Some("C00002"), Some(16)),
    (18, Some("x\t"), Some("C00002\t"), Some(17)),
    (19, Some("x\r"), Some("C00002\r"), Some(18)),
    (20, Some("\u{1}abc"), Some("C00009"), Some(19)),
];

/// The row whose CODE is stored without its padding (SQLite keeps it so).
const UNPADDED: i64 = 17;

fn varchar(text: &str) -> Param {
    Param {
        value: Value::Text(text.as_bytes().to_vec()),
        column_type: ColumnType::Varchar,
    }
}

/// A `char(8)` operand as the catalog binds it: padded to the width.
fn char8(text: &str) -> Param {
    Param {
        value: Value::Text(format!("{text:<8}").into_bytes()),
        column_type: ColumnType::Char(Some(8)),
    }
}

fn int(i: i64) -> Param {
    Param {
        value: Value::Int(i),
        column_type: ColumnType::Integer,
    }
}

fn compare(column: &str, op: CmpOp, param: Param) -> Condition {
    Condition::Compare {
        column: column.into(),
        op,
        param,
    }
}

/// The conditions, each with the text operands its answer may depend on.
fn conditions() -> Vec<(Condition, Vec<&'static str>)> {
    use CmpOp::*;
    let name = |op, text: &'static str| (compare("NAME", op, varchar(text)), vec![text]);
    let name_in = |texts: &[&'static str], not: bool| {
        let (column, params) = (
            "NAME".to_string(),
            texts.iter().map(|t| varchar(t)).collect(),
        );
        let condition = if not {
            Condition::NotIn { column, params }
        } else {
            Condition::In { column, params }
        };
        (condition, texts.to_vec())
    };
    let null = |negated| {
        let column = "NAME".to_string();
        (Condition::IsNull { column, negated }, vec![])
    };
    vec![
        name(Eq, "x"),
        name(Ne, "x"),
        name(Eq, "e"),
        name(Ne, "é"),
        name(Eq, "s"),
        name(Lt, "b"),
        name(Gt, "b"),
        name(Gte, "abc"),
        name_in(&["x", "abc"], false),
        name_in(&["ss"], false),
        name_in(&["x", "e"], true),
        (
            Condition::Prefix {
                column: "NAME".into(),
                prefix: b"ab".to_vec(),
            },
            vec!["ab"],
        ),
        null(false),
        null(true),
        (
            Condition::Or(vec![
                compare("NAME", Eq, varchar("x")),
                compare("QTY", Gt, int(8)),
            ]),
            vec!["x"],
        ),
        (
            Condition::And(vec![
                compare("NAME", Ne, varchar("x")),
                compare("QTY", Lt, int(5)),
            ]),
            vec!["x"],
        ),
        (compare("CODE", Eq, char8("c00002")), vec!["c00002"]),
        (compare("CODE", Ne, char8("C00002")), vec!["C00002"]),
        // The common policy shape: a claim's code, padded as the catalog binds it.
        (compare("CODE", Eq, char8("C00002")), vec!["C00002"]),
        (compare("CODE", Gte, char8("C00002")), vec!["C00002"]),
        name(Eq, "abc"),
        name(Lte, "x"),
        (compare("QTY", Eq, int(3)), vec![]),
        (compare("QTY", Gt, int(2)), vec![]),
    ]
}

/// The letters and digits of printable ASCII text in lower case (case and punctuation are
/// what collations may ignore); `None` for a control or non-ASCII character, which collations
/// treat their own ways.
fn folded(text: &str) -> Option<String> {
    text.chars()
        .filter(|c| !(*c == ' ' || c.is_ascii_punctuation()))
        .map(|c| c.is_ascii_alphanumeric().then(|| c.to_ascii_lowercase()))
        .collect()
}

/// Whether a collation or a padding rule may decide `stored = operand` differently from
/// bytes: they differ, but only in trailing blanks, case or punctuation, in the number or
/// order of the same letters and digits (zeros aside: ICU's numeric ordering, Hungarian
/// contractions), or one holds a character folding leaves alone.
fn collation_sensitive(stored: &str, operand: &str) -> bool {
    let trimmed = |t: &str| t.trim_end_matches(' ').to_string();
    let letters = |f: String| -> std::collections::BTreeSet<char> {
        f.chars().filter(|&c| c != '0').collect()
    };
    stored != operand
        && (trimmed(stored) == trimmed(operand)
            || match (folded(stored), folded(operand)) {
                (Some(a), Some(b)) => letters(a) == letters(b),
                _ => true,
            })
}

/// Whether a collation may decide `stored LIKE 'prefix%'` differently from bytes: LIKE may
/// ignore case, and text with a control or non-ASCII character is the collation's to match.
fn prefix_sensitive(stored: &str, prefix: &str) -> bool {
    let plain = |t: &str| t.chars().all(|c| c == ' ' || c.is_ascii_graphic());
    !stored.starts_with(prefix)
        && (!plain(stored)
            || stored
                .to_ascii_lowercase()
                .starts_with(&prefix.to_ascii_lowercase()))
}

/// Whether `condition` orders text, which the evaluator decides only between equal texts.
fn orders_text(condition: &Condition) -> bool {
    matches!(
        condition,
        Condition::Compare { op: CmpOp::Lt | CmpOp::Lte | CmpOp::Gt | CmpOp::Gte, param, .. }
            if matches!(param.value, Value::Text(_))
    )
}

/// Runs every condition through the evaluator and the database on every row of `PROBE`
/// (declared `COLLATE collation` on MariaDB when given).
async fn evaluator_agrees_with(kind: Kind, collation: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = fresh_database(kind, dir.path());
    let sql = |text: &str| {
        let text = match kind {
            Kind::Postgres => quote_words(text, &["PROBE", "ID", "NAME", "CODE", "QTY"]),
            _ => text.to_string(),
        };
        execute(&connection_string, &text);
    };
    let collated = collation.map_or(String::new(), |c| {
        format!(" DEFAULT CHARSET = utf8mb4 COLLATE = {c}")
    });
    sql(&format!("CREATE TABLE PROBE (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(20), CODE CHAR(8), QTY INTEGER){collated}"));
    let literal = |text: Option<&str>, width: usize| {
        text.map_or("NULL".to_string(), |t| format!("'{t:<width$}'"))
    };
    for (id, name, code, qty) in ROWS {
        sql(&format!(
            "INSERT INTO PROBE VALUES ({id}, {}, {}, {})",
            literal(name, 0),
            // Blank-padded as CHAR holds it (SQLite does not pad by itself).
            literal(code, 8),
            qty.map_or("NULL".to_string(), |q| q.to_string()),
        ));
    }
    // CHAR pads it again on PostgreSQL and MariaDB; SQLite keeps it as written.
    let (_, _, unpadded, _) = ROWS[(UNPADDED - 1) as usize];
    sql(&format!(
        "UPDATE PROBE SET CODE = {} WHERE ID = {UNPADDED}",
        literal(unpadded, 0)
    ));
    let dialect = match kind {
        Kind::Postgres => Dialect::Postgres,
        Kind::MariaDb => Dialect::MySql,
        _ => Dialect::Sqlite,
    };
    let source = OdbcSource::new(
        OdbcSettings {
            name: "probe".into(),
            connection_string: connection_string.clone(),
            dialect,
            max_concurrency: 1,
            queue_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(10),
            max_text_bytes: 4000,
            health_statement: None,
            row_by_row: false,
        },
        &Default::default(),
    );
    let columns = vec![
        ("ID".to_string(), ColumnType::Integer),
        ("NAME".to_string(), ColumnType::Varchar),
        ("CODE".to_string(), ColumnType::Char(Some(8))),
        ("QTY".to_string(), ColumnType::Integer),
    ];
    let select = |filter: Vec<Condition>| Select {
        relation: Relation::Table("PROBE".into()),
        columns: columns.clone(),
        filter,
        order: vec![OrderTerm {
            column: "ID".into(),
            column_type: ColumnType::Integer,
            descending: false,
            nullable: false,
        }],
        after: None,
        limit: 100,
        per_group: None,
    };
    // The rows as a feed reads them.
    let rows = source
        .query(dialect.select(&select(Vec::new())))
        .await
        .unwrap();
    assert_eq!(rows.len(), ROWS.len());
    let rules = TextRules::of(dialect);
    // Conditions are told apart by their debug text (they have no `PartialEq`).
    let common = format!("{:?}", compare("CODE", CmpOp::Eq, char8("C00002")));
    let (mut decided, mut untold) = (0, 0);
    for (condition, operands) in conditions() {
        // What GET returns: the condition rendered through the source's dialect.
        let returned: BTreeSet<i64> = source
            .query(dialect.select(&select(vec![condition.clone()])))
            .await
            .unwrap_or_else(|e| panic!("{condition:?}: {e}"))
            .iter()
            .map(|row| match row[0] {
                Value::Int(id) => id,
                ref other => panic!("{other:?}"),
            })
            .collect();
        for (row, &(id, name, _, _)) in rows.iter().zip(&ROWS) {
            let column = |c: &str| {
                columns
                    .iter()
                    .position(|(n, _)| n == c)
                    .map(|i| row[i].clone())
            };
            let verdict = evaluate(&condition, rules, &column);
            let database = returned.contains(&id);
            match verdict {
                Verdict::Holds | Verdict::Fails => {
                    decided += 1;
                    assert_eq!(
                        verdict == Verdict::Holds,
                        database,
                        "{kind:?}: row {id} ({name:?}) under {condition:?}: the evaluator says \
                         {verdict:?}, the database {}",
                        if database { "returns it" } else { "hides it" }
                    );
                }
                Verdict::Unknown(_) => {
                    untold += 1;
                    let code = ROWS[(id - 1) as usize].2;
                    let texts = [name, code].into_iter().flatten();
                    assert!(
                        orders_text(&condition)
                            || texts.into_iter().any(|t| operands.iter().any(|o| {
                                match condition {
                                    Condition::Prefix { .. } => prefix_sensitive(t, o),
                                    _ => collation_sensitive(t, o),
                                }
                            })),
                        "{kind:?}: row {id} ({name:?}) under {condition:?} is untold, though no \
                         collation could decide it differently from bytes"
                    );
                }
            }
            // The common policy shape is decided on every row but those whose code differs
            // from the operand in case only, holds a control character, or lacks the padding
            // the operand has (SQLite keeps it so).
            if format!("{condition:?}") == common {
                let code = ROWS[(id - 1) as usize].2.unwrap_or_default();
                let case_only = code != "C00002" && code.eq_ignore_ascii_case("C00002");
                let unpadded = kind == Kind::Sqlite && id == UNPADDED;
                let expected = case_only || code.chars().any(char::is_control) || unpadded;
                assert_eq!(
                    matches!(verdict, Verdict::Unknown(_)),
                    expected,
                    "{kind:?}: row {id} ({code:?}) under {condition:?}: {verdict:?}"
                );
            }
        }
    }
    eprintln!("{kind:?} {collation:?}: {decided} decided, {untold} untold");
    assert!(untold > 0, "{decided} decided, {untold} untold");
}

#[tokio::test]
async fn the_evaluator_agrees_with_sqlite() {
    evaluator_agrees_with(Kind::Sqlite, None).await
}

#[tokio::test]
async fn the_evaluator_agrees_with_postgres() {
    evaluator_agrees_with(Kind::Postgres, None).await
}

#[tokio::test]
async fn the_evaluator_agrees_with_mariadb() {
    evaluator_agrees_with(Kind::MariaDb, Some("utf8mb4_general_ci")).await
}

#[tokio::test]
async fn the_evaluator_agrees_with_mariadb_under_a_unicode_collation() {
    evaluator_agrees_with(Kind::MariaDb, Some("utf8mb4_unicode_ci")).await
}

/// `status <> 'x'` on MariaDB's case-insensitive collation hides a row holding `X` from `GET`;
/// the restricted feed must not carry its event either (a byte comparison would), and the
/// withheld event is counted.
#[tokio::test]
async fn a_restricted_feed_never_shows_a_row_get_hides_on_a_case_insensitive_collation() {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = fresh_database(Kind::MariaDb, dir.path());
    execute(
        &connection_string,
        "CREATE TABLE PARCELS (ID VARCHAR(6) NOT NULL PRIMARY KEY, STATUS VARCHAR(1) NOT NULL)",
    );
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[auth]
development = true
issuer = "{ISSUER}"
audience = "{AUDIENCE}"

[[auth.keys]]
algorithm = "HS256"
secret = "{SECRET}"

[sources.collated]
kind = "odbc"
dialect = "mysql"
connection_string = "{connection_string}"

[state]
path = "{state}"

[versions.v1.resources.parcels]
source = "collated"
table = "PARCELS"
key = ["id"]
read_scope = "parcels:read"
changes = {{ strategy = "snapshot_diff", poll_interval = "200ms" }}
row_policies = [{{ name = "not-x", unless_scope = "parcels:all", condition = "STATUS <> 'x'" }}]

[versions.v1.resources.parcels.fields]
id = {{ column = "ID", type = "string", column_type = "varchar(6)" }}
status = {{ column = "STATUS", type = "string", column_type = "varchar(1)" }}
"#,
        state = dir.path().join("state.sqlite3").display(),
    );
    let app = Portico::spawn(&config).await;
    let all = hs_token("staff", json!({"scope": "parcels:read parcels:all"}));
    let restricted = hs_token("portal", json!({"scope": "parcels:read"}));
    // The feed's first poll takes the table as it is; the rows below are changes.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app
        .get_text("/metrics")
        .await
        .lines()
        .any(|l| l.starts_with("portico_change_poll_lag_seconds{") && !l.ends_with(" -1"))
    {
        assert!(Instant::now() < deadline, "the feed never polled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    execute(
        &connection_string,
        "INSERT INTO PARCELS VALUES ('P1', 'X'), ('P2', 'o')",
    );
    let events = loop {
        let answer = app.get_as("/v1/parcels/changes", Some(&all)).await;
        let data = answer.body["data"].as_array().cloned().unwrap_or_default();
        if data.len() == 2 {
            break data;
        }
        assert!(Instant::now() < deadline, "no events: {}", answer.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(events.iter().all(|e| e["type"] == "parcels.created"));

    // GET, which the database answers under its collation, hides P1 ('X' <> 'x' is false).
    let listed = app.get_as("/v1/parcels", Some(&restricted)).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let keys: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(keys, ["P2"], "{}", listed.body);
    assert_eq!(
        app.get_as("/v1/parcels/P1", Some(&restricted)).await.status,
        404
    );

    // So does the feed.
    let feed = app.get_as("/v1/parcels/changes", Some(&restricted)).await;
    assert_eq!(feed.status, 200, "{}", feed.body);
    let keys: Vec<&str> = feed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["data"]["key"].as_str())
        .collect();
    assert_eq!(keys, ["P2"], "{}", feed.body);
    let withheld = app
        .get_text("/metrics")
        .await
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "portico_change_events_withheld_total{feed=\"collated.PARCELS\",reason=\"collation\"} ",
            )
            .and_then(|n| n.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    assert!(withheld >= 1.0, "the withheld event was not counted");
}
