//! The `portico` binary: check, introspect, serve with graceful shutdown, example configs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn portico() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portico"))
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs `portico ARGS --config CONFIG` with `DEMO_DB` pointing at `db`.
fn run(args: &[&str], config: &Path, db: &Path) -> std::process::Output {
    portico()
        .args(args)
        .arg("--config")
        .arg(config)
        .env("DEMO_DB", db)
        .output()
        .unwrap()
}

use crate::harness::demo_database;

/// The lines `portico serve` writes to stderr.
type LogLines = std::io::Lines<BufReader<std::process::ChildStderr>>;

/// Starts `portico serve --config CONFIG` (`DEMO_DB` = `db`, more variables in `env`); returns
/// the process, the rest of its log and the address it logged.
fn serve(
    config: &Path,
    db: &Path,
    env: &[(&str, &Path)],
) -> (std::process::Child, LogLines, String) {
    let mut command = portico();
    command
        .args(["serve", "--config"])
        .arg(config)
        .env("DEMO_DB", db)
        .env("PORTICO_LOG", "info")
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines.next().expect("portico logs its address").unwrap();
        if let Some(address) = crate::harness::logged_address(&line) {
            break address;
        }
    };
    (child, lines, address)
}

#[test]
fn check_accepts_the_demo_and_what_introspect_prints() {
    let (_dir, db) = demo_database();
    let out = run(&["check"], &repo("config/demo.toml"), &db);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(
        &["introspect", "--source", "shop"],
        &repo("config/demo.toml"),
        &db,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let starter = String::from_utf8(out.stdout).unwrap();
    assert!(
        starter.contains("[versions.v1.resources.jobhdr]"),
        "{starter}"
    );
    assert!(starter.contains("key = [\"job_no\"]"));
    // The declarations the catalog gives, so writes and the document are bounded by them.
    for line in [
        "cust_no = { column = \"CUST_NO\", type = \"string\", column_type = \"char(8)\", nullable = false }",
        "credit_lim = { column = \"CREDIT_LIM\", type = \"decimal\", column_type = \"decimal(11,2)\", scale = 2 }",
        "descr = { column = \"DESCR\", type = \"string\", column_type = \"varchar(60)\" }",
    ] {
        assert!(starter.contains(line), "{line} in:\n{starter}");
    }
    assert!(
        starter.contains("key = [\"job_no\", \"op_seq\"]"),
        "composite primary key: {starter}"
    );
    assert!(
        starter.contains(
            "connection_string = \"Driver=SQLite3;Database=${DEMO_DB:-config/demo/legacy.db}\""
        ),
        "secrets stay references"
    );
    let file = _dir.path().join("starter.toml");
    std::fs::write(&file, &starter).unwrap();
    let out = run(&["check"], &file, &db);
    assert!(
        out.status.success(),
        "check rejects introspect output: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn introspect_reads_the_table_named_not_the_tables_its_name_matches() {
    let (_dir, db) = demo_database();
    let cs = format!("Driver=SQLite3;Database={}", db.display());
    // SQLColumns takes `_` as "any character": JOB_LINES would also match JOBXLINES.
    crate::harness::execute(&cs, "CREATE TABLE JOB_LINES (LINE_NO INTEGER PRIMARY KEY)");
    crate::harness::execute(
        &cs,
        "CREATE TABLE JOBXLINES (OTHER_COL INTEGER PRIMARY KEY)",
    );
    let out = run(
        &["introspect", "--source", "shop"],
        &repo("config/demo.toml"),
        &db,
    );
    let starter = String::from_utf8(out.stdout).unwrap();
    let section = starter
        .split("[versions.v1.resources.job_lines.fields]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .unwrap_or_else(|| panic!("job_lines in:\n{starter}"));
    assert!(section.contains("LINE_NO"), "{section}");
    assert!(!section.contains("OTHER_COL"), "{section}");
}

#[test]
fn check_warns_of_a_written_decimal_whose_precision_nobody_gives() {
    let (dir, db) = demo_database();
    let cs = format!("Driver=SQLite3;Database={}", db.display());
    crate::harness::execute(
        &cs,
        "CREATE TABLE LEDGER (ID CHAR(4) NOT NULL PRIMARY KEY, AMT DECIMAL)",
    );
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[auth]
development = true
issuer = "i"
audience = "a"
[[auth.keys]]
algorithm = "HS256"
secret = "a-development-secret-long-enough-for-hs256"
[state]
path = "{state}"
[sources.shop]
kind = "odbc"
dialect = "sqlite"
connection_string = "{cs}"
[versions.v1.resources.ledger]
source = "shop"
table = "LEDGER"
key = ["id"]
read_scope = "ledger:read"
write_scope = "ledger:write"
writes = ["create"]
[versions.v1.resources.ledger.fields]
id = {{ column = "ID", type = "string" }}
amount = {{ column = "AMT", type = "decimal", scale = 2 }}
"#,
        state = dir.path().join("state.sqlite3").display()
    );
    let file = dir.path().join("ledger.toml");
    std::fs::write(&file, &config).unwrap();
    let out = run(&["check"], &file, &db);
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a warning is not a problem: {report}");
    assert!(
        report.contains("versions.v1.resources.ledger.fields.amount")
            && report.contains("decimal(p,s)"),
        "{report}"
    );
}

#[test]
fn check_reports_every_problem_with_its_location() {
    let (dir, db) = demo_database();
    let config = format!(
        r#"
[sources.shop]
kind = "odbc"
dialect = "sqlite"
connection_string = "Driver=SQLite3;Database={db}"
query_timeout = "soon"

[versions.v1.resources.jobs]
source = "shop"
table = "JOBHDR"
key = ["id"]
anonymous = true
default_sort = ["colour"]
[versions.v1.resources.jobs.fields]
id = {{ column = "JOB_NO", type = "string", column_type = "char(10)" }}
status = {{ column = "STATUS", type = "string", codes = {{ O = "open" }}, sortable = true }}

[versions.v1.resources.ghost]
source = "shop"
table = "NO_SUCH_TABLE"
key = ["id"]
anonymous = true
[versions.v1.resources.ghost.fields]
id = {{ column = "ID", type = "integer" }}
"#,
        db = db.display()
    );
    let file = dir.path().join("broken.toml");
    std::fs::write(&file, &config).unwrap();
    let out = run(&["check"], &file, &db);
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stderr);
    for location in [
        "sources.shop.query_timeout",
        "versions.v1.resources.jobs.default_sort",
        "versions.v1.resources.jobs.fields.status.sortable",
    ] {
        assert!(
            report.contains(location),
            "missing {location} in:\n{report}"
        );
    }

    // A well-formed config whose table does not exist fails against the database.
    let fixed = config
        .replace("query_timeout = \"soon\"", "")
        .replace("default_sort = [\"colour\"]", "")
        .replace(", sortable = true", "");
    std::fs::write(&file, fixed).unwrap();
    let out = run(&["check"], &file, &db);
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        report.contains("versions.v1.resources.ghost: the database refused"),
        "{report}"
    );
    assert!(
        !report.contains("resources.jobs:"),
        "the valid resource passes: {report}"
    );

    // A missing environment variable is named.
    std::fs::write(
        &file,
        config.replace(&db.display().to_string(), "${NOT_SET_ANYWHERE}"),
    )
    .unwrap();
    let out = run(&["check"], &file, &db);
    assert!(String::from_utf8_lossy(&out.stderr).contains("`NOT_SET_ANYWHERE`"));
}

#[test]
fn every_example_config_loads_and_compiles() {
    let scratch = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(repo("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            // Every variable is set (state files go to a scratch directory, not the repository).
            let state = scratch.path().join("state.sqlite3").display().to_string();
            let config = portico::config::parse(&path.display().to_string(), &text, &|name| {
                Some(match name {
                    "PORTICO_STATE" => state.clone(),
                    // A fleet replica's address and shared store (config/fleet.toml).
                    "PORTICO_LISTEN" => "127.0.0.1:8081".into(),
                    "PORTICO_STATE_URL" => {
                        "postgres://portico:secret@127.0.0.1:5432/portico".into()
                    }
                    _ => "x".repeat(64),
                })
            })
            .unwrap_or_else(|e| panic!("{e}"));
            portico::app::build(&config, &path.display().to_string())
                .unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen >= 1, "config/ holds examples");
}

/// A plain HTTP/1.0 GET with an optional bearer token: status code and body as JSON.
pub fn http_get(address: &str, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\n{authorization}\r\n").as_bytes())
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    (status, serde_json::from_str(body).unwrap_or_default())
}

#[test]
fn serve_answers_the_demo_and_stops_gracefully_on_sigterm() {
    let (dir, db) = demo_database();
    let text = std::fs::read_to_string(repo("config/demo.toml"))
        .unwrap()
        .replace(
            "listen = \"127.0.0.1:8080\"",
            "listen = \"127.0.0.1:0\"\nworkers = 1",
        );
    let file = dir.path().join("serve.toml");
    std::fs::write(&file, text).unwrap();
    let (mut child, _log, address) = serve(&file, &db, &[]);
    // The README's tokens, minted by `portico token` for the demo's development secret.
    let token = |args: &[&str]| {
        let out = run(&[&["token"], args].concat(), &file, &db);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let staff = token(&[
        "--scope",
        "jobs:read",
        "--scope",
        "jobs:read:all",
        "--scope",
        "jobs:read:amounts",
        "--scope",
        "customers:read",
        "--scope",
        "customers:read:all",
    ]);
    let portal = token(&[
        "--subject",
        "portal-C00002",
        "--scope",
        "jobs:read",
        "--scope",
        "customers:read",
        "--claim",
        "customer_id=C00002",
    ]);
    let get = |path: &str, token: &str| {
        let (status, body) = http_get(&address, path, Some(token));
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    };
    assert_eq!(http_get(&address, "/v1/jobs/J000001", None).0, 401);
    let job = get("/v1/jobs/J000001", &staff);
    assert_eq!(job["id"], "J000001");

    // The quick start's promise: five open jobs with ISO dates and exact amounts.
    let page = get("/v1/jobs?status=open&limit=5", &staff);
    let jobs = page["data"].as_array().unwrap();
    assert_eq!(jobs.len(), 5);
    for job in jobs {
        assert_eq!(job["status"], "open");
        let due = job["due_on"].as_str().unwrap();
        assert!(
            portico::catalog::date::Date::parse_iso(due).is_some(),
            "{due}"
        );
        let amount = job["quote_amount"].as_str().unwrap();
        let (_, cents) = amount.split_once('.').unwrap();
        assert_eq!(cents.len(), 2, "{amount}");
    }
    assert_eq!(
        get("/v1/customers/C00002", &staff)["name"],
        "Müller Präzision",
        "CP1252 bytes come out as UTF-8"
    );

    // The customer portal: its own jobs only, without the internal amounts.
    let page = get("/v1/jobs?limit=500", &portal);
    let jobs = page["data"].as_array().unwrap();
    assert!(!jobs.is_empty());
    for job in jobs {
        assert_eq!(job["customer_id"], "C00002", "{job}");
        assert!(job.get("quote_amount").is_none(), "{job}");
    }
    assert_eq!(get("/v1/customers/C00002", &portal)["id"], "C00002");
    assert_eq!(
        http_get(&address, "/v1/customers/C00001", Some(&portal)).0,
        404
    );

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "portico did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit on SIGTERM: {status}");
}

/// Removing `development = true` from the demo and listening on every address must not serve
/// tokens anyone can mint with the secret the repository publishes: `check` and `serve` refuse
/// it, and accept the same file once the secret comes from the environment.
#[test]
fn the_demo_secret_never_serves_outside_development() {
    let (_dir, db) = demo_database();
    let scratch = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo("config/demo.toml"))
        .unwrap()
        .replacen("development = true\n", "", 1)
        .replacen("listen = \"127.0.0.1:8080\"", "listen = \"0.0.0.0:0\"", 1);
    let file = scratch.path().join("exposed.toml");
    std::fs::write(&file, text).unwrap();
    let state = scratch.path().join("state.sqlite3");
    let command = |args: &[&str], secret: Option<&str>| {
        let mut command = portico();
        command
            .args(args)
            .arg("--config")
            .arg(&file)
            .env("DEMO_DB", &db)
            .env("PORTICO_STATE", &state)
            .env_remove("PORTICO_DEV_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(secret) = secret {
            command.env("PORTICO_DEV_SECRET", secret);
        }
        command
    };
    let out = command(&["check"], None).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check accepted the published secret");
    assert!(
        stderr.contains("auth.keys[0].secret") && stderr.contains("published"),
        "{stderr}"
    );
    // `serve` stops at once rather than listen.
    let mut child = command(&["serve"], None).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve started with the published secret");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    // Text around the variable is in the file: all of the secret but its first character.
    let around = std::fs::read_to_string(&file).unwrap().replacen(
        "${PORTICO_DEV_SECRET:-portico-demo-development-secret-do-not-deploy}",
        "${PFX}ortico-demo-development-secret-do-not-deploy",
        1,
    );
    let wrapped = scratch.path().join("wrapped.toml");
    std::fs::write(&wrapped, around).unwrap();
    let out = portico()
        .args(["check", "--config"])
        .arg(&wrapped)
        .env("DEMO_DB", &db)
        .env("PORTICO_STATE", &state)
        .env("PFX", "x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a secret mostly in the file passed");
    assert!(stderr.contains("auth.keys[0].secret"), "{stderr}");
    // The same file with a secret of the operator's own passes.
    let mut random = [0u8; 24];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut random,
    )
    .unwrap();
    let own: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let out = command(&["check"], Some(&own)).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `portico check` and `portico openapi` read the file and the databases, never Portico's own
/// state: they create no state store, and an existing one keeps every byte (a subscription
/// the checked file leaves out stays enabled; a changed secret starts no grace period).
#[test]
fn check_and_openapi_leave_the_state_store_untouched() {
    let (dir, db) = demo_database();
    let state = dir.path().join("state.sqlite3");
    let config = |subscriptions: &str| {
        let text = std::fs::read_to_string(repo("config/demo.toml"))
            .unwrap()
            .replace(
                "listen = \"127.0.0.1:8080\"",
                "listen = \"127.0.0.1:0\"\nworkers = 1",
            );
        let file = dir.path().join("demo.toml");
        std::fs::write(&file, format!("{text}\n{subscriptions}")).unwrap();
        file
    };
    let portal = |secret: &str| {
        format!(
            "[subscriptions.portal]\nurl = \"http://127.0.0.1:9/hook\"\nversion = \"v1\"\n\
             events = [\"customers.*\"]\nscopes = [\"customers:read\", \"customers:read:all\"]\n\
             secret = \"{secret}\"\n"
        )
    };
    let read_only = |file: &Path| {
        for args in [&["check"][..], &["openapi", "--version", "v1"]] {
            let out = portico()
                .args(args)
                .arg("--config")
                .arg(file)
                .env("DEMO_DB", &db)
                .env("PORTICO_STATE", &state)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let files = || -> Vec<(String, Vec<u8>)> {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let path = PathBuf::from(format!("{}{suffix}", state.display()));
                std::fs::read(&path)
                    .ok()
                    .map(|bytes| (suffix.to_string(), bytes))
            })
            .collect()
    };

    // No state store yet: none is created.
    let file = config(&portal("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    read_only(&file);
    assert!(
        files().is_empty(),
        "check or openapi created the state store"
    );

    // Serving stores the subscription.
    let (mut child, _log, address) = serve(&file, &db, &[("PORTICO_STATE", &state)]);
    // Answering a request, it is running, and its shutdown handler is in place.
    let (status, _) = http_get(&address, "/healthz", None);
    assert_eq!(status, 200);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    let served = files();
    assert!(!served.is_empty(), "serve opened the state store");

    // Checking a file that drops the subscription, or rotates its secret, writes nothing.
    for subscriptions in [
        String::new(),
        portal("whsec_dGhlIG90aGVyIHNlY3JldCBmb3IgdGVzdHM="),
    ] {
        read_only(&config(&subscriptions));
        assert!(
            files() == served,
            "check or openapi wrote to the state store"
        );
    }

    // What `serve` could not open, `check` names without touching it.
    let file = config("");
    let out = portico()
        .args(["check", "--config"])
        .arg(&file)
        .env("DEMO_DB", &db)
        .env("PORTICO_STATE", &file)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && report.contains("state.path"),
        "{report}"
    );
}
