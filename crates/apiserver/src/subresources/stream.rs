//! `pods/exec`, `pods/attach` and `pods/portforward`: checks the request against the pod,
//! then proxies the protocol upgrade to the node agent that runs the pod.
//!
//! The API server does not speak the stream protocols itself. The agent answers the
//! upgrade (WebSocket `v5.channel.k8s.io` for exec and attach, the port-forward tunnel
//! for portforward), and this module copies bytes both ways once it has.

use axum::response::Response;

use super::node_agent::{self, PodOnNode};
use super::upgrade;
use crate::routes::{ApiRequest, Shared};
use crate::status::ApiError;

/// The subresources that open a stream to the pod.
const CONNECT_SUBRESOURCES: &[&str] = &["exec", "attach", "portforward"];

/// Checks whether `subresource` opens a stream to the pod.
pub fn is_connect(subresource: &str) -> bool {
    CONNECT_SUBRESOURCES.contains(&subresource)
}

/// Serves one connect request: validates it, finds the agent and proxies the upgrade.
pub async fn serve(state: &Shared, mut request: ApiRequest) -> Result<Response, ApiError> {
    let pods = request.target.resource;
    let namespace = request.target.namespace.clone().unwrap_or_else(|| "default".to_string());
    let name = request.target.name.clone().ok_or(ApiError::MethodNotAllowed)?;
    let subresource = request.target.subresource.clone().unwrap_or_default();

    let located = node_agent::locate(state, pods, &namespace, &name).await?;
    let path = agent_path(&subresource, &located, &namespace, &name, &request)?;
    let Some(client_upgrade) = request.upgrade.take() else {
        return Err(ApiError::bad_request(format!(
            "{subresource} requires an HTTP/1.1 connection upgrade (WebSocket or SPDY/3.1)"
        )));
    };
    tracing::debug!(
        pod.namespace = %namespace,
        pod.name = %name,
        node.name = %located.node_name,
        subresource,
        "proxying a stream to the node agent"
    );
    upgrade::proxy(state, &located, &request, path, client_upgrade).await
}

/// Builds the agent's path and query for the request, after the checks that need only
/// the stored pod.
fn agent_path(
    subresource: &str,
    located: &PodOnNode,
    namespace: &str,
    name: &str,
    request: &ApiRequest,
) -> Result<String, ApiError> {
    let phase = located.phase();
    let query = request.raw_query.as_deref().map(|q| format!("?{q}")).unwrap_or_default();
    match subresource {
        "exec" | "attach" => {
            if matches!(phase, "Succeeded" | "Failed") {
                return Err(ApiError::bad_request(format!(
                    "cannot {subresource} into a container in a completed pod; current phase is {phase}"
                )));
            }
            let container = node_agent::pick_container(&located.pod, name, request.param("container"))?;
            Ok(format!("/{subresource}/{namespace}/{name}/{container}{query}"))
        }
        "portforward" => {
            if phase != "Running" {
                let shown = if phase.is_empty() { "Pending" } else { phase };
                return Err(ApiError::bad_request(format!(
                    "unable to forward port because pod is not running. Current status={shown}"
                )));
            }
            Ok(format!("/portForward/{namespace}/{name}{query}"))
        }
        other => Err(ApiError::bad_request(format!("{other} is not a stream subresource"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::parse_path;
    use serde_json::json;

    fn request(path: &str, query: Option<&str>) -> ApiRequest {
        let parsed = axum::http::Uri::try_from(format!("{path}?{}", query.unwrap_or_default())).expect("uri");
        ApiRequest {
            target: parse_path(path).expect("target"),
            method: axum::http::Method::GET,
            query: axum::extract::Query::try_from_uri(&parsed).map(|q| q.0).unwrap_or_default(),
            raw_query: query.map(str::to_string),
            headers: Default::default(),
            body: Default::default(),
            user: None,
            upgrade: None,
        }
    }

    fn pod_on_node(phase: &str, containers: &[&str]) -> PodOnNode {
        let containers: Vec<_> = containers.iter().map(|name| json!({"name": name})).collect();
        PodOnNode {
            pod: json!({"spec": {"containers": containers}, "status": {"phase": phase}}),
            node_name: "n1".into(),
            address: "127.0.0.1".into(),
            port: 10250,
        }
    }

    #[test]
    fn exec_path_keeps_repeated_commands() {
        let query = "command=sh&command=-c&command=echo+hi&stdout=true&container=app";
        let request = request("/api/v1/namespaces/ns1/pods/web/exec", Some(query));
        let path = agent_path("exec", &pod_on_node("Running", &["app", "side"]), "ns1", "web", &request).expect("path");
        assert_eq!(path, format!("/exec/ns1/web/app?{query}"));
    }

    #[test]
    fn exec_picks_only_container() {
        let request = request("/api/v1/namespaces/ns1/pods/web/exec", Some("command=true&stdout=true"));
        let path = agent_path("exec", &pod_on_node("Running", &["app"]), "ns1", "web", &request).expect("path");
        assert_eq!(path, "/exec/ns1/web/app?command=true&stdout=true");
    }

    #[test]
    fn exec_into_completed_pod_rejected() {
        let request = request("/api/v1/namespaces/ns1/pods/web/exec", Some("command=true"));
        let error = agent_path("exec", &pod_on_node("Succeeded", &["app"]), "ns1", "web", &request).expect_err("completed");
        assert_eq!(error.code_and_reason(), (400, "BadRequest"));
        assert_eq!(error.to_string(), "cannot exec into a container in a completed pod; current phase is Succeeded");
    }

    #[test]
    fn exec_unknown_container_rejected() {
        let request = request("/api/v1/namespaces/ns1/pods/web/exec", Some("command=true&container=nope"));
        let error = agent_path("exec", &pod_on_node("Running", &["app"]), "ns1", "web", &request).expect_err("unknown");
        assert_eq!(error.to_string(), "container nope is not valid for pod web");
    }

    #[test]
    fn portforward_needs_running_pod() {
        let request = request("/api/v1/namespaces/ns1/pods/web/portforward", None);
        let error = agent_path("portforward", &pod_on_node("", &["app"]), "ns1", "web", &request).expect_err("pending");
        assert_eq!(error.to_string(), "unable to forward port because pod is not running. Current status=Pending");
        let path = agent_path("portforward", &pod_on_node("Running", &["app"]), "ns1", "web", &request).expect("path");
        assert_eq!(path, "/portForward/ns1/web");
    }
}
