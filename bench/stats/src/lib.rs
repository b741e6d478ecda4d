//! Latency summaries shared by the benchmarks: throughput and nearest-rank percentiles of
//! a set of samples.

use std::fmt;
use std::time::Duration;

/// Figures of one measured scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub count: usize,
    /// Completed operations per second of wall-clock time.
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    /// Summarizes `samples`, taken over `elapsed` of wall-clock time.
    pub fn new(mut samples: Vec<Duration>, elapsed: Duration) -> Summary {
        samples.sort_unstable();
        let seconds = elapsed.as_secs_f64();
        let per_second = if seconds > 0.0 { samples.len() as f64 / seconds } else { 0.0 };
        Summary {
            count: samples.len(),
            per_second,
            p50: percentile(&samples, 50.0),
            p99: percentile(&samples, 99.0),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ops, {:.0}/s, p50 {}, p99 {}, max {}",
            self.count,
            self.per_second,
            format_millis(self.p50),
            format_millis(self.p99),
            format_millis(self.max)
        )
    }
}

/// Returns the nearest-rank percentile (`rank` in 0..=100) of ascending `sorted` samples,
/// or zero when there are none.
pub fn percentile(sorted: &[Duration], rank: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let position = (rank / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[position.clamp(1, sorted.len()) - 1]
}

/// Formats a duration in milliseconds with two decimals, such as `12.34 ms`.
pub fn format_millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

/// Formats a duration in whole microseconds, such as `87 µs`, for sub-millisecond latencies.
pub fn format_micros(duration: Duration) -> String {
    format!("{} µs", duration.as_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&value| Duration::from_millis(value)).collect()
    }

    #[test]
    fn percentile_nearest_rank() {
        let sorted = millis(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&sorted, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&sorted, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&sorted, 0.0), Duration::from_millis(1));
    }

    #[test]
    fn percentile_of_few_samples() {
        let sorted = millis(&[3, 7]);
        assert_eq!(percentile(&sorted, 50.0), Duration::from_millis(3));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_millis(7));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }

    #[test]
    fn summary_sorts_and_rates() {
        let summary = Summary::new(millis(&[40, 10, 30, 20]), Duration::from_secs(2));
        assert_eq!(summary.count, 4);
        assert!((summary.per_second - 2.0).abs() < 1e-9);
        assert_eq!(summary.p50, Duration::from_millis(20));
        assert_eq!(summary.p99, Duration::from_millis(40));
        assert_eq!(summary.max, Duration::from_millis(40));
    }

    #[test]
    fn micros_rounds_down() {
        assert_eq!(format_micros(Duration::from_nanos(87_900)), "87 µs");
        assert_eq!(format_micros(Duration::from_millis(2)), "2000 µs");
    }

    #[test]
    fn summary_display_in_millis() {
        let summary = Summary::new(millis(&[5]), Duration::from_secs(1));
        assert_eq!(summary.to_string(), "1 ops, 1/s, p50 5.00 ms, p99 5.00 ms, max 5.00 ms");
    }
}
