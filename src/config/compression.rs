//! `[server.compression]`: which content codings Portico answers in, above what size.

use serde::Deserialize;

use super::Problem;

/// A content coding Portico can compress a response body with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentCoding {
    /// Brotli (`br`).
    Br,
    /// gzip.
    Gzip,
}

impl ContentCoding {
    /// The token in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            ContentCoding::Br => "br",
            ContentCoding::Gzip => "gzip",
        }
    }
}

/// Response compression negotiated by `Accept-Encoding`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    /// Whether responses are compressed at all.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Bodies smaller than this (in bytes, `1KiB`) are sent as they are.
    #[serde(default = "default_min_size", deserialize_with = "super::units::size")]
    pub min_size: u64,
    /// The codings offered, the preferred first (when a client accepts several equally).
    #[serde(default = "default_encodings")]
    pub encodings: Vec<ContentCoding>,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            min_size: default_min_size(),
            encodings: default_encodings(),
        }
    }
}

fn default_enabled() -> bool {
    true
}

fn default_min_size() -> u64 {
    1 << 10
}

fn default_encodings() -> Vec<ContentCoding> {
    vec![ContentCoding::Br, ContentCoding::Gzip]
}

/// The problems of `[server.compression]`.
pub fn check(compression: &CompressionConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let location = "server.compression.encodings".to_string();
    if compression.enabled && compression.encodings.is_empty() {
        problems.push(Problem {
            location: location.clone(),
            message: "name `br`, `gzip` or both, or set `enabled = false`".into(),
        });
    }
    for (i, coding) in compression.encodings.iter().enumerate() {
        if compression.encodings[..i].contains(coding) {
            problems.push(Problem {
                location: location.clone(),
                message: format!("`{}` is named twice", coding.token()),
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let c: CompressionConfig = toml::from_str("").unwrap();
        assert!(c.enabled);
        assert_eq!(c.min_size, 1024);
        assert_eq!(c.encodings, [ContentCoding::Br, ContentCoding::Gzip]);
        assert!(check(&c).is_empty());
        let c: CompressionConfig =
            toml::from_str("min_size = \"4KiB\"\nencodings = [\"gzip\", \"gzip\"]").unwrap();
        assert_eq!(c.min_size, 4096);
        assert_eq!(check(&c).len(), 1);
        let c: CompressionConfig = toml::from_str("encodings = []").unwrap();
        assert_eq!(check(&c).len(), 1);
        let c: CompressionConfig = toml::from_str("enabled = false\nencodings = []").unwrap();
        assert!(check(&c).is_empty());
        assert!(toml::from_str::<CompressionConfig>("encodings = [\"zstd\"]").is_err());
    }
}
