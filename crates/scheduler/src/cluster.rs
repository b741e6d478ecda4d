//! The scheduler's cache of the cluster, fed by the node, pod and RuntimeClass watches.
//!
//! Handlers are synchronous and return the queue changes they imply, so the watch loop can
//! apply them after releasing the lock and tests can check them without a server.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::node::v1::RuntimeClass;

use crate::queue::PodKey;
use crate::snapshot::Snapshot;

/// A change to the scheduling queue that a watch event implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueAction {
    /// A pending pod is new or changed in a way that can change its placement.
    Add(PodKey),
    /// The pod no longer waits for this scheduler.
    Remove(PodKey),
    /// Resources or node properties changed, so parked pods may fit now.
    RetryUnschedulable,
}

/// A pending pod with the parts of it that can change where it fits.
struct PendingPod {
    pod: Pod,
    fingerprint: String,
}

/// Snapshot, pending pods and RuntimeClasses behind one lock.
pub struct ClusterState {
    scheduler_name: String,
    pub snapshot: Snapshot,
    pending: HashMap<PodKey, PendingPod>,
    runtime_classes: HashMap<String, RuntimeClass>,
}

fn pod_key(pod: &Pod) -> PodKey {
    let metadata = &pod.metadata;
    (metadata.namespace.clone().unwrap_or_default(), metadata.name.clone().unwrap_or_default())
}

/// The spec, labels and annotations of a pod: a status-only change (such as the
/// scheduler's own `PodScheduled` condition) leaves it equal and so does not requeue.
fn fingerprint(pod: &Pod) -> String {
    let parts = (&pod.spec, &pod.metadata.labels, &pod.metadata.annotations);
    serde_json::to_string(&parts).unwrap_or_default()
}

impl ClusterState {
    pub fn new(scheduler_name: &str) -> Self {
        ClusterState {
            scheduler_name: scheduler_name.to_string(),
            snapshot: Snapshot::default(),
            pending: HashMap::new(),
            runtime_classes: HashMap::new(),
        }
    }

    /// Whether this scheduler should place the pod now.
    fn is_ours_and_pending(&self, pod: &Pod) -> bool {
        let Some(spec) = pod.spec.as_ref() else { return false };
        let scheduler = spec.scheduler_name.as_deref().unwrap_or("default-scheduler");
        spec.node_name.as_deref().unwrap_or_default().is_empty()
            && scheduler == self.scheduler_name
            && pod.metadata.deletion_timestamp.is_none()
            && !crate::pod::is_terminal(pod)
    }

    /// The latest version of a pending pod.
    pub fn pending_pod(&self, key: &PodKey) -> Option<Pod> {
        self.pending.get(key).map(|pending| pending.pod.clone())
    }

    pub fn runtime_class(&self, name: &str) -> Option<&RuntimeClass> {
        self.runtime_classes.get(name)
    }

    pub fn apply_pod(&mut self, pod: &Pod) -> Vec<QueueAction> {
        let key = pod_key(pod);
        let was_counted = pod.metadata.uid.as_deref().and_then(|uid| self.snapshot.node_of(uid)).is_some();
        self.snapshot.upsert_pod(pod);
        let is_counted = pod.metadata.uid.as_deref().and_then(|uid| self.snapshot.node_of(uid)).is_some();
        let mut actions = Vec::new();
        if was_counted && !is_counted {
            actions.push(QueueAction::RetryUnschedulable);
        }

        if !self.is_ours_and_pending(pod) {
            if self.pending.remove(&key).is_some() {
                actions.push(QueueAction::Remove(key));
            }
            return actions;
        }
        let fingerprint = fingerprint(pod);
        let changed = self.pending.get(&key).is_none_or(|old| old.fingerprint != fingerprint);
        self.pending.insert(key.clone(), PendingPod { pod: pod.clone(), fingerprint });
        if changed {
            actions.push(QueueAction::Add(key));
        }
        actions
    }

    pub fn delete_pod(&mut self, pod: &Pod) -> Vec<QueueAction> {
        let key = pod_key(pod);
        let mut actions = Vec::new();
        if let Some(uid) = pod.metadata.uid.as_deref()
            && self.snapshot.node_of(uid).is_some()
        {
            self.snapshot.remove_pod(uid);
            actions.push(QueueAction::RetryUnschedulable);
        }
        if self.pending.remove(&key).is_some() {
            actions.push(QueueAction::Remove(key));
        }
        actions
    }

    /// Replaces every pod after the watch relisted.
    pub fn replace_pods(&mut self, pods: &[Pod]) -> Vec<QueueAction> {
        self.snapshot.replace_pods(pods);
        let listed: HashSet<PodKey> = pods.iter().map(pod_key).collect();
        let gone: Vec<PodKey> = self.pending.keys().filter(|key| !listed.contains(*key)).cloned().collect();
        let mut actions: Vec<QueueAction> = gone
            .into_iter()
            .map(|key| {
                self.pending.remove(&key);
                QueueAction::Remove(key)
            })
            .collect();
        for pod in pods {
            actions.extend(self.apply_pod(pod).into_iter().filter(|action| matches!(action, QueueAction::Add(_) | QueueAction::Remove(_))));
        }
        actions.push(QueueAction::RetryUnschedulable);
        actions
    }

    pub fn apply_node(&mut self, node: &Node) -> Vec<QueueAction> {
        if self.snapshot.upsert_node(node) {
            vec![QueueAction::RetryUnschedulable]
        } else {
            Vec::new()
        }
    }

    pub fn delete_node(&mut self, node: &Node) -> Vec<QueueAction> {
        if let Some(name) = node.metadata.name.as_deref() {
            self.snapshot.remove_node(name);
        }
        Vec::new()
    }

    pub fn replace_nodes(&mut self, nodes: &[Node]) -> Vec<QueueAction> {
        self.snapshot.replace_nodes(nodes);
        vec![QueueAction::RetryUnschedulable]
    }

    pub fn apply_runtime_class(&mut self, class: &RuntimeClass) -> Vec<QueueAction> {
        if let Some(name) = class.metadata.name.clone() {
            self.runtime_classes.insert(name, class.clone());
        }
        vec![QueueAction::RetryUnschedulable]
    }

    pub fn delete_runtime_class(&mut self, class: &RuntimeClass) -> Vec<QueueAction> {
        if let Some(name) = class.metadata.name.as_deref() {
            self.runtime_classes.remove(name);
        }
        Vec::new()
    }

    pub fn replace_runtime_classes(&mut self, classes: &[RuntimeClass]) -> Vec<QueueAction> {
        self.runtime_classes.clear();
        for class in classes {
            self.apply_runtime_class(class);
        }
        vec![QueueAction::RetryUnschedulable]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures::{bound_pod, node, pod};

    fn key(name: &str) -> PodKey {
        ("default".to_string(), name.to_string())
    }

    #[test]
    fn pending_pod_is_queued_once() {
        let mut state = ClusterState::new("default-scheduler");
        let pending = pod("web", "u1", "100m", "");
        assert_eq!(state.apply_pod(&pending), vec![QueueAction::Add(key("web"))]);

        // A status-only update, such as our own PodScheduled condition, does not requeue.
        let mut with_status = pending.clone();
        with_status.status = Some(Default::default());
        assert_eq!(state.apply_pod(&with_status), vec![]);

        // A label change can change where the pod fits.
        let mut relabelled = pending;
        relabelled.metadata.labels = Some([("tier".to_string(), "web".to_string())].into());
        assert_eq!(state.apply_pod(&relabelled), vec![QueueAction::Add(key("web"))]);
    }

    #[test]
    fn other_scheduler_pods_are_ignored() {
        let mut state = ClusterState::new("default-scheduler");
        let mut foreign = pod("web", "u1", "", "");
        foreign.spec.as_mut().unwrap().scheduler_name = Some("custom".into());
        assert_eq!(state.apply_pod(&foreign), vec![]);
        assert!(state.pending_pod(&key("web")).is_none());
    }

    #[test]
    fn binding_removes_pending_pod() {
        let mut state = ClusterState::new("default-scheduler");
        state.apply_node(&node("n1", "1", "1Gi", "10"));
        state.apply_pod(&pod("web", "u1", "100m", ""));
        let actions = state.apply_pod(&bound_pod("web", "u1", "100m", "", "n1"));
        assert_eq!(actions, vec![QueueAction::Remove(key("web"))]);
        assert_eq!(state.snapshot.node_of("u1"), Some("n1"));
    }

    #[test]
    fn deleting_bound_pod_retries_others() {
        let mut state = ClusterState::new("default-scheduler");
        let bound = bound_pod("db", "u2", "1", "", "n1");
        state.apply_pod(&bound);
        assert_eq!(state.delete_pod(&bound), vec![QueueAction::RetryUnschedulable]);
        assert_eq!(state.snapshot.node_of("u2"), None);
    }

    #[test]
    fn node_heartbeat_does_not_retry() {
        let mut state = ClusterState::new("default-scheduler");
        let mut ready = node("n1", "1", "1Gi", "10");
        assert_eq!(state.apply_node(&ready), vec![QueueAction::RetryUnschedulable]);
        ready.metadata.resource_version = Some("42".into());
        assert_eq!(state.apply_node(&ready), vec![]);
        ready.spec.as_mut().unwrap().unschedulable = Some(true);
        assert_eq!(state.apply_node(&ready), vec![QueueAction::RetryUnschedulable]);
    }
}
