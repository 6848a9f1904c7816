//! What a latency histogram says in two numbers an operator reads: the mean and the 95th
//! percentile (estimated from the buckets, as Prometheus' `histogram_quantile` does).

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A histogram's observations, summarized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Observations.
    pub count: u64,
    /// Their mean, in seconds; `None` without observations.
    pub mean_seconds: Option<f64>,
    /// The 95th percentile, in seconds, interpolated within its bucket; `None` without
    /// observations.
    pub p95_seconds: Option<f64>,
}

/// Summarizes `histogram`. The crate keeps its buckets private, so they are read back from
/// the text exposition of a registry holding only this histogram (a handle on the same
/// counts).
pub fn summarize(histogram: &Histogram) -> Latency {
    let mut registry = Registry::default();
    registry.register("h", "", histogram.clone());
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    let (mut sum, mut count, mut buckets) = (0.0, 0u64, Vec::new());
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if name == "h_sum" {
            sum = value.parse().unwrap_or(0.0);
        } else if name == "h_count" {
            count = value.parse().unwrap_or(0);
        } else if let Some(bound) = name
            .strip_prefix("h_bucket{le=\"")
            .and_then(|rest| rest.strip_suffix("\"}"))
        {
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().unwrap_or(f64::INFINITY)
            };
            buckets.push((bound, value.parse::<u64>().unwrap_or(0)));
        }
    }
    from_buckets(sum, count, &buckets)
}

/// The summary of `count` observations adding up to `sum` in cumulative `buckets` (upper
/// bound, observations at or below it), in ascending order.
fn from_buckets(sum: f64, count: u64, buckets: &[(f64, u64)]) -> Latency {
    if count == 0 {
        return Latency {
            count,
            mean_seconds: None,
            p95_seconds: None,
        };
    }
    let rank = 0.95 * count as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    let mut p95 = None;
    for &(upper, cumulative) in buckets {
        if cumulative as f64 >= rank {
            // Beyond the last finite bound nothing is known but that bound.
            let estimate = if upper.is_infinite() {
                lower
            } else {
                let within = (cumulative - below).max(1) as f64;
                lower + (upper - lower) * (rank - below as f64) / within
            };
            p95 = Some(estimate);
            break;
        }
        (lower, below) = (upper, cumulative);
    }
    Latency {
        count,
        mean_seconds: Some(sum / count as f64),
        p95_seconds: p95,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_histogram_has_no_mean_and_no_percentile() {
        let histogram = Histogram::new([0.1, 1.0]);
        let latency = summarize(&histogram);
        assert_eq!(latency.count, 0);
        assert_eq!(latency.mean_seconds, None);
        assert_eq!(latency.p95_seconds, None);
    }

    #[test]
    fn the_mean_is_exact_and_the_95th_percentile_falls_in_its_bucket() {
        let histogram = Histogram::new([0.01, 0.1, 1.0]);
        for _ in 0..90 {
            histogram.observe(0.005);
        }
        for _ in 0..10 {
            histogram.observe(0.5);
        }
        let latency = summarize(&histogram);
        assert_eq!(latency.count, 100);
        let mean = latency.mean_seconds.unwrap();
        assert!((mean - 0.0545).abs() < 1e-9, "{mean}");
        // The 95th of 100 is the 5th of the 10 in (0.1, 1]: half way through it.
        let p95 = latency.p95_seconds.unwrap();
        assert!((p95 - 0.55).abs() < 1e-9, "{p95}");
    }

    #[test]
    fn beyond_the_last_bound_the_percentile_is_that_bound() {
        let histogram = Histogram::new([0.01, 0.1]);
        for _ in 0..10 {
            histogram.observe(5.0);
        }
        assert_eq!(summarize(&histogram).p95_seconds, Some(0.1));
    }
}
