//! When deliveries are attempted: the retry schedule, its jitter, and `Retry-After`.

use std::time::Duration;

use crate::value::date::Date;

/// Why `[webhooks]` gives no usable schedule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// `retry_schedule` is empty.
    #[error("needs at least one entry (the wait before the first attempt)")]
    NoWait,
    /// `jitter` is not a fraction.
    #[error("jitter is a fraction from 0 to 1, not {0}")]
    Jitter(f64),
}

impl ScheduleError {
    /// The `[webhooks]` key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            ScheduleError::NoWait => "retry_schedule",
            ScheduleError::Jitter(_) => "jitter",
        }
    }
}

/// Waits before each attempt; after the last, a delivery is a dead letter.
#[derive(Debug, Clone)]
pub struct Schedule {
    waits: Vec<Duration>,
    jitter: f64,
}

impl Schedule {
    /// Checks `retry_schedule`'s waits and a jitter fraction (0 to 1).
    pub fn new(waits: &[Duration], jitter: f64) -> Result<Self, ScheduleError> {
        if waits.is_empty() {
            return Err(ScheduleError::NoWait);
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(ScheduleError::Jitter(jitter));
        }
        Ok(Self {
            waits: waits.to_vec(),
            jitter,
        })
    }

    /// Attempts a delivery gets.
    pub fn attempts(&self) -> usize {
        self.waits.len()
    }

    /// The wait before the first attempt.
    pub fn first(&self) -> Duration {
        self.waits[0]
    }

    /// The wait after `made` failed attempts, at least what the receiver asked for with
    /// `Retry-After` (bounded by the schedule's longest wait); `None`: the schedule is exhausted.
    pub fn after_failure(&self, made: usize, retry_after: Option<Duration>) -> Option<Duration> {
        let wait = *self.waits.get(made)?;
        let random = (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0;
        let jittered = wait.mul_f64(1.0 + self.jitter * random);
        let longest = self.waits.iter().max().copied().unwrap_or(wait);
        Some(jittered.max(retry_after.unwrap_or_default().min(longest)))
    }
}

/// A `Retry-After` value: delta-seconds or an HTTP date, as a wait from `now_ms`.
pub fn retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
    let parts: Vec<&str> = value.split([' ', ':']).collect();
    let [_, day, month, year, h, m, s, "GMT"] = parts[..] else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|&n| n == month)? as u32 + 1;
    let date = Date::new(year.parse().ok()?, month, day.parse().ok()?)?;
    let seconds = date.days_since_epoch() * 86_400
        + h.parse::<i64>().ok()? * 3600
        + m.parse::<i64>().ok()? * 60
        + s.parse::<i64>().ok()?;
    Some(Duration::from_millis(
        (seconds * 1000 - now_ms).max(0) as u64
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_follow_the_schedule_with_bounded_jitter_then_end() {
        let entries = [0, 5, 300].map(Duration::from_secs);
        let schedule = Schedule::new(&entries, 0.5).unwrap();
        assert_eq!((schedule.attempts(), schedule.first()), (3, Duration::ZERO));
        for _ in 0..20 {
            let wait = schedule.after_failure(1, None).unwrap();
            assert!(
                wait >= Duration::from_secs(5) && wait <= Duration::from_millis(7_500),
                "{wait:?}"
            );
        }
        assert_eq!(
            schedule.after_failure(3, None),
            None,
            "three attempts made: dead"
        );
        // Retry-After lengthens a wait, up to the longest scheduled one.
        let exact = Schedule::new(&entries, 0.0).unwrap();
        assert_eq!(
            exact.after_failure(1, Some(Duration::from_secs(60))),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            exact.after_failure(1, Some(Duration::from_secs(86_400))),
            Some(Duration::from_secs(300))
        );
        assert_eq!(Schedule::new(&[], 0.1).unwrap_err().key(), "retry_schedule");
        assert_eq!(Schedule::new(&entries, 2.0).unwrap_err().key(), "jitter");
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(retry_after("120", 0), Some(Duration::from_secs(120)));
        let now = 784_111_777_000 - 10_000; // 10 s before the date below
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(retry_after("soon", 0), None);
    }
}
