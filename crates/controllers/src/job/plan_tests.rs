use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::pods::fixtures::{at, pod};

fn job(completions: Option<i32>, parallelism: i32, backoff_limit: i32, policy: &str) -> Job {
    Job {
        metadata: ObjectMeta { name: Some("pi".into()), uid: Some("job-uid".into()), ..ObjectMeta::default() },
        spec: Some(JobSpec {
            completions,
            parallelism: Some(parallelism),
            backoff_limit: Some(backoff_limit),
            template: PodTemplateSpec {
                spec: Some(PodSpec { restart_policy: Some(policy.into()), ..PodSpec::default() }),
                ..PodTemplateSpec::default()
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

fn pods_in(phases: &[&str]) -> Vec<Arc<Pod>> {
    phases.iter().enumerate().map(|(i, phase)| Arc::new(pod(&format!("p{i}"), 1, "n1", phase, None, 0))).collect()
}

/// A failed pod whose container finished at `finished` seconds.
fn failed_at(name: &str, finished: i64) -> Arc<Pod> {
    let mut failed = pod(name, 1, "n1", "Failed", None, 0);
    let terminated = ContainerStateTerminated { exit_code: 1, finished_at: Some(Time(at(finished))), ..Default::default() };
    failed.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
        state: Some(ContainerState { terminated: Some(terminated), ..Default::default() }),
        ..Default::default()
    }]);
    Arc::new(failed)
}

fn condition<'a>(status: &'a JobStatus, kind: &str) -> Option<&'a JobCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == kind)
}

#[test]
fn new_job_starts_parallelism_pods() {
    let planned = plan(&job(Some(3), 2, 6, "Never"), &[], at(100));
    assert_eq!(planned.create, 2);
    assert!(planned.delete.is_empty());
    assert_eq!(planned.status.start_time, Some(Time(at(100))));
    assert_eq!(planned.status.conditions, None);
}

#[test]
fn last_completion_creates_one_pod() {
    let planned = plan(&job(Some(3), 2, 6, "Never"), &pods_in(&["Succeeded", "Succeeded", "Running"]), at(100));
    assert_eq!(planned.create, 0);
    assert_eq!(planned.status.succeeded, Some(2));
    assert_eq!(planned.status.active, Some(1));
    let planned = plan(&job(Some(3), 2, 6, "Never"), &pods_in(&["Succeeded", "Succeeded"]), at(100));
    assert_eq!(planned.create, 1);
}

#[test]
fn completions_reached_completes_job() {
    let planned = plan(&job(Some(3), 2, 6, "Never"), &pods_in(&["Succeeded"; 3]), at(100));
    assert_eq!(planned.create, 0);
    assert_eq!(planned.status.succeeded, Some(3));
    assert_eq!(planned.status.completion_time, Some(Time(at(100))));
    let complete = condition(&planned.status, "Complete").expect("Complete condition");
    assert_eq!(complete.status, "True");
    assert_eq!(complete.reason.as_deref(), Some("CompletionsReached"));
    assert!(condition(&planned.status, "SuccessCriteriaMet").is_some());
    assert_eq!(planned.notes[0].reason, "Completed");
}

#[test]
fn failures_past_backoff_limit_fail_job() {
    let failed: Vec<Arc<Pod>> = (0..3).map(|i| failed_at(&format!("f{i}"), 50)).collect();
    let planned = plan(&job(Some(1), 1, 2, "Never"), &failed, at(100));
    assert_eq!(planned.create, 0);
    assert_eq!(planned.status.failed, Some(3));
    let failed_condition = condition(&planned.status, "Failed").expect("Failed condition");
    assert_eq!(failed_condition.reason.as_deref(), Some(BACKOFF_LIMIT_EXCEEDED));
    assert!(condition(&planned.status, "FailureTarget").is_some());
    assert!(planned.notes[0].warning);
}

#[test]
fn failure_waits_for_backoff() {
    // Two failures: the second replacement waits 20 seconds after the last one.
    let failed = vec![failed_at("f0", 40), failed_at("f1", 90)];
    let waiting = plan(&job(Some(1), 1, 6, "Never"), &failed, at(100));
    assert_eq!(waiting.create, 0);
    assert_eq!(waiting.requeue, Some(Duration::from_secs(10)));
    let due = plan(&job(Some(1), 1, 6, "Never"), &failed, at(111));
    assert_eq!(due.create, 1);
}

#[test]
fn restarts_count_under_on_failure() {
    let restarting = vec![Arc::new(pod("p0", 1, "n1", "Running", None, 2))];
    let planned = plan(&job(Some(1), 1, 2, "OnFailure"), &restarting, at(100));
    assert_eq!(planned.delete.len(), 1);
    assert_eq!(condition(&planned.status, "FailureTarget").unwrap().reason.as_deref(), Some(BACKOFF_LIMIT_EXCEEDED));
    assert!(condition(&planned.status, "Failed").is_none(), "Failed waits until the pod is gone");
}

#[test]
fn deadline_deletes_active_pods() {
    let mut deadline_job = job(Some(1), 1, 6, "Never");
    deadline_job.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
    deadline_job.status = Some(JobStatus { start_time: Some(Time(at(0))), ..JobStatus::default() });
    let running = pods_in(&["Running"]);
    let before = plan(&deadline_job, &running, at(20));
    assert!(before.delete.is_empty());
    assert_eq!(before.requeue, Some(Duration::from_secs(10)));
    let after = plan(&deadline_job, &running, at(31));
    assert_eq!(after.delete.len(), 1);
    assert_eq!(condition(&after.status, "FailureTarget").unwrap().reason.as_deref(), Some(DEADLINE_EXCEEDED));
    let gone = plan(&deadline_job, &[], at(32));
    assert_eq!(condition(&gone.status, "Failed").unwrap().reason.as_deref(), Some(DEADLINE_EXCEEDED));
}

#[test]
fn suspend_deletes_pods_and_clears_start() {
    let mut suspended = job(Some(2), 2, 6, "Never");
    suspended.spec.as_mut().unwrap().suspend = Some(true);
    let planned = plan(&suspended, &pods_in(&["Running", "Pending"]), at(10));
    assert_eq!(planned.create, 0);
    assert_eq!(planned.delete.len(), 2);
    assert_eq!(planned.status.start_time, None);
    assert_eq!(condition(&planned.status, "Suspended").unwrap().status, "True");
}

#[test]
fn ttl_counts_from_completion() {
    let mut finished = job(Some(1), 1, 6, "Never");
    finished.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(5);
    finished.status = Some(JobStatus { completion_time: Some(Time(at(100))), ..JobStatus::default() });
    assert_eq!(ttl_remaining(&finished, at(102)), Some(Duration::from_secs(3)));
    assert_eq!(ttl_remaining(&finished, at(106)), Some(Duration::ZERO));
    assert_eq!(ttl_remaining(&job(Some(1), 1, 6, "Never"), at(106)), None);
}

#[test]
fn terminating_pod_restarts_still_fail_job() {
    // The pod that pushed an OnFailure Job past its limit is being deleted: the Job must
    // stay failing rather than start a replacement.
    let mut deleting = pod("p0", 1, "n1", "Running", None, 2);
    deleting.metadata.deletion_timestamp = Some(Time(at(99)));
    let planned = plan(&job(Some(1), 1, 2, "OnFailure"), &[Arc::new(deleting)], at(100));
    assert_eq!(planned.create, 0);
    assert_eq!(planned.status.terminating, Some(1));
    assert!(condition(&planned.status, "FailureTarget").is_some());
}
