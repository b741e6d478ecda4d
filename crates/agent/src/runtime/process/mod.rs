//! The process runtime: containers are host processes, the default runtime class.
//!
//! A pod sandbox is a network namespace (when the agent runs as root and a pod network is
//! configured) and a cgroup parent. Each container runs under a shim process (see
//! [`shim_main`]), which outlives the agent, writes the CRI log file and records the exit
//! status, so that a restarted agent finds running containers on disk and adopts them.
//! Only the image `host` runs here; it means "run this command from the host's file system".
//!
//! NOTE: containers share the host's file system, mount, PID, UTS and user namespaces:
//! volume mounts, `hostname`, `stdin` and `tty` are recorded but not applied to the
//! container itself (`kubectl exec -it` does get a terminal).

mod cgroups;
mod container;
mod container_stop;
mod crilog;
mod enter;
mod exec;
mod exec_stream;
mod ipam;
mod netns;
mod sandbox;
mod shim;
mod state;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::runtime::{
    ContainerConfig, ContainerStats, ContainerStatus, ExecOutput, ExecRequest, ExecSession,
    Runtime, RuntimeError, SandboxConfig, SandboxStatus,
};

pub use shim::shim_main;

use cgroups::CgroupLayout;
use netns::PodNetwork;

/// The RuntimeClass handler this runtime serves.
pub const HANDLER: &str = "process";

/// The only image the process runtime accepts.
pub const HOST_IMAGE: &str = "host";

/// Settings of the process runtime.
#[derive(Clone, Debug)]
pub struct ProcessRuntimeConfig {
    /// Persistent state that survives agent restarts: sandbox and container records, exit
    /// records, IP leases.
    pub state_dir: PathBuf,
    /// Program and leading arguments that run the shim, such as `["/usr/bin/capstan",
    /// "shim"]`; the runtime appends the container's state directory.
    pub shim: Vec<String>,
    /// The pod network; `None` makes every pod share the host's network.
    pub network: Option<PodNetworkConfig>,
    /// The cgroup under which pods get theirs, such as `capstan` for
    /// `/sys/fs/cgroup/<controller>/capstan/<pod uid>/<container id>`.
    pub cgroup_parent: String,
}

/// The bridge and address range for pod networks.
#[derive(Clone, Debug)]
pub struct PodNetworkConfig {
    /// Linux bridge name (at most 15 bytes), created on demand, such as `cst0`.
    pub bridge: String,
    /// IPv4 range for pods, such as `10.244.0.0/24`; the first address is the gateway.
    pub pod_cidr: String,
}

/// Failure to set up the process runtime itself.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "the shim command is empty: set it to the program that runs `shim`, such as [\"/usr/bin/capstan\", \"shim\"]"
    )]
    EmptyShim,
    #[error("invalid bridge name {bridge:?}: use 1 to 15 letters, digits, '-' or '_'")]
    InvalidBridge { bridge: String },
    #[error("invalid cgroup parent {parent:?}: use a relative path without '..'")]
    InvalidCgroupParent { parent: String },
}

/// Runs pods as host processes; see the module documentation.
#[derive(Debug)]
pub struct ProcessRuntime {
    config: ProcessRuntimeConfig,
    /// `None` when the agent may not create cgroups (not root).
    cgroups: Option<CgroupLayout>,
    /// `None` for host networking (no network configured, or not root).
    network: Option<PodNetwork>,
}

impl ProcessRuntime {
    /// Checks the configuration and creates the state directory. Without root, pods get
    /// the host's network and no cgroups, whatever the configuration requests.
    /// Sets up the pod bridge ahead of the first pod; see [`PodNetwork::prepare`].
    pub async fn prepare_network(&self) -> Result<(), RuntimeError> {
        match &self.network {
            Some(network) => network.prepare().await.map_err(|err| RuntimeError::Internal(err.to_string())),
            None => Ok(()),
        }
    }

    pub fn new(config: ProcessRuntimeConfig) -> Result<Self, RuntimeError> {
        validate(&config).map_err(|err| RuntimeError::Internal(err.to_string()))?;
        for dir in ["sandboxes", "containers"] {
            state::create_dir(&config.state_dir.join(dir))?;
        }
        let root = nix::unistd::geteuid().is_root();
        let cgroups = root.then(|| CgroupLayout::detect(Path::new("/sys/fs/cgroup")));
        let network = match (&config.network, root) {
            (Some(network), true) => {
                let cidr = ipam::Ipv4Cidr::parse(&network.pod_cidr)
                    .map_err(|err| RuntimeError::Internal(err.to_string()))?;
                let ipam_dir = config.state_dir.join("ipam").join(&network.bridge);
                Some(PodNetwork::new(network.bridge.clone(), cidr, ipam_dir))
            }
            (Some(_), false) => {
                tracing::warn!(
                    "the process runtime is not running as root; pods share the host network"
                );
                None
            }
            (None, _) => None,
        };
        tracing::debug!(state_dir = %config.state_dir.display(), ?cgroups, pod_network = network.is_some(), "process runtime ready");
        Ok(Self {
            config,
            cgroups,
            network,
        })
    }

    fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.config.state_dir.join("sandboxes").join(id)
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.config.state_dir.join("containers").join(id)
    }
}

fn validate(config: &ProcessRuntimeConfig) -> Result<(), ConfigError> {
    if config.shim.first().is_none_or(|program| program.is_empty()) {
        return Err(ConfigError::EmptyShim);
    }
    if let Some(network) = &config.network {
        let bridge = &network.bridge;
        let valid = (1..=15).contains(&bridge.len())
            && bridge
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(ConfigError::InvalidBridge {
                bridge: bridge.clone(),
            });
        }
    }
    let parent = Path::new(&config.cgroup_parent);
    let escapes = parent
        .components()
        .any(|part| !matches!(part, std::path::Component::Normal(_)));
    if config.cgroup_parent.is_empty() || escapes {
        return Err(ConfigError::InvalidCgroupParent {
            parent: config.cgroup_parent.clone(),
        });
    }
    Ok(())
}

/// Checks an id from a caller before it becomes part of a path.
fn check_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit())
}

impl From<state::StateError> for RuntimeError {
    fn from(err: state::StateError) -> Self {
        RuntimeError::Internal(err.to_string())
    }
}

impl From<cgroups::CgroupError> for RuntimeError {
    fn from(err: cgroups::CgroupError) -> Self {
        RuntimeError::Internal(err.to_string())
    }
}

impl From<netns::NetworkError> for RuntimeError {
    fn from(err: netns::NetworkError) -> Self {
        RuntimeError::Internal(err.to_string())
    }
}

#[async_trait::async_trait]
impl Runtime for ProcessRuntime {
    fn handler(&self) -> &str {
        HANDLER
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus, RuntimeError> {
        self.run_sandbox_impl(config).await
    }

    async fn stop_sandbox(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.stop_sandbox_impl(id, grace).await
    }

    async fn remove_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        self.remove_sandbox_impl(id).await
    }

    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus, RuntimeError> {
        self.sandbox_status_impl(id)
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>, RuntimeError> {
        self.list_sandboxes_impl()
    }

    async fn image_status(&self, _sandbox_id: &str, image: &str) -> Result<Option<String>, RuntimeError> {
        if image == HOST_IMAGE {
            Ok(Some(image.to_string()))
        } else {
            Err(container::unsupported_image(image))
        }
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
    ) -> Result<String, RuntimeError> {
        self.create_container_impl(sandbox_id, config)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.start_container_impl(id).await
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.stop_container_impl(id, grace).await
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.remove_container_impl(id).await
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        self.container_status_impl(id)
    }

    async fn list_containers(&self) -> Result<Vec<ContainerStatus>, RuntimeError> {
        self.list_containers_impl()
    }

    async fn exec_sync(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        self.exec_sync_impl(id, command, timeout).await
    }

    async fn container_stats(&self, id: &str) -> Result<ContainerStats, RuntimeError> {
        self.container_stats_impl(id)
    }

    async fn exec(&self, id: &str, request: &ExecRequest) -> Result<ExecSession, RuntimeError> {
        self.exec_impl(id, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(shim: &[&str], bridge: &str, parent: &str) -> ProcessRuntimeConfig {
        ProcessRuntimeConfig {
            state_dir: PathBuf::from("/tmp/unused"),
            shim: shim.iter().map(|s| s.to_string()).collect(),
            network: Some(PodNetworkConfig {
                bridge: bridge.into(),
                pod_cidr: "10.250.0.0/24".into(),
            }),
            cgroup_parent: parent.into(),
        }
    }

    #[test]
    fn validate_rejects_bad_config() {
        assert!(validate(&config(&["/bin/capstan", "shim"], "cst0", "capstan")).is_ok());
        assert!(matches!(
            validate(&config(&[], "cst0", "capstan")),
            Err(ConfigError::EmptyShim)
        ));
        assert!(matches!(
            validate(&config(&["x"], "a-bridge-name-too-long", "capstan")),
            Err(ConfigError::InvalidBridge { .. })
        ));
        assert!(matches!(
            validate(&config(&["x"], "cst0", "../etc")),
            Err(ConfigError::InvalidCgroupParent { .. })
        ));
        assert!(matches!(
            validate(&config(&["x"], "cst0", "/abs")),
            Err(ConfigError::InvalidCgroupParent { .. })
        ));
    }

    #[test]
    fn ids_from_callers_are_checked() {
        assert!(check_id("0123abcdef"));
        assert!(!check_id("../../etc"));
        assert!(!check_id(""));
    }
}
