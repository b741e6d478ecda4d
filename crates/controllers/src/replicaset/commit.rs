//! Writes for one ReplicaSet reconcile: ownership patches, pod creation in
//! slow-start batches, pod deletion and the status subresource.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::plan::{self, Failure, Plan};
use super::{Context, Error};
use crate::pod_writes;
use crate::record::Kind;

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
    let owner = owner(context, rs, key);
    let pod = plan::pod_from_template(rs);

    // Stop at the first batch with a failure, so a broken template costs few requests.
    for batch in plan::slow_start_batches(count) {
        if let Some(message) = pod_writes::create(&owner, &pod, batch).await {
            return Some(Failure { reason: "FailedCreate", message });
        }
    }
    None
}

async fn delete_pods(context: &Context, rs: &ReplicaSet, victims: &[Arc<Pod>], key: &str) -> Option<Failure> {
    let message = pod_writes::delete(&owner(context, rs, key), victims).await?;
    Some(Failure { reason: "FailedDelete", message })
}

fn owner<'a>(context: &'a Context, rs: &'a ReplicaSet, key: &'a str) -> pod_writes::Owner<'a> {
    pod_writes::Owner {
        client: &context.client,
        kind: Kind::ReplicaSet,
        metadata: &rs.metadata,
        expectations: &context.expectations,
        key,
    }
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
