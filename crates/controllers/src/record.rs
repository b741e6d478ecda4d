//! Event recording for the workload controllers. Events are best effort: a failed
//! write is logged and never fails the reconcile that produced it.

use capstan_api::events::{self, new_event};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
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
    let event = new_event(&reference, event_type, reason, message, kind.component());
    let namespace = event.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    if let Err(error) = api.create(&PostParams::default(), &event).await {
        tracing::debug!(
            event.reason = reason,
            object.name = metadata.name.as_deref().unwrap_or_default(),
            object.namespace = %namespace,
            %error,
            "failed to record event"
        );
    }
}
