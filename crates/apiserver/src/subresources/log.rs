//! `pods/log`: streams a container's log from the node agent that runs the pod.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;

use super::node_agent;
use crate::routes::{ApiRequest, Shared};
use crate::status::ApiError;

/// `PodLogOptions` query parameters passed through to the node agent.
const FORWARDED_PARAMS: &[&str] = &["follow", "previous", "timestamps", "tailLines", "sinceSeconds", "sinceTime", "limitBytes"];

pub async fn serve(state: &Shared, request: ApiRequest) -> Result<Response, ApiError> {
    let pods = request.target.resource;
    let namespace = request.target.namespace.as_deref().unwrap_or("default");
    let name = request.target.name.as_deref().ok_or(ApiError::MethodNotAllowed)?;
    // the container is checked before the node, as the reference server does
    let pod = node_agent::read_pod(state, pods, namespace, name).await?;
    let container = node_agent::pick_container(&pod, name, request.param("container"))?;
    let located = node_agent::on_node(state, pod, name).await?;
    let node_name = located.node_name.as_str();
    let base = located.base_url();

    let mut url = format!("{base}/containerLogs/{namespace}/{name}/{container}");
    let query: Vec<String> = FORWARDED_PARAMS
        .iter()
        .filter_map(|key| request.param(key).map(|value| format!("{key}={}", encode_param(value))))
        .collect();
    if !query.is_empty() {
        url = format!("{url}?{}", query.join("&"));
    }
    tracing::debug!(pod = name, node = node_name, url, "proxying pod log");

    let upstream = state
        .kubelet_http
        .get(&url)
        .send()
        .await
        .map_err(|e| ApiError::ServiceUnavailable { message: format!("failed to reach the node agent of node {node_name}: {e}") })?;
    if !upstream.status().is_success() {
        let code = upstream.status();
        let text = upstream.text().await.unwrap_or_default();
        return Err(ApiError::bad_request(format!(
            "the node agent of node {node_name} returned {code} for the log of {namespace}/{name}/{container}: {}",
            text.trim()
        )));
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(upstream.bytes_stream()))
        .map_err(ApiError::internal)
}

fn encode_param(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_time_is_percent_encoded() {
        assert_eq!(encode_param("2024-01-01T00:00:00+01:00"), "2024-01-01T00%3A00%3A00%2B01%3A00");
    }
}
