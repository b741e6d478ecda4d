//! Update (PUT) and PATCH of objects and their status subresource.
//!
//! Both go through [`update_with`], a compare-and-swap loop: read the object, compute the
//! new version, apply the server's rules and write it only if no other write came in between.

use axum::http::StatusCode;
use capstan_api::patch::PatchType;
use capstan_api::resources::ResourceInfo;
use capstan_store::StoreError;
use serde_json::{Value, json};

use crate::create::is_service;
use crate::decode::{self, FieldValidation};
use crate::meta;
use crate::routes::{ApiRequest, Reply, Shared};
use crate::rules;
use crate::services;
use crate::status::ApiError;

/// Compare-and-swap attempts before a write without a client precondition gives up.
const CAS_ATTEMPTS: usize = 16;

/// Metadata that only the server sets after creation.
const IMMUTABLE_METADATA: &[&str] =
    &["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "namespace"];

/// A proposed new version of an object and the resource version the client based it on.
pub struct Proposal {
    pub object: Value,
    pub precondition: Option<u64>,
}

/// The object an update writes, possibly through a subresource.
pub struct UpdateTarget<'a> {
    pub resource: &'static ResourceInfo,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    /// `Some("status")` changes only status; anything else changes all but status.
    pub subresource: Option<&'a str>,
    pub dry_run: bool,
    /// Whether the server writes on its own behalf (a binding), which skips the update
    /// rules for clients such as the immutability of a pod's spec.
    pub server_write: bool,
}

pub async fn put(state: &Shared, request: &ApiRequest) -> Result<Reply, ApiError> {
    let target = update_target(request)?;
    let decoded = decode::decode_object(request, target.resource)?;
    check_identity(&decoded.object, &target)?;
    let precondition = meta::resource_version(&decoded.object).map(|rv| meta::parse_revision(&rv)).transpose()?;
    let body = decoded.object;
    let object = update_with(state, &target, |_| Ok(Proposal { object: body.clone(), precondition })).await?;
    Ok(Reply { code: StatusCode::OK, body: object, warnings: decoded.warnings })
}

pub async fn patch(state: &Shared, request: &ApiRequest) -> Result<Reply, ApiError> {
    let target = update_target(request)?;
    let resource = target.resource;
    let patch_type = rules::patch_type(request.content_type(), request.param("fieldManager"), request.flag("force"))?;
    let mode = FieldValidation::from_request(request)?;
    let mut warnings = Vec::new();
    let result = update_with(state, &target, |current| {
        let mut object = rules::apply_patch(resource, &patch_type, Some(current), &request.body)?;
        decode::check_type(&object, &resource.api_version(), resource.kind)?;
        check_identity(&object, &target)?;
        warnings = decode::enforce_field_validation(mode, resource, &mut object, &request.body)?;
        let precondition = match meta::resource_version(&object) {
            Some(rv) if Some(&rv) != meta::resource_version(current).as_ref() => Some(meta::parse_revision(&rv)?),
            _ => None,
        };
        Ok(Proposal { object, precondition })
    })
    .await;
    match result {
        Ok(object) => Ok(Reply { code: StatusCode::OK, body: object, warnings }),
        // server-side apply creates the object when it is absent
        Err(ApiError::NotFound { .. })
            if matches!(patch_type, PatchType::Apply { .. }) && target.subresource.is_none() =>
        {
            let mut object = rules::apply_patch(resource, &patch_type, None, &request.body)?;
            decode::check_type(&object, &resource.api_version(), resource.kind)?;
            check_identity(&object, &target)?;
            let warnings = decode::enforce_field_validation(mode, resource, &mut object, &request.body)?;
            let body = crate::create::insert(state, resource, target.namespace, object, target.dry_run).await?;
            Ok(Reply { code: StatusCode::CREATED, body, warnings })
        }
        Err(error) => Err(error),
    }
}

fn update_target(request: &ApiRequest) -> Result<UpdateTarget<'_>, ApiError> {
    let name = request.target.name.as_deref().ok_or(ApiError::MethodNotAllowed)?;
    Ok(UpdateTarget {
        resource: request.target.resource,
        namespace: request.target.namespace.as_deref(),
        name,
        subresource: request.target.subresource.as_deref(),
        dry_run: request.dry_run(),
        server_write: false,
    })
}

/// Checks that the body names the object of the URL.
fn check_identity(object: &Value, target: &UpdateTarget<'_>) -> Result<(), ApiError> {
    if let Some(name) = meta::name(object)
        && name != target.name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            target.name
        )));
    }
    if let (Some(body_ns), Some(url_ns)) = (meta::namespace(object), target.namespace)
        && !body_ns.is_empty()
        && body_ns != url_ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

/// Reads the object, calls `propose` for its new version and writes it with
/// compare-and-swap, retrying on a race unless the client sent a resource version.
/// Returns the stored object (or the would-be object under dry run).
pub async fn update_with<F>(state: &Shared, target: &UpdateTarget<'_>, mut propose: F) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Proposal, ApiError>,
{
    let resource = target.resource;
    let key = resource.key(target.namespace, target.name);
    for _ in 0..CAS_ATTEMPTS {
        let kv = state.store.get(&key).await?.ok_or_else(|| ApiError::not_found(resource, target.name))?;
        let current = meta::decode_stored(resource, &kv)?;
        let proposal = propose(&current)?;
        if proposal.precondition.is_some_and(|rv| rv != kv.mod_revision) {
            return Err(ApiError::modified(resource, target.name));
        }
        let mut object = merge_server_fields(resource, &current, proposal.object, target.subresource)?;

        // the last finalizer is gone from an object being deleted: remove it. This is
        // checked before defaulting, which would give a namespace its `kubernetes`
        // finalizer back.
        let finalized = meta::is_deleting(&object)
            && meta::has_finalizers(resource, &current)
            && !meta::has_finalizers(resource, &object);
        rules::apply_defaults(resource, &mut object);
        let allocates = is_service(resource) && target.subresource != Some("status");
        if allocates {
            services::carry_over(&current, &mut object);
        }
        let old = if target.server_write { None } else { Some(&current) };
        rules::validate(resource, &object, old)?;
        if finalized {
            if target.dry_run {
                return Ok(object);
            }
            match state.store.delete(&key, Some(kv.mod_revision)).await {
                Ok((_, revision)) => {
                    meta::stamp(resource, &mut object, revision);
                    tracing::debug!(key, revision, "removed after its last finalizer");
                    if is_service(resource) {
                        services::release_service(state, &current).await;
                    }
                    return Ok(object);
                }
                Err(StoreError::Conflict { .. }) if proposal.precondition.is_none() => continue,
                Err(StoreError::Conflict { .. }) => return Err(ApiError::modified(resource, target.name)),
                Err(other) => return Err(other.into()),
            }
        }

        // an unchanged object is not written, so watchers see no empty MODIFIED event
        let encoded = meta::encode_for_store(&object)?;
        if target.dry_run || encoded == meta::encode_for_store(&current)? {
            meta::stamp(resource, &mut object, kv.mod_revision);
            return Ok(object);
        }

        // a Service claims new addresses before the write and frees old ones after it
        let claims = if allocates {
            services::allocate_update(state, resource, &current, &mut object).await?
        } else {
            services::UpdateClaims::default()
        };
        let encoded = match meta::encode_for_store(&object) {
            Ok(encoded) => encoded,
            Err(error) => {
                claims.claimed.release_all(state.store.as_ref()).await;
                return Err(error);
            }
        };
        match state.store.update(&key, encoded, Some(kv.mod_revision)).await {
            Ok(written) => {
                services::allocator::release(state.store.as_ref(), &claims.released).await;
                meta::stamp(resource, &mut object, written.mod_revision);
                tracing::debug!(key, revision = written.mod_revision, "updated");
                return Ok(object);
            }
            Err(error) => {
                claims.claimed.release_all(state.store.as_ref()).await;
                match error {
                    StoreError::Conflict { .. } if proposal.precondition.is_none() => continue,
                    StoreError::Conflict { .. } => return Err(ApiError::modified(resource, target.name)),
                    StoreError::NotFound { .. } => return Err(ApiError::not_found(resource, target.name)),
                    other => return Err(other.into()),
                }
            }
        }
    }
    Err(ApiError::modified(resource, target.name))
}

/// Combines the proposed object with what only the server may change: immutable
/// metadata, status (or everything but status for the status subresource) and generation.
pub fn merge_server_fields(
    resource: &ResourceInfo,
    current: &Value,
    proposed: Value,
    subresource: Option<&str>,
) -> Result<Value, ApiError> {
    if subresource == Some("status") {
        let mut object = current.clone();
        match proposed.get("status") {
            Some(status) => object["status"] = status.clone(),
            None => {
                if let Some(root) = object.as_object_mut() {
                    root.remove("status");
                }
            }
        }
        return Ok(object);
    }

    let mut object = proposed;
    let metadata = meta::metadata_mut(&mut object)?;
    for field in IMMUTABLE_METADATA {
        match current["metadata"].get(*field) {
            Some(value) => metadata.insert((*field).to_string(), value.clone()),
            None => metadata.remove(*field),
        };
    }
    metadata.insert("name".into(), current["metadata"]["name"].clone());
    if resource.status_subresource {
        let root = object.as_object_mut().ok_or_else(|| ApiError::bad_request("the body must be an object"))?;
        match current.get("status") {
            Some(status) => root.insert("status".into(), status.clone()),
            None => root.remove("status"),
        };
    }
    if object.get("spec") != current.get("spec") {
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(0);
        object["metadata"]["generation"] = json!(generation + 1);
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments() -> &'static ResourceInfo {
        capstan_api::resources::lookup("apps", "v1", "deployments").expect("deployments")
    }

    fn stored() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "generation": 3,
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"replicas": 1},
            "status": {"replicas": 1},
        })
    }

    #[test]
    fn spec_change_bumps_generation() {
        let proposed = json!({"metadata": {"name": "web", "uid": "forged"}, "spec": {"replicas": 2}, "status": {}});
        let object = merge_server_fields(deployments(), &stored(), proposed, None).expect("merge");
        assert_eq!(object["metadata"]["generation"], 4);
        assert_eq!(object["metadata"]["uid"], "u1");
        assert_eq!(object["status"], json!({"replicas": 1}));
    }

    #[test]
    fn label_change_keeps_generation() {
        let proposed = json!({"metadata": {"name": "web", "labels": {"a": "b"}}, "spec": {"replicas": 1}});
        let object = merge_server_fields(deployments(), &stored(), proposed, None).expect("merge");
        assert_eq!(object["metadata"]["generation"], 3);
        assert_eq!(object["metadata"]["labels"]["a"], "b");
    }

    #[test]
    fn status_update_changes_only_status() {
        let proposed = json!({"metadata": {"name": "web"}, "spec": {"replicas": 9}, "status": {"replicas": 5}});
        let object = merge_server_fields(deployments(), &stored(), proposed, Some("status")).expect("merge");
        assert_eq!(object["spec"]["replicas"], 1);
        assert_eq!(object["status"]["replicas"], 5);
    }
}
