//! Benchmark of the SQL Server path without a SQL Server: the TDS fixture of the tests
//! (tests/api/tds) serves a legacy `jobs` table, and in one run it is measured through a plain
//! tiberius loop (its own raw throughput) and through Portico under wrk, uncached and cached.
//!
//! `make bench` runs it; by hand, from the repository root:
//! `cargo build --release --locked --bin portico --example tds_bench && target/release/examples/tds_bench`.
//! `BENCH_SECONDS` (10) is each measurement's length. `TDS_BENCH_PORTICO="before=PATH,after=PATH"`
//! measures several Portico binaries (one copied aside before a change, say) against the same
//! fixture in the same run; by default the `portico` built beside this example.
//!
//! Everything measured is a release build: the fixture (in this process), the raw loop (this
//! binary again, as a separate process: `tds_bench raw PORT SECONDS CONNECTIONS SQL [KEYED]`) and
//! Portico. The raw loop sends the exact T-SQL the fixture received from Portico.

#[path = "../tests/api/tds/mod.rs"]
#[allow(unused_imports)] // the test-only parts of the fixture are unused here
mod tds;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::TryStreamExt;
use tds::{column, Cell, Collation, Reply, Request, ResultSet, Sent, SqlType, TdsFixture};
use tiberius::{Query, QueryItem};
use tokio_util::compat::TokioAsyncWriteCompatExt;

/// Seconds of load before each measurement, not counted.
const WARM_UP: u64 = 3;
/// Connections (one task each) of the raw loop.
const RAW_CONNECTIONS: usize = 2;
/// Rows of the page the fixture serves, and the limit asked for.
const PAGE_ROWS: usize = 100;
const TABLE: &str = "FROM [dbo].[JOBHDR]";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("raw") {
        return raw_main(&args[2..]);
    }
    let seconds: u64 = match std::env::var("BENCH_SECONDS") {
        Ok(s) => s.parse().context("BENCH_SECONDS is a number of seconds")?,
        Err(_) => 10,
    };
    let binaries = binaries()?;
    // Two worker threads serve the fixture; this thread only waits for the clients.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let fixture = runtime.block_on(TdsFixture::start("13.0.5026.0", answer));
    let dir = tempfile::tempdir()?;
    let key_script = dir.path().join("key.lua");
    std::fs::write(
        &key_script,
        "counter = 0\nrequest = function()\n  counter = counter + 1\n  \
         return wrk.format(\"GET\", string.format(\"/v1/jobs/J%06d\", (counter * 7919) % 10000 + 1))\nend\n",
    )?;
    let key = Target {
        label: "GET /v1/jobs/{id}",
        path: "/v1/jobs/J000042".into(),
        script: Some(key_script),
    };
    let page = Target {
        label: "GET /v1/jobs?limit=100",
        path: format!("/v1/jobs?limit={PAGE_ROWS}"),
        script: None,
    };

    let mut results = Vec::new();
    let mut sql: Option<(String, String)> = None;
    for (label, binary) in &binaries {
        let mut measured = Vec::new();
        for ttl in ["0s", "600s"] {
            let mut portico = Portico::start(binary, &fixture, ttl, dir.path())?;
            if sql.is_none() {
                sql = Some(portico.check_answers(&fixture, &key, &page)?);
            }
            for target in [&key, &page] {
                eprintln!("tds_bench: {} {label} ttl {ttl}", target.label);
                let load = wrk(portico.port, target, seconds);
                portico.still_running()?;
                measured.push(load?);
                fixture.clear();
            }
        }
        results.push((label.clone(), measured));
    }
    let (key_sql, page_sql) = sql.ok_or_else(|| anyhow!("no Portico binary to measure"))?;
    let raw_key = raw(&fixture, seconds, &key_sql, true)?;
    let raw_page = raw(&fixture, seconds, &page_sql, false)?;
    drop(fixture);

    println!(
        "| request | fixture raw loop q/s | Portico uncached req/s (p99) | uncached / raw | Portico cached req/s (p99) |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for (label, measured) in &results {
        let name = |request: &str| match label.as_str() {
            "" => request.to_string(),
            label => format!("{request} ({label})"),
        };
        for (i, (request, raw)) in [(&key, raw_key), (&page, raw_page)].iter().enumerate() {
            let (uncached, cached) = (&measured[i], &measured[2 + i]);
            println!(
                "| {} | {raw:.0} | {:.0} ({}){} | {:.2} | {:.0} ({}){} |",
                name(request.label),
                uncached.rate,
                uncached.p99,
                uncached.errors(),
                uncached.rate / raw,
                cached.rate,
                cached.p99,
                cached.errors(),
            );
        }
    }
    println!();
    println!(
        "{} cores shared by all; fixture (2 threads), raw loop ({RAW_CONNECTIONS} connections), \
         Portico (default pool of 8) and wrk (-t2 -c32, {WARM_UP}s warm-up, {seconds}s measured) \
         each in its own process on loopback.",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("Both clients send the same T-SQL: {key_sql} / {page_sql}");
    Ok(())
}

/// The Portico binaries to measure: `TDS_BENCH_PORTICO` ("label=path,…"), else the one built
/// beside this example.
fn binaries() -> anyhow::Result<Vec<(String, PathBuf)>> {
    if let Ok(list) = std::env::var("TDS_BENCH_PORTICO") {
        return list
            .split(',')
            .map(|item| {
                let (label, path) = item
                    .split_once('=')
                    .ok_or_else(|| anyhow!("TDS_BENCH_PORTICO: `{item}` is not label=path"))?;
                Ok((label.to_string(), PathBuf::from(path)))
            })
            .collect();
    }
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("{} is not in a target directory", exe.display()))?;
    Ok(vec![(String::new(), release.join("portico"))])
}

/// A `jobs` table shaped like the demo's (tests/api/mssql.rs's types): the key lookup gets the
/// row of the key asked for, the list a page of `PAGE_ROWS` rows.
fn answer(request: &Request) -> Reply {
    let Request::Rpc { sql, params, .. } = request else {
        return Reply::Affected(0);
    };
    if !sql.contains(TABLE) {
        return Reply::Affected(0);
    }
    let columns = vec![
        column("JOB_NO", SqlType::Char(10, Collation::Cp1252)),
        column("CUST_NO", SqlType::Char(8, Collation::Cp1252)),
        column("DESCR", SqlType::VarChar(60, Collation::Cp1252)),
        column("STATUS", SqlType::Char(1, Collation::Cp1252)),
        column("PRIORITY", SqlType::Int),
        column("ORDER_DT", SqlType::Date),
        column("DUE_DT", SqlType::Date),
        column("QUOTE_AMT", SqlType::Decimal(13, 2)),
        column("RUSH", SqlType::Char(1, Collation::Cp1252)),
        column("LAST_UPD", SqlType::DateTime),
    ];
    let row = |job: String, n: i64| {
        vec![
            Cell::Text(job),
            Cell::Text(format!("C{:05}", n % 500 + 1)),
            Cell::Text(format!("Gehäuse fräsen, Los {n}")),
            Cell::Text(["O", "H", "C"][(n % 3) as usize].into()),
            Cell::Int(n % 5),
            Cell::Date("2024-02-29"),
            if n % 4 == 0 {
                Cell::Null
            } else {
                Cell::Date("2024-03-15")
            },
            Cell::Decimal("1234.50"),
            Cell::Text(if n % 2 == 0 { "Y" } else { "N" }.into()),
            Cell::DateTime("2024-02-29 13:45:30.123"),
        ]
    };
    let rows = match params.first() {
        Some(Sent::Text(key)) => vec![row(key.clone(), 42)],
        _ => (1..=PAGE_ROWS as i64)
            .map(|n| row(format!("J{n:06}"), n))
            .collect(),
    };
    Reply::Rows(vec![ResultSet { columns, rows }])
}

/// One request shape to load.
struct Target {
    label: &'static str,
    /// The path checked before the load (and loaded, without a script).
    path: String,
    /// A wrk script choosing each request's path.
    script: Option<PathBuf>,
}

/// A running `portico serve`, stopped when dropped.
struct Portico {
    child: Child,
    port: u16,
}

impl Portico {
    fn start(binary: &Path, fixture: &TdsFixture, ttl: &str, dir: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.join("portico.toml");
        std::fs::write(&config, config_text(fixture, port, ttl))?;
        let child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(&config)
            // Errors only: tiberius warns at every plaintext login.
            .env("PORTICO_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let portico = Portico { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(get(port, "/healthz"), Ok((200, _))) {
            if Instant::now() > deadline {
                bail!("{} did not start within 30 s", binary.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(portico)
    }

    /// Checks both requests answer in full, and returns the T-SQL each one sent (key, page).
    fn check_answers(
        &self,
        fixture: &TdsFixture,
        key: &Target,
        page: &Target,
    ) -> anyhow::Result<(String, String)> {
        fixture.clear();
        let mut sent = Vec::new();
        for (target, rows) in [(key, 1), (page, PAGE_ROWS)] {
            let (status, body) = get(self.port, &target.path)?;
            let json: serde_json::Value = serde_json::from_str(&body)
                .with_context(|| format!("{}: {status} {body}", target.path))?;
            let found = json["data"].as_array().map_or(1, Vec::len);
            if status != 200 || found != rows {
                bail!(
                    "{}: {status}, {found} rows, expected {rows}: {body}",
                    target.path
                );
            }
            let statement = fixture
                .statements()
                .into_iter()
                .rfind(|sql| sql.contains(TABLE))
                .ok_or_else(|| anyhow!("{} sent no statement", target.path))?;
            sent.push(statement);
        }
        fixture.clear();
        let page_sql = sent.pop().unwrap_or_default();
        Ok((sent.pop().unwrap_or_default(), page_sql))
    }
}

impl Portico {
    /// An error saying how Portico ended, if it has.
    fn still_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("portico exited: {status}"),
            None => Ok(()),
        }
    }
}

impl Drop for Portico {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(fixture: &TdsFixture, port: u16, ttl: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[cache]
default_ttl = "{ttl}"

[sources.erp]
kind = "mssql"
connection_string = "{cs}"

[versions.v1.resources.jobs]
source = "erp"
table = "dbo.JOBHDR"
key = ["id"]
anonymous = true
max_limit = 500

[versions.v1.resources.jobs.fields]
id = {{ column = "JOB_NO", type = "string", column_type = "char(10)" }}
customer_id = {{ column = "CUST_NO", type = "string", column_type = "char(8)" }}
description = {{ column = "DESCR", type = "string", column_type = "varchar(60)" }}
status = {{ column = "STATUS", type = "string", column_type = "char(1)", codes = {{ O = "open", H = "held", C = "closed" }} }}
priority = {{ column = "PRIORITY", type = "integer", column_type = "int" }}
ordered_on = {{ column = "ORDER_DT", type = "date", column_type = "date" }}
due_on = {{ column = "DUE_DT", type = "date", column_type = "date" }}
quote_amount = {{ column = "QUOTE_AMT", type = "decimal", column_type = "decimal(13,2)", scale = 2 }}
rush = {{ column = "RUSH", type = "boolean", column_type = "char(1)", true_value = "Y", false_value = "N" }}
updated_at = {{ column = "LAST_UPD", type = "datetime", column_type = "datetime" }}
"#,
        cs = fixture.ado_string(),
    )
}

/// `GET path` over HTTP/1.0: status and body.
fn get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP answer: {text}"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// What wrk measured.
struct Load {
    rate: f64,
    p99: String,
    /// Non-2xx answers and socket errors.
    failed: u64,
}

impl Load {
    fn errors(&self) -> String {
        match self.failed {
            0 => String::new(),
            n => format!(", {n} errors"),
        }
    }
}

fn wrk(port: u16, target: &Target, seconds: u64) -> anyhow::Result<Load> {
    let run = |duration: u64, latency: bool| -> anyhow::Result<String> {
        let mut command = Command::new("wrk");
        command.args(["-t2", "-c32", &format!("-d{duration}s")]);
        if latency {
            command.arg("--latency");
        }
        if let Some(script) = &target.script {
            command.arg("-s").arg(script);
        }
        let output = command
            .arg(format!("http://127.0.0.1:{port}{}", target.path))
            .output()
            .context("running wrk")?;
        if !output.status.success() {
            bail!("wrk: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    run(WARM_UP, false)?;
    let text = run(seconds, true)?;
    let field = |prefix: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix).map(str::trim))
            .map(str::to_string)
    };
    let rate = field("Requests/sec:")
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| anyhow!("no rate in wrk's output: {text}"))?;
    let p99 = field("99%").unwrap_or_else(|| "?".into());
    let non_2xx: u64 = field("Non-2xx or 3xx responses:")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // "Socket errors: connect 0, read 0, write 0, timeout 0"
    let socket: u64 = field("Socket errors:").map_or(0, |errors| {
        errors
            .split(',')
            .filter_map(|e| e.split_whitespace().last()?.parse::<u64>().ok())
            .sum()
    });
    Ok(Load {
        rate,
        p99,
        failed: non_2xx + socket,
    })
}

/// The raw loop as its own process against `fixture`: queries per second. Checks that the
/// fixture received nothing but `sql`.
fn raw(fixture: &TdsFixture, seconds: u64, sql: &str, keyed: bool) -> anyhow::Result<f64> {
    fixture.clear();
    let mut command = Command::new(std::env::current_exe()?);
    command.args([
        "raw",
        &fixture.port().to_string(),
        &seconds.to_string(),
        &RAW_CONNECTIONS.to_string(),
        sql,
    ]);
    if keyed {
        command.arg("keyed");
    }
    let output = command.stderr(Stdio::inherit()).output()?;
    if !output.status.success() {
        bail!("the raw loop failed");
    }
    let rate = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .context("the raw loop's rate")?;
    let other = fixture.statements().into_iter().find(|s| s != sql);
    fixture.clear();
    if let Some(other) = other {
        bail!("the raw loop sent `{other}`, not `{sql}`");
    }
    Ok(rate)
}

/// `raw PORT SECONDS CONNECTIONS SQL [keyed]`: prints queries per second.
fn raw_main(args: &[String]) -> anyhow::Result<()> {
    let [port, seconds, connections, sql, rest @ ..] = args else {
        bail!("usage: tds_bench raw PORT SECONDS CONNECTIONS SQL [keyed]");
    };
    let port: u16 = port.parse()?;
    let seconds: u64 = seconds.parse()?;
    let connections: usize = connections.parse()?;
    let keyed = rest.first().map(String::as_str) == Some("keyed");
    let expected = if keyed { 1 } else { PAGE_ROWS };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let counted = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_secs(WARM_UP);
    let end = start + Duration::from_secs(seconds);
    runtime.block_on(async {
        let tasks: Vec<_> = (0..connections as u64)
            .map(|t| {
                let (sql, counted) = (sql.clone(), counted.clone());
                tokio::spawn(async move {
                    let cs = format!(
                        "server=tcp:127.0.0.1,{port};database=ERP;user id=api_ro;password=secret;encrypt=DANGER_PLAINTEXT"
                    );
                    let config = tiberius::Config::from_ado_string(&cs)?;
                    let tcp = tokio::net::TcpStream::connect(config.get_addr()).await?;
                    tcp.set_nodelay(true)?;
                    let mut client = tiberius::Client::connect(config, tcp.compat_write()).await?;
                    let mut n = t * 1_000_003;
                    loop {
                        let now = Instant::now();
                        if now >= end {
                            return Ok::<_, anyhow::Error>(());
                        }
                        let mut query = Query::new(sql.as_str());
                        if keyed {
                            query.bind(format!("J{:06}", (n * 7919) % 10_000 + 1));
                        }
                        let mut stream = query.query(&mut client).await?;
                        let mut rows = 0;
                        while let Some(item) = stream.try_next().await? {
                            if let QueryItem::Row(row) = item {
                                for (_, data) in row.cells() {
                                    std::hint::black_box(data);
                                }
                                rows += 1;
                            }
                        }
                        if rows != expected {
                            bail!("{rows} rows, expected {expected}");
                        }
                        n += 1;
                        if now >= start {
                            counted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    println!(
        "{:.0}",
        counted.load(Ordering::Relaxed) as f64 / seconds as f64
    );
    Ok(())
}
