//! The node's container runtimes for `capstan up`: the process runtime always, and the
//! CRI runtime over containerd when `--runtime cri` or `--containerd-socket` requests it.
//!
//! With `--runtime cri`, `up` starts its own containerd under `<data-dir>/containerd/`,
//! imports the image archives in `<data-dir>/images/`, writes the CNI bridge network and
//! connects the agent's CRI client. The RuntimeClasses `process` and `cri` are created
//! so that pods can name either.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use capstan_agent::runtime::Runtime;
use capstan_agent::runtime::cri::{CniConfig, CriRuntime, CriRuntimeConfig};
use capstan_agent::runtime::process::{PodNetworkConfig, ProcessRuntime, ProcessRuntimeConfig};
use k8s_openapi::api::node::v1::{RuntimeClass, Scheduling};
use kube::api::{ObjectMeta, PostParams};
use tracing::info;

use crate::containerd::{self, Containerd, ContainerdPaths};

/// The set of runtimes that the node offers besides `process`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeChoice {
    /// Only the process runtime (host commands, image `host`).
    Process,
    /// The process runtime and a CRI runtime on a containerd that `up` starts.
    Cri,
}

/// The runtime flags of `capstan up`.
#[derive(Clone, Debug, clap::Args)]
pub struct RuntimeArgs {
    /// Container runtimes of the node: `process` runs host commands only; `cri` also
    /// starts a private containerd under the data directory for real images.
    #[arg(long, value_enum, default_value = "process")]
    pub runtime: RuntimeChoice,
    /// Use the CRI runtime listening on this Unix socket instead of starting containerd
    /// (implies `--runtime cri`). Its CNI network is left as configured.
    #[arg(long, alias = "cri-socket")]
    pub containerd_socket: Option<PathBuf>,
    /// Pull from this registry (HOST:PORT) over plain HTTP; may be repeated. Registries on
    /// loopback addresses need no flag. Other registry settings (mirrors, CA
    /// certificates) go in `<data-dir>/containerd/certs.d/<HOST:PORT>/hosts.toml`.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT", value_parser = containerd::parse_registry)]
    pub insecure_registries: Vec<String>,
    /// RuntimeClass handler for pods without `runtimeClassName`: `process` or `cri`.
    /// The default is `cri` when the node offers it, else `process`.
    #[arg(long)]
    pub default_runtime: Option<String>,
    /// Address range (CIDR) for the IPs of CRI pods, given out by CNI host-local.
    #[arg(long, default_value = "10.245.0.0/24")]
    pub cri_pod_cidr: String,
    /// Linux bridge of the CRI pod network (at most 15 bytes).
    #[arg(long, default_value = "cst-cri0")]
    pub cri_bridge: String,
}

impl RuntimeArgs {
    /// Returns whether the node offers the CRI runtime.
    pub fn wants_cri(&self) -> bool {
        self.runtime == RuntimeChoice::Cri || self.containerd_socket.is_some()
    }

    /// The handler for pods that name none.
    pub fn default_handler(&self) -> String {
        match &self.default_runtime {
            Some(handler) => handler.clone(),
            None if self.wants_cri() => capstan_agent::runtime::cri::HANDLER.to_string(),
            None => capstan_agent::runtime::process::HANDLER.to_string(),
        }
    }
}

/// The runtimes of the node, and the containerd that `up` runs for them.
pub struct NodeRuntimes {
    pub runtimes: BTreeMap<String, Arc<dyn Runtime>>,
    pub default_handler: String,
    /// Pod ranges of runtimes other than the process runtime (for `Node.spec.podCIDRs`).
    pub extra_pod_cidrs: Vec<String>,
    pub containerd: Option<Containerd>,
}

/// Settings of the process runtime that `up` derives from its own flags.
pub struct ProcessSettings {
    pub data_dir: PathBuf,
    pub node_name: String,
    pub bridge: String,
    pub pod_cidr: String,
}

/// Builds the process runtime, and the CRI runtime when requested, and checks that the
/// default handler is one of them.
pub async fn build(args: &RuntimeArgs, process: &ProcessSettings) -> anyhow::Result<NodeRuntimes> {
    let mut runtimes: BTreeMap<String, Arc<dyn Runtime>> = BTreeMap::new();
    let process_runtime = process_runtime(process).await?;
    runtimes.insert(process_runtime.handler().to_string(), Arc::new(process_runtime));

    let mut extra_pod_cidrs = Vec::new();
    let mut containerd = None;
    if args.wants_cri() {
        let (socket, cni) = match &args.containerd_socket {
            Some(socket) => (socket.clone(), None),
            None => {
                let started = start_containerd(&process.data_dir, &args.insecure_registries).await?;
                let paths = started.paths.clone();
                containerd = Some(started);
                let cni = CniConfig {
                    conf_dir: paths.cni_conf_dir(),
                    bridge: args.cri_bridge.clone(),
                    pod_cidr: args.cri_pod_cidr.clone(),
                    ipam_dir: paths.cni_ipam_dir(),
                };
                extra_pod_cidrs.push(args.cri_pod_cidr.clone());
                (paths.socket(), Some(cni))
            }
        };
        let config = CriRuntimeConfig {
            socket: socket.clone(),
            cgroup_parent: format!("/capstan-cri-{}", process.node_name),
            cni,
        };
        let cri = CriRuntime::connect(config)
            .await
            .with_context(|| format!("failed to use the CRI runtime at {}", socket.display()))?;
        runtimes.insert(cri.handler().to_string(), Arc::new(cri));
    }

    let default_handler = args.default_handler();
    if !runtimes.contains_key(&default_handler) {
        anyhow::bail!(
            "invalid --default-runtime {default_handler:?}: the node offers {:?} (add `--runtime cri` for cri)",
            runtimes.keys().collect::<Vec<_>>()
        );
    }
    Ok(NodeRuntimes { runtimes, default_handler, extra_pod_cidrs, containerd })
}

async fn process_runtime(settings: &ProcessSettings) -> anyhow::Result<ProcessRuntime> {
    // Pods get their own network namespace only when the agent can create one.
    let network = nix::unistd::Uid::effective().is_root().then(|| PodNetworkConfig {
        bridge: settings.bridge.clone(),
        pod_cidr: settings.pod_cidr.clone(),
    });
    let shim = vec![std::env::current_exe()?.to_string_lossy().into_owned(), "shim".to_string()];
    let runtime = ProcessRuntime::new(ProcessRuntimeConfig {
        state_dir: settings.data_dir.join("runtime"),
        shim,
        network,
        cgroup_parent: format!("capstan-{}", settings.node_name),
    })?;
    // the cluster DNS listens on the bridge's gateway, which pods of every runtime use
    if let Err(error) = runtime.prepare_network().await {
        tracing::warn!(%error, "failed to set up the process pod bridge; it is retried with the first pod");
    }
    Ok(runtime)
}

/// Starts (or adopts) the private containerd and imports `<data-dir>/images/*.tar`.
async fn start_containerd(data_dir: &Path, insecure_registries: &[String]) -> anyhow::Result<Containerd> {
    let started = Containerd::start(data_dir, insecure_registries).await.context("failed to start containerd")?;
    let images = images_dir(data_dir);
    let imported = containerd::import_directory(&started.socket(), &images).await;
    info!(count = imported, dir = %images.display(), "imported image archives");
    Ok(started)
}

/// The directory whose archives `up` imports at start.
pub fn images_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("images")
}

/// The socket of the containerd that `up --runtime cri` runs for `data_dir`.
pub fn containerd_socket(data_dir: &Path) -> PathBuf {
    ContainerdPaths::new(data_dir).socket()
}

/// Creates one RuntimeClass per handler, each scheduling its pods onto nodes with the
/// agent's `runtime.capstan.io/<handler>` label. Existing classes are kept.
pub async fn create_runtime_classes(client: kube::Client, handlers: &[String]) -> anyhow::Result<()> {
    let api: kube::Api<RuntimeClass> = kube::Api::all(client);
    for handler in handlers {
        let class = RuntimeClass {
            metadata: ObjectMeta { name: Some(handler.clone()), ..ObjectMeta::default() },
            handler: handler.clone(),
            scheduling: Some(Scheduling {
                node_selector: Some(BTreeMap::from([(format!("runtime.capstan.io/{handler}"), "true".to_string())])),
                tolerations: None,
            }),
            overhead: None,
        };
        match api.create(&PostParams::default(), &class).await {
            Ok(_) => info!(runtime_class = %handler, "created RuntimeClass"),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(error).with_context(|| format!("failed to create RuntimeClass {handler}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(runtime: RuntimeChoice, socket: Option<&str>, default: Option<&str>) -> RuntimeArgs {
        RuntimeArgs {
            runtime,
            containerd_socket: socket.map(PathBuf::from),
            default_runtime: default.map(String::from),
            cri_pod_cidr: "10.245.0.0/24".into(),
            cri_bridge: "cst-cri0".into(),
            insecure_registries: Vec::new(),
        }
    }

    #[test]
    fn default_handler_is_cri_when_offered() {
        assert_eq!(args(RuntimeChoice::Process, None, None).default_handler(), "process");
        assert_eq!(args(RuntimeChoice::Cri, None, None).default_handler(), "cri");
        assert_eq!(args(RuntimeChoice::Process, Some("/run/c.sock"), None).default_handler(), "cri");
        assert_eq!(args(RuntimeChoice::Cri, None, Some("process")).default_handler(), "process");
    }
}

#[cfg(test)]
#[path = "runtimes_cri_tests.rs"]
mod cri_tests;
