//! Event recording for the workload controllers. Events are best effort: a failed
//! write is logged and never fails the reconcile that produced it.

use capstan_api::events;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;

/// Reporting component of the Deployment controller's events, as in Kubernetes.
pub const DEPLOYMENT_COMPONENT: &str = "deployment-controller";
/// Reporting component of the ReplicaSet controller's events, as in Kubernetes.
pub const REPLICASET_COMPONENT: &str = "replicaset-controller";
/// Reporting component of the Job controller's events, as in Kubernetes.
pub const JOB_COMPONENT: &str = "job-controller";

/// An object kind the controllers report on.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Deployment,
    ReplicaSet,
    Job,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Job => "Job",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Kind::Deployment | Kind::ReplicaSet => "apps/v1",
            Kind::Job => "batch/v1",
        }
    }

    fn component(self) -> &'static str {
        match self {
            Kind::Deployment => DEPLOYMENT_COMPONENT,
            Kind::ReplicaSet => REPLICASET_COMPONENT,
            Kind::Job => JOB_COMPONENT,
        }
    }
}

/// Creates a Normal event about the object.
pub async fn normal(client: &Client, kind: Kind, metadata: &ObjectMeta, reason: &str, message: &str) {
    write(client, kind, metadata, events::NORMAL, reason, message).await;
}

/// Creates a Warning event about the object.
pub async fn warning(client: &Client, kind: Kind, metadata: &ObjectMeta, reason: &str, message: &str) {
    write(client, kind, metadata, events::WARNING, reason, message).await;
}

async fn write(
    client: &Client,
    kind: Kind,
    metadata: &ObjectMeta,
    event_type: &str,
    reason: &str,
    message: &str,
) {
    let reference = events::object_reference(kind.api_version(), kind.name(), metadata);
    events::record(client, &reference, event_type, reason, message, kind.component()).await;
}
