//! The outside security review's findings on reads (OWASP API Security Top 10), each kept
//! closed: hostile headers, scopes, query strings and cursors get a precise 4xx and never
//! reach the database; nested rows keep their parent's row policy on every path; a logged
//! value cannot forge a log line; the demo's published secret never serves production.

use base64::Engine;
use serde_json::{json, Value};

use crate::auth::{auth_config, hs_token, portal, staff};
use crate::fixture::{self, Kind};
use crate::harness::{backend, Portico};
use crate::idp::JwksServer;

const QUERIES: &str = "portico_source_queries_total{source=\"legacy\"}";

async fn queries(app: &Portico) -> f64 {
    let text = app.get_text("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(QUERIES).and_then(|r| r.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// The anonymous fixture with every answer cached for a minute.
async fn cached_fixture(extra_server: &str) -> Portico {
    let config = fixture::config(Kind::Sqlite, &backend(Kind::Sqlite).connection_string, "")
        .replacen(
            "workers = 2",
            &format!("workers = 2\n{extra_server}\n\n[cache]\ndefault_ttl = \"60s\""),
            1,
        );
    Portico::spawn(&config).await
}

#[tokio::test]
async fn several_authorization_headers_are_a_400_not_the_first_one_silently() {
    let jwks = JwksServer::start(Vec::new());
    let app = Portico::spawn(&auth_config(&jwks, "")).await;
    let (a, b) = (
        format!("Bearer {}", staff()),
        format!("Bearer {}", portal("C001")),
    );
    for path in ["/v1/jobs", "/v1/jobs/J0001", "/v1/jobs/J0003/operations"] {
        let (status, headers, body) = app
            .get_with(path, &[("authorization", &a), ("authorization", &b)])
            .await;
        assert_eq!(status, 400, "{path}: {}", String::from_utf8_lossy(&body));
        let problem: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["type"], "/problems/invalid-request");
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains("invalid_request"), "{challenge}");
    }
    assert_eq!(queries(&app).await, 0.0);
}

#[tokio::test]
async fn scopes_split_on_ascii_spaces_only() {
    let jwks = JwksServer::start(Vec::new());
    let app = Portico::spawn(&auth_config(&jwks, "")).await;
    // A no-break space is whitespace to Unicode, not to RFC 6749: this is one (invalid) scope
    // token, which grants neither `jobs:read` nor `jobs:read:all`.
    let smuggled = hs_token(
        "smuggler",
        json!({"scope": "jobs:read\u{a0}jobs:read:all", "customer_id": "C001"}),
    );
    let answer = app.get_as("/v1/jobs?limit=100", Some(&smuggled)).await;
    assert_eq!(answer.problem(403)["type"], "/problems/insufficient-scope");
    let honest = hs_token(
        "staff",
        json!({"scope": "jobs:read jobs:read:all", "customer_id": "C001"}),
    );
    let answer = app.get_as("/v1/jobs?limit=100", Some(&honest)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["data"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn nested_rows_keep_their_parents_row_policy_on_every_path() {
    let jwks = JwksServer::start(Vec::new());
    let app = Portico::spawn(&auth_config(&jwks, "")).await;
    let jobs = fixture::jobs(Kind::Sqlite);
    let owner = |job: &str| {
        jobs.iter()
            .find(|j| j.id == job)
            .map(|j| j.customer.clone())
            .unwrap_or_default()
    };
    let all_ops = fixture::ops();
    // J0003 belongs to C003, J0004 to C004.
    let (own, other) = ("J0003", "J0004");
    assert_eq!(owner(own), "C003");
    assert_ne!(owner(other), "C003");
    let token = portal("C003");
    for round in 0..2 {
        // Listed directly, twice (the second time from the cache): only C003's jobs' rows.
        let rows = app
            .all_pages_as("/v1/operations?limit=1", Some(&token))
            .await;
        let expected = all_ops.iter().filter(|o| owner(&o.0) == "C003").count();
        assert_eq!(rows.len(), expected, "round {round}: {rows:?}");
        assert!(rows.iter().all(|r| r["job_id"] == own), "{rows:?}");
        // Filtering on another customer's job finds nothing; its rows by key are 404s.
        let answer = app
            .get_as(&format!("/v1/operations?job_id={other}"), Some(&token))
            .await;
        assert_eq!(answer.body["data"], json!([]), "{}", answer.body);
        app.get_as(&format!("/v1/operations/{other},10"), Some(&token))
            .await
            .problem(404);
        assert_eq!(
            app.get_as(&format!("/v1/operations/{own},10"), Some(&token))
                .await
                .status,
            200
        );
        app.get_as(&format!("/v1/jobs/{other}/operations"), Some(&token))
            .await
            .problem(404);
    }
    // Staff are not restricted by the jobs' policy, so they see every operation.
    let rows = app
        .all_pages_as("/v1/operations?limit=4", Some(&staff()))
        .await;
    assert_eq!(rows.len(), all_ops.len());
    // A portal token without the claim the parent's policy needs is refused, never served all;
    // a blank claim is as good as none (it would match blank legacy values).
    for claims in [
        json!({"scope": "ops:read"}),
        json!({"scope": "ops:read", "customer_id": "   "}),
    ] {
        let token = hs_token("portal-x", claims);
        let answer = app.get_as("/v1/operations", Some(&token)).await;
        assert!(answer.problem(403)["detail"]
            .as_str()
            .unwrap()
            .contains("customer_id"));
    }
}

/// Readiness pings each source at most once a second, however many unauthenticated probes
/// arrive (the review sent 17,000 a second, each a query on the legacy database).
#[tokio::test]
async fn readiness_probes_are_coalesced() {
    let config = fixture::config(Kind::Sqlite, &backend(Kind::Sqlite).connection_string, "");
    let parsed = portico::config::parse("test.toml", &config, &|_| None).unwrap();
    let mut services = portico::app::build(&parsed, "test.toml").unwrap();
    let pings = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let real = services.sources["legacy"].clone();
    services.sources.insert(
        "legacy".into(),
        std::sync::Arc::new(CountingPings {
            inner: real,
            pings: pings.clone(),
        }),
    );
    let app = Portico::start(services, &parsed).await;
    let answers =
        futures_util::future::join_all((0..200).map(|_| app.get_with("/readyz", &[]))).await;
    assert!(answers.iter().all(|(status, _, _)| *status == 200));
    assert_eq!(pings.load(std::sync::atomic::Ordering::SeqCst), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.get_with("/readyz", &[]).await.0, 200);
    assert_eq!(pings.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// The real source, counting its pings.
struct CountingPings {
    inner: std::sync::Arc<dyn portico::source::Source>,
    pings: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[tokio::test]
async fn item_lookups_take_no_parameters_and_junk_never_reaches_cache_or_database() {
    let app = cached_fixture("").await;
    let first = app.get("/v1/jobs/J0001").await;
    assert_eq!(first.status, 200);
    let after_first = queries(&app).await;
    for junk in ["?junk1=", "?junk2=x", "?fields=id", "?limit=1", "?a=1&b=2"] {
        let answer = app.get(&format!("/v1/jobs/J0001{junk}")).await;
        let problem = answer.problem(400);
        assert!(
            problem["detail"].as_str().unwrap().contains("takes none"),
            "{problem}"
        );
    }
    assert_eq!(
        queries(&app).await,
        after_first,
        "junk reached the database"
    );
    // Spellings of one request share one entry: the key's legacy value, the query parsed.
    for spelled in ["/v1/jobs/%4A0001", "/v1/jobs/J0001%20"] {
        assert_eq!(app.get(spelled).await.body, first.body, "{spelled}");
    }
    let op = app.get("/v1/operations/J0003,10").await;
    assert_eq!(op.status, 200);
    assert_eq!(queries(&app).await, after_first + 1.0);
    for spelled in [
        "/v1/operations/J0003,010",
        "/v1/operations/J0003,+10",
        "/v1/operations/J0003,0000010",
    ] {
        assert_eq!(app.get(spelled).await.body, op.body, "{spelled}");
    }
    let page = app.get("/v1/jobs?status=open&limit=5").await;
    assert_eq!(page.status, 200);
    let before = queries(&app).await;
    assert_eq!(
        before,
        after_first + 2.0,
        "one query per row and page, whatever the spelling"
    );
    for same in [
        "/v1/jobs?limit=5&status=open",
        "/v1/jobs?status%5Beq%5D=op%65n&limit=5",
        "/v1/jobs?limit=05&status=open",
    ] {
        let answer = app.get(same).await;
        assert_eq!(answer.body, page.body, "{same}");
    }
    assert_eq!(
        queries(&app).await,
        before,
        "each spelling was served from the cache"
    );
}

#[tokio::test]
async fn filters_and_their_values_are_bounded_and_named() {
    let app = cached_fixture("").await;
    // The review's 1,000 `ne` filters: a 400, not a 502 (one filter per field and operator).
    let many: Vec<String> = (0..1000).map(|i| format!("description[ne]=x{i}")).collect();
    let answer = app.get(&format!("/v1/jobs?{}", many.join("&"))).await;
    let problem = answer.problem(400);
    assert_eq!(problem["parameter"], "description[ne]");
    // As many different filters: a 400 naming the first one too many.
    let mut many: Vec<String> = Vec::new();
    for field in ["id", "customer_id", "description"] {
        for op in ["eq", "ne", "lt", "lte", "gt", "gte", "in", "prefix"] {
            many.push(format!("{field}[{op}]=x"));
        }
        many.push(format!("{field}[null]=false"));
    }
    for op in ["eq", "ne", "lt", "lte", "gt", "gte", "in"] {
        many.push(format!("priority[{op}]=1"));
    }
    let answer = app.get(&format!("/v1/jobs?{}", many.join("&"))).await;
    let problem = answer.problem(400);
    assert_eq!(problem["parameter"], "priority[gte]");
    assert!(
        problem["detail"].as_str().unwrap().contains("at most 32"),
        "{problem}"
    );
    let at_limit = many[..32].join("&");
    let answer = app.get(&format!("/v1/jobs?{at_limit}")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Values count too: six `in` lists of 100 values bind 600.
    let list = |value: &dyn Fn(usize) -> String| (0..100).map(value).collect::<Vec<_>>().join(",");
    let text = list(&|i| format!("J{i:04}"));
    let lists = [
        ("id", text.clone()),
        ("customer_id", text.clone()),
        ("description", text),
        ("priority", list(&|i| i.to_string())),
        ("amount", list(&|i| format!("{i}.50"))),
        ("created_on", list(&|i| format!("20{i:02}-01-01"))),
    ];
    let query = lists
        .iter()
        .map(|(f, values)| format!("{f}[in]={values}"))
        .collect::<Vec<_>>()
        .join("&");
    let answer = app.get(&format!("/v1/jobs?{query}")).await;
    let problem = answer.problem(400);
    assert_eq!(problem["parameter"], "created_on[in]");
    assert!(
        problem["detail"].as_str().unwrap().contains("at most 500"),
        "{problem}"
    );
    // A value longer than its column, or than any database takes as a pattern, never reaches
    // it (25,001 `_` made SQLite refuse the LIKE: a 502 that blamed the operator).
    let long = "_".repeat(25_001);
    let answer = app
        .get(&format!("/v1/jobs?description[prefix]={long}"))
        .await;
    assert!(answer.problem(400)["detail"]
        .as_str()
        .unwrap()
        .contains("4000 bytes"));
    let answer = app.get("/v1/jobs?id[prefix]=J00000001").await;
    assert!(answer.problem(400)["detail"]
        .as_str()
        .unwrap()
        .contains("column's 8 characters"));
    // Both limits are the operator's.
    let strict = cached_fixture("max_filter_terms = 2\nmax_bound_parameters = 3").await;
    let answer = strict
        .get("/v1/jobs?status=open&rush=true&priority=1")
        .await;
    assert_eq!(answer.problem(400)["parameter"], "priority");
    let answer = strict.get("/v1/jobs?id[in]=J0001,J0002,J0003,J0004").await;
    assert_eq!(answer.problem(400)["parameter"], "id[in]");
}

/// A value that is not percent-encoded UTF-8 is blamed on its parameter, by name; a name that
/// is not, on the name as the client wrote it.
#[tokio::test]
async fn a_bad_percent_encoding_names_the_parameter_not_the_value() {
    let app = cached_fixture("").await;
    let answer = app.get("/v1/jobs?description=caf%E9").await;
    let problem = answer.problem(400);
    assert_eq!(problem["parameter"], "description", "{problem}");
    assert_eq!(
        problem["detail"],
        "query parameter `description` has a value that is not valid percent-encoded UTF-8"
    );
    let answer = app.get("/v1/jobs?descr%E9ption[prefix]=x").await;
    let problem = answer.problem(400);
    assert_eq!(problem["parameter"], "descr%E9ption[prefix]", "{problem}");
    assert_eq!(
        problem["detail"],
        "query parameter `descr%E9ption[prefix]` is a name that is not valid percent-encoded UTF-8"
    );
}

#[tokio::test]
async fn cursors_carry_only_values_of_their_sort_fields_types() {
    let app = cached_fixture("").await;
    let page = app.get("/v1/jobs?sort=-priority&limit=3").await;
    let cursor = page.body["next_cursor"].as_str().unwrap().to_string();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut decoded: Value = serde_json::from_slice(&engine.decode(&cursor).unwrap()).unwrap();
    assert_eq!(decoded["s"], "-priority,id");
    assert_eq!(decoded["v"][0]["t"], "i", "{decoded}");
    // Text where the integer `priority` goes: it would be compared with PRIORITY in SQL.
    let text = base64::engine::general_purpose::STANDARD_NO_PAD.encode("1 OR 1=1");
    decoded["v"][0] = json!({ "t": "s", "v": text });
    let forged = engine.encode(decoded.to_string());
    let before = queries(&app).await;
    let answer = app
        .get(&format!("/v1/jobs?sort=-priority&limit=3&cursor={forged}"))
        .await;
    assert_eq!(answer.problem(400)["parameter"], "cursor");
    assert_eq!(queries(&app).await, before);
    // The cursor the API issued still pages.
    let next = app
        .get(&format!("/v1/jobs?sort=-priority&limit=3&cursor={cursor}"))
        .await;
    assert_eq!(next.status, 200, "{}", next.body);
}

/// A blocking HTTP/1.0 POST of a JSON body: the status.
fn http_post(address: &str, path: &str, token: &str, body: &Value) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let body = body.to_string();
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response[9..12].parse().unwrap()
}

/// Values a client chooses reach the log: a webhook URL (the review forged an audit line with
/// CR/LF in one) and a token's subject. Neither starts a line of its own.
#[test]
fn a_logged_value_cannot_forge_a_log_line() {
    use std::io::{BufRead, BufReader};
    let (dir, db) = crate::harness::demo_database();
    let forged = "2026-11-29T00:00:00.000000Z  WARN portico::audit: event=\"refused\" who=admin";
    let config = dir.path().join("demo.toml");
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml"))
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:0");
    std::fs::write(&config, demo).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("DEMO_DB", &db)
        .env("PORTICO_STATE", dir.path().join("state.sqlite3"))
        .env("PORTICO_LOG", "info")
        .env_remove("PORTICO_DEV_SECRET")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = crate::harness::KillOnDrop(child);
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let address = loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("portico serve logs its address");
        if let Some(address) = crate::harness::logged_address(&line) {
            break address;
        }
    };
    let token = |sub: &str, scope: &str| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({
            "sub": sub, "scope": scope, "iss": "portico-demo", "aud": "portico",
            "iat": now, "nbf": now, "exp": now + 600,
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(
                b"portico-demo-development-secret-do-not-deploy",
            ),
        )
        .unwrap()
    };
    // A webhook URL with CR/LF (the demo allows localhost targets).
    let admin = token("ops", "portico:admin");
    let hook = json!({"name": "forger", "url": format!("http://localhost:9/x\r\n{forged}"),
                      "version": "v1", "events": ["jobs.*"], "scopes": ["jobs:read", "jobs:read:all"]});
    let status = http_post(&address, "/admin/subscriptions", &admin, &hook);
    assert_eq!(status, 422, "a URL with control characters is refused");
    // An admin action spelled to look like audit fields is not an action: nothing is audited.
    let staff = json!({"name": "staff", "url": "http://localhost:9/x", "version": "v1",
                       "events": ["jobs.*"], "scopes": ["jobs:read", "jobs:read:all"]});
    assert_eq!(
        http_post(&address, "/admin/subscriptions", &admin, &staff),
        201
    );
    let forged_action = "/admin/subscriptions/staff/delete%20subscription=victim";
    assert_eq!(http_post(&address, forged_action, &admin, &json!({})), 404);
    // A subject with CR/LF, refused for lack of scope and audited.
    let mallory = token(&format!("mallory\r\n{forged}"), "");
    let (status, _) = crate::cli::http_get(&address, "/v1/jobs", Some(&mallory));
    assert_eq!(status, 403, "no scope: refused and audited");
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(child);
    let log: Vec<String> = lines.try_iter().collect();
    assert!(
        !log.iter().any(|l| l.starts_with("2026-11-29T00:00:00")),
        "a forged line: {log:#?}"
    );
    assert!(
        !log.iter()
            .any(|l| l.contains(" subscription=victim") || l.contains("subscription.delete")),
        "{log:#?}"
    );
    let audit = log
        .iter()
        .find(|l| l.contains("mallory"))
        .unwrap_or_else(|| panic!("the refusal is audited: {log:#?}"));
    assert!(audit.contains("mallory\\r\\n2026-11-29"), "{audit}");
}

impl portico::source::Source for CountingPings {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn dialect(&self) -> portico::source::Dialect {
        self.inner.dialect()
    }

    fn query(
        &self,
        statement: portico::source::Statement,
    ) -> portico::source::SourceFuture<'_, portico::source::Rows> {
        self.inner.query(statement)
    }

    fn write(
        &self,
        steps: Vec<portico::source::write::Step>,
    ) -> portico::source::SourceFuture<'_, portico::source::write::WriteOutcome> {
        self.inner.write(steps)
    }

    fn call(
        &self,
        call: portico::source::call::Call,
    ) -> portico::source::SourceFuture<'_, portico::source::call::CallOutcome> {
        self.inner.call(call)
    }

    fn ping(&self) -> portico::source::SourceFuture<'_, ()> {
        self.pings.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.ping()
    }
}
