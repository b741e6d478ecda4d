//! A runtime that runs nothing and records every call, for tests of the agent.
//!
//! Containers move to `Running` when started and stay there until a test calls
//! [`FakeRuntime::exit_container`] (or the agent stops them). Images other than `host` get
//! [`RuntimeError::ImageUnsupported`] on create, as the process runtime reports them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::runtime::{
    ContainerConfig, ContainerState, ContainerStats, ContainerStatus, ExecOutput, Runtime,
    RuntimeError, SandboxConfig, SandboxStatus,
};

/// Fake [`Runtime`] with inspectable state.
#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    next_id: u64,
    sandboxes: BTreeMap<String, SandboxStatus>,
    containers: BTreeMap<String, ContainerStatus>,
    configs: BTreeMap<String, ContainerConfig>,
    calls: Vec<String>,
    exec_exit_code: i32,
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls in order, as `verb argument…` lines (`create_container web attempt=1`).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Calls whose line starts with `prefix`.
    pub fn calls_starting_with(&self, prefix: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|call| call.starts_with(prefix))
            .collect()
    }

    /// Makes the running container named `name` exit with `exit_code`. Returns false when
    /// no such container runs.
    pub fn exit_container(&self, name: &str, exit_code: i32) -> bool {
        let mut state = self.lock();
        let running = state.containers.values_mut().find(|container| {
            container.name == name && matches!(container.state, ContainerState::Running { .. })
        });
        let Some(container) = running else {
            return false;
        };
        let started_at = match container.state {
            ContainerState::Running { started_at } => Some(started_at),
            _ => None,
        };
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        container.state = ContainerState::Exited {
            started_at,
            finished_at: jiff::Timestamp::now(),
            exit_code,
            reason: reason.to_string(),
            message: None,
        };
        true
    }

    /// Sets the exit code that every later `exec_sync` returns.
    pub fn set_exec_exit_code(&self, exit_code: i32) {
        self.lock().exec_exit_code = exit_code;
    }

    /// All containers the runtime holds, in id order.
    pub fn containers(&self) -> Vec<ContainerStatus> {
        self.lock().containers.values().cloned().collect()
    }

    /// The config a container was created with.
    pub fn container_config(&self, id: &str) -> Option<ContainerConfig> {
        self.lock().configs.get(id).cloned()
    }

    /// The id of the running container named `name`.
    pub fn running_container(&self, name: &str) -> Option<String> {
        self.lock()
            .containers
            .values()
            .find(|c| c.name == name && matches!(c.state, ContainerState::Running { .. }))
            .map(|c| c.id.clone())
    }

    /// Adds a sandbox as if an earlier agent had created it.
    pub fn insert_sandbox(&self, sandbox: SandboxStatus) {
        self.lock().sandboxes.insert(sandbox.id.clone(), sandbox);
    }

    /// Adds a container as if an earlier agent had created it.
    pub fn insert_container(&self, container: ContainerStatus) {
        self.lock()
            .containers
            .insert(container.id.clone(), container);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        // A panicking test thread poisons the lock; the state is still usable for the rest.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl FakeState {
    fn record(&mut self, call: String) {
        self.calls.push(call);
    }

    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    fn stop(&mut self, id: &str) {
        if let Some(container) = self.containers.get_mut(id)
            && let ContainerState::Running { started_at } = container.state
        {
            container.state = ContainerState::Exited {
                started_at: Some(started_at),
                finished_at: jiff::Timestamp::now(),
                exit_code: 143,
                reason: "Error".to_string(),
                message: None,
            };
        }
    }
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    fn handler(&self) -> &str {
        "process"
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus, RuntimeError> {
        let mut state = self.lock();
        state.record(format!("run_sandbox {}", config.pod_name));
        let id = state.new_id("s");
        let ip = if config.host_network {
            None
        } else {
            Some(format!("10.88.0.{}", state.next_id))
        };
        let sandbox = SandboxStatus {
            id: id.clone(),
            pod_uid: config.pod_uid.clone(),
            pod_namespace: config.pod_namespace.clone(),
            pod_name: config.pod_name.clone(),
            ip,
            ready: true,
            created_at: jiff::Timestamp::now(),
        };
        state.sandboxes.insert(id, sandbox.clone());
        Ok(sandbox)
    }

    async fn stop_sandbox(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        state.record(format!("stop_sandbox {id} grace={}s", grace.as_secs()));
        let ids: Vec<String> = state
            .containers
            .values()
            .filter(|c| c.sandbox_id == id)
            .map(|c| c.id.clone())
            .collect();
        for container in ids {
            state.stop(&container);
        }
        if let Some(sandbox) = state.sandboxes.get_mut(id) {
            sandbox.ready = false;
        }
        Ok(())
    }

    async fn remove_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        state.record(format!("remove_sandbox {id}"));
        state.sandboxes.remove(id);
        state.containers.retain(|_, c| c.sandbox_id != id);
        Ok(())
    }

    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus, RuntimeError> {
        let state = self.lock();
        let sandbox = state.sandboxes.get(id).cloned();
        sandbox.ok_or_else(|| RuntimeError::SandboxNotFound { id: id.to_string() })
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>, RuntimeError> {
        Ok(self.lock().sandboxes.values().cloned().collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
    ) -> Result<String, RuntimeError> {
        let mut state = self.lock();
        state.record(format!(
            "create_container {} attempt={}",
            config.name, config.attempt
        ));
        if config.image != "host" {
            return Err(RuntimeError::ImageUnsupported {
                reason: "ImageUnsupported".to_string(),
                message: format!(
                    "image {:?} is not supported by the process runtime",
                    config.image
                ),
            });
        }
        let id = state.new_id("c");
        let status = ContainerStatus {
            id: id.clone(),
            sandbox_id: sandbox_id.to_string(),
            name: config.name.clone(),
            image: config.image.clone(),
            image_id: format!("sha256:{}", config.image),
            attempt: config.attempt,
            state: ContainerState::Created,
            log_path: config.log_path.clone(),
            labels: config.labels.clone(),
        };
        state.containers.insert(id.clone(), status);
        state.configs.insert(id.clone(), config.clone());
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        state.record(format!("start_container {id}"));
        let container = state
            .containers
            .get_mut(id)
            .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.to_string() })?;
        container.state = ContainerState::Running {
            started_at: jiff::Timestamp::now(),
        };
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        state.record(format!("stop_container {id} grace={}s", grace.as_secs()));
        state.stop(id);
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        state.record(format!("remove_container {id}"));
        state.containers.remove(id);
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        let state = self.lock();
        let container = state.containers.get(id).cloned();
        container.ok_or_else(|| RuntimeError::ContainerNotFound { id: id.to_string() })
    }

    async fn list_containers(&self) -> Result<Vec<ContainerStatus>, RuntimeError> {
        Ok(self.containers())
    }

    async fn exec_sync(
        &self,
        id: &str,
        command: &[String],
        _timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let mut state = self.lock();
        state.record(format!("exec_sync {id} {}", command.join(" ")));
        Ok(ExecOutput {
            exit_code: state.exec_exit_code,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }

    async fn container_stats(&self, id: &str) -> Result<ContainerStats, RuntimeError> {
        Ok(ContainerStats {
            container_id: id.to_string(),
            ..ContainerStats::default()
        })
    }
}
