//! Writing decisions back to the API server: the binding of a pod that fits, and the
//! `PodScheduled=False` condition and FailedScheduling event of a pod that does not.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::time::Instant;

/// A failed write of a scheduling decision.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The pod is gone or already bound, so there is nothing left to do for it.
    #[error("pod {namespace}/{name} can no longer be bound: {source}")]
    PodGone {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("binding pod {namespace}/{name} to node {node} failed: {source}")]
    BindFailed {
        namespace: String,
        name: String,
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("reporting pod {namespace}/{name} as unschedulable failed: {source}")]
    ReportFailed {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The bind phase.
///
/// Contract: the scheduling loop calls `bind` once per decision, after it has assumed the
/// pod on `node` in the snapshot and released the snapshot lock, so `bind` may do I/O.
/// It is not retried blindly: `Ok` confirms the assumption until the watch reports the
/// bound pod, `PodGone` drops the pod from the queue, and any other error takes the
/// assumption back and retries the pod after its backoff.
#[async_trait::async_trait]
pub trait Binder: Send + Sync {
    async fn bind(&self, namespace: &str, name: &str, node: &str) -> Result<(), BindError>;
}

/// Binds through `POST /api/v1/namespaces/{namespace}/pods/{name}/binding`.
pub struct ApiBinder {
    pub client: Client,
}

#[async_trait::async_trait]
impl Binder for ApiBinder {
    async fn bind(&self, namespace: &str, name: &str, node: &str) -> Result<(), BindError> {
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("Node".to_string()),
                name: Some(node.to_string()),
                ..ObjectReference::default()
            },
        };
        let body = serde_json::to_vec(&binding).unwrap_or_default();
        let request = kube::core::Request::new(format!("/api/v1/namespaces/{namespace}/pods"))
            .create_subresource("binding", name, &PostParams::default(), body);
        let request = match request {
            Ok(request) => request,
            Err(error) => {
                let source = kube::Error::BuildRequest(error);
                return Err(bind_failed(namespace, name, node, source));
            }
        };

        // The reference server returns a Status body, so only the HTTP code matters.
        match self.client.request_text(request).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                Err(BindError::PodGone {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    source: kube::Error::Api(status),
                })
            }
            Err(source) => Err(bind_failed(namespace, name, node, source)),
        }
    }
}

fn bind_failed(namespace: &str, name: &str, node: &str, source: kube::Error) -> BindError {
    BindError::BindFailed {
        namespace: namespace.to_string(),
        name: name.to_string(),
        node: node.to_string(),
        source,
    }
}

/// How often the same FailedScheduling message may be emitted again for one pod.
pub const EVENT_REPEAT_INTERVAL: Duration = Duration::from_secs(30);

/// Remembers the last FailedScheduling event per pod uid, so a pod retried every few
/// seconds does not flood the event list.
#[derive(Debug, Default)]
pub struct EventLimiter {
    last: HashMap<String, (String, Instant)>,
}

impl EventLimiter {
    /// Whether an event with `message` may be emitted now: always for a new message, and
    /// for a repeated one once `EVENT_REPEAT_INTERVAL` has passed.
    pub fn allow(&mut self, uid: &str, message: &str, now: Instant) -> bool {
        if let Some((last_message, at)) = self.last.get(uid)
            && last_message == message
            && now.duration_since(*at) < EVENT_REPEAT_INTERVAL
        {
            return false;
        }
        self.last.insert(uid.to_string(), (message.to_string(), now));
        true
    }

    /// Forgets a pod that was bound or deleted.
    pub fn forget(&mut self, uid: &str) {
        self.last.remove(uid);
    }
}

/// Whether the pod already carries `PodScheduled=False` with this exact message.
fn has_condition(pod: &Pod, message: &str) -> bool {
    let conditions = pod.status.as_ref().and_then(|status| status.conditions.as_ref());
    conditions.into_iter().flatten().any(|condition| {
        condition.type_ == "PodScheduled"
            && condition.status == "False"
            && condition.reason.as_deref() == Some("Unschedulable")
            && condition.message.as_deref() == Some(message)
    })
}

/// Sets `PodScheduled=False` with reason `Unschedulable` (skipped when already set with
/// the same message) and, when `emit_event` is true, emits a Warning FailedScheduling event.
pub async fn report_unschedulable(
    client: &Client,
    scheduler_name: &str,
    pod: &Pod,
    message: &str,
    emit_event: bool,
) -> Result<(), BindError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let failed = |source| BindError::ReportFailed {
        namespace: namespace.clone(),
        name: name.clone(),
        source,
    };

    // Write the condition with a strategic merge patch, which merges conditions by type.
    if !has_condition(pod, message) {
        let patch = serde_json::json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }]}});
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        pods.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map_err(failed)?;
    }

    // Emit the event that `kubectl describe pod` shows.
    if emit_event {
        let reference = capstan_api::events::object_reference("v1", "Pod", &pod.metadata);
        let warning = capstan_api::events::WARNING;
        capstan_api::events::record(client, &reference, warning, "FailedScheduling", message, scheduler_name).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_drops_repeats_within_interval() {
        let mut limiter = EventLimiter::default();
        let start = Instant::now();
        assert!(limiter.allow("u1", "no fit", start));
        assert!(!limiter.allow("u1", "no fit", start + Duration::from_secs(5)));
        assert!(limiter.allow("u1", "other reason", start + Duration::from_secs(6)));
        assert!(limiter.allow("u2", "other reason", start + Duration::from_secs(6)));
        assert!(limiter.allow("u1", "other reason", start + Duration::from_secs(40)));
    }

    #[test]
    fn condition_check_compares_message() {
        let mut pod = Pod::default();
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            conditions: Some(vec![k8s_openapi::api::core::v1::PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some("0/1 nodes are available".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert!(has_condition(&pod, "0/1 nodes are available"));
        assert!(!has_condition(&pod, "0/2 nodes are available"));
    }
}
