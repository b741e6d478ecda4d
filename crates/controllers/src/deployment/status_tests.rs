use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::pods::fixtures::at;

fn deployment(replicas: i32, generation: i64) -> Deployment {
    Deployment {
        metadata: ObjectMeta { name: Some("web".into()), generation: Some(generation), ..ObjectMeta::default() },
        spec: Some(DeploymentSpec { replicas: Some(replicas), ..DeploymentSpec::default() }),
        status: None,
    }
}

fn replica_set(replicas: i32, ready: i32, available: i32) -> ReplicaSet {
    ReplicaSet {
        status: Some(ReplicaSetStatus {
            replicas,
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            ..ReplicaSetStatus::default()
        }),
        ..ReplicaSet::default()
    }
}

fn params(replicas: i32, unavailable: i32) -> Params {
    Params { replicas, rolling: true, max_surge: 1, max_unavailable: unavailable }
}

#[test]
fn calculate_counts_and_available_condition() {
    let d = deployment(3, 2);
    let old = replica_set(1, 1, 1);
    let new = replica_set(3, 2, 1);
    let status = calculate(&d, &params(3, 0), &[&old, &new], Some(&new), at(10));
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(status.replicas, Some(4));
    assert_eq!(status.updated_replicas, Some(3));
    assert_eq!(status.ready_replicas, Some(3));
    assert_eq!(status.available_replicas, Some(2));
    assert_eq!(status.unavailable_replicas, Some(2));
    let available = condition(&status, AVAILABLE).expect("Available set");
    assert_eq!((available.status.as_str(), available.reason.as_deref()), ("False", Some(MINIMUM_REPLICAS_UNAVAILABLE)));

    let status = calculate(&d, &params(3, 1), &[&old, &new], Some(&new), at(10));
    let available = condition(&status, AVAILABLE).expect("Available set");
    assert_eq!((available.status.as_str(), available.reason.as_deref()), ("True", Some(MINIMUM_REPLICAS_AVAILABLE)));
}

#[test]
fn set_condition_keeps_times_like_kubernetes() {
    let mut status = DeploymentStatus::default();
    set_condition(&mut status, new_condition(PROGRESSING, "True", NEW_RS_CREATED, "a".into(), at(1)));
    // Same status and reason: nothing changes.
    set_condition(&mut status, new_condition(PROGRESSING, "True", NEW_RS_CREATED, "b".into(), at(2)));
    let current = condition(&status, PROGRESSING).expect("set");
    assert_eq!(current.message.as_deref(), Some("a"));
    // Same status, new reason: transition time stays, update time moves.
    set_condition(&mut status, new_condition(PROGRESSING, "True", RS_UPDATED, "c".into(), at(3)));
    let current = condition(&status, PROGRESSING).expect("set");
    assert_eq!(current.last_transition_time, Some(Time(at(1))));
    assert_eq!(current.last_update_time, Some(Time(at(3))));
    // New status: both move.
    set_condition(&mut status, new_condition(PROGRESSING, "False", TIMED_OUT, "d".into(), at(4)));
    let current = condition(&status, PROGRESSING).expect("set");
    assert_eq!(current.last_transition_time, Some(Time(at(4))));
    assert_eq!(status.conditions.as_ref().map(Vec::len), Some(1));
}

#[test]
fn progress_reaches_new_replica_set_available() {
    let d = deployment(2, 1);
    let new = replica_set(2, 2, 2);
    let mut status = calculate(&d, &params(2, 0), &[&new], Some(&new), at(10));
    apply_progress(&d, &params(2, 0), Some("web-abc"), &mut status, at(10));
    let progressing = condition(&status, PROGRESSING).expect("Progressing set");
    assert_eq!(progressing.reason.as_deref(), Some(NEW_RS_AVAILABLE));
    assert_eq!(progressing.message.as_deref(), Some("ReplicaSet \"web-abc\" has successfully progressed."));
    assert!(is_complete(&params(2, 0), &d, &status));
}

#[test]
fn stalled_rollout_times_out() {
    let mut d = deployment(2, 1);
    d.spec.as_mut().expect("spec").progress_deadline_seconds = Some(30);
    let mut previous = DeploymentStatus { replicas: Some(2), updated_replicas: Some(1), ..DeploymentStatus::default() };
    set_condition(&mut previous, new_condition(PROGRESSING, "True", RS_UPDATED, "x".into(), at(100)));
    d.status = Some(previous.clone());

    // No progress before the deadline: the condition stays and a check is scheduled.
    let mut status = previous.clone();
    apply_progress(&d, &params(2, 0), Some("web-abc"), &mut status, at(120));
    assert_eq!(condition(&status, PROGRESSING).and_then(|c| c.reason.as_deref()), Some(RS_UPDATED));
    assert_eq!(deadline_check_after(&d, &status, at(120)), Some(Duration::from_secs(11)));

    // Past the deadline: ProgressDeadlineExceeded.
    apply_progress(&d, &params(2, 0), Some("web-abc"), &mut status, at(131));
    let progressing = condition(&status, PROGRESSING).expect("set");
    assert_eq!((progressing.status.as_str(), progressing.reason.as_deref()), ("False", Some(TIMED_OUT)));
}

#[test]
fn pause_and_resume_conditions() {
    let mut d = deployment(1, 1);
    d.spec.as_mut().expect("spec").paused = Some(true);
    let mut status = DeploymentStatus::default();
    apply_pause(&d, &mut status, at(1));
    let progressing = condition(&status, PROGRESSING).expect("set");
    assert_eq!((progressing.status.as_str(), progressing.reason.as_deref()), ("Unknown", Some(PAUSED)));
    d.spec.as_mut().expect("spec").paused = Some(false);
    apply_pause(&d, &mut status, at(2));
    assert_eq!(condition(&status, PROGRESSING).and_then(|c| c.reason.as_deref()), Some(RESUMED));
}
