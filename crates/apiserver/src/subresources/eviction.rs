//! `pods/eviction`: deletes a pod on behalf of `kubectl drain`.

use axum::http::StatusCode;
use serde_json::json;

use crate::decode;
use crate::delete::{self, DeleteOptions};
use crate::meta;
use crate::routes::{ApiRequest, Reply, Shared};
use crate::status::{self, ApiError};

/// Evicts the pod named in the URL with the `deleteOptions` of the `Eviction` body.
///
/// NOTE: PodDisruptionBudgets are not served yet, so no eviction is ever refused with 429.
pub async fn evict(state: &Shared, request: &ApiRequest) -> Result<Reply, ApiError> {
    let pods = request.target.resource;
    let name = request.target.name.as_deref().ok_or(ApiError::MethodNotAllowed)?;
    let body = decode::parse_body(request.content_type(), &request.body)?;
    decode::check_type(&body, "policy/v1", "Eviction")?;
    if let Some(body_name) = meta::name(&body)
        && body_name != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the eviction ({body_name}) does not match the pod name on the URL ({name})"
        )));
    }
    let mut options = match body.get("deleteOptions") {
        Some(value) if !value.is_null() => DeleteOptions::from_value(value.clone())?,
        _ => DeleteOptions::default(),
    };
    if request.dry_run() {
        options.dry_run = vec!["All".into()];
    }
    delete::delete_one(state, pods, request.target.namespace.as_deref(), name, &options).await?;
    tracing::info!(pod = name, namespace = request.target.namespace.as_deref().unwrap_or(""), "pod evicted");

    let mut success = status::success(pods, name, None);
    success["code"] = json!(201);
    Ok(Reply { code: StatusCode::CREATED, body: success, warnings: Vec::new() })
}
