//! Filter plugins: each decides whether one pod can run on one node.

mod host_ports;
mod node_affinity;
mod node_ready;
mod node_unschedulable;
mod resources_fit;
mod taint_toleration;

use std::borrow::Cow;

use crate::pod::PodInfo;
use crate::snapshot::NodeInfo;

pub use host_ports::HostPorts;
pub use node_affinity::NodeAffinity;
pub use node_ready::NodeReady;
pub use node_unschedulable::NodeUnschedulable;
pub use resources_fit::NodeResourcesFit;
pub use taint_toleration::{TaintToleration, tolerates};

/// Why a node cannot take a pod, phrased as kube-scheduler phrases it so that
/// `kubectl describe pod` reads the same. Fixed reasons are the constants below; reasons
/// that quote node data (a taint) are built by the filter.
pub type Reason = Cow<'static, str>;

pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const REASON_NOT_READY: &str = "node(s) were not ready";
pub const REASON_INSUFFICIENT_CPU: &str = "Insufficient cpu";
pub const REASON_INSUFFICIENT_MEMORY: &str = "Insufficient memory";
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";
pub const REASON_AFFINITY_MISMATCH: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_PORTS_IN_USE: &str = "node(s) didn't have free ports for the requested pod ports";
/// Prefix of the taint reason, which continues with ` {key: value}`.
pub const REASON_UNTOLERATED_TAINT: &str = "node(s) had untolerated taint";

/// A filter plugin.
///
/// Contract: the scheduling loop calls `filter` once per candidate node during one
/// attempt, with the snapshot locked, so it must be cheap (no I/O, no allocation beyond
/// its reasons) and pure: the same pod and node give the same answer. `Ok(())` lets the
/// node go on to the next filter. `Err(reasons)` rejects the node; the first rejecting
/// filter ends the node's evaluation, and each reason is counted once for the node in the
/// pod's FailedScheduling message. Every reason means the pod does not fit now; the pod is
/// retried when a node or pod changes.
pub trait Filter: Send + Sync {
    /// The plugin name, as kube-scheduler names the same plugin.
    fn name(&self) -> &'static str;

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>>;
}

/// The filters in the order they run: cheap checks on node state first, so a node that
/// is down is reported as such and not as lacking resources.
pub fn default_filters() -> Vec<Box<dyn Filter>> {
    vec![
        Box::new(NodeUnschedulable),
        Box::new(NodeReady),
        Box::new(NodeAffinity),
        Box::new(TaintToleration),
        Box::new(HostPorts),
        Box::new(NodeResourcesFit),
    ]
}

/// Runs `filters` in order and returns the first rejection.
pub fn run_filters(
    filters: &[Box<dyn Filter>],
    pod: &PodInfo,
    node: &NodeInfo,
) -> Result<(), Vec<Reason>> {
    for filter in filters {
        filter.filter(pod, node)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::pod::PodInfo;
    use crate::snapshot::NodeInfo;

    /// A pod that requests nothing, named `p`.
    pub fn empty_pod() -> PodInfo {
        PodInfo { name: "p".into(), namespace: "default".into(), uid: "u".into(), ..PodInfo::default() }
    }

    /// A ready, schedulable node named `n1` with room for 10 pods, 4 cpus and 8Gi.
    pub fn roomy_node() -> NodeInfo {
        NodeInfo {
            name: "n1".into(),
            ready: true,
            allocatable: crate::pod::Resources { cpu_millis: 4000, memory_bytes: 8 << 30, pods: 10 },
            ..NodeInfo::default()
        }
    }
}
