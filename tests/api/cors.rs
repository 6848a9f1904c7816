//! CORS (`[server.cors]`): preflights answered before auth and the database, refused ones as
//! problem+json, the allowed origin and exposed headers on every answer (problems included),
//! nothing for an origin that is not allowed.

use reqwest::Method;
use serde_json::Value;

use crate::auth::{portal, staff};
use crate::compression::{protected, raw, Raw};
use crate::fixture::Kind;
use crate::harness::Portico;

const DASHBOARD: &str = "http://127.0.0.1:8081";
const QUERIES: &str = "portico_source_queries_total{source=\"legacy\"}";

fn cors_config(cors: &str) -> String {
    protected(Kind::Sqlite, &format!("[server.cors]\n{cors}"))
}

fn dashboard_config() -> String {
    cors_config(
        "allowed_origins = [\"http://127.0.0.1:8081\", \"http://localhost:8081\"]\nmax_age = \"10m\"",
    )
}

async fn preflight(app: &Portico, path: &str, origin: &str, method: &str, headers: &str) -> Raw {
    let mut sent = vec![
        ("origin", origin),
        ("access-control-request-method", method),
    ];
    if !headers.is_empty() {
        sent.push(("access-control-request-headers", headers));
    }
    raw(app, Method::OPTIONS, path, &sent).await
}

fn names(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

fn has_no_cors_headers(answer: &Raw) -> bool {
    answer
        .headers
        .keys()
        .all(|name| !name.as_str().starts_with("access-control-"))
}

const EXPOSED: [&str; 8] = [
    "etag",
    "link",
    "location",
    "retry-after",
    "deprecation",
    "sunset",
    "x-request-id",
    "www-authenticate",
];

fn assert_exposed(answer: &Raw, origin: &str, case: &str) {
    assert_eq!(
        answer.header("access-control-allow-origin"),
        origin,
        "{case}"
    );
    let exposed = names(&answer.header("access-control-expose-headers"));
    for header in EXPOSED {
        assert!(
            exposed.contains(&header.to_string()),
            "{case}: {header} in {exposed:?}"
        );
    }
    assert!(
        answer.varies_by("Origin"),
        "{case}: {}",
        answer.header("vary")
    );
    assert_eq!(
        answer.header("access-control-allow-credentials"),
        "",
        "{case}"
    );
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_without_a_token_or_the_database() {
    let app = Portico::spawn(&dashboard_config()).await;
    for origin in [DASHBOARD, "http://localhost:8081"] {
        for (path, method) in [
            ("/v1/jobs?limit=5", "GET"),
            ("/v1/jobs/J0001", "PATCH"),
            ("/v1/jobs", "POST"),
            ("/v1/jobs/J0001", "DELETE"),
        ] {
            let answer = preflight(
                &app,
                path,
                origin,
                method,
                "authorization, content-type, if-match, if-none-match, idempotency-key",
            )
            .await;
            let case = format!("{origin} {method} {path}");
            assert_eq!(
                answer.status,
                200,
                "{case}: {:?}",
                String::from_utf8_lossy(&answer.body)
            );
            assert!(answer.body.is_empty(), "{case}");
            assert_eq!(
                answer.header("access-control-allow-origin"),
                origin,
                "{case}"
            );
            let methods = names(&answer.header("access-control-allow-methods"));
            for m in ["get", "head", "post", "put", "patch", "delete"] {
                assert!(
                    methods.contains(&m.to_string()),
                    "{case}: {m} in {methods:?}"
                );
            }
            let headers = names(&answer.header("access-control-allow-headers"));
            for h in [
                "authorization",
                "content-type",
                "if-match",
                "if-none-match",
                "idempotency-key",
                "prefer",
                "cache-control",
                "x-request-id",
            ] {
                assert!(
                    headers.contains(&h.to_string()),
                    "{case}: {h} in {headers:?}"
                );
            }
            assert_eq!(answer.header("access-control-max-age"), "600", "{case}");
            assert_eq!(
                answer.header("access-control-allow-credentials"),
                "",
                "{case}"
            );
            assert!(answer.varies_by("Origin"), "{case}");
            assert!(
                !answer.header("x-request-id").is_empty(),
                "{case}: observed"
            );
        }
    }
    // No token was asked for and no statement ran: the preflights never reached a handler.
    assert_eq!(app.metric(QUERIES).await, 0.0);
    assert_eq!(
        app.metric("portico_http_requests_total{route=\"/{version}/{resource}\",method=\"OPTIONS\",status=\"200\"}")
            .await,
        4.0
    );
    assert_eq!(
        app.metric("portico_auth_refused_total{reason=\"missing\"}")
            .await,
        0.0
    );
}

#[tokio::test]
async fn a_preflight_that_is_not_allowed_is_refused_as_problem_json() {
    let app = Portico::spawn(&dashboard_config()).await;
    for (origin, method, headers, names_it) in [
        (
            "https://evil.example",
            "GET",
            "authorization",
            "https://evil.example",
        ),
        // Another port of an allowed host is another origin.
        ("http://127.0.0.1:8082", "GET", "", "http://127.0.0.1:8082"),
        (
            "http://localhost:8081/",
            "GET",
            "",
            "http://localhost:8081/",
        ),
        ("null", "GET", "", "null"),
        (DASHBOARD, "TRACE", "", "TRACE"),
        (DASHBOARD, "GET", "authorization, x-secret", "x-secret"),
    ] {
        let answer = preflight(&app, "/v1/jobs", origin, method, headers).await;
        let case = format!("{origin} {method} {headers}");
        assert_eq!(answer.status, 403, "{case}");
        assert_eq!(
            answer.header("content-type"),
            "application/problem+json",
            "{case}"
        );
        let problem: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(problem["status"], 403, "{case}");
        assert_eq!(problem["type"], "/problems/forbidden", "{case}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(names_it) && detail.contains("server.cors."),
            "{case}: {detail}"
        );
        assert!(has_no_cors_headers(&answer), "{case}: {:?}", answer.headers);
    }
    assert_eq!(app.metric(QUERIES).await, 0.0);
}

#[tokio::test]
async fn answers_to_an_allowed_origin_expose_the_api_headers_problems_included() {
    let app = Portico::spawn(&dashboard_config()).await;
    let origin = ("origin", DASHBOARD);
    let bearer = format!("Bearer {}", staff());
    let portal_bearer = format!("Bearer {}", portal("C001"));

    // A page with a next link.
    let page = raw(
        &app,
        Method::GET,
        "/v1/jobs?limit=5",
        &[origin, ("authorization", &bearer)],
    )
    .await;
    assert_eq!(page.status, 200);
    assert_exposed(&page, DASHBOARD, "GET page");
    assert!(!page.header("etag").is_empty() && !page.header("link").is_empty());
    // The portal's page: its rows only, masked amount, CORS the same.
    let own = raw(
        &app,
        Method::GET,
        "/v1/jobs?limit=5",
        &[origin, ("authorization", &portal_bearer)],
    )
    .await;
    assert_exposed(&own, DASHBOARD, "GET portal page");
    let body: Value = serde_json::from_slice(&own.body).unwrap();
    for row in body["data"].as_array().unwrap() {
        assert_eq!(row["customer_id"], "C001");
        assert!(row.get("amount").is_none());
    }

    // 401 without a token, 404, 400, 405 on a POST: problem+json a page can read.
    let unauthorized = raw(&app, Method::GET, "/v1/jobs", &[origin]).await;
    assert_eq!(unauthorized.status, 401);
    assert_exposed(&unauthorized, DASHBOARD, "401");
    assert!(!unauthorized.header("www-authenticate").is_empty());
    let missing = raw(
        &app,
        Method::GET,
        "/v1/jobs/NOPE",
        &[origin, ("authorization", &bearer)],
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("content-type"), "application/problem+json");
    assert_exposed(&missing, DASHBOARD, "404");
    let bad = raw(
        &app,
        Method::GET,
        "/v1/jobs?limit=x",
        &[origin, ("authorization", &bearer)],
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_exposed(&bad, DASHBOARD, "400");
    let post = crate::compression::raw_with_body(
        &app,
        Method::POST,
        "/v1/jobs",
        &[
            origin,
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(post.status, 405, "jobs take no writes");
    assert_exposed(&post, DASHBOARD, "POST 405");

    // Another origin is served as if it had sent none: no CORS header, so its page cannot
    // read the answer; the request itself is not refused (a browser enforces the rest).
    for headers in [
        vec![
            ("origin", "https://evil.example"),
            ("authorization", bearer.as_str()),
        ],
        vec![("authorization", bearer.as_str())],
    ] {
        let answer = raw(&app, Method::GET, "/v1/jobs?limit=5", &headers).await;
        assert_eq!(answer.status, 200);
        assert!(has_no_cors_headers(&answer), "{:?}", answer.headers);
    }
    let refused = raw(
        &app,
        Method::GET,
        "/v1/jobs",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(refused.status, 401);
    assert!(has_no_cors_headers(&refused));
}

#[tokio::test]
async fn rate_limited_answers_carry_cors_headers() {
    let config = dashboard_config().replacen(
        "\n[sources.legacy]",
        "\n[rate_limit]\nrequests_per_second = 0.01\nburst = 1\n\n[sources.legacy]",
        1,
    );
    let app = Portico::spawn(&config).await;
    let bearer = format!("Bearer {}", staff());
    let headers = [("origin", DASHBOARD), ("authorization", bearer.as_str())];
    let first = raw(&app, Method::GET, "/v1/jobs?limit=1", &headers).await;
    assert_eq!(first.status, 200);
    let limited = raw(&app, Method::GET, "/v1/jobs?limit=1", &headers).await;
    assert_eq!(limited.status, 429);
    assert_exposed(&limited, DASHBOARD, "429");
    assert!(!limited.header("retry-after").is_empty());
    // Preflights spend no token of the limit.
    for _ in 0..3 {
        let answer = preflight(&app, "/v1/jobs", DASHBOARD, "GET", "authorization").await;
        assert_eq!(answer.status, 200);
    }
}

#[tokio::test]
async fn any_origin_gets_a_wildcard_and_no_cors_means_no_headers() {
    let app = Portico::spawn(&cors_config(
        "allowed_origins = [\"*\"]\nexposed_headers = [\"ETag\"]\nmax_age = \"0s\"",
    ))
    .await;
    let bearer = format!("Bearer {}", staff());
    let answer = raw(
        &app,
        Method::GET,
        "/v1/jobs?limit=1",
        &[
            ("origin", "https://anywhere.example"),
            ("authorization", &bearer),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("access-control-allow-origin"), "*");
    assert_eq!(
        names(&answer.header("access-control-expose-headers")),
        ["etag"]
    );
    let pre = preflight(
        &app,
        "/v1/jobs",
        "https://anywhere.example",
        "GET",
        "authorization",
    )
    .await;
    assert_eq!(pre.status, 200);
    assert_eq!(pre.header("access-control-allow-origin"), "*");
    assert_eq!(pre.header("access-control-max-age"), "0");

    // Without [server.cors]: no CORS header, and a preflight is an ordinary OPTIONS (405).
    let app = Portico::spawn(&protected(Kind::Sqlite, "")).await;
    let answer = raw(
        &app,
        Method::GET,
        "/v1/jobs?limit=1",
        &[("origin", DASHBOARD), ("authorization", &bearer)],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(has_no_cors_headers(&answer));
    let pre = preflight(&app, "/v1/jobs", DASHBOARD, "GET", "authorization").await;
    assert_eq!(pre.status, 405);
    assert!(has_no_cors_headers(&pre));
}

#[tokio::test]
async fn the_configuration_refuses_a_wildcard_with_credentials_and_malformed_origins() {
    let problems = |cors: &str| -> Vec<String> {
        let text = cors_config(cors);
        let config =
            portico::config::parse("test.toml", &text, &|_| None).expect("the file parses as TOML");
        portico::config::validate(&config)
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    };
    let found = problems("allowed_origins = [\"*\"]\nallow_credentials = true");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("server.cors.allowed_origins: `*` cannot go with"));
    let found = problems(
        "allowed_origins = [\"https://dash.example.com/\", \"dash.example.com\", \"https://Dash.example.com\"]",
    );
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found
        .iter()
        .all(|p| p.starts_with("server.cors.allowed_origins: `")));
    assert!(found[0].contains("no trailing `/`"), "{}", found[0]);
    assert!(
        problems("allowed_origins = [\"https://dash.example.com\"]\nallow_credentials = true")
            .is_empty()
    );
    // `portico check` reports the same (the binary loads the file the same way).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cors.toml");
    std::fs::write(
        &file,
        cors_config("allowed_origins = [\"*\"]\nallow_credentials = true"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .arg("check")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("server.cors.allowed_origins"), "{text}");
}
