//! The collector's writes. Each re-checks what the cache cannot prove and carries the
//! object's uid as a precondition, so a recreated object with the same name is never hit.

use capstan_api::resources::{ResourceInfo, lookup_kind};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions,
};
use kube::{Api, Client};
use tracing::{debug, info};

use super::Error;
use super::graph::{GcAction, Graph, ObjectNode};

/// The dynamic client description of a table entry.
pub fn api_resource(resource: &ResourceInfo) -> ApiResource {
    ApiResource {
        group: resource.group.to_string(),
        version: resource.version.to_string(),
        api_version: resource.api_version(),
        kind: resource.kind.to_string(),
        plural: resource.plural.to_string(),
    }
}

fn api_for(client: &Client, resource: &ResourceInfo, namespace: Option<&str>) -> Api<DynamicObject> {
    let api_resource = api_resource(resource);
    match (resource.namespaced, namespace) {
        (true, Some(namespace)) => Api::namespaced_with(client.clone(), namespace, &api_resource),
        _ => Api::all_with(client.clone(), &api_resource),
    }
}

fn write_failed<'a>(node: &'a ObjectNode, action: &'static str) -> impl FnOnce(kube::Error) -> Error + 'a {
    move |source| Error::WriteFailed {
        action,
        kind: node.resource.kind,
        namespace: node.namespace.clone().unwrap_or_default(),
        name: node.name.clone(),
        source,
    }
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Performs `action`, reading object details from `graph` as it was planned. A target
/// that is already gone counts as done.
pub async fn commit(client: &Client, graph: &Graph, action: &GcAction) -> Result<(), Error> {
    let uid = match action {
        GcAction::DeleteIfOrphaned { uid }
        | GcAction::DeleteDependent { uid }
        | GcAction::RemoveOwnerReference { uid, .. }
        | GcAction::RemoveFinalizer { uid, .. } => uid,
    };
    let Some(node) = graph.get(uid) else { return Ok(()) };
    let api = api_for(client, node.resource, node.namespace.as_deref());
    let result = match action {
        GcAction::DeleteIfOrphaned { .. } => delete_if_orphaned(client, &api, node).await,
        GcAction::DeleteDependent { .. } => {
            info!(kind = node.resource.kind, name = %node.name, "deleting dependent of an owner in foreground deletion");
            let params = DeleteParams { preconditions: Some(uid_precondition(node)), ..DeleteParams::foreground() };
            api.delete(&node.name, &params).await.map(|_| ()).map_err(write_failed(node, "delete"))
        }
        GcAction::RemoveOwnerReference { owner_uid, .. } => {
            let owners: Vec<_> = node.owners.iter().filter(|owner| &owner.uid != owner_uid).collect();
            let patch = serde_json::json!({"metadata": {
                "ownerReferences": owners,
                "resourceVersion": node.resource_version,
            }});
            api.patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map(|_| ())
                .map_err(write_failed(node, "remove the owner reference of"))
        }
        GcAction::RemoveFinalizer { finalizer, .. } => {
            let finalizers: Vec<&String> = node.finalizers.iter().filter(|present| present != finalizer).collect();
            let patch = serde_json::json!({"metadata": {
                "finalizers": finalizers,
                "resourceVersion": node.resource_version,
            }});
            api.patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map(|_| ())
                .map_err(write_failed(node, "remove a finalizer from"))
        }
    };
    match result {
        Err(Error::WriteFailed { source, .. }) if is_not_found(&source) => Ok(()),
        other => other,
    }
}

fn uid_precondition(node: &ObjectNode) -> Preconditions {
    Preconditions { uid: Some(node.uid.clone()), resource_version: None }
}

/// Deletes `node` once the API server confirms that no owner with a listed uid exists.
async fn delete_if_orphaned(client: &Client, api: &Api<DynamicObject>, node: &ObjectNode) -> Result<(), Error> {
    for owner in &node.owners {
        let group = owner.api_version.rsplit_once('/').map(|(group, _)| group).unwrap_or("");
        let Some(resource) = lookup_kind(group, &owner.kind) else {
            // NOTE: an owner of a kind capstan does not serve cannot be checked, so the
            // dependent is kept rather than deleted on a guess.
            debug!(owner.kind = %owner.kind, name = %node.name, "owner kind unknown, keeping dependent");
            return Ok(());
        };
        let owner_api = api_for(client, resource, node.namespace.as_deref());
        match owner_api.get_opt(&owner.name).await {
            Ok(Some(live)) if live.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
                debug!(name = %node.name, owner.name = %owner.name, "owner still exists, cache is behind");
                return Ok(());
            }
            Ok(_) => {}
            Err(source) => {
                return Err(Error::WriteFailed {
                    action: "look up the owner of",
                    kind: node.resource.kind,
                    namespace: node.namespace.clone().unwrap_or_default(),
                    name: node.name.clone(),
                    source,
                });
            }
        }
    }
    info!(kind = node.resource.kind, namespace = ?node.namespace, name = %node.name, "deleting object whose owners are gone");
    let params = DeleteParams { preconditions: Some(uid_precondition(node)), ..DeleteParams::background() };
    api.delete(&node.name, &params).await.map(|_| ()).map_err(write_failed(node, "delete"))
}
