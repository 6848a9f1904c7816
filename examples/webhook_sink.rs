//! Benchmark receiver: checks every Standard Webhooks signature and counts what arrived, fast
//! enough that a delivery benchmark measures the sender (the Python test receiver verifies
//! more thoroughly but takes under 2,000 requests a second).
//!
//! ```text
//! cargo run --release --example webhook_sink -- --secret whsec_... [--workers 2]
//! ```
//!
//! Listens on an ephemeral loopback port and prints one line, `listening on 127.0.0.1:PORT`.
//! A POST to any other path is answered 204 when one of its `webhook-signature`s is the
//! HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` under the secret, else 400.
//! `GET /stats` answers `{"accepted", "distinct", "bad_signatures", "first", "last"}`: accepted
//! requests, distinct (path, `webhook-id`) pairs among them (one event has one id for every
//! subscription: give each subscription its own path), and the first and last acceptance (Unix
//! seconds); `POST /reset` clears them.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::{anyhow, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What has arrived since the start or the last reset.
#[derive(Default)]
struct Tally {
    accepted: u64,
    bad_signatures: u64,
    /// (path, webhook-id) of every accepted request.
    ids: HashSet<(String, String)>,
    first: Option<f64>,
    last: Option<f64>,
}

/// The signing key and the tally, shared by the workers.
struct Sink {
    key: Vec<u8>,
    tally: Mutex<Tally>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

impl Sink {
    /// Whether any `v1,` signature of the request signs its id, timestamp and body.
    fn signed(&self, request: &HttpRequest, body: &[u8]) -> bool {
        let (Some(id), Some(timestamp), Some(signatures)) = (
            header(request, "webhook-id"),
            header(request, "webhook-timestamp"),
            header(request, "webhook-signature"),
        ) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return false;
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        let expected = STANDARD.encode(mac.finalize().into_bytes());
        signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .any(|s| s == expected)
    }
}

async fn receive(sink: web::Data<Sink>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let signed = sink.signed(&request, &body);
    let at = now();
    let Ok(mut tally) = sink.tally.lock() else {
        return HttpResponse::InternalServerError().finish();
    };
    if !signed {
        tally.bad_signatures += 1;
        return HttpResponse::BadRequest().finish();
    }
    tally.accepted += 1;
    if let Some(id) = header(&request, "webhook-id") {
        tally
            .ids
            .insert((request.path().to_string(), id.to_string()));
    }
    tally.first.get_or_insert(at);
    tally.last = Some(at);
    HttpResponse::NoContent().finish()
}

async fn stats(sink: web::Data<Sink>) -> HttpResponse {
    let Ok(tally) = sink.tally.lock() else {
        return HttpResponse::InternalServerError().finish();
    };
    HttpResponse::Ok().json(serde_json::json!({
        "accepted": tally.accepted,
        "distinct": tally.ids.len(),
        "bad_signatures": tally.bad_signatures,
        "first": tally.first,
        "last": tally.last,
    }))
}

async fn reset(sink: web::Data<Sink>) -> HttpResponse {
    match sink.tally.lock() {
        Ok(mut tally) => {
            *tally = Tally::default();
            HttpResponse::NoContent().finish()
        }
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

fn main() -> anyhow::Result<()> {
    let mut secret = None;
    let mut workers = 2;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--secret" => secret = args.next(),
            "--workers" => {
                workers = args
                    .next()
                    .context("--workers takes a number")?
                    .parse()
                    .context("--workers takes a number")?
            }
            other => return Err(anyhow!("unknown argument {other}")),
        }
    }
    let secret = secret.context("--secret whsec_... is required")?;
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(&secret))
        .context("the secret is whsec_ and base64")?;
    let sink = web::Data::new(Sink {
        key,
        tally: Mutex::new(Tally::default()),
    });
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(sink.clone())
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .route("/stats", web::get().to(stats))
                .route("/reset", web::post().to(reset))
                .default_service(web::post().to(receive))
        })
        .workers(workers)
        .bind(("127.0.0.1", 0))?;
        let address = server
            .addrs()
            .first()
            .copied()
            .context("the sink bound no address")?;
        println!("listening on {address}");
        use std::io::Write;
        std::io::stdout().flush()?;
        server.run().await?;
        Ok(())
    })
}
