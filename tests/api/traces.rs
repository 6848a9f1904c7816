//! Traces: `portico serve` exports its spans over OTLP/HTTP to a receiver here, which decodes
//! them with the OpenTelemetry protobuf definitions and checks the span trees: an uncached and
//! a cached request, a caller's `traceparent`, and a webhook delivery whose POST names its
//! attempt's span. The subscriber is global per process, so Portico runs as a child process.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;

use crate::changes::{subscription, Tickets};
use crate::fixture::Kind;
use crate::harness::Served;

/// One HTTP request a [`Recorder`] received.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A minimal HTTP/1.1 server answering 200 to every request and keeping each one: the OTLP
/// collector and the webhook receiver of these tests.
struct Recorder {
    address: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Recorder {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let store = store.clone();
                std::thread::spawn(move || serve_connection(stream, &store));
            }
        });
        Self { address, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Reads requests off one (keep-alive) connection until it closes.
fn serve_connection(stream: TcpStream, store: &Mutex<Vec<Received>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let mut headers = HashMap::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        store.lock().unwrap().push(Received {
            path,
            headers,
            body,
        });
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// An exported span, its ids in hex and its attributes as text.
#[derive(Clone, Debug)]
struct Span {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    attributes: BTreeMap<String, String>,
    events: usize,
}

impl Span {
    fn attribute(&self, key: &str) -> &str {
        self.attributes.get(key).map(String::as_str).unwrap_or("")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every span the collector received, decoded from OTLP/HTTP protobuf.
fn exported(collector: &Recorder) -> Vec<Span> {
    let mut spans = Vec::new();
    for request in collector.received() {
        assert_eq!(request.path, "/v1/traces");
        assert_eq!(
            request.headers.get("content-type").map(String::as_str),
            Some("application/x-protobuf")
        );
        let export = ExportTraceServiceRequest::decode(request.body.as_slice()).unwrap();
        for resource in export.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref()?.value.clone());
            assert_eq!(service, Some(Any::StringValue("portico-traced".into())));
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let attributes = span
                        .attributes
                        .iter()
                        .map(|a| {
                            let value = match a.value.as_ref().and_then(|v| v.value.clone()) {
                                Some(Any::StringValue(s)) => s,
                                Some(Any::IntValue(i)) => i.to_string(),
                                Some(Any::BoolValue(b)) => b.to_string(),
                                Some(Any::DoubleValue(d)) => d.to_string(),
                                other => format!("{other:?}"),
                            };
                            (a.key.clone(), value)
                        })
                        .collect();
                    spans.push(Span {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name.clone(),
                        attributes,
                        events: span.events.len(),
                    });
                }
            }
        }
    }
    spans
}

/// Waits (30 s at most: spans leave in batches) until the exported spans satisfy `done`.
async fn wait_for<T>(
    collector: &Recorder,
    what: &str,
    done: impl Fn(&[Span]) -> Option<T>,
) -> (T, Vec<Span>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = exported(collector);
        if let Some(found) = done(&spans) {
            return (found, spans);
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; exported: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The request span whose request id is `id`.
fn request<'a>(spans: &'a [Span], id: &str) -> Option<&'a Span> {
    spans.iter().find(|s| s.attribute("id") == id)
}

fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.trace_id == parent.trace_id && s.parent_span_id == parent.span_id)
        .collect()
}

fn system(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => "postgresql",
        Kind::MariaDb => "mysql",
        _ => "sqlite",
    }
}

const FEED: &str =
    r#"{ strategy = "high_water_mark", column = "UPDATED", poll_interval = "200ms", lag = "4s" }"#;
/// The same table, writable with a token: a write's statements are spans too.
const EDITS: &str = r#"
[auth]
development = true
issuer = "i"
audience = "a"
[[auth.keys]]
algorithm = "HS256"
secret = "a-development-secret-long-enough-for-hs256"

[versions.v1.resources.edits]
source = "legacy"
table = "TICKETS"
key = ["id"]
read_scope = "edits:read"
write_scope = "edits:write"
writes = ["update"]

[versions.v1.resources.edits.fields]
id = { column = "ID", type = "string", column_type = "varchar(6)", trim = true }
customer = { column = "CUST", type = "string", column_type = "varchar(6)" }
"#;
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

async fn request_and_delivery_spans_are_exported(kind: Kind) {
    let collector = Recorder::start();
    let receiver = Recorder::start();
    let tickets = Tickets::new(kind);
    // Values that must never be exported: a key and a filter value.
    tickets
        .sql("INSERT INTO TICKETS VALUES ('J42XYZ', 'O', 'Q7VALU', 5.00, '2026-01-01 10:00:04')");
    let tail = format!(
        "{}\n[telemetry]\notlp_endpoint = \"http://{}/\"\nservice_name = \"portico-traced\"\nsample_ratio = 1.0\n{EDITS}",
        subscription("traced", &format!("http://{}/hook", receiver.address)),
        collector.address
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portico.toml");
    std::fs::write(&config, tickets.config(FEED, &tail)).unwrap();
    let mut portico = Served::spawn(&config, &[], &dir.path().join("portico.log"));
    let base = format!("http://{}", portico.address().await);
    let client = reqwest::Client::new();
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut request = client.get(format!("{base}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let path = path.to_string();
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
        }
    };
    get("/v1/tickets/J42XYZ", &[("x-request-id", "uncached-1")]).await;
    get("/v1/tickets/J42XYZ", &[("x-request-id", "cached-2")]).await;
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    get(
        "/v1/tickets?customer=Q7VALU",
        &[("x-request-id", "caller-3"), ("traceparent", &traceparent)],
    )
    .await;
    get(
        "/v1/tickets/T2",
        &[
            ("x-request-id", "malformed-4"),
            ("traceparent", "00-not-a-trace-01"),
        ],
    )
    .await;
    crate::changes::wait_polled(&base).await;
    tickets.sql("UPDATE TICKETS SET STATUS = 'C', UPDATED = '2026-01-02 00:00:00' WHERE ID = 'T1'");

    // (1) An uncached request: request -> cache lookup (miss) -> pool wait, statement.
    // A request's span ends after its children's, so once it is exported they are too.
    let (_, spans) = wait_for(&collector, "the four requests' trees", |spans| {
        for id in ["cached-2", "caller-3", "malformed-4"] {
            request(spans, id)?;
        }
        let request = request(spans, "uncached-1")?;
        let lookup = children(spans, request)
            .into_iter()
            .find(|s| s.name == "cache.lookup")?;
        let below = children(spans, lookup);
        (below.len() >= 2).then_some(())
    })
    .await;
    let uncached = request(&spans, "uncached-1").unwrap();
    assert_eq!(uncached.name, "GET /{version}/{resource}/{key}");
    assert_eq!(
        uncached.attribute("http.route"),
        "/{version}/{resource}/{key}"
    );
    assert_eq!(uncached.attribute("http.request.method"), "GET");
    assert_eq!(uncached.attribute("http.response.status_code"), "200");
    assert_eq!(
        uncached.parent_span_id, "",
        "a request without traceparent is a root"
    );
    let lookups = children(&spans, uncached);
    assert_eq!(lookups.len(), 1, "{lookups:#?}");
    assert_eq!(lookups[0].name, "cache.lookup");
    assert_eq!(lookups[0].attribute("cache.result"), "miss");
    assert_eq!(lookups[0].attribute("cache.resource"), "tickets");
    let below = children(&spans, lookups[0]);
    let wait = below
        .iter()
        .find(|s| s.name == "pool.wait")
        .expect("pool wait");
    assert_eq!(wait.attribute("db.client.connection.pool.name"), "legacy");
    let statements: Vec<_> = below.iter().filter(|s| s.name != "pool.wait").collect();
    assert_eq!(statements.len(), 1, "{below:#?}");
    let statement = statements[0];
    assert_eq!(statement.attribute("db.system.name"), system(kind));
    assert_eq!(statement.attribute("db.operation.name"), "SELECT");
    assert!(
        statement
            .attribute("db.collection.name")
            .contains("TICKETS"),
        "{statement:#?}"
    );
    assert_eq!(statement.attribute("db.response.returned_rows"), "1");

    // (2) The same request again: a cache hit, no statement in its trace.
    let cached = request(&spans, "cached-2").expect("the cached request's span");
    let lookups = children(&spans, cached);
    assert_eq!(lookups.len(), 1, "{lookups:#?}");
    assert_eq!(lookups[0].attribute("cache.result"), "hit");
    assert!(
        spans
            .iter()
            .filter(|s| s.trace_id == cached.trace_id)
            .all(|s| s.span_id == cached.span_id || s.span_id == lookups[0].span_id),
        "a cache hit reads nothing: {spans:#?}"
    );
    assert_ne!(cached.trace_id, uncached.trace_id);

    // (3) A caller's traceparent: the request continues the caller's trace.
    let continued = request(&spans, "caller-3").expect("the caller's request span");
    assert_eq!(continued.trace_id, CALLER_TRACE);
    assert_eq!(continued.parent_span_id, CALLER_SPAN);
    assert_eq!(continued.name, "GET /{version}/{resource}");
    // A malformed one is ignored: a new trace, not an error.
    let fresh = request(&spans, "malformed-4").expect("the malformed traceparent's span");
    assert_eq!(fresh.parent_span_id, "");
    assert_ne!(fresh.trace_id, CALLER_TRACE);

    // (4) A delivery: its POST names the attempt's span.
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivered = loop {
        if let Some(hook) = receiver.received().into_iter().find(|r| r.path == "/hook") {
            break hook;
        }
        assert!(
            Instant::now() < deadline,
            "no delivery reached the receiver"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sent = delivered
        .headers
        .get("traceparent")
        .expect("a traceparent header with the delivery")
        .clone();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    let (trace_id, span_id) = (parts[1].to_string(), parts[2].to_string());
    let (attempt, _) = wait_for(&collector, "the attempt's span", |spans| {
        spans
            .iter()
            .find(|s| s.span_id == span_id && s.trace_id == trace_id)
            .cloned()
    })
    .await;
    assert_eq!(attempt.name, "webhook attempt");
    assert_eq!(attempt.attribute("subscription"), "traced");
    assert_eq!(attempt.attribute("attempt"), "1");
    assert_eq!(attempt.attribute("http.response.status_code"), "200");
    assert_eq!(parts[3], "01", "sampled");
    let (_, spans) = wait_for(&collector, "a poll that found the change", |spans| {
        spans
            .iter()
            .find(|s| s.name == "poll" && s.attribute("events").parse().is_ok_and(|n: u32| n >= 1))
            .map(|_| ())
    })
    .await;
    let polls: Vec<_> = spans.iter().filter(|s| s.name == "poll").collect();
    assert!(
        polls
            .iter()
            .all(|s| s.attribute("feed") == "legacy.TICKETS"),
        "{polls:#?}"
    );

    // (5) A write: its change and its read-back are statement spans under the request.
    let writer = crate::dashboard::token(
        &config,
        "editor",
        &["--scope", "edits:read", "--scope", "edits:write"],
    );
    // A connection of its own: the pooled one may have passed the server's keep-alive.
    let patched = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .patch(format!("{base}/v1/edits/T2"))
        .bearer_auth(&writer)
        .header("x-request-id", "write-5")
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"customer": "W9VALU"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200, "{:?}", patched.text().await);
    let (_, spans) = wait_for(&collector, "the write's tree", |spans| {
        let write = request(spans, "write-5")?;
        let below: Vec<_> = spans
            .iter()
            .filter(|s| s.trace_id == write.trace_id && s.span_id != write.span_id)
            .collect();
        below
            .iter()
            .any(|s| s.attribute("db.operation.name") == "UPDATE")
            .then_some(())
    })
    .await;
    let write = request(&spans, "write-5").unwrap();
    assert_eq!(write.name, "PATCH /{version}/{resource}/{key}");
    let update = spans
        .iter()
        .find(|s| s.trace_id == write.trace_id && s.attribute("db.operation.name") == "UPDATE")
        .unwrap();
    assert!(
        update.name.starts_with("UPDATE ") && update.name.contains("TICKETS"),
        "{update:#?}"
    );
    assert_eq!(update.attribute("db.system.name"), system(kind));

    // Never a value: no key, filter or written value in any name or attribute, and no log
    // events.
    for span in &spans {
        let text = format!("{} {:?}", span.name, span.attributes);
        for value in ["J42XYZ", "Q7VALU", "W9VALU", "T1", "T2"] {
            assert!(!text.contains(value), "{value} exported in {span:#?}");
        }
        assert_eq!(span.events, 0, "{span:#?}");
    }
    drop(portico);
}

#[tokio::test]
async fn spans_of_requests_and_deliveries_are_exported_sqlite() {
    request_and_delivery_spans_are_exported(Kind::Sqlite).await;
}

#[tokio::test]
async fn spans_of_requests_and_deliveries_are_exported_postgres() {
    request_and_delivery_spans_are_exported(Kind::Postgres).await;
}

#[tokio::test]
async fn spans_of_requests_and_deliveries_are_exported_mariadb() {
    request_and_delivery_spans_are_exported(Kind::MariaDb).await;
}

/// A SIGTERM flushes the spans still buffered: the batch processor's delay is long, so only
/// the flush on the graceful stop can have sent the request's span.
#[tokio::test]
async fn the_last_spans_are_flushed_on_a_graceful_stop() {
    let collector = Recorder::start();
    let tickets = Tickets::new(Kind::Sqlite);
    let tail = format!(
        "[telemetry]\notlp_endpoint = \"http://{}\"\nservice_name = \"portico-traced\"\n",
        collector.address
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portico.toml");
    std::fs::write(&config, tickets.config(FEED, &tail)).unwrap();
    let mut portico = Served::spawn(
        &config,
        &[("OTEL_BSP_SCHEDULE_DELAY", "600000")],
        &dir.path().join("portico.log"),
    );
    let base = format!("http://{}", portico.address().await);
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/tickets/T3"))
        .header("x-request-id", "last-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    portico.terminate();
    wait_for(&collector, "the last request's span", |spans| {
        request(spans, "last-1").map(|_| ())
    })
    .await;
}
