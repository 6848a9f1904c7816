//! A real SQL Server at `MSSQL_URL` (an ADO.NET connection string to a login that may create
//! databases, e.g. `server=tcp:localhost,1433;user id=sa;password=…;TrustServerCertificate=true`).
//! Without it the SQL Server suite is compiled as ignored (see build.rs) and says so.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::TryStreamExt;
use tiberius::{ColumnData, QueryItem};
use tokio_util::compat::TokioAsyncWriteCompatExt;

/// Whether a connection string is an ADO.NET one (SQL Server), not ODBC.
pub fn is_ado(connection_string: &str) -> bool {
    connection_string
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("server=")
}

fn url() -> String {
    std::env::var("MSSQL_URL").expect("MSSQL_URL names the SQL Server to test against")
}

/// A new, empty database on the server; its connection string.
pub fn create_database() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "portico_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let admin = url();
    execute(&admin, &format!("CREATE DATABASE [{name}]"));
    format!("{};database={name}", admin.trim_end_matches(';'))
}

/// Runs `sql` and renders every result row as text (NULL as `None`).
pub fn query_text(connection_string: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let (cs, sql) = (connection_string.to_string(), sql.to_string());
    // Its own runtime on its own thread: callers are sync code inside async tests.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let config = tiberius::Config::from_ado_string(&cs).unwrap();
            let tcp = tokio::net::TcpStream::connect(config.get_addr())
                .await
                .unwrap();
            tcp.set_nodelay(true).unwrap();
            let mut client = tiberius::Client::connect(config, tcp.compat_write())
                .await
                .unwrap_or_else(|e| panic!("connect to MSSQL_URL: {e}"));
            let mut stream = client
                .simple_query(sql.as_str())
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let mut rows = Vec::new();
            while let Some(item) = stream.try_next().await.unwrap() {
                if let QueryItem::Row(row) = item {
                    rows.push(row.cells().map(|(_, data)| text(data)).collect());
                }
            }
            rows
        })
    })
    .join()
    .unwrap()
}

/// Runs one statement.
pub fn execute(connection_string: &str, sql: &str) {
    query_text(connection_string, sql);
}

fn text(data: &ColumnData<'_>) -> Option<String> {
    Some(match data {
        ColumnData::U8(v) => v.as_ref()?.to_string(),
        ColumnData::I16(v) => v.as_ref()?.to_string(),
        ColumnData::I32(v) => v.as_ref()?.to_string(),
        ColumnData::I64(v) => v.as_ref()?.to_string(),
        ColumnData::F32(v) => v.as_ref()?.to_string(),
        ColumnData::F64(v) => v.as_ref()?.to_string(),
        ColumnData::Bit(v) => (if (*v)? { "1" } else { "0" }).to_string(),
        ColumnData::String(v) => v.as_ref()?.to_string(),
        ColumnData::Numeric(v) => v.as_ref()?.to_string(),
        other => format!("{other:?}"),
    })
}
