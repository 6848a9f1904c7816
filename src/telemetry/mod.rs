//! Logging (structured tracing output, filtered by `PORTICO_LOG`, default `info`) and metrics.

pub mod change_metrics;
pub mod metrics;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `json` selects one JSON object per line.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_env("PORTICO_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,odbc_api=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A subscriber may already be installed (tests); keeping it is fine.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
