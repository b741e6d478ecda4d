//! The pure part of a Job reconcile: counting the Job's pods, deciding how many to
//! create or delete, and computing the next status with its conditions.
//!
//! NOTE: counts come from the pods that still exist, because capstan does not put the
//! `batch.kubernetes.io/job-tracking` finalizer on pods. A finished pod deleted by hand
//! before the Job finishes is no longer counted.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::pods;

/// Delay before the first replacement of a failed pod, doubled for each further failure,
/// as kube-controller-manager's pod failure back-off does.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// Upper bound of the failure back-off.
const BACKOFF_MAX: Duration = Duration::from_secs(360);

pub const BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
const BACKOFF_MESSAGE: &str = "Job has reached the specified backoff limit";
const DEADLINE_MESSAGE: &str = "Job was active longer than specified deadline";

/// An event to record about the Job, of type Warning when `warning` is set, else Normal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The writes of one Job reconcile.
#[derive(Debug, Default)]
pub struct Plan {
    /// Pods to create from the template.
    pub create: usize,
    /// Active pods to delete: the surplus, or all of them when the Job fails or suspends.
    pub delete: Vec<Arc<Pod>>,
    pub status: JobStatus,
    pub notes: Vec<Note>,
    /// When to look again even without events: the back-off or the deadline expiring.
    pub requeue: Option<Duration>,
}

/// Pod counts of one Job.
#[derive(Debug, Default)]
struct Counts {
    active: Vec<Arc<Pod>>,
    ready: i32,
    terminating: i32,
    succeeded: i32,
    failed: i32,
    /// Container restarts of pods not yet finished, which count as failures under `OnFailure`.
    restarts: i32,
    /// The latest time a pod failed, the start of the back-off.
    last_failure: Option<Timestamp>,
}

fn count(pods: &[Arc<Pod>]) -> Counts {
    let mut counts = Counts::default();
    for pod in pods {
        match pods::phase(pod) {
            Some("Succeeded") => counts.succeeded += 1,
            Some("Failed") => {
                counts.failed += 1;
                let finished = finished_at(pod);
                counts.last_failure = counts.last_failure.max(finished);
            }
            // A pod being deleted still counts its restarts, so that the failure decision
            // does not change while the pods of a failing Job terminate.
            _ if pod.metadata.deletion_timestamp.is_some() => {
                counts.terminating += 1;
                counts.restarts += total_restarts(pod);
            }
            _ => {
                counts.restarts += total_restarts(pod);
                if pods::ready_since(pod).is_some() {
                    counts.ready += 1;
                }
                counts.active.push(pod.clone());
            }
        }
    }
    counts
}

/// Returns the latest time a container of the pod terminated, if the agent reported one.
fn finished_at(pod: &Pod) -> Option<Timestamp> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses
        .iter()
        .filter_map(|s| s.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0))
        .max()
}

fn total_restarts(pod: &Pod) -> i32 {
    let status = pod.status.as_ref();
    let lists = [status.and_then(|s| s.init_container_statuses.as_ref()), status.and_then(|s| s.container_statuses.as_ref())];
    lists.into_iter().flatten().flatten().map(|c| c.restart_count).sum()
}

/// Returns whether the Job has a condition of `kind` with status True.
pub fn has_condition(status: Option<&JobStatus>, kind: &str) -> bool {
    status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == kind && c.status == "True"))
}

/// Returns whether the Job reached its final state, Complete or Failed.
pub fn is_finished(job: &Job) -> bool {
    has_condition(job.status.as_ref(), "Complete") || has_condition(job.status.as_ref(), "Failed")
}

/// Sets the condition `kind` to `status`, keeping its transition time when the status is
/// unchanged, as Kubernetes does.
fn set_condition(status: &mut JobStatus, kind: &str, value: &str, reason: &str, message: &str, now: Timestamp) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let condition = JobCondition {
        type_: kind.to_string(),
        status: value.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    match conditions.iter_mut().find(|c| c.type_ == kind) {
        Some(existing) if existing.status == value => {}
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
}

/// The failure back-off still to wait before replacing a failed pod, if any.
fn backoff_remaining(failures: i32, last_failure: Option<Timestamp>, now: Timestamp) -> Option<Duration> {
    let last = last_failure?;
    if failures <= 0 {
        return None;
    }
    let doublings = u32::try_from(failures - 1).unwrap_or(0).min(16);
    let delay = BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_MAX);
    let due = last.checked_add(SignedDuration::try_from(delay).ok()?).ok()?;
    (due > now).then(|| Duration::try_from(now.duration_until(due)).unwrap_or_default())
}

/// Plans one reconcile of an unfinished Job from its `owned` pods.
pub fn plan(job: &Job, owned: &[Arc<Pod>], now: Timestamp) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let mut status = job.status.clone().unwrap_or_default();
    let counts = count(owned);
    let mut plan = Plan::default();
    let suspended = spec.suspend == Some(true);

    // Suspension stops the clock: resuming restarts startTime, as in Kubernetes.
    if suspended {
        if !has_condition(Some(&status), "Suspended") {
            set_condition(&mut status, "Suspended", "True", "JobSuspended", "Job suspended", now);
            plan.notes.push(Note { warning: false, reason: "Suspended", message: "Job suspended".into() });
        }
        status.start_time = None;
    } else {
        if has_condition(Some(&status), "Suspended") {
            set_condition(&mut status, "Suspended", "False", "JobResumed", "Job resumed", now);
            plan.notes.push(Note { warning: false, reason: "Resumed", message: "Job resumed".into() });
        }
        status.start_time.get_or_insert(Time(now));
    }

    // Decide success or failure. Interim conditions come first, and the final one once
    // no pod of the Job runs or terminates any more.
    let failure = failure(&spec, &status, &counts, now);
    let succeeded_enough = match spec.completions {
        Some(completions) => counts.succeeded >= completions,
        None => counts.succeeded > 0 && counts.active.is_empty(),
    };

    if let Some((reason, message)) = failure {
        if !has_condition(Some(&status), "FailureTarget") {
            set_condition(&mut status, "FailureTarget", "True", reason, &message, now);
        }
        plan.delete = counts.active.clone();
        if counts.active.is_empty() && counts.terminating == 0 {
            set_condition(&mut status, "Failed", "True", reason, &message, now);
            plan.notes.push(Note { warning: true, reason, message });
        }
    } else if succeeded_enough || has_condition(Some(&status), "SuccessCriteriaMet") {
        let message = "Reached expected number of succeeded pods";
        if !has_condition(Some(&status), "SuccessCriteriaMet") {
            set_condition(&mut status, "SuccessCriteriaMet", "True", "CompletionsReached", message, now);
        }
        plan.delete = counts.active.clone();
        if counts.active.is_empty() && counts.terminating == 0 {
            set_condition(&mut status, "Complete", "True", "CompletionsReached", message, now);
            status.completion_time = Some(Time(now));
            plan.notes.push(Note { warning: false, reason: "Completed", message: "Job completed".into() });
        }
    } else if suspended {
        plan.delete = counts.active.clone();
    } else {
        plan_pods(&spec, &counts, now, &mut plan);
        let remaining = deadline_remaining(spec.active_deadline_seconds, status.start_time.as_ref(), now);
        plan.requeue = min_duration(plan.requeue, remaining);
    }

    status.active = Some(to_count(counts.active.len()) - to_count(plan.delete.len()));
    status.ready = Some(counts.ready);
    status.succeeded = Some(counts.succeeded);
    status.failed = Some(counts.failed);
    status.terminating = Some(counts.terminating + to_count(plan.delete.len()));
    for field in [&mut status.active, &mut status.succeeded, &mut status.failed] {
        if *field == Some(0) {
            *field = None;
        }
    }
    plan.status = status;
    plan
}

/// Returns the reason and message the Job fails with: an earlier FailureTarget's, too
/// many failed pods (or container restarts under `OnFailure`), or the active deadline.
fn failure(spec: &JobSpec, status: &JobStatus, counts: &Counts, now: Timestamp) -> Option<(&'static str, String)> {
    if has_condition(Some(status), "FailureTarget") {
        let target = status.conditions.iter().flatten().find(|c| c.type_ == "FailureTarget")?;
        let reason = if target.reason.as_deref() == Some(DEADLINE_EXCEEDED) { DEADLINE_EXCEEDED } else { BACKOFF_LIMIT_EXCEEDED };
        return Some((reason, target.message.clone().unwrap_or_default()));
    }
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let on_failure = spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("OnFailure");
    let restarts_exceeded = on_failure && counts.restarts > 0 && counts.restarts >= backoff_limit.max(1);
    if counts.failed > backoff_limit || restarts_exceeded {
        return Some((BACKOFF_LIMIT_EXCEEDED, BACKOFF_MESSAGE.to_string()));
    }
    let deadline_passed = deadline_remaining(spec.active_deadline_seconds, status.start_time.as_ref(), now)
        .is_some_and(|remaining| remaining.is_zero());
    if deadline_passed && spec.suspend != Some(true) {
        return Some((DEADLINE_EXCEEDED, DEADLINE_MESSAGE.to_string()));
    }
    None
}

/// Plans creations up to parallelism (never past the completions still missing) and
/// deletions of any surplus, waiting out the failure back-off before creating.
fn plan_pods(spec: &JobSpec, counts: &Counts, now: Timestamp, plan: &mut Plan) {
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let wanted = match spec.completions {
        Some(completions) => parallelism.min((completions - counts.succeeded).max(0)),
        // A work queue starts no new pods once one succeeded.
        None if counts.succeeded > 0 => to_count(counts.active.len()).min(parallelism),
        None => parallelism,
    };
    let active = to_count(counts.active.len());
    if active > wanted {
        let mut surplus = counts.active.clone();
        surplus.sort_by(|a, b| pods::deletion_order(a, b));
        surplus.truncate(usize::try_from(active - wanted).unwrap_or(0));
        plan.delete = surplus;
        return;
    }
    if active < wanted {
        let failures = counts.failed + counts.restarts;
        match backoff_remaining(failures, counts.last_failure, now) {
            Some(wait) => plan.requeue = Some(wait),
            None => plan.create = usize::try_from(wanted - active).unwrap_or(0),
        }
    }
}

/// Time left before `activeDeadlineSeconds` passes, zero once it has; `None` without a
/// deadline or start time.
fn deadline_remaining(deadline: Option<i64>, start: Option<&Time>, now: Timestamp) -> Option<Duration> {
    let start = start?.0;
    let due = start.checked_add(SignedDuration::from_secs(deadline?)).ok()?;
    Some(if due > now { Duration::try_from(now.duration_until(due)).unwrap_or_default() } else { Duration::ZERO })
}

fn min_duration(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn to_count(length: usize) -> i32 {
    i32::try_from(length).unwrap_or(i32::MAX)
}

/// Time left before a finished Job with `ttlSecondsAfterFinished` is deleted, zero once
/// it is due; `None` when the Job has no TTL.
pub fn ttl_remaining(job: &Job, now: Timestamp) -> Option<Duration> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let status = job.status.as_ref()?;
    let finished = status.completion_time.as_ref().map(|t| t.0).or_else(|| {
        let failed = status.conditions.as_ref()?.iter().find(|c| c.type_ == "Failed" && c.status == "True")?;
        failed.last_transition_time.as_ref().map(|t| t.0)
    })?;
    deadline_remaining(Some(i64::from(ttl)), Some(&Time(finished)), now)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
