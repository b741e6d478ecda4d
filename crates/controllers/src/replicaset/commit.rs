//! Writes for one ReplicaSet reconcile: ownership patches, pod creation in
//! slow-start batches, pod deletion and the status subresource.

use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

use super::plan::{self, Failure, Plan};
use super::{Context, Error};
use crate::record::{self, Kind};

/// Adopts matching orphans and releases owned pods that stopped matching.
///
/// Each patch carries the pod's uid and resourceVersion, so a pod replaced or
/// changed since the cache saw it is left alone and the write reports a conflict.
pub async fn claim(context: &Context, rs: &ReplicaSet, plan: &Plan) -> Result<(), Error> {
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let rs_uid = rs.metadata.uid.clone().unwrap_or_default();
    let ours = plan::controller_reference(rs);

    let adoptions = plan.adopt.iter().map(|pod| {
        let mut references = pod.metadata.owner_references.clone().unwrap_or_default();
        references.push(ours.clone());
        (pod, "adopt", references)
    });
    let releases = plan.release.iter().map(|pod| {
        let mut references = pod.metadata.owner_references.clone().unwrap_or_default();
        references.retain(|r| r.uid != rs_uid);
        (pod, "release", references)
    });
    for (pod, action, references) in adoptions.chain(releases) {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let patch = json!({
            "metadata": {
                "uid": pod.metadata.uid,
                "resourceVersion": pod.metadata.resource_version,
                "ownerReferences": references,
            }
        });
        match api.patch(&pod_name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => tracing::debug!(pod.name = %pod_name, action, "changed pod ownership"),
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(source) => {
                return Err(Error::PodWriteFailed {
                    action,
                    namespace,
                    name: rs.metadata.name.clone().unwrap_or_default(),
                    pod: pod_name,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Creates or deletes pods as planned and returns the first failure, which the
/// status reports as the `ReplicaFailure` condition.
pub async fn manage(context: &Context, rs: &ReplicaSet, plan: &Plan, key: &str) -> Option<Failure> {
    if plan.create > 0 {
        return create_pods(context, rs, plan.create, key).await;
    }
    if !plan.delete.is_empty() {
        return delete_pods(context, rs, &plan.delete, key).await;
    }
    None
}

async fn create_pods(context: &Context, rs: &ReplicaSet, count: usize, key: &str) -> Option<Failure> {
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let pod = plan::pod_from_template(rs);

    // Stop at the first batch with a failure, so a broken template costs few requests.
    for batch in plan::slow_start_batches(count) {
        let params = PostParams::default();
        let results = join_all((0..batch).map(|_| api.create(&params, &pod))).await;
        let mut failure = None;
        for result in results {
            match result {
                Ok(created) => {
                    let pod_name = created.metadata.name.unwrap_or_default();
                    context.expectations.expect_creation(key, pod_name.clone());
                    tracing::debug!(pod.name = %pod_name, "created pod");
                    let message = format!("Created pod: {pod_name}");
                    record::normal(&context.client, Kind::ReplicaSet, &rs.metadata, "SuccessfulCreate", &message).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "failed to create pod");
                    let message = format!("Error creating: {error}");
                    record::warning(&context.client, Kind::ReplicaSet, &rs.metadata, "FailedCreate", &message).await;
                    failure.get_or_insert(Failure { reason: "FailedCreate", message });
                }
            }
        }
        if failure.is_some() {
            return failure;
        }
    }
    None
}

async fn delete_pods(context: &Context, rs: &ReplicaSet, victims: &[Arc<Pod>], key: &str) -> Option<Failure> {
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
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
                    context.expectations.expect_deletion(key, uid);
                }
                let message = format!("Deleted pod: {pod_name}");
                record::normal(&context.client, Kind::ReplicaSet, &rs.metadata, "SuccessfulDelete", &message).await;
            }
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(error) => {
                tracing::warn!(pod.name = %pod_name, %error, "failed to delete pod");
                let message = format!("Error deleting: {error}");
                record::warning(&context.client, Kind::ReplicaSet, &rs.metadata, "FailedDelete", &message).await;
                failure.get_or_insert(Failure { reason: "FailedDelete", message });
            }
        }
    }
    failure
}

/// Writes `status` unless it equals the cached one. The write carries the cached
/// resourceVersion, so a stale plan fails with a conflict and is planned again.
pub async fn write_status(context: &Context, rs: &ReplicaSet, status: ReplicaSetStatus) -> Result<(), Error> {
    if rs.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(context.client.clone(), &namespace);
    let mut updated = rs.clone();
    updated.status = Some(status);
    match api.replace_status(&name, &PostParams::default(), &updated).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(source) => Err(Error::StatusWriteFailed { namespace, name, source }),
    }
}
