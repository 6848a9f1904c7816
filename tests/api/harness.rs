//! Backends loaded with the fixture, Portico started in-process, and an HTTP client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use odbc_api::buffers::TextRowSet;
use odbc_api::{ConnectionOptions, Cursor};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

use crate::fixture::{self, Kind};
use crate::servers::{DbServer, Engine};

/// A database loaded with the fixture.
pub struct Backend {
    /// ODBC connection string of the fixture database.
    pub connection_string: String,
    _dir: Option<tempfile::TempDir>,
}

/// The shared server of an engine, started on first use.
pub fn shared_server(engine: Engine) -> &'static DbServer {
    static PG: OnceLock<DbServer> = OnceLock::new();
    static MARIA: OnceLock<DbServer> = OnceLock::new();
    let cell = match engine {
        Engine::Postgres => &PG,
        Engine::MariaDb => &MARIA,
    };
    cell.get_or_init(|| DbServer::start(engine))
}

/// A fresh, empty database on `server`.
pub fn create_database(server: &DbServer) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("portico_{}", NEXT.fetch_add(1, Ordering::SeqCst));
    let admin = server.connection_string(server.admin_database());
    let create = match server.engine {
        Engine::Postgres => format!("CREATE DATABASE {name}"),
        Engine::MariaDb => format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"),
    };
    execute(&admin, &create);
    server.connection_string(&name)
}

/// A fresh, empty PostgreSQL database on `server`: its ODBC connection string, and its
/// `postgres://` URL (the test server trusts local connections), as `[state] url` takes it.
pub fn create_postgres_database(server: &DbServer) -> (String, String) {
    let odbc = create_database(server);
    let name = odbc
        .split(';')
        .find_map(|part| part.strip_prefix("Database="))
        .expect("the connection string names its database")
        .to_string();
    let url = format!("postgres://postgres@127.0.0.1:{}/{name}", server.port);
    (odbc, url)
}

/// A new database of `kind` with the fixture loaded.
pub fn load_fixture(kind: Kind, server: Option<&DbServer>) -> Backend {
    let (connection_string, dir) = match (kind.storage(), server) {
        (Kind::Sqlite, _) => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("legacy.db");
            (
                format!("Driver=SQLite3;Database={}", path.display()),
                Some(dir),
            )
        }
        (Kind::Mssql, _) => (crate::mssql_server::create_database(), None),
        (_, Some(server)) => (create_database(server), None),
        (_, None) => panic!("{kind:?} needs a server"),
    };
    for statement in fixture::sql(kind) {
        execute(&connection_string, &statement);
    }
    Backend {
        connection_string,
        _dir: dir,
    }
}

/// The fixture database of `kind`, shared by the read-only tests.
pub fn backend(kind: Kind) -> &'static Backend {
    static SQLITE: OnceLock<Backend> = OnceLock::new();
    static PG: OnceLock<Backend> = OnceLock::new();
    static MARIA: OnceLock<Backend> = OnceLock::new();
    static MSSQL: OnceLock<Backend> = OnceLock::new();
    match kind {
        Kind::Mssql => MSSQL.get_or_init(|| load_fixture(kind, None)),
        Kind::Sqlite | Kind::Generic => SQLITE.get_or_init(|| load_fixture(Kind::Sqlite, None)),
        Kind::Postgres => {
            PG.get_or_init(|| load_fixture(kind, Some(shared_server(Engine::Postgres))))
        }
        Kind::MariaDb => {
            MARIA.get_or_init(|| load_fixture(kind, Some(shared_server(Engine::MariaDb))))
        }
    }
}

/// Builds the demo database from its SQL script into a temporary directory.
pub fn demo_database() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("legacy.db");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo/legacy.sql");
    let status = std::process::Command::new("sqlite3")
        .arg(&db)
        .stdin(std::fs::File::open(script).unwrap())
        .status()
        .expect("sqlite3 installed");
    assert!(status.success());
    (dir, db)
}

/// The address in `portico serve`'s "listening" log line (`address=127.0.0.1:PORT`).
pub fn logged_address(line: &str) -> Option<String> {
    let at = line.find("address=")?;
    Some(line[at + 8..].split_whitespace().next()?.to_string())
}

/// The connection string of an empty database of `kind`: a new database on the shared
/// PostgreSQL or MariaDB server, or a SQLite file in `dir`.
pub fn fresh_database(kind: Kind, dir: &std::path::Path) -> String {
    match kind {
        Kind::Postgres => create_database(shared_server(Engine::Postgres)),
        Kind::MariaDb => create_database(shared_server(Engine::MariaDb)),
        _ => format!(
            "Driver=SQLite3;Database={}",
            dir.join("legacy.db").display()
        ),
    }
}

/// A new database of `kind` holding the trap schema (`support/traps/*.sql`: a schema shaped
/// like other people's, the same rows on every database); its connection string.
pub fn trap_database(kind: Kind, dir: &std::path::Path) -> String {
    let file = match kind {
        Kind::Postgres => "postgres.sql",
        Kind::MariaDb => "mariadb.sql",
        _ => "sqlite.sql",
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/api/support/traps")
        .join(file);
    let script: String = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let connection_string = fresh_database(kind, dir);
    for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        execute(&connection_string, statement);
    }
    connection_string
}

/// Runs one statement directly through ODBC, or tiberius for SQL Server (not through Portico).
pub fn execute(connection_string: &str, sql: &str) {
    if crate::mssql_server::is_ado(connection_string) {
        return crate::mssql_server::execute(connection_string, sql);
    }
    let env = odbc_api::environment().unwrap();
    let conn = env
        .connect_with_connection_string(connection_string, ConnectionOptions::default())
        .unwrap_or_else(|e| panic!("connect {connection_string}: {e}"));
    conn.execute(sql, (), None)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Runs a query directly and returns its rows as text.
pub fn query_text(connection_string: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    if crate::mssql_server::is_ado(connection_string) {
        return crate::mssql_server::query_text(connection_string, sql);
    }
    let env = odbc_api::environment().unwrap();
    let conn = env
        .connect_with_connection_string(connection_string, ConnectionOptions::default())
        .unwrap();
    let mut cursor = conn.execute(sql, (), None).unwrap().expect("a result set");
    let buffer = TextRowSet::for_cursor(100, &mut cursor, Some(4096)).unwrap();
    let mut block = cursor.bind_buffer(buffer).unwrap();
    let mut rows = Vec::new();
    while let Some(set) = block.fetch().unwrap() {
        for r in 0..set.num_rows() {
            rows.push(
                (0..set.num_cols())
                    .map(|c| {
                        set.at(c, r)
                            .map(|b| String::from_utf8_lossy(b).into_owned())
                    })
                    .collect(),
            );
        }
    }
    rows
}

/// A running Portico and a client for it.
pub struct Portico {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    client: reqwest::Client,
    /// The in-process server; `None` for a `portico serve` process (`Portico::attach`).
    handle: Option<actix_web::dev::ServerHandle>,
    /// Its pollers and dispatcher: they stop with it, not at the end of the test.
    background: Option<portico::app::Background>,
    recorder: crate::contract::Recorder,
}

/// An HTTP answer, body parsed as JSON when it is JSON.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Asserts a problem+json answer with `status` and returns its body.
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/")));
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
        &self.body
    }
}

impl Portico {
    /// Starts Portico with `config` (TOML text) on a free port.
    pub async fn spawn(config: &str) -> Self {
        let config =
            portico::config::parse("test.toml", config, &|_| None).expect("test config parses");
        let services = portico::app::build(&config, "test.toml").expect("test config compiles");
        Self::start(services, &config).await
    }

    /// Starts Portico from the configuration file at `path`, as `portico serve` does: it reads
    /// the file again on `POST /admin/reload`.
    pub async fn serve_file(path: &std::path::Path) -> Self {
        let (config, services) = portico::app::load(path).expect("test config loads");
        let origin = portico::app::Origin {
            path: path.to_path_buf(),
            listen: None,
            prover: Some(portico::check::reload_prover()),
        };
        let running = portico::app::start_from(services, &config, origin).expect("server starts");
        Self::run(running)
    }

    /// Starts Portico with prepared services.
    pub async fn start(services: portico::app::Services, config: &portico::config::Config) -> Self {
        Self::run(portico::app::start(services, config).expect("server starts"))
    }

    /// Runs a started Portico in this runtime, and a client for it.
    fn run(running: portico::app::Running) -> Self {
        let handle = running.server.handle();
        tokio::spawn(running.server);
        let mut app = Self::attach(&running.address.to_string());
        app.handle = Some(handle);
        app.background = Some(running.background);
        app
    }

    /// A client for a Portico running elsewhere (a `portico serve` process) at `address`.
    pub fn attach(address: &str) -> Self {
        Self {
            base: format!("http://{address}"),
            // Below the server's 5 s keep-alive, so an idle pooled connection the server has
            // closed is never reused (a test that pauses for a subprocess would see a reset).
            client: reqwest::Client::builder()
                .pool_idle_timeout(std::time::Duration::from_secs(2))
                .build()
                .unwrap(),
            handle: None,
            background: None,
            recorder: Default::default(),
        }
    }

    /// Starts Portico over the shared fixture of `kind`.
    pub async fn over(kind: Kind) -> Self {
        Self::spawn(&fixture::config(kind, &backend(kind).connection_string, "")).await
    }

    /// GETs a path (with query) and parses the answer.
    pub async fn get(&self, path: &str) -> Answer {
        self.get_as(path, None).await
    }

    /// GETs a path with extra request headers: status, headers and raw body.
    pub async fn get_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = self.client.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let body = response.bytes().await.unwrap().to_vec();
        self.recorder.record(path, status.as_u16(), &headers, &body);
        (status, headers, body)
    }

    /// GETs a path as text (metrics).
    pub async fn get_text(&self, path: &str) -> String {
        let (status, _, body) = self.get_with(path, &[]).await;
        assert_eq!(status, StatusCode::OK);
        String::from_utf8(body).unwrap()
    }

    /// The value of one `/metrics` sample, named with its labels (`name{label="v"}`); 0 when
    /// the series is absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        self.get_text("/metrics")
            .await
            .lines()
            .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// DELETEs a path and returns the status.
    pub async fn delete(&self, path: &str) -> StatusCode {
        self.client
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .status()
    }

    /// HEADs a path: status and body length.
    pub async fn head(&self, path: &str) -> (StatusCode, usize) {
        let response = self
            .client
            .head(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (response.status(), response.bytes().await.unwrap().len())
    }

    /// Follows `next_cursor` links from `path` and returns every row of every page.
    pub async fn all_pages(&self, path: &str) -> Vec<Value> {
        self.all_pages_as(path, None).await
    }

    /// `all_pages` with a bearer token.
    pub async fn all_pages_as(&self, path: &str, token: Option<&str>) -> Vec<Value> {
        let mut rows = Vec::new();
        let mut next = path.to_string();
        for _ in 0..1000 {
            let answer = self.get_as(&next, token).await;
            assert_eq!(answer.status, StatusCode::OK, "GET {next}: {}", answer.body);
            rows.extend(
                answer.body["data"]
                    .as_array()
                    .expect("data array")
                    .iter()
                    .cloned(),
            );
            let cursor = &answer.body["next_cursor"];
            let link = answer.headers.get("link").and_then(|v| v.to_str().ok());
            match cursor.as_str() {
                None => {
                    assert!(cursor.is_null());
                    assert!(link.is_none(), "no Link header on the last page");
                    return rows;
                }
                Some(c) => {
                    let link = link.expect("Link header when there is a next page");
                    assert!(
                        link.ends_with("; rel=\"next\"") && link.contains(c),
                        "{link}"
                    );
                    next = link[1..link.find('>').unwrap()].to_string();
                }
            }
        }
        panic!("paging from {path} did not end");
    }
}

impl Portico {
    /// Sends `method path` with a bearer token, extra headers and a JSON body (raw bytes and
    /// content type when `body` is `Err`), records the answer for the contract check.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Result<Value, (&str, Vec<u8>)>>,
    ) -> Answer {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request = match body {
            Some(Ok(json)) => request.json(&json),
            Some(Err((content_type, bytes))) => {
                request.header("content-type", content_type).body(bytes)
            }
            None => request,
        };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = response.bytes().await.unwrap();
        self.recorder
            .record_method(method.as_str(), path, status.as_u16(), &headers, &bytes);
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }
}

impl Drop for Portico {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.recorder.validate(&self.base);
        }
        // Sending the stop command is synchronous; the completion future is not needed.
        if let Some(handle) = &self.handle {
            drop(handle.stop(false));
        }
    }
}

impl Portico {
    /// GETs a path with `Authorization: Bearer TOKEN` (none when `token` is `None`).
    pub async fn get_as(&self, path: &str, token: Option<&str>) -> Answer {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        self.recorder
            .record(path, status.as_u16(), &headers, &bytes);
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }
}

/// A child process that is killed when dropped, so a failing test leaves no server behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `portico serve` process with its log in a file; killed when dropped.
pub struct Served {
    process: KillOnDrop,
    log: std::path::PathBuf,
}

impl Served {
    /// Starts `portico serve --config CONFIG` with `env`; its log (`PORTICO_LOG=info`) goes to
    /// `log`. Returns at once: `address` waits until it listens.
    pub fn spawn(config: &std::path::Path, env: &[(&str, &str)], log: &std::path::Path) -> Self {
        let file = std::fs::File::create(log).unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_portico"));
        command
            .args(["serve", "--config"])
            .arg(config)
            .env("PORTICO_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(file);
        for (name, value) in env {
            command.env(name, value);
        }
        Self {
            process: KillOnDrop(command.spawn().unwrap()),
            log: log.to_path_buf(),
        }
    }

    /// The address it logged (`127.0.0.1:PORT`), once it logs it (30 s at most).
    pub async fn address(&mut self) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(address) = self.log().lines().find_map(logged_address) {
                return address;
            }
            if let Ok(Some(status)) = self.process.0.try_wait() {
                panic!("portico exited with {status}:\n{}", self.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "portico logged no address:\n{}",
                self.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (what an orchestrator sends to stop it), without waiting.
    pub fn terminate(&self) {
        // SAFETY: a signal to the child this struct started and has not reaped.
        unsafe {
            libc::kill(self.process.0.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// SIGHUP: read the configuration file again.
    pub fn hangup(&self) {
        // SAFETY: a signal to the child this struct started and has not reaped.
        unsafe {
            libc::kill(self.process.0.id() as libc::pid_t, libc::SIGHUP);
        }
    }

    /// SIGKILL, and waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
    }
}
