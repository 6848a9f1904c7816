//! A real OpenID Connect provider (panva's `oidc-provider` from npm, `tests/idp/`) in front of
//! Portico, configured as the README says: RFC 9068 JWT access tokens from the
//! client-credentials grant (RS256 and ES256, no `nbf`, `typ: at+jwt`) are accepted,
//! row-policied and scope-limited; keys rotate; an outage is survived. Tokens shaped like
//! Auth0's, Azure AD's, Keycloak's and Google's, signed with a key the provider publishes,
//! are accepted with the documented setting or refused with a reason that says what to set.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::auth::protected_fixture;
use crate::fixture::{self, Kind};
use crate::harness::{Answer, Portico};
use crate::servers::free_port;

const STAFF_SCOPES: &str = "jobs:read jobs:read:all jobs:read:amounts ops:read";

/// `node tests/idp/provider.mjs` on a fixed loopback port, restartable with other keys.
struct Provider {
    child: Option<Child>,
    port: u16,
    keystore: PathBuf,
    /// `http://127.0.0.1:PORT`, the issuer.
    issuer: String,
    _dir: tempfile::TempDir,
}

impl Provider {
    /// Starts the provider publishing `keys` (`kid:ALG`, the first of each algorithm signs).
    fn start(keys: &str) -> Self {
        let mut provider = Self::on(free_port());
        provider.restart(keys);
        provider
    }

    /// The provider of `port`, not started yet.
    fn on(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            child: None,
            port,
            keystore: dir.path().join("keystore.json"),
            issuer: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Stops the provider (an outage).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts it on the same port (same issuer) publishing `keys`; keys named before keep
    /// their key material.
    fn restart(&mut self, keys: &str) {
        self.stop();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp/provider.mjs");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut child = Command::new("node")
                .arg(&script)
                .args([
                    "--port",
                    &self.port.to_string(),
                    "--keys",
                    keys,
                    "--keystore",
                ])
                .arg(&self.keystore)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("node (scripts/install-deps.sh test installs it and tests/idp)");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            if line.trim() == format!("ready {}", self.issuer) {
                self.child = Some(child);
                return;
            }
            // The port may still be held by the process just killed.
            let _ = child.wait();
            assert!(
                Instant::now() < deadline,
                "oidc-provider did not start: {line:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// An access token from the client-credentials grant.
    async fn token(&self, client: &str, scope: &str) -> String {
        let response = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(format!("{client}-secret")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&scope={}",
                scope.replace(' ', "%20").replace(':', "%3A")
            ))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token for {client}: {body}"))
            .to_string()
    }

    /// The provider's private signing key `kid`, to sign tokens of other shapes with.
    fn private_key(&self, kid: &str) -> Value {
        let store: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.keystore).unwrap()).unwrap();
        store["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .cloned()
            .unwrap_or_else(|| panic!("no key {kid}"))
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The protected fixture behind the provider: `[auth]` exactly as the README shows it.
fn config(issuer: &str, auth_extra: &str, jwks_extra: &str) -> String {
    format!(
        r#"
[auth]
issuer = "{issuer}"
audience = "portico"
{auth_extra}

[auth.jwks]
discovery = "{issuer}"
algorithms = ["RS256", "ES256"]
refresh_min_interval = "1s"
{jwks_extra}
{body}"#,
        body = protected_fixture()
    )
}

/// The header and claims of a compact JWS (no verification).
fn decoded(token: &str) -> (Value, Value) {
    use base64::Engine;
    let part = |i: usize| -> Value {
        let text = token.split('.').nth(i).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text)
                .unwrap(),
        )
        .unwrap()
    };
    (part(0), part(1))
}

fn jobs_of(customer: &str) -> usize {
    fixture::jobs(Kind::Sqlite)
        .iter()
        .filter(|j| j.customer == customer)
        .count()
}

#[tokio::test]
async fn a_real_providers_tokens_are_accepted_row_policied_and_scope_limited() {
    let provider = Provider::start("rs1:RS256,es1:ES256");
    let app = Portico::spawn(&config(&provider.issuer, "token_type = \"at+jwt\"", "")).await;
    let staff = provider.token("staff-rs", STAFF_SCOPES).await;
    let (header, claims) = decoded(&staff);
    // What real providers send: no `nbf`, the RFC 9068 type.
    assert!(claims.get("nbf").is_none(), "{claims}");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], "rs1");
    let rows = app.all_pages_as("/v1/jobs?limit=100", Some(&staff)).await;
    assert_eq!(rows.len(), fixture::jobs(Kind::Sqlite).len());
    assert!(rows.iter().any(|r| r.get("amount").is_some()));
    // ES256 from the other client.
    let staff_es = provider.token("staff-es", STAFF_SCOPES).await;
    assert_eq!(decoded(&staff_es).0["alg"], "ES256");
    let answer = app.get_as("/v1/jobs/J0002", Some(&staff_es)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // The portal client's tokens carry `customer_id`: its own jobs only, without amounts.
    let portal = provider.token("portal-rs", "jobs:read ops:read").await;
    let rows = app.all_pages_as("/v1/jobs?limit=100", Some(&portal)).await;
    assert_eq!(rows.len(), jobs_of("C001"));
    assert!(rows
        .iter()
        .all(|r| r["customer_id"] == "C001" && r.get("amount").is_none()));
    app.get_as("/v1/jobs/J0002", Some(&portal))
        .await
        .problem(404);
    // A token asked for fewer scopes gets less.
    let narrow = provider.token("portal-rs", "jobs:read").await;
    let answer = app.get_as("/v1/operations", Some(&narrow)).await;
    assert_eq!(answer.problem(403)["type"], "/problems/insufficient-scope");
}

#[tokio::test]
async fn keys_rotate_and_a_provider_outage_is_survived() {
    let mut provider = Provider::start("k1:RS256");
    let app = Portico::spawn(&config(&provider.issuer, "", "")).await;
    let first = provider.token("staff-rs", STAFF_SCOPES).await;
    let spare = provider.token("staff-rs", STAFF_SCOPES).await;
    assert_eq!(app.get_as("/v1/jobs/J0002", Some(&first)).await.status, 200);

    // An added key signs from now on: its unknown kid makes Portico fetch the set again.
    provider.restart("k2:RS256,k1:RS256");
    let second = provider.token("staff-rs", STAFF_SCOPES).await;
    assert_eq!(decoded(&second).0["kid"], "k2");
    let answer = app.get_as("/v1/jobs/J0002", Some(&second)).await;
    assert_eq!(answer.status, 200, "after the rotation: {}", answer.body);
    // Two RS256 keys published: a token without `kid` cannot say which signed it.
    let keyless = crate::idp::pyjwt_raw(
        &[],
        vec![
            json!({"private_jwk": provider.private_key("k2"), "alg": "RS256",
                    "claims": decoded(&second).1}),
        ],
    );
    let answer = app.get_as("/v1/jobs/J0002", Some(&keyless.tokens[0])).await;
    let detail = answer.problem(401)["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("no `kid`"), "{detail}");

    // The old key is withdrawn (and a third added): once the set is fetched again, tokens
    // of the old key are refused.
    provider.restart("k3:RS256,k2:RS256");
    let third = provider.token("staff-rs", STAFF_SCOPES).await;
    assert_eq!(app.get_as("/v1/jobs/J0002", Some(&third)).await.status, 200);
    let answer = app.get_as("/v1/jobs/J0002", Some(&spare)).await;
    assert_eq!(answer.problem(401)["type"], "/problems/unauthorized");

    // The provider goes down: verified tokens and known keys keep working; unknown kids are
    // refused (not 503: the keys were fetched once).
    let unused = provider.token("staff-rs", STAFF_SCOPES).await;
    provider.stop();
    assert_eq!(app.get_as("/v1/jobs/J0002", Some(&third)).await.status, 200);
    assert_eq!(
        app.get_as("/v1/jobs/J0002", Some(&unused)).await.status,
        200
    );
    let rogue = crate::idp::pyjwt(
        &[("k9", "RS256")],
        &[(
            "k9",
            crate::idp::claims("x", json!({"iss": provider.issuer, "aud": "portico"})),
        )],
    );
    let answer = app.get_as("/v1/jobs/J0002", Some(&rogue.tokens[0])).await;
    answer.problem(401);
}

/// A key the provider has just published is found by waiting for the next fetch the rate
/// limit allows, not refused until `refresh_min_interval` has passed.
#[tokio::test]
async fn a_new_kid_right_after_a_fetch_waits_for_the_next_one() {
    let mut provider = Provider::start("a1:RS256");
    let app = Portico::spawn(&config(&provider.issuer, "", "").replace(
        "refresh_min_interval = \"1s\"",
        "refresh_min_interval = \"3s\"",
    ))
    .await;
    let before = provider.token("staff-rs", STAFF_SCOPES).await;
    assert_eq!(
        app.get_as("/v1/jobs/J0002", Some(&before)).await.status,
        200
    );
    provider.restart("a2:RS256,a1:RS256");
    let started = Instant::now();
    let rotated = provider.token("staff-rs", STAFF_SCOPES).await;
    let answer = app.get_as("/v1/jobs/J0002", Some(&rotated)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Before the keys were ever fetched every token is a 503 whose `Retry-After` is when the
/// next fetch really happens; a client that waits that long is served.
#[tokio::test]
async fn before_the_first_fetch_retry_after_says_when_the_next_one_is() {
    // The provider's port, with nothing listening yet.
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let app = Portico::spawn(&config(&issuer, "", "").replace(
        "refresh_min_interval = \"1s\"",
        "refresh_min_interval = \"2s\"",
    ))
    .await;
    let signer = crate::idp::pyjwt(
        &[("z1", "RS256")],
        &[(
            "z1",
            crate::idp::claims("x", json!({"iss": issuer, "aud": "portico"})),
        )],
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = app.get_as("/v1/jobs/J0002", Some(&signer.tokens[0])).await;
    assert_eq!(answer.problem(503)["type"], "/problems/auth-unavailable");
    let wait: u64 = answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After: {wait}");
    // The provider comes up; after Retry-After the keys are fetched and tokens are judged.
    let mut provider = Provider::on(port);
    provider.restart("p1:RS256");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let token = provider.token("staff-rs", STAFF_SCOPES).await;
    let answer = app.get_as("/v1/jobs/J0002", Some(&token)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[test]
fn check_proves_the_identity_provider() {
    let provider = Provider::start("c1:RS256,c2:ES256");
    let dir = tempfile::tempdir().unwrap();
    let run = |auth_extra: &str, issuer: &str| {
        let file = dir.path().join("idp.toml");
        std::fs::write(&file, config(issuer, auth_extra, "")).unwrap();
        Command::new(env!("CARGO_BIN_EXE_portico"))
            .args(["check", "--config"])
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = run("", &provider.issuer);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("RS256 keys from") && stdout.contains("c1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ES256 keys from") && stdout.contains("c2"),
        "{stdout}"
    );
    assert!(
        !stderr.contains("plain http"),
        "loopback is not warned about: {stderr}"
    );
    // The issuer with a trailing slash is another issuer: every token would be refused.
    let slashed = format!("{}/", provider.issuer);
    let out = run("", &slashed);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("auth.issuer") && stderr.contains(&format!("`{}`", provider.issuer)),
        "{stderr}"
    );
}

/// One token shape: the claims a provider puts in, how Portico is configured for it, and the
/// status (and words of the refusal) it gets.
struct Shape {
    name: &'static str,
    typ: &'static str,
    claims: Value,
    auth: &'static str,
    status: u16,
    words: &'static str,
}

#[tokio::test]
async fn tokens_shaped_like_other_providers_work_with_the_documented_settings() {
    let provider = Provider::start("s1:RS256");
    let issuer = provider.issuer.clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let base = |extra: Value| {
        let mut claims = json!({"iss": issuer, "aud": "portico", "iat": now, "exp": now + 600});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };
    let shapes = [
        Shape {
            name: "Auth0 machine-to-machine",
            typ: "JWT",
            claims: base(
                json!({"sub": "m2m@clients", "azp": "m2m", "gty": "client-credentials",
                                "scope": "jobs:read jobs:read:all"}),
            ),
            auth: "",
            status: 200,
            words: "",
        },
        Shape {
            name: "Auth0 user with RBAC permissions, default scope claims",
            typ: "JWT",
            claims: base(json!({"sub": "auth0|42", "scope": "openid profile",
                                "permissions": ["jobs:read", "jobs:read:all"]})),
            auth: "",
            status: 403,
            words: "`permissions` claim lists it",
        },
        Shape {
            name: "Auth0 user with RBAC permissions",
            typ: "JWT",
            claims: base(json!({"sub": "auth0|42", "scope": "openid profile",
                                "permissions": ["jobs:read", "jobs:read:all"]})),
            auth: "scope_claim = [\"scope\", \"permissions\"]",
            status: 200,
            words: "",
        },
        Shape {
            name: "Azure AD v2 delegated",
            typ: "JWT",
            claims: base(
                json!({"sub": "u1", "ver": "2.0", "tid": "t", "oid": "o", "nbf": now,
                                "scp": "jobs:read jobs:read:all"}),
            ),
            auth: "scope_claim = [\"scp\", \"roles\"]",
            status: 200,
            words: "",
        },
        Shape {
            name: "Azure AD v2 app-only, default scope claims",
            typ: "JWT",
            claims: base(json!({"sub": "app", "ver": "2.0", "nbf": now,
                                "roles": ["jobs:read", "jobs:read:all"]})),
            auth: "",
            status: 403,
            words: "`roles` claim lists it",
        },
        Shape {
            name: "Azure AD v2 app-only",
            typ: "JWT",
            claims: base(json!({"sub": "app", "ver": "2.0", "nbf": now,
                                "roles": ["jobs:read", "jobs:read:all"]})),
            auth: "scope_claim = [\"scp\", \"roles\"]",
            status: 200,
            words: "",
        },
        Shape {
            name: "Keycloak client roles",
            typ: "JWT",
            claims: base(json!({"sub": "kc", "typ": "Bearer", "azp": "portico",
                                "scope": "openid email profile",
                                "realm_access": {"roles": ["offline_access"]},
                                "resource_access": {"portico": {"roles": ["jobs:read", "jobs:read:all"]}}})),
            auth: "scope_claim = [\"realm_access.roles\", \"resource_access.portico.roles\"]",
            status: 200,
            words: "",
        },
        Shape {
            name: "Keycloak client roles, default scope claims",
            typ: "JWT",
            claims: base(json!({"sub": "kc", "scope": "openid email profile",
                                "resource_access": {"portico": {"roles": ["jobs:read", "jobs:read:all"]}}})),
            auth: "",
            status: 403,
            words: "`resource_access.portico.roles` claim lists it",
        },
        Shape {
            name: "Google ID token where access tokens are required",
            typ: "JWT",
            claims: base(
                json!({"sub": "1234567890", "azp": "portico", "email": "a@example.com",
                                "email_verified": true, "nbf": now}),
            ),
            auth: "token_type = \"at+jwt\"",
            status: 401,
            words: "must be `at+jwt`",
        },
        Shape {
            name: "a token lacking a claim the operator requires",
            typ: "at+jwt",
            claims: base(json!({"sub": "m2m", "scope": "jobs:read jobs:read:all"})),
            auth: "required_claims = [\"exp\", \"iss\", \"aud\", \"sub\", \"tenant.id\"]",
            status: 401,
            words: "`tenant.id`",
        },
    ];
    let signer = provider.private_key("s1");
    let tokens = crate::idp::pyjwt_raw(
        &[],
        shapes
            .iter()
            .map(|s| {
                json!({"private_jwk": signer, "alg": "RS256", "claims": s.claims,
                       "headers": {"kid": "s1", "typ": s.typ}})
            })
            .collect(),
    );
    for (shape, token) in shapes.iter().zip(&tokens.tokens) {
        let app = Portico::spawn(&config(&issuer, shape.auth, "")).await;
        let answer: Answer = app.get_as("/v1/jobs?limit=2", Some(token)).await;
        assert_eq!(
            answer.status, shape.status,
            "{}: {}",
            shape.name, answer.body
        );
        if shape.status != 200 {
            let detail = answer.body["detail"].as_str().unwrap_or_default();
            assert!(detail.contains(shape.words), "{}: {detail}", shape.name);
        }
    }
    // Google ID tokens serve resources that need no scope (any valid token), row-policied by
    // the claims they carry.
    let google = crate::idp::pyjwt_raw(
        &[],
        vec![
            json!({"private_jwk": signer, "alg": "RS256", "headers": {"kid": "s1"},
                    "claims": base(json!({"sub": "1234567890", "email": "a@example.com",
                                          "customer_id": "C003"}))}),
        ],
    );
    let config = config(&issuer, "", "").replacen("read_scope = \"ops:read\"\n", "", 1);
    let app = Portico::spawn(&config).await;
    let answer = app.get_as("/v1/operations", Some(&google.tokens[0])).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["job_id"] == "J0003"));
}
