//! A client generated from the published `openapi/v1.json` by an independent generator
//! (openapi-python-client from PyPI) lists, filters and pages jobs and fetches one job from the
//! running demo.

use std::process::Command;

use crate::harness::{demo_database, Portico};

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Uses the generated package the way an integrator would.
const SCRIPT: &str = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
from portico_client import AuthenticatedClient
from portico_client.api.jobs import get_job, list_jobs
from portico_client.models.list_jobs_status import ListJobsStatus

client = AuthenticatedClient(base_url=sys.argv[2], token=sys.argv[3])
seen, cursor, pages = [], None, 0
while pages < 4:
    page = list_jobs.sync(client=client, limit=25, status=ListJobsStatus.OPEN,
                          **({"cursor": cursor} if cursor else {}))
    assert page is not None, "list_jobs failed"
    for job in page.data:
        assert str(job.status.value if hasattr(job.status, "value") else job.status) == "open", job
        seen.append(job.id)
    pages += 1
    cursor = page.next_cursor
    if not cursor:
        break
assert len(seen) == len(set(seen)) == 100, (len(seen), len(set(seen)))
assert seen == sorted(seen), "pages continue in key order"
one = get_job.sync(client=client, id=seen[42])
assert one is not None and one.id == seen[42], one
prefix = list_jobs.sync(client=client, limit=10, idprefix="J00012")
assert [j.id[:6] for j in prefix.data] == ["J00012"] * 10, prefix
print(json.dumps({"pages": pages, "jobs": len(seen), "one": one.id, "amount": one.quote_amount}))
"#;

#[tokio::test]
async fn a_generated_python_client_lists_filters_pages_and_fetches_jobs() {
    let (dir, db) = demo_database();
    let text = std::fs::read_to_string(repo("config/demo.toml"))
        .unwrap()
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("requests_per_second = 100", "requests_per_second = 1000");
    let db_path = db.display().to_string();
    let config = portico::config::parse("demo.toml", &text, &|name| {
        (name == "DEMO_DB").then(|| db_path.clone())
    })
    .unwrap();
    let token = portico::auth::token::mint(
        config.auth.as_ref().unwrap(),
        &portico::auth::token::TokenRequest {
            subject: "integrator".into(),
            scopes: ["jobs:read", "jobs:read:all", "jobs:read:amounts"]
                .map(String::from)
                .to_vec(),
            claims: Default::default(),
            ttl: std::time::Duration::from_secs(600),
        },
    )
    .unwrap();
    let services =
        portico::app::build(&config, &dir.path().join("demo.toml").display().to_string()).unwrap();
    let app = Portico::start(services, &config).await;

    let generated = dir.path().join("generated");
    let base = app.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        let generate = Command::new(repo(".venv/bin/openapi-python-client"))
            .args(["generate", "--meta", "none", "--path"])
            .arg(repo("openapi/v1.json"))
            .arg("--output-path")
            .arg(generated.join("portico_client"))
            .output()
            .expect(".venv/bin/openapi-python-client (scripts/install-deps.sh test installs it)");
        assert!(
            generate.status.success(),
            "{}",
            String::from_utf8_lossy(&generate.stderr)
        );
        Command::new(repo(".venv/bin/python"))
            .args(["-c", SCRIPT])
            .arg(&generated)
            .arg(&base)
            .arg(&token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the generated client failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["jobs"], 100);
    assert!(summary["amount"].is_string(), "{summary}");
}
