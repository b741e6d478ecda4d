//! Pod state as the workload controllers read it: active, ready, available, and the
//! order in which surplus pods are deleted.

use std::cmp::Ordering;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// Returns whether the pod still counts toward its owner's replicas: it is not being
/// deleted and has not finished (phase Succeeded or Failed).
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(phase(pod), Some("Succeeded") | Some("Failed"))
}

/// Returns the pod phase as reported by its node agent.
pub fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// Returns the time the pod's `Ready` condition last turned True, or `None` when the
/// pod is not ready. A ready pod without a transition time counts as ready since the
/// epoch, so it is available at once.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    if ready.status != "True" {
        return None;
    }
    Some(ready.last_transition_time.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0))
}

/// Returns how long until a ready pod becomes available (zero when it already is), or
/// `None` for a pod that is not ready.
pub fn available_after(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<SignedDuration> {
    let since = ready_since(pod)?;
    let due = since
        .checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds.max(0))))
        .unwrap_or(Timestamp::MAX);
    Some(if due <= now { SignedDuration::ZERO } else { now.duration_until(due) })
}

/// Returns the highest restart count among the pod's containers.
pub fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |statuses| statuses.iter().map(|c| c.restart_count).max().unwrap_or(0))
}

/// Returns the owner reference marked `controller: true`, if any.
pub fn controller_of(metadata: &ObjectMeta) -> Option<&OwnerReference> {
    metadata.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true))
}

fn is_scheduled(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty())
}

fn phase_rank(pod: &Pod) -> u8 {
    match phase(pod) {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        _ => 1,
    }
}

/// Orders pods so that the ones to delete first come first: unscheduled before
/// scheduled, Pending before Unknown before Running, not ready before ready, ready for
/// a shorter time before longer, more restarts before fewer, newer before older.
///
/// NOTE: Kubernetes also ranks by how many sibling pods share the node, and buckets
/// ready times logarithmically behind a feature gate. capstan does neither.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    // Unscheduled and pending pods cost the least to lose.
    let by_scheduled = is_scheduled(a).cmp(&is_scheduled(b));
    let by_phase = phase_rank(a).cmp(&phase_rank(b));

    // Not ready (None) sorts before ready. Among ready pods the more recent
    // transition, meaning ready for less time, goes first.
    let by_ready = match (ready_since(a), ready_since(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => y.cmp(&x),
    };
    let by_restarts = max_restarts(b).cmp(&max_restarts(a));

    // A missing creation time counts as newest.
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let by_age = match (created(a), created(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => y.cmp(&x),
    };
    by_scheduled.then(by_phase).then(by_ready).then(by_restarts).then(by_age)
}

/// Builders for pods in tests across this crate.
#[cfg(test)]
pub mod fixtures {
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    pub fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("test timestamps are in range")
    }

    /// Builds a pod named `name`, created at `created`, on `node` (empty for unscheduled),
    /// in `phase`, ready since `ready` when given.
    pub fn pod(name: &str, created: i64, node: &str, phase: &str, ready: Option<i64>, restarts: i32) -> Pod {
        let conditions = ready.map(|since| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(at(since))),
                ..PodCondition::default()
            }]
        });
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(at(created))),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec { node_name: Some(node.into()), ..PodSpec::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions,
                container_statuses: Some(vec![ContainerStatus { restart_count: restarts, ..ContainerStatus::default() }]),
                ..PodStatus::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{at, pod};
    use super::*;

    #[test]
    fn deletion_order_follows_kubernetes_ranking() {
        // Each pair: the first pod must be deleted before the second.
        let cases = [
            ("unscheduled first", pod("a", 10, "", "Pending", None, 0), pod("b", 10, "n1", "Pending", None, 0)),
            ("pending before running", pod("a", 10, "n1", "Pending", None, 0), pod("b", 10, "n1", "Running", None, 0)),
            ("unknown before running", pod("a", 10, "n1", "Unknown", None, 0), pod("b", 10, "n1", "Running", None, 0)),
            ("not ready first", pod("a", 10, "n1", "Running", None, 0), pod("b", 10, "n1", "Running", Some(20), 0)),
            ("shorter ready first", pod("a", 10, "n1", "Running", Some(50), 0), pod("b", 10, "n1", "Running", Some(20), 0)),
            ("more restarts first", pod("a", 10, "n1", "Running", Some(20), 3), pod("b", 10, "n1", "Running", Some(20), 1)),
            ("newer first", pod("a", 30, "n1", "Running", Some(40), 0), pod("b", 10, "n1", "Running", Some(40), 0)),
        ];
        for (case, first, second) in cases {
            assert_eq!(deletion_order(&first, &second), Ordering::Less, "{case}");
            assert_eq!(deletion_order(&second, &first), Ordering::Greater, "{case} reversed");
        }
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let ready = pod("a", 0, "n1", "Running", Some(100), 0);
        assert_eq!(available_after(&ready, 0, at(100)), Some(SignedDuration::ZERO));
        assert_eq!(available_after(&ready, 30, at(110)), Some(SignedDuration::from_secs(20)));
        assert_eq!(available_after(&ready, 30, at(130)), Some(SignedDuration::ZERO));
        let not_ready = pod("b", 0, "n1", "Running", None, 0);
        assert_eq!(available_after(&not_ready, 0, at(200)), None);
    }

    #[test]
    fn finished_and_deleting_pods_are_inactive() {
        assert!(is_active(&pod("a", 0, "n1", "Running", None, 0)));
        assert!(!is_active(&pod("a", 0, "n1", "Succeeded", None, 0)));
        assert!(!is_active(&pod("a", 0, "n1", "Failed", None, 0)));
        let mut deleting = pod("a", 0, "n1", "Running", None, 0);
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(5)));
        assert!(!is_active(&deleting));
    }
}
