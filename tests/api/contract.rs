//! Every answer a test receives from a version's paths is checked against that version's
//! OpenAPI document (documented status, content type and body schema) when its Portico stops.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

/// Paths outside the versions that no document describes (Swagger UI, the documents).
const UNDOCUMENTED: [&str; 2] = ["docs", "openapi"];

/// Paths outside the versions that every version's document describes.
const SERVICE: [&str; 5] = ["", "healthz", "readyz", "metrics", "admin"];

/// The answers one Portico gave.
#[derive(Default)]
pub struct Recorder {
    answers: Mutex<Vec<Value>>,
}

impl Recorder {
    /// Keeps an answer to `GET path` when the path belongs to a version.
    pub fn record(&self, path: &str, status: u16, headers: &HeaderMap, body: &[u8]) {
        self.record_method("GET", path, status, headers, body);
    }

    /// Keeps an answer to `METHOD path` when the path belongs to a version.
    pub fn record_method(
        &self,
        method: &str,
        path: &str,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) {
        let first = path
            .trim_start_matches('/')
            .split(['/', '?'])
            .next()
            .unwrap_or("");
        if UNDOCUMENTED.contains(&first) {
            return;
        }
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let json = content_type.contains("json") && !content_type.contains("ndjson");
        let body = if body.is_empty() {
            Value::Null
        } else if !json {
            // An export (CSV, NDJSON) is text, whatever its lines hold.
            json!(String::from_utf8_lossy(body))
        } else {
            serde_json::from_slice(body).unwrap_or_else(|_| json!(String::from_utf8_lossy(body)))
        };
        let mut answers = self.answers.lock().unwrap();
        answers.push(json!({
            "method": method,
            "path": path,
            "status": status,
            "content_type": content_type,
            "body": body,
        }));
    }

    /// Validates every recorded answer against the documents `base` serves; panics listing
    /// the answers that break them.
    pub fn validate(&self, base: &str) {
        let answers = std::mem::take(&mut *self.answers.lock().unwrap());
        let mut versions: Vec<String> = answers
            .iter()
            .filter_map(|a| a["path"].as_str())
            .filter_map(|p| p.trim_start_matches('/').split(['/', '?']).next())
            .filter(|first| !SERVICE.contains(first))
            .map(str::to_string)
            .collect();
        versions.sort();
        versions.dedup();
        let service: Vec<&Value> = answers
            .iter()
            .filter(|a| {
                a["path"].as_str().is_some_and(|p| {
                    let first = p.trim_start_matches('/').split(['/', '?']).next();
                    first.is_some_and(|f| SERVICE.contains(&f))
                })
            })
            .collect();
        let mut service_checked = service.is_empty();
        for version in versions {
            let Some(document) = fetch(base, &format!("/openapi/{version}.json")) else {
                continue; // not a version: the answers were 404s for unknown paths
            };
            let mut mine: Vec<&Value> = answers
                .iter()
                .filter(|a| {
                    a["path"].as_str().is_some_and(|p| {
                        p.starts_with(&format!("/{version}/")) || p == format!("/{version}")
                    })
                })
                .collect();
            // Every document describes the service paths; the first one checks their answers.
            if !service_checked {
                mine.extend(&service);
                service_checked = true;
            }
            check(&document, &mine);
        }
        if !service_checked {
            let versions: Option<Value> =
                fetch(base, "/").and_then(|text| serde_json::from_str(&text).ok());
            let first = versions
                .as_ref()
                .and_then(|v| v["versions"][0]["name"].as_str())
                .map(str::to_string);
            if let Some(document) = first.and_then(|v| fetch(base, &format!("/openapi/{v}.json"))) {
                check(&document, &service);
            }
        }
    }
}

/// Validates `answers` against `document`; panics listing the ones that break it.
pub fn check(document: &str, answers: &[&Value]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, document).unwrap();
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/api/support/validate_responses.py"
    );
    let mut child = Command::new(venv)
        .arg(script)
        .arg(&file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect(".venv/bin/python (scripts/install-deps.sh test makes it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(answers).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "answers that break the OpenAPI document:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A blocking HTTP/1.0 GET (the caller may be dropping inside an async runtime).
fn fetch(base: &str, path: &str) -> Option<String> {
    let address = base.strip_prefix("http://")?;
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    if !response.starts_with("HTTP/1.0 200") && !response.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(response[response.find("\r\n\r\n")? + 4..].to_string())
}
