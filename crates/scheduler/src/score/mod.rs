//! Score plugins: rank the nodes that passed every filter.

mod least_allocated;
mod owner_spread;

use crate::pod::PodInfo;
use crate::snapshot::NodeInfo;

pub use least_allocated::LeastAllocated;
pub use owner_spread::OwnerSpread;

/// The highest score a plugin gives after normalizing.
pub const MAX_NODE_SCORE: i64 = 100;

/// A score plugin.
///
/// Contract: the scheduling loop calls `score` once per feasible node in the sample, with
/// the snapshot locked, so it must be cheap and free of I/O. `score` may return any raw
/// value; `normalize` then sees the raw scores of all sampled nodes and must leave each in
/// `0..=MAX_NODE_SCORE`, higher meaning better. The loop adds the normalized scores times
/// `weight` and binds to the highest total; a score never rejects a node.
pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;

    fn weight(&self) -> i64 {
        1
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64;

    /// Scales raw scores into `0..=MAX_NODE_SCORE`. The default keeps them, which suits
    /// plugins whose raw scores are already in range.
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// The score plugins capstan runs, as in kube-scheduler's default profile (where
/// NodeResourcesFit scores least-allocated and PodTopologySpread spreads replicas).
pub fn default_scores() -> Vec<Box<dyn ScorePlugin>> {
    vec![Box::new(LeastAllocated), Box::new(OwnerSpread)]
}

/// Sums the weighted, normalized scores of `nodes` for `pod`, one total per node.
pub fn total_scores(plugins: &[Box<dyn ScorePlugin>], pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    let mut totals = vec![0; nodes.len()];
    for plugin in plugins {
        let mut scores: Vec<i64> = nodes.iter().map(|node| plugin.score(pod, node)).collect();
        plugin.normalize(&mut scores);
        for (total, score) in totals.iter_mut().zip(scores) {
            *total += score.clamp(0, MAX_NODE_SCORE) * plugin.weight();
        }
    }
    totals
}

/// How many feasible nodes to find before scoring, following kube-scheduler's adaptive
/// rule: every node below 100 nodes; above that, a share that falls from 50% by one
/// point per 125 nodes down to 5%, but never fewer than 100 nodes.
pub fn feasible_nodes_to_find(all_nodes: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if all_nodes < MIN_FEASIBLE {
        return all_nodes;
    }
    let percentage = 50usize.saturating_sub(all_nodes / 125).max(5);
    (all_nodes * percentage / 100).max(MIN_FEASIBLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feasible_sample_table() {
        let cases = [(0, 0), (50, 50), (99, 99), (100, 100), (250, 120), (1000, 420), (5000, 500), (10000, 500)];
        for (nodes, expected) in cases {
            assert_eq!(feasible_nodes_to_find(nodes), expected, "{nodes} nodes");
        }
    }
}
