//! NodeResourcesFit: checks the pod's cpu, memory and pod-slot requests against what is
//! left of the node's allocatable.

use super::{
    Filter, REASON_INSUFFICIENT_CPU, REASON_INSUFFICIENT_MEMORY, REASON_TOO_MANY_PODS, Reason,
};
use crate::pod::PodInfo;
use crate::snapshot::NodeInfo;

pub struct NodeResourcesFit;

impl Filter for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    /// Reports every resource that is short, as kube-scheduler does, so one node can count
    /// towards both "Insufficient cpu" and "Insufficient memory".
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
        let free = |allocatable: i64, requested: i64| allocatable - requested;
        let used = &node.usage.requested;
        let wanted = &pod.requests;
        let mut reasons = Vec::new();
        if wanted.pods > free(node.allocatable.pods, used.pods) {
            reasons.push(REASON_TOO_MANY_PODS.into());
        }
        if wanted.cpu_millis > 0 && wanted.cpu_millis > free(node.allocatable.cpu_millis, used.cpu_millis) {
            reasons.push(REASON_INSUFFICIENT_CPU.into());
        }
        if wanted.memory_bytes > 0
            && wanted.memory_bytes > free(node.allocatable.memory_bytes, used.memory_bytes)
        {
            reasons.push(REASON_INSUFFICIENT_MEMORY.into());
        }
        if reasons.is_empty() { Ok(()) } else { Err(reasons) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::test_support::{empty_pod, roomy_node};
    use crate::pod::Resources;

    fn resources(cpu_millis: i64, memory_bytes: i64, pods: i64) -> Resources {
        Resources { cpu_millis, memory_bytes, pods }
    }

    #[test]
    fn resources_fit_table() {
        // The node has 4000m, 8Gi and 10 pods allocatable.
        let gib = 1i64 << 30;
        let cases: [(&str, Resources, Resources, &[&str]); 6] = [
            ("empty node", resources(1000, gib, 1), resources(0, 0, 0), &[]),
            ("exact fit", resources(1000, gib, 1), resources(3000, 7 * gib, 9), &[]),
            ("cpu short", resources(1001, 0, 1), resources(3000, 0, 1), &[REASON_INSUFFICIENT_CPU]),
            ("memory short", resources(0, 2 * gib, 1), resources(0, 7 * gib, 1), &[REASON_INSUFFICIENT_MEMORY]),
            ("pods full", resources(0, 0, 1), resources(0, 0, 10), &[REASON_TOO_MANY_PODS]),
            (
                "everything short",
                resources(5000, 9 * gib, 1),
                resources(0, 0, 10),
                &[REASON_TOO_MANY_PODS, REASON_INSUFFICIENT_CPU, REASON_INSUFFICIENT_MEMORY],
            ),
        ];
        for (case, wanted, used, expected) in cases {
            let mut pod = empty_pod();
            pod.requests = wanted;
            let mut node = roomy_node();
            node.usage.requested = used;
            let reasons = NodeResourcesFit.filter(&pod, &node).err().unwrap_or_default();
            let expected: Vec<Reason> = expected.iter().map(|r| Reason::from(*r)).collect();
            assert_eq!(reasons, expected, "{case}");
        }
    }

    #[test]
    fn zero_request_fits_overcommitted_node() {
        let mut node = roomy_node();
        node.usage.requested = resources(5000, 0, 1);
        let mut pod = empty_pod();
        pod.requests = resources(0, 0, 1);
        assert!(NodeResourcesFit.filter(&pod, &node).is_ok());
    }
}
