//! Verification keys, each pinned to exactly one algorithm, from configuration or a JWK.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::KeyConfig;

/// A key and the only algorithm it verifies.
#[derive(Clone)]
pub struct VerificationKey {
    /// `kid` it answers to; `None` answers tokens without a `kid`.
    pub kid: Option<String>,
    /// The pinned algorithm.
    pub algorithm: Algorithm,
    /// Key material.
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material (a shared secret would end up in a log).
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Claims every token carries, whatever `required_claims` says.
pub const ALWAYS_REQUIRED: [&str; 3] = ["exp", "iss", "aud"];

/// The registered claims jsonwebtoken itself can require.
const SPEC_CLAIMS: [&str; 5] = ["exp", "nbf", "iss", "aud", "sub"];

/// What every token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    pub leeway: u64,
    /// Claims that must be present: `exp`, `iss`, `aud` and the configured ones.
    pub required: Vec<String>,
    /// The `typ` header tokens must carry, when one is configured.
    pub token_type: Option<String>,
}

impl Expectations {
    /// Expectations with `exp`, `iss` and `aud` required, plus `required_claims`.
    pub fn new(
        issuer: String,
        audience: String,
        leeway: u64,
        required_claims: &[String],
        token_type: Option<String>,
    ) -> Self {
        let mut required: Vec<String> = ALWAYS_REQUIRED.iter().map(|c| c.to_string()).collect();
        for claim in required_claims {
            if !required.contains(claim) {
                required.push(claim.clone());
            }
        }
        Self {
            issuer,
            audience,
            leeway,
            required,
            token_type,
        }
    }

    /// The jsonwebtoken validation for one pinned algorithm: `exp`, `iss` and `aud` required
    /// and checked, `nbf` checked when present (RFC 7519 makes it optional, and Auth0,
    /// Keycloak and oidc-provider never send it).
    pub fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut v = Validation::new(algorithm);
        v.leeway = self.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = true;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        let spec: Vec<&str> = self
            .required
            .iter()
            .map(String::as_str)
            .filter(|c| SPEC_CLAIMS.contains(c))
            .collect();
        v.set_required_spec_claims(&spec);
        v
    }

    /// The first required claim that jsonwebtoken does not check and `claims` lacks.
    pub fn missing_claim(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<&str> {
        self.required
            .iter()
            .filter(|c| !SPEC_CLAIMS.contains(&c.as_str()))
            .find(|path| {
                super::principal::lookup(claims, path).is_none_or(serde_json::Value::is_null)
            })
            .map(String::as_str)
    }

    /// Whether a token's `typ` header is the configured type (`at+jwt` also matches
    /// `application/at+jwt`, RFC 7515 §4.1.9); always true without one.
    pub fn type_matches(&self, typ: Option<&str>) -> bool {
        let Some(expected) = &self.token_type else {
            return true;
        };
        let bare = |t: &str| {
            let lower = t.trim().to_ascii_lowercase();
            lower
                .strip_prefix("application/")
                .map(str::to_string)
                .unwrap_or(lower)
        };
        typ.is_some_and(|t| bare(t) == bare(expected))
    }
}

/// Parses an algorithm name as JOSE spells it (`RS256`, `EdDSA`).
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    name.parse::<Algorithm>().map_err(|_| {
        format!("`{name}` is not an algorithm Portico verifies; use HS256/384/512, RS256/384/512, PS256/384/512, ES256/384 or EdDSA")
    })
}

/// Shared secrets published with Portico (the demo's and the examples' defaults, the test
/// suite's): anyone can sign tokens with them, so they serve development only.
const PUBLISHED_SECRETS: [&str; 4] = [
    "portico-demo-development-secret-do-not-deploy",
    "portico-mssql-development-secret-do-not-deploy",
    "portico-test-secret-0123456789abcdef",
    "0123456789abcdef0123456789abcdef",
];

/// Why a shared secret cannot sign production tokens: it is published with Portico, or the
/// configuration file itself holds it. `None` for a secret from the environment.
pub fn public_secret(config: &KeyConfig) -> Option<&'static str> {
    let secret = config.secret.as_deref()?;
    if PUBLISHED_SECRETS.contains(&secret) {
        Some("is published with Portico (a demo or example default), so anyone can sign tokens with it")
    } else if config.secret_in_file {
        Some("is written, whole or in part, in the configuration file (a literal, text around `${VAR}`, or a used `${VAR:-default}`), so whoever reads the file can sign tokens")
    } else {
        None
    }
}

fn is_hmac(algorithm: Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    )
}

/// Builds a configured key; `read_file` loads `public_key_file`.
pub fn from_config(
    config: &KeyConfig,
    read_file: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
) -> Result<VerificationKey, String> {
    let algorithm = parse_algorithm(&config.algorithm)?;
    let key = if is_hmac(algorithm) {
        if config.public_key.is_some() || config.public_key_file.is_some() {
            return Err(format!(
                "an {} key takes a `secret`, not a public key",
                config.algorithm
            ));
        }
        let secret = config
            .secret
            .as_deref()
            .ok_or_else(|| format!("an {} key needs `secret`", config.algorithm))?;
        // RFC 7518 §3.2: the secret must be at least as long as the hash output.
        let minimum = match algorithm {
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            _ => 32,
        };
        if secret.len() < minimum {
            return Err(format!(
                "the {} secret must be at least {minimum} bytes long",
                config.algorithm
            ));
        }
        DecodingKey::from_secret(secret.as_bytes())
    } else {
        if config.secret.is_some() {
            return Err(format!(
                "an {} key takes `public_key` or `public_key_file`, not a secret",
                config.algorithm
            ));
        }
        let pem = match (&config.public_key, &config.public_key_file) {
            (Some(text), None) => text.as_bytes().to_vec(),
            (None, Some(path)) => {
                read_file(path).map_err(|e| format!("cannot read `{path}`: {e}"))?
            }
            _ => {
                return Err(format!(
                    "an {} key needs exactly one of `public_key` and `public_key_file`",
                    config.algorithm
                ))
            }
        };
        decode_pem(algorithm, &pem)?
    };
    Ok(VerificationKey {
        kid: config.kid.clone(),
        algorithm,
        key,
    })
}

fn decode_pem(algorithm: Algorithm, pem: &[u8]) -> Result<DecodingKey, String> {
    let key = match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        _ => DecodingKey::from_rsa_pem(pem),
    };
    key.map_err(|e| format!("the public key is not a PEM key for {algorithm:?}: {e}"))
}

/// Pins a published key to one algorithm: its own `alg`, or the one its type implies,
/// and only if `allowed` lists it. Symmetric (`oct`) keys are never taken from a JWKS.
pub fn from_jwk(jwk: &Jwk, allowed: &[Algorithm]) -> Result<VerificationKey, String> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return Err("an encryption key (`use: enc`) does not verify signatures".into());
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric keys are not accepted from a JWKS".into())
        }
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return Err("unsupported elliptic curve".into()),
        },
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        _ => return Err("unsupported key type".into()),
    };
    let algorithm = match &jwk.common.key_algorithm {
        Some(alg) => parse_algorithm(&alg.to_string())?,
        None => implied,
    };
    if is_hmac(algorithm) {
        return Err("symmetric keys are not accepted from a JWKS".into());
    }
    if !allowed.contains(&algorithm) {
        return Err(format!("algorithm {algorithm:?} is not in `algorithms`"));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
    if key.family() != algorithm.family() {
        return Err(format!(
            "a {:?} key cannot verify {algorithm:?}",
            key.family()
        ));
    }
    Ok(VerificationKey {
        kid: jwk.common.key_id.clone(),
        algorithm,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jwk(value: serde_json::Value) -> Jwk {
        serde_json::from_value(value).unwrap()
    }

    // A P-256 public key (RFC 7515 appendix A.3).
    fn ec() -> serde_json::Value {
        json!({"kty": "EC", "crv": "P-256", "kid": "e",
               "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
               "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})
    }

    #[test]
    fn a_published_key_is_pinned_by_its_type_or_alg_and_the_allow_list() {
        let key = from_jwk(&jwk(ec()), &[Algorithm::ES256]).unwrap();
        assert_eq!(key.algorithm, Algorithm::ES256);
        assert_eq!(key.kid.as_deref(), Some("e"));
        assert!(
            from_jwk(&jwk(ec()), &[Algorithm::RS256]).is_err(),
            "not allowed"
        );
        let mut claimed = ec();
        claimed["alg"] = json!("RS256");
        assert!(
            from_jwk(&jwk(claimed), &[Algorithm::RS256]).is_err(),
            "an EC key cannot claim RS256"
        );
    }

    #[test]
    fn symmetric_and_encryption_keys_are_never_taken_from_a_jwks() {
        let oct = json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"});
        assert!(from_jwk(&jwk(oct), &[Algorithm::HS256]).is_err());
        let mut enc = ec();
        enc["use"] = json!("enc");
        assert!(from_jwk(&jwk(enc), &[Algorithm::ES256]).is_err());
    }
}
