//! capstan-controllers: the reconcile loops that turn declared workloads into pods.
//!
//! Start with [`run_workload_controllers`], which wires the shared caches and runs
//! the [`deployment`] and [`replicaset`] controllers. Each controller module is laid out as
//! watch → cache → queue (kube-runtime's `Controller`) → `reconcile`, with the pure
//! planning in a `plan` module and the API writes in a `commit` module.

mod expectations;
mod pods;
mod record;
mod selector;

pub mod deployment;
pub mod gc;
pub mod namespace;
pub mod replicaset;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
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

/// Runs the Deployment and ReplicaSet controllers until one fails.
pub async fn run_workload_controllers(client: Client) -> Result<(), Error> {
    // One reflector per kind fills a cache and, through subscriptions, triggers the
    // controllers. Because the cache is written before subscribers see an event, a
    // reconcile never reads a cache older than the event that triggered it.
    let (pods, pod_writer) = reflector::store_shared::<Pod>(SHARED_BUFFER);
    let (replica_sets, rs_writer) = reflector::store_shared::<ReplicaSet>(SHARED_BUFFER);
    let (Some(pod_events), Some(rs_events), Some(rs_events_for_deployments)) =
        (pod_writer.subscribe(), rs_writer.subscribe(), rs_writer.subscribe())
    else {
        return Err(Error::ControllerStopped { controller: "shared cache" });
    };
    let pod_reflector = shared_reflector(Api::<Pod>::all(client.clone()), pod_writer, "pod");
    let rs_reflector = shared_reflector(Api::<ReplicaSet>::all(client.clone()), rs_writer, "replica set");

    let rs_controller = replicaset::controller(rs_events, replica_sets.clone(), pod_events);
    let rs_context = Arc::new(replicaset::Context {
        client: client.clone(),
        pods: pods.clone(),
        expectations: expectations::Expectations::default(),
    });
    let deployment_context = Arc::new(deployment::Context {
        client: client.clone(),
        replica_sets,
        pods,
    });
    let deployment_controller = deployment::controller(&client, rs_events_for_deployments);
    tracing::info!("starting the deployment and replica set controllers");

    tokio::select! {
        () = pod_reflector => Err(Error::ControllerStopped { controller: "pod cache" }),
        () = rs_reflector => Err(Error::ControllerStopped { controller: "replica set cache" }),
        () = replicaset::run(rs_controller, rs_context) => Err(Error::ControllerStopped { controller: "replica set" }),
        () = deployment::run(deployment_controller, deployment_context) => Err(Error::ControllerStopped { controller: "deployment" }),
    }
}

/// Watches every `K` into `writer`, retrying watch errors with backoff; the future ends
/// only when the watch stream does.
async fn shared_reflector<K>(api: Api<K>, writer: reflector::store::Writer<K>, kind: &'static str)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect_shared(writer)
        .for_each(|event| async move {
            if let Err(error) = event {
                tracing::debug!(%error, kind, "watch failed, retrying");
            }
        })
        .await;
}
