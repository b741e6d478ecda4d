//! The container runtime interface the agent drives.
//!
//! [`Runtime`] mirrors the CRI `RuntimeService`: a pod is a sandbox (its network namespace
//! and cgroup parent) holding containers that are created, started, stopped and removed one
//! by one. The process runtime implements it with host processes; a CRI runtime implements
//! it over containerd's gRPC socket with the same calls. Container logs are files in the
//! CRI log format (`<RFC 3339 nanos> stdout F <line>`), whatever the runtime, so the log
//! server reads them the same way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Failure of a runtime call.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("sandbox {id} not found")]
    SandboxNotFound { id: String },
    #[error("container {id} not found")]
    ContainerNotFound { id: String },
    /// The image cannot run on this runtime (for example any image but `host` on the
    /// process runtime). The agent shows `reason` and `message` as the container's
    /// waiting state.
    #[error("{message}")]
    ImageUnsupported { reason: String, message: String },
    /// Starting the container's process failed (command not found, permission denied).
    #[error("failed to start container {name}: {message}")]
    StartFailed { name: String, message: String },
    #[error("exec in container {id} timed out after {seconds}s")]
    ExecTimeout { id: String, seconds: u64 },
    #[error("runtime failure: {0}")]
    Internal(String),
}

/// What a pod's sandbox needs: identity, hostname and resource parent.
#[derive(Clone, Debug, Default)]
pub struct SandboxConfig {
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub hostname: String,
    /// Use the host's network namespace (`spec.hostNetwork`).
    pub host_network: bool,
    /// Directory that holds the pod's container log files.
    pub log_directory: PathBuf,
    /// Pod-level labels, kept so that `list_sandboxes` can return them after a restart.
    pub labels: BTreeMap<String, String>,
}

/// The state of a pod sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxStatus {
    pub id: String,
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    /// The pod's IP address; the node's address for host-network pods.
    pub ip: Option<String>,
    pub ready: bool,
    pub created_at: jiff::Timestamp,
}

/// A volume mount resolved to a host path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    pub read_only: bool,
}

/// CPU and memory limits, already converted from quantities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_request_millis: Option<i64>,
    pub cpu_limit_millis: Option<i64>,
    pub memory_limit_bytes: Option<i64>,
}

/// Everything needed to create one container; the agent resolves env sources (ConfigMaps,
/// Secrets, downward API) before it calls the runtime.
#[derive(Clone, Debug, Default)]
pub struct ContainerConfig {
    pub name: String,
    pub image: String,
    /// The command line: `command` then `args`, after `$(VAR)` expansion.
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub mounts: Vec<Mount>,
    pub resources: Resources,
    /// Restart count to record with the container, so a restarted agent keeps counting.
    pub attempt: u32,
    /// The log file, normally `<log_directory>/<name>/<attempt>.log`.
    pub log_path: PathBuf,
    pub stdin: bool,
    pub tty: bool,
    /// Labels stored with the container and returned by `list_containers`.
    pub labels: BTreeMap<String, String>,
}

/// The lifecycle state of a container, as CRI reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Created but not started.
    Created,
    /// Running since `started_at`.
    Running { started_at: jiff::Timestamp },
    /// Exited with `exit_code`. `reason` is `Completed`, `Error` or `OOMKilled`.
    Exited {
        started_at: Option<jiff::Timestamp>,
        finished_at: jiff::Timestamp,
        exit_code: i32,
        reason: String,
        message: Option<String>,
    },
    Unknown,
}

/// A container as the runtime knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerStatus {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub image: String,
    pub attempt: u32,
    pub state: ContainerState,
    pub log_path: PathBuf,
    pub labels: BTreeMap<String, String>,
}

/// The result of running a command to completion in a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// CPU and memory use of one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerStats {
    pub container_id: String,
    /// Total CPU time used, in nanoseconds.
    pub cpu_usage_nanos: u64,
    pub memory_working_set_bytes: u64,
    pub timestamp: Option<jiff::Timestamp>,
}

/// A container runtime: the process runtime, or a CRI runtime over gRPC.
///
/// Every call is idempotent where CRI's is: stopping a stopped container or removing a
/// removed sandbox succeeds. After an agent restart, `list_sandboxes` and
/// `list_containers` return what is still there, so the agent can adopt it.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The RuntimeClass handler name this runtime serves (`process`, `cri`).
    fn handler(&self) -> &str;

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus, RuntimeError>;
    /// Stops every container in the sandbox (SIGKILL after `grace`) and tears down its network.
    async fn stop_sandbox(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;
    async fn remove_sandbox(&self, id: &str) -> Result<(), RuntimeError>;
    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus, RuntimeError>;
    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>, RuntimeError>;

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
    ) -> Result<String, RuntimeError>;
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// Sends SIGTERM to the container's process group, then SIGKILL after `grace`.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;
    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError>;
    async fn list_containers(&self) -> Result<Vec<ContainerStatus>, RuntimeError>;

    /// Runs `command` in the container's namespaces and waits up to `timeout`.
    async fn exec_sync(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError>;

    async fn container_stats(&self, id: &str) -> Result<ContainerStats, RuntimeError>;
}

pub mod process;
