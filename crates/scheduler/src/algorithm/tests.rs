use k8s_openapi::api::core::v1::Taint;
use proptest::prelude::*;

use super::*;
use crate::filter::{REASON_INSUFFICIENT_CPU, REASON_UNSCHEDULABLE};
use crate::snapshot::fixtures::{node, pod};

fn info(name: &str, uid: &str, cpu: &str, memory: &str) -> PodInfo {
    PodInfo::from_pod(&pod(name, uid, cpu, memory), None).unwrap()
}

#[test]
fn message_matches_kube_scheduler() {
    let diagnosis = Diagnosis {
        total_nodes: 3,
        reasons: BTreeMap::from([
            (Reason::from("node(s) had untolerated taint {key: value}"), 2),
            (Reason::from(REASON_INSUFFICIENT_CPU), 1),
        ]),
        pod_reason: None,
    };
    assert_eq!(
        diagnosis.message(),
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {key: value}. preemption: not eligible."
    );
}

#[test]
fn message_without_nodes() {
    let diagnosis = Diagnosis::default();
    assert_eq!(
        diagnosis.message(),
        "0/0 nodes are available: no nodes available to schedule pods. preemption: not eligible."
    );
}

#[test]
fn message_puts_pod_reason_first() {
    let diagnosis = Diagnosis {
        total_nodes: 2,
        reasons: BTreeMap::new(),
        pod_reason: Some("RuntimeClass \"cri\" not found".into()),
    };
    assert_eq!(
        diagnosis.message(),
        "0/2 nodes are available: RuntimeClass \"cri\" not found. preemption: not eligible."
    );
}

#[test]
fn diagnosis_counts_each_node_once_per_reason() {
    let mut snapshot = Snapshot::default();
    snapshot.upsert_node(&node("small-1", "500m", "1Gi", "10"));
    snapshot.upsert_node(&node("small-2", "500m", "1Gi", "10"));
    let mut cordoned = node("cordoned", "8", "8Gi", "10");
    cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
    snapshot.upsert_node(&cordoned);
    let mut tainted = node("tainted", "8", "8Gi", "10");
    tainted.spec.as_mut().unwrap().taints =
        Some(vec![Taint { key: "key".into(), value: Some("value".into()), effect: "NoSchedule".into(), time_added: None }]);
    snapshot.upsert_node(&tainted);
    let diagnosis = select_node(&Framework::default(), &snapshot, &info("p", "u1", "1", "")).unwrap_err();
    assert_eq!(diagnosis.total_nodes, 4);
    assert_eq!(diagnosis.reasons.get(REASON_INSUFFICIENT_CPU), Some(&2));
    assert_eq!(diagnosis.reasons.get(REASON_UNSCHEDULABLE), Some(&1));
    assert_eq!(
        diagnosis.message(),
        "0/4 nodes are available: 1 node(s) had untolerated taint {key: value}, 1 node(s) were unschedulable, 2 Insufficient cpu. preemption: not eligible."
    );
}

#[test]
fn picks_least_allocated_node() {
    let mut snapshot = Snapshot::default();
    snapshot.upsert_node(&node("busy", "4", "4Gi", "10"));
    snapshot.upsert_node(&node("idle", "4", "4Gi", "10"));
    snapshot.upsert_pod(&crate::snapshot::fixtures::bound_pod("x", "ux", "3", "3Gi", "busy"));
    for uid in ["a", "b", "c", "d"] {
        let chosen = select_node(&Framework::default(), &snapshot, &info("p", uid, "100m", "")).unwrap();
        assert_eq!(chosen, "idle", "uid {uid}");
    }
}

#[test]
fn decision_replays_for_same_uid() {
    let mut snapshot = Snapshot::default();
    for index in 0..20 {
        snapshot.upsert_node(&node(&format!("n{index:02}"), "4", "4Gi", "10"));
    }
    let pod = info("p", "3f1c", "100m", "");
    let first = select_node(&Framework::default(), &snapshot, &pod).unwrap();
    for _ in 0..5 {
        assert_eq!(select_node(&Framework::default(), &snapshot, &pod).unwrap(), first);
    }
}

#[test]
fn replicas_spread_across_nodes() {
    let mut snapshot = Snapshot::default();
    for name in ["n1", "n2", "n3"] {
        snapshot.upsert_node(&node(name, "4", "4Gi", "10"));
    }
    let framework = Framework::default();
    let mut placed = std::collections::BTreeSet::new();
    for index in 0..3 {
        let mut replica = info(&format!("web-{index}"), &format!("uid-{index}"), "", "");
        replica.owner_uid = Some("rs-web".into());
        let chosen = select_node(&framework, &snapshot, &replica).unwrap();
        snapshot.assume(&replica, &chosen);
        placed.insert(chosen);
    }
    assert_eq!(placed.len(), 3, "each replica on its own node: {placed:?}");
}

proptest! {
    /// Binding pods one after another, each assumed at once, never lets the requests on a
    /// node exceed its allocatable.
    #[test]
    fn binding_never_overcommits(
        nodes in prop::collection::vec((1i64..8000, 1i64..64, 1i64..12), 1..8),
        pods in prop::collection::vec((0i64..3000, 0i64..16), 1..60),
    ) {
        let mut snapshot = Snapshot::default();
        for (index, (cpu, memory, count)) in nodes.iter().enumerate() {
            snapshot.upsert_node(&node(&format!("n{index}"), &format!("{cpu}m"), &format!("{memory}Mi"), &count.to_string()));
        }
        let framework = Framework::default();
        for (index, (cpu, memory)) in pods.iter().enumerate() {
            let pending = info(&format!("p{index}"), &format!("uid-{index}"), &format!("{cpu}m"), &format!("{memory}Mi"));
            if let Ok(chosen) = select_node(&framework, &snapshot, &pending) {
                snapshot.assume(&pending, &chosen);
            }
        }
        for node in snapshot.nodes() {
            let used = node.usage.requested;
            prop_assert!(used.cpu_millis <= node.allocatable.cpu_millis, "cpu on {}", node.name);
            prop_assert!(used.memory_bytes <= node.allocatable.memory_bytes, "memory on {}", node.name);
            prop_assert!(used.pods <= node.allocatable.pods, "pods on {}", node.name);
        }
    }
}
