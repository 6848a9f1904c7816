//! A fake SQL Server for tiberius: plaintext TDS 7.3/7.4 on 127.0.0.1 (the client must use
//! `encrypt=DANGER_PLAINTEXT`), recording every request and answering from a handler with
//! token streams built per MS-TDS. Lets tests assert the exact T-SQL sent and the decoding of
//! every SQL Server type without a real server.
#![allow(dead_code)] // the API is for the test modules that use it

mod codepage;
mod request;
mod selftest;
mod server;
mod types;
mod values;
mod wire;

use server::{accept_loop, automatic};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;
use tokio::sync::watch;

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running fake server; it stops (and closes its connections) when dropped.
pub struct TdsFixture {
    port: u16,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

struct Shared {
    version: String,
    handler: Box<Handler>,
    requests: Mutex<Vec<Request>>,
    logins: Mutex<Vec<Login>>,
    /// Bumped to close every open connection.
    kill: watch::Sender<u64>,
}

/// The login fields of a LOGIN7 (the password is not decoded).
#[derive(Debug, Clone, PartialEq)]
pub struct Login {
    pub user: String,
    pub database: String,
    pub app_name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// SQL batch packet (type 0x01): the UTF-16 text after ALL_HEADERS.
    Batch { sql: String },
    /// RPC packet (type 0x03) calling sp_executesql (proc id 10, or by name): first param is
    /// the statement, second the declarations ("@P1 bigint,@P2 nvarchar(4000)"), the rest the
    /// values. Any other procedure: `sql` is its name ("proc id N" for other ids), no
    /// declarations, every parameter in `params`.
    Rpc {
        sql: String,
        declarations: String,
        params: Vec<Sent>,
    },
}

impl Request {
    pub fn sql(&self) -> &str {
        match self {
            Request::Batch { sql } | Request::Rpc { sql, .. } => sql,
        }
    }
}

/// A parameter value as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    /// Exact canonical text at the parameter's scale, e.g. "-12.50" (money: scale 4).
    Decimal(String),
    Binary(Vec<u8>),
    /// Uppercase hyphenated.
    Guid(String),
    /// Anything else, as "date 2024-02-29", "time(7) 13:45:30.1234567",
    /// "datetime2(7) 2024-02-29 13:45:30.1234567", "datetimeoffset(7) ... +01:00",
    /// "datetime 2024-02-29 13:45:30.123", "smalldatetime 2024-02-29 13:45", "xml <a/>".
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// One or more result sets, then DONE(FINAL).
    Rows(Vec<ResultSet>),
    /// No result set: DONE with a row count (for INSERT/UPDATE/DELETE/BEGIN TRAN/COMMIT/SET ...).
    Affected(u64),
    /// An ERROR token (class 16) with this number and message, then DONE with the error flag.
    Error { number: u32, message: String },
    /// Close the connection without answering.
    Hangup,
    /// The reply, after an asynchronous pause (a slow server that blocks no thread).
    Delayed(std::time::Duration, Box<Reply>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResultSet {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
}

pub fn column(name: &str, ty: SqlType) -> Column {
    Column {
        name: name.to_string(),
        ty,
    }
}

/// Single-byte code pages of char/varchar/text columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collation {
    /// SQL_Latin1_General_CP1_CI_AS (sort id 52).
    Cp1252,
    /// SQL_Latin1_General_CP437_CI_AS (sort id 32).
    Cp437,
    /// SQL_Latin1_General_CP850_CI_AS (sort id 42).
    Cp850,
}

/// Column types; every one is sent as a nullable wire type. Lengths are in bytes for
/// char/varchar/binary and in characters for nchar/nvarchar.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlType {
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Real,
    Float,
    Decimal(u8, u8),
    Numeric(u8, u8),
    Money,
    SmallMoney,
    /// Values are blank-padded to the length, as a real server does.
    Char(u16, Collation),
    VarChar(u16, Collation),
    VarCharMax(Collation),
    Text(Collation),
    /// Values are blank-padded to the length.
    NChar(u16),
    NVarChar(u16),
    NVarCharMax,
    NText,
    Date,
    Time(u8),
    DateTime,
    SmallDateTime,
    DateTime2(u8),
    DateTimeOffset(u8),
    UniqueIdentifier,
    /// Values are zero-padded to the length.
    Binary(u16),
    VarBinary(u16),
    VarBinaryMax,
    Image,
    /// timestamp: binary(8), usertype 80.
    RowVersion,
    Xml,
}

/// A value in a result row. A cell that does not fit its column makes the reply an
/// ERROR 50000 naming the problem.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    /// Integer types; also bit (0/1), float/real, decimal/numeric and money.
    Int(i64),
    /// real/float; also money (rounded to 4 places).
    Float(f64),
    Bool(bool),
    /// "12.50" for decimal/numeric/money/smallmoney, encoded at the column's scale (money 4);
    /// digits beyond the scale must be zero.
    Decimal(&'static str),
    /// char/varchar/text in the collation's code page; n-types and xml in UTF-16LE.
    Text(String),
    /// Raw bytes for char/varchar/text (already in the code page) and the binary types.
    Bytes(Vec<u8>),
    /// "2024-02-29" (also accepted by datetime/datetime2/smalldatetime as midnight).
    Date(&'static str),
    /// "13:45:30.1234567": up to 7 fractional digits, none beyond the column's scale.
    Time(&'static str),
    /// "2024-02-29 13:45:30.123" for datetime (1/300 s), smalldatetime (rounded to the minute)
    /// and datetime2 (no digits beyond the scale).
    DateTime(&'static str),
    /// "2024-02-29 13:45:30.1234567 +01:00" (sent as UTC plus the offset).
    DateTimeOffset(&'static str),
    /// "6F9619FF-8B86-D011-B42D-00C04FC964FF", sent in SQL Server's mixed-endian order.
    Guid(&'static str),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking handler must not take the recordings down with it.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl TdsFixture {
    /// Listens on 127.0.0.1:0. Requests whose SQL contains "SERVERPROPERTY('ProductVersion')"
    /// get one nvarchar(128) row with `version` ("10.50.6000.34" for 2008 R2, "13.0.5026.0"
    /// for 2016; it also picks the TDS version of LOGINACK); "SELECT 1" (after trim) gets one
    /// int row with 1; everything else is answered by `handler`. All requests are recorded.
    pub async fn start(
        version: &str,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> TdsFixture {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("tds fixture: bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("tds fixture: local address")
            .port();
        let shared = Arc::new(Shared {
            version: version.to_string(),
            handler: Box::new(handler),
            requests: Mutex::new(Vec::new()),
            logins: Mutex::new(Vec::new()),
            kill: watch::channel(0).0,
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        TdsFixture {
            port,
            shared,
            accept,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// ADO.NET connection string for tiberius, plaintext.
    pub fn ado_string(&self) -> String {
        format!(
            "server=tcp:127.0.0.1,{};database=ERP;user id=api_ro;password=secret;encrypt=DANGER_PLAINTEXT",
            self.port
        )
    }

    /// Every request received so far, in arrival order, across all connections.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }

    /// The SQL of `requests()` without the automatic SELECT 1 / SERVERPROPERTY ones.
    pub fn statements(&self) -> Vec<String> {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| automatic(&self.shared.version, r.sql()).is_none())
            .map(|r| r.sql().to_string())
            .collect()
    }

    /// LOGIN7 packets accepted so far (= connections opened by the client).
    pub fn logins(&self) -> usize {
        lock(&self.shared.logins).len()
    }

    pub fn last_login(&self) -> Option<Login> {
        lock(&self.shared.logins).last().cloned()
    }

    /// Closes every open client connection from the server side (a server restart); new
    /// connections are still accepted.
    pub fn drop_connections(&self) {
        self.shared.kill.send_modify(|epoch| *epoch += 1);
    }

    /// Forgets the recorded requests and logins (counts restart at zero); connections stay.
    pub fn clear(&self) {
        lock(&self.shared.requests).clear();
        lock(&self.shared.logins).clear();
    }
}

impl Drop for TdsFixture {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_connections();
    }
}
