//! Configuration: one TOML file, `${VAR}` secrets from the environment, precise errors.

mod auth;
mod changes;
mod interpolate;
mod model;
mod procedure;
mod write;

use std::path::Path;
use std::time::Duration;

pub use auth::*;
pub use changes::*;
pub use interpolate::{interpolate, wholly_from_environment};
pub use model::*;
pub use procedure::*;
pub use write::*;

/// `[auth]` with a test HS256 secret, for unit tests that compile configurations.
#[cfg(test)]
pub(crate) const TEST_AUTH: &str = "[auth]\ndevelopment = true\nissuer = \"i\"\naudience = \"a\"\n[[auth.keys]]\nalgorithm = \"HS256\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n";

/// A configuration problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the offending key (`versions.v1.resources.jobs.fields.due`).
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.location.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.location, self.message)
        }
    }
}

/// Why a configuration could not be used: every problem found, not only the first.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file the problems are in.
    pub file: String,
    /// All problems found.
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} problem(s) in {}", self.problems.len(), self.file)?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn single(file: &str, location: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            problems: vec![Problem {
                location: location.into(),
                message: message.into(),
            }],
        }
    }
}

/// Reads, interpolates and deserializes a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::single(&file, "", format!("cannot read file: {e}")))?;
    parse(&file, &text, &|name| std::env::var(name).ok())
}

/// Parses configuration text; `env` looks up `${VAR}` values.
pub fn parse(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut value: toml::Value = toml::from_str(text)
        .map_err(|e| ConfigError::single(file, "", format!("invalid TOML: {e}")))?;
    let raw = value.clone();
    let mut problems = Vec::new();
    interpolate(&mut value, "", env, &mut problems);
    if !problems.is_empty() {
        return Err(ConfigError {
            file: file.to_string(),
            problems,
        });
    }
    let mut config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
        let location = e.path().to_string();
        let location = if location == "." {
            String::new()
        } else {
            location
        };
        ConfigError::single(file, location, e.into_inner().to_string())
    })?;
    mark_secrets_not_from_environment(&mut config, &raw);
    Ok(config)
}

/// Notes which `[[auth.keys]]` secrets do not come wholly from the environment (see
/// `wholly_from_environment`).
fn mark_secrets_not_from_environment(config: &mut Config, raw: &toml::Value) {
    let Some(auth) = config.auth.as_mut() else {
        return;
    };
    let raw_keys = raw
        .get("auth")
        .and_then(|a| a.get("keys"))
        .and_then(toml::Value::as_array);
    for (i, key) in auth.keys.iter_mut().enumerate() {
        let raw_secret = raw_keys
            .and_then(|keys| keys.get(i))
            .and_then(|k| k.get("secret"))
            .and_then(toml::Value::as_str);
        key.secret_in_file = match (raw_secret, &key.secret) {
            (Some(raw), Some(secret)) => !wholly_from_environment(raw, secret),
            _ => false,
        };
    }
}

/// Splits `250ms` into `(250, "ms")`; `None` without a leading number.
fn number_and_unit(text: &str) -> Option<(u64, &str)> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    Some((number.parse().ok()?, unit.trim()))
}

/// Parses a duration such as `250ms`, `5s`, `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    match number_and_unit(text) {
        Some((n, "ms")) => Ok(Duration::from_millis(n)),
        Some((n, "s")) => Ok(Duration::from_secs(n)),
        Some((n, "m")) => Ok(Duration::from_secs(n.saturating_mul(60))),
        Some((n, "h")) => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(format!(
            "`{text}` is not a duration such as `500ms`, `5s`, `2m` or `1h`"
        )),
    }
}

/// Parses a size such as `64MiB`, `512KiB`, `1GiB` or a number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (n, factor) = match number_and_unit(text) {
        Some((n, "" | "B")) => (n, 1),
        Some((n, "KiB")) => (n, 1 << 10),
        Some((n, "MiB")) => (n, 1 << 20),
        Some((n, "GiB")) => (n, 1 << 30),
        _ => return Err(format!("`{text}` is not a size such as `64MiB`")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("64MB").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn durations_parse_with_units_and_reject_garbage() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn unknown_keys_are_errors_with_their_location() {
        let text = r#"
            [sources.erp]
            kind = "odbc"
            connection_string = "DSN=x"
            dialect = "sqlite"
            max_concurency = 3
        "#;
        let err = parse("t.toml", text, &|_| None).unwrap_err();
        assert_eq!(err.problems[0].location, "sources.erp.max_concurency");
        assert!(err.problems[0].message.contains("max_concurency"));
    }
}
