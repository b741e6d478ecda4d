//! The Job controller: runs a Job's pods to the wanted number of completions, retries
//! failed pods up to `backoffLimit`, and deletes finished Jobs after their TTL.
//!
//! Stages: the shared pod reflector and the controller's Job cache feed [`reconcile`],
//! which plans from the caches ([`plan`]) and writes through [`commit`]. Pod events map
//! to the Job named in the pod's controller reference.
//!
//! NOTE: the controller neither adopts orphaned pods that match a manual selector nor
//! releases pods that stop matching. It manages only pods whose controller reference
//! names the Job.

pub mod commit;
pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use tracing::Instrument;

use crate::expectations::Expectations;
use crate::pods;

/// How often a running Job is looked at even without events, to repair a change lost
/// across a watch restart.
const RESYNC: Duration = Duration::from_secs(300);

/// Delay before a Job that deleted pods is looked at again without events.
const DELETION_CHECK: Duration = Duration::from_secs(2);

/// Errors from reconciling one Job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to update the status of job {namespace}/{name}")]
    StatusWriteFailed {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete finished job {namespace}/{name}")]
    DeleteFailed {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the pod cache closed before it finished its first list")]
    CacheClosed,
}

impl Error {
    /// Returns whether the write lost an optimistic-concurrency race, which a fresh look
    /// at the cache resolves.
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::StatusWriteFailed { source, .. } | Error::DeleteFailed { source, .. } => {
                matches!(source, kube::Error::Api(status) if status.is_conflict())
            }
            Error::CacheClosed => false,
        }
    }
}

/// Shared state of the Job reconciler.
pub struct Context {
    pub client: Client,
    /// All pods in the cluster, from the shared pod reflector.
    pub pods: Store<Pod>,
    pub expectations: Expectations,
}

/// Builds the Job controller from the shared Job and pod reflectors' event streams.
pub fn controller(
    job_events: impl Stream<Item = Arc<Job>> + Send + 'static,
    jobs: Store<Job>,
    pod_events: impl Stream<Item = Arc<Pod>> + Send + 'static,
) -> Controller<Job> {
    Controller::for_shared_stream(job_events, jobs).watches_shared_stream(pod_events, |pod| owner_of(&pod))
}

/// Runs the controller until its watch streams end.
pub async fn run(controller: Controller<Job>, context: Arc<Context>) {
    controller
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "job reconcile did not complete");
            }
        })
        .await;
}

/// Maps a pod event to the Job that controls the pod.
fn owner_of(pod: &Pod) -> Option<ObjectRef<Job>> {
    let owner = pods::controller_of(&pod.metadata)?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    (owner.kind == "Job" && owner.api_version.starts_with("batch/"))
        .then(|| ObjectRef::new(&owner.name).within(namespace))
}

/// Brings one Job's pods and status in line with its spec.
pub async fn reconcile(job: Arc<Job>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let span = tracing::debug_span!("reconcile", job.namespace = %namespace, job.name = %name);
    async move {
        context.pods.wait_until_ready().await.map_err(|_| Error::CacheClosed)?;
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let now = jiff::Timestamp::now();
        if plan::is_finished(&job) {
            return commit::expire(&context, &job, now).await;
        }

        // Plan from the cache, but create or delete only once earlier writes show in it.
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let owned = context.pods.state_filter(|pod| {
            pod.metadata.namespace.as_deref() == Some(namespace.as_str())
                && pods::controller_of(&pod.metadata).is_some_and(|owner| owner.uid == uid)
        });
        let caught_up = context.expectations.satisfied(
            &uid,
            |pod_name| owned.iter().any(|p| p.metadata.name.as_deref() == Some(pod_name)),
            |pod_uid| {
                !owned.iter().any(|p| p.metadata.uid.as_deref() == Some(pod_uid) && p.metadata.deletion_timestamp.is_none())
            },
        );
        if !caught_up {
            crate::expectations::confirm_unseen_creations(&context.expectations, &context.client, &namespace, &uid).await;
            tracing::debug!("waiting for earlier pod writes to reach the cache");
            return Ok(Action::requeue(crate::expectations::UNSEEN_CREATION_CHECK));
        }
        let plan = plan::plan(&job, &owned, now);

        // The status goes first: a FailureTarget or SuccessCriteriaMet condition must be
        // stored before the pods it ends are deleted, and a stale cached Job fails this
        // write with a conflict before any pod is written.
        commit::write_status(&context, &job, plan.status.clone()).await?;
        commit::delete_pods(&context, &job, &plan.delete, &uid).await;
        commit::create_pods(&context, &job, plan.create, &uid).await;
        for note in &plan.notes {
            commit::record(&context, &job, note).await;
        }
        let mut next = plan.requeue.map_or(RESYNC, |wait| wait.min(RESYNC) + Duration::from_millis(200));
        if !plan.delete.is_empty() {
            // Look again soon, in case a deleted pod's removal from the cache goes unseen.
            next = next.min(DELETION_CHECK);
        }
        Ok(Action::requeue(next))
    }
    .instrument(span)
    .await
}

/// Chooses the retry delay after a failed reconcile.
pub fn error_policy(job: Arc<Job>, error: &Error, _context: Arc<Context>) -> Action {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
    if error.is_conflict() {
        tracing::debug!(job.namespace = namespace, job.name = name, %error, "write conflict, retrying");
        return Action::requeue(Duration::from_millis(500));
    }
    tracing::warn!(job.namespace = namespace, job.name = name, %error, "job reconcile failed");
    Action::requeue(Duration::from_secs(5))
}
