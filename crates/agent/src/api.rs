//! The cluster-side effects of pod workers: status writes, deletes, Events, and the
//! ConfigMaps, Secrets and Services that containers read their environment from.
//!
//! [`PodApi`] keeps these behind a trait so the worker's state machine runs in unit tests
//! against [`RecordingPodApi`]; [`KubePodApi`] is the real client.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodStatus, Secret, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};

/// Name the agent reports as the source of its Events.
pub const COMPONENT: &str = "kubelet";

/// Failure of a request to the API server.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("failed to {action} pod {namespace}/{name}: {source}")]
    Pod {
        action: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to list services in namespace {namespace}: {source}")]
    ListServices {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to read {kind} {namespace}/{name}: {source}")]
    Read {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The API calls a pod worker makes.
#[async_trait::async_trait]
pub trait PodApi: Send + Sync + 'static {
    /// Replaces the pod's status with `status` (a merge patch of `pods/{name}/status`).
    async fn patch_status(&self, pod: &Pod, status: &PodStatus) -> Result<(), ApiError>;
    /// Deletes the pod at once, but only if it still has `uid`.
    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError>;
    /// Records an Event about the pod. Failures are logged, never returned, because a lost
    /// Event must not stop a pod.
    async fn record_event(&self, pod: &Pod, event_type: &str, reason: &str, message: &str);
    /// Reads a ConfigMap; `Ok(None)` when it does not exist.
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ApiError>;
    /// Reads a Secret; `Ok(None)` when it does not exist.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ApiError>;
    /// Lists the Services of a namespace.
    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ApiError>;
}

/// [`PodApi`] over a `kube::Client`.
pub struct KubePodApi {
    client: Client,
}

impl KubePodApi {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn pod_key(pod: &Pod) -> (String, String) {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    (namespace, pod.metadata.name.clone().unwrap_or_default())
}

#[async_trait::async_trait]
impl PodApi for KubePodApi {
    async fn patch_status(&self, pod: &Pod, status: &PodStatus) -> Result<(), ApiError> {
        let (namespace, name) = pod_key(pod);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let patch = serde_json::json!({ "status": status });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(source) => Err(ApiError::Pod {
                action: "patch status of",
                namespace,
                name,
                source,
            }),
        }
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            // Already gone, or replaced by a pod of the same name: nothing left to delete.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
            Err(source) => Err(ApiError::Pod {
                action: "delete",
                namespace: namespace.to_string(),
                name: name.to_string(),
                source,
            }),
        }
    }

    /// Writes the event in the background, as kubelet's recorder does, so that a pod's
    /// start does not wait for it.
    async fn record_event(&self, pod: &Pod, event_type: &str, reason: &str, message: &str) {
        let reference = capstan_api::events::object_reference("v1", "Pod", &pod.metadata);
        let client = self.client.clone();
        let (event_type, reason, message) = (event_type.to_string(), reason.to_string(), message.to_string());
        tokio::spawn(async move {
            capstan_api::events::record(&client, &reference, &event_type, &reason, &message, COMPONENT).await;
        });
    }

    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ApiError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name).await.map_err(|source| ApiError::Read {
            kind: "configmap",
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        })
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ApiError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name).await.map_err(|source| ApiError::Read {
            kind: "secret",
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        })
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ApiError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        match api.list(&ListParams::default()).await {
            Ok(list) => Ok(list.items),
            Err(source) => Err(ApiError::ListServices { namespace: namespace.to_string(), source }),
        }
    }
}

#[cfg(any(test, feature = "test-util"))]
pub use recording::RecordingPodApi;

#[cfg(any(test, feature = "test-util"))]
mod recording {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    /// [`PodApi`] that keeps every status write, delete and Event, and serves ConfigMaps
    /// and Secrets that a test inserted.
    #[derive(Default)]
    pub struct RecordingPodApi {
        inner: Mutex<Recorded>,
    }

    #[derive(Default)]
    struct Recorded {
        statuses: Vec<PodStatus>,
        deletes: Vec<(String, String, String)>,
        events: Vec<(String, String, String)>,
        config_maps: BTreeMap<(String, String), ConfigMap>,
        secrets: BTreeMap<(String, String), Secret>,
        services: Vec<Service>,
    }

    impl RecordingPodApi {
        pub fn new() -> Self {
            Self::default()
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
            self.inner
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        }

        /// Every status written, oldest first.
        pub fn statuses(&self) -> Vec<PodStatus> {
            self.lock().statuses.clone()
        }

        /// The last status written.
        pub fn last_status(&self) -> Option<PodStatus> {
            self.lock().statuses.last().cloned()
        }

        /// Deletes as `(namespace, name, uid)`.
        pub fn deletes(&self) -> Vec<(String, String, String)> {
            self.lock().deletes.clone()
        }

        /// Events as `(type, reason, message)`.
        pub fn events(&self) -> Vec<(String, String, String)> {
            self.lock().events.clone()
        }

        /// Messages of the Events with `reason`.
        pub fn event_messages(&self, reason: &str) -> Vec<String> {
            let events = self.events();
            events
                .into_iter()
                .filter(|(_, r, _)| r == reason)
                .map(|(_, _, m)| m)
                .collect()
        }

        pub fn insert_config_map(&self, namespace: &str, config_map: ConfigMap) {
            let name = config_map.metadata.name.clone().unwrap_or_default();
            self.lock()
                .config_maps
                .insert((namespace.to_string(), name), config_map);
        }

        /// Adds a Service, listed in the namespace of its metadata.
        pub fn insert_service(&self, service: Service) {
            self.lock().services.push(service);
        }

        pub fn insert_secret(&self, namespace: &str, secret: Secret) {
            let name = secret.metadata.name.clone().unwrap_or_default();
            self.lock()
                .secrets
                .insert((namespace.to_string(), name), secret);
        }
    }

    #[async_trait::async_trait]
    impl PodApi for RecordingPodApi {
        async fn patch_status(&self, _pod: &Pod, status: &PodStatus) -> Result<(), ApiError> {
            self.lock().statuses.push(status.clone());
            Ok(())
        }

        async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError> {
            let delete = (namespace.to_string(), name.to_string(), uid.to_string());
            self.lock().deletes.push(delete);
            Ok(())
        }

        async fn record_event(&self, _pod: &Pod, event_type: &str, reason: &str, message: &str) {
            let event = (
                event_type.to_string(),
                reason.to_string(),
                message.to_string(),
            );
            self.lock().events.push(event);
        }

        async fn config_map(
            &self,
            namespace: &str,
            name: &str,
        ) -> Result<Option<ConfigMap>, ApiError> {
            Ok(self
                .lock()
                .config_maps
                .get(&(namespace.to_string(), name.to_string()))
                .cloned())
        }

        async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ApiError> {
            Ok(self
                .lock()
                .secrets
                .get(&(namespace.to_string(), name.to_string()))
                .cloned())
        }

        async fn services(&self, namespace: &str) -> Result<Vec<Service>, ApiError> {
            let services = self.lock().services.clone();
            let in_namespace = services.into_iter().filter(|s| s.metadata.namespace.as_deref() == Some(namespace));
            Ok(in_namespace.collect())
        }
    }
}
