//! The Node object and its heartbeats: registration, the node Lease, and periodic status.

pub mod host;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use host::HostInfo;

/// Namespace of the node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How long a Lease stays valid without renewal, as kubelet sets it.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// Period of the full node status refresh, apart from the Lease renewals.
pub const STATUS_PERIOD: Duration = Duration::from_secs(60);
/// Pods a node accepts, kubelet's default `maxPods`.
pub const MAX_PODS: &str = "110";

/// Failure to register or renew the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("failed to {action} node {node}: {source}")]
    Node {
        action: &'static str,
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to renew lease {LEASE_NAMESPACE}/{node}: {source}")]
    Lease {
        node: String,
        #[source]
        source: kube::Error,
    },
}

/// Inputs of the Node object.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    pub name: String,
    pub ip: std::net::IpAddr,
    pub pod_cidr: Option<String>,
    /// Ranges of further runtimes, listed after `pod_cidr` in `podCIDRs`.
    pub extra_pod_cidrs: Vec<String>,
    pub kubelet_port: u16,
    pub labels: BTreeMap<String, String>,
    /// RuntimeClass handlers this node offers (`process`).
    pub handlers: Vec<String>,
    /// The default runtime and its version (`containerd://1.6.20`).
    pub runtime_version: String,
    pub host: HostInfo,
    /// When the agent started; the conditions' transition time.
    pub since: jiff::Timestamp,
}

impl NodeFacts {
    /// Builds the Node with its labels, spec and a fresh status.
    pub fn node(&self) -> Node {
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), self.name.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            (
                "kubernetes.io/arch".to_string(),
                self.host.architecture.clone(),
            ),
            ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
            (
                "beta.kubernetes.io/arch".to_string(),
                self.host.architecture.clone(),
            ),
        ]);
        for handler in &self.handlers {
            labels.insert(format!("runtime.capstan.io/{handler}"), "true".to_string());
        }
        labels.extend(self.labels.clone());
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: self.pod_cidr.clone(),
                pod_cidrs: self.pod_cidr.clone().map(|cidr| {
                    std::iter::once(cidr).chain(self.extra_pod_cidrs.iter().cloned()).collect()
                }),
                ..NodeSpec::default()
            }),
            status: Some(self.status(jiff::Timestamp::now())),
        }
    }

    /// Builds the node status with heartbeat time `now`.
    pub fn status(&self, now: jiff::Timestamp) -> NodeStatus {
        let host = &self.host;
        let resources = BTreeMap::from([
            ("cpu".to_string(), Quantity(host.cpus.to_string())),
            (
                "memory".to_string(),
                Quantity(format!("{}Ki", host.memory_bytes / 1024)),
            ),
            ("pods".to_string(), Quantity(MAX_PODS.to_string())),
            (
                "ephemeral-storage".to_string(),
                Quantity(host.ephemeral_storage_bytes.to_string()),
            ),
        ]);
        let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(Time(self.since)),
        };
        NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".to_string(),
                    address: self.ip.to_string(),
                },
                NodeAddress {
                    type_: "Hostname".to_string(),
                    address: self.name.clone(),
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: i32::from(self.kubelet_port),
                }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: host.architecture.clone(),
                boot_id: host.boot_id.clone(),
                container_runtime_version: self.runtime_version.clone(),
                kernel_version: host.kernel_version.clone(),
                kube_proxy_version: String::new(),
                kubelet_version: "v1.33.0".to_string(),
                machine_id: host.machine_id.clone(),
                operating_system: "linux".to_string(),
                os_image: host.os_image.clone(),
                system_uuid: host.machine_id.clone(),
                ..NodeSystemInfo::default()
            }),
            conditions: Some(vec![
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                condition(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                ),
                condition(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                condition(
                    "Ready",
                    "True",
                    "KubeletReady",
                    "kubelet is posting ready status",
                ),
            ]),
            ..NodeStatus::default()
        }
    }
}

/// Creates the Node, or updates the labels and spec of an existing one, then writes its
/// status.
pub async fn register(client: &Client, facts: &NodeFacts) -> Result<(), NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let node = facts.node();
    let failed = |action: &'static str| {
        move |source| NodeError::Node {
            action,
            node: facts.name.clone(),
            source,
        }
    };
    match api.get_opt(&facts.name).await.map_err(failed("read"))? {
        None => {
            api.create(&PostParams::default(), &node)
                .await
                .map_err(failed("create"))?;
            tracing::info!(node.name = %facts.name, "node registered");
        }
        Some(_) => {
            let patch = serde_json::json!({ "metadata": { "labels": node.metadata.labels }, "spec": node.spec });
            api.patch(&facts.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(failed("update"))?;
            tracing::info!(node.name = %facts.name, "node registration updated");
        }
    }
    update_status(client, facts).await
}

/// Writes a fresh node status (conditions with a new heartbeat time).
pub async fn update_status(client: &Client, facts: &NodeFacts) -> Result<(), NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({ "status": facts.status(jiff::Timestamp::now()) });
    api.patch_status(&facts.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| NodeError::Node {
            action: "update status of",
            node: facts.name.clone(),
            source,
        })?;
    Ok(())
}

/// Creates or renews the node's Lease in `kube-node-lease`.
pub async fn renew_lease(client: &Client, node: &str) -> Result<(), NodeError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let failed = |source| NodeError::Lease {
        node: node.to_string(),
        source,
    };
    let spec = LeaseSpec {
        holder_identity: Some(node.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
        renew_time: Some(MicroTime(jiff::Timestamp::now())),
        ..LeaseSpec::default()
    };
    if api.get_opt(node).await.map_err(failed)?.is_some() {
        let patch = serde_json::json!({ "spec": spec });
        api.patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(failed)?;
    } else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(node.to_string()),
                namespace: Some(LEASE_NAMESPACE.to_string()),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        };
        api.create(&PostParams::default(), &lease)
            .await
            .map_err(failed)?;
    }
    Ok(())
}

/// Renews the Lease every `heartbeat` and refreshes the node status every
/// [`STATUS_PERIOD`]. Failures are logged and retried on the next tick.
pub async fn heartbeat_loop(client: Client, facts: NodeFacts, heartbeat: Duration) {
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status = tokio::time::Instant::now();
    loop {
        ticker.tick().await;
        if let Err(error) = renew_lease(&client, &facts.name).await {
            tracing::warn!(node.name = %facts.name, %error, "lease renewal failed");
        }
        if last_status.elapsed() >= STATUS_PERIOD {
            match update_status(&client, &facts).await {
                Ok(()) => last_status = tokio::time::Instant::now(),
                Err(error) => {
                    tracing::warn!(node.name = %facts.name, %error, "node status update failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> NodeFacts {
        NodeFacts {
            name: "node-1".into(),
            ip: "192.0.2.10".parse().expect("ip"),
            pod_cidr: Some("10.88.0.0/24".into()),
            extra_pod_cidrs: vec!["10.245.0.0/24".into()],
            kubelet_port: 10250,
            labels: BTreeMap::from([(
                "node-role.kubernetes.io/control-plane".into(),
                String::new(),
            )]),
            handlers: vec!["cri".into(), "process".into()],
            runtime_version: "process://capstan-0.1.0".into(),
            host: HostInfo {
                cpus: 4,
                memory_bytes: 8 << 30,
                ephemeral_storage_bytes: 100 << 30,
                kernel_version: "6.1.0".into(),
                os_image: "Debian GNU/Linux 12 (bookworm)".into(),
                architecture: "amd64".into(),
                machine_id: "m1".into(),
                boot_id: "b1".into(),
                hostname: "host".into(),
            },
            since: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn node_carries_labels_and_capacity() {
        let node = facts().node();
        let labels = node.metadata.labels.expect("labels");
        assert_eq!(labels["kubernetes.io/hostname"], "node-1");
        assert_eq!(labels["runtime.capstan.io/process"], "true");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert!(labels.contains_key("node-role.kubernetes.io/control-plane"));
        assert_eq!(labels["runtime.capstan.io/cri"], "true");
        let cidrs = node.spec.as_ref().and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
        assert_eq!(cidrs, vec!["10.88.0.0/24".to_string(), "10.245.0.0/24".to_string()]);
        assert_eq!(
            node.spec.and_then(|s| s.pod_cidr).as_deref(),
            Some("10.88.0.0/24")
        );

        let status = node.status.expect("status");
        let capacity = status.capacity.expect("capacity");
        assert_eq!(capacity["cpu"].0, "4");
        assert_eq!(capacity["memory"].0, "8388608Ki");
        assert_eq!(capacity["pods"].0, "110");
        assert_eq!(
            status
                .daemon_endpoints
                .and_then(|d| d.kubelet_endpoint)
                .map(|e| e.port),
            Some(10250)
        );
        let info = status.node_info.expect("node info");
        assert_eq!(info.container_runtime_version, "process://capstan-0.1.0");
        assert_eq!(info.kubelet_version, "v1.33.0");
        let conditions = status.conditions.expect("conditions");
        let ready = conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("True", Some("KubeletReady"))
        );
        let addresses = status.addresses.expect("addresses");
        assert_eq!(addresses[0].address, "192.0.2.10");
    }
}
