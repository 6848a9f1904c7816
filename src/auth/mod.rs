//! Who is calling: bearer JWT verification (shared secrets, PEM keys, JWKS), the principal it
//! yields, per-principal rate limits, and development tokens. What a principal may do with a
//! resource (scopes, row policies, field masks) is `crate::catalog::access`.

pub mod jwks;
pub mod keys;
pub mod principal;
pub mod rate_limit;
pub mod token;
pub mod verify;

pub use principal::{is_scope_token, Principal};
pub use rate_limit::RateLimiter;
pub use verify::Verifier;

/// Why a bearer token was refused. The text is safe to show a client: it names the defect,
/// never the token or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header on a resource that needs one.
    #[error("a bearer token is required")]
    Missing,
    /// `Authorization` is not `Bearer <token>`.
    #[error("the Authorization header must use the Bearer scheme")]
    WrongScheme,
    /// Not three base64url parts of JSON, or a header naming an unknown algorithm (`none`).
    #[error("the token is malformed")]
    Malformed,
    /// More than one `Authorization` header: which one counts would be a guess.
    #[error("send one Authorization header, not several")]
    SeveralHeaders,
    /// No configured or published key has the token's `kid` (or takes its algorithm).
    #[error("the token's signing key is not known")]
    UnknownKey,
    /// The token names no `kid` and several published keys take its algorithm.
    #[error("the token has no `kid` and several of the identity provider's keys fit it")]
    AmbiguousKey,
    /// The header's `crit` names extensions that must be understood; Portico understands none
    /// (RFC 7515 §4.1.11).
    #[error("the token's `crit` header names extensions Portico does not understand")]
    Critical,
    /// The `typ` header is not the configured token type (an ID token where an access token
    /// is expected).
    #[error("the token's type (`typ` header) must be `{0}`")]
    TokenType(String),
    /// The key that matches the `kid` is pinned to another algorithm.
    #[error("the token's algorithm is not the one its key is pinned to")]
    Algorithm,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("the token's issuer is not accepted")]
    Issuer,
    /// `aud` does not name this API.
    #[error("the token's audience is not this API")]
    Audience,
    /// A required claim (`exp`, `iss`, `aud`, or one of `required_claims`) is absent, or a
    /// time claim has the wrong type.
    #[error("the token lacks a valid `{0}` claim")]
    Claim(String),
    /// The identity provider's keys could not be fetched, so nothing can be verified; the next
    /// fetch may happen in `retry_after` seconds.
    #[error("the identity provider's keys cannot be fetched")]
    KeysUnavailable {
        /// Seconds until the next fetch attempt.
        retry_after: u64,
    },
}

impl AuthError {
    /// Short machine-readable reason for the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::WrongScheme => "wrong_scheme",
            AuthError::Malformed => "malformed",
            AuthError::SeveralHeaders => "several_headers",
            AuthError::UnknownKey => "unknown_key",
            AuthError::AmbiguousKey => "ambiguous_key",
            AuthError::TokenType(_) => "token_type",
            AuthError::Critical => "critical_header",
            AuthError::Algorithm => "algorithm",
            AuthError::Signature => "signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::Issuer => "issuer",
            AuthError::Audience => "audience",
            AuthError::Claim(_) => "claim",
            AuthError::KeysUnavailable { .. } => "keys_unavailable",
        }
    }
}
