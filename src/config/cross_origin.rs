//! `[server.cors]`: which browser pages on other origins may call the API, and its checks.

use std::time::Duration;

use serde::Deserialize;

use super::Problem;

/// Cross-origin resource sharing: off when the table is absent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed to call, exactly as a browser sends them (`https://dash.example.com`,
    /// `http://localhost:8081`); `["*"]` allows any origin when `allow_credentials` is false.
    pub allowed_origins: Vec<String>,
    /// Methods a preflight may ask for.
    #[serde(default = "default_methods")]
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for.
    #[serde(default = "default_allowed_headers")]
    pub allowed_headers: Vec<String>,
    /// Response headers a page's script may read besides the CORS-safelisted ones.
    #[serde(default = "default_exposed_headers")]
    pub exposed_headers: Vec<String>,
    /// How long a browser may reuse a preflight's answer (`Access-Control-Max-Age`).
    #[serde(
        default = "default_max_age",
        deserialize_with = "super::units::duration"
    )]
    pub max_age: Duration,
    /// Whether a page may send cookies or TLS client certificates along
    /// (`Access-Control-Allow-Credentials`); bearer tokens need no credentials mode.
    #[serde(default)]
    pub allow_credentials: bool,
}

impl CorsConfig {
    /// Whether any origin is allowed (`["*"]`).
    pub fn any_origin(&self) -> bool {
        self.allowed_origins.iter().any(|o| o == "*")
    }
}

fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        .map(String::from)
        .to_vec()
}

/// Every request header Portico reads that is not CORS-safelisted.
fn default_allowed_headers() -> Vec<String> {
    [
        "Authorization",
        "Content-Type",
        "If-Match",
        "If-None-Match",
        "Idempotency-Key",
        "Prefer",
        "Cache-Control",
        "Pragma",
        "X-Request-Id",
    ]
    .map(String::from)
    .to_vec()
}

/// Every response header Portico sends that is not CORS-safelisted.
fn default_exposed_headers() -> Vec<String> {
    [
        "ETag",
        "Link",
        "Location",
        "Retry-After",
        "Deprecation",
        "Sunset",
        "Warning",
        "WWW-Authenticate",
        "Idempotent-Replayed",
        "X-Request-Id",
    ]
    .map(String::from)
    .to_vec()
}

fn default_max_age() -> Duration {
    Duration::from_secs(3600)
}

/// Browsers cap a preflight's lifetime (Firefox at a day, Chromium at two hours).
const MOST_MAX_AGE: Duration = Duration::from_secs(86_400);

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The problems of `[server.cors]`.
pub fn check(cors: &CorsConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |key: &str, message: String| {
        problems.push(Problem {
            location: format!("server.cors.{key}"),
            message,
        })
    };
    if cors.allowed_origins.is_empty() {
        problem(
            "allowed_origins",
            "name at least one origin, or leave [server.cors] out".into(),
        );
    }
    if cors.any_origin() {
        if cors.allowed_origins.len() > 1 {
            problem(
                "allowed_origins",
                "`*` stands alone: it already allows every origin".into(),
            );
        }
        if cors.allow_credentials {
            problem(
                "allowed_origins",
                "`*` cannot go with `allow_credentials = true`: name the origins".into(),
            );
        }
    }
    for origin in cors.allowed_origins.iter().filter(|o| *o != "*") {
        if let Err(why) = check_origin(origin) {
            problem("allowed_origins", format!("`{origin}` {why}"));
        }
    }
    for method in &cors.allowed_methods {
        if !METHODS.contains(&method.as_str()) {
            problem(
                "allowed_methods",
                format!("`{method}` is not one of {}", METHODS.join(", ")),
            );
        }
    }
    for (key, names) in [
        ("allowed_headers", &cors.allowed_headers),
        ("exposed_headers", &cors.exposed_headers),
    ] {
        for name in names {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if name == "*" || !token {
                problem(key, format!("`{name}` is not a header name"));
            }
        }
    }
    if cors.max_age > MOST_MAX_AGE {
        problem(
            "max_age",
            "at most `1d`: browsers cap a preflight's lifetime anyway".into(),
        );
    }
    problems
}

/// Whether `origin` is an origin as a browser serializes it: `scheme://host[:port]` in lower
/// case, without a path (not even `/`), and without its scheme's default port.
fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "null" {
        return Err("is what sandboxed pages and files send: allowing it allows them all".into());
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return Err("is not an origin such as `https://dash.example.com`".into());
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_lowercase())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if !scheme_ok {
        return Err("has no lower-case scheme such as `https`".into());
    }
    if authority.contains(['/', '?', '#']) {
        return Err("has a path: an origin is only `scheme://host[:port]`, no trailing `/`".into());
    }
    if authority.contains('@') || authority.contains(char::is_whitespace) {
        return Err("is not an origin such as `https://dash.example.com`".into());
    }
    if authority.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("must be in lower case, as browsers send it".into());
    }
    // The port follows the last colon, unless that colon is inside an IPv6 literal.
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if let Some(port) = port {
        let number: u16 = port
            .parse()
            .ok()
            .filter(|&p| p > 0)
            .ok_or("has a port that is not a number from 1 to 65535")?;
        if (scheme, number) == ("http", 80) || (scheme, number) == ("https", 443) {
            return Err(format!(
                "names its scheme's default port, which browsers leave out: `{scheme}://{host}`"
            ));
        }
    }
    if origin.parse::<actix_web::http::Uri>().is_err() {
        return Err("is not an origin such as `https://dash.example.com`".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_as_browsers_send_them() {
        for good in [
            "https://dash.example.com",
            "http://127.0.0.1:8081",
            "http://localhost:8081",
            "http://[::1]:8081",
            "capacitor://localhost",
        ] {
            assert_eq!(check_origin(good), Ok(()), "{good}");
        }
        for bad in [
            "https://dash.example.com/",
            "https://dash.example.com/app",
            "dash.example.com",
            "https://Dash.example.com",
            "HTTPS://dash.example.com",
            "https://dash.example.com:443",
            "http://localhost:80",
            "http://localhost:0",
            "http://localhost:99999",
            "http://user@localhost",
            "https://",
            "null",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    fn cors(text: &str) -> CorsConfig {
        toml::from_str(text).unwrap()
    }

    fn locations(text: &str) -> Vec<String> {
        check(&cors(text)).into_iter().map(|p| p.location).collect()
    }

    #[test]
    fn a_wildcard_never_goes_with_credentials() {
        assert!(locations("allowed_origins = [\"*\"]").is_empty());
        assert_eq!(
            locations("allowed_origins = [\"*\"]\nallow_credentials = true"),
            ["server.cors.allowed_origins"]
        );
        assert_eq!(
            locations("allowed_origins = [\"*\", \"https://a.example\"]"),
            ["server.cors.allowed_origins"]
        );
        assert!(
            locations("allowed_origins = [\"https://a.example\"]\nallow_credentials = true")
                .is_empty()
        );
    }

    #[test]
    fn methods_headers_and_max_age_are_checked() {
        let text = "allowed_origins = []\nallowed_methods = [\"get\"]\n\
                    allowed_headers = [\"X Bad\"]\nexposed_headers = [\"*\"]\nmax_age = \"2d\"";
        assert_eq!(
            locations(text),
            [
                "server.cors.allowed_origins",
                "server.cors.allowed_methods",
                "server.cors.allowed_headers",
                "server.cors.exposed_headers",
                "server.cors.max_age",
            ]
        );
    }

    #[test]
    fn defaults_name_what_the_api_reads_and_sends() {
        let c = cors("allowed_origins = [\"https://a.example\"]");
        assert!(check(&c).is_empty());
        assert!(c.allowed_methods.iter().any(|m| m == "PATCH"));
        for header in ["Authorization", "If-Match", "Idempotency-Key"] {
            assert!(c.allowed_headers.iter().any(|h| h == header), "{header}");
        }
        for header in ["ETag", "Link", "Retry-After", "X-Request-Id", "Location"] {
            assert!(c.exposed_headers.iter().any(|h| h == header), "{header}");
        }
        assert!(!c.allow_credentials);
    }
}
