//! Bearer token → `Principal`: key selection by `kid` and pinned algorithm, then
//! jsonwebtoken's signature and claim checks.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Algorithm};
use serde_json::{Map, Value as Json};

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use super::jwks::{JwksKeys, JwksLocation};
use super::keys::{self, Expectations, VerificationKey};
use super::{AuthError, Principal};
use crate::config::{AuthConfig, Problem};

/// How long a verified token is trusted without checking its signature again (its `exp` is
/// still checked on every use). A key withdrawn from a JWKS stops working once the set is
/// refetched (see `jwks::MAX_AGE`) and this has passed.
const VERIFIED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Largest clock skew `leeway` may tolerate.
const MAX_LEEWAY: std::time::Duration = std::time::Duration::from_secs(300);

/// Verifies bearer tokens against configured keys and, optionally, a published key set.
pub struct Verifier {
    expectations: Expectations,
    scope_claims: Vec<String>,
    keys: Vec<VerificationKey>,
    jwks: Option<JwksKeys>,
    /// Token → its principal and `exp`: a signature is checked once, not on every request.
    verified: moka::future::Cache<String, (Arc<Principal>, u64)>,
}

impl Verifier {
    /// A verifier over static keys and an optional JWKS.
    pub fn new(
        expectations: Expectations,
        scope_claims: Vec<String>,
        keys: Vec<VerificationKey>,
        jwks: Option<JwksKeys>,
    ) -> Self {
        Self {
            expectations,
            scope_claims,
            keys,
            jwks,
            verified: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(VERIFIED_FOR)
                .build(),
        }
    }

    /// Builds the verifier of `[auth]`, reporting every problem with its location.
    pub fn from_config(
        auth: &AuthConfig,
        read_file: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
        jwks_fetches: Counter,
    ) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let leeway = auth.leeway;
        let jwks = auth
            .jwks
            .as_ref()
            .map(|j| (j, j.refresh_min_interval, j.timeout));
        let mut problem =
            |location: String, message: String| problems.push(Problem { location, message });
        if leeway > MAX_LEEWAY {
            problem(
                "auth.leeway".into(),
                format!("at most {} s of clock skew", MAX_LEEWAY.as_secs()),
            );
        }
        if let Some((j, min, timeout)) = &jwks {
            if *min < std::time::Duration::from_secs(1) {
                problem(
                    "auth.jwks.refresh_min_interval".into(),
                    "must be at least 1s, or unknown kids could hammer the identity provider"
                        .into(),
                );
            }
            if timeout.is_zero() {
                problem("auth.jwks.timeout".into(), "must be above 0".into());
            }
            if j.algorithms.is_empty() {
                problem(
                    "auth.jwks.algorithms".into(),
                    "name at least one algorithm".into(),
                );
            }
        }
        let mut keys = Vec::new();
        for (i, key) in auth.keys.iter().enumerate() {
            match keys::from_config(key, read_file) {
                Ok(k) => keys.push(k),
                Err(m) => problem(format!("auth.keys[{i}]"), m),
            }
            match keys::public_secret(key) {
                Some(why) if !auth.development => problem(
                    format!("auth.keys[{i}].secret"),
                    format!(
                        "{why}; outside development mode take it from the environment \
                         (secret = \"${{JWT_SECRET}}\") or verify the identity provider's keys"
                    ),
                ),
                _ => {}
            }
        }
        let jwks = jwks.and_then(|(j, min, timeout)| {
            let location = match (&j.url, &j.discovery) {
                (Some(url), None) => JwksLocation::Url(url.clone()),
                (None, Some(issuer)) => JwksLocation::Discovery(issuer.clone()),
                _ => {
                    problem(
                        "auth.jwks".into(),
                        "give exactly one of `url` and `discovery`".into(),
                    );
                    return None;
                }
            };
            let mut allowed = Vec::new();
            for (i, name) in j.algorithms.iter().enumerate() {
                match keys::parse_algorithm(name) {
                    Ok(a) if a.family() == jsonwebtoken::AlgorithmFamily::Hmac => problem(
                        format!("auth.jwks.algorithms[{i}]"),
                        "HS algorithms are never accepted from a JWKS".into(),
                    ),
                    Ok(a) => allowed.push(a),
                    Err(m) => problem(format!("auth.jwks.algorithms[{i}]"), m),
                }
            }
            Some(JwksKeys::new(location, allowed, min, timeout, jwks_fetches))
        });
        if !super::is_scope_token(&auth.admin_scope) {
            problem(
                "auth.admin_scope".into(),
                "a scope is printable ASCII without spaces, quotes or backslashes".into(),
            );
        }
        let scope_claims = auth
            .scope_claim
            .as_ref()
            .map(|c| c.paths())
            .unwrap_or_default();
        for (i, path) in scope_claims.iter().enumerate() {
            if !is_claim_path(path) {
                problem(
                    format!("auth.scope_claim[{i}]"),
                    format!("`{path}` is not a claim path (names joined by `.`)"),
                );
            }
        }
        for (i, path) in auth.required_claims.iter().enumerate() {
            if !is_claim_path(path) {
                problem(
                    format!("auth.required_claims[{i}]"),
                    format!("`{path}` is not a claim path (names joined by `.`)"),
                );
            }
        }
        if let Some(typ) = &auth.token_type {
            if typ.trim().is_empty() {
                problem(
                    "auth.token_type".into(),
                    "name the `typ` tokens carry, such as `at+jwt`, or leave it out".into(),
                );
            }
        }
        if keys.is_empty() && jwks.is_none() && auth.jwks.is_none() {
            problem(
                "auth".into(),
                "configure at least one key in `keys` or a `jwks`".into(),
            );
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self::new(
            Expectations::new(
                auth.issuer.clone(),
                auth.audience.clone(),
                leeway.as_secs(),
                &auth.required_claims,
                auth.token_type.clone(),
            ),
            scope_claims,
            keys,
            jwks,
        ))
    }

    /// Fetches the published key set, if there is one.
    pub async fn prefetch(&self) {
        if let Some(jwks) = &self.jwks {
            jwks.prefetch().await;
        }
    }

    /// The published key set, when there is one (`portico check` inspects it).
    pub fn jwks(&self) -> Option<&JwksKeys> {
        self.jwks.as_ref()
    }

    /// Verifies the value of an `Authorization` header.
    pub async fn verify_header(&self, header: &str) -> Result<Arc<Principal>, AuthError> {
        let (scheme, token) = header.trim().split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::WrongScheme);
        }
        self.verify(token.trim()).await
    }

    /// Verifies a compact JWS and returns the principal it names.
    pub async fn verify(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some((principal, exp)) = self.verified.get(token).await {
            if exp.saturating_add(self.expectations.leeway) > now {
                return Ok(principal);
            }
            return Err(AuthError::Expired);
        }
        let principal = Arc::new(self.verify_signed(token).await?);
        // `exp` is required, so a verified token has it; like jsonwebtoken, accept a fraction.
        let exp = principal
            .claims
            .get("exp")
            .and_then(Json::as_f64)
            .map_or(now, |e| e as u64);
        self.verified
            .insert(token.to_string(), (principal.clone(), exp))
            .await;
        Ok(principal)
    }

    async fn verify_signed(&self, token: &str) -> Result<Principal, AuthError> {
        // `alg: none` and unknown algorithms fail here: jsonwebtoken has no such variant.
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.crit.is_some() {
            return Err(AuthError::Critical);
        }
        if !self.expectations.type_matches(header.typ.as_deref()) {
            let expected = self.expectations.token_type.clone().unwrap_or_default();
            return Err(AuthError::TokenType(expected));
        }
        let candidates = self.candidates(header.kid.as_deref(), header.alg).await?;
        let mut failure = AuthError::UnknownKey;
        for key in candidates {
            if key.algorithm != header.alg {
                failure = AuthError::Algorithm;
                continue;
            }
            let validation = self.expectations.validation(key.algorithm);
            match decode::<Map<String, Json>>(token, &key.key, &validation) {
                Ok(data) => {
                    if let Some(claim) = self.expectations.missing_claim(&data.claims) {
                        return Err(AuthError::Claim(claim.to_string()));
                    }
                    return Ok(Principal::from_claims(data.claims, &self.scope_claims));
                }
                Err(e) => failure = classify(e.kind()),
            }
            // A claim failure is final; a bad signature may still verify under the next key.
            if failure != AuthError::Signature {
                break;
            }
        }
        Err(failure)
    }

    /// Keys that may have signed a token: the one with its `kid`. Without a `kid`: the
    /// configured keys without one that are pinned to its algorithm, else the one published
    /// key of its algorithm (several are ambiguous), else the configured keys without a `kid`
    /// (which then refuse the algorithm).
    async fn candidates(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<VerificationKey>, AuthError> {
        if let Some(kid) = kid {
            if let Some(key) = self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                return Ok(vec![key.clone()]);
            }
            return match &self.jwks {
                Some(jwks) => Ok(jwks.key(kid).await?.into_iter().collect()),
                None => Ok(Vec::new()),
            };
        }
        let keyless = self.keys.iter().filter(|k| k.kid.is_none());
        let fitting: Vec<VerificationKey> = keyless
            .clone()
            .filter(|k| k.algorithm == alg)
            .cloned()
            .collect();
        if !fitting.is_empty() {
            return Ok(fitting);
        }
        if let Some(jwks) = &self.jwks {
            match jwks.keys_for(alg).await?.as_slice() {
                [one] => return Ok(vec![one.clone()]),
                [] => {}
                _ => return Err(AuthError::AmbiguousKey),
            }
        }
        Ok(keyless.cloned().collect())
    }
}

/// A dotted claim path: names of letters, digits, `_`, `-`, `:` or `/`, joined by `.`.
fn is_claim_path(path: &str) -> bool {
    path.split('.').all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-:/".contains(c))
    })
}

fn classify(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
            AuthError::Claim(c.clone())
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::Algorithm,
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidEddsaKey => {
            AuthError::Signature
        }
        _ => AuthError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"unit-test-secret-0123456789abcdef";

    fn verifier() -> Verifier {
        let key = VerificationKey {
            kid: None,
            algorithm: Algorithm::HS256,
            key: jsonwebtoken::DecodingKey::from_secret(SECRET),
        };
        let expectations = Expectations::new("i".into(), "a".into(), 0, &[], None);
        Verifier::new(expectations, Vec::new(), vec![key], None)
    }

    #[tokio::test]
    async fn a_remembered_token_is_still_refused_once_it_expires() {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = json!({"sub": "s", "iss": "i", "aud": "a", "nbf": now, "exp": now + 1});
        let token = encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let v = verifier();
        assert_eq!(
            v.verify(&token).await.unwrap().subject.as_deref(),
            Some("s")
        );
        // The second call is answered from the verified-token cache.
        assert!(v.verify(&token).await.is_ok());
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        assert_eq!(v.verify(&token).await.unwrap_err(), AuthError::Expired);
    }

    #[tokio::test]
    async fn a_critical_header_extension_is_refused() {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = json!({"sub": "s", "iss": "i", "aud": "a", "exp": now + 60});
        let header = Header {
            crit: Some(vec!["exp-ext".into()]),
            ..Header::default()
        };
        let token = encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap();
        assert_eq!(
            verifier().verify(&token).await.unwrap_err(),
            AuthError::Critical
        );
        let plain = encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(verifier().verify(&plain).await.is_ok(), "no nbf needed");
    }

    #[tokio::test]
    async fn the_scheme_must_be_bearer() {
        let v = verifier();
        assert_eq!(
            v.verify_header("Basic abc").await.unwrap_err(),
            AuthError::WrongScheme
        );
        assert_eq!(
            v.verify_header("Bearer a.b").await.unwrap_err(),
            AuthError::Malformed
        );
    }
}
