//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch
//! and server-side apply.
//!
//! [`apply_patch`] turns the stored object and a request body into the new object. Storing
//! it, preconditions and status handling stay with the API server.

mod apply;
pub mod keys;
mod strategic;

use serde_json::Value;

use crate::resources::ResourceInfo;

/// The patch format named by a PATCH request's Content-Type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`
    Merge,
    /// `application/json-patch+json`
    Json,
    /// `application/strategic-merge-patch+json`
    StrategicMerge,
    /// `application/apply-patch+yaml`: server-side apply by `field_manager`.
    Apply { field_manager: String, force: bool },
}

/// A failed patch. [`PatchError::status_code`] gives the HTTP status the reference server
/// returns for each case.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body cannot be parsed as the declared patch type.
    #[error("invalid patch body: {0}")]
    BadRequest(String),
    /// The patch is well formed but cannot be applied (a JSON patch `test` that fails, a path
    /// that does not exist).
    #[error("the patch cannot be applied: {0}")]
    Invalid(String),
    /// Server-side apply would take fields that another manager owns.
    #[error("apply conflicts with field manager {manager}: {message}")]
    Conflict { manager: String, message: String },
    /// The Content-Type is not a patch type capstan accepts.
    #[error("unsupported patch content type {content_type}; use application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json or application/apply-patch+yaml")]
    UnsupportedMediaType { content_type: String },
    /// The object does not exist, and the patch type cannot create it.
    #[error("{kind} not found; only server-side apply can create an object with PATCH")]
    NotFound { kind: String },
}

impl PatchError {
    /// Returns the HTTP status code for this error.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) => 400,
            PatchError::Invalid(_) => 422,
            PatchError::Conflict { .. } => 409,
            PatchError::UnsupportedMediaType { .. } => 415,
            PatchError::NotFound { .. } => 404,
        }
    }

    /// Returns the `Status.reason` for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            PatchError::BadRequest(_) => "BadRequest",
            PatchError::Invalid(_) => "Invalid",
            PatchError::Conflict { .. } => "Conflict",
            PatchError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            PatchError::NotFound { .. } => "NotFound",
        }
    }
}

impl PatchType {
    /// Picks the patch type from a Content-Type header value, ignoring its parameters.
    /// `field_manager` and `force` are the request's query parameters; apply requires a
    /// field manager.
    pub fn from_content_type(ct: &str, field_manager: Option<&str>, force: bool) -> Result<Self, PatchError> {
        let media_type = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match media_type.as_str() {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/strategic-merge-patch+json" => Ok(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => match field_manager.filter(|m| !m.is_empty()) {
                Some(manager) => Ok(PatchType::Apply { field_manager: manager.to_string(), force }),
                None => Err(PatchError::BadRequest(
                    "fieldManager is required for apply requests; set the fieldManager query parameter".into(),
                )),
            },
            _ => Err(PatchError::UnsupportedMediaType { content_type: ct.to_string() }),
        }
    }
}

/// Applies `body` to `current` and returns the patched object.
///
/// `current` is None when the object does not exist: server-side apply then returns the new
/// object to create, and every other type fails with [`PatchError::NotFound`]. The result
/// keeps whatever the patch wrote to `apiVersion`, `kind` and `metadata`; the caller checks
/// that name and namespace did not change.
pub fn apply_patch(
    resource: &ResourceInfo,
    patch_type: &PatchType,
    current: Option<&Value>,
    body: &[u8],
) -> Result<Value, PatchError> {
    let current = match (patch_type, current) {
        (PatchType::Apply { field_manager, force }, current) => {
            return apply::server_side_apply(resource, current, body, field_manager, *force);
        }
        (_, Some(current)) => current,
        (_, None) => return Err(PatchError::NotFound { kind: resource.kind.to_string() }),
    };
    let mut patched = current.clone();
    match patch_type {
        PatchType::Merge => {
            let patch = parse_json(body)?;
            if !patch.is_object() {
                return Err(PatchError::BadRequest("a merge patch must be a JSON object".into()));
            }
            json_patch::merge(&mut patched, &patch);
        }
        PatchType::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| PatchError::BadRequest(format!("not a JSON patch operation list: {e}")))?;
            json_patch::patch(&mut patched, &patch).map_err(|e| PatchError::Invalid(e.to_string()))?;
        }
        PatchType::StrategicMerge => {
            let patch = parse_json(body)?;
            let schema = keys::schema_name(resource.group, resource.version, resource.kind);
            patched = strategic::apply(current, &patch, &schema)?;
        }
        // Handled above, because apply can create the object.
        PatchType::Apply { .. } => {}
    }
    Ok(patched)
}

fn parse_json(body: &[u8]) -> Result<Value, PatchError> {
    serde_json::from_slice(body).map_err(|e| PatchError::BadRequest(format!("body is not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup_kind;
    use serde_json::json;

    fn deployments() -> &'static ResourceInfo {
        lookup_kind("apps", "Deployment").unwrap()
    }

    fn live() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"},
                         "annotations": {"deployment.kubernetes.io/revision": "2"}},
            "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "web", "image": "host:2"}]}}},
        })
    }

    #[test]
    fn content_types_map_to_patch_types() {
        let cases = [
            ("application/merge-patch+json", PatchType::Merge),
            ("application/json-patch+json", PatchType::Json),
            ("application/strategic-merge-patch+json; charset=utf-8", PatchType::StrategicMerge),
        ];
        for (ct, want) in cases {
            assert_eq!(PatchType::from_content_type(ct, None, false).unwrap(), want, "{ct}");
        }
        let apply = PatchType::from_content_type("application/apply-patch+yaml", Some("kubectl"), true).unwrap();
        assert_eq!(apply, PatchType::Apply { field_manager: "kubectl".into(), force: true });
    }

    #[test]
    fn apply_without_manager_is_bad_request() {
        let err = PatchType::from_content_type("application/apply-patch+yaml", None, false).unwrap_err();
        assert_eq!(err.status_code(), 400);
    }

    #[test]
    fn unknown_content_type_is_415() {
        let err = PatchType::from_content_type("application/apply-patch+cbor", Some("m"), false).unwrap_err();
        assert_eq!(err.status_code(), 415);
        assert_eq!(err.reason(), "UnsupportedMediaType");
    }

    #[test]
    fn merge_patch_sets_and_removes_labels() {
        // `kubectl label deploy web env=prod tier-`
        let body = br#"{"metadata":{"labels":{"env":"prod","tier":null}}}"#;
        let out = apply_patch(deployments(), &PatchType::Merge, Some(&live()), body).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"app": "web", "env": "prod"}));
    }

    #[test]
    fn rollout_undo_json_patch() {
        // The two replace operations of `kubectl rollout undo`.
        let body = serde_json::to_vec(&json!([
            {"op": "replace", "path": "/spec/template", "value": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "host:1"}]}}},
            {"op": "replace", "path": "/metadata/annotations", "value": {"deployment.kubernetes.io/revision": "3"}},
        ]))
        .unwrap();
        let out = apply_patch(deployments(), &PatchType::Json, Some(&live()), &body).unwrap();
        assert_eq!(out["spec"]["template"]["spec"]["containers"][0]["image"], "host:1");
        assert_eq!(out["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");
    }

    #[test]
    fn json_patch_errors_map_like_reference() {
        let failed_test = br#"[{"op":"test","path":"/spec/replicas","value":5}]"#;
        let err = apply_patch(deployments(), &PatchType::Json, Some(&live()), failed_test).unwrap_err();
        assert_eq!(err.status_code(), 422, "{err}");
        let malformed = br#"{"op":"replace"}"#;
        let err = apply_patch(deployments(), &PatchType::Json, Some(&live()), malformed).unwrap_err();
        assert_eq!(err.status_code(), 400, "{err}");
    }

    #[test]
    fn three_way_apply_patch_keeps_containers() {
        // The shape kubectl's client-side apply sends after a manifest adds a container.
        let body = serde_json::to_vec(&json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"replicas": 2, "template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "log"}],
                "containers": [{"name": "log", "image": "host"}],
            }}},
        }))
        .unwrap();
        let out = apply_patch(deployments(), &PatchType::StrategicMerge, Some(&live()), &body).unwrap();
        let containers = out["spec"]["template"]["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[0], json!({"name": "web", "image": "host:2"}));
        assert_eq!(containers[1]["name"], "log");
        assert_eq!(out["spec"]["replicas"], 2);
    }

    #[test]
    fn patch_of_missing_object_is_not_found() {
        let err = apply_patch(deployments(), &PatchType::Merge, None, b"{}").unwrap_err();
        assert_eq!(err.status_code(), 404);
    }

    #[test]
    fn invalid_json_is_bad_request() {
        let err = apply_patch(deployments(), &PatchType::StrategicMerge, Some(&live()), b"{not json").unwrap_err();
        assert_eq!(err.status_code(), 400);
    }
}
