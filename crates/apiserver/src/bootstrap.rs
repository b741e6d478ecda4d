//! Objects every cluster has from the start.

use capstan_api::resources;
use serde_json::{Value, json};

use crate::routes::Shared;
use crate::status::ApiError;
use crate::{ServerError, create};

/// Namespaces the reference server creates at start-up.
const NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the built-in namespaces and the `process` RuntimeClass unless they exist.
pub async fn create_builtin_objects(state: &Shared) -> Result<(), ServerError> {
    for name in NAMESPACES {
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        create_if_absent(state, "", "namespaces", namespace).await?;
    }
    let runtime_class = json!({
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": "process"},
        "handler": "process",
        "scheduling": {"nodeSelector": {"runtime.capstan.io/process": "true"}},
    });
    create_if_absent(state, "node.k8s.io", "runtimeclasses", runtime_class).await
}

async fn create_if_absent(state: &Shared, group: &str, plural: &str, object: Value) -> Result<(), ServerError> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let failed = |message: String| ServerError::Bootstrap { name: format!("{plural}/{name}"), message };
    let resource = resources::lookup(group, "v1", plural).ok_or_else(|| failed("resource not served".into()))?;
    match create::insert(state, resource, None, object, false).await {
        Ok(_) => {
            tracing::info!(resource = plural, name, "created built-in object");
            Ok(())
        }
        Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(error) => Err(failed(error.to_string())),
    }
}
