//! capstan-controllers: the reconcile loops that turn declared workloads into pods and
//! list the pods behind Services.
//!
//! Start with [`run_workload_controllers`], which wires the shared caches and runs
//! the [`deployment`], [`replicaset`], [`job`] and [`endpoints`] controllers. Each controller module is laid out as
//! watch → cache → queue (kube-runtime's `Controller`) → `reconcile`, with the pure
//! planning in a `plan` module and the API writes in a `commit` module.

mod expectations;
mod pod_writes;
mod pods;
mod record;
mod selector;

pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod job;
pub mod namespace;
pub mod replicaset;

use std::sync::Arc;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Client;

/// Errors that stop the workload controllers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A controller's streams ended. kube-runtime retries watch errors with backoff,
    /// so this happens only when the process is shutting down or a stream closed.
    #[error("the {controller} controller stopped")]
    ControllerStopped { controller: &'static str },
}

/// Events a shared reflector buffers for each subscriber before it waits for the slowest.
const SHARED_BUFFER: usize = 1024;

/// Runs the Deployment, ReplicaSet, Job and endpoints controllers until one fails.
pub async fn run_workload_controllers(client: Client) -> Result<(), Error> {
    // One reflector per kind fills a cache and, through subscriptions, triggers the
    // controllers. Because the cache is written before subscribers see an event, a
    // reconcile never reads a cache older than the event that triggered it.
    let (pods, pod_writer) = reflector::store_shared::<Pod>(SHARED_BUFFER);
    let (replica_sets, rs_writer) = reflector::store_shared::<ReplicaSet>(SHARED_BUFFER);
    let (Some(pod_events), Some(pod_events_for_endpoints), Some(rs_events), Some(rs_events_for_deployments)) =
        (pod_writer.subscribe(), pod_writer.subscribe(), rs_writer.subscribe(), rs_writer.subscribe())
    else {
        return Err(Error::ControllerStopped { controller: "shared cache" });
    };
    let (jobs, job_writer) = reflector::store_shared::<Job>(SHARED_BUFFER);
    let (Some(job_events), Some(pod_events_for_jobs)) = (job_writer.subscribe(), pod_writer.subscribe()) else {
        return Err(Error::ControllerStopped { controller: "shared cache" });
    };
    let (deleted_pods_tx, deleted_pods) = mpsc::channel(SHARED_BUFFER);
    let (deleted_job_pods_tx, deleted_job_pods) = mpsc::channel(SHARED_BUFFER);
    let pod_reflector = shared_reflector(
        Api::<Pod>::all(client.clone()),
        pod_writer,
        "pod",
        vec![deleted_pods_tx, deleted_job_pods_tx],
    );
    let rs_reflector = shared_reflector(Api::<ReplicaSet>::all(client.clone()), rs_writer, "replica set", Vec::new());
    let job_reflector = shared_reflector(Api::<Job>::all(client.clone()), job_writer, "job", Vec::new());
    let endpoints_controllers = run_endpoints_controller(
        client.clone(),
        pods.clone(),
        futures::stream::select(pod_events_for_endpoints, deleted_pods),
    );

    let rs_controller = replicaset::controller(rs_events, replica_sets.clone(), pod_events);
    let rs_context = Arc::new(replicaset::Context {
        client: client.clone(),
        pods: pods.clone(),
        expectations: expectations::Expectations::default(),
    });
    let deployment_context = Arc::new(deployment::Context {
        client: client.clone(),
        replica_sets,
        pods: pods.clone(),
    });
    let deployment_controller = deployment::controller(&client, rs_events_for_deployments);
    let job_controller = job::controller(job_events, jobs, futures::stream::select(pod_events_for_jobs, deleted_job_pods));
    let job_context = Arc::new(job::Context {
        client: client.clone(),
        pods: pods.clone(),
        expectations: expectations::Expectations::default(),
    });
    tracing::info!("starting the deployment, replica set and job controllers");

    tokio::select! {
        () = pod_reflector => Err(Error::ControllerStopped { controller: "pod cache" }),
        () = rs_reflector => Err(Error::ControllerStopped { controller: "replica set cache" }),
        () = job_reflector => Err(Error::ControllerStopped { controller: "job cache" }),
        () = job::run(job_controller, job_context) => Err(Error::ControllerStopped { controller: "job" }),
        () = replicaset::run(rs_controller, rs_context) => Err(Error::ControllerStopped { controller: "replica set" }),
        () = deployment::run(deployment_controller, deployment_context) => Err(Error::ControllerStopped { controller: "deployment" }),
        result = endpoints_controllers => result,
    }
}

/// Runs the endpoints controller and its orphan sweep. `pod_events` carries pods that
/// were applied or deleted, from the shared pod reflector whose cache is `pods`.
async fn run_endpoints_controller(
    client: Client,
    pods: reflector::Store<Pod>,
    pod_events: impl futures::Stream<Item = Arc<Pod>> + Send + 'static,
) -> Result<(), Error> {
    let (services, service_writer) = reflector::store_shared::<Service>(SHARED_BUFFER);
    let (slices, slice_writer) = reflector::store_shared::<EndpointSlice>(SHARED_BUFFER);
    let (endpoints, endpoints_writer) = reflector::store_shared::<Endpoints>(SHARED_BUFFER);
    let (Some(service_events), Some(slice_events), Some(endpoints_events)) =
        (service_writer.subscribe(), slice_writer.subscribe(), endpoints_writer.subscribe())
    else {
        return Err(Error::ControllerStopped { controller: "endpoints cache" });
    };

    // Deleted slices and Endpoints wake their Service so it writes them again; deleted
    // Services wake the orphan sweep.
    let (deleted_services_tx, deleted_services) = mpsc::channel(SHARED_BUFFER);
    let (deleted_slices_tx, deleted_slices) = mpsc::channel(SHARED_BUFFER);
    let (deleted_endpoints_tx, deleted_endpoints) = mpsc::channel(SHARED_BUFFER);
    let service_reflector =
        shared_reflector(Api::<Service>::all(client.clone()), service_writer, "service", vec![deleted_services_tx]);
    let slice_reflector =
        shared_reflector(Api::<EndpointSlice>::all(client.clone()), slice_writer, "endpoint slice", vec![deleted_slices_tx]);
    let endpoints_reflector =
        shared_reflector(Api::<Endpoints>::all(client.clone()), endpoints_writer, "endpoints", vec![deleted_endpoints_tx]);

    let triggers = endpoints::Triggers {
        services: service_events,
        pods: pod_events,
        slices: futures::stream::select(slice_events, deleted_slices),
        endpoints: futures::stream::select(endpoints_events, deleted_endpoints),
    };
    let controller = endpoints::controller(triggers, services.clone(), slices.clone());
    let context = Arc::new(endpoints::Context { client, pods, slices, endpoints });
    tracing::info!("starting the endpoints controller");

    tokio::select! {
        () = service_reflector => Err(Error::ControllerStopped { controller: "service cache" }),
        () = slice_reflector => Err(Error::ControllerStopped { controller: "endpoint slice cache" }),
        () = endpoints_reflector => Err(Error::ControllerStopped { controller: "endpoints cache" }),
        () = endpoints::run(controller, context.clone()) => Err(Error::ControllerStopped { controller: "endpoints" }),
        () = endpoints::sweep_orphans(context, services, deleted_services) => Err(Error::ControllerStopped { controller: "endpoints sweep" }),
    }
}

/// Watches every `K` into `writer`, retrying watch errors with backoff; the future ends
/// only when the watch stream does. Objects deleted from the cache go to each of `deleted`, because
/// the subscriptions of a shared reflector carry only applied objects.
async fn shared_reflector<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    kind: &'static str,
    deleted: Vec<mpsc::Sender<Arc<K>>>,
) where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect_shared(writer)
        .for_each(|event| {
            let deleted = deleted.clone();
            async move {
                match event {
                    Ok(watcher::Event::Delete(object)) => {
                        let object = Arc::new(object);
                        for mut sender in deleted {
                            // A closed receiver means its controller stopped, which
                            // ends this reflector's task group anyway.
                            let _ = sender.send(object.clone()).await;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => tracing::debug!(%error, kind, "watch failed, retrying"),
                }
            }
        })
        .await;
}
