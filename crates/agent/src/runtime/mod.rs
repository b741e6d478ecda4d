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
use std::pin::Pin;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

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
    /// The image could not be made present: `reason` is `ErrImagePull` (the pull failed)
    /// or `ErrImageNeverPull` (absent, and the pull policy is `Never`). `message` is the
    /// runtime's own wording, shown in the container's waiting state.
    #[error("{message}")]
    ImagePull { reason: String, message: String },
    #[error("exec in container {id} timed out after {seconds}s")]
    ExecTimeout { id: String, seconds: u64 },
    /// The runtime cannot stream commands (`kubectl exec`).
    #[error("exec is not supported by the {handler} runtime")]
    ExecUnsupported { handler: String },
    /// The runtime cannot connect to a container's own streams (`kubectl attach`).
    #[error("attach is not supported by the {handler} runtime")]
    AttachUnsupported { handler: String },
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
    /// The RuntimeClass handler that runs the pod; empty for the node's default.
    pub runtime_handler: String,
    /// Use the host's network namespace (`spec.hostNetwork`).
    pub host_network: bool,
    /// Directory that holds the pod's container log files.
    pub log_directory: PathBuf,
    /// Pod-level labels, kept so that `list_sandboxes` can return them after a restart.
    pub labels: BTreeMap<String, String>,
    /// The pod's resolver settings; `None` keeps the node's resolv.conf.
    pub dns: Option<DnsSettings>,
}

/// A pod's resolv.conf contents, as `dnsPolicy` and `dnsConfig` give them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsSettings {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    /// Options such as `ndots:5`.
    pub options: Vec<String>,
}

impl DnsSettings {
    /// Renders the settings in resolv.conf syntax.
    pub fn to_resolv_conf(&self) -> String {
        let mut text = String::new();
        for server in &self.nameservers {
            text.push_str(&format!("nameserver {server}\n"));
        }
        if !self.searches.is_empty() {
            text.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            text.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        text
    }
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

/// When the runtime pulls a container's image (`imagePullPolicy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// Parses `imagePullPolicy`; unset or unknown values get the Kubernetes default for
    /// `image` (`Always` for an untagged or `:latest` image, else `IfNotPresent`).
    pub fn from_spec(policy: Option<&str>, image: &str) -> PullPolicy {
        match policy {
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            Some("IfNotPresent") => PullPolicy::IfNotPresent,
            _ => {
                let last = image.rsplit('/').next().unwrap_or(image);
                let name = last.split('@').next().unwrap_or(last);
                match name.split_once(':') {
                    Some((_, "latest")) | None if !image.contains('@') => PullPolicy::Always,
                    _ => PullPolicy::IfNotPresent,
                }
            }
        }
    }
}

/// Everything needed to create one container; the agent resolves env sources (ConfigMaps,
/// Secrets, downward API) before it calls the runtime.
#[derive(Clone, Debug, Default)]
pub struct ContainerConfig {
    pub name: String,
    pub image: String,
    pub image_pull_policy: PullPolicy,
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
    /// Closes standard input after the first attached client detaches (`stdinOnce`).
    pub stdin_once: bool,
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
    /// The image the container runs, as the runtime identifies it: a digest reference
    /// (`sha256:…` or `repo@sha256:…`) on CRI, the image name on the process runtime.
    pub image_id: String,
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

/// A command to run in a running container with its streams attached (`kubectl exec`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Runs the command on a pseudo-terminal. Its output then arrives on `stdout` only.
    pub tty: bool,
}

/// A terminal size in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

/// Applies a new terminal size to the command's pseudo-terminal.
pub type ResizeFn = Box<dyn Fn(TerminalSize) -> std::io::Result<()> + Send + Sync>;

/// A command started by [`Runtime::exec`]. Each stream is present only when requested.
pub struct ExecSession {
    /// Dropping it closes the command's standard input.
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pub stdout: Option<Pin<Box<dyn AsyncRead + Send>>>,
    pub stderr: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// Present with a terminal only.
    pub resize: Option<ResizeFn>,
    /// Resolves to the exit code (128 + signal for a killed command). Dropping it before
    /// it resolves kills the command.
    pub exit: BoxFuture<'static, Result<i32, RuntimeError>>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish_non_exhaustive()
    }
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

    /// The runtime and its version, as the node shows them in `containerRuntimeVersion`.
    fn version(&self) -> String {
        format!("{}://capstan-{}", self.handler(), env!("CARGO_PKG_VERSION"))
    }

    /// The container's id as the API shows it in `containerID`: `<runtime>://<id>`, where
    /// the runtime is the name it reports (`containerd`), or the handler.
    fn container_uri(&self, id: &str) -> String {
        format!("{}://{id}", self.handler())
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus, RuntimeError>;
    /// Stops every container in the sandbox (SIGKILL after `grace`) and tears down its network.
    async fn stop_sandbox(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;
    async fn remove_sandbox(&self, id: &str) -> Result<(), RuntimeError>;
    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus, RuntimeError>;
    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>, RuntimeError>;

    /// Returns the runtime's identity of `image` (the container's `imageID`) when it is
    /// present for pods of the sandbox, or `None`. Runtimes without images (the process runtime) report the images they
    /// can run as present and fail with [`RuntimeError::ImageUnsupported`] for the others.
    async fn image_status(&self, sandbox_id: &str, image: &str) -> Result<Option<String>, RuntimeError> {
        let _ = sandbox_id;
        Ok(Some(image.to_string()))
    }

    /// Pulls `image` for the pod of the sandbox and returns its identity, as
    /// [`Runtime::image_status`] does. Failures are
    /// [`RuntimeError::ImagePull`] with the runtime's message.
    async fn pull_image(&self, sandbox_id: &str, image: &str) -> Result<String, RuntimeError> {
        let _ = sandbox_id;
        Ok(image.to_string())
    }

    /// Creates the container from its image, which must be present (see
    /// [`Runtime::image_status`]).
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

    /// Starts `request.command` in the running container `id`, with the same namespaces,
    /// cgroups, environment and working directory as the container, and returns its
    /// streams. A command that cannot be found still returns a session: its message goes
    /// to stderr and its exit code is 126 or 127, as with runc. Runtimes that cannot
    /// stream return [`RuntimeError::ExecUnsupported`].
    async fn exec(&self, id: &str, request: &ExecRequest) -> Result<ExecSession, RuntimeError> {
        let _ = (id, request);
        Err(RuntimeError::ExecUnsupported {
            handler: self.handler().to_string(),
        })
    }

    /// Connects to the standard streams of the running container `id` (`kubectl attach`).
    /// `request.command` is ignored. The session's exit resolves when the client's
    /// streams end or the container stops. Runtimes that cannot attach return
    /// [`RuntimeError::AttachUnsupported`]; the agent then serves the container's output
    /// from its log file.
    async fn attach(&self, id: &str, request: &ExecRequest) -> Result<ExecSession, RuntimeError> {
        let _ = (id, request);
        Err(RuntimeError::AttachUnsupported {
            handler: self.handler().to_string(),
        })
    }
}

pub mod cri;
pub mod forward;
pub mod reference;
pub mod process;
pub mod set;

#[cfg(test)]
mod tests {
    use super::PullPolicy;

    #[test]
    fn pull_policy_defaults_follow_the_image_tag() {
        assert_eq!(PullPolicy::from_spec(None, "registry.k8s.io/busybox"), PullPolicy::Always);
        assert_eq!(PullPolicy::from_spec(None, "busybox:latest"), PullPolicy::Always);
        assert_eq!(PullPolicy::from_spec(None, "busybox:local"), PullPolicy::IfNotPresent);
        assert_eq!(PullPolicy::from_spec(None, "localhost:5000/busybox"), PullPolicy::Always);
        assert_eq!(PullPolicy::from_spec(None, "busybox@sha256:ab"), PullPolicy::IfNotPresent);
        assert_eq!(PullPolicy::from_spec(Some("Never"), "busybox"), PullPolicy::Never);
    }
}
