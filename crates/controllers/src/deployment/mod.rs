//! The Deployment controller: rolls a Deployment's template out through
//! ReplicaSets named `<deployment>-<hash>`.
//!
//! Stages: kube-runtime's `Controller` watches Deployments and the ReplicaSets they
//! own, and [`reconcile`] plans from the caches with the pure [`rollout`],
//! [`proportional`] and [`status`] modules, then writes through [`commit`]. Each
//! reconcile takes one step (create, scale up, or scale down) and the resulting
//! ReplicaSet events bring the next.

pub mod commit;
pub mod hash;
pub mod proportional;
pub mod rollout;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::Client;
use tracing::Instrument;

use self::commit::Rollout;
use self::rollout::{Params, RolloutError};
use crate::selector;

/// How often a Deployment is looked at even without events, because waiting for
/// events alone never repairs a change lost across a watch restart.
const RESYNC: Duration = Duration::from_secs(300);

/// Errors from reconciling one Deployment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("deployment {namespace}/{name} has an invalid strategy")]
    InvalidStrategy {
        namespace: String,
        name: String,
        #[source]
        source: RolloutError,
    },
    #[error("failed to {action} {namespace}/{name}")]
    WriteFailed {
        action: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("replica set name {namespace}/{name} is taken by another object, retrying with collision count {collision_count}")]
    HashCollision { namespace: String, name: String, collision_count: i32 },
    #[error("deployment {namespace}/{name} changed while it was reconciled")]
    Stale { namespace: String, name: String },
    #[error("a cache closed before it finished its first list")]
    CacheClosed,
}

impl Error {
    /// Returns whether a fresh look at the caches resolves the error.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::WriteFailed { source: kube::Error::Api(status), .. } => status.is_conflict(),
            Error::HashCollision { .. } | Error::Stale { .. } => true,
            _ => false,
        }
    }
}

/// Shared state of the Deployment reconciler.
pub struct Context {
    pub client: Client,
    /// The ReplicaSet controller's cache.
    pub replica_sets: Store<ReplicaSet>,
    /// The shared pod cache, for Recreate's wait until old pods are gone.
    pub pods: Store<Pod>,
}

/// Builds the Deployment controller, woken by changes to owned ReplicaSets too.
///
/// NOTE: orphan ReplicaSets that match a Deployment's selector are not adopted, and
/// ReplicaSets that stop matching are not released.
///
/// ReplicaSet events come from the shared reflector whose store the reconciler reads.
pub fn controller(
    client: &Client,
    replica_set_events: impl Stream<Item = Arc<ReplicaSet>> + Send + 'static,
) -> Controller<Deployment> {
    Controller::new(Api::<Deployment>::all(client.clone()), watcher::Config::default())
        .owns_shared_stream(replica_set_events)
}

/// Runs the controller until its watch streams end.
pub async fn run(controller: Controller<Deployment>, context: Arc<Context>) {
    controller
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "deployment reconcile did not complete");
            }
        })
        .await;
}

/// Returns the index of the oldest ReplicaSet whose template equals `template`
/// apart from the hash label.
pub fn find_new(sets: &[ReplicaSet], template: &PodTemplateSpec) -> Option<usize> {
    let mut matching: Vec<usize> = (0..sets.len())
        .filter(|&i| sets[i].spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| hash::equal_ignoring_hash(t, template)))
        .collect();
    matching.sort_by_key(|&i| (sets[i].metadata.creation_timestamp.as_ref().map(|t| t.0), sets[i].metadata.name.clone()));
    matching.first().copied()
}

/// Moves one Deployment a step toward its spec and records the status.
pub async fn reconcile(deployment: Arc<Deployment>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let span = tracing::debug_span!("reconcile", deployment.namespace = %namespace, deployment.name = %name);
    async move {
        context.replica_sets.wait_until_ready().await.map_err(|_| Error::CacheClosed)?;
        context.pods.wait_until_ready().await.map_err(|_| Error::CacheClosed)?;
        let Some(spec) = deployment.spec.as_ref().filter(|s| !selector::is_empty(&s.selector)) else {
            tracing::warn!("deployment has an empty selector, so it is not synced");
            return Ok(Action::await_change());
        };
        let params = Params::from_spec(spec).map_err(|source| Error::InvalidStrategy {
            namespace: namespace.clone(),
            name: name.clone(),
            source,
        })?;

        // Read the caches.
        let sets = commit::owned_sets(&context.replica_sets.state(), &deployment);
        let new = find_new(&sets, &spec.template);
        let previous = deployment.status.clone();
        let mut rollout = Rollout {
            context: &context,
            deployment: (*deployment).clone(),
            params,
            sets,
            new,
            status: previous.clone().unwrap_or_default(),
            now: jiff::Timestamp::now(),
        };

        // Take one step.
        let paused = spec.paused.unwrap_or(false);
        let progress = if deployment.metadata.deletion_timestamp.is_some() {
            false
        } else {
            status::apply_pause(&deployment, &mut rollout.status, rollout.now);
            if paused || is_scaling_event(&rollout) {
                sync_scale(&mut rollout, paused).await?;
                false
            } else if params.rolling {
                rolling_update(&mut rollout).await?;
                true
            } else {
                recreate(&mut rollout).await?;
                true
            }
        };

        // Report.
        let mut new_status = status::calculate(&rollout.deployment, &params, &rollout.all(), rollout.new_rs(), rollout.now);
        new_status.collision_count = rollout.status.collision_count;
        new_status.conditions = merge_conditions(&rollout.status, &new_status);
        rollout.status = new_status;
        if progress {
            let new_name = rollout.new_rs().and_then(|rs| rs.metadata.name.clone());
            status::apply_progress(&rollout.deployment, &params, new_name.as_deref(), &mut rollout.status, rollout.now);
        }
        copy_replica_failure(&mut rollout);
        rollout.write_status(previous.as_ref()).await?;
        let next = status::deadline_check_after(&deployment, &rollout.status, rollout.now).map_or(RESYNC, |d| d.min(RESYNC));
        Ok(Action::requeue(next))
    }
    .instrument(span)
    .await
}

/// Keeps the conditions set during this reconcile, with `Available` from `fresh`.
fn merge_conditions(
    working: &k8s_openapi::api::apps::v1::DeploymentStatus,
    fresh: &k8s_openapi::api::apps::v1::DeploymentStatus,
) -> Option<Vec<k8s_openapi::api::apps::v1::DeploymentCondition>> {
    let mut merged = working.clone();
    if let Some(available) = status::condition(fresh, status::AVAILABLE) {
        status::set_condition(&mut merged, available.clone());
    }
    merged.conditions
}

/// Mirrors the first ReplicaSet's ReplicaFailure condition on the Deployment.
fn copy_replica_failure(rollout: &mut Rollout<'_>) {
    let failure = rollout
        .sets
        .iter()
        .filter_map(|rs| rs.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == status::REPLICA_FAILURE).cloned())
        .next();
    match failure {
        Some(condition) => {
            let message = condition.message.unwrap_or_default();
            let reason = condition.reason.unwrap_or_default();
            let update = status::new_condition(status::REPLICA_FAILURE, &condition.status, &reason, message, rollout.now);
            status::set_condition(&mut rollout.status, update);
        }
        None => status::remove_condition(&mut rollout.status, status::REPLICA_FAILURE),
    }
}

/// Returns whether an active ReplicaSet was sized for another replica count.
fn is_scaling_event(rollout: &Rollout<'_>) -> bool {
    let (new, old) = rollout.states();
    new.iter()
        .chain(old.iter())
        .filter(|rs| rs.replicas > 0)
        .any(|rs| rs.desired_annotation.is_some_and(|desired| desired != rollout.params.replicas))
}

/// Scales without rolling out: for a paused Deployment or a replica count change.
async fn sync_scale(rollout: &mut Rollout<'_>, paused: bool) -> Result<(), Error> {
    rollout.ensure_new(false).await?;
    let (new, old) = rollout.states();
    let status_replicas = rollout.deployment.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let plan = proportional::plan_scale(&rollout.params, status_replicas, new.as_ref(), &old);
    rollout.scale_all(plan).await?;
    if paused {
        rollout.clean_up_history().await?;
    }
    Ok(())
}

async fn rolling_update(rollout: &mut Rollout<'_>) -> Result<(), Error> {
    rollout.ensure_new(true).await?;
    let (Some(new), old) = rollout.states() else { return Ok(()) };

    // Scale the new ReplicaSet up (or down to the desired count).
    let target = if new.replicas > rollout.params.replicas {
        rollout.params.replicas
    } else {
        rollout::new_rs_replicas(&rollout.params, &new, &old)
    };
    if rollout.scale(&new.name, target).await? {
        return Ok(());
    }

    // Scale old ReplicaSets down as far as availability allows.
    let plan = rollout::plan_old_scale_down(&rollout.params, &new, &old);
    if rollout.scale_all(plan).await? {
        return Ok(());
    }
    let complete = new.replicas == rollout.params.replicas && new.available == rollout.params.replicas && old.iter().all(|rs| rs.replicas == 0);
    if complete {
        rollout.clean_up_history().await?;
    }
    Ok(())
}

async fn recreate(rollout: &mut Rollout<'_>) -> Result<(), Error> {
    rollout.ensure_new(false).await?;
    let (_, old) = rollout.states();

    // Scale every old ReplicaSet to zero, then wait until their pods are gone.
    let plan: Vec<(String, i32)> = old.iter().filter(|rs| rs.replicas > 0).map(|rs| (rs.name.clone(), 0)).collect();
    if rollout.scale_all(plan).await? || old_pods_running(rollout) {
        return Ok(());
    }

    // Then bring up the new one.
    rollout.ensure_new(true).await?;
    if let Some(new) = rollout.states().0 {
        rollout.scale(&new.name, rollout.params.replicas).await?;
        if new.replicas == rollout.params.replicas && new.available == rollout.params.replicas {
            rollout.clean_up_history().await?;
        }
    }
    Ok(())
}

/// Returns whether any old ReplicaSet still reports pods, or owns a pod that has
/// not finished.
fn old_pods_running(rollout: &Rollout<'_>) -> bool {
    let old: Vec<&ReplicaSet> = rollout.sets.iter().enumerate().filter(|(i, _)| Some(*i) != rollout.new).map(|(_, rs)| rs).collect();
    if old.iter().any(|rs| rs.status.as_ref().is_some_and(|s| s.replicas > 0)) {
        return true;
    }
    let uids: Vec<&str> = old.iter().filter_map(|rs| rs.metadata.uid.as_deref()).collect();
    rollout.context.pods.state().iter().any(|pod| {
        let owned = crate::pods::controller_of(&pod.metadata).is_some_and(|o| uids.contains(&o.uid.as_str()));
        owned && !matches!(crate::pods::phase(pod), Some("Succeeded") | Some("Failed"))
    })
}

/// Chooses the retry delay after a failed reconcile.
pub fn error_policy(deployment: Arc<Deployment>, error: &Error, _context: Arc<Context>) -> Action {
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let namespace = deployment.metadata.namespace.as_deref().unwrap_or_default();
    if error.is_transient() {
        tracing::debug!(deployment.namespace = namespace, deployment.name = name, %error, "retrying after a conflict");
        return Action::requeue(Duration::from_millis(500));
    }
    tracing::warn!(deployment.namespace = namespace, deployment.name = name, %error, "deployment reconcile failed");
    Action::requeue(Duration::from_secs(5))
}
