//! A stand-in identity provider on loopback: a JWKS (and OpenID discovery) endpoint that
//! counts its fetches, with keys and tokens minted by PyJWT, an independent implementation.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// Issuer and audience every test token carries.
pub const ISSUER: &str = "https://idp.portico.test";
pub const AUDIENCE: &str = "portico-tests";

/// Keys and tokens from PyJWT.
pub struct Minted {
    /// Public JWK by kid.
    pub jwks: Value,
    /// Public PEM by kid.
    pub pem: Value,
    /// Tokens in request order.
    pub tokens: Vec<String>,
}

/// Asks PyJWT (Debian's python3-jwt, under /usr/bin/python3) for keys `(kid, alg)` and
/// tokens `(kid, claims)`.
pub fn pyjwt(keys: &[(&str, &str)], tokens: &[(&str, Value)]) -> Minted {
    let tokens: Vec<Value> = tokens
        .iter()
        .map(|(kid, claims)| json!({"kid": kid, "claims": claims}))
        .collect();
    pyjwt_raw(keys, tokens)
}

/// `pyjwt` with token requests as PyJWT's script takes them (`alg` may override the key's).
pub fn pyjwt_raw(keys: &[(&str, &str)], tokens: Vec<Value>) -> Minted {
    let request = json!({
        "keys": keys.iter().map(|(kid, alg)| json!({"kid": kid, "alg": alg})).collect::<Vec<_>>(),
        "tokens": tokens,
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/api/support/pyjwt_tokens.py"
    );
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 with python3-jwt (scripts/install-deps.sh test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyJWT failed");
    let mut answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    Minted {
        jwks: answer["jwks"].take(),
        pem: answer["pem"].take(),
        tokens: serde_json::from_value(answer["tokens"].take()).unwrap(),
    }
}

/// Standard claims valid now, plus `extra`.
pub fn claims(subject: &str, extra: Value) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = json!({
        "sub": subject, "iss": ISSUER, "aud": AUDIENCE,
        "iat": now, "nbf": now, "exp": now + 3600,
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        claims[k] = v;
    }
    claims
}

/// A JWKS endpoint on loopback.
pub struct JwksServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    /// Serves `keys` at `/jwks.json` and a discovery document naming it.
    pub fn start(keys: Vec<Value>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (set, count, origin) = (keys.clone(), fetches.clone(), base.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut request_line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                // Drain the headers.
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let body = if request_line.contains("/.well-known/openid-configuration") {
                    json!({"issuer": ISSUER, "jwks_uri": format!("{origin}/jwks.json")})
                } else {
                    count.fetch_add(1, Ordering::SeqCst);
                    json!({"keys": *set.lock().unwrap()})
                }
                .to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self {
            base,
            keys,
            fetches,
        }
    }

    /// Publishes another key (a rotation).
    pub fn publish(&self, key: Value) {
        self.keys.lock().unwrap().push(key);
    }

    /// Key set fetches so far.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}
