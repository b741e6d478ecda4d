//! The scheduler's view of the cluster: every node with what is left of its allocatable.
//!
//! The watch loop keeps it current one event at a time, so a scheduling attempt reads
//! memory only and never lists the cluster. A pod the scheduler just bound is *assumed*
//! on its node at once, before the watch reports the binding, so the next pod already
//! sees those resources as used.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use crate::pod::{HostPort, PodInfo, Resources, is_terminal, pod_requests};

/// One node as the filters and scores read it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    /// Whether the node's `Ready` condition is `True`.
    pub ready: bool,
    pub allocatable: Resources,
    pub usage: NodeUsage,
}

/// What the pods placed on a node hold, kept apart from the Node object so that it
/// survives the node being deleted and recreated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeUsage {
    pub requested: Resources,
    pub host_ports: Vec<HostPort>,
    /// Pods on this node per owner uid.
    pub owner_counts: HashMap<String, u32>,
}

/// One pod counted against a node.
#[derive(Debug, Clone)]
struct Placement {
    node: String,
    requests: Resources,
    host_ports: Vec<HostPort>,
    owner_uid: Option<String>,
    /// Set by [`Snapshot::assume`] until the watch reports the pod on its node.
    assumed: bool,
}

impl NodeUsage {
    fn add(&mut self, placement: &Placement) {
        self.requested.add(&placement.requests);
        self.host_ports.extend(placement.host_ports.iter().cloned());
        if let Some(owner) = &placement.owner_uid {
            *self.owner_counts.entry(owner.clone()).or_default() += 1;
        }
    }

    fn remove(&mut self, placement: &Placement) {
        self.requested.subtract(&placement.requests);
        for port in &placement.host_ports {
            if let Some(index) = self.host_ports.iter().position(|used| used == port) {
                self.host_ports.swap_remove(index);
            }
        }
        if let Some(owner) = &placement.owner_uid
            && let Some(count) = self.owner_counts.get_mut(owner)
        {
            *count -= 1;
            if *count == 0 {
                self.owner_counts.remove(owner);
            }
        }
    }
}

/// Nodes by name, and every non-terminal pod that is bound or assumed, by uid.
#[derive(Debug, Default)]
pub struct Snapshot {
    nodes: BTreeMap<String, NodeInfo>,
    /// Usage of pods whose node is not (or no longer) in `nodes`.
    detached_usage: HashMap<String, NodeUsage>,
    placements: HashMap<String, Placement>,
}

impl Snapshot {
    /// Nodes in name order.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = &NodeInfo> {
        self.nodes.values()
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Adds or replaces a node, keeping the usage already counted on it. Returns whether
    /// anything a filter reads changed, so that a status heartbeat does not retry every
    /// parked pod.
    pub fn upsert_node(&mut self, node: &Node) -> bool {
        let Some(name) = node.metadata.name.clone() else { return false };
        let mut info = node_info(node);
        let changed = match self.nodes.remove(&name) {
            Some(previous) => {
                let changed = previous.labels != info.labels
                    || previous.unschedulable != info.unschedulable
                    || previous.taints != info.taints
                    || previous.ready != info.ready
                    || previous.allocatable != info.allocatable;
                info.usage = previous.usage;
                changed
            }
            None => {
                info.usage = self.detached_usage.remove(&name).unwrap_or_default();
                true
            }
        };
        self.nodes.insert(name, info);
        changed
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.nodes.remove(name) {
            self.detached_usage.insert(name.to_string(), info.usage);
        }
    }

    /// Replaces every node after a relist.
    pub fn replace_nodes(&mut self, nodes: &[Node]) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for name in names {
            self.remove_node(&name);
        }
        for node in nodes {
            self.upsert_node(node);
        }
    }

    /// Records a pod from the watch: a bound, running pod is counted on its node, and a
    /// pending, terminal or deleted one is not.
    pub fn upsert_pod(&mut self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone() else { return };
        let node = pod.spec.as_ref().and_then(|spec| spec.node_name.clone()).unwrap_or_default();
        if node.is_empty() || is_terminal(pod) {
            self.remove_pod(&uid);
            return;
        }
        let info = PodInfo::from_pod(pod, None).ok();
        let placement = Placement {
            node,
            // A bound pod with an unparsable quantity still occupies a pod slot.
            requests: pod_requests(pod).unwrap_or(Resources { pods: 1, ..Resources::default() }),
            host_ports: info.as_ref().map(|info| info.host_ports.clone()).unwrap_or_default(),
            owner_uid: info.and_then(|info| info.owner_uid),
            assumed: false,
        };
        self.place(uid, placement);
    }

    pub fn remove_pod(&mut self, uid: &str) {
        if let Some(old) = self.placements.remove(uid) {
            self.usage_mut(&old.node).remove(&old);
        }
    }

    /// Replaces every pod after a relist. Assumed pods that the list does not show yet
    /// stay, because their binding may still be on its way.
    pub fn replace_pods(&mut self, pods: &[Pod]) {
        let listed: std::collections::HashSet<&str> =
            pods.iter().filter_map(|pod| pod.metadata.uid.as_deref()).collect();
        let stale: Vec<String> = self
            .placements
            .iter()
            .filter(|(uid, placement)| !placement.assumed && !listed.contains(uid.as_str()))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in stale {
            self.remove_pod(&uid);
        }
        for pod in pods {
            self.upsert_pod(pod);
        }
    }

    /// Counts `pod` on `node` before its binding is written.
    pub fn assume(&mut self, pod: &PodInfo, node: &str) {
        let placement = Placement {
            node: node.to_string(),
            requests: pod.requests,
            host_ports: pod.host_ports.clone(),
            owner_uid: pod.owner_uid.clone(),
            assumed: true,
        };
        self.place(pod.uid.clone(), placement);
    }

    /// Takes back an assumption after its binding failed. A placement the watch has
    /// already confirmed stays.
    pub fn forget(&mut self, uid: &str) {
        if self.placements.get(uid).is_some_and(|placement| placement.assumed) {
            self.remove_pod(uid);
        }
    }

    /// The node a pod is counted on, if any.
    pub fn node_of(&self, uid: &str) -> Option<&str> {
        self.placements.get(uid).map(|placement| placement.node.as_str())
    }

    fn place(&mut self, uid: String, placement: Placement) {
        self.remove_pod(&uid);
        self.usage_mut(&placement.node).add(&placement);
        self.placements.insert(uid, placement);
    }

    fn usage_mut(&mut self, node: &str) -> &mut NodeUsage {
        match self.nodes.get_mut(node) {
            Some(info) => &mut info.usage,
            None => self.detached_usage.entry(node.to_string()).or_default(),
        }
    }
}

/// Extracts a node's labels, taints, readiness and allocatable (falling back to capacity).
fn node_info(node: &Node) -> NodeInfo {
    let spec = node.spec.clone().unwrap_or_default();
    let status = node.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|condition| condition.type_ == "Ready" && condition.status == "True");
    let amounts = status.allocatable.or(status.capacity).unwrap_or_default();
    let parse = |key: &str, millis: bool| {
        let text = amounts.get(key).map(|quantity| quantity.0.as_str()).unwrap_or("0");
        let parsed = if millis {
            capstan_api::quantity::parse_millis(text)
        } else {
            capstan_api::quantity::parse_units(text)
        };
        // NOTE: an unparsable allocatable counts as zero, so the node takes only pods that
        // request none of that resource.
        parsed.unwrap_or(0)
    };
    NodeInfo {
        name: node.metadata.name.clone().unwrap_or_default(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        unschedulable: spec.unschedulable.unwrap_or(false),
        taints: spec.taints.unwrap_or_default(),
        ready,
        allocatable: Resources {
            cpu_millis: parse("cpu", true),
            memory_bytes: parse("memory", false),
            pods: parse("pods", false),
        },
        usage: NodeUsage::default(),
    }
}

#[cfg(any(test, feature = "test-util"))]
pub mod fixtures {
    //! Builders for nodes and pods in scheduler tests.

    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus, Pod, PodSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    /// A Ready node with the given allocatable cpu, memory and pod count.
    pub fn node(name: &str, cpu: &str, memory: &str, pods: &str) -> Node {
        let allocatable = BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.to_string())),
            ("memory".to_string(), Quantity(memory.to_string())),
            ("pods".to_string(), Quantity(pods.to_string())),
        ]);
        Node {
            metadata: ObjectMeta { name: Some(name.to_string()), ..ObjectMeta::default() },
            spec: Some(Default::default()),
            status: Some(NodeStatus {
                allocatable: Some(allocatable.clone()),
                capacity: Some(allocatable),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".to_string(),
                    status: "True".to_string(),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
        }
    }

    /// A pod with one container requesting `cpu` and `memory` (empty for none).
    pub fn pod(name: &str, uid: &str, cpu: &str, memory: &str) -> Pod {
        let mut requests = BTreeMap::new();
        if !cpu.is_empty() {
            requests.insert("cpu".to_string(), Quantity(cpu.to_string()));
        }
        if !memory.is_empty() {
            requests.insert("memory".to_string(), Quantity(memory.to_string()));
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some("default".to_string()),
                uid: Some(uid.to_string()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![k8s_openapi::api::core::v1::Container {
                    name: "app".to_string(),
                    image: Some("host".to_string()),
                    resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                        requests: Some(requests),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    /// `pod` already bound to `node`.
    pub fn bound_pod(name: &str, uid: &str, cpu: &str, memory: &str, node: &str) -> Pod {
        let mut pod = pod(name, uid, cpu, memory);
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(node.to_string());
        }
        pod
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{bound_pod, node, pod};
    use super::*;

    #[test]
    fn bound_pods_use_node_resources() {
        let mut snapshot = Snapshot::default();
        snapshot.upsert_node(&node("n1", "2", "1Gi", "10"));
        snapshot.upsert_pod(&bound_pod("a", "u1", "500m", "100Mi", "n1"));
        let usage = &snapshot.node("n1").unwrap().usage;
        assert_eq!(usage.requested.cpu_millis, 500);
        assert_eq!(usage.requested.memory_bytes, 100 << 20);
        assert_eq!(usage.requested.pods, 1);
    }

    #[test]
    fn terminal_pod_frees_resources() {
        let mut snapshot = Snapshot::default();
        snapshot.upsert_node(&node("n1", "2", "1Gi", "10"));
        let mut finished = bound_pod("a", "u1", "500m", "", "n1");
        snapshot.upsert_pod(&finished);
        finished.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        snapshot.upsert_pod(&finished);
        assert_eq!(snapshot.node("n1").unwrap().usage.requested, Resources::default());
    }

    #[test]
    fn usage_survives_node_recreate() {
        let mut snapshot = Snapshot::default();
        snapshot.upsert_pod(&bound_pod("a", "u1", "1", "", "n1"));
        snapshot.upsert_node(&node("n1", "2", "1Gi", "10"));
        snapshot.remove_node("n1");
        snapshot.upsert_node(&node("n1", "2", "1Gi", "10"));
        assert_eq!(snapshot.node("n1").unwrap().usage.requested.cpu_millis, 1000);
    }

    #[test]
    fn assumed_pod_is_counted_once() {
        let mut snapshot = Snapshot::default();
        snapshot.upsert_node(&node("n1", "2", "1Gi", "10"));
        let pending = pod("a", "u1", "1", "");
        snapshot.assume(&PodInfo::from_pod(&pending, None).unwrap(), "n1");
        snapshot.upsert_pod(&bound_pod("a", "u1", "1", "", "n1"));
        assert_eq!(snapshot.node("n1").unwrap().usage.requested.cpu_millis, 1000);
        snapshot.forget("u1");
        assert_eq!(snapshot.node("n1").unwrap().usage.requested.cpu_millis, 1000);
    }

    #[test]
    fn relist_keeps_assumed_pods() {
        let mut snapshot = Snapshot::default();
        snapshot.upsert_node(&node("n1", "2", "1Gi", "10"));
        snapshot.upsert_pod(&bound_pod("gone", "u0", "1", "", "n1"));
        snapshot.assume(&PodInfo::from_pod(&pod("a", "u1", "500m", ""), None).unwrap(), "n1");
        snapshot.replace_pods(&[]);
        assert_eq!(snapshot.node("n1").unwrap().usage.requested.cpu_millis, 500);
        assert_eq!(snapshot.node_of("u0"), None);
    }

    #[test]
    fn missing_allocatable_falls_back_to_capacity() {
        let mut with_capacity = node("n1", "4", "1Gi", "10");
        if let Some(status) = with_capacity.status.as_mut() {
            status.allocatable = None;
        }
        let mut snapshot = Snapshot::default();
        snapshot.upsert_node(&with_capacity);
        assert_eq!(snapshot.node("n1").unwrap().allocatable.cpu_millis, 4000);
    }
}
