//! The CRI runtime: pods as containerd sandboxes, driven over CRI v1 gRPC.
//!
//! [`CriRuntime`] speaks to containerd's Unix socket with the `RuntimeService` and
//! `ImageService` clients. containerd does the work (sandbox pause container, CNI network,
//! runc containers, CRI-format log files); this module translates calls and errors.
//! Pods survive an agent restart because containerd keeps them; `list_sandboxes` and
//! `list_containers` return them for adoption.

pub mod cni;
pub mod convert;
mod exec;
mod image;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{
    ContainerConfig, ContainerStats, ContainerStatus, ExecOutput, ExecRequest, ExecSession, Runtime, RuntimeError,
    SandboxConfig, SandboxStatus,
};
pub use cni::CniConfig;

/// The handler name of this runtime.
pub const HANDLER: &str = "cri";

/// Settings of a CRI runtime.
#[derive(Clone, Debug)]
pub struct CriRuntimeConfig {
    /// containerd's gRPC socket.
    pub socket: PathBuf,
    /// cgroupfs parent of every sandbox, such as `/capstan-node1`.
    pub cgroup_parent: String,
    /// The pod network to write for containerd; `None` leaves `conf_dir` alone (a
    /// containerd that someone else configured).
    pub cni: Option<CniConfig>,
}

/// A [`Runtime`] over containerd's CRI plugin.
pub struct CriRuntime {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    cgroup_parent: String,
    /// The name the runtime reports (`containerd`), the scheme of container URIs.
    runtime_name: String,
    /// The version the runtime reports (`1.6.20~ds1`).
    runtime_version: String,
    /// Container id to sandbox id; CRI's `ContainerStatus` lacks the sandbox.
    sandboxes_of: Mutex<HashMap<String, String>>,
}

impl CriRuntime {
    /// Writes the CNI conflist (when configured), connects to the socket and checks that
    /// the CRI plugin answers `Version`.
    pub async fn connect(config: CriRuntimeConfig) -> Result<CriRuntime, RuntimeError> {
        if let Some(cni) = &config.cni {
            let path = cni::write_conflist(cni).map_err(|e| RuntimeError::Internal(e.to_string()))?;
            tracing::info!(conflist = %path.display(), bridge = %cni.bridge, pod_cidr = %cni.pod_cidr, "wrote the CNI network");
            cni::accept_forwarding(cni).await;
        }
        let channel = connect_channel(&config.socket).await?;
        let mut runtime = RuntimeServiceClient::new(channel.clone());
        let version = runtime
            .version(cri::VersionRequest { version: "v1".to_string() })
            .await
            .map_err(|status| {
                RuntimeError::Internal(format!(
                    "containerd at {} failed the CRI v1 Version call: {}; check that its CRI plugin is enabled",
                    config.socket.display(),
                    status.message()
                ))
            })?
            .into_inner();
        tracing::info!(
            runtime = %version.runtime_name,
            version = %version.runtime_version,
            api = %version.runtime_api_version,
            "connected to the CRI runtime"
        );
        Ok(CriRuntime {
            runtime,
            images: ImageServiceClient::new(channel),
            cgroup_parent: config.cgroup_parent,
            runtime_name: version.runtime_name.clone(),
            runtime_version: version.runtime_version.clone(),
            sandboxes_of: Mutex::new(HashMap::new()),
        })
    }

    fn client(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    async fn raw_sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus, RuntimeError> {
        let request = cri::PodSandboxStatusRequest { pod_sandbox_id: id.to_string(), verbose: false };
        let response = self.client().pod_sandbox_status(request).await.map_err(sandbox_error(id))?;
        response
            .into_inner()
            .status
            .ok_or_else(|| RuntimeError::SandboxNotFound { id: id.to_string() })
    }

    /// The sandbox of container `id`, from the cache or from `ListContainers`.
    async fn sandbox_of(&self, id: &str) -> Result<String, RuntimeError> {
        if let Some(sandbox) = self.sandboxes_of.lock().ok().and_then(|m| m.get(id).cloned()) {
            return Ok(sandbox);
        }
        let filter = cri::ContainerFilter { id: id.to_string(), ..Default::default() };
        let request = cri::ListContainersRequest { filter: Some(filter) };
        let list = self.client().list_containers(request).await.map_err(container_error(id))?;
        let container = list
            .into_inner()
            .containers
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.to_string() })?;
        self.remember(id, &container.pod_sandbox_id);
        Ok(container.pod_sandbox_id)
    }

    fn remember(&self, container: &str, sandbox: &str) {
        if let Ok(mut map) = self.sandboxes_of.lock() {
            map.insert(container.to_string(), sandbox.to_string());
        }
    }
}

/// Dials the Unix socket; tonic wants a URI, which the connector ignores.
async fn connect_channel(socket: &Path) -> Result<Channel, RuntimeError> {
    let path = socket.to_path_buf();
    let endpoint = Endpoint::try_from("http://[::]:50051")
        .map_err(|e| RuntimeError::Internal(e.to_string()))?
        .connect_timeout(Duration::from_secs(5));
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|error| {
            RuntimeError::Internal(format!("failed to connect to the CRI socket {}: {error}", socket.display()))
        })
}

fn sandbox_error(id: &str) -> impl Fn(tonic::Status) -> RuntimeError + '_ {
    move |status| match status.code() {
        tonic::Code::NotFound => RuntimeError::SandboxNotFound { id: id.to_string() },
        _ => RuntimeError::Internal(format!("CRI call for sandbox {id} failed: {}", status.message())),
    }
}

fn container_error(id: &str) -> impl Fn(tonic::Status) -> RuntimeError + '_ {
    move |status| match status.code() {
        tonic::Code::NotFound => RuntimeError::ContainerNotFound { id: id.to_string() },
        _ => RuntimeError::Internal(format!("CRI call for container {id} failed: {}", status.message())),
    }
}

/// Stop and remove succeed on what is already gone, as CRI's calls do.
fn ignore_not_found(result: Result<(), RuntimeError>) -> Result<(), RuntimeError> {
    match result {
        Err(RuntimeError::SandboxNotFound { .. } | RuntimeError::ContainerNotFound { .. }) => Ok(()),
        other => other,
    }
}

#[async_trait::async_trait]
impl Runtime for CriRuntime {
    fn handler(&self) -> &str {
        HANDLER
    }

    fn container_uri(&self, id: &str) -> String {
        format!("{}://{id}", self.runtime_name)
    }

    fn version(&self) -> String {
        format!("{}://{}", self.runtime_name, self.runtime_version)
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus, RuntimeError> {
        std::fs::create_dir_all(&config.log_directory).map_err(|error| {
            RuntimeError::Internal(format!("failed to create {}: {error}", config.log_directory.display()))
        })?;
        let cgroup_parent = format!("{}/pod{}", self.cgroup_parent, config.pod_uid);
        let request = cri::RunPodSandboxRequest {
            config: Some(convert::sandbox_config(config, &cgroup_parent)),
            runtime_handler: String::new(),
        };
        let response = self.client().run_pod_sandbox(request).await.map_err(|status| {
            RuntimeError::Internal(format!(
                "failed to create the sandbox of pod {}/{}: {}",
                config.pod_namespace,
                config.pod_name,
                status.message()
            ))
        })?;
        let id = response.into_inner().pod_sandbox_id;
        tracing::info!(sandbox.id = %id, pod.name = %config.pod_name, pod.namespace = %config.pod_namespace, "sandbox is running");
        self.sandbox_status(&id).await
    }

    async fn stop_sandbox(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        // CRI's StopPodSandbox kills at once, so stop the containers gracefully first.
        let filter = cri::ContainerFilter { pod_sandbox_id: id.to_string(), ..Default::default() };
        let list = self.client().list_containers(cri::ListContainersRequest { filter: Some(filter) }).await;
        for container in list.map(|l| l.into_inner().containers).unwrap_or_default() {
            if container.state == cri::ContainerState::ContainerRunning as i32 {
                self.stop_container(&container.id, grace).await?;
            }
        }
        let request = cri::StopPodSandboxRequest { pod_sandbox_id: id.to_string() };
        ignore_not_found(self.client().stop_pod_sandbox(request).await.map(drop).map_err(sandbox_error(id)))
    }

    async fn remove_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let request = cri::RemovePodSandboxRequest { pod_sandbox_id: id.to_string() };
        ignore_not_found(self.client().remove_pod_sandbox(request).await.map(drop).map_err(sandbox_error(id)))?;
        if let Ok(mut map) = self.sandboxes_of.lock() {
            map.retain(|_, sandbox| sandbox != id);
        }
        Ok(())
    }

    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus, RuntimeError> {
        Ok(convert::sandbox_status(&self.raw_sandbox_status(id).await?))
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>, RuntimeError> {
        let list = self
            .client()
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .map_err(|status| RuntimeError::Internal(format!("CRI ListPodSandbox failed: {}", status.message())))?;
        let mut sandboxes = Vec::new();
        for sandbox in list.into_inner().items {
            match self.sandbox_status(&sandbox.id).await {
                Ok(status) => sandboxes.push(status),
                Err(RuntimeError::SandboxNotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(sandboxes)
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String, RuntimeError> {
        let sandbox = self.raw_sandbox_status(sandbox_id).await?;
        let sandbox_config = convert::sandbox_config_from_status(&sandbox);
        let log_directory = PathBuf::from(&sandbox_config.log_directory);
        if let Some(parent) = config.log_path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            config: Some(convert::container_config(config, &log_directory, config.image.trim())),
            sandbox_config: Some(sandbox_config),
        };
        let response = self.client().create_container(request).await.map_err(|status| {
            RuntimeError::StartFailed { name: config.name.clone(), message: status.message().to_string() }
        })?;
        let id = response.into_inner().container_id;
        self.remember(&id, sandbox_id);
        Ok(id)
    }

    async fn image_status(&self, _sandbox_id: &str, image: &str) -> Result<Option<String>, RuntimeError> {
        image::status(&mut self.images.clone(), image).await
    }

    async fn pull_image(&self, sandbox_id: &str, image: &str) -> Result<String, RuntimeError> {
        let sandbox = self.raw_sandbox_status(sandbox_id).await?;
        let sandbox_config = convert::sandbox_config_from_status(&sandbox);
        let image_id = image::pull(&mut self.images.clone(), image, &sandbox_config).await?;
        // the registry digest, which the pull's response lacks
        Ok(image::status(&mut self.images.clone(), image).await?.unwrap_or(image_id))
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let request = cri::StartContainerRequest { container_id: id.to_string() };
        self.client().start_container(request).await.map_err(|status| match status.code() {
            tonic::Code::NotFound => RuntimeError::ContainerNotFound { id: id.to_string() },
            _ => RuntimeError::StartFailed { name: id.to_string(), message: status.message().to_string() },
        })?;
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let request = cri::StopContainerRequest { container_id: id.to_string(), timeout: grace.as_secs() as i64 };
        ignore_not_found(self.client().stop_container(request).await.map(drop).map_err(container_error(id)))
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let request = cri::RemoveContainerRequest { container_id: id.to_string() };
        ignore_not_found(self.client().remove_container(request).await.map(drop).map_err(container_error(id)))?;
        if let Ok(mut map) = self.sandboxes_of.lock() {
            map.remove(id);
        }
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        let sandbox = self.sandbox_of(id).await?;
        let request = cri::ContainerStatusRequest { container_id: id.to_string(), verbose: false };
        let response = self.client().container_status(request).await.map_err(container_error(id))?;
        let status = response.into_inner().status.ok_or_else(|| RuntimeError::ContainerNotFound { id: id.to_string() })?;
        Ok(convert::container_status(&status, &sandbox))
    }

    async fn list_containers(&self) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let list = self
            .client()
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
            .map_err(|status| RuntimeError::Internal(format!("CRI ListContainers failed: {}", status.message())))?;
        let mut containers = Vec::new();
        for container in list.into_inner().containers {
            self.remember(&container.id, &container.pod_sandbox_id);
            match self.container_status(&container.id).await {
                Ok(status) => containers.push(status),
                Err(RuntimeError::ContainerNotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(containers)
    }

    async fn exec_sync(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput, RuntimeError> {
        let seconds = timeout.as_secs().max(1);
        let request = cri::ExecSyncRequest { container_id: id.to_string(), cmd: command.to_vec(), timeout: seconds as i64 };
        // containerd enforces the timeout itself; the outer one guards against a stuck socket
        let mut client = self.client();
        let call = client.exec_sync(request);
        let response = match tokio::time::timeout(timeout + Duration::from_secs(5), call).await {
            Err(_) => return Err(RuntimeError::ExecTimeout { id: id.to_string(), seconds }),
            Ok(Err(status)) if status.code() == tonic::Code::DeadlineExceeded || status.message().contains("timeout") => {
                return Err(RuntimeError::ExecTimeout { id: id.to_string(), seconds });
            }
            Ok(result) => result.map_err(container_error(id))?.into_inner(),
        };
        Ok(ExecOutput { exit_code: response.exit_code, stdout: response.stdout, stderr: response.stderr })
    }

    async fn exec(&self, id: &str, request: &ExecRequest) -> Result<ExecSession, RuntimeError> {
        exec::exec(self.client(), id, request).await
    }

    async fn attach(&self, id: &str, request: &ExecRequest) -> Result<ExecSession, RuntimeError> {
        exec::attach(self.client(), id, request).await
    }

    async fn container_stats(&self, id: &str) -> Result<ContainerStats, RuntimeError> {
        let request = cri::ContainerStatsRequest { container_id: id.to_string() };
        let response = self.client().container_stats(request).await.map_err(container_error(id))?;
        let stats = response.into_inner().stats.unwrap_or_default();
        let cpu = stats.cpu.unwrap_or_default();
        let memory = stats.memory.unwrap_or_default();
        Ok(ContainerStats {
            container_id: id.to_string(),
            cpu_usage_nanos: cpu.usage_core_nano_seconds.map(|v| v.value).unwrap_or(0),
            memory_working_set_bytes: memory.working_set_bytes.map(|v| v.value).unwrap_or(0),
            timestamp: convert::timestamp(cpu.timestamp),
        })
    }
}
