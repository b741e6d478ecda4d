//! The namespace controller: empties a namespace that is being deleted, then removes the
//! `kubernetes` finalizer from `spec.finalizers` so the API server can drop it.
//!
//! Built on kube-runtime's `Controller`: the namespace watch queues each namespace, and
//! `reconcile` deletes what is left and requeues until nothing is.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use capstan_api::resources::{RESOURCES, ResourceInfo};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client};
use tracing::{debug, info, warn};

/// The `spec.finalizers` entry this controller owns.
pub const KUBERNETES_FINALIZER: &str = "kubernetes";
/// Delay before a namespace with content left is checked again.
const CONTENT_RECHECK: Duration = Duration::from_secs(2);

/// A namespace controller failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} in namespace {namespace}: {source}")]
    ApiFailed {
        action: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("the namespace controller stopped")]
    Stopped,
}

struct Context {
    client: Client,
}

/// Runs the namespace controller until its watch stream ends.
pub async fn run_namespace_controller(client: Client) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let context = Arc::new(Context { client });
    info!("starting the namespace controller");
    Controller::new(namespaces, watcher::Config::default())
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!(%error, "namespace reconcile failed");
            }
        })
        .await;
    Err(Error::Stopped)
}

fn error_policy(namespace: Arc<Namespace>, error: &Error, _context: Arc<Context>) -> Action {
    warn!(namespace = ?namespace.metadata.name, %error, "namespace cleanup failed, retrying");
    Action::requeue(Duration::from_secs(5))
}

/// Content still in a namespace after one deletion pass.
#[derive(Debug, Default, PartialEq)]
struct Content {
    /// Objects left per resource (`pods`, `replicasets.apps`).
    remaining: BTreeMap<String, usize>,
    /// Objects left per finalizer on them.
    finalizers: BTreeMap<String, usize>,
    /// Failed deletions and lists, as messages.
    failures: Vec<String>,
}

async fn reconcile(namespace: Arc<Namespace>, context: Arc<Context>) -> Result<Action, Error> {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    let finalizers = namespace.spec.as_ref().and_then(|spec| spec.finalizers.clone()).unwrap_or_default();
    if namespace.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == KUBERNETES_FINALIZER) {
        return Ok(Action::await_change());
    }

    // Delete everything namespaced, then record what is left.
    let content = delete_content(&context.client, &name).await;
    update_conditions(&context.client, &namespace, &content).await?;
    if !content.remaining.is_empty() || !content.failures.is_empty() {
        debug!(namespace = %name, remaining = ?content.remaining, "namespace not empty yet");
        return Ok(Action::requeue(CONTENT_RECHECK));
    }

    // Release the namespace.
    finalize(&context.client, &namespace).await?;
    info!(namespace = %name, "namespace emptied and finalized");
    Ok(Action::await_change())
}

fn api_resource(resource: &ResourceInfo) -> ApiResource {
    ApiResource {
        group: resource.group.to_string(),
        version: resource.version.to_string(),
        api_version: resource.api_version(),
        kind: resource.kind.to_string(),
        plural: resource.plural.to_string(),
    }
}

/// The resource as the reference server names it in conditions: `pods`, `replicasets.apps`.
fn group_resource(resource: &ResourceInfo) -> String {
    if resource.group.is_empty() {
        resource.plural.to_string()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

/// Deletes every object of every namespaced kind in `namespace` and counts what is
/// still listed. Objects already being deleted are counted but not deleted again.
async fn delete_content(client: &Client, namespace: &str) -> Content {
    let mut content = Content::default();
    let kinds = RESOURCES
        .iter()
        .filter(|resource| resource.namespaced && resource.verbs.contains(&"list") && resource.verbs.contains(&"delete"));
    for resource in kinds {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &api_resource(resource));
        let objects = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            // A kind the server does not serve has no objects to delete.
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(error) => {
                content.failures.push(format!("failed to list {}: {error}", group_resource(resource)));
                continue;
            }
        };
        for object in &objects {
            count_finalizers(&mut content, object);
            if object.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let object_name = object.metadata.name.clone().unwrap_or_default();
            match api.delete(&object_name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => content
                    .failures
                    .push(format!("failed to delete {} {object_name}: {error}", group_resource(resource))),
            }
        }
        if !objects.is_empty() {
            content.remaining.insert(group_resource(resource), objects.len());
        }
    }
    content
}

fn count_finalizers(content: &mut Content, object: &DynamicObject) {
    for finalizer in object.metadata.finalizers.iter().flatten() {
        *content.finalizers.entry(finalizer.clone()).or_default() += 1;
    }
}

/// The deletion conditions the reference server sets, for `kubectl describe namespace`.
fn deletion_conditions(content: &Content) -> Vec<NamespaceCondition> {
    let condition = |type_: &str, active: bool, reason: &str, message: String| NamespaceCondition {
        type_: type_.to_string(),
        status: if active { "True" } else { "False" }.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_transition_time: Some(Time(jiff::Timestamp::now())),
    };
    let remaining: Vec<String> =
        content.remaining.iter().map(|(resource, count)| format!("{resource} has {count} resource instances")).collect();
    let finalizers: Vec<String> =
        content.finalizers.iter().map(|(finalizer, count)| format!("{finalizer} in {count} resource instances")).collect();
    vec![
        if content.failures.is_empty() {
            condition("NamespaceDeletionContentFailure", false, "ContentDeleted", "All content successfully deleted, may be waiting on finalization".into())
        } else {
            condition("NamespaceDeletionContentFailure", true, "ContentDeletionFailed", format!("Failed to delete all resource types, {} remaining: {}", content.failures.len(), content.failures.join(", ")))
        },
        if remaining.is_empty() {
            condition("NamespaceContentRemaining", false, "ContentRemoved", "All content successfully removed".into())
        } else {
            condition("NamespaceContentRemaining", true, "SomeResourcesRemain", format!("Some resources are remaining: {}", remaining.join(", ")))
        },
        if finalizers.is_empty() {
            condition("NamespaceFinalizersRemaining", false, "ContentHasNoFinalizers", "All content-preserving finalizers finished".into())
        } else {
            condition("NamespaceFinalizersRemaining", true, "SomeFinalizersRemain", format!("Some content in the namespace has finalizers remaining: {}", finalizers.join(", ")))
        },
    ]
}

/// Writes the deletion conditions when their status, reason or message changed.
async fn update_conditions(client: &Client, namespace: &Namespace, content: &Content) -> Result<(), Error> {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    let expected = deletion_conditions(content);
    let current = namespace.status.as_ref().and_then(|status| status.conditions.clone()).unwrap_or_default();
    let same = |a: &NamespaceCondition, b: &NamespaceCondition| {
        a.type_ == b.type_ && a.status == b.status && a.reason == b.reason && a.message == b.message
    };
    if expected.iter().all(|condition| current.iter().any(|present| same(present, condition))) {
        return Ok(());
    }
    let patch = serde_json::json!({"status": {"phase": "Terminating", "conditions": expected}});
    let api: Api<Namespace> = Api::all(client.clone());
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
        .map_err(|source| Error::ApiFailed { action: "update the deletion conditions".into(), namespace: name, source })
}

/// Removes the `kubernetes` finalizer through `PUT .../namespaces/{name}/finalize`, or
/// through an update of the namespace when the server has no finalize subresource.
async fn finalize(client: &Client, namespace: &Namespace) -> Result<(), Error> {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    let mut released = namespace.clone();
    if let Some(spec) = released.spec.as_mut() {
        spec.finalizers = Some(
            spec.finalizers.iter().flatten().filter(|f| *f != KUBERNETES_FINALIZER).cloned().collect(),
        );
    }
    let api: Api<Namespace> = Api::all(client.clone());
    let failed = |action: &str, source| Error::ApiFailed { action: action.into(), namespace: name.clone(), source };
    match api.replace_subresource("finalize", &name, &PostParams::default(), &released).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 && !is_namespace_missing(&status) => {
            debug!(namespace = %name, "no finalize subresource, updating the namespace instead");
            match api.replace(&name, &PostParams::default(), &released).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                Err(source) => Err(failed("remove the kubernetes finalizer", source)),
            }
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 405 => {
            api.replace(&name, &PostParams::default(), &released)
                .await
                .map(|_| ())
                .map_err(|source| failed("remove the kubernetes finalizer", source))
        }
        Err(source) => Err(failed("finalize the namespace", source)),
    }
}

/// Whether a 404 names the namespace itself (it is already gone), rather than the route.
fn is_namespace_missing(status: &kube::core::Status) -> bool {
    status.details.as_ref().is_some_and(|details| details.kind == "namespaces" && !details.name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(conditions: &'a [NamespaceCondition], type_: &str) -> &'a NamespaceCondition {
        conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn conditions_for_remaining_content() {
        let content = Content {
            remaining: BTreeMap::from([("pods".to_string(), 2), ("replicasets.apps".to_string(), 1)]),
            finalizers: BTreeMap::from([("example.com/hold".to_string(), 1)]),
            failures: Vec::new(),
        };
        let conditions = deletion_conditions(&content);
        let remaining = find(&conditions, "NamespaceContentRemaining");
        assert_eq!(remaining.status, "True");
        assert_eq!(
            remaining.message.as_deref(),
            Some("Some resources are remaining: pods has 2 resource instances, replicasets.apps has 1 resource instances")
        );
        let finalizers = find(&conditions, "NamespaceFinalizersRemaining");
        assert_eq!(
            finalizers.message.as_deref(),
            Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
        );
        assert_eq!(find(&conditions, "NamespaceDeletionContentFailure").status, "False");
    }

    #[test]
    fn conditions_for_empty_namespace() {
        let conditions = deletion_conditions(&Content::default());
        for condition in &conditions {
            assert_eq!(condition.status, "False", "{}", condition.type_);
        }
        assert_eq!(find(&conditions, "NamespaceContentRemaining").reason.as_deref(), Some("ContentRemoved"));
    }

    #[test]
    fn conditions_for_failed_deletions() {
        let content = Content { failures: vec!["failed to delete pods web: forbidden".into()], ..Content::default() };
        let failure = find(&deletion_conditions(&content), "NamespaceDeletionContentFailure").clone();
        assert_eq!(failure.status, "True");
        assert_eq!(
            failure.message.as_deref(),
            Some("Failed to delete all resource types, 1 remaining: failed to delete pods web: forbidden")
        );
    }

    #[test]
    fn group_resource_names() {
        let pods = capstan_api::resources::lookup_kind("", "Pod").unwrap();
        let replica_sets = capstan_api::resources::lookup_kind("apps", "ReplicaSet").unwrap();
        assert_eq!(group_resource(pods), "pods");
        assert_eq!(group_resource(replica_sets), "replicasets.apps");
    }
}
