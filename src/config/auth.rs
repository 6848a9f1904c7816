//! The TOML model of `[auth]`, `[rate_limit]` and the access settings of resources.

use std::time::Duration;

use serde::Deserialize;

/// Bearer JWT verification.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry (one of them when the token lists several).
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(
        default = "default_leeway",
        deserialize_with = "super::units::duration"
    )]
    pub leeway: Duration,
    /// Dotted paths of the claims holding scopes, merged (`["scp", "roles"]`); `scope` then
    /// `scp` when absent. One path may be written as a plain string.
    pub scope_claim: Option<ScopeClaims>,
    /// Claims every token must carry besides `exp`, `iss` and `aud` (always required);
    /// dotted paths reach nested claims. `nbf` is checked whenever present.
    #[serde(default = "default_required_claims")]
    pub required_claims: Vec<String>,
    /// The JOSE `typ` header every token must carry, e.g. `at+jwt` (RFC 9068); unchecked
    /// when absent.
    pub token_type: Option<String>,
    /// Scope the admin endpoints need.
    #[serde(default = "default_admin_scope")]
    pub admin_scope: String,
    /// Marks a development configuration: `portico token` mints tokens only for these.
    #[serde(default)]
    pub development: bool,
    /// Keys configured directly (shared secrets, PEM public keys).
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Keys published by an identity provider.
    pub jwks: Option<JwksConfig>,
}

/// One claim path or several.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ScopeClaims {
    /// `scope_claim = "scp"`.
    One(String),
    /// `scope_claim = ["scp", "roles"]`.
    Many(Vec<String>),
}

impl ScopeClaims {
    /// The paths, in order.
    pub fn paths(&self) -> Vec<String> {
        match self {
            ScopeClaims::One(path) => vec![path.clone()],
            ScopeClaims::Many(paths) => paths.clone(),
        }
    }
}

fn default_required_claims() -> Vec<String> {
    vec!["exp".into(), "iss".into(), "aud".into()]
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_admin_scope() -> String {
    "portico:admin".into()
}

/// One verification key, pinned to one algorithm.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The `kid` tokens signed with this key carry; any token of its algorithm when absent.
    pub kid: Option<String>,
    /// `HS256`, `RS256`, `ES256`, `EdDSA`…: the only algorithm this key verifies.
    pub algorithm: String,
    /// Shared secret of an HS key (from the environment: `${JWT_SECRET}`).
    pub secret: Option<String>,
    /// PEM public key text.
    pub public_key: Option<String>,
    /// File holding the PEM public key.
    pub public_key_file: Option<String>,
    /// The secret is not wholly one `${VAR}` from the environment: some or all of it is
    /// written in the configuration file.
    #[serde(skip)]
    pub secret_in_file: bool,
}

impl std::fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log, whoever prints the configuration.
        f.debug_struct("KeyConfig")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("public_key", &self.public_key)
            .field("public_key_file", &self.public_key_file)
            .finish()
    }
}

/// A JWKS endpoint, given directly or found through OIDC discovery.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// URL of the JSON Web Key Set.
    pub url: Option<String>,
    /// Issuer URL whose `/.well-known/openid-configuration` names the JWKS URL.
    pub discovery: Option<String>,
    /// Algorithms accepted from this set; a key's own `alg` must be one of them.
    #[serde(default = "default_jwks_algorithms")]
    pub algorithms: Vec<String>,
    /// Shortest time between two fetches caused by unknown `kid`s.
    #[serde(
        default = "default_refresh_min",
        deserialize_with = "super::units::duration"
    )]
    pub refresh_min_interval: Duration,
    /// How long one fetch may take.
    #[serde(
        default = "default_fetch_timeout",
        deserialize_with = "super::units::duration"
    )]
    pub timeout: Duration,
}

fn default_jwks_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}

fn default_refresh_min() -> Duration {
    Duration::from_secs(5)
}

fn default_fetch_timeout() -> Duration {
    Duration::from_secs(5)
}

/// A token bucket per principal (subject, or client address for anonymous calls).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Tokens added per second.
    pub requests_per_second: f64,
    /// Bucket size: the burst a principal may send at once.
    pub burst: u32,
}

/// A row filter added to every query of the principals it applies to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowPolicyConfig {
    /// Name used in logs and problems.
    pub name: String,
    /// Applies only to principals holding this scope.
    pub when_scope: Option<String>,
    /// Applies only to principals lacking this scope.
    pub unless_scope: Option<String>,
    /// `COLUMN = {claims.customer_id} AND …`: comparisons of columns with claims or literals.
    pub condition: String,
}
