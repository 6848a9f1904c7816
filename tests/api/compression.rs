//! Response compression: cached pages compressed once per coding and kept in the cache, each
//! coding with its own ETag, `If-None-Match` across codings, `Vary`, the size threshold, and
//! the compression layer for answers that are not cached.

use std::io::Read;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

use crate::auth::{portal, staff, SECRET};
use crate::fixture::{self, Kind};
use crate::harness::{backend, Portico};
use crate::idp::{AUDIENCE, ISSUER};

const QUERIES: &str = "portico_source_queries_total{source=\"legacy\"}";

/// The fixture of `kind` behind HS256 tokens: jobs need `jobs:read` and, without
/// `jobs:read:all`, show only the token's `customer_id`; `amount` needs `jobs:read:amounts`;
/// jobs are cached for a minute. `server` goes at the end of `[server]` (its sub-tables).
pub fn protected(kind: Kind, server: &str) -> String {
    let jobs = r#"key = ["id"]
read_scope = "jobs:read"
cache_ttl = "60s"
row_policies = [{ name = "own-jobs", unless_scope = "jobs:read:all", condition = "CUST_NO = {claims.customer_id}" }]"#;
    let body = fixture::config(kind, &backend(kind).connection_string, "")
        .replacen("key = [\"id\"]\nanonymous = true", jobs, 1)
        .replacen(
            r#"amount = { column = "AMOUNT", type = "decimal", scale = 2 }"#,
            r#"amount = { column = "AMOUNT", type = "decimal", scale = 2, requires_scope = "jobs:read:amounts" }"#,
            1,
        )
        .replacen("\n[sources.legacy]", &format!("\n{server}\n\n[sources.legacy]"), 1);
    assert!(body.contains("own-jobs") && body.contains("requires_scope"));
    format!(
        r#"[auth]
development = true
issuer = "{ISSUER}"
audience = "{AUDIENCE}"

[[auth.keys]]
algorithm = "HS256"
secret = "{SECRET}"

{body}"#
    )
}

/// A raw answer: what was on the wire, not decoded.
pub struct Raw {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Raw {
    /// A header's value as text; "" when absent.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether `Vary` names `name`.
    pub fn varies_by(&self, name: &str) -> bool {
        self.header("vary")
            .split(',')
            .any(|n| n.trim().eq_ignore_ascii_case(name))
    }

    /// The body decoded from its `Content-Encoding`.
    pub fn decoded(&self) -> Vec<u8> {
        decode(&self.header("content-encoding"), &self.body)
    }
}

/// `body` decoded from `coding` (`""` for none).
pub fn decode(coding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "" => out.extend_from_slice(body),
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        other => panic!("unexpected content-encoding {other}"),
    }
    out
}

/// Sends `method path` with `headers` on a client that decodes nothing (these answers are
/// compressed bytes, so they bypass the harness's contract recorder; their decoded bodies are
/// compared with identity answers that go through it).
pub async fn raw(
    app: &Portico,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Raw {
    raw_with_body(app, method, path, headers, Vec::new()).await
}

/// `raw` with a request body.
pub async fn raw_with_body(
    app: &Portico,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Raw {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", app.base))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let body = response.bytes().await.unwrap().to_vec();
    Raw {
        status,
        headers,
        body,
    }
}

async fn get(app: &Portico, path: &str, token: &str, headers: &[(&str, &str)]) -> Raw {
    let bearer = format!("Bearer {token}");
    let mut all = vec![("authorization", bearer.as_str())];
    all.extend_from_slice(headers);
    raw(app, reqwest::Method::GET, path, &all).await
}

fn compressions(coding: &str) -> String {
    format!("portico_cache_compressions_total{{encoding=\"{coding}\"}}")
}

/// With `"abc"`, `"abc-gzip"`.
fn tag_of(etag: &str, coding: &str) -> String {
    format!("{}-{coding}\"", etag.strip_suffix('"').unwrap())
}

async fn cached_pages_are_compressed_once_per_coding(kind: Kind) {
    let app = Portico::spawn(&protected(kind, "")).await;
    let page = "/v1/jobs?limit=100";
    for (who, token) in [("staff", staff()), ("portal", portal("C001"))] {
        // The identity answer, checked against the document by the harness.
        let plain = app.get_as(page, Some(&token)).await;
        assert_eq!(plain.status, 200, "{who}: {}", plain.body);
        let identity = get(&app, page, &token, &[]).await;
        assert_eq!(identity.header("content-encoding"), "", "{who}");
        assert!(
            identity.varies_by("Accept-Encoding"),
            "{who}: {identity_vary}",
            identity_vary = identity.header("vary")
        );
        let etag = identity.header("etag");
        let body: Value = serde_json::from_slice(&identity.body).unwrap();
        assert_eq!(body, plain.body);
        let rows = body["data"].as_array().unwrap();
        if who == "portal" {
            assert!(!rows.is_empty());
            for row in rows {
                assert_eq!(row["customer_id"], "C001", "{row}");
                assert!(row.get("amount").is_none(), "masked: {row}");
            }
        } else {
            assert_eq!(rows.len(), 100);
            assert!(rows.iter().any(|r| r.get("amount").is_some()));
        }

        for (accept, coding) in [
            ("gzip", "gzip"),
            ("br", "br"),
            ("gzip, deflate, br", "br"),
            ("br;q=0.5, gzip", "gzip"),
            ("x-gzip", "gzip"),
            ("*", "br"),
        ] {
            let answer = get(&app, page, &token, &[("accept-encoding", accept)]).await;
            assert_eq!(answer.status, 200, "{who} {accept}");
            assert_eq!(answer.header("content-encoding"), coding, "{who} {accept}");
            assert_eq!(
                answer.header("etag"),
                tag_of(&etag, coding),
                "{who} {accept}"
            );
            assert!(answer.varies_by("Accept-Encoding"), "{who} {accept}");
            assert!(
                answer.body.len() * 4 < identity.body.len(),
                "{who} {accept}"
            );
            assert_eq!(answer.decoded(), identity.body, "{who} {accept}");
        }
        for accept in [
            "identity",
            "gzip;q=0",
            "br;q=0, gzip;q=0",
            "deflate",
            "gzip;q=0.5, identity",
        ] {
            let answer = get(&app, page, &token, &[("accept-encoding", accept)]).await;
            assert_eq!(answer.header("content-encoding"), "", "{who} {accept}");
            assert_eq!(answer.header("etag"), etag, "{who} {accept}");
            assert!(answer.varies_by("Accept-Encoding"), "{who} {accept}");
            assert_eq!(answer.body, identity.body, "{who} {accept}");
        }

        // Any coding's tag of the page answers 304, with the tag of the coding asked for.
        for (accept, held, expected) in [
            ("", tag_of(&etag, "gzip"), etag.clone()),
            ("br", etag.clone(), tag_of(&etag, "br")),
            ("gzip", tag_of(&etag, "br"), tag_of(&etag, "gzip")),
            (
                "gzip",
                format!("W/{}", tag_of(&etag, "gzip")),
                tag_of(&etag, "gzip"),
            ),
        ] {
            let answer = get(
                &app,
                page,
                &token,
                &[("accept-encoding", accept), ("if-none-match", &held)],
            )
            .await;
            assert_eq!(answer.status, 304, "{who} {accept} {held}");
            assert_eq!(answer.header("etag"), expected, "{who} {accept} {held}");
            assert!(answer.body.is_empty());
            assert!(answer.varies_by("Accept-Encoding"));
        }
        let other = get(
            &app,
            page,
            &token,
            &[
                ("accept-encoding", "gzip"),
                ("if-none-match", "\"nope-gzip\""),
            ],
        )
        .await;
        assert_eq!(other.status, 200);

        // HEAD: the headers of the coded answer, no body.
        let head = raw(
            &app,
            reqwest::Method::HEAD,
            page,
            &[
                ("authorization", &format!("Bearer {token}")),
                ("accept-encoding", "gzip"),
            ],
        )
        .await;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-encoding"), "gzip");
        assert_eq!(head.header("etag"), tag_of(&etag, "gzip"));
        assert!(head.body.is_empty());
    }
    // Two cache entries (staff and portal), each compressed once per coding however many
    // requests asked for it; one query each.
    assert_eq!(app.metric(&compressions("gzip")).await, 2.0, "{kind:?}");
    assert_eq!(app.metric(&compressions("br")).await, 2.0, "{kind:?}");
    assert_eq!(app.metric(QUERIES).await, 2.0, "{kind:?}");
}

#[tokio::test]
async fn cached_pages_are_compressed_once_per_coding_sqlite() {
    cached_pages_are_compressed_once_per_coding(Kind::Sqlite).await;
}

#[tokio::test]
async fn cached_pages_are_compressed_once_per_coding_postgres() {
    cached_pages_are_compressed_once_per_coding(Kind::Postgres).await;
}

#[tokio::test]
async fn cached_pages_are_compressed_once_per_coding_mariadb() {
    cached_pages_are_compressed_once_per_coding(Kind::MariaDb).await;
}

#[tokio::test]
async fn small_bodies_and_disabled_compression_are_sent_as_they_are() {
    let app = Portico::spawn(&protected(Kind::Sqlite, "")).await;
    let small = "/v1/jobs?limit=1&fields=id";
    let answer = get(&app, small, &staff(), &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(answer.status, 200);
    assert!(answer.body.len() < 1024, "{}", answer.body.len());
    assert_eq!(answer.header("content-encoding"), "");
    assert!(
        !answer.varies_by("Accept-Encoding"),
        "{}",
        answer.header("vary")
    );
    assert_eq!(app.metric(&compressions("gzip")).await, 0.0);
    assert_eq!(app.metric(&compressions("br")).await, 0.0);

    // A lower threshold compresses it; only gzip offered.
    let config = protected(
        Kind::Sqlite,
        "[server.compression]\nmin_size = \"16\"\nencodings = [\"gzip\"]",
    );
    let app = Portico::spawn(&config).await;
    let answer = get(&app, small, &staff(), &[("accept-encoding", "br, gzip")]).await;
    assert_eq!(answer.header("content-encoding"), "gzip");
    assert!(answer.varies_by("Accept-Encoding"));
    let answer = get(&app, small, &staff(), &[("accept-encoding", "br")]).await;
    assert_eq!(answer.header("content-encoding"), "");

    let app = Portico::spawn(&protected(
        Kind::Sqlite,
        "[server.compression]\nenabled = false",
    ))
    .await;
    let answer = get(
        &app,
        "/v1/jobs?limit=100",
        &staff(),
        &[("accept-encoding", "gzip, br")],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-encoding"), "");
    assert!(!answer.varies_by("Accept-Encoding"));
    let document = raw(
        &app,
        reqwest::Method::GET,
        "/openapi/v1.json",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(document.header("content-encoding"), "");
}

#[tokio::test]
async fn answers_outside_the_cache_are_compressed_by_the_layer() {
    let app = Portico::spawn(&protected(Kind::Sqlite, "")).await;
    // The OpenAPI document, the metrics and a large problem+json are not cached pages.
    let identity = raw(&app, reqwest::Method::GET, "/openapi/v1.json", &[]).await;
    assert_eq!(identity.status, 200);
    assert!(identity.body.len() > 1024);
    assert!(identity.varies_by("Accept-Encoding"));
    for coding in ["gzip", "br"] {
        let answer = raw(
            &app,
            reqwest::Method::GET,
            "/openapi/v1.json",
            &[("accept-encoding", coding)],
        )
        .await;
        assert_eq!(answer.header("content-encoding"), coding);
        assert!(answer.varies_by("Accept-Encoding"));
        assert_eq!(answer.decoded(), identity.body, "{coding}");
    }
    let metrics = raw(
        &app,
        reqwest::Method::GET,
        "/metrics",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(metrics.header("content-encoding"), "gzip");
    assert!(String::from_utf8(metrics.decoded())
        .unwrap()
        .contains("portico_http_requests"));

    // A problem+json long enough to be compressed (a long unknown parameter is quoted).
    let long = format!("/v1/jobs?{}=1", "x".repeat(1500));
    let problem = get(&app, &long, &staff(), &[("accept-encoding", "gzip")]).await;
    assert_eq!(problem.status, 400);
    assert_eq!(problem.header("content-type"), "application/problem+json");
    assert_eq!(problem.header("content-encoding"), "gzip");
    assert!(problem.varies_by("Accept-Encoding"));
    let body: Value = serde_json::from_slice(&problem.decoded()).unwrap();
    assert_eq!(body["status"], 400);
    // No cached page was compressed by the layer: the cache did it (and counted it).
    let page = get(
        &app,
        "/v1/jobs?limit=100",
        &staff(),
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(page.header("content-encoding"), "gzip");
    assert_eq!(app.metric(&compressions("gzip")).await, 1.0);
}

#[tokio::test]
async fn a_cached_answer_encoded_by_the_cache_is_not_compressed_again() {
    // The cache sends its variant with `Content-Encoding` set; the layer, asked for the same
    // coding, leaves it alone: one layer of gzip, and one compression counted.
    let app = Portico::spawn(&protected(Kind::Sqlite, "")).await;
    for _ in 0..3 {
        let page = get(
            &app,
            "/v1/jobs?limit=100",
            &staff(),
            &[("accept-encoding", "gzip")],
        )
        .await;
        assert_eq!(page.header("content-encoding"), "gzip");
        let json: Value = serde_json::from_slice(&page.decoded()).expect("one layer of gzip");
        assert_eq!(json["data"].as_array().unwrap().len(), 100);
    }
    assert_eq!(app.metric(&compressions("gzip")).await, 1.0);
}

/// A compressed row answer carries its own tag, and `If-Match` takes it (or the tag of a
/// compressed write answer) as the row's version.
async fn if_match_takes_the_tag_of_a_compressed_answer(kind: Kind) {
    let legacy = crate::writes::Legacy::without_checks(kind);
    let config = legacy.config("", "[server.compression]\nmin_size = \"0\"");
    let app = Portico::spawn(&config).await;
    let bearer = format!("Bearer {}", crate::writes::clerk());
    let read = raw(
        &app,
        reqwest::Method::GET,
        "/v1/customers/C001",
        &[("authorization", &bearer), ("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(read.status, 200, "{kind:?}");
    assert_eq!(read.header("content-encoding"), "gzip");
    let tag = read.header("etag");
    assert!(tag.ends_with("-gzip\""), "{tag}");
    let patch = |if_match: String, name: &'static str| {
        let bearer = bearer.clone();
        let app = &app;
        async move {
            raw_with_body(
                app,
                reqwest::Method::PATCH,
                "/v1/customers/C001",
                &[
                    ("authorization", &bearer),
                    ("accept-encoding", "br"),
                    ("content-type", "application/merge-patch+json"),
                    ("if-match", &if_match),
                ],
                format!("{{\"name\": \"{name}\"}}").into_bytes(),
            )
            .await
        }
    };
    let written = patch(tag.clone(), "Acme Tools Ltd").await;
    assert_eq!(
        written.status,
        200,
        "{kind:?}: {:?}",
        String::from_utf8_lossy(&written.body)
    );
    // Compressed by the layer, with the coding's own tag.
    assert_eq!(written.header("content-encoding"), "br");
    let new_tag = written.header("etag");
    assert!(new_tag.ends_with("-br\""), "{new_tag}");
    let row: Value = serde_json::from_slice(&written.decoded()).unwrap();
    assert_eq!(row["name"], "Acme Tools Ltd");
    // The version read before the write is gone, in any coding.
    assert_eq!(patch(tag, "Stale").await.status, 412);
    assert_eq!(patch(new_tag.clone(), "Acme Tools II").await.status, 200);
    let identity = new_tag.replace("-br\"", "\"");
    assert_eq!(
        patch(identity, "Stale").await.status,
        412,
        "that version is gone too"
    );
}

#[tokio::test]
async fn if_match_takes_the_tag_of_a_compressed_answer_sqlite() {
    if_match_takes_the_tag_of_a_compressed_answer(Kind::Sqlite).await;
}

#[tokio::test]
async fn if_match_takes_the_tag_of_a_compressed_answer_postgres() {
    if_match_takes_the_tag_of_a_compressed_answer(Kind::Postgres).await;
}

#[tokio::test]
async fn if_match_takes_the_tag_of_a_compressed_answer_mariadb() {
    if_match_takes_the_tag_of_a_compressed_answer(Kind::MariaDb).await;
}
