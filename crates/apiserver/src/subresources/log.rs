//! `pods/log`: streams a container's log from the node agent that runs the pod.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use capstan_api::resources;
use serde_json::Value;

use crate::meta;
use crate::routes::{ApiRequest, Shared};
use crate::status::ApiError;

/// `PodLogOptions` query parameters passed through to the node agent.
const FORWARDED_PARAMS: &[&str] = &["follow", "previous", "timestamps", "tailLines", "sinceSeconds", "sinceTime", "limitBytes"];

pub async fn serve(state: &Shared, request: ApiRequest) -> Result<Response, ApiError> {
    let pods = request.target.resource;
    let namespace = request.target.namespace.as_deref().unwrap_or("default");
    let name = request.target.name.as_deref().ok_or(ApiError::MethodNotAllowed)?;
    let kv = state
        .store
        .get(&pods.key(Some(namespace), name))
        .await?
        .ok_or_else(|| ApiError::not_found(pods, name))?;
    let pod = meta::decode_stored(pods, &kv)?;
    let container = pick_container(&pod, name, request.param("container"))?;

    // find the node agent's address
    let node_name = pod["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))?;
    let nodes = resources::lookup("", "v1", "nodes").ok_or_else(|| ApiError::internal("the resource table has no nodes"))?;
    let node_kv = state
        .store
        .get(&nodes.key(None, node_name))
        .await?
        .ok_or_else(|| ApiError::not_found(nodes, node_name))?;
    let node = meta::decode_stored(nodes, &node_kv)?;
    let base = kubelet_url(&node, node_name)?;

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

/// Chooses the container: the requested one, or the only one.
fn pick_container(pod: &Value, pod_name: &str, requested: Option<&str>) -> Result<String, ApiError> {
    let names: Vec<&str> = ["initContainers", "containers"]
        .iter()
        .flat_map(|field| pod["spec"][field].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    let regular: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    match requested {
        Some(name) if names.contains(&name) => Ok(name.to_string()),
        Some(name) => Err(ApiError::bad_request(format!("container {name} is not valid for pod {pod_name}"))),
        None if regular.len() == 1 => Ok(regular[0].to_string()),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {pod_name}, choose one of: [{}]",
            regular.join(" ")
        ))),
    }
}

/// Builds the node agent's base URL from the node's `InternalIP` and kubelet endpoint port.
fn kubelet_url(node: &Value, node_name: &str) -> Result<String, ApiError> {
    let address = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .ok_or_else(|| ApiError::bad_request(format!("node {node_name} reports no InternalIP address")))?;
    let endpoint = &node["status"]["daemonEndpoints"]["kubeletEndpoint"];
    let port = endpoint["Port"]
        .as_u64()
        .or_else(|| endpoint["port"].as_u64())
        .filter(|p| *p > 0 && *p <= u64::from(u16::MAX))
        .ok_or_else(|| ApiError::bad_request(format!("node {node_name} reports no kubelet endpoint port")))?;
    let host = if address.contains(':') { format!("[{address}]") } else { address.to_string() };
    Ok(format!("https://{host}:{port}"))
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
    use serde_json::json;

    #[test]
    fn several_containers_need_a_name() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let error = pick_container(&pod, "web", None).expect_err("ambiguous");
        assert_eq!(error.to_string(), "a container name must be specified for pod web, choose one of: [a b]");
        assert_eq!(pick_container(&pod, "web", Some("b")).expect("b"), "b");
    }

    #[test]
    fn single_container_is_implied() {
        let pod = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(pick_container(&pod, "web", None).expect("only"), "only");
    }

    #[test]
    fn kubelet_url_from_node_status() {
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"},
                                                     {"type": "InternalIP", "address": "10.0.0.5"}],
                                     "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(kubelet_url(&node, "n1").expect("url"), "https://10.0.0.5:10250");
    }

    #[test]
    fn since_time_is_percent_encoded() {
        assert_eq!(encode_param("2024-01-01T00:00:00+01:00"), "2024-01-01T00%3A00%3A00%2B01%3A00");
    }
}
