//! Pure planning for one ReplicaSet: which pods it claims, how many to create, which
//! to delete, and the status the cache implies. Nothing here talks to the API server.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use crate::pods;
use crate::selector::{self, SelectorError};

/// Most pods created or deleted in one reconcile, as kube-controller-manager's
/// `BurstReplicas`, so one large scale-up cannot flood the API server.
pub const BURST_REPLICAS: usize = 500;

/// Condition type set when creating or deleting pods fails.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// The writes one reconcile should make, computed from the cache.
#[derive(Debug, Default)]
pub struct Plan {
    /// Orphan pods that match the selector and get this ReplicaSet as controller.
    pub adopt: Vec<Arc<Pod>>,
    /// Owned pods whose labels no longer match, to lose their owner reference.
    pub release: Vec<Arc<Pod>>,
    /// Active pods the ReplicaSet controls after adoption and release.
    pub active: Vec<Arc<Pod>>,
    /// Number of pods to create.
    pub create: usize,
    /// Pods to delete, in the order they should go.
    pub delete: Vec<Arc<Pod>>,
}

/// Plans the pod writes for `rs`, given every pod in its namespace.
pub fn plan(rs: &ReplicaSet, namespace_pods: &[Arc<Pod>]) -> Result<Plan, SelectorError> {
    let default_spec = ReplicaSetSpec::default();
    let spec = rs.spec.as_ref().unwrap_or(&default_spec);
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let mut plan = Plan::default();

    // Claim pods: keep owned matches, release owned mismatches, adopt orphans.
    for pod in namespace_pods {
        let matched = selector::matches(&spec.selector, pod.metadata.labels.as_ref())?;
        match pods::controller_of(&pod.metadata) {
            Some(owner) if owner.uid == uid => {
                if matched {
                    plan.active.push(pod.clone());
                } else if !deleting {
                    plan.release.push(pod.clone());
                }
            }
            Some(_) => {}
            None if matched && !deleting && pod.metadata.deletion_timestamp.is_none() => {
                plan.adopt.push(pod.clone());
                plan.active.push(pod.clone());
            }
            None => {}
        }
    }
    plan.active.retain(|pod| pods::is_active(pod));

    // Compare against the desired count. A ReplicaSet being deleted is left to the
    // garbage collector.
    if deleting {
        return Ok(plan);
    }
    let desired = usize::try_from(spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);
    let current = plan.active.len();
    if current < desired {
        plan.create = (desired - current).min(BURST_REPLICAS);
    } else if current > desired {
        let mut ranked = plan.active.clone();
        ranked.sort_by(|a, b| pods::deletion_order(a, b));
        ranked.truncate((current - desired).min(BURST_REPLICAS));
        plan.delete = ranked;
    }
    Ok(plan)
}

/// Splits `count` creations into slow-start batches of 1, 2, 4, ... so that a
/// failing template costs one request, not hundreds.
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut remaining = count;
    let mut size = 1;
    while remaining > 0 {
        let batch = size.min(remaining);
        batches.push(batch);
        remaining -= batch;
        size *= 2;
    }
    batches
}

/// Builds a pod from the ReplicaSet's template, named by the server from
/// `generateName: <rs>-` and controlled by the ReplicaSet.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let rs_name = rs.metadata.name.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{rs_name}-")),
            namespace: rs.metadata.namespace.clone(),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![controller_reference(rs)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Builds the owner reference that marks `rs` as a pod's controller.
pub fn controller_reference(rs: &ReplicaSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: rs.metadata.name.clone().unwrap_or_default(),
        uid: rs.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A failed pod write to report in the `ReplicaFailure` condition.
#[derive(Debug, Clone)]
pub struct Failure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: &'static str,
    pub message: String,
}

/// Computes the status from the controlled active pods, and how long until the next
/// ready pod becomes available, so the reconcile can look again then.
pub fn status(
    rs: &ReplicaSet,
    active: &[Arc<Pod>],
    failure: Option<&Failure>,
    now: Timestamp,
) -> (ReplicaSetStatus, Option<Duration>) {
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels = spec
        .and_then(|s| s.template.as_ref()).and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.as_ref());
    let mut status = ReplicaSetStatus {
        replicas: count(active.len()),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        ..ReplicaSetStatus::default()
    };
    let (mut fully_labeled, mut ready, mut available) = (0, 0, 0);
    let mut next_check: Option<Duration> = None;
    for pod in active {
        let labels = pod.metadata.labels.as_ref();
        let has_all = template_labels
            .is_none_or(|wanted| wanted.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)));
        fully_labeled += i32::from(has_all);
        match pods::available_after(pod, min_ready, now) {
            None => {}
            Some(wait) if wait.is_zero() => {
                ready += 1;
                available += 1;
            }
            Some(wait) => {
                ready += 1;
                let wait = wait.unsigned_abs();
                next_check = Some(next_check.map_or(wait, |current| current.min(wait)));
            }
        }
    }
    status.fully_labeled_replicas = Some(fully_labeled);
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    set_failure_condition(&mut status, failure, now);
    (status, next_check)
}

fn set_failure_condition(status: &mut ReplicaSetStatus, failure: Option<&Failure>, now: Timestamp) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let existing = conditions.iter().position(|c| c.type_ == REPLICA_FAILURE);
    match (failure, existing) {
        (Some(failure), None) => conditions.push(ReplicaSetCondition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some(failure.reason.into()),
            message: Some(failure.message.clone()),
            last_transition_time: Some(Time(now)),
        }),
        (None, Some(index)) => {
            conditions.remove(index);
        }
        _ => {}
    }
    if conditions.is_empty() {
        status.conditions = None;
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    use super::*;
    use crate::pods::fixtures::{at, pod};

    fn app_labels(app: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_string(), app.to_string())])
    }

    fn replica_set(replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("shop".into()),
                uid: Some("rs-uid".into()),
                generation: Some(4),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector { match_labels: Some(app_labels("web")), ..LabelSelector::default() },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels: Some(app_labels("web")), ..ObjectMeta::default() }),
                    spec: None,
                }),
                ..ReplicaSetSpec::default()
            }),
            status: None,
        }
    }

    fn owned(mut pod: Pod, rs: &ReplicaSet, app: &str) -> Arc<Pod> {
        pod.metadata.labels = Some(app_labels(app));
        pod.metadata.owner_references = Some(vec![controller_reference(rs)]);
        Arc::new(pod)
    }

    #[test]
    fn slow_start_doubles_batches() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), vec![1]);
        assert_eq!(slow_start_batches(3), vec![1, 2]);
        assert_eq!(slow_start_batches(10), vec![1, 2, 4, 3]);
    }

    #[test]
    fn plan_creates_missing_pods() {
        let rs = replica_set(3);
        let pods = vec![owned(pod("web-abc-1", 0, "n1", "Running", Some(1), 0), &rs, "web")];
        let plan = plan(&rs, &pods).expect("valid selector");
        assert_eq!(plan.create, 2);
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn plan_claims_orphans_and_releases_mismatches() {
        let rs = replica_set(2);
        let mut orphan = pod("stray", 0, "n1", "Running", None, 0);
        orphan.metadata.labels = Some(app_labels("web"));
        let relabeled = owned(pod("web-abc-2", 0, "n1", "Running", None, 0), &rs, "debug");
        let finished = owned(pod("web-abc-3", 0, "n1", "Succeeded", None, 0), &rs, "web");
        let plan = plan(&rs, &[Arc::new(orphan), relabeled, finished]).expect("valid selector");
        assert_eq!(plan.adopt.len(), 1);
        assert_eq!(plan.release.len(), 1);
        assert_eq!(plan.active.len(), 1, "the finished pod does not count");
        assert_eq!(plan.create, 1);
    }

    #[test]
    fn plan_deletes_least_valuable_first() {
        let rs = replica_set(1);
        let pods = vec![
            owned(pod("old-ready", 0, "n1", "Running", Some(5), 0), &rs, "web"),
            owned(pod("pending", 10, "", "Pending", None, 0), &rs, "web"),
            owned(pod("not-ready", 10, "n1", "Running", None, 0), &rs, "web"),
        ];
        let plan = plan(&rs, &pods).expect("valid selector");
        let names: Vec<_> = plan.delete.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
        assert_eq!(names, ["pending", "not-ready"]);
    }

    #[test]
    fn pod_from_template_is_owned() {
        let pod = pod_from_template(&replica_set(1));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(pod.metadata.labels, Some(app_labels("web")));
        let owner = &pod.metadata.owner_references.expect("owner set")[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("ReplicaSet", "rs-uid"));
        assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
    }

    #[test]
    fn status_counts_ready_and_available() {
        let mut rs = replica_set(3);
        rs.spec.as_mut().expect("spec set").min_ready_seconds = Some(10);
        let pods = vec![
            owned(pod("a", 0, "n1", "Running", Some(0), 0), &rs, "web"),
            owned(pod("b", 0, "n1", "Running", Some(95), 0), &rs, "web"),
            owned(pod("c", 0, "n1", "Pending", None, 0), &rs, "web"),
        ];
        let (status, next) = status(&rs, &pods, None, at(100));
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(3));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(next, Some(Duration::from_secs(5)));
    }

    #[test]
    fn failure_condition_set_and_cleared() {
        let rs = replica_set(1);
        let failure = Failure { reason: "FailedCreate", message: "quota exceeded".into() };
        let (failed, _) = status(&rs, &[], Some(&failure), at(1));
        let conditions = failed.conditions.clone().expect("condition set");
        assert_eq!(conditions[0].type_, REPLICA_FAILURE);
        assert_eq!(conditions[0].reason.as_deref(), Some("FailedCreate"));
        let mut recovered = rs.clone();
        recovered.status = Some(failed);
        let (cleared, _) = status(&recovered, &[], None, at(2));
        assert_eq!(cleared.conditions, None);
    }
}
