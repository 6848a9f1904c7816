//! `portico token`: development tokens signed with a development configuration's HS secret.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{Map, Value as Json};

use super::keys::parse_algorithm;
use crate::config::AuthConfig;

/// Why no token was minted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The configuration does not say `development = true`.
    #[error("this configuration is not marked `development = true` in [auth]; refusing to mint tokens for it")]
    NotDevelopment,
    /// No HS key to sign with.
    #[error("[auth] has no HS256/384/512 key with a `secret` to sign with")]
    NoSecret,
    /// Signing failed.
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// What the token says.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// `sub`.
    pub subject: String,
    /// Scopes, written space separated in `scope`.
    pub scopes: Vec<String>,
    /// Extra claims (`customer_id`).
    pub claims: Map<String, Json>,
    /// Lifetime.
    pub ttl: Duration,
}

/// Mints an HS token for a development configuration.
pub fn mint(auth: &AuthConfig, request: &TokenRequest) -> Result<String, TokenError> {
    if !auth.development {
        return Err(TokenError::NotDevelopment);
    }
    let (key, algorithm) = auth
        .keys
        .iter()
        .find_map(|k| {
            let algorithm = parse_algorithm(&k.algorithm).ok()?;
            let hmac = matches!(algorithm.family(), jsonwebtoken::AlgorithmFamily::Hmac);
            Some((k, algorithm)).filter(|_| hmac && k.secret.is_some())
        })
        .ok_or(TokenError::NoSecret)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut claims = request.claims.clone();
    claims.insert("sub".into(), request.subject.clone().into());
    claims.insert("iss".into(), auth.issuer.clone().into());
    claims.insert("aud".into(), auth.audience.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("nbf".into(), now.into());
    claims.insert("exp".into(), (now + request.ttl.as_secs()).into());
    if !request.scopes.is_empty() {
        claims.insert("scope".into(), request.scopes.join(" ").into());
    }
    let mut header = Header::new(algorithm);
    header.kid = key.kid.clone();
    let secret = key.secret.as_deref().unwrap_or_default();
    encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| TokenError::Sign(e.to_string()))
}
