//! Event recording for the workload controllers. Events are best effort: a failed
//! write is logged and never fails the reconcile that produced it.

use capstan_api::events;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;

/// Reporting component of the Deployment controller's events, as in Kubernetes.
pub const DEPLOYMENT_COMPONENT: &str = "deployment-controller";
/// Reporting component of the ReplicaSet controller's events, as in Kubernetes.
pub const REPLICASET_COMPONENT: &str = "replicaset-controller";

/// An object kind the controllers report on.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Deployment,
    ReplicaSet,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::ReplicaSet => "ReplicaSet",
        }
    }

    fn component(self) -> &'static str {
        match self {
            Kind::Deployment => DEPLOYMENT_COMPONENT,
            Kind::ReplicaSet => REPLICASET_COMPONENT,
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
    let reference = events::object_reference("apps/v1", kind.name(), metadata);
    events::record(client, &reference, event_type, reason, message, kind.component()).await;
}
