//! LeastAllocated: prefers nodes with more cpu and memory left after placing the pod,
//! which spreads load across the cluster.

use super::{MAX_NODE_SCORE, ScorePlugin};
use crate::pod::PodInfo;
use crate::snapshot::NodeInfo;

pub struct LeastAllocated;

impl ScorePlugin for LeastAllocated {
    fn name(&self) -> &'static str {
        "NodeResourcesLeastAllocated"
    }

    /// Scores the mean of the free share of cpu and memory, each `(allocatable -
    /// requested) * 100 / allocatable` with the pod included. A resource the node does
    /// not report scores 0.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let free_share = |allocatable: i64, requested: i64| {
            if allocatable <= 0 || requested > allocatable {
                return 0;
            }
            (allocatable - requested) * MAX_NODE_SCORE / allocatable
        };
        let used = &node.usage.requested;
        let cpu = free_share(node.allocatable.cpu_millis, used.cpu_millis + pod.requests.cpu_millis);
        let memory = free_share(
            node.allocatable.memory_bytes,
            used.memory_bytes + pod.requests.memory_bytes,
        );
        (cpu + memory) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::test_support::{empty_pod, roomy_node};
    use crate::pod::Resources;

    #[test]
    fn least_allocated_table() {
        // The node has 4000m and 8Gi allocatable.
        let gib = 1i64 << 30;
        let cases = [
            ("empty node, empty pod", Resources::default(), Resources::default(), 100),
            ("half cpu used", Resources { cpu_millis: 2000, ..Default::default() }, Resources::default(), 75),
            ("pod takes half of both", Resources::default(), Resources { cpu_millis: 2000, memory_bytes: 4 * gib, pods: 1 }, 50),
            ("full node", Resources { cpu_millis: 4000, memory_bytes: 8 * gib, pods: 0 }, Resources::default(), 0),
        ];
        for (case, used, wanted, expected) in cases {
            let mut node = roomy_node();
            node.usage.requested = used;
            let mut pod = empty_pod();
            pod.requests = wanted;
            assert_eq!(LeastAllocated.score(&pod, &node), expected, "{case}");
        }
    }
}
