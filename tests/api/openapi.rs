//! The OpenAPI documents: the published contract, validity by an independent validator, and
//! real responses checked against them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::auth::{auth_config, hs_token};
use crate::fixture::Kind;
use crate::harness::Portico;
use crate::idp::JwksServer;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A tool from the repository's `.venv` (scripts/install-deps.sh test makes it).
fn venv(tool: &str) -> Command {
    let path = repo(".venv/bin").join(tool);
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/install-deps.sh test`",
        path.display()
    );
    Command::new(path)
}

#[test]
fn the_published_contracts_are_what_the_demo_config_generates() {
    let file = repo("config/demo.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let config = portico::config::parse("config/demo.toml", &text, &|_| None).unwrap();
    let services = portico::app::build(&config, &file.display().to_string()).unwrap();
    assert_eq!(services.documents.len(), 2, "the demo serves v1 and v2");
    for (version, rendered) in &services.documents {
        let published =
            std::fs::read_to_string(repo(&format!("openapi/{version}.json"))).unwrap_or_default();
        assert!(
            rendered.json == published,
            "openapi/{version}.json differs from what config/demo.toml generates; review the \
             change and publish it with \
             `portico openapi --config config/demo.toml --version {version} > openapi/{version}.json`"
        );
    }
    let v2: Value = serde_json::from_str(&services.documents["v2"].json).unwrap();
    let quote = &v2["components"]["schemas"]["Job"]["properties"]["quote"];
    assert_eq!(quote["type"], json!(["object", "null"]));
    assert_eq!(quote["properties"]["currency"]["enum"], json!(["USD"]));
    let published = std::fs::read_to_string(repo("openapi/v1.json")).unwrap();
    let document: Value = serde_json::from_str(&published).unwrap();
    for id in ["listJobs", "getJob", "listJobOperations", "getCustomer"] {
        assert!(
            published.contains(&format!("\"operationId\": \"{id}\"")),
            "{id}"
        );
    }
    assert_eq!(document["openapi"], "3.1.0");
    // The fixed endpoints, documented by utoipa's derive, are merged in.
    assert_eq!(
        document["paths"]["/healthz"]["get"]["operationId"],
        "healthz"
    );
    assert_eq!(
        document["paths"]["/admin/cache/{resource}"]["delete"]["security"],
        json!([{"bearer": ["portico:admin"]}])
    );
    let jobs = &document["paths"]["/v1/jobs"]["get"];
    assert_eq!(jobs["security"], json!([{"bearer": ["jobs:read"]}]));
    let status = &document["components"]["schemas"]["Job"]["properties"]["status"];
    assert_eq!(
        status["enum"],
        json!(["open", "held", "closed", "cancelled", null])
    );
    let amount = &document["components"]["schemas"]["Job"]["properties"]["quote_amount"];
    assert_eq!(amount["type"], json!(["string", "null"]));
    assert!(amount["description"]
        .as_str()
        .unwrap()
        .contains("jobs:read:amounts"));
    // Writes: request bodies with required fields and limits, headers, every answer.
    let create = &document["paths"]["/v1/jobs"]["post"];
    assert_eq!(create["operationId"], "createJob");
    assert_eq!(create["security"], json!([{"bearer": ["jobs:write"]}]));
    assert_eq!(create["parameters"][0]["name"], "Idempotency-Key");
    for status in ["201", "400", "409", "413", "415", "422"] {
        assert!(create["responses"].get(status).is_some(), "POST {status}");
    }
    assert!(create["responses"]["201"]["headers"]
        .get("Location")
        .is_some());
    let body = &document["components"]["schemas"]["JobCreate"];
    assert_eq!(
        body["required"],
        json!(["id", "customer_id", "status", "ordered_on", "rush"])
    );
    assert_eq!(body["properties"]["id"]["maxLength"], 10);
    assert!(body["properties"].get("updated_at").is_none(), "read-only");
    assert_eq!(body["additionalProperties"], false);
    let patch = &document["paths"]["/v1/operations/{job_id},{sequence}"]["patch"];
    let if_match = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "If-Match")
        .unwrap();
    assert_eq!(if_match["required"], true, "operations require If-Match");
    for status in ["200", "404", "409", "412", "422", "428"] {
        assert!(patch["responses"].get(status).is_some(), "PATCH {status}");
    }
    assert!(patch["requestBody"]["content"]
        .get("application/merge-patch+json")
        .is_some());
    assert!(document["paths"]["/v1/jobs/{id}"].get("delete").is_none());
    assert!(document["paths"]["/v1/operations"].get("post").is_none());
}

fn validate_document(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, text).unwrap();
    let out = venv("openapi-spec-validator").arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn served_documents_pass_an_independent_validator() {
    let anonymous = Portico::over(Kind::Sqlite).await;
    let jwks = JwksServer::start(Vec::new());
    let secured = Portico::spawn(&auth_config(&jwks, "")).await;
    anonymous.get("/openapi/v7.json").await.problem(404);
    anonymous.get("/openapi/v1.txt").await.problem(404);
    let yaml = anonymous.get_text("/openapi/v1.yaml").await;
    assert!(yaml.starts_with("openapi: 3.1.0"), "{yaml}");
    let served = [
        anonymous.get_text("/openapi/v1.json").await,
        secured.get_text("/openapi/v1.json").await,
    ];
    for text in &served {
        validate_document(text);
    }
    validate_document(&std::fs::read_to_string(repo("openapi/v1.json")).unwrap());
}

/// One request and the document path it answers to.
struct Call {
    path: String,
    template: &'static str,
    token: Option<String>,
}

#[tokio::test]
async fn real_responses_validate_against_the_document() {
    let jwks = JwksServer::start(Vec::new());
    let app = Portico::spawn(&auth_config(&jwks, "")).await;
    let staff = hs_token(
        "staff",
        json!({"scope": "jobs:read jobs:read:all jobs:read:amounts ops:read"}),
    );
    let portal = hs_token(
        "portal",
        json!({"scope": "jobs:read ops:read", "customer_id": "C001"}),
    );
    let call = |path: &str, template: &'static str, token: Option<&String>| Call {
        path: path.to_string(),
        template,
        token: token.cloned(),
    };
    let calls = vec![
        call("/v1/jobs?limit=5", "/v1/jobs", Some(&staff)),
        call(
            "/v1/jobs?limit=5&sort=-due_on&status[in]=open,held",
            "/v1/jobs",
            Some(&staff),
        ),
        call(
            "/v1/jobs?fields=id,amount&amount[gte]=10",
            "/v1/jobs",
            Some(&staff),
        ),
        call("/v1/jobs?limit=200", "/v1/jobs", Some(&portal)),
        call("/v1/jobs?limit=0", "/v1/jobs", Some(&staff)),
        call("/v1/jobs?colour=red", "/v1/jobs", Some(&staff)),
        call("/v1/jobs", "/v1/jobs", None),
        call("/v1/jobs/J0001", "/v1/jobs/{id}", Some(&staff)),
        call("/v1/jobs/J0002", "/v1/jobs/{id}", Some(&portal)),
        call("/v1/jobs/NOPE", "/v1/jobs/{id}", Some(&staff)),
        call(
            "/v1/jobs/J0001/operations",
            "/v1/jobs/{id}/operations",
            Some(&staff),
        ),
        call(
            "/v1/operations/J0001,10",
            "/v1/operations/{job_id},{seq}",
            Some(&staff),
        ),
        call("/v1/operations?limit=3", "/v1/operations", Some(&portal)),
        call(
            "/v1/operations?limit=3",
            "/v1/operations",
            Some(&hs_token("x", json!({}))),
        ),
    ];
    let mut answers = Vec::new();
    let mut statuses = Vec::new();
    for c in &calls {
        let answer = app.get_as(&c.path, c.token.as_deref()).await;
        let content_type = answer
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        statuses.push(answer.status.as_u16());
        answers.push(json!({
            "method": "GET",
            "path": c.path,
            "template": c.template,
            "status": answer.status.as_u16(),
            "content_type": content_type,
            "body": answer.body,
        }));
    }
    // The calls cover success and each kind of refusal.
    for status in [200, 400, 401, 403, 404] {
        assert!(statuses.contains(&status), "{status} in {statuses:?}");
    }
    // With the document's paths given explicitly (the recorder infers them).
    let document = app.get_text("/openapi/v1.json").await;
    crate::contract::check(&document, &answers.iter().collect::<Vec<_>>());
}

#[tokio::test]
async fn a_deprecated_version_says_so_in_headers_document_and_index() {
    let b = crate::harness::backend(Kind::Sqlite);
    let config = crate::fixture::config(Kind::Sqlite, &b.connection_string, "").replacen(
        "[versions.v1.resources.jobs]",
        "[versions.v1]\ndeprecated = \"2026-01-15\"\nsunset = \"2027-06-30\"\n\n[versions.v1.resources.jobs]",
        1,
    );
    let app = Portico::spawn(&config).await;
    for path in [
        "/v1/jobs?limit=1",
        "/v1/jobs/J0001",
        "/v1/jobs/NOPE",
        "/v1/jobs?limit=0",
    ] {
        let answer = app.get(path).await;
        // 2026-01-15T00:00:00Z is 1768435200 seconds after the epoch.
        assert_eq!(answer.headers["deprecation"], "@1768435200", "{path}");
        assert_eq!(
            answer.headers["sunset"], "Wed, 30 Jun 2027 00:00:00 GMT",
            "{path}"
        );
    }
    let health = app.get("/healthz").await;
    assert!(health.headers.get("deprecation").is_none());

    let index = app.get("/").await;
    assert_eq!(index.status, 200);
    assert_eq!(
        index.body["versions"][0],
        json!({
            "name": "v1", "description": null, "status": "deprecated",
            "deprecated": "2026-01-15", "sunset": "2027-06-30",
            "links": {"self": "/v1", "openapi": "/openapi/v1.json"},
        })
    );
    let text = app.get_text("/openapi/v1.json").await;
    let document: Value = serde_json::from_str(&text).unwrap();
    for path in ["/v1/jobs", "/v1/jobs/{id}", "/v1/jobs/{id}/operations"] {
        assert_eq!(document["paths"][path]["get"]["deprecated"], true, "{path}");
    }
    assert!(document["info"]["description"]
        .as_str()
        .unwrap()
        .contains("removed on 2027-06-30"));
    validate_document(&text);

    // A current version carries none of it.
    let current = Portico::over(Kind::Sqlite).await;
    let answer = current.get("/v1/jobs?limit=1").await;
    assert!(answer.headers.get("deprecation").is_none() && answer.headers.get("sunset").is_none());
    assert_eq!(
        current.get("/").await.body["versions"][0]["status"],
        "current"
    );
}

/// `portico openapi diff OLD NEW`: status and output.
fn openapi_diff(old: &Path, new: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["openapi", "diff"])
        .arg(old)
        .arg(new)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `portico openapi --version VERSION --config CONFIG`.
fn generate(config: &Path, version: &str) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["openapi", "--version", version, "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn the_current_config_does_not_break_the_published_contract() {
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("current.json");
    for version in ["v1", "v2"] {
        std::fs::write(&current, generate(&repo("config/demo.toml"), version)).unwrap();
        let published = repo(&format!("openapi/{version}.json"));
        let (ok, report) = openapi_diff(&published, &current);
        assert!(
            ok,
            "the config breaks the published {version} contract:\n{report}"
        );
    }
    let published = repo("openapi/v1.json");

    // The same check refuses a config that renames a field of /v1.
    let renamed = std::fs::read_to_string(repo("config/demo.toml"))
        .unwrap()
        .replacen(
            "\nstatus = { column = \"STATUS\"",
            "\nstate = { column = \"STATUS\"",
            1,
        );
    let file = dir.path().join("renamed.toml");
    std::fs::write(&file, renamed).unwrap();
    std::fs::write(&current, generate(&file, "v1")).unwrap();
    let (ok, report) = openapi_diff(&published, &current);
    assert!(!ok);
    assert!(
        report.contains(
            "BREAKING: GET /v1/jobs: response 200 application/json.data[].status: field removed"
        ),
        "{report}"
    );
    assert!(
        report.contains("parameter `status` (query) removed"),
        "{report}"
    );
    assert!(
        report.contains(
            "added: GET /v1/jobs: response 200 application/json.data[].state: field added"
        ),
        "{report}"
    );
}

/// A linter from `tests/lint` (npm, pinned by its package-lock.json).
fn lint_tool(tool: &str) -> Command {
    let path = repo("tests/lint/node_modules/.bin").join(tool);
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/install-deps.sh test`",
        path.display()
    );
    Command::new(path)
}

#[tokio::test]
async fn every_published_document_passes_redocly_and_spectral() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = vec![repo("openapi/v1.json"), repo("openapi/v2.json")];
    // The fixture's documents without and with bearer tokens (admin security differs).
    let anonymous = Portico::over(Kind::Sqlite).await;
    let jwks = JwksServer::start(Vec::new());
    let secured = Portico::spawn(&auth_config(&jwks, "")).await;
    for (name, app) in [("anonymous", &anonymous), ("secured", &secured)] {
        let text = app.get_text("/openapi/v1.json").await;
        let document: Value = serde_json::from_str(&text).expect("a JSON document");
        assert_eq!(document["openapi"], "3.1.0");
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, text).unwrap();
        files.push(file);
    }
    let redocly = lint_tool("redocly")
        .args(["lint", "--format=stylish", "--config"])
        .arg(repo("tests/lint/redocly.yaml"))
        .args(&files)
        .output()
        .unwrap();
    assert!(
        redocly.status.success(),
        "redocly lint (recommended) reports errors:\n{}{}",
        String::from_utf8_lossy(&redocly.stdout),
        String::from_utf8_lossy(&redocly.stderr)
    );
    let spectral = lint_tool("spectral")
        .args([
            "lint",
            "--fail-severity=error",
            "--display-only-failures",
            "--ruleset",
        ])
        .arg(repo("tests/lint/.spectral.yaml"))
        .args(&files)
        .output()
        .unwrap();
    assert!(
        spectral.status.success(),
        "spectral lint (spectral:oas) reports errors:\n{}{}",
        String::from_utf8_lossy(&spectral.stdout),
        String::from_utf8_lossy(&spectral.stderr)
    );
    for file in &files {
        validate_document(&std::fs::read_to_string(file).unwrap());
    }
}

#[test]
fn the_document_states_the_rules_the_server_enforces() {
    let document: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("openapi/v1.json")).unwrap()).unwrap();
    let schemas = &document["components"]["schemas"];
    // Read from the catalog: CUST_NAME is NOT NULL CHAR(30), CREDIT_LIM DECIMAL(11,2).
    let name = &schemas["CustomerPatch"]["properties"]["name"];
    assert_eq!(
        name["type"],
        json!(["string"]),
        "a NOT NULL column takes no null"
    );
    assert_eq!(name["maxLength"], 30);
    let credit = &schemas["CustomerPatch"]["properties"]["credit_limit"];
    assert_eq!(credit["pattern"], r"^-?0*[0-9]{1,9}(\.[0-9]{1,2}0*)?$");
    // CYYMMDD holds 1900 to 2899 only; a key is never blank.
    let shipped = &schemas["JobCreate"]["properties"]["shipped_on"];
    assert!(shipped["pattern"]
        .as_str()
        .unwrap()
        .starts_with("^(19|2[0-8])"));
    let id = &schemas["JobCreate"]["properties"]["id"];
    assert_eq!(
        (id["minLength"].clone(), id["maxLength"].clone()),
        (json!(1), json!(10))
    );
    // A row always carries its key.
    assert_eq!(schemas["Job"]["required"], json!(["id"]));
    assert_eq!(
        schemas["Operation"]["required"],
        json!(["job_id", "sequence"])
    );
    let path = |p: &str| &document["paths"][p];
    let parameter = |operation: &Value, name: &str| -> Value {
        operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("parameter {name}"))
    };
    let item = &path("/v1/jobs/{id}")["get"];
    assert_eq!(parameter(item, "id")["schema"]["minLength"], 1);
    assert_eq!(parameter(item, "id")["schema"]["maxLength"], 10);
    let list = &path("/v1/jobs")["get"];
    for name in ["cursor", "sort", "fields"] {
        assert_eq!(parameter(list, name)["schema"]["minLength"], 1, "{name}");
    }
    assert_eq!(parameter(list, "customer_id")["schema"]["maxLength"], 8);
    assert!(parameter(&path("/v1/jobs/changes")["get"], "after")["schema"]["pattern"].is_string());
    assert!(
        parameter(&path("/v1/jobs")["post"], "Idempotency-Key")["schema"]["pattern"].is_string()
    );
    // Links: a row's ETag feeds If-Match, a page's next_cursor feeds cursor.
    let update = &item["responses"]["200"]["links"]["update"];
    assert_eq!(update["operationId"], "updateJob");
    assert_eq!(update["parameters"]["If-Match"], "$response.header.ETag");
    assert_eq!(update["parameters"]["id"], "$response.body#/id");
    let next = &list["responses"]["200"]["links"]["next"];
    assert_eq!(next["parameters"]["cursor"], "$response.body#/next_cursor");
    let nested = &path("/v1/jobs/{id}/operations")["get"]["responses"]["200"]["links"]["next"];
    assert_eq!(nested["parameters"]["id"], "$request.path.id");
    // The service paths: probes need no token, administration is documented with its bodies.
    assert_eq!(path("/healthz")["get"]["security"], json!([]));
    assert_eq!(path("/readyz")["get"]["security"], json!([]));
    assert_eq!(document["servers"][0]["url"], "/");
    for p in [
        "/",
        "/metrics",
        "/admin/subscriptions",
        "/admin/deliveries",
        "/admin/dead-letters",
    ] {
        assert!(path(p).is_object(), "{p} is documented");
    }
    assert_eq!(
        path("/admin/subscriptions")["post"]["responses"]["401"]["$ref"],
        "#/components/responses/Unauthorized"
    );
}

#[tokio::test]
async fn methods_keys_and_parameters_are_answered_as_documented() {
    let app = Portico::over(Kind::Sqlite).await;
    // A path that does not take a method says which it takes.
    let trace = app
        .send(
            reqwest::Method::from_bytes(b"TRACE").unwrap(),
            "/healthz",
            None,
            &[],
            None,
        )
        .await;
    assert_eq!(trace.status, 405);
    assert_eq!(trace.headers["allow"], "GET, HEAD");
    let head = app.head("/healthz").await;
    assert_eq!(head.0, 200);
    // A trailing slash names a row with an empty key, not the list.
    app.get("/v1/jobs/").await.problem(404);
    // A key too wide for its column is named as a path key; a query value as a parameter.
    let wide = app.get("/v1/jobs/J000000001").await;
    let detail = wide.problem(400)["detail"].as_str().unwrap().to_string();
    assert!(detail.starts_with("path key `id`"), "{detail}");
    let empty = app.get("/v1/jobs?sort=").await;
    let detail = empty.problem(400)["detail"].as_str().unwrap().to_string();
    assert!(detail.starts_with("query parameter `sort`"), "{detail}");
    // A method the path does not take is a 405 before its query string is looked at.
    let post = app
        .send(
            reqwest::Method::POST,
            "/v1/jobs?limit=5",
            None,
            &[],
            Some(Ok(json!({}))),
        )
        .await;
    assert_eq!(post.status, 405);
    // A cursor belongs to its listing: sent without the filters that gave it, or to another
    // resource, it is a 400, never a page of other rows.
    let open = app.get("/v1/jobs?status=open&limit=2").await;
    let cursor = open.body["next_cursor"].as_str().unwrap().to_string();
    let next = app
        .get(&format!("/v1/jobs?status=open&limit=2&cursor={cursor}"))
        .await;
    assert_eq!(next.status, 200);
    assert!(next.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["status"] == "open"));
    for path in [
        format!("/v1/jobs?limit=2&cursor={cursor}"),
        format!("/v1/jobs?status=held&limit=2&cursor={cursor}"),
        format!("/v1/operations?cursor={cursor}"),
    ] {
        let answer = app.get(&path).await;
        assert_eq!(answer.problem(400)["parameter"], "cursor", "{path}");
    }
    // A cursor issued before cursors named their listing still pages.
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut decoded: Value =
        serde_json::from_slice(&base64::Engine::decode(&engine, &cursor).unwrap()).unwrap();
    decoded.as_object_mut().unwrap().remove("q");
    let older = base64::Engine::encode(&engine, decoded.to_string());
    let answer = app
        .get(&format!("/v1/jobs?status=open&limit=2&cursor={older}"))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // A nested list's cursor belongs to its parent's key.
    let first = app.get("/v1/jobs/J0003/operations?limit=1").await;
    let nested = first.body["next_cursor"].as_str().unwrap().to_string();
    let same = app
        .get(&format!(
            "/v1/jobs/J0003/operations?limit=1&cursor={nested}"
        ))
        .await;
    assert_eq!(same.status, 200, "{}", same.body);
    let other = app
        .get(&format!(
            "/v1/jobs/J0004/operations?limit=1&cursor={nested}"
        ))
        .await;
    assert_eq!(other.problem(400)["parameter"], "cursor");
    // A nested list that does not exist is a 404 whatever the method; a key with too many
    // parts names the path's own parameter.
    let nowhere = app
        .send(
            reqwest::Method::DELETE,
            "/v1/jobs/J0001/nosuch",
            None,
            &[],
            None,
        )
        .await;
    nowhere.problem(404);
    let parts = app.get("/v1/jobs/J0001,1").await;
    assert_eq!(parts.problem(400)["parameter"], "id");
    // fields= always brings the key along.
    let page = app.get("/v1/jobs?fields=status&limit=2").await;
    assert_eq!(page.status, 200);
    for row in page.body["data"].as_array().unwrap() {
        assert!(row["id"].is_string() && row["status"].is_string(), "{row}");
        assert!(row.get("due_on").is_none(), "{row}");
    }
}
