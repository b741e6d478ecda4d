//! Pod creation and deletion shared by the ReplicaSet and Job controllers, with the
//! event and the expectation record that go with each write.

use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use crate::expectations::Expectations;
use crate::record::{self, Kind};

/// The object that owns the pods being written, and where its writes are recorded.
pub struct Owner<'a> {
    pub client: &'a Client,
    pub kind: Kind,
    pub metadata: &'a ObjectMeta,
    pub expectations: &'a Expectations,
    /// Expectations key of the owner (its uid).
    pub key: &'a str,
}

impl Owner<'_> {
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), self.metadata.namespace.as_deref().unwrap_or_default())
    }
}

/// Creates `count` copies of `pod` concurrently and returns the event message of the
/// first failure, if any.
pub async fn create(owner: &Owner<'_>, pod: &Pod, count: usize) -> Option<String> {
    let api = owner.pods();
    let params = PostParams::default();
    let results = join_all((0..count).map(|_| api.create(&params, pod))).await;
    let mut failure = None;
    for result in results {
        match result {
            Ok(created) => {
                let pod_name = created.metadata.name.unwrap_or_default();
                owner.expectations.expect_creation(owner.key, pod_name.clone());
                tracing::debug!(pod.name = %pod_name, "created pod");
                let message = format!("Created pod: {pod_name}");
                record::normal(owner.client, owner.kind, owner.metadata, "SuccessfulCreate", &message).await;
            }
            Err(error) => {
                tracing::warn!(%error, "failed to create pod");
                let message = format!("Error creating: {error}");
                record::warning(owner.client, owner.kind, owner.metadata, "FailedCreate", &message).await;
                failure.get_or_insert(message);
            }
        }
    }
    failure
}

/// Deletes `victims` concurrently, each guarded by its uid so that a replaced pod of the
/// same name survives, and returns the event message of the first failure, if any.
pub async fn delete(owner: &Owner<'_>, victims: &[Arc<Pod>]) -> Option<String> {
    let api = owner.pods();
    let deletions = victims.iter().map(|pod| {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone();
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: uid.clone(), resource_version: None }),
            ..DeleteParams::default()
        };
        let api = api.clone();
        async move { (name.clone(), uid, api.delete(&name, &params).await) }
    });
    let mut failure = None;
    for (pod_name, uid, result) in join_all(deletions).await {
        match result {
            Ok(_) => {
                if let Some(uid) = uid {
                    owner.expectations.expect_deletion(owner.key, uid);
                }
                let message = format!("Deleted pod: {pod_name}");
                record::normal(owner.client, owner.kind, owner.metadata, "SuccessfulDelete", &message).await;
            }
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(error) => {
                tracing::warn!(pod.name = %pod_name, %error, "failed to delete pod");
                let message = format!("Error deleting: {error}");
                record::warning(owner.client, owner.kind, owner.metadata, "FailedDelete", &message).await;
                failure.get_or_insert(message);
            }
        }
    }
    failure
}
