//! Delete and delete-collection, with finalizers, propagation policies and graceful pod
//! deletion.

use capstan_api::resources::ResourceInfo;
use capstan_store::StoreError;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::list;
use crate::meta;
use crate::routes::{ApiRequest, Reply, Shared};
use crate::select::Selectors;
use crate::status::{self, ApiError};

/// Compare-and-swap attempts before a DELETE racing with other writes gives up with 409.
const DELETE_ATTEMPTS: usize = 16;
/// Grace period of a pod whose spec sets none, in seconds.
const DEFAULT_POD_GRACE_SECONDS: i64 = 30;

/// The subset of `meta/v1` `DeleteOptions` the server acts on.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub preconditions: Option<Preconditions>,
    #[serde(default)]
    pub dry_run: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl DeleteOptions {
    /// Reads the options from the body, falling back to query parameters.
    pub fn from_request(request: &ApiRequest) -> Result<Self, ApiError> {
        let mut options = if request.body.iter().all(u8::is_ascii_whitespace) {
            DeleteOptions::default()
        } else {
            let body = crate::decode::parse_body(request.content_type(), &request.body)?;
            DeleteOptions::from_value(body)?
        };
        if options.grace_period_seconds.is_none()
            && let Some(text) = request.param("gracePeriodSeconds")
        {
            let seconds = text
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds \"{text}\"")))?;
            options.grace_period_seconds = Some(seconds);
        }
        if options.propagation_policy.is_none() {
            options.propagation_policy = request.param("propagationPolicy").map(str::to_string);
        }
        if request.dry_run() {
            options.dry_run = vec!["All".into()];
        }
        match options.propagation_policy.as_deref() {
            None | Some("Background" | "Foreground" | "Orphan") => Ok(options),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid propagationPolicy \"{other}\": use Background, Foreground or Orphan"
            ))),
        }
    }

    /// Reads the options from a decoded `DeleteOptions` object.
    pub fn from_value(body: Value) -> Result<Self, ApiError> {
        serde_json::from_value(body).map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions body: {e}")))
    }

    fn dry_run(&self) -> bool {
        self.dry_run.iter().any(|d| d == "All")
    }
}

pub async fn delete(state: &Shared, request: &ApiRequest) -> Result<Reply, ApiError> {
    let options = DeleteOptions::from_request(request)?;
    let name = request.target.name.as_deref().ok_or(ApiError::MethodNotAllowed)?;
    let body = delete_one(state, request.target.resource, request.target.namespace.as_deref(), name, &options).await?;
    Ok(Reply::ok(body))
}

pub async fn delete_collection(state: &Shared, request: &ApiRequest) -> Result<Reply, ApiError> {
    let options = DeleteOptions::from_request(request)?;
    let resource = request.target.resource;
    let selectors = Selectors::parse(resource, request.param("labelSelector"), request.param("fieldSelector"))?;
    let listed = state.store.list(&list::prefix(resource, request.target.namespace.as_deref()), None).await?;
    let mut items = Vec::new();
    for kv in &listed.items {
        let object = meta::decode_stored(resource, kv)?;
        if !selectors.matches(&object) {
            continue;
        }
        let name = meta::name(&object).unwrap_or_default();
        let namespace = meta::namespace(&object);
        match delete_one(state, resource, namespace.as_deref(), &name, &options).await {
            Ok(_) => items.push(object),
            Err(ApiError::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(Reply::ok(json!({
        "kind": resource.list_kind(),
        "apiVersion": resource.api_version(),
        "metadata": {"resourceVersion": listed.revision.to_string()},
        "items": items,
    })))
}

/// The outcome a DELETE has on one object.
enum Plan {
    /// Remove it from the store now.
    Remove,
    /// Keep it, with these changes (deletion timestamp, finalizers, phase).
    Mark(Value),
    /// Keep it unchanged: deletion is already under way.
    Wait,
}

/// Deletes one object and returns the response body.
pub async fn delete_one(
    state: &Shared,
    resource: &'static ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    options: &DeleteOptions,
) -> Result<Value, ApiError> {
    let key = resource.key(namespace, name);
    for _ in 0..DELETE_ATTEMPTS {
        let kv = state.store.get(&key).await?.ok_or_else(|| ApiError::not_found(resource, name))?;
        let current = meta::decode_stored(resource, &kv)?;
        check_preconditions(resource, name, &current, options)?;
        match plan(resource, &current, options) {
            Plan::Wait => return Ok(current),
            Plan::Mark(mut object) => {
                if options.dry_run() {
                    return Ok(object);
                }
                match state.store.update(&key, meta::encode_for_store(&object)?, Some(kv.mod_revision)).await {
                    Ok(written) => {
                        tracing::debug!(key, revision = written.mod_revision, "marked for deletion");
                        meta::stamp(resource, &mut object, written.mod_revision);
                        return Ok(object);
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(resource, name)),
                    Err(other) => return Err(other.into()),
                }
            }
            Plan::Remove => {
                if options.dry_run() {
                    return Ok(current);
                }
                match state.store.delete(&key, Some(kv.mod_revision)).await {
                    Ok((_, revision)) => {
                        tracing::debug!(key, revision, "deleted");
                        if crate::create::is_service(resource) {
                            crate::services::release_service(state, &current).await;
                        }
                        let mut deleted = current;
                        meta::stamp(resource, &mut deleted, revision);
                        if resource.kind == "Pod" {
                            return Ok(deleted);
                        }
                        return Ok(status::success(resource, name, meta::uid(&deleted).as_deref()));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(resource, name)),
                    Err(other) => return Err(other.into()),
                }
            }
        }
    }
    Err(ApiError::modified(resource, name))
}

fn check_preconditions(resource: &ResourceInfo, name: &str, current: &Value, options: &DeleteOptions) -> Result<(), ApiError> {
    let Some(pre) = &options.preconditions else { return Ok(()) };
    if let Some(uid) = &pre.uid
        && Some(uid) != meta::uid(current).as_ref()
    {
        return Err(ApiError::conflict(resource, name, format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            meta::uid(current).unwrap_or_default()
        )));
    }
    if let Some(rv) = &pre.resource_version
        && Some(rv) != meta::resource_version(current).as_ref()
    {
        return Err(ApiError::conflict(resource, name, format!(
            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
            meta::resource_version(current).unwrap_or_default()
        )));
    }
    Ok(())
}

/// Decides what a DELETE with `options` does to `current`.
fn plan(resource: &ResourceInfo, current: &Value, options: &DeleteOptions) -> Plan {
    let deleting = meta::is_deleting(current);
    let grace = options.grace_period_seconds;

    // namespaces turn Terminating; the namespace controller empties them
    if resource.kind == "Namespace" {
        if !deleting {
            let mut object = mark_deleting(current, 0);
            object["status"]["phase"] = json!("Terminating");
            return Plan::Mark(object);
        }
        return if meta::has_finalizers(resource, current) { Plan::Wait } else { Plan::Remove };
    }

    // propagation policies hand the object to the garbage collector through a finalizer
    let policy_finalizer = match options.propagation_policy.as_deref() {
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Orphan") => Some("orphan"),
        _ => None,
    };
    if let Some(finalizer) = policy_finalizer {
        let mut object = mark_deleting(current, grace.unwrap_or(0));
        add_finalizer(&mut object, finalizer);
        return if object == *current { Plan::Wait } else { Plan::Mark(object) };
    }
    if meta::has_finalizers(resource, current) {
        let object = mark_deleting(current, grace.unwrap_or(0));
        return if object == *current { Plan::Wait } else { Plan::Mark(object) };
    }

    // pods bound to a node wait for the node agent to stop their processes
    let bound = current["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
    if resource.kind == "Pod" && bound && grace != Some(0) {
        let seconds = grace
            .or_else(|| current["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(DEFAULT_POD_GRACE_SECONDS);
        let previous = current["metadata"]["deletionGracePeriodSeconds"].as_i64();
        if deleting && previous.is_some_and(|p| p <= seconds) {
            return Plan::Wait;
        }
        return Plan::Mark(mark_deleting_at(current, seconds, true));
    }
    Plan::Remove
}

fn mark_deleting(current: &Value, grace_seconds: i64) -> Value {
    mark_deleting_at(current, grace_seconds, false)
}

/// Sets `deletionTimestamp` (now, plus the grace period for pods, as the reference server
/// does) and `deletionGracePeriodSeconds`, keeping an earlier timestamp unless `reset`.
fn mark_deleting_at(current: &Value, grace_seconds: i64, reset: bool) -> Value {
    let mut object = current.clone();
    if reset || !meta::is_deleting(current) {
        let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(if reset { grace_seconds } else { 0 });
        object["metadata"]["deletionTimestamp"] = json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        object["metadata"]["deletionGracePeriodSeconds"] = json!(grace_seconds);
    }
    object
}

fn add_finalizer(object: &mut Value, finalizer: &str) {
    let list = &mut object["metadata"]["finalizers"];
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(items) = list.as_array_mut()
        && !items.iter().any(|f| f == finalizer)
    {
        items.push(json!(finalizer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(plural: &str) -> &'static ResourceInfo {
        capstan_api::resources::RESOURCES.iter().find(|r| r.plural == plural).expect("resource")
    }

    #[test]
    fn bound_pod_is_marked_with_grace() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 10}});
        let Plan::Mark(marked) = plan(lookup("pods"), &pod, &DeleteOptions::default()) else {
            panic!("expected a graceful deletion");
        };
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 10);
        assert!(marked["metadata"]["deletionTimestamp"].is_string());
    }

    #[test]
    fn zero_grace_removes_bound_pod() {
        let pod = json!({"metadata": {"name": "p", "deletionTimestamp": "2024-01-01T00:00:00Z"}, "spec": {"nodeName": "n1"}});
        let options = DeleteOptions { grace_period_seconds: Some(0), ..DeleteOptions::default() };
        assert!(matches!(plan(lookup("pods"), &pod, &options), Plan::Remove));
    }

    #[test]
    fn foreground_adds_finalizer() {
        let deployment = json!({"metadata": {"name": "web"}});
        let options = DeleteOptions { propagation_policy: Some("Foreground".into()), ..DeleteOptions::default() };
        let Plan::Mark(marked) = plan(lookup("deployments"), &deployment, &options) else {
            panic!("expected a mark");
        };
        assert_eq!(marked["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    }

    #[test]
    fn namespace_turns_terminating() {
        let namespace = json!({"metadata": {"name": "team"}, "status": {"phase": "Active"}});
        let Plan::Mark(marked) = plan(lookup("namespaces"), &namespace, &DeleteOptions::default()) else {
            panic!("expected a mark");
        };
        assert_eq!(marked["status"]["phase"], "Terminating");
    }

    #[test]
    fn unbound_configmap_is_removed() {
        let object = json!({"metadata": {"name": "c"}});
        assert!(matches!(plan(lookup("configmaps"), &object, &DeleteOptions::default()), Plan::Remove));
    }
}
