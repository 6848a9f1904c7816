//! Swagger UI at `/docs`, rendered by headless Chromium from a running Portico with the network
//! closed: the operations show, the token button is there, and nothing is fetched elsewhere.

use std::process::Command;

use crate::auth::auth_config;
use crate::harness::Portico;
use crate::idp::JwksServer;

/// Hosts Chromium itself calls (updates, time, accounts): never asked for by the page.
const BROWSER_OWN_HOSTS: [&str; 5] = [
    "clients2.google.com",
    "update.googleapis.com",
    "accounts.google.com",
    "www.google.com",
    "optimizationguide-pa.googleapis.com",
];

#[tokio::test]
async fn swagger_ui_renders_the_operations_without_any_external_request() {
    let jwks = JwksServer::start(Vec::new());
    let app = Portico::spawn(&auth_config(&jwks, "")).await;
    // `/docs` redirects to `/docs/` (the client follows), where relative asset paths resolve.
    let (status, headers, _) = app.get_with("/docs", &[]).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));

    let dir = tempfile::tempdir().unwrap();
    let net_log = dir.path().join("net.json");
    let url = format!("{}/docs/", app.base);
    let chromium = tokio::task::spawn_blocking({
        let (net_log, profile) = (net_log.clone(), dir.path().join("profile"));
        move || {
            Command::new("/usr/bin/chromium")
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-features=OptimizationHints,OptimizationHintsFetching,OptimizationGuideModelDownloading",
                    // Closed network: only loopback resolves.
                    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                    "--virtual-time-budget=15000",
                    "--dump-dom",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg(format!("--log-net-log={}", net_log.display()))
                .arg(url)
                .output()
                .expect("/usr/bin/chromium (scripts/install-deps.sh test installs it)")
        }
    });
    let out = chromium.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "listJobs",
        "getJob",
        "listJobOperations",
        "/v1/jobs/{id}",
        "authorize",
    ] {
        assert!(dom.contains(expected), "`{expected}` is not on the page");
    }

    let log = std::fs::read_to_string(&net_log).unwrap();
    let origin = format!("{}/", app.base);
    let mut page_requests = 0;
    for url in log
        .split("\"url\":\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
    {
        if url.starts_with(&origin) {
            page_requests += 1;
            continue;
        }
        let host = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split(['/', ':']).next());
        assert!(
            host.is_some_and(|h| BROWSER_OWN_HOSTS.contains(&h)),
            "the page asked for {url}"
        );
    }
    assert!(
        page_requests >= 6,
        "the UI, its assets and the document came from Portico"
    );
}
