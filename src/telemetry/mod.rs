//! Logging (structured tracing output, filtered by `PORTICO_LOG`, default `info`), metrics and
//! traces (OpenTelemetry, `traces`).

pub mod change_metrics;
pub mod latency;
pub mod metrics;
pub mod reload_metrics;
pub mod state_metrics;
pub mod traces;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use traces::{Export, TraceError, Traces};

fn log_filter() -> EnvFilter {
    EnvFilter::try_from_env("PORTICO_LOG").unwrap_or_else(|_| EnvFilter::new("info,odbc_api=error"))
}

/// Installs the global subscriber: the log ([`init`]) and, with `export`, the layer exporting
/// Portico's spans (not its log events, which may hold values). The returned [`Traces`]
/// flushes on shutdown.
pub fn init_with_traces(json: bool, export: Option<&Export>) -> Result<Option<Traces>, TraceError> {
    let Some(export) = export else {
        init(json);
        return Ok(None);
    };
    let traces = traces::exporter(export)?;
    // Each layer filters on its own: the log level must not hide spans from the exporter.
    let only_portico_spans = tracing_subscriber::filter::filter_fn(|meta| {
        meta.is_span() && meta.target().starts_with("portico")
    });
    let exported = traces.layer().with_filter(only_portico_spans);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(|| OneLine(std::io::stderr()))
        .with_ansi(false);
    let registry = tracing_subscriber::registry().with(exported);
    let installed = if json {
        registry
            .with(fmt.json().with_filter(log_filter()))
            .try_init()
    } else {
        registry.with(fmt.with_filter(log_filter())).try_init()
    };
    // Another subscriber already installed (tests) keeps its own: no span would be exported.
    if installed.is_ok() {
        traces::switch_on();
    }
    Ok(Some(traces))
}

/// Installs the global subscriber; `json` selects one JSON object per line. Text lines go
/// through `OneLine`, so no logged value (a URL, a header, a body member a client chose)
/// can start a forged line.
pub fn init(json: bool) {
    let filter = log_filter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| OneLine(std::io::stderr()))
        // Colour codes are control characters too; `OneLine` would escape them.
        .with_ansi(false);
    // A subscriber may already be installed (tests); keeping it is fine.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// A writer that keeps each log event on one line: CR, LF and the other control characters
/// inside an event are written as escapes (`\n`, `\r`, `\u{1b}`); only the event's final
/// newline is kept. The formatter hands over one whole event per write.
pub struct OneLine<W>(pub W);

impl<W: std::io::Write> std::io::Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        let mut out = Vec::with_capacity(buf.len() + 8);
        for chunk in body.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\n' => out.extend_from_slice(b"\\n"),
                    '\r' => out.extend_from_slice(b"\\r"),
                    '\t' => out.push(b'\t'),
                    // Line and paragraph separators end a line for some log viewers too.
                    c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                        out.extend_from_slice(format!("\\u{{{:x}}}", c as u32).as_bytes())
                    }
                    c => {
                        let mut utf8 = [0; 4];
                        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                    }
                }
            }
            for b in chunk.invalid() {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
        }
        out.extend_from_slice(end);
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn an_event_stays_on_one_line_whatever_its_values_hold() {
        let mut out = OneLine(Vec::new());
        out.write_all(
            "INFO url=http://x/a\r\n2026-01-01 INFO forged \x1b[31mred\u{2028}x\n".as_bytes(),
        )
        .unwrap();
        let text = String::from_utf8(out.0).unwrap();
        assert_eq!(
            text,
            "INFO url=http://x/a\\r\\n2026-01-01 INFO forged \\u{1b}[31mred\\u{2028}x\n"
        );
        assert_eq!(text.lines().count(), 1);
    }
}
