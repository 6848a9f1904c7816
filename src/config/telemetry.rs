//! `[telemetry]`: where traces go (OpenTelemetry over OTLP/HTTP); absent, tracing is off.

use std::time::Duration;

use serde::Deserialize;

/// Trace export settings. Without `otlp_endpoint` no span is exported and nothing is installed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP collector (`http://127.0.0.1:4318`); spans are posted as
    /// protobuf to `{otlp_endpoint}/v1/traces`. Unset: tracing is off.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Share of new traces recorded, 0.0 to 1.0; a caller's sampled `traceparent` is followed
    /// whatever the ratio (parent-based).
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// How long one export to the collector may take.
    #[serde(
        default = "default_export_timeout",
        deserialize_with = "super::units::duration"
    )]
    pub export_timeout: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: default_service_name(),
            sample_ratio: default_sample_ratio(),
            export_timeout: default_export_timeout(),
        }
    }
}

fn default_service_name() -> String {
    "portico".into()
}

fn default_sample_ratio() -> f64 {
    1.0
}

fn default_export_timeout() -> Duration {
    Duration::from_secs(10)
}

/// What is wrong with an `otlp_endpoint`, if anything: an absolute http(s) URL with a host.
pub fn otlp_endpoint_problem(endpoint: &str) -> Option<&'static str> {
    match reqwest::Url::parse(endpoint) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            Some("must be an http:// or https:// URL, such as `http://127.0.0.1:4318`")
        }
        Ok(url) if url.host_str().is_none_or(str::is_empty) => Some("has no host"),
        Ok(url) if url.query().is_some() || url.fragment().is_some() => {
            Some("must not carry a query or fragment: `/v1/traces` is appended to it")
        }
        Ok(_) => None,
        Err(_) => Some("is not a URL, such as `http://127.0.0.1:4318`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_an_http_url_with_a_host() {
        assert_eq!(otlp_endpoint_problem("http://127.0.0.1:4318"), None);
        assert_eq!(
            otlp_endpoint_problem("https://collector.example/otlp"),
            None
        );
        for bad in [
            "127.0.0.1:4318",
            "grpc://collector:4317",
            "file:///tmp/spans",
            "http://c:4318/?x=1",
            "",
        ] {
            assert!(otlp_endpoint_problem(bad).is_some(), "{bad}");
        }
    }
}
