//! Configuration: one TOML file, `${VAR}` secrets from the environment, precise errors.

mod auth;
mod breaker;
mod capability;
mod changes;
mod compression;
mod cross_origin;
mod interpolate;
mod model;
mod procedure;
mod telemetry;
mod units;
mod validate;
mod write;

use std::path::Path;

pub use auth::*;
pub use breaker::BreakerConfig;
pub use capability::*;
pub use changes::*;
pub use compression::{CompressionConfig, ContentCoding};
pub use cross_origin::CorsConfig;
pub use interpolate::{interpolate, wholly_from_environment};
pub use model::*;
pub use procedure::*;
pub use telemetry::{otlp_endpoint_problem, TelemetryConfig};
pub use units::parse_duration;
pub use validate::{check_listen_address, validate};
pub use write::*;

/// `[auth]` with a test HS256 secret, for unit tests that compile configurations.
#[cfg(test)]
pub(crate) const TEST_AUTH: &str = "[auth]\ndevelopment = true\nissuer = \"i\"\naudience = \"a\"\n[[auth.keys]]\nalgorithm = \"HS256\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n";

/// A configuration problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    load_draft(path)?.into_config(&path.display().to_string())
}

/// Parses configuration text; `env` looks up `${VAR}` values. Every refused value is
/// reported, each at its location.
pub fn parse(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    draft(file, text, env)?.into_config(file)
}

/// A configuration read as far as it goes: values it refused (a duration such as `soon`) are
/// listed in `problems` and stand in as zero in `config`, so the checks that follow can find
/// the file's other problems too. Nothing may be served from a draft with problems.
#[derive(Debug)]
pub struct Draft {
    /// The configuration, with stand-ins for the refused values.
    pub config: Config,
    /// Each refused value, at its location.
    pub problems: Vec<Problem>,
}

impl Draft {
    /// The configuration, when the file refused no value.
    pub fn into_config(self, file: &str) -> Result<Config, ConfigError> {
        match self.problems.is_empty() {
            true => Ok(self.config),
            false => Err(ConfigError {
                file: file.to_string(),
                problems: self.problems,
            }),
        }
    }
}

/// Reads the file at `path` as a [`Draft`].
pub fn load_draft(path: &Path) -> Result<Draft, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::single(&file, "", format!("cannot read file: {e}")))?;
    draft(&file, &text, &|name| std::env::var(name).ok())
}

/// Parses configuration text as a [`Draft`]; what it cannot read at all is an error.
pub fn draft(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Draft, ConfigError> {
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
    // Each pass stops at the first refused value; it is noted, replaced by its stand-in and
    // the file read again (each pass replaces one value, so this ends).
    let mut config: Config = loop {
        let _ = units::take_stand_in();
        let error = match serde_path_to_error::deserialize(value.clone()) {
            Ok(config) => break config,
            Err(error) => error,
        };
        let stand_in = units::take_stand_in();
        let location = error.path().to_string();
        let replaced = stand_in.is_some_and(|s| replace_at(&mut value, error.path(), s));
        problems.push(Problem {
            location: if location == "." {
                String::new()
            } else {
                location
            },
            message: error.into_inner().to_string(),
        });
        if !replaced {
            return Err(ConfigError {
                file: file.to_string(),
                problems,
            });
        }
    };
    mark_secrets_not_from_environment(&mut config, &raw);
    Ok(Draft { config, problems })
}

/// Puts `text` where `path` points; false when the path does not lead to a string.
fn replace_at(value: &mut toml::Value, path: &serde_path_to_error::Path, text: &str) -> bool {
    use serde_path_to_error::Segment;
    let mut at = value;
    for segment in path.iter() {
        let next = match (segment, at) {
            (Segment::Map { key }, toml::Value::Table(table)) => table.get_mut(key),
            (Segment::Seq { index }, toml::Value::Array(items)) => items.get_mut(*index),
            _ => None,
        };
        match next {
            Some(next) => at = next,
            None => return false,
        }
    }
    match at {
        toml::Value::String(old) if old != text => {
            *old = text.to_string();
            true
        }
        _ => false,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refused_value_is_reported_at_its_location() {
        let text = r#"
            [server]
            shutdown_timeout = "soon"
            [cache]
            max_size = "lots"
            [webhooks]
            retry_schedule = ["0s", "later"]
            [sources.erp]
            kind = "odbc"
            connection_string = "DSN=x"
            dialect = "sqlite"
            query_timeout = "5x"
        "#;
        let draft = draft("t.toml", text, &|_| None).unwrap();
        let found: Vec<&str> = draft.problems.iter().map(|p| p.location.as_str()).collect();
        assert_eq!(
            found,
            [
                "server.shutdown_timeout",
                "cache.max_size",
                "webhooks.retry_schedule[1]",
                "sources.erp.query_timeout",
            ]
        );
        assert!(draft.problems[0]
            .message
            .contains("`soon` is not a duration"));
        assert!(draft.problems[1].message.contains("`lots` is not a size"));
        // The stand-ins are zero; such a draft is never served (`parse` refuses it).
        assert_eq!(draft.config.cache.max_size, 0);
        assert_eq!(
            parse("t.toml", text, &|_| None).unwrap_err().problems.len(),
            4
        );
        let typed = parse(
            "t.toml",
            "[cache]\nmax_size = \"2MiB\"\ndefault_ttl = \"250ms\"\n",
            &|_| None,
        )
        .unwrap();
        assert_eq!(typed.cache.max_size, 2 << 20);
        assert_eq!(
            typed.cache.default_ttl,
            std::time::Duration::from_millis(250)
        );
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
