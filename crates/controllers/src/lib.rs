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

/// Runs the Deployment and ReplicaSet controllers until one fails.
pub async fn run_workload_controllers(client: Client) -> Result<(), Error> {
    // The pod cache, shared by both controllers.
    let (pods, pod_writer) = reflector::store::<Pod>();
    let pod_watch = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff();
    let pod_reflector = reflector(pod_writer, pod_watch).for_each(|event| async move {
        if let Err(error) = event {
            tracing::debug!(%error, "pod watch failed, retrying");
        }
    });

    let rs_controller = replicaset::controller(&client);
    let rs_context = Arc::new(replicaset::Context {
        client: client.clone(),
        pods: pods.clone(),
        expectations: expectations::Expectations::default(),
    });

    // The Deployment controller reads the ReplicaSet controller's cache.
    let deployment_context = Arc::new(deployment::Context {
        client: client.clone(),
        replica_sets: rs_controller.store(),
        pods,
    });
    let deployment_controller = deployment::controller(&client);
    tracing::info!("starting the deployment and replica set controllers");

    tokio::select! {
        () = pod_reflector => Err(Error::ControllerStopped { controller: "pod cache" }),
        () = replicaset::run(rs_controller, rs_context) => Err(Error::ControllerStopped { controller: "replica set" }),
        () = deployment::run(deployment_controller, deployment_context) => Err(Error::ControllerStopped { controller: "deployment" }),
    }
}
