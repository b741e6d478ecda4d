//! Markdown tables of the figures, ready for `bench/RESULTS.md`.

use capstan_bench_stats::format_micros;

use crate::load::{Mode, Outcome};

/// Scenario whose figures the others are compared with: the same three pods, no proxy.
pub const BASELINE: &str = "direct, 3 pods";

/// Figures of one HTTP scenario.
pub struct Row {
    /// The cluster run (proxy mode) the row was measured in.
    pub run: &'static str,
    pub scenario: &'static str,
    pub mode: Mode,
    pub connections: usize,
    pub outcome: Outcome,
}

/// Renders one line per row, with throughput as a share of the baseline of the same run,
/// mode and connection count, and the p99 latency added over it.
pub fn http_table(rows: &[Row]) -> String {
    let mut text = String::from(
        "| run | mode | connections | target | requests/s | of direct (3 pods) | p50 | p99 | p99 added | errors |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for row in rows {
        let baseline = rows.iter().find(|other| {
            other.run == row.run && other.mode == row.mode && other.connections == row.connections && other.scenario == BASELINE
        });
        let summary = &row.outcome.summary;
        let (share, added) = match baseline {
            Some(baseline) => {
                let base = &baseline.outcome.summary;
                let share = if base.per_second > 0.0 { summary.per_second / base.per_second * 100.0 } else { 0.0 };
                let added = summary.p99.as_secs_f64() - base.p99.as_secs_f64();
                (format!("{share:.0}%"), format!("{:+.0} µs", added * 1e6))
            }
            None => ("-".to_string(), "-".to_string()),
        };
        text.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {share} | {} | {} | {added} | {} |\n",
            row.run,
            row.mode.label(),
            row.connections,
            row.scenario,
            summary.per_second,
            format_micros(summary.p50),
            format_micros(summary.p99),
            row.outcome.errors
        ));
    }
    text
}

/// Renders the DNS figures as a one-row table.
pub fn dns_table(outcome: &Outcome, in_flight: usize) -> String {
    let summary = &outcome.summary;
    format!(
        "| queries in flight | queries/s | p50 | p99 | errors |\n| --- | --- | --- | --- | --- |\n| {in_flight} | {:.0} | {} | {} | {} |\n",
        summary.per_second,
        format_micros(summary.p50),
        format_micros(summary.p99),
        outcome.errors
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use capstan_bench_stats::Summary;

    use super::*;

    fn row(scenario: &'static str, mode: Mode, micros: &[u64], seconds: u64) -> Row {
        let samples = micros.iter().map(|&value| Duration::from_micros(value)).collect();
        Row { run: "nftables", scenario, mode, connections: 1, outcome: Outcome { summary: Summary::new(samples, Duration::from_secs(seconds)), errors: 0 } }
    }

    #[test]
    fn share_and_added_p99_against_baseline() {
        let rows = [
            row(BASELINE, Mode::KeepAlive, &[100, 200, 300, 400], 1),
            row("ClusterIP, nftables", Mode::KeepAlive, &[150, 250, 450], 1),
        ];
        let table = http_table(&rows);
        let line = table.lines().find(|line| line.contains("ClusterIP, nftables")).expect("nftables row");
        assert!(line.contains("| 3 | 75% |"), "{line}");
        assert!(line.contains("| +50 µs |"), "{line}");
    }

    #[test]
    fn baseline_only_from_same_run() {
        let mut userspace = row("ClusterIP, userspace", Mode::KeepAlive, &[300], 1);
        userspace.run = "userspace";
        let rows = [row(BASELINE, Mode::KeepAlive, &[100], 1), userspace];
        let table = http_table(&rows);
        let line = table.lines().find(|line| line.contains("ClusterIP, userspace")).expect("userspace row");
        assert!(line.ends_with("| - | 300 µs | 300 µs | - | 0 |"), "{line}");
    }

    #[test]
    fn no_baseline_in_other_mode() {
        let rows = [row("ClusterIP, userspace", Mode::NewConnection, &[500], 1)];
        let table = http_table(&rows);
        assert!(table.contains("| - | 500 µs | 500 µs | - |"), "{table}");
    }
}
