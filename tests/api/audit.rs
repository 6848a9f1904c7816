//! The `portico` binary's audit log and `portico token`'s refusal of production configs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use crate::auth::{auth_config, hs_token, SECRET};
use crate::idp::JwksServer;

fn portico() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portico"))
}

#[tokio::test]
async fn refusals_are_audited_with_who_what_and_why_and_never_the_token() {
    let jwks = JwksServer::start(Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.toml");
    std::fs::write(&file, auth_config(&jwks, "")).unwrap();
    let mut child = portico()
        .args(["serve", "--config"])
        .arg(&file)
        .env("PORTICO_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, received) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut log = Vec::new();
    let address = loop {
        let line = received
            .recv_timeout(Duration::from_secs(30))
            .expect("portico logs its address");
        log.push(line.clone());
        if let Some(address) = crate::harness::logged_address(&line) {
            break address;
        }
    };
    let forged = hs_token("mallory", json!({"scope": "jobs:read jobs:read:all"}))
        .rsplit_once('.')
        .map(|(head, _)| format!("{head}.c2lnbmF0dXJlLW9mLW5vYm9keQ"))
        .unwrap();
    let no_scope = hs_token("clerk-7", json!({"scope": "ops:read"}));
    let no_claim = hs_token("portal-x", json!({"scope": "jobs:read"}));
    let client = reqwest::Client::new();
    for (token, expected) in [
        (Some(&forged), 401),
        (Some(&no_scope), 403),
        (Some(&no_claim), 403),
        (None, 401),
    ] {
        let mut request = client.get(format!("http://{address}/v1/jobs?status=open"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        assert_eq!(request.send().await.unwrap().status(), expected);
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    log.extend(received.try_iter());
    let audit: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("portico::audit"))
        .collect();
    let find = |who: &str, reason: &str, status: u16| {
        audit.iter().any(|l| {
            l.contains(&format!("who=\"{who}\""))
                && l.contains(&format!("status={status} reason=\"{reason}\""))
        })
    };
    assert!(find("unverified", "signature", 401), "{audit:#?}");
    assert!(find("clerk-7", "missing_scope", 403), "{audit:#?}");
    assert!(find("portal-x", "forbidden", 403), "{audit:#?}");
    assert!(find("anonymous", "missing_token", 401), "{audit:#?}");
    assert!(
        audit.iter().all(|l| l.contains("path=/v1/jobs")),
        "{audit:#?}"
    );
    let everything = log.join("\n");
    for secret in [
        forged.as_str(),
        no_scope.as_str(),
        no_claim.as_str(),
        SECRET,
    ] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(
            !everything.contains(signature),
            "the log holds token or secret text"
        );
    }
}

#[test]
fn token_minting_refuses_a_configuration_not_marked_development() {
    let dir = tempfile::tempdir().unwrap();
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml")).unwrap();
    let run = |text: &str| {
        let file = dir.path().join("c.toml");
        std::fs::write(&file, text).unwrap();
        portico()
            .args([
                "token",
                "--scope",
                "jobs:read",
                "--claim",
                "customer_id=C00002",
                "--config",
            ])
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = run(&demo);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let claims = token.trim().split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["customer_id"], "C00002");
    assert_eq!(claims["scope"], "jobs:read");
    assert_eq!(claims["iss"], "portico-demo");

    let production = demo.replace("development = true", "development = false");
    assert_ne!(production, demo);
    let out = run(&production);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("development = true"));
}
