//! The fixture against the real client: raw tiberius connects, queries and decodes.

use super::*;
use std::future::Future;
use std::time::Duration;
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime2, DateTimeOffset, Time};
use tiberius::xml::XmlData;
use tiberius::{Client, ColumnData, Config, Uuid};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

type TestResult = Result<(), Box<dyn std::error::Error>>;
type TdsClient = Client<Compat<TcpStream>>;

const GUID: &str = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
/// 2024-02-29 in days since 0001-01-01 (date, datetime2) and since 1900-01-01 (datetime).
const DAYS_0001: u32 = 738_944;
const DAYS_1900: i32 = 45_349;

/// A hung fixture must fail the test, not stall the suite.
async fn bounded(test: impl Future<Output = TestResult>) -> TestResult {
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .map_err(|_| "test timed out")?
}

async fn connect(fixture: &TdsFixture) -> Result<TdsClient, Box<dyn std::error::Error>> {
    let config = Config::from_ado_string(&fixture.ado_string())?;
    let tcp = TcpStream::connect(config.get_addr()).await?;
    tcp.set_nodelay(true)?;
    Ok(Client::connect(config, tcp.compat_write()).await?)
}

fn one_set(columns: Vec<Column>, rows: Vec<Vec<Cell>>) -> Reply {
    Reply::Rows(vec![ResultSet { columns, rows }])
}

fn is_null(data: &ColumnData<'_>) -> bool {
    matches!(
        data,
        ColumnData::U8(None)
            | ColumnData::I16(None)
            | ColumnData::I32(None)
            | ColumnData::I64(None)
            | ColumnData::F32(None)
            | ColumnData::F64(None)
            | ColumnData::Bit(None)
            | ColumnData::String(None)
            | ColumnData::Guid(None)
            | ColumnData::Binary(None)
            | ColumnData::Numeric(None)
            | ColumnData::Xml(None)
            | ColumnData::DateTime(None)
            | ColumnData::SmallDateTime(None)
            | ColumnData::Time(None)
            | ColumnData::Date(None)
            | ColumnData::DateTime2(None)
            | ColumnData::DateTimeOffset(None)
    )
}

fn long_text() -> String {
    // Over 8000 bytes of UTF-16: several PLP chunks and packets.
    format!("{}Ünïcödé ✓", "x".repeat(5000))
}

fn every_type() -> Vec<(Column, Cell)> {
    use Collation::Cp1252;
    vec![
        (column("bit", SqlType::Bit), Cell::Bool(true)),
        (column("tinyint", SqlType::TinyInt), Cell::Int(200)),
        (column("smallint", SqlType::SmallInt), Cell::Int(-300)),
        (column("int", SqlType::Int), Cell::Int(123_456)),
        (column("bigint", SqlType::BigInt), Cell::Int(-9_000_000_000)),
        (column("real", SqlType::Real), Cell::Float(1.5)),
        (column("float", SqlType::Float), Cell::Float(2.25)),
        (
            column("decimal", SqlType::Decimal(10, 2)),
            Cell::Decimal("12.50"),
        ),
        (
            column("numeric", SqlType::Numeric(20, 4)),
            Cell::Decimal("-123456789012.3456"),
        ),
        (column("money", SqlType::Money), Cell::Decimal("12.50")),
        (
            column("smallmoney", SqlType::SmallMoney),
            Cell::Decimal("-3.25"),
        ),
        (
            column("char", SqlType::Char(6, Cp1252)),
            Cell::Text("Café".into()),
        ),
        (
            column("varchar", SqlType::VarChar(20, Cp1252)),
            Cell::Text("Café".into()),
        ),
        (
            column("varcharmax", SqlType::VarCharMax(Cp1252)),
            Cell::Text("Crème brûlée".into()),
        ),
        (
            column("text", SqlType::Text(Cp1252)),
            Cell::Text("Ñandú".into()),
        ),
        (column("nchar", SqlType::NChar(5)), Cell::Text("äb".into())),
        (
            column("nvarchar", SqlType::NVarChar(50)),
            Cell::Text("Ünïcödé ✓".into()),
        ),
        (
            column("nvarcharmax", SqlType::NVarCharMax),
            Cell::Text(long_text()),
        ),
        (
            column("ntext", SqlType::NText),
            Cell::Text("ntext ✓".into()),
        ),
        (column("date", SqlType::Date), Cell::Date("2024-02-29")),
        (
            column("time", SqlType::Time(7)),
            Cell::Time("13:45:30.1234567"),
        ),
        (
            column("datetime", SqlType::DateTime),
            Cell::DateTime("2024-02-29 13:45:30.123"),
        ),
        (
            column("smalldatetime", SqlType::SmallDateTime),
            Cell::DateTime("2024-02-29 13:45"),
        ),
        (
            column("datetime2", SqlType::DateTime2(3)),
            Cell::DateTime("2024-02-29 13:45:30.123"),
        ),
        (
            column("datetimeoffset", SqlType::DateTimeOffset(7)),
            Cell::DateTimeOffset("2024-02-29 13:45:30.1234567 +01:00"),
        ),
        (column("guid", SqlType::UniqueIdentifier), Cell::Guid(GUID)),
        (
            column("binary", SqlType::Binary(4)),
            Cell::Bytes(vec![1, 2]),
        ),
        (
            column("varbinary", SqlType::VarBinary(10)),
            Cell::Bytes(vec![0xDE, 0xAD]),
        ),
        (
            column("varbinarymax", SqlType::VarBinaryMax),
            Cell::Bytes(vec![7; 9000]),
        ),
        (column("image", SqlType::Image), Cell::Bytes(vec![1, 2, 3])),
        (
            column("rowversion", SqlType::RowVersion),
            Cell::Bytes(vec![0, 0, 0, 0, 0, 0, 0x07, 0xD1]),
        ),
        (
            column("xml", SqlType::Xml),
            Cell::Text("<a b=\"1\">ü</a>".into()),
        ),
    ]
}

#[tokio::test]
async fn every_type_round_trips_through_tiberius() -> TestResult {
    bounded(async {
        let (columns, values): (Vec<Column>, Vec<Cell>) = every_type().into_iter().unzip();
        let nulls = vec![Cell::Null; columns.len()];
        let reply = one_set(columns.clone(), vec![values, nulls]);
        let fixture = TdsFixture::start("13.0.5026.0", move |_| reply.clone()).await;
        let mut client = connect(&fixture).await?;
        let rows = client
            .query("SELECT * FROM every_type", &[])
            .await?
            .into_first_result()
            .await?;
        assert_eq!(rows.len(), 2);
        let row = &rows[0];
        let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
        let expected: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, expected);

        assert_eq!(row.get::<bool, _>("bit"), Some(true));
        assert_eq!(row.get::<u8, _>("tinyint"), Some(200));
        assert_eq!(row.get::<i16, _>("smallint"), Some(-300));
        assert_eq!(row.get::<i32, _>("int"), Some(123_456));
        assert_eq!(row.get::<i64, _>("bigint"), Some(-9_000_000_000));
        assert_eq!(row.get::<f32, _>("real"), Some(1.5));
        assert_eq!(row.get::<f64, _>("float"), Some(2.25));
        let decimal = row.get::<Numeric, _>("decimal").ok_or("decimal")?;
        assert_eq!(decimal.to_string(), "12.50");
        let numeric = row.get::<Numeric, _>("numeric").ok_or("numeric")?;
        assert_eq!(numeric.to_string(), "-123456789012.3456");
        // tiberius decodes money as f64.
        assert_eq!(row.get::<f64, _>("money"), Some(12.5));
        assert_eq!(row.get::<f64, _>("smallmoney"), Some(-3.25));
        assert_eq!(row.get::<&str, _>("char"), Some("Café  "));
        assert_eq!(row.get::<&str, _>("varchar"), Some("Café"));
        assert_eq!(row.get::<&str, _>("varcharmax"), Some("Crème brûlée"));
        assert_eq!(row.get::<&str, _>("text"), Some("Ñandú"));
        assert_eq!(row.get::<&str, _>("nchar"), Some("äb   "));
        assert_eq!(row.get::<&str, _>("nvarchar"), Some("Ünïcödé ✓"));
        assert_eq!(
            row.get::<&str, _>("nvarcharmax"),
            Some(long_text().as_str())
        );
        assert_eq!(row.get::<&str, _>("ntext"), Some("ntext ✓"));

        let cells: Vec<&ColumnData<'static>> = row.cells().map(|(_, data)| data).collect();
        let at = |name: &str| {
            expected
                .iter()
                .position(|n| *n == name)
                .unwrap_or(usize::MAX)
        };
        match cells[at("date")] {
            ColumnData::Date(Some(d)) => assert_eq!(d.days(), DAYS_0001),
            other => panic!("date decoded as {other:?}"),
        }
        match cells[at("time")] {
            ColumnData::Time(Some(t)) => {
                assert_eq!((t.increments(), t.scale()), (495_301_234_567, 7));
            }
            other => panic!("time decoded as {other:?}"),
        }
        match cells[at("datetime")] {
            // .123 s is 36.9 ticks of 1/300 s: stored as 37.
            ColumnData::DateTime(Some(dt)) => {
                assert_eq!((dt.days(), dt.seconds_fragments()), (DAYS_1900, 14_859_037));
            }
            other => panic!("datetime decoded as {other:?}"),
        }
        match cells[at("smalldatetime")] {
            ColumnData::SmallDateTime(Some(dt)) => {
                assert_eq!((dt.days(), dt.seconds_fragments()), (DAYS_1900 as u16, 825));
            }
            other => panic!("smalldatetime decoded as {other:?}"),
        }
        match cells[at("datetime2")] {
            ColumnData::DateTime2(Some(dt)) => {
                assert_eq!(dt.date().days(), DAYS_0001);
                assert_eq!((dt.time().increments(), dt.time().scale()), (49_530_123, 3));
            }
            other => panic!("datetime2 decoded as {other:?}"),
        }
        match cells[at("datetimeoffset")] {
            // Stored as UTC (12:45) with the +60 minute offset.
            ColumnData::DateTimeOffset(Some(dto)) => {
                assert_eq!(dto.datetime2().date().days(), DAYS_0001);
                assert_eq!(dto.datetime2().time().increments(), 459_301_234_567);
                assert_eq!(dto.datetime2().time().scale(), 7);
                assert_eq!(dto.offset(), 60);
            }
            other => panic!("datetimeoffset decoded as {other:?}"),
        }
        let guid = row.get::<Uuid, _>("guid").ok_or("guid")?;
        assert_eq!(guid.to_string().to_uppercase(), GUID);
        assert_eq!(row.get::<&[u8], _>("binary"), Some(&[1u8, 2, 0, 0][..]));
        assert_eq!(row.get::<&[u8], _>("varbinary"), Some(&[0xDEu8, 0xAD][..]));
        assert_eq!(row.get::<&[u8], _>("varbinarymax"), Some(&[7u8; 9000][..]));
        assert_eq!(row.get::<&[u8], _>("image"), Some(&[1u8, 2, 3][..]));
        let version = row.get::<&[u8], _>("rowversion").ok_or("rowversion")?;
        assert_eq!(version, &[0, 0, 0, 0, 0, 0, 0x07, 0xD1]);
        let xml = row.get::<&XmlData, _>("xml").ok_or("xml")?;
        assert_eq!(xml.to_string(), "<a b=\"1\">ü</a>");

        for (column, data) in rows[1].cells() {
            assert!(is_null(data), "{} is not NULL: {data:?}", column.name());
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn oem_code_page_varchar_is_not_decoded_by_tiberius() -> TestResult {
    bounded(async {
        let fixture = TdsFixture::start("10.50.6000.34", |request| {
            let collation = if request.sql().contains("850") {
                Collation::Cp850
            } else {
                Collation::Cp437
            };
            let value = if request.sql().contains("NULL") {
                Cell::Null
            } else {
                Cell::Text("Café ÄÖü ç".into())
            };
            one_set(
                vec![column("name", SqlType::VarChar(30, collation))],
                vec![vec![value]],
            )
        })
        .await;
        let mut client = connect(&fixture).await?;
        // Observed with tiberius 0.13: no encoding is known for sort id 32 (CP437) or 42
        // (CP850), so the whole result fails with Error::Encoding; NULLs still decode (no
        // collation lookup) and the connection stays usable. Hence the product casts such
        // columns to nvarchar.
        for (sql, sort_id) in [
            ("SELECT name FROM cp437", 32),
            ("SELECT name FROM cp850", 42),
        ] {
            let result = client.query(sql, &[]).await?.into_first_result().await;
            match result {
                Err(tiberius::error::Error::Encoding(message)) => assert_eq!(
                    message,
                    format!("encoding: unspported encoding (LCID: 0x409, sort ID: {sort_id})")
                ),
                other => panic!("{sql}: expected an encoding error, got {other:?}"),
            }
            // The rest of the reply is drained by the next request: the client stays usable.
            let row = client.simple_query("SELECT 1").await?.into_row().await?;
            assert_eq!(row.ok_or("no row")?.get::<i32, _>(0), Some(1));
        }
        let rows = client
            .query("SELECT NULL AS name FROM cp437", &[])
            .await?
            .into_first_result()
            .await?;
        assert_eq!(rows[0].get::<&str, _>(0), None);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn parameters_and_batches_are_recorded() -> TestResult {
    bounded(async {
        let fixture = TdsFixture::start("13.0.5026.0", |request| match request {
            Request::Batch { .. } => Reply::Affected(0),
            Request::Rpc { .. } => {
                one_set(vec![column("a", SqlType::Int)], vec![vec![Cell::Int(7)]])
            }
        })
        .await;
        let mut client = connect(&fixture).await?;
        let sql = "SELECT a FROM t WHERE x = @P1 AND y = @P2 AND z = @P3 AND w = @P4";
        let amount = Numeric::new_with_scale(1250, 2);
        let rows = client
            .query(sql, &[&5i64, &"abc", &amount, &true])
            .await?
            .into_first_result()
            .await?;
        assert_eq!(rows[0].get::<i32, _>("a"), Some(7));
        client
            .simple_query("SET NOCOUNT ON")
            .await?
            .into_results()
            .await?;

        let bytes: &[u8] = &[1, 2, 3];
        let uuid = Uuid::parse_str(GUID)?;
        let none: Option<i32> = None;
        client
            .query(
                "SELECT @P1, @P2, @P3, @P4",
                &[&2.5f64, &bytes, &uuid, &none],
            )
            .await?
            .into_results()
            .await?;

        let date = Date::new(DAYS_0001);
        let datetime2 = DateTime2::new(date, Time::new(49_530_123, 3));
        let utc = DateTime2::new(date, Time::new(459_301_234_567, 7));
        let temporal = [
            ColumnData::Date(Some(date)),
            ColumnData::DateTime2(Some(datetime2)),
            ColumnData::DateTimeOffset(Some(DateTimeOffset::new(utc, 60))),
            ColumnData::String(Some(long_text().into())),
        ];
        client
            .query(
                "SELECT @P1, @P2, @P3, @P4",
                &[&temporal[0], &temporal[1], &temporal[2], &temporal[3]],
            )
            .await?
            .into_results()
            .await?;

        let expected = vec![
            Request::Rpc {
                sql: sql.into(),
                declarations: "@P1 bigint,@P2 nvarchar(4000),@P3 numeric(4,2),@P4 bit".into(),
                params: vec![
                    Sent::Int(5),
                    Sent::Text("abc".into()),
                    Sent::Decimal("12.50".into()),
                    Sent::Bool(true),
                ],
            },
            Request::Batch {
                sql: "SET NOCOUNT ON".into(),
            },
            Request::Rpc {
                sql: "SELECT @P1, @P2, @P3, @P4".into(),
                declarations: "@P1 float(53),@P2 varbinary(8000),@P3 uniqueidentifier,@P4 int"
                    .into(),
                params: vec![
                    Sent::Float(2.5),
                    Sent::Binary(vec![1, 2, 3]),
                    Sent::Guid(GUID.into()),
                    Sent::Null,
                ],
            },
            Request::Rpc {
                sql: "SELECT @P1, @P2, @P3, @P4".into(),
                declarations: "@P1 date,@P2 datetime2,@P3 datetimeoffset,@P4 nvarchar(max)".into(),
                params: vec![
                    Sent::Other("date 2024-02-29".into()),
                    Sent::Other("datetime2(3) 2024-02-29 13:45:30.123".into()),
                    Sent::Other("datetimeoffset(7) 2024-02-29 13:45:30.1234567 +01:00".into()),
                    Sent::Text(long_text()),
                ],
            },
        ];
        assert_eq!(fixture.requests(), expected);
        let statements: Vec<String> = expected.iter().map(|r| r.sql().to_string()).collect();
        assert_eq!(fixture.statements(), statements);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn server_errors_surface_and_the_connection_survives() -> TestResult {
    bounded(async {
        let fixture = TdsFixture::start("13.0.5026.0", |request| {
            if request.sql().contains("boom") {
                Reply::Error {
                    number: 2627,
                    message: "Violation of PRIMARY KEY constraint 'PK_t'.".into(),
                }
            } else {
                one_set(vec![column("ok", SqlType::Int)], vec![vec![Cell::Int(1)]])
            }
        })
        .await;
        let mut client = connect(&fixture).await?;
        let rpc = client
            .query("INSERT INTO t VALUES (1) -- boom", &[])
            .await
            .err();
        let batch = client.simple_query("SELECT boom").await.err();
        let execute = client.execute("UPDATE boom SET x = 1", &[]).await.err();
        for (what, err) in [("rpc", rpc), ("batch", batch), ("execute", execute)] {
            match err {
                Some(tiberius::error::Error::Server(e)) => {
                    assert_eq!(e.code(), 2627, "{what}");
                    assert_eq!(e.class(), 16, "{what}");
                    assert_eq!(e.message(), "Violation of PRIMARY KEY constraint 'PK_t'.");
                }
                other => panic!("{what}: expected a server error, got {other:?}"),
            }
        }
        let row = client.query("SELECT ok", &[]).await?.into_row().await?;
        assert_eq!(row.ok_or("no row")?.get::<i32, _>("ok"), Some(1));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn dropped_connections_fail_and_new_ones_work() -> TestResult {
    bounded(async {
        let fixture = TdsFixture::start("13.0.5026.0", |request| {
            if request.sql().contains("hang up") {
                Reply::Hangup
            } else {
                one_set(vec![column("n", SqlType::Int)], vec![vec![Cell::Int(1)]])
            }
        })
        .await;
        let mut first = connect(&fixture).await?;
        first.query("SELECT n", &[]).await?.into_results().await?;
        fixture.drop_connections();
        match first.query("SELECT n", &[]).await {
            Err(tiberius::error::Error::Io { .. }) => {}
            other => panic!("expected an I/O error, got {other:?}"),
        }
        let mut second = connect(&fixture).await?;
        let row = second.query("SELECT n", &[]).await?.into_row().await?;
        assert_eq!(row.ok_or("no row")?.get::<i32, _>(0), Some(1));
        assert_eq!(fixture.logins(), 2);
        let expected = Login {
            user: "api_ro".into(),
            database: "ERP".into(),
            app_name: "tiberius".into(),
        };
        assert_eq!(fixture.last_login(), Some(expected));
        match second.query("SELECT 'hang up'", &[]).await {
            Err(tiberius::error::Error::Io { .. }) => {}
            other => panic!("a hangup should be an I/O error, got {other:?}"),
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn automatic_answers_and_affected_rows() -> TestResult {
    bounded(async {
        let fixture = TdsFixture::start("10.50.6000.34", |request| {
            if request.sql().starts_with("UPDATE") {
                Reply::Affected(3)
            } else {
                let set = |n: i64| ResultSet {
                    columns: vec![column("n", SqlType::Int)],
                    rows: vec![vec![Cell::Int(n)]; n as usize],
                };
                Reply::Rows(vec![set(1), set(2)])
            }
        })
        .await;
        let mut client = connect(&fixture).await?;
        let probe = "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128))";
        let row = client.simple_query(probe).await?.into_row().await?;
        assert_eq!(
            row.ok_or("no row")?.get::<&str, _>(0),
            Some("10.50.6000.34")
        );
        let aliased = format!("{probe} AS [version]");
        let row = client
            .query(aliased.as_str(), &[])
            .await?
            .into_row()
            .await?;
        assert_eq!(
            row.ok_or("no row")?.get::<&str, _>("version"),
            Some("10.50.6000.34")
        );
        let row = client.simple_query(" SELECT 1 ").await?.into_row().await?;
        assert_eq!(row.ok_or("no row")?.get::<i32, _>(0), Some(1));

        let result = client.execute("UPDATE t SET x = 1", &[]).await?;
        assert_eq!(result.rows_affected(), &[3]);
        let sets = client.query("SELECT n", &[]).await?.into_results().await?;
        assert_eq!(sets.iter().map(Vec::len).collect::<Vec<_>>(), [1, 2]);

        assert_eq!(fixture.requests().len(), 5);
        assert_eq!(fixture.statements(), ["UPDATE t SET x = 1", "SELECT n"]);
        fixture.clear();
        assert!(fixture.requests().is_empty());
        assert_eq!(fixture.logins(), 0);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn large_results_span_many_packets() -> TestResult {
    bounded(async {
        let columns = vec![
            column("id", SqlType::Int),
            column("name", SqlType::NVarChar(50)),
            column("amount", SqlType::Decimal(18, 2)),
            column("at", SqlType::DateTime2(7)),
            column("blob", SqlType::VarBinary(16)),
        ];
        let rows: Vec<Vec<Cell>> = (0..5000)
            .map(|i| {
                vec![
                    Cell::Int(i),
                    Cell::Text(format!("row {i} ✓")),
                    Cell::Int(i * 100),
                    Cell::DateTime("2024-02-29 13:45:30.1234567"),
                    Cell::Bytes((i as u32).to_le_bytes().to_vec()),
                ]
            })
            .collect();
        let reply = one_set(columns, rows);
        let fixture = TdsFixture::start("13.0.5026.0", move |_| reply.clone()).await;
        let mut client = connect(&fixture).await?;
        let by_rpc = client
            .query("SELECT * FROM big", &[])
            .await?
            .into_first_result()
            .await?;
        let by_batch = client
            .simple_query("SELECT * FROM big")
            .await?
            .into_first_result()
            .await?;
        for rows in [by_rpc, by_batch] {
            assert_eq!(rows.len(), 5000);
            for (i, row) in rows.iter().enumerate() {
                assert_eq!(row.get::<i32, _>("id"), Some(i as i32));
                assert_eq!(
                    row.get::<&str, _>("name"),
                    Some(format!("row {i} ✓").as_str())
                );
                let amount = row.get::<Numeric, _>("amount").ok_or("amount")?;
                assert_eq!(amount.to_string(), format!("{}.00", i * 100));
                let blob = row.get::<&[u8], _>("blob").ok_or("blob")?;
                assert_eq!(blob, (i as u32).to_le_bytes());
            }
        }
        Ok(())
    })
    .await
}
