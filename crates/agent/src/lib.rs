//! The node agent: registers its Node, renews its Lease, runs the pods bound to the node
//! through a [`runtime::Runtime`], probes them and reports their status.
//!
//! Start with [`run`]. It registers the node ([`node`]), serves logs over HTTPS
//! ([`server`]) and hands the pod watch to [`pod::manager`], which runs one
//! [`pod::worker::PodWorker`] per pod.

pub mod api;
pub mod directory;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod node;
pub mod pod;
pub mod runtime;
pub mod server;
pub mod spdy;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::api::KubePodApi;
use crate::directory::PodDirectory;
use crate::node::NodeFacts;
use crate::node::host::HostInfo;
use crate::pod::worker::WorkerContext;
use crate::runtime::Runtime;
use crate::runtime::set::RuntimeSet;
use crate::server::KubeletServer;

/// Settings of one node agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub node_name: String,
    pub node_ip: IpAddr,
    /// Holds pod log files under `pods/<uid>/logs`.
    pub data_dir: PathBuf,
    /// Written to `Node.spec.podCIDR`.
    pub pod_cidr: Option<String>,
    /// Ranges of further runtimes (the CRI runtime's CNI range), appended to
    /// `Node.spec.podCIDRs`.
    pub extra_pod_cidrs: Vec<String>,
    /// Address of the HTTPS log server; its port goes into `daemonEndpoints`.
    pub kubelet_listen: SocketAddr,
    /// Serving certificate of that listener.
    pub serving: capstan_pki::CertifiedKey,
    /// Clients of the log server (the API server) must chain to this CA.
    pub ca_pem: String,
    /// Extra node labels, such as `node-role.kubernetes.io/control-plane`.
    pub labels: BTreeMap<String, String>,
    /// CrashLoopBackOff base and cap; Kubernetes uses 10 s and 5 min.
    pub restart_backoff: (Duration, Duration),
    /// Lease renewal period; Kubernetes uses 10 s.
    pub heartbeat: Duration,
    /// The cluster DNS server written into pods' resolv.conf.
    pub cluster_dns: pod::dns::ClusterDns,
}

/// Failure that stops the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error("failed to list the runtime's sandboxes and containers: {0}")]
    Runtime(#[from] runtime::RuntimeError),
    #[error("failed to create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the pod watch of node {node} ended")]
    WatchEnded { node: String },
}

/// Delay between registration attempts while the API server is unreachable.
const REGISTER_RETRY: Duration = Duration::from_secs(2);

/// Runs the agent: serves logs, registers the node, keeps its Lease, and runs the pods
/// bound to it until the pod watch ends.
///
/// `runtimes` maps RuntimeClass handlers to runtimes; a pod runs on the one its
/// `runtimeClassName` names, or on `default_handler` when it names none. The node gets
/// the label `runtime.capstan.io/<handler>: "true"` for each.
pub async fn run(
    client: kube::Client,
    runtimes: BTreeMap<String, Arc<dyn Runtime>>,
    default_handler: &str,
    config: AgentConfig,
) -> Result<(), AgentError> {
    use tracing::Instrument;
    let span = tracing::info_span!("agent", node.name = %config.node_name);
    let runtime = Arc::new(RuntimeSet::new(runtimes, default_handler)?);
    run_agent(client, runtime, config).instrument(span).await
}

async fn run_agent(client: kube::Client, runtime: Arc<RuntimeSet>, config: AgentConfig) -> Result<(), AgentError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| AgentError::DataDir { path: config.data_dir.clone(), source })?;
    let host = HostInfo::read(&config.data_dir);

    // the log server first, so the node advertises a port that is already listening
    let directory = PodDirectory::new();
    let server = KubeletServer::bind(config.kubelet_listen, &config.serving, &config.ca_pem, directory.clone())
        .await?
        .with_runtime(runtime.clone());
    let kubelet_port = server.local_addr().map(|a| a.port()).unwrap_or(config.kubelet_listen.port());
    let _server_task = AbortOnDrop(tokio::spawn(server.serve()));

    // register, retrying until the API server is reachable
    let facts = NodeFacts {
        name: config.node_name.clone(),
        ip: config.node_ip,
        pod_cidr: config.pod_cidr.clone(),
        extra_pod_cidrs: config.extra_pod_cidrs.clone(),
        kubelet_port,
        labels: config.labels.clone(),
        handlers: runtime.handlers(),
        runtime_version: runtime.version(),
        host: host.clone(),
        since: jiff::Timestamp::now(),
    };
    while let Err(error) = node::register(&client, &facts).await {
        tracing::warn!(node.name = %config.node_name, %error, "node registration failed; retrying");
        tokio::time::sleep(REGISTER_RETRY).await;
    }
    let _heartbeat_task = AbortOnDrop(tokio::spawn(node::heartbeat_loop(client.clone(), facts, config.heartbeat)));

    // pods
    let context = Arc::new(WorkerContext {
        runtime,
        api: Arc::new(KubePodApi::new(client.clone())),
        directory,
        node_name: config.node_name.clone(),
        node_ip: config.node_ip,
        data_dir: config.data_dir.clone(),
        backoff: config.restart_backoff,
        node_cpu_millis: i64::from(host.cpus) * 1000,
        node_memory_bytes: host.memory_bytes,
        cluster_dns: config.cluster_dns.clone(),
    });
    pod::manager::run_pods(client, context).await?;
    Err(AgentError::WatchEnded { node: config.node_name })
}

/// Aborts a background task when the agent's future ends or is dropped, so that
/// cancelling [`run`] also stops the log server and the heartbeats. Pod workers stop on
/// their own once the pod manager is gone, and leave their containers running.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
