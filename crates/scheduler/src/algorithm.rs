//! One scheduling decision: filter a sample of nodes, score the feasible ones, pick one.
//!
//! The decision is a pure function of the pod and the snapshot, so a test can replay it:
//! the node order and the tie-break are seeded from the pod uid.

use std::collections::BTreeMap;

use crate::filter::{Filter, Reason, default_filters, run_filters};
use crate::pod::PodInfo;
use crate::score::{ScorePlugin, default_scores, feasible_nodes_to_find, total_scores};
use crate::snapshot::{NodeInfo, Snapshot};

/// The filter and score plugins of one scheduler profile.
pub struct Framework {
    pub filters: Vec<Box<dyn Filter>>,
    pub scores: Vec<Box<dyn ScorePlugin>>,
}

impl Default for Framework {
    fn default() -> Self {
        Framework { filters: default_filters(), scores: default_scores() }
    }
}

/// Why a pod fits no node: how many nodes were checked, and how many nodes each reason
/// rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnosis {
    pub total_nodes: usize,
    pub reasons: BTreeMap<Reason, usize>,
    /// A reason that rules out every node at once, such as a missing RuntimeClass.
    pub pod_reason: Option<String>,
}

impl Diagnosis {
    /// Formats the diagnosis as kube-scheduler words its FailedScheduling events:
    /// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) were unschedulable.
    /// preemption: not eligible.`, with the `<count> <reason>` items sorted as strings.
    /// capstan has no preemption, so every message ends with "not eligible".
    pub fn message(&self) -> String {
        let mut items: Vec<String> =
            self.reasons.iter().map(|(reason, count)| format!("{count} {reason}")).collect();
        items.sort();
        if let Some(reason) = &self.pod_reason {
            items.insert(0, reason.clone());
        }
        if self.total_nodes == 0 && items.is_empty() {
            items.push("no nodes available to schedule pods".to_string());
        }
        format!(
            "0/{} nodes are available: {}. preemption: not eligible.",
            self.total_nodes,
            items.join(", ")
        )
    }
}

/// Picks the node for `pod`, or explains why none fits.
pub fn select_node(framework: &Framework, snapshot: &Snapshot, pod: &PodInfo) -> Result<String, Diagnosis> {
    let total = snapshot.node_count();
    let mut diagnosis = Diagnosis { total_nodes: total, ..Diagnosis::default() };
    if total == 0 {
        return Err(diagnosis);
    }

    // Filter nodes from a seeded start until the sample is full.
    let mut random = SplitMix64::new(seed_from_uid(&pod.uid));
    let start = (random.next() % total as u64) as usize;
    let sample_size = feasible_nodes_to_find(total);
    let ordered = snapshot.nodes().skip(start).chain(snapshot.nodes().take(start));
    let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(sample_size);
    for node in ordered {
        match run_filters(&framework.filters, pod, node) {
            Ok(()) => feasible.push(node),
            Err(reasons) => {
                for reason in reasons {
                    *diagnosis.reasons.entry(reason).or_default() += 1;
                }
            }
        }
        if feasible.len() >= sample_size {
            break;
        }
    }
    if feasible.is_empty() {
        return Err(diagnosis);
    }

    // Score the sample and break ties with the seeded generator.
    let totals = total_scores(&framework.scores, pod, &feasible);
    let best = totals.iter().copied().max().unwrap_or(0);
    let ties: Vec<usize> = (0..feasible.len()).filter(|index| totals[*index] == best).collect();
    let chosen = ties[(random.next() % ties.len() as u64) as usize];
    Ok(feasible[chosen].name.clone())
}

/// Hashes a pod uid (FNV-1a) into the seed of its node order, stable across builds.
pub fn seed_from_uid(uid: &str) -> u64 {
    uid.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A small deterministic generator (SplitMix64), enough for choosing start nodes and ties.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }
}

#[cfg(test)]
mod tests;
