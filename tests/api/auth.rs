//! Bearer JWT access against the SQLite fixture: bad tokens, PyJWT tokens through a JWKS,
//! row policies on every read path (cache warm), field masks, rate limits, admin scope.

use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::fixture::{self, Kind};
use crate::harness::{backend, Answer, Portico};
use crate::idp::{self, claims, JwksServer, AUDIENCE, ISSUER};

/// The HS256 development secret of the test configuration.
pub const SECRET: &str = "portico-test-secret-0123456789abcdef";

const QUERIES: &str = "portico_source_queries_total{source=\"legacy\"}";

/// The fixture behind [auth]: jobs need `jobs:read` and, without `jobs:read:all`, are limited
/// to the token's `customer_id`; `amount` needs `jobs:read:amounts`; operations need
/// `ops:read`. Responses are cached, so every check below runs against a warm cache too.
pub fn auth_config(jwks: &JwksServer, extra: &str) -> String {
    let body = protected_fixture();
    format!(
        r#"
[auth]
# The test secret is in this file: a development configuration.
development = true
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
leeway = "5s"
admin_scope = "portico:admin"

[[auth.keys]]
algorithm = "HS256"
secret = "{SECRET}"

[auth.jwks]
discovery = "{base}"
algorithms = ["RS256", "ES256"]
refresh_min_interval = "1s"
{extra}
{body}"#,
        base = jwks.base
    )
}

/// The SQLite fixture with access rules, without `[auth]`: see `auth_config`.
pub fn protected_fixture() -> String {
    let b = backend(Kind::Sqlite);
    let jobs = r#"key = ["id"]
read_scope = "jobs:read"
cache_ttl = "60s"
row_policies = [{ name = "own-jobs", unless_scope = "jobs:read:all", condition = "CUST_NO = {claims.customer_id}" }]"#;
    let body = fixture::config(Kind::Sqlite, &b.connection_string, "")
        .replacen("key = [\"id\"]\nanonymous = true", jobs, 1)
        .replacen(
            "key = [\"job_id\", \"seq\"]\nanonymous = true",
            "key = [\"job_id\", \"seq\"]\nread_scope = \"ops:read\"\ncache_ttl = \"60s\"",
            1,
        )
        .replacen(
            r#"amount = { column = "AMOUNT", type = "decimal", scale = 2 }"#,
            r#"amount = { column = "AMOUNT", type = "decimal", scale = 2, requires_scope = "jobs:read:amounts" }"#,
            1,
        );
    assert!(
        body.contains("own-jobs") && body.contains("ops:read") && body.contains("requires_scope")
    );
    body
}

/// An HS256 token for the test secret.
pub fn hs_token(subject: &str, extra: Value) -> String {
    sign(
        &Header::new(Algorithm::HS256),
        &claims(subject, extra),
        SECRET.as_bytes(),
    )
}

/// An HS256 token for the test secret with exactly `claims` besides the standard ones (no
/// `sub` unless given).
pub fn sign_claims(extra: Value) -> String {
    let mut claims = claims("x", extra);
    claims.as_object_mut().unwrap().remove("sub");
    sign(&Header::new(Algorithm::HS256), &claims, SECRET.as_bytes())
}

fn sign(header: &Header, claims: &Value, secret: &[u8]) -> String {
    encode(header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// A portal token: `jobs:read ops:read` limited to `customer`.
pub fn portal(customer: &str) -> String {
    hs_token(
        &format!("portal-{customer}"),
        json!({"scope": "jobs:read ops:read", "customer_id": customer}),
    )
}

/// A staff token: every job, amounts and operations.
pub fn staff() -> String {
    hs_token(
        "staff",
        json!({"scp": ["jobs:read", "jobs:read:all", "jobs:read:amounts", "ops:read"]}),
    )
}

fn assert_401(answer: &Answer, case: &str) {
    assert_eq!(answer.status, 401, "{case}: {}", answer.body);
    answer.problem(401);
    let challenge = answer.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer "), "{case}: {challenge}");
}

fn b64(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn bad_tokens_get_401_and_never_reach_the_database() {
    let minted = idp::pyjwt(
        &[("rs1", "RS256"), ("rogue", "RS256")],
        &[
            (
                "rs1",
                claims("ok", json!({"scope": "jobs:read jobs:read:all"})),
            ),
            (
                "rogue",
                claims("rogue", json!({"scope": "jobs:read jobs:read:all"})),
            ),
        ],
    );
    let jwks = JwksServer::start(vec![minted.jwks["rs1"].clone()]);
    let app = Portico::spawn(&auth_config(&jwks, "")).await;
    let good = &minted.tokens[0];
    let now = claims("x", json!({"scope": "jobs:read jobs:read:all"}));
    let with = |changes: Value| {
        let mut c = now.clone();
        for (k, v) in changes.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let without = |claim: &str| {
        let mut c = now.clone();
        c.as_object_mut().unwrap().remove(claim);
        c
    };
    let hs = Header::new(Algorithm::HS256);
    let mut hs_as_rs1 = Header::new(Algorithm::HS256);
    hs_as_rs1.kid = Some("rs1".into());
    let rs1_pem = minted.pem["rs1"].as_str().unwrap().as_bytes();
    let secret = SECRET.as_bytes();
    let past = now["iat"].as_u64().unwrap() - 3600;
    let future = now["iat"].as_u64().unwrap() + 3600;
    let header_none = json!({"alg": "none", "typ": "JWT"});
    let (good_head, good_rest) = good.split_once('.').unwrap();
    let good_signature = good_rest.rsplit_once('.').unwrap().1;
    let swapped = format!(
        "{good_head}.{}.{good_signature}",
        b64(&with(json!({"sub": "admin"})))
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        (
            "expired",
            Some(format!(
                "Bearer {}",
                sign(&hs, &with(json!({"exp": past, "nbf": past - 60})), secret)
            )),
        ),
        (
            "not yet valid",
            Some(format!(
                "Bearer {}",
                sign(&hs, &with(json!({"nbf": future})), secret)
            )),
        ),
        (
            "wrong issuer",
            Some(format!(
                "Bearer {}",
                sign(&hs, &with(json!({"iss": "https://evil.test"})), secret)
            )),
        ),
        (
            "wrong audience",
            Some(format!(
                "Bearer {}",
                sign(&hs, &with(json!({"aud": "other-api"})), secret)
            )),
        ),
        (
            "no exp",
            Some(format!("Bearer {}", sign(&hs, &without("exp"), secret))),
        ),
        (
            "no iss",
            Some(format!("Bearer {}", sign(&hs, &without("iss"), secret))),
        ),
        (
            "no aud",
            Some(format!("Bearer {}", sign(&hs, &without("aud"), secret))),
        ),
        (
            "bad signature",
            Some(format!(
                "Bearer {}",
                sign(&hs, &now, b"another-secret-0123456789abcdefgh")
            )),
        ),
        (
            "alg none",
            Some(format!("Bearer {}.{}.", b64(&header_none), b64(&now))),
        ),
        (
            "HS256 signed with the RSA public key, kid rs1",
            Some(format!("Bearer {}", sign(&hs_as_rs1, &now, rs1_pem))),
        ),
        (
            "HS256 signed with the RSA public key, no kid",
            Some(format!("Bearer {}", sign(&hs, &now, rs1_pem))),
        ),
        ("unknown kid", Some(format!("Bearer {}", minted.tokens[1]))),
        ("malformed", Some("Bearer not.a.jwt".into())),
        (
            "truncated",
            Some(format!("Bearer {}", &good[..good.len() - 12])),
        ),
        (
            "claims swapped under a valid signature",
            Some(format!("Bearer {swapped}")),
        ),
        (
            "wrong scheme",
            Some(format!("Basic {}", b64(&json!("user:pass")))),
        ),
        ("empty bearer", Some("Bearer ".into())),
        ("missing header", None),
    ];
    for (case, authorization) in &cases {
        for path in ["/v1/jobs", "/v1/jobs/J0001", "/v1/jobs/J0001/operations"] {
            let (status, headers, body) = match authorization {
                Some(value) => app.get_with(path, &[("authorization", value)]).await,
                None => app.get_with(path, &[]).await,
            };
            let answer = Answer {
                status,
                headers,
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            };
            assert_401(&answer, case);
            let challenge = answer.headers["www-authenticate"].to_str().unwrap();
            assert_eq!(
                challenge.contains("error=\"invalid_token\""),
                authorization.is_some(),
                "{case}: {challenge}"
            );
        }
    }
    assert_eq!(
        app.metric(QUERIES).await,
        0.0,
        "no bad token reached the database"
    );
    let refused = app
        .metric("portico_auth_refused_total{reason=\"signature\"}")
        .await;
    assert!(refused >= 3.0, "refusals are counted by reason: {refused}");

    // The control: the good token is served.
    let answer = app.get_as("/v1/jobs?limit=2", Some(good)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(app.metric(QUERIES).await, 1.0);
    // `nbf` is optional (RFC 7519): Auth0, Keycloak and oidc-provider never send it. A token
    // without it is served; a future one (above) is still refused.
    let no_nbf = format!("Bearer {}", sign(&hs, &without("nbf"), secret));
    let (status, _, body) = app
        .get_with("/v1/jobs?limit=2", &[("authorization", &no_nbf)])
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn pyjwt_rs256_and_es256_tokens_are_accepted_through_jwks_and_after_rotation() {
    let scope = json!({"scope": "jobs:read jobs:read:all"});
    let minted = idp::pyjwt(
        &[("rs1", "RS256"), ("es1", "ES256"), ("rs2", "RS256")],
        &[
            ("rs1", claims("rs-user", scope.clone())),
            ("es1", claims("es-user", scope.clone())),
            ("rs2", claims("rotated-user", scope.clone())),
        ],
    );
    let jwks = JwksServer::start(vec![minted.jwks["rs1"].clone(), minted.jwks["es1"].clone()]);
    let app = Portico::spawn(&auth_config(&jwks, "")).await;
    for token in &minted.tokens[..2] {
        let answer = app.get_as("/v1/jobs/J0002", Some(token)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["id"], "J0002");
    }
    // rs2 is not published yet: refused, whatever the refresh finds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_401(
        &app.get_as("/v1/jobs/J0002", Some(&minted.tokens[2])).await,
        "rs2 before rotation",
    );

    // The provider rotates: the unknown kid makes Portico fetch the set again.
    jwks.publish(minted.jwks["rs2"].clone());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let answer = app.get_as("/v1/jobs/J0002", Some(&minted.tokens[2])).await;
    assert_eq!(answer.status, 200, "after rotation: {}", answer.body);

    // A flood of bogus kids causes at most one fetch per refresh_min_interval: each waits
    // for the next fetch the limit allows, and they share it.
    let before = jwks.fetches();
    let rogue = idp::pyjwt(
        &[("rogue", "RS256")],
        &(0..40)
            .map(|_| ("rogue", claims("flood", json!({}))))
            .collect::<Vec<_>>(),
    );
    let forged: Vec<String> = rogue
        .tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            // Each token names a different kid.
            let (_, rest) = token.split_once('.').unwrap();
            format!(
                "{}.{rest}",
                b64(&json!({"alg": "RS256", "typ": "JWT", "kid": format!("bogus-{i}")}))
            )
        })
        .collect();
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all(
        forged
            .iter()
            .map(|token| app.get_as("/v1/jobs/J0002", Some(token))),
    )
    .await;
    for answer in &answers {
        assert_401(answer, "bogus kid");
    }
    let allowed = 1 + started.elapsed().as_secs() as usize;
    let fetched = jwks.fetches() - before;
    assert!(
        fetched <= allowed,
        "{fetched} fetches for 40 bogus kids in {:?}",
        started.elapsed()
    );
    // Waiters share fetches instead of queueing one fetch each (40 would take 40 s). The
    // bound is loose, so that it holds on a loaded CI machine too.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        app.metric("portico_auth_jwks_fetches_total").await as usize,
        jwks.fetches(),
        "every fetch is counted"
    );
}

/// Job ids of a customer in the fixture model.
fn model_jobs_of(customer: &str) -> Vec<String> {
    fixture::jobs(Kind::Sqlite)
        .into_iter()
        .filter(|j| j.customer == customer)
        .map(|j| j.id)
        .collect()
}

fn customers_of(rows: &[Value]) -> std::collections::BTreeSet<String> {
    rows.iter()
        .map(|r| r["customer_id"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[tokio::test]
async fn row_policies_keep_each_customer_to_its_own_rows_on_every_read_path() {
    let jwks = JwksServer::start(Vec::new());
    let app = Portico::spawn(&auth_config(&jwks, "")).await;
    let (a, b) = (portal("C001"), portal("C002"));
    let a_jobs = model_jobs_of("C001");
    let b_jobs = model_jobs_of("C002");

    // Twice each, in both orders, so the second answers come from a warm cache.
    for round in 0..2 {
        for (token, own, other) in [(&a, "C001", "C002"), (&b, "C002", "C001")] {
            let rows = app.all_pages_as("/v1/jobs?limit=7", Some(token)).await;
            assert_eq!(
                customers_of(&rows),
                [own.to_string()].into(),
                "round {round}"
            );
            let expected = if own == "C001" { &a_jobs } else { &b_jobs };
            assert_eq!(rows.len(), expected.len());
            for query in [
                format!("customer_id={other}"),
                format!("customer_id[in]={own},{other}"),
                format!("customer_id[ne]={own}"),
                "customer_id[prefix]=C".to_string(),
                "customer_id[null]=false".to_string(),
                "status[in]=open,held,closed".to_string(),
                "sort=-due_on,customer_id".to_string(),
                "id[gte]=J0000&limit=100".to_string(),
                "fields=id".to_string(),
            ] {
                let answer = app.get_as(&format!("/v1/jobs?{query}"), Some(token)).await;
                assert_eq!(answer.status, 200, "{query}: {}", answer.body);
                for row in answer.body["data"].as_array().unwrap() {
                    let id = row["id"].as_str().unwrap().to_string();
                    assert!(expected.contains(&id), "{own} got {id} for ?{query}");
                }
            }
            // A filter that tries to widen the policy yields nothing of the other customer.
            let answer = app
                .get_as(&format!("/v1/jobs?customer_id={other}"), Some(token))
                .await;
            assert_eq!(answer.body["data"], json!([]));
        }
    }

    // Key lookups: another customer's row is a 404 exactly like a missing one.
    let own = app
        .get_as(&format!("/v1/jobs/{}", a_jobs[0]), Some(&a))
        .await;
    assert_eq!(own.status, 200);
    let hidden = app
        .get_as(&format!("/v1/jobs/{}", b_jobs[0]), Some(&a))
        .await;
    let missing = app.get_as("/v1/jobs/J9999", Some(&a)).await;
    assert_eq!(hidden.problem(404)["type"], missing.problem(404)["type"]);
    assert_eq!(hidden.problem(404)["title"], missing.problem(404)["title"]);
    // …and again with B's row warm in the cache.
    assert_eq!(
        app.get_as(&format!("/v1/jobs/{}", b_jobs[0]), Some(&b))
            .await
            .status,
        200
    );
    assert_eq!(
        app.get_as(&format!("/v1/jobs/{}", b_jobs[0]), Some(&a))
            .await
            .status,
        404
    );

    // Nested reads go through the parent's policy.
    let path_b = format!("/v1/jobs/{}/operations", b_jobs[0]);
    assert_eq!(app.get_as(&path_b, Some(&b)).await.status, 200);
    app.get_as(&path_b, Some(&a)).await.problem(404);
    let path_a = format!("/v1/jobs/{}/operations", a_jobs[0]);
    assert_eq!(app.get_as(&path_a, Some(&a)).await.status, 200);

    // A cursor taken from B's pages only positions A within A's own rows.
    let b_page = app.get_as("/v1/jobs?limit=3", Some(&b)).await;
    let cursor = b_page.body["next_cursor"].as_str().unwrap().to_string();
    let rows = app
        .all_pages_as(&format!("/v1/jobs?limit=3&cursor={cursor}"), Some(&a))
        .await;
    assert_eq!(
        customers_of(&rows)
            .into_iter()
            .filter(|c| c != "C001")
            .count(),
        0
    );

    // Staff see everyone; a portal token without the claim gets 403, never every row.
    let all = app.all_pages_as("/v1/jobs?limit=100", Some(&staff())).await;
    assert_eq!(all.len(), fixture::jobs(Kind::Sqlite).len());
    let no_claim = hs_token("portal-x", json!({"scope": "jobs:read"}));
    let answer = app.get_as("/v1/jobs", Some(&no_claim)).await;
    assert!(answer.problem(403)["detail"]
        .as_str()
        .unwrap()
        .contains("customer_id"));
    // A token lacking the read scope is told which one.
    let answer = app
        .get_as(
            "/v1/jobs",
            Some(&hs_token("u", json!({"customer_id": "C001"}))),
        )
        .await;
    assert_eq!(answer.problem(403)["type"], "/problems/insufficient-scope");
    assert!(answer.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("scope=\"jobs:read\""));
    // Operations need their own scope even for staff-like tokens without it.
    let answer = app
        .get_as(
            "/v1/operations",
            Some(&hs_token("u", json!({"scope": "jobs:read jobs:read:all"}))),
        )
        .await;
    answer.problem(403);

    // Filtered data never goes to shared caches.
    let cache_control = own.headers["cache-control"].to_str().unwrap();
    assert!(cache_control.starts_with("private"), "{cache_control}");
}

#[tokio::test]
async fn masked_fields_never_appear_and_cannot_be_asked_for() {
    let jwks = JwksServer::start(Vec::new());
    let app = Portico::spawn(&auth_config(&jwks, "")).await;
    let a = portal("C001");
    let own = model_jobs_of("C001");
    let rows = app.all_pages_as("/v1/jobs?limit=10", Some(&a)).await;
    let one = app.get_as(&format!("/v1/jobs/{}", own[1]), Some(&a)).await;
    for row in rows.iter().chain([&one.body]) {
        assert!(row.get("amount").is_none(), "{row}");
        assert!(row.get("id").is_some() && row.get("status").is_some());
    }
    for (query, parameter) in [
        ("fields=id,amount", "fields"),
        ("amount[gte]=0", "amount[gte]"),
        ("amount[null]=true", "amount[null]"),
        ("sort=amount", "sort"),
    ] {
        let answer = app.get_as(&format!("/v1/jobs?{query}"), Some(&a)).await;
        let problem = answer.problem(400);
        assert_eq!(problem["parameter"], parameter, "{query}");
        assert!(
            !problem["detail"].as_str().unwrap().contains("amount,"),
            "{problem}"
        );
    }
    // The scope that unmasks it.
    let answer = app
        .get_as("/v1/jobs?fields=id,amount", Some(&staff()))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let staff_one = app
        .get_as(&format!("/v1/jobs/{}", own[1]), Some(&staff()))
        .await;
    assert!(staff_one.body.get("amount").is_some());
    assert_ne!(
        staff_one.headers["etag"], one.headers["etag"],
        "masked and full rows are different entries"
    );
}

#[tokio::test]
async fn the_rate_limit_refills_as_configured_and_is_per_principal() {
    let jwks = JwksServer::start(Vec::new());
    let config = auth_config(&jwks, "").replacen(
        "\n[server]",
        "\n[rate_limit]\nrequests_per_second = 2\nburst = 3\n\n[server]",
        1,
    );
    let app = Portico::spawn(&config).await;
    let (a, b) = (portal("C001"), portal("C002"));
    for _ in 0..3 {
        assert_eq!(app.get_as("/v1/jobs?limit=1", Some(&a)).await.status, 200);
    }
    let limited = app.get_as("/v1/jobs?limit=1", Some(&a)).await;
    limited.problem(429);
    assert_eq!(limited.headers["retry-after"], "1");
    assert_eq!(
        app.get_as("/v1/jobs?limit=1", Some(&b)).await.status,
        200,
        "B has its own bucket"
    );
    // At two per second, one request is back after half a second, and only one.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.get_as("/v1/jobs?limit=1", Some(&a)).await.status, 200);
    app.get_as("/v1/jobs?limit=1", Some(&a)).await.problem(429);
    assert!(
        app.metric("portico_auth_refused_total{reason=\"rate_limited\"}")
            .await
            >= 2.0
    );

    // Refused tokens spend their client address's bucket: guessing is throttled too.
    let forged = format!("{}x", portal("C003"));
    let statuses: Vec<u16> = futures_util::future::join_all(
        (0..5).map(|_| app.get_as("/v1/jobs?limit=1", Some(&forged))),
    )
    .await
    .iter()
    .map(|a| a.status.as_u16())
    .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn only_tokenless_unfiltered_answers_are_public() {
    let jwks = JwksServer::start(Vec::new());
    // Operations are anonymous here, jobs need a token.
    // Operations opt out of the jobs' row policies, which would otherwise need a token.
    let config = auth_config(&jwks, "")
        .replacen("read_scope = \"ops:read\"", "anonymous = true", 1)
        .replacen(
            "field = \"job_id\" }",
            "field = \"job_id\", inherit_policies = false }",
            1,
        );
    let app = Portico::spawn(&config).await;
    let cache_control = |a: &Answer| a.headers["cache-control"].to_str().unwrap().to_string();
    let anonymous = app.get_as("/v1/operations?limit=2", None).await;
    assert_eq!(anonymous.status, 200);
    assert!(
        cache_control(&anonymous).starts_with("public"),
        "{}",
        cache_control(&anonymous)
    );
    // One `Vary` header: a token changes the answer, and so does `Accept` (an export).
    assert_eq!(anonymous.headers["vary"], "Authorization, Accept");
    let with_token = app.get_as("/v1/operations?limit=2", Some(&staff())).await;
    assert!(cache_control(&with_token).starts_with("private"));
    // Nested under a resource that needs a token: private, even though the child is anonymous.
    let nested = app
        .get_as("/v1/jobs/J0001/operations", Some(&staff()))
        .await;
    assert_eq!(nested.status, 200);
    assert!(cache_control(&nested).starts_with("private"));
    app.get_as("/v1/jobs/J0001/operations", None)
        .await
        .problem(401);
}

#[test]
fn unsafe_auth_settings_are_config_errors() {
    let jwks = JwksServer::start(Vec::new());
    let config = auth_config(&jwks, "")
        .replacen("leeway = \"5s\"", "leeway = \"1h\"", 1)
        .replacen(
            "refresh_min_interval = \"1s\"",
            "refresh_min_interval = \"0s\"",
            1,
        )
        .replacen("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:0\"", 1)
        .replacen(
            "status = {",
            "code = { column = \"AMOUNT\", type = \"string\" }\nstatus = {",
            1,
        );
    let parsed = portico::config::parse("t.toml", &config, &|_| None).unwrap();
    let error = portico::app::build(&parsed, "t.toml")
        .err()
        .expect("refused");
    for location in [
        "auth.leeway",
        "auth.jwks.refresh_min_interval",
        "auth.development",
        "versions.v1.resources.jobs.fields.amount.requires_scope",
    ] {
        assert!(
            error.problems.iter().any(|p| p.location == location),
            "{location}: {error}"
        );
    }
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_scope() {
    let jwks = JwksServer::start(Vec::new());
    let app = Portico::spawn(&auth_config(&jwks, "")).await;
    let delete = |token: Option<String>| {
        let client = reqwest::Client::new();
        let url = format!("{}/admin/cache/jobs", app.base);
        async move {
            let mut request = client.delete(url);
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(delete(None).await, 401);
    assert_eq!(delete(Some(staff())).await, 403);
    let admin = hs_token("ops", json!({"scope": "portico:admin"}));
    assert_eq!(delete(Some(admin)).await, 200);
}

#[tokio::test]
async fn pem_keys_verify_only_their_pinned_algorithm() {
    let scope = json!({"scope": "jobs:read jobs:read:all"});
    let token = |kid: &str, alg: Option<&str>| {
        let mut t = json!({"kid": kid, "claims": claims(&format!("{kid}-user"), scope.clone())});
        if let Some(alg) = alg {
            t["alg"] = json!(alg);
        }
        t
    };
    let minted = idp::pyjwt_raw(
        &[
            ("rs", "RS256"),
            ("ps", "PS256"),
            ("es", "ES384"),
            ("ed", "EdDSA"),
        ],
        vec![
            token("rs", None),
            token("ps", None),
            token("es", None),
            token("ed", None),
            // The RS256 key's kid on a PS256 signature by the same key.
            token("rs", Some("PS256")),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("es.pem"),
        minted.pem["es"].as_str().unwrap(),
    )
    .unwrap();
    let pem = |kid: &str| minted.pem[kid].as_str().unwrap().to_string();
    let keys = format!(
        r#"
[[auth.keys]]
kid = "rs"
algorithm = "RS256"
public_key = """{rs}"""

[[auth.keys]]
kid = "ps"
algorithm = "PS256"
public_key = """{ps}"""

[[auth.keys]]
kid = "es"
algorithm = "ES384"
public_key_file = "es.pem"

[[auth.keys]]
kid = "ed"
algorithm = "EdDSA"
public_key = """{ed}"""
"#,
        rs = pem("rs"),
        ps = pem("ps"),
        ed = pem("ed"),
    );
    let jwks = JwksServer::start(Vec::new());
    let text = auth_config(&jwks, "").replacen("\n[auth.jwks]", &format!("{keys}\n[auth.jwks]"), 1);
    let file = dir.path().join("pem.toml");
    std::fs::write(&file, &text).unwrap();
    let config = portico::config::load(&file).unwrap();
    let services = portico::app::build(&config, &file.display().to_string()).unwrap();
    let app = Portico::start(services, &config).await;
    for (i, kid) in ["rs", "ps", "es", "ed"].iter().enumerate() {
        let answer = app.get_as("/v1/jobs/J0003", Some(&minted.tokens[i])).await;
        assert_eq!(answer.status, 200, "{kid}: {}", answer.body);
    }
    assert_401(
        &app.get_as("/v1/jobs/J0003", Some(&minted.tokens[4])).await,
        "PS256 under the RS256 key's kid",
    );
}
