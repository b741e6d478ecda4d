//! Create (POST on a collection).

use axum::http::StatusCode;
use capstan_api::resources::{self, ResourceInfo};
use capstan_store::StoreError;
use rand::Rng;
use serde_json::{Value, json};

use crate::decode;
use crate::meta;
use crate::routes::{ApiRequest, Reply, Shared};
use crate::rules;
use crate::services;
use crate::status::ApiError;

/// Characters of the random `generateName` suffix, as the reference server picks them
/// (no vowels, so generated names do not spell words).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const NAME_SUFFIX_LEN: usize = 5;
const MAX_PREFIX_LEN: usize = 58;
/// Attempts to find a free generated name before returning 409.
const GENERATE_ATTEMPTS: usize = 5;

pub async fn create(state: &Shared, request: &ApiRequest) -> Result<Reply, ApiError> {
    let resource = request.target.resource;
    if resource.namespaced && request.target.namespace.is_none() {
        return Err(ApiError::MethodNotAllowed);
    }
    let decoded = decode::decode_object(request, resource)?;
    let object = insert(
        state,
        resource,
        request.target.namespace.as_deref(),
        decoded.object,
        request.dry_run(),
    )
    .await?;
    Ok(Reply { code: StatusCode::CREATED, body: object, warnings: decoded.warnings })
}

/// Creates `object` as a new `resource` in `namespace`, running defaulting and validation,
/// and returns the stored object. With `dry_run` nothing is written.
pub async fn insert(
    state: &Shared,
    resource: &'static ResourceInfo,
    namespace: Option<&str>,
    mut object: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    // bind the object to the request's namespace
    let body_namespace = meta::namespace(&object).filter(|ns| !ns.is_empty());
    if resource.namespaced {
        let namespace = namespace.ok_or(ApiError::MethodNotAllowed)?;
        if body_namespace.is_some_and(|ns| ns != namespace) {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        check_namespace_open(state, resource, namespace, &meta::name(&object).unwrap_or_default()).await?;
    }

    // fill in server-owned metadata, then defaults and validation
    prepare_new(resource, namespace, &mut object)?;
    rules::apply_defaults(resource, &mut object);
    let generate_prefix = object["metadata"]["generateName"].as_str().map(str::to_string);
    let explicit_name = meta::name(&object).filter(|n| !n.is_empty());
    let attempts = if explicit_name.is_none() && generate_prefix.is_some() { GENERATE_ATTEMPTS } else { 1 };

    for attempt in 1..=attempts {
        if explicit_name.is_none()
            && let Some(prefix) = &generate_prefix
        {
            meta::metadata_mut(&mut object)?.insert("name".into(), json!(generate_name(prefix)));
            // Some defaults derive from the name (a Job's `job-name` pod label).
            rules::apply_defaults(resource, &mut object);
        }
        rules::validate(resource, &object, None)?;
        let name = meta::name(&object).unwrap_or_default();
        let key = resource.key(namespace, &name);
        if dry_run {
            return Ok(object);
        }

        // a Service's addresses are claimed before it is written, and released if it is not
        let claims = if is_service(resource) {
            services::allocate_new(state, resource, &mut object).await?
        } else {
            services::allocator::Claims::default()
        };
        let encoded = match meta::encode_for_store(&object) {
            Ok(encoded) => encoded,
            Err(error) => {
                claims.release_all(state.store.as_ref()).await;
                return Err(error);
            }
        };
        match state.store.create(&key, encoded).await {
            Ok(kv) => {
                meta::stamp(resource, &mut object, kv.mod_revision);
                tracing::debug!(key, revision = kv.mod_revision, "created");
                return Ok(object);
            }
            Err(error) => {
                claims.release_all(state.store.as_ref()).await;
                match error {
                    StoreError::AlreadyExists { .. } if attempt < attempts => continue,
                    StoreError::AlreadyExists { .. } => return Err(ApiError::already_exists(resource, &name)),
                    other => return Err(other.into()),
                }
            }
        }
    }
    Err(ApiError::internal("no attempt to create the object was made"))
}

/// Checks whether `resource` is the core Service, whose writes allocate addresses.
pub fn is_service(resource: &ResourceInfo) -> bool {
    resource.group.is_empty() && resource.kind == "Service"
}

/// Checks that `namespace` exists and is not being deleted.
async fn check_namespace_open(
    state: &Shared,
    resource: &ResourceInfo,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    let namespaces = resources::lookup("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("the resource table has no namespaces"))?;
    let Some(kv) = state.store.get(&namespaces.key(None, namespace)).await? else {
        return Err(ApiError::not_found(namespaces, namespace));
    };
    let stored = meta::decode_stored(namespaces, &kv)?;
    if meta::is_deleting(&stored) || stored["status"]["phase"] == "Terminating" {
        return Err(ApiError::Forbidden {
            message: format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} \
                 because it is being terminated",
                crate::status::qualified(resource)
            ),
        });
    }
    Ok(())
}

/// Sets the metadata the server owns on a new object and resets status where the server
/// owns it.
fn prepare_new(resource: &ResourceInfo, namespace: Option<&str>, object: &mut Value) -> Result<(), ApiError> {
    let metadata = meta::metadata_mut(object)?;
    if let Some(namespace) = namespace.filter(|_| resource.namespaced) {
        metadata.insert("namespace".into(), json!(namespace));
    } else {
        metadata.remove("namespace");
    }
    metadata.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    metadata.insert("creationTimestamp".into(), json!(meta::now()));
    metadata.insert("generation".into(), json!(1));
    for server_owned in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        metadata.remove(server_owned);
    }

    let root = object.as_object_mut().ok_or_else(|| ApiError::bad_request("the body must be an object"))?;
    match resource.kind {
        "Deployment" | "ReplicaSet" | "Job" => {
            root.remove("status");
        }
        "Pod" => {
            root.insert("status".into(), json!({"phase": "Pending"}));
        }
        "Namespace" => {
            root.insert("status".into(), json!({"phase": "Active"}));
        }
        _ => {}
    }
    Ok(())
}

/// Appends a random suffix to a `generateName` prefix.
pub fn generate_name(prefix: &str) -> String {
    let mut cut = prefix.len().min(MAX_PREFIX_LEN);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut rng = rand::rng();
    let suffix: String = (0..NAME_SUFFIX_LEN)
        .map(|_| NAME_ALPHABET[rng.random_range(0..NAME_ALPHABET.len())] as char)
        .collect();
    format!("{}{suffix}", &prefix[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_name_truncates_prefix() {
        let name = generate_name(&"a".repeat(70));
        assert_eq!(name.len(), MAX_PREFIX_LEN + NAME_SUFFIX_LEN);
        assert!(name[MAX_PREFIX_LEN..].bytes().all(|b| NAME_ALPHABET.contains(&b)));
    }

    #[test]
    fn new_pod_status_is_pending() {
        let pods = resources::lookup("", "v1", "pods").expect("pods");
        let mut pod = json!({"metadata": {"name": "a", "resourceVersion": "9"}, "status": {"phase": "Running"}});
        prepare_new(pods, Some("default"), &mut pod).expect("prepare");
        assert_eq!(pod["status"], json!({"phase": "Pending"}));
        assert_eq!(pod["metadata"]["namespace"], "default");
        assert_eq!(pod["metadata"]["generation"], 1);
        assert!(pod["metadata"].get("resourceVersion").is_none());
    }
}
