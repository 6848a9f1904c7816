//! Durations and byte sizes as operators write them (`250ms`, `5s`, `64MiB`), parsed into
//! typed values while the file is read, so nothing downstream parses them again.

use std::cell::Cell;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

thread_local! {
    /// Set by a value deserializer that refused its text: what the reader may put in its
    /// place to go on and find the file's other problems (see `config::draft`).
    static STAND_IN: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Takes the stand-in a refused value left, if the last error was one.
pub(super) fn take_stand_in() -> Option<&'static str> {
    STAND_IN.with(Cell::take)
}

fn refused<E: serde::de::Error>(message: String, stand_in: &'static str) -> E {
    STAND_IN.with(|s| s.set(Some(stand_in)));
    E::custom(message)
}

/// Splits `250ms` into `(250, "ms")`; `None` without a leading number.
fn number_and_unit(text: &str) -> Option<(u64, &str)> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    Some((number.parse().ok()?, unit.trim()))
}

/// Parses a duration such as `250ms`, `5s`, `2m`, `1h`, `3d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    match number_and_unit(text) {
        Some((n, "ms")) => Ok(Duration::from_millis(n)),
        Some((n, "s")) => Ok(Duration::from_secs(n)),
        Some((n, "m")) => Ok(Duration::from_secs(n.saturating_mul(60))),
        Some((n, "h")) => Ok(Duration::from_secs(n.saturating_mul(3600))),
        Some((n, "d")) => Ok(Duration::from_secs(n.saturating_mul(86_400))),
        _ => Err(format!(
            "`{text}` is not a duration such as `500ms`, `5s`, `2m`, `1h` or `3d`"
        )),
    }
}

/// Parses a size such as `64MiB`, `512KiB`, `1GiB` or a number of bytes.
fn parse_size(text: &str) -> Result<u64, String> {
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

/// `deserialize_with` for a duration.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(|message| refused(message, "0s"))
}

/// `deserialize_with` for an optional duration (with `#[serde(default)]`).
pub fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

/// `deserialize_with` for a list of durations; a refused entry is named by its index.
pub fn durations<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Duration>, D::Error> {
    struct Entry(Duration);
    impl<'de> Deserialize<'de> for Entry {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            duration(deserializer).map(Entry)
        }
    }
    let entries = Vec::<Entry>::deserialize(deserializer)?;
    Ok(entries.into_iter().map(|e| e.0).collect())
}

/// `deserialize_with` for a size in bytes.
pub fn size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_size(&text).map_err(|message| refused(message, "0"))
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
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86_400)));
        assert!(parse_duration("5w").is_err());
    }
}
