//! Writes for one Job reconcile: pod creation and deletion, the status subresource,
//! events, and deleting a finished Job after `ttlSecondsAfterFinished`.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::Action;

use super::plan::Note;
use super::{Context, Error};
use crate::pod_writes;
use crate::record::{self, Kind};

/// Builds a pod from the Job's template, owned by the Job as its controller.
pub fn pod_from_template(job: &Job) -> Pod {
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let owner = OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: name.clone(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: job.metadata.namespace.clone(),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Creates `count` pods at once, recording each creation as an expectation under `key`.
pub async fn create_pods(context: &Context, job: &Job, count: usize, key: &str) {
    if count > 0 {
        pod_writes::create(&owner(context, job, key), &pod_from_template(job), count).await;
    }
}

/// Deletes the given pods, each guarded by its uid, recording each as an expectation.
pub async fn delete_pods(context: &Context, job: &Job, victims: &[Arc<Pod>], key: &str) {
    if !victims.is_empty() {
        pod_writes::delete(&owner(context, job, key), victims).await;
    }
}

fn owner<'a>(context: &'a Context, job: &'a Job, key: &'a str) -> pod_writes::Owner<'a> {
    pod_writes::Owner {
        client: &context.client,
        kind: Kind::Job,
        metadata: &job.metadata,
        expectations: &context.expectations,
        key,
    }
}

/// Writes `status` unless it equals the cached one. The write carries the cached
/// resourceVersion, so a stale plan fails with a conflict and is planned again.
pub async fn write_status(context: &Context, job: &Job, status: JobStatus) -> Result<(), Error> {
    if job.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
    let mut updated = job.clone();
    updated.status = Some(status);
    match api.replace_status(&name, &PostParams::default(), &updated).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(source) => Err(Error::StatusWriteFailed { namespace, name, source }),
    }
}

/// Records a planned event about the Job.
pub async fn record(context: &Context, job: &Job, note: &Note) {
    if note.warning {
        record::warning(&context.client, Kind::Job, &job.metadata, note.reason, &note.message).await;
    } else {
        record::normal(&context.client, Kind::Job, &job.metadata, note.reason, &note.message).await;
    }
}

/// Deletes a finished Job whose `ttlSecondsAfterFinished` has passed, with its pods in
/// the background, or returns when to look again.
pub async fn expire(context: &Context, job: &Job, now: Timestamp) -> Result<Action, Error> {
    let Some(remaining) = super::plan::ttl_remaining(job, now) else {
        return Ok(Action::await_change());
    };
    if !remaining.is_zero() {
        return Ok(Action::requeue(remaining + std::time::Duration::from_millis(200)));
    }
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions { uid: job.metadata.uid.clone(), resource_version: None }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {
            tracing::info!("deleted finished job after its ttlSecondsAfterFinished");
            Ok(Action::await_change())
        }
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(Action::await_change()),
        Err(source) => Err(Error::DeleteFailed { namespace, name, source }),
    }
}
