//! Deployment status and conditions, kept as kube-controller-manager keeps them,
//! because `kubectl rollout status`, `kubectl wait` and `kubectl describe` read them.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::rollout::Params;

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";

/// Default of `spec.progressDeadlineSeconds`, applied here as well in case the API
/// server stored the Deployment without defaulting it.
const DEFAULT_PROGRESS_DEADLINE: i32 = 600;

/// Returns the progress deadline in seconds, or `None` when it is disabled
/// (`i32::MAX`, as Kubernetes treats it).
pub fn progress_deadline(deployment: &Deployment) -> Option<i32> {
    let seconds = deployment.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(DEFAULT_PROGRESS_DEADLINE);
    (seconds != i32::MAX).then_some(seconds)
}

/// Builds a condition whose update and transition times are `now`.
pub fn new_condition(type_: &str, status: &str, reason: &str, message: String, now: Timestamp) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Returns the condition of `type_`.
pub fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Sets a condition. An unchanged status and reason keeps the old condition, times
/// included. A changed reason with the same status keeps the transition time.
pub fn set_condition(status: &mut DeploymentStatus, mut update: DeploymentCondition) {
    if let Some(current) = condition(status, &update.type_) {
        if current.status == update.status && current.reason == update.reason {
            return;
        }
        if current.status == update.status {
            update.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &update.type_);
    status.conditions.get_or_insert_with(Vec::new).push(update);
}

/// Removes the condition of `type_`.
pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
    }
}

/// Computes the replica counts and the `Available` condition from the ReplicaSets.
pub fn calculate(deployment: &Deployment, params: &Params, all: &[&ReplicaSet], new: Option<&ReplicaSet>, now: Timestamp) -> DeploymentStatus {
    let field = |rs: &ReplicaSet, get: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>| {
        rs.status.as_ref().and_then(get).unwrap_or(0)
    };
    let replicas: i32 = all.iter().map(|rs| field(rs, |s| Some(s.replicas))).sum();
    let available: i32 = all.iter().map(|rs| field(rs, |s| s.available_replicas)).sum();
    let previous = deployment.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: deployment.metadata.generation,
        replicas: Some(replicas),
        updated_replicas: Some(new.map_or(0, |rs| field(rs, |s| Some(s.replicas)))),
        ready_replicas: Some(all.iter().map(|rs| field(rs, |s| s.ready_replicas)).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((replicas - available).max(0)),
        collision_count: previous.collision_count,
        conditions: previous.conditions,
        terminating_replicas: None,
    };
    let condition = if available >= params.min_available() {
        new_condition(AVAILABLE, "True", MINIMUM_REPLICAS_AVAILABLE, "Deployment has minimum availability.".into(), now)
    } else {
        new_condition(AVAILABLE, "False", MINIMUM_REPLICAS_UNAVAILABLE, "Deployment does not have minimum availability.".into(), now)
    };
    set_condition(&mut status, condition);
    status
}

/// Sets `Progressing` to Unknown with reason DeploymentPaused or DeploymentResumed
/// when `spec.paused` changed. Kubernetes uses Unknown for both, and the next
/// rollout step after a resume moves it back to True.
pub fn apply_pause(deployment: &Deployment, status: &mut DeploymentStatus, now: Timestamp) {
    if progress_deadline(deployment).is_none() {
        return;
    }
    let reason = condition(status, PROGRESSING).and_then(|c| c.reason.clone());
    if reason.as_deref() == Some(TIMED_OUT) {
        return;
    }
    let paused = deployment.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let was_paused = reason.as_deref() == Some(PAUSED);
    if paused && !was_paused {
        set_condition(status, new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused".into(), now));
    } else if !paused && was_paused {
        set_condition(status, new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed".into(), now));
    }
}

/// Returns whether every replica runs the new template and is available.
pub fn is_complete(params: &Params, deployment: &Deployment, status: &DeploymentStatus) -> bool {
    status.updated_replicas == Some(params.replicas)
        && status.replicas == Some(params.replicas)
        && status.available_replicas == Some(params.replicas)
        && status.observed_generation >= deployment.metadata.generation
}

fn made_progress(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let count = |v: Option<i32>| v.unwrap_or(0);
    let old_leftover = count(old.replicas) - count(old.updated_replicas);
    let new_leftover = count(new.replicas) - count(new.updated_replicas);
    count(new.updated_replicas) > count(old.updated_replicas)
        || new_leftover < old_leftover
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas)
}

/// Updates `Progressing` for a rollout step: NewReplicaSetAvailable once complete,
/// ReplicaSetUpdated while pods move, ProgressDeadlineExceeded once the deadline
/// passes without progress.
pub fn apply_progress(deployment: &Deployment, params: &Params, new_name: Option<&str>, status: &mut DeploymentStatus, now: Timestamp) {
    let Some(deadline) = progress_deadline(deployment) else {
        remove_condition(status, PROGRESSING);
        return;
    };
    let current = condition(status, PROGRESSING).cloned();
    let already_complete = status.replicas == status.updated_replicas
        && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    if already_complete {
        return;
    }
    let subject = new_name.map_or_else(|| "Deployment".to_string(), |name| format!("ReplicaSet {name:?}"));
    let previous = deployment.status.clone().unwrap_or_default();
    if is_complete(params, deployment, status) {
        let message = format!("{subject} has successfully progressed.");
        set_condition(status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, message, now));
    } else if made_progress(&previous, status) {
        let mut update = new_condition(PROGRESSING, "True", RS_UPDATED, format!("{subject} is progressing."), now);
        if let Some(current) = current.filter(|c| c.status == "True") {
            update.last_transition_time = current.last_transition_time;
        }
        // Replace outright so lastUpdateTime moves even when the reason is the same.
        remove_condition(status, PROGRESSING);
        status.conditions.get_or_insert_with(Vec::new).push(update);
    } else if timed_out(current.as_ref(), deadline, now) {
        let message = format!("{subject} has timed out progressing.");
        set_condition(status, new_condition(PROGRESSING, "False", TIMED_OUT, message, now));
    }
}

fn timed_out(current: Option<&DeploymentCondition>, deadline: i32, now: Timestamp) -> bool {
    let Some(current) = current else { return false };
    match current.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => current
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0.saturating_add(SignedDuration::from_secs(i64::from(deadline))).is_ok_and(|due| due < now)),
    }
}

/// Returns when to look again so a stalled rollout is marked ProgressDeadlineExceeded
/// on time, since no event arrives when nothing happens.
pub fn deadline_check_after(deployment: &Deployment, status: &DeploymentStatus, now: Timestamp) -> Option<Duration> {
    let deadline = progress_deadline(deployment)?;
    let current = condition(status, PROGRESSING)?;
    if matches!(current.reason.as_deref(), Some(NEW_RS_AVAILABLE) | Some(TIMED_OUT)) || current.status != "True" {
        return None;
    }
    let updated = current.last_update_time.as_ref()?.0;
    let due = updated.saturating_add(SignedDuration::from_secs(i64::from(deadline))).ok()?;
    let wait = now.duration_until(due).max(SignedDuration::ZERO);
    Some(wait.unsigned_abs() + Duration::from_secs(1))
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
