//! The dashboard example (`examples/dashboard`): a static page served from another origin,
//! driven in headless Chromium against `portico serve` on the demo. What the page shows — the
//! chart (aggregates), the total (count), the rows with their customer's name (expand), the
//! next page (cursor) — equals what the API answers, so CORS, aggregates, expand and counts
//! are proven from a real browser.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::harness::{demo_database, Served};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `examples/dashboard` over HTTP on a port of its own: another origin than Portico's.
struct StaticSite {
    child: Child,
    port: u16,
}

impl StaticSite {
    fn start() -> Self {
        let mut child = Command::new(repo(".venv/bin/python"))
            .args([
                "-u",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(repo("examples/dashboard"))
            .arg("0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run `bash scripts/install-deps.sh test` (.venv)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("static server said {line:?}"));
        Self { child, port }
    }
}

impl Drop for StaticSite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo as `make run` serves it, on a free port, allowing `origin` across origins.
async fn demo(dir: &Path, origin: &str) -> (Served, String) {
    let (_built, db) = demo_database();
    let db_copy = dir.join("legacy.db");
    std::fs::copy(&db, &db_copy).unwrap();
    let text = std::fs::read_to_string(repo("config/demo.toml"))
        .unwrap()
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"");
    let text = allow_only(&text, origin);
    let config = dir.join("demo.toml");
    std::fs::write(&config, text).unwrap();
    let state = dir.join("state.sqlite3");
    let mut served = Served::spawn(
        &config,
        &[
            ("DEMO_DB", db_copy.to_str().unwrap()),
            ("PORTICO_STATE", state.to_str().unwrap()),
        ],
        &dir.join("portico.log"),
    );
    let base = format!("http://{}", served.address().await);
    (served, base)
}

/// The demo's `[server.cors]` with `origin` as its one allowed origin.
fn allow_only(config: &str, origin: &str) -> String {
    let mut found = false;
    let text: Vec<String> = config
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("allowed_origins") {
                found = true;
                format!("allowed_origins = [\"{origin}\"]")
            } else {
                line.to_string()
            }
        })
        .collect();
    assert!(found, "config/demo.toml has [server.cors] allowed_origins");
    text.join("\n")
}

/// A development token `portico token` mints from `config`.
pub(crate) fn token(config: &Path, subject: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["token", "--config"])
        .arg(config)
        .args(["--subject", subject])
        .args(args)
        .env("DEMO_DB", "unused")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// What the page showed, driven by tests/browser/dashboard.mjs.
async fn browse(page: &str, api: &str, token: &str, screenshot: &Path) -> Value {
    let args = [page, api, token, &screenshot.display().to_string()].map(str::to_string);
    drive("dashboard.mjs", args.to_vec()).await
}

/// Runs the browser driver `script` (in tests/browser) with `args`; what it printed, as JSON.
pub(crate) async fn drive(script: &str, args: Vec<String>) -> Value {
    let driver = repo("tests/browser").join(script);
    assert!(
        repo("tests/browser/node_modules/playwright-core").exists(),
        "run `bash scripts/install-deps.sh test` (tests/browser)"
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(driver)
            .args(args)
            .output()
            .expect("node")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the browser driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

async fn api(base: &str, token: &str, path: &str) -> Value {
    let answer = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{path}");
    answer.json().await.unwrap()
}

/// The rows as the page shows them: id, customer's name (a dash when hidden), status, due date.
fn shown(page: &Value) -> Vec<Value> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| {
            serde_json::json!({
                "id": job["id"],
                "customer_name": job["customer"]["name"].as_str().unwrap_or("—"),
                "status": job["status"],
                "due_on": job["due_on"].as_str().unwrap_or(""),
            })
        })
        .collect()
}

/// What the API answers for the page's three requests, as the page shows them.
async fn expected(base: &str, token: &str) -> Value {
    let chart = api(base, token, "/v1/jobs/aggregate?group_by=status&count=true").await;
    let chart: Vec<Value> = chart["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| serde_json::json!({"status": g["group"]["status"].as_str().unwrap_or(""), "count": g["count"]}))
        .collect();
    let list = "/v1/jobs?expand=customer&count=exact&limit=20";
    let first = api(base, token, list).await;
    let second = match first["next_cursor"].as_str() {
        Some(cursor) => shown(&api(base, token, &format!("{list}&cursor={cursor}")).await).into(),
        None => Value::Null,
    };
    let held = api(base, token, &format!("{list}&status=held")).await;
    serde_json::json!({
        "chart": chart,
        "total": first["total"],
        "first": shown(&first),
        "second": second,
        "held": {"total": held["total"], "rows": shown(&held)},
    })
}

#[tokio::test]
async fn the_dashboard_shows_what_the_api_answers_from_another_origin() {
    let dir = tempfile::tempdir().unwrap();
    let site = StaticSite::start();
    let origin = format!("http://127.0.0.1:{}", site.port);
    let (served, base) = demo(dir.path(), &origin).await;
    let config = dir.path().join("demo.toml");
    let staff = token(
        &config,
        "clerk",
        &[
            "--scope",
            "jobs:read",
            "--scope",
            "jobs:read:all",
            "--scope",
            "customers:read",
            "--scope",
            "customers:read:all",
        ],
    );
    let shot = dir.path().join("dashboard.png");
    let page = browse(&format!("{origin}/"), &base, &staff, &shot).await;
    assert!(page["error"].is_null(), "{page}\n{}", served.log());
    let want = expected(&base, &staff).await;
    for part in ["chart", "total", "first", "second", "held"] {
        assert_eq!(page[part], want[part], "the page's {part}");
    }
    let chart_sum: i64 = want["chart"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["count"].as_i64().unwrap())
        .sum();
    assert_eq!(
        Some(chart_sum),
        want["total"].as_i64(),
        "the chart covers every job"
    );
    assert_eq!(page["first"].as_array().unwrap().len(), 20);
    assert!(
        page["first"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["customer_name"] != "—"),
        "staff see every job's customer: {}",
        page["first"]
    );
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a screenshot"
    );

    // A customer portal's token: its own jobs, its own customer's name, its own counts.
    let portal = token(
        &config,
        "portal-C00002",
        &[
            "--scope",
            "jobs:read",
            "--scope",
            "customers:read",
            "--claim",
            "customer_id=C00002",
        ],
    );
    let page = browse(&format!("{origin}/"), &base, &portal, &shot).await;
    assert!(page["error"].is_null(), "{page}");
    let want = expected(&base, &portal).await;
    for part in ["chart", "total", "first", "second", "held"] {
        assert_eq!(page[part], want[part], "the portal page's {part}");
    }
    let own = api(&base, &portal, "/v1/customers/C00002").await;
    let name = own["name"].as_str().unwrap();
    for row in page["first"].as_array().unwrap() {
        assert_eq!(row["customer_name"], name, "{row}");
    }

    // The same page from an origin the configuration does not name: the browser refuses
    // Portico's answers to it, and the page says so.
    let stranger = format!("http://localhost:{}/", site.port);
    let page = browse(&stranger, &base, &staff, &shot).await;
    let error = page["error"].as_str().unwrap_or_default();
    assert!(error.contains("cannot reach"), "{page}");
    assert!(page["chart"].is_null() && page["first"].is_null(), "{page}");
}
