//! Finding the node agent that runs a pod, for the subresources that the agent serves:
//! `log`, `exec`, `attach` and `portforward`.

use capstan_api::resources::{self, ResourceInfo};
use serde_json::Value;

use crate::meta;
use crate::routes::Shared;
use crate::status::ApiError;

/// A pod and the address of the node agent that runs it.
pub struct PodOnNode {
    pub pod: Value,
    pub node_name: String,
    /// The node's `InternalIP`.
    pub address: String,
    /// The agent's HTTPS port (`status.daemonEndpoints.kubeletEndpoint.Port`).
    pub port: u16,
}

impl PodOnNode {
    /// Returns the agent's base URL, such as `https://10.0.0.5:10250`.
    pub fn base_url(&self) -> String {
        let host = if self.address.contains(':') { format!("[{}]", self.address) } else { self.address.clone() };
        format!("https://{host}:{}", self.port)
    }

    /// Returns `status.phase`, or an empty string before the agent reported one.
    pub fn phase(&self) -> &str {
        self.pod["status"]["phase"].as_str().unwrap_or_default()
    }
}

/// Reads the pod `namespace/name` and the Node it is bound to.
pub async fn locate(state: &Shared, pods: &'static ResourceInfo, namespace: &str, name: &str) -> Result<PodOnNode, ApiError> {
    let pod = read_pod(state, pods, namespace, name).await?;
    on_node(state, pod, name).await
}

/// Reads the pod `namespace/name`.
pub async fn read_pod(state: &Shared, pods: &'static ResourceInfo, namespace: &str, name: &str) -> Result<Value, ApiError> {
    let kv = state
        .store
        .get(&pods.key(Some(namespace), name))
        .await?
        .ok_or_else(|| ApiError::not_found(pods, name))?;
    meta::decode_stored(pods, &kv)
}

/// Reads the Node that `pod` (named `name`) is bound to.
pub async fn on_node(state: &Shared, pod: Value, name: &str) -> Result<PodOnNode, ApiError> {
    let node_name = pod["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))?
        .to_string();
    let nodes = resources::lookup("", "v1", "nodes").ok_or_else(|| ApiError::internal("the resource table has no nodes"))?;
    let node_kv = state
        .store
        .get(&nodes.key(None, &node_name))
        .await?
        .ok_or_else(|| ApiError::not_found(nodes, &node_name))?;
    let node = meta::decode_stored(nodes, &node_kv)?;
    let (address, port) = agent_endpoint(&node, &node_name)?;
    Ok(PodOnNode { pod, node_name, address, port })
}

/// Chooses the container: the requested one, or the only one.
pub fn pick_container(pod: &Value, pod_name: &str, requested: Option<&str>) -> Result<String, ApiError> {
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

/// Reads the node agent's address from the node's `InternalIP` and kubelet endpoint port.
fn agent_endpoint(node: &Value, node_name: &str) -> Result<(String, u16), ApiError> {
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
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| ApiError::bad_request(format!("node {node_name} reports no kubelet endpoint port")))?;
    Ok((address.to_string(), port))
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
    fn unknown_container_is_rejected() {
        let pod = json!({"spec": {"containers": [{"name": "only"}]}});
        let error = pick_container(&pod, "web", Some("other")).expect_err("unknown");
        assert_eq!(error.to_string(), "container other is not valid for pod web");
    }

    #[test]
    fn endpoint_from_node_status() {
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"},
                                                     {"type": "InternalIP", "address": "10.0.0.5"}],
                                     "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        let (address, port) = agent_endpoint(&node, "n1").expect("endpoint");
        let located = PodOnNode { pod: json!({}), node_name: "n1".into(), address, port };
        assert_eq!(located.base_url(), "https://10.0.0.5:10250");
    }

    #[test]
    fn endpoint_port_must_fit() {
        let node = json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
                                     "daemonEndpoints": {"kubeletEndpoint": {"Port": 70000}}}});
        let error = agent_endpoint(&node, "n1").expect_err("port too large");
        assert_eq!(error.to_string(), "node n1 reports no kubelet endpoint port");
    }
}
