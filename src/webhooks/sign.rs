//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` under a
//! `whsec_` secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A signing secret: `whsec_` and the base64 of its key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    text: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl Secret {
    /// Parses `whsec_<base64>`; the key must be 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let encoded = text
            .strip_prefix("whsec_")
            .ok_or("a webhook secret starts with `whsec_`")?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| "a webhook secret is `whsec_` and base64".to_string())?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!(
                "a webhook secret holds 24 to 64 bytes, not {}",
                key.len()
            ));
        }
        Ok(Self {
            text: text.to_string(),
            key,
        })
    }

    /// A new random 32-byte secret.
    pub fn generate() -> Self {
        let mut key = Vec::with_capacity(32);
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self {
            text: format!("whsec_{}", STANDARD.encode(&key)),
            key,
        }
    }

    /// `whsec_…`, to hand to the receiver once.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// `v1,<signature>` of one attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            // HMAC takes keys of any length: this does not happen.
            return String::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: one signature per secret, space separated.
pub fn signature_header(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_checked_generated_and_never_printed() {
        assert!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(Secret::parse("whsec_!!!").is_err());
        assert!(
            Secret::parse("whsec_c2hvcnQ=").is_err(),
            "5 bytes is too short"
        );
        let secret = Secret::generate();
        assert_eq!(Secret::parse(secret.expose()).unwrap(), secret);
        assert_ne!(secret, Secret::generate());
        assert_eq!(format!("{secret:?}"), "Secret(redacted)");
        let two = [secret.clone(), Secret::generate()];
        let header = signature_header(&two, "id", 1, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.starts_with(&secret.sign("id", 1, b"{}")));
    }
}
