//! `[sources.NAME.breaker]`: when Portico stops sending a struggling database statements.

use std::time::Duration;

use serde::Deserialize;

/// A source's circuit breaker: opened when the share of failed statements (cannot connect,
/// connection lost, timeouts) in the last `window` reaches `failure_rate` over at least
/// `min_statements`; open for `cool_down`, then `probes` statements test the database.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Whether the breaker is on.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Share of failed statements in the window that opens the breaker, in (0, 1].
    #[serde(default = "default_failure_rate")]
    pub failure_rate: f64,
    /// Statements the window must hold before its rate is trusted.
    #[serde(default = "default_min_statements")]
    pub min_statements: u32,
    /// How far back outcomes count.
    #[serde(
        default = "default_window",
        deserialize_with = "super::units::duration"
    )]
    pub window: Duration,
    /// How long an open breaker refuses every statement.
    #[serde(
        default = "default_cool_down",
        deserialize_with = "super::units::duration"
    )]
    pub cool_down: Duration,
    /// Statements let through after the cool-down; all must succeed for the breaker to close.
    #[serde(default = "default_probes")]
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            failure_rate: default_failure_rate(),
            min_statements: default_min_statements(),
            window: default_window(),
            cool_down: default_cool_down(),
            probes: default_probes(),
        }
    }
}

impl BreakerConfig {
    /// Each setting out of range, as `(key, why)`.
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut found = Vec::new();
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            found.push(("failure_rate", "must be above 0 and at most 1, such as 0.5"));
        }
        if self.min_statements == 0 {
            found.push(("min_statements", "must be at least 1"));
        }
        if self.window.is_zero() {
            found.push(("window", "must be above zero, such as `30s`"));
        }
        if self.cool_down.is_zero() {
            found.push(("cool_down", "must be above zero, such as `30s`"));
        }
        if self.probes == 0 {
            found.push(("probes", "must be at least 1"));
        }
        found
    }
}

fn default_enabled() -> bool {
    true
}
fn default_failure_rate() -> f64 {
    0.5
}
fn default_min_statements() -> u32 {
    5
}
fn default_window() -> Duration {
    Duration::from_secs(30)
}
fn default_cool_down() -> Duration {
    Duration::from_secs(30)
}
fn default_probes() -> u32 {
    2
}
