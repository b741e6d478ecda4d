//! The endpoints controller: lists the pods behind every Service that has a selector, as
//! `discovery.k8s.io/v1` EndpointSlices and as the legacy `v1` Endpoints object.
//!
//! Stages: shared reflectors for Services, pods, slices and Endpoints feed kube-runtime's
//! `Controller<Service>`. A pod event maps to the Services that select the pod or whose
//! slices list it; slice and Endpoints events map to their Service. [`reconcile`] computes
//! the content from the caches ([`backends`], [`slices`], [`legacy`]) and writes the
//! difference through [`commit`]. Services without a selector are left to their users,
//! who write the endpoints themselves.
//!
//! Slices carry an owner reference to their Service, so the garbage collector deletes
//! them with it. Endpoints carry none, as in Kubernetes, so [`sweep_orphans`] deletes
//! the ones this controller wrote once their Service is gone.

mod backends;
mod commit;
pub mod legacy;
pub mod slices;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use tracing::Instrument;

/// How often a Service is looked at even without events, because waiting for events
/// alone never repairs a change lost across a watch restart.
const RESYNC: Duration = Duration::from_secs(300);
/// How long a reconcile waits for the slice cache to show its own writes. The next
/// reconcile of the Service plans from the cache, and would create a slice twice if
/// the cache still missed the first one.
const CACHE_CATCH_UP: Duration = Duration::from_secs(2);

/// Errors from reconciling one Service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} {kind} {namespace}/{name}")]
    WriteFailed {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("a cache closed before it finished its first list")]
    CacheClosed,
}

impl Error {
    /// Returns whether the write lost an optimistic-concurrency race (or found the name
    /// taken), which a fresh look at the caches resolves.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::WriteFailed { source: kube::Error::Api(status), .. } if status.code == 409)
    }
}

/// Shared state of the endpoints reconciler.
pub struct Context {
    pub client: Client,
    /// All pods, from the reflector shared with the workload controllers.
    pub pods: Store<Pod>,
    pub slices: Store<EndpointSlice>,
    pub endpoints: Store<Endpoints>,
}

/// Event streams that wake the controller. Each stream yields objects that were
/// applied or deleted, because a deleted pod changes the endpoints as much as a new one.
pub struct Triggers<S, P, L, E> {
    pub services: S,
    pub pods: P,
    pub slices: L,
    pub endpoints: E,
}

/// Builds the endpoints controller over the shared Service cache.
pub fn controller<S, P, L, E>(triggers: Triggers<S, P, L, E>, services: Store<Service>, slices: Store<EndpointSlice>) -> Controller<Service>
where
    S: Stream<Item = Arc<Service>> + Send + 'static,
    P: Stream<Item = Arc<Pod>> + Send + 'static,
    L: Stream<Item = Arc<EndpointSlice>> + Send + 'static,
    E: Stream<Item = Arc<Endpoints>> + Send + 'static,
{
    let selecting = services.clone();
    Controller::for_shared_stream(triggers.services, services)
        .watches_shared_stream(triggers.pods, move |pod| services_of_pod(&pod, &selecting, &slices))
        .watches_shared_stream(triggers.slices, |slice| service_of_slice(&slice))
        .watches_shared_stream(triggers.endpoints, |endpoints| {
            let namespace = endpoints.metadata.namespace.clone().unwrap_or_default();
            endpoints.metadata.name.as_deref().map(|name| ObjectRef::new(name).within(&namespace))
        })
}

/// Runs the controller until its watch streams end.
pub async fn run(controller: Controller<Service>, context: Arc<Context>) {
    controller
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "service endpoints reconcile did not complete");
            }
        })
        .await;
}

/// Maps a pod event to the Services that must look at it: those whose selector matches
/// the pod now, and those whose slices still list it (its labels may have changed, or
/// it may be gone).
///
/// NOTE: this scans every Service and every slice of the pod's namespace per pod event,
/// which is fine for hundreds of Services but wants a pod-to-Service index beyond that.
fn services_of_pod(pod: &Pod, services: &Store<Service>, slices: &Store<EndpointSlice>) -> Vec<ObjectRef<Service>> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut refs: Vec<ObjectRef<Service>> = services
        .state()
        .iter()
        .filter(|service| backends::selects(service, pod))
        .map(|service| ObjectRef::from_obj(service.as_ref()))
        .collect();
    let uid = pod.metadata.uid.as_deref();
    let listing = slices.state().into_iter().filter(|slice| {
        slice.metadata.namespace.as_deref() == Some(namespace)
            && slice.endpoints.iter().any(|e| e.target_ref.as_ref().and_then(|r| r.uid.as_deref()) == uid)
    });
    refs.extend(listing.filter_map(|slice| service_of_slice(&slice)));
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    refs.dedup();
    refs
}

fn service_of_slice(slice: &EndpointSlice) -> Option<ObjectRef<Service>> {
    let name = slice.metadata.labels.as_ref()?.get(slices::SERVICE_NAME_LABEL)?;
    let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
    Some(ObjectRef::new(name).within(namespace))
}

/// Brings one Service's EndpointSlices and Endpoints in line with its pods.
pub async fn reconcile(service: Arc<Service>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let span = tracing::debug_span!("reconcile", service.namespace = %namespace, service.name = %name);
    async move {
        for ready in [context.pods.wait_until_ready().await, context.slices.wait_until_ready().await, context.endpoints.wait_until_ready().await] {
            ready.map_err(|_| Error::CacheClosed)?;
        }
        let managed: Vec<Arc<EndpointSlice>> = context.slices.state_filter(|slice| slices::is_managed_for(slice, &namespace, &name));
        let stored = context.endpoints.get(&ObjectRef::new(&name).within(&namespace));

        // Without a selector (or for ExternalName) the endpoints belong to the user, so
        // only what this controller wrote earlier is removed.
        let external = service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
        if backends::selector(&service).is_none() || external {
            let plan = slices::SlicePlan { delete: managed, ..slices::SlicePlan::default() };
            commit::apply_slices(&context.client, &namespace, plan).await?;
            if let Some(stored) = stored {
                commit::delete_endpoints(&context.client, &stored).await?;
            }
            return Ok(Action::await_change());
        }

        // Plan from the pod cache.
        let pods = context.pods.state_filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace.as_str()));
        let plan = slices::plan(&service, slices::desired(&service, &pods), &managed);
        let endpoints = legacy::desired(&service, &pods);
        let labels = legacy::labels(&service);

        // Write the slices, then wait until the cache shows them.
        if !plan.is_empty() {
            tracing::debug!(create = plan.create.len(), update = plan.update.len(), delete = plan.delete.len(), "writing endpoint slices");
            let written = commit::apply_slices(&context.client, &namespace, plan).await?;
            wait_for_slices(&context.slices, &namespace, written).await;
        }
        if stored.as_ref().is_none_or(|stored| !legacy::is_up_to_date(stored, &endpoints, &labels)) {
            tracing::debug!("writing endpoints");
            commit::write_endpoints(&context.client, &service, stored, endpoints, labels).await?;
        }
        Ok(Action::requeue(RESYNC))
    }
    .instrument(span)
    .await
}

/// Waits until the slice cache contains every written version and none of the deleted
/// slices, or until [`CACHE_CATCH_UP`] passes.
async fn wait_for_slices(cache: &Store<EndpointSlice>, namespace: &str, written: commit::Written) {
    let caught_up = || {
        let versions = written.versions.iter().all(|(name, version)| {
            let cached = cache.get(&ObjectRef::new(name).within(namespace));
            cached.is_some_and(|slice| slice.metadata.resource_version.as_ref() == Some(version))
        });
        let deletions = written.deleted.iter().all(|(name, uid)| {
            let cached = cache.get(&ObjectRef::new(name).within(namespace));
            cached.is_none_or(|slice| slice.metadata.uid.as_ref() != Some(uid))
        });
        versions && deletions
    };
    let deadline = tokio::time::Instant::now() + CACHE_CATCH_UP;
    while !caught_up() {
        if tokio::time::Instant::now() >= deadline {
            tracing::debug!("the slice cache did not show the writes in time");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Chooses the retry delay after a failed reconcile.
pub fn error_policy(service: Arc<Service>, error: &Error, _context: Arc<Context>) -> Action {
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    if error.is_conflict() {
        tracing::debug!(service.namespace = namespace, service.name = name, %error, "write conflict, retrying");
        return Action::requeue(Duration::from_millis(200));
    }
    tracing::warn!(service.namespace = namespace, service.name = name, %error, "service endpoints reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// Deletes the Endpoints this controller wrote whose Service is gone, at start, on every
/// Service deletion and every [`RESYNC`]. Runs until `deleted_services` ends.
pub async fn sweep_orphans(
    context: Arc<Context>,
    services: Store<Service>,
    deleted_services: impl Stream<Item = Arc<Service>> + Send,
) {
    let mut deleted_services = std::pin::pin!(deleted_services);
    let mut ticks = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            deleted = deleted_services.next() => {
                if deleted.is_none() {
                    return;
                }
            }
        }
        if services.wait_until_ready().await.is_err() || context.endpoints.wait_until_ready().await.is_err() {
            return;
        }
        for endpoints in context.endpoints.state().iter().filter(|e| legacy::is_managed(e)) {
            let namespace = endpoints.metadata.namespace.as_deref().unwrap_or_default();
            let name = endpoints.metadata.name.as_deref().unwrap_or_default();
            if services.get(&ObjectRef::new(name).within(namespace)).is_some() {
                continue;
            }
            match commit::delete_endpoints(&context.client, endpoints).await {
                Ok(()) => tracing::debug!(endpoints.namespace = namespace, endpoints.name = name, "deleted endpoints of a removed service"),
                Err(error) => tracing::warn!(%error, "failed to delete endpoints of a removed service"),
            }
        }
    }
}
