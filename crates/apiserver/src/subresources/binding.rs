//! `pods/binding`: assigns a pending pod to a node, as schedulers do.

use axum::http::StatusCode;
use serde_json::json;

use crate::decode;
use crate::meta;
use crate::routes::{ApiRequest, Reply, Shared};
use crate::status::{self, ApiError};
use crate::update::{self, Proposal, UpdateTarget};

/// Sets `spec.nodeName` of the pod from a `Binding` body; 409 when the pod already has a
/// node or is being deleted.
pub async fn bind(state: &Shared, request: &ApiRequest) -> Result<Reply, ApiError> {
    let resource = request.target.resource;
    let name = request.target.name.as_deref().ok_or(ApiError::MethodNotAllowed)?;
    let body = decode::parse_body(request.content_type(), &request.body)?;
    decode::check_type(&body, "v1", "Binding")?;
    if let Some(body_name) = meta::name(&body)
        && body_name != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the binding ({body_name}) does not match the pod name on the URL ({name})"
        )));
    }
    let node = body["target"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("the binding has no target.name"))?
        .to_string();

    let target = UpdateTarget {
        resource,
        namespace: request.target.namespace.as_deref(),
        name,
        subresource: None,
        dry_run: request.dry_run(),
        server_write: true,
    };
    update::update_with(state, &target, |current| {
        if meta::is_deleting(current) {
            return Err(ApiError::conflict(resource, name, format!("pod {name} is being deleted, cannot be assigned to a host")));
        }
        if let Some(assigned) = current["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict(resource, name, format!("pod {name} is already assigned to node {assigned}")));
        }
        let mut object = current.clone();
        object["spec"]["nodeName"] = json!(node);
        Ok(Proposal { object, precondition: None })
    })
    .await?;
    tracing::info!(pod = name, node, "pod bound");
    let mut success = status::success(resource, name, None);
    success["code"] = json!(201);
    Ok(Reply { code: StatusCode::CREATED, body: success, warnings: Vec::new() })
}
