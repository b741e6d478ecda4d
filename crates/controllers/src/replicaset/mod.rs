//! The ReplicaSet controller: keeps `spec.replicas` active pods per ReplicaSet.
//!
//! Stages: a pod reflector (shared with the Deployment controller) and the
//! controller's own ReplicaSet cache feed [`reconcile`], which plans from the caches
//! ([`plan`]) and writes through [`commit`]. Pod events map to the controlling
//! ReplicaSet, or for orphans to every ReplicaSet whose selector matches, so
//! adoption happens without waiting for a resync.

pub mod commit;
pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use tracing::Instrument;

use crate::expectations::Expectations;
use crate::pods;
use crate::selector::{self, SelectorError};

/// How often a ReplicaSet is looked at even without events. Waiting for events alone
/// would never repair a change lost across a watch restart.
const RESYNC: Duration = Duration::from_secs(300);

/// Errors from reconciling one ReplicaSet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("replica set {namespace}/{name} has an invalid selector")]
    InvalidSelector {
        namespace: String,
        name: String,
        #[source]
        source: SelectorError,
    },
    #[error("failed to {action} pod {namespace}/{pod} for replica set {name}")]
    PodWriteFailed {
        action: &'static str,
        namespace: String,
        name: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to update the status of replica set {namespace}/{name}")]
    StatusWriteFailed {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the pod cache closed before it finished its first list")]
    CacheClosed,
}

impl Error {
    /// Returns whether the write lost an optimistic-concurrency race, which a
    /// fresh look at the cache resolves.
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::PodWriteFailed { source, .. } | Error::StatusWriteFailed { source, .. } => {
                matches!(source, kube::Error::Api(status) if status.is_conflict())
            }
            _ => false,
        }
    }
}

/// Shared state of the ReplicaSet reconciler.
pub struct Context {
    pub client: Client,
    /// All pods in the cluster, from the shared pod reflector.
    pub pods: Store<Pod>,
    pub expectations: Expectations,
}

/// Builds the ReplicaSet controller. Its store is the ReplicaSet cache that the
/// Deployment controller reads too.
///
/// Both trigger streams come from the shared reflectors whose stores the reconciler
/// reads, so a reconcile triggered by an event always sees that event in the cache.
pub fn controller(
    replica_set_events: impl Stream<Item = Arc<ReplicaSet>> + Send + 'static,
    replica_sets: Store<ReplicaSet>,
    pod_events: impl Stream<Item = Arc<Pod>> + Send + 'static,
) -> Controller<ReplicaSet> {
    let owners = replica_sets.clone();
    Controller::for_shared_stream(replica_set_events, replica_sets)
        .watches_shared_stream(pod_events, move |pod| owners_of(&pod, &owners))
}

/// Runs the controller until its watch streams end.
pub async fn run(controller: Controller<ReplicaSet>, context: Arc<Context>) {
    controller
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "replica set reconcile did not complete");
            }
        })
        .await;
}

/// Maps a pod event to the ReplicaSets that must look at it.
fn owners_of(pod: &Pod, replica_sets: &Store<ReplicaSet>) -> Vec<ObjectRef<ReplicaSet>> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    if let Some(owner) = pods::controller_of(&pod.metadata) {
        if owner.kind == "ReplicaSet" {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    replica_sets
        .state()
        .iter()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|rs| {
            rs.spec.as_ref().is_some_and(|spec| {
                !selector::is_empty(&spec.selector)
                    && selector::matches(&spec.selector, pod.metadata.labels.as_ref()).unwrap_or(false)
            })
        })
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

/// Brings one ReplicaSet's pods and status in line with its spec.
pub async fn reconcile(rs: Arc<ReplicaSet>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let span = tracing::debug_span!("reconcile", replicaset.namespace = %namespace, replicaset.name = %name);
    async move {
        context.pods.wait_until_ready().await.map_err(|_| Error::CacheClosed)?;

        // A ReplicaSet with an empty selector would claim every pod in its namespace.
        if rs.spec.as_ref().is_none_or(|spec| selector::is_empty(&spec.selector)) {
            tracing::warn!("replica set has an empty selector, so it is not synced");
            return Ok(Action::await_change());
        }

        // Plan from the cache.
        let namespace_pods = context
            .pods
            .state_filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace.as_str()));
        let plan = plan::plan(&rs, &namespace_pods).map_err(|source| Error::InvalidSelector {
            namespace: namespace.clone(),
            name: name.clone(),
            source,
        })?;

        // Claim, then create or delete only once earlier writes show in the cache.
        commit::claim(&context, &rs, &plan).await?;
        let key = rs.metadata.uid.clone().unwrap_or_else(|| format!("{namespace}/{name}"));
        crate::expectations::confirm_unseen_creations(&context.expectations, &context.client, &namespace, &key).await;
        let caught_up = context.expectations.satisfied(
            &key,
            |pod_name| namespace_pods.iter().any(|p| p.metadata.name.as_deref() == Some(pod_name)),
            |uid| {
                !namespace_pods
                    .iter()
                    .any(|p| p.metadata.uid.as_deref() == Some(uid) && p.metadata.deletion_timestamp.is_none())
            },
        );
        let failure = if caught_up {
            commit::manage(&context, &rs, &plan, &key).await
        } else {
            tracing::debug!("waiting for earlier pod writes to reach the cache");
            None
        };

        // Report what the cache shows.
        let (status, next_available) = plan::status(&rs, &plan.active, failure.as_ref(), jiff::Timestamp::now());
        commit::write_status(&context, &rs, status).await?;
        let mut next = next_available.map_or(RESYNC, |wait| wait + Duration::from_secs(1));
        if !caught_up {
            next = next.min(crate::expectations::UNSEEN_CREATION_CHECK);
        }
        if failure.is_some() {
            next = next.min(Duration::from_secs(10));
        }
        Ok(Action::requeue(next))
    }
    .instrument(span)
    .await
}

/// Chooses the retry delay after a failed reconcile.
pub fn error_policy(rs: Arc<ReplicaSet>, error: &Error, _context: Arc<Context>) -> Action {
    let name = rs.metadata.name.as_deref().unwrap_or_default();
    let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
    if error.is_conflict() {
        tracing::debug!(replicaset.namespace = namespace, replicaset.name = name, %error, "write conflict, retrying");
        return Action::requeue(Duration::from_millis(500));
    }
    tracing::warn!(replicaset.namespace = namespace, replicaset.name = name, %error, "replica set reconcile failed");
    Action::requeue(Duration::from_secs(5))
}
