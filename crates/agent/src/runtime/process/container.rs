//! Container verbs of the process runtime: create, start, status and list.

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::netns::netns_path;
use super::shim::ShimSpec;
use super::state::{self, ContainerRecord, ExitRecord, PidRecord};
use super::{HOST_IMAGE, ProcessRuntime, check_id};
use crate::runtime::{ContainerConfig, ContainerState, ContainerStatus, RuntimeError};

/// How long `start_container` waits for the shim to report the process.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Returns the error for any image but `host`.
pub(super) fn unsupported_image(image: &str) -> RuntimeError {
    RuntimeError::ImageUnsupported {
        reason: "UnsupportedImage".to_string(),
        message: format!(
            "the process runtime runs host commands only: image {image:?} needs the cri runtime (`capstan up --runtime cri`, then runtimeClassName \"cri\"); use image \"host\" to run a host command"
        ),
    }
}

impl ProcessRuntime {
    pub(super) fn create_container_impl(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
    ) -> Result<String, RuntimeError> {
        if config.image != HOST_IMAGE {
            return Err(unsupported_image(&config.image));
        }
        let sandbox =
            self.load_sandbox(sandbox_id)?
                .ok_or_else(|| RuntimeError::SandboxNotFound {
                    id: sandbox_id.to_string(),
                })?;
        if !sandbox.ready {
            return Err(RuntimeError::Internal(format!(
                "sandbox {sandbox_id} is stopped; create a new sandbox for the pod"
            )));
        }

        let id = state::new_id()?;
        let cgroup = self
            .cgroups
            .as_ref()
            .map(|_| self.pod_cgroup(&sandbox).join(&id));
        let record = ContainerRecord {
            id: id.clone(),
            sandbox_id: sandbox_id.to_string(),
            name: config.name.clone(),
            image: config.image.clone(),
            attempt: config.attempt,
            command: config.command.clone(),
            env: config.env.clone(),
            working_dir: config.working_dir.clone(),
            cpu_request_millis: config.resources.cpu_request_millis,
            cpu_limit_millis: config.resources.cpu_limit_millis,
            memory_limit_bytes: config.resources.memory_limit_bytes,
            log_path: config.log_path.clone(),
            labels: config.labels.clone(),
            cgroup,
            netns: sandbox.netns.clone(),
            created_at: jiff::Timestamp::now(),
        };

        // the cgroup with its limits, then the record that makes the container visible
        if let (Some(layout), Some(cgroup)) = (&self.cgroups, &record.cgroup) {
            layout.create(cgroup)?;
            if let Err(err) = layout.apply_limits(cgroup, &record.resources()) {
                layout.remove(cgroup);
                return Err(err.into());
            }
        }
        let dir = self.container_dir(&id);
        state::create_dir(&dir)?;
        state::write_json_atomic(&dir.join("container.json"), &record)?;
        tracing::debug!(container.id = %id, sandbox.id = sandbox_id, container.name = %config.name, "container created");
        Ok(id)
    }

    pub(super) async fn start_container_impl(&self, id: &str) -> Result<(), RuntimeError> {
        let record = self.require_container(id)?;
        let dir = self.container_dir(id);
        if dir.join("spec.json").exists() {
            return Err(RuntimeError::StartFailed {
                name: record.name,
                message: format!(
                    "container {id} was already started; create a new container to run it again"
                ),
            });
        }
        let spec = self.shim_spec(&record);
        state::write_json_atomic(&dir.join("spec.json"), &spec)?;
        let mut shim = self
            .spawn_shim(&dir)
            .map_err(|message| RuntimeError::StartFailed {
                name: record.name.clone(),
                message,
            })?;

        // wait until the shim reports the process, or its failure to start it
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if dir.join("pid.json").exists() || dir.join("exit.json").exists() {
                break;
            }
            if let Ok(Some(status)) = shim.try_wait() {
                let log = fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
                return Err(RuntimeError::StartFailed {
                    name: record.name,
                    message: format!(
                        "the shim exited with {status} before starting the process: {}",
                        log.trim()
                    ),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RuntimeError::StartFailed {
                    name: record.name,
                    message: format!(
                        "the shim did not start the process within {}s",
                        START_TIMEOUT.as_secs()
                    ),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        // Dropping the handle leaves the shim running; tokio reaps it once it exits.
        tracing::debug!(container.id = id, container.name = %record.name, "container started");
        Ok(())
    }

    fn shim_spec(&self, record: &ContainerRecord) -> ShimSpec {
        let layout = self.cgroups.as_ref();
        let cgroup = record.cgroup.as_deref();
        ShimSpec {
            container_id: record.id.clone(),
            command: record.command.clone(),
            env: record.env.clone(),
            working_dir: record.working_dir.clone(),
            netns_path: record.netns.as_deref().map(netns_path),
            resolv_conf: self.resolv_conf_of(&record.sandbox_id),
            cgroup_procs: layout
                .zip(cgroup)
                .map(|(l, c)| l.procs_files(c))
                .unwrap_or_default(),
            memory_dir: layout.zip(cgroup).and_then(|(l, c)| l.memory_dir(c)),
            log_path: record.log_path.clone(),
        }
    }

    /// Starts the shim in its own session with no terminal, so that it survives the agent.
    fn spawn_shim(&self, dir: &Path) -> Result<tokio::process::Child, String> {
        let shim_log = fs::File::create(dir.join("shim.log"))
            .map_err(|err| format!("failed to create shim.log: {err}"))?;
        let mut command = std::process::Command::new(&self.config.shim[0]);
        command
            .args(&self.config.shim[1..])
            .arg(dir)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(shim_log);
        // SAFETY: setsid is async-signal-safe and touches no memory.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        tokio::process::Command::from(command)
            .spawn()
            .map_err(|err| format!("failed to run shim {:?}: {err}", self.config.shim))
    }

    pub(super) fn container_status_impl(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        let record = self.require_container(id)?;
        Ok(self.status_of(&record))
    }

    pub(super) fn list_containers_impl(&self) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let mut list = Vec::new();
        for id in state::list_dir(&self.config.state_dir.join("containers"))? {
            if let Some(record) = self.load_container(&id)? {
                list.push(self.status_of(&record));
            }
        }
        Ok(list)
    }

    pub(super) fn container_ids_of(&self, sandbox_id: &str) -> Result<Vec<String>, RuntimeError> {
        let mut ids = Vec::new();
        for id in state::list_dir(&self.config.state_dir.join("containers"))? {
            if self
                .load_container(&id)?
                .is_some_and(|record| record.sandbox_id == sandbox_id)
            {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    pub(super) fn load_container(&self, id: &str) -> Result<Option<ContainerRecord>, RuntimeError> {
        if !check_id(id) {
            return Ok(None);
        }
        Ok(state::read_json(
            &self.container_dir(id).join("container.json"),
        )?)
    }

    pub(super) fn require_container(&self, id: &str) -> Result<ContainerRecord, RuntimeError> {
        self.load_container(id)?
            .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.to_string() })
    }

    fn status_of(&self, record: &ContainerRecord) -> ContainerStatus {
        ContainerStatus {
            id: record.id.clone(),
            sandbox_id: record.sandbox_id.clone(),
            name: record.name.clone(),
            image: record.image.clone(),
            image_id: record.image.clone(),
            attempt: record.attempt,
            state: container_state(&self.container_dir(&record.id)),
            log_path: record.log_path.clone(),
            labels: record.labels.clone(),
        }
    }
}

/// Derives the state from the shim's records and `/proc`.
pub(super) fn container_state(dir: &Path) -> ContainerState {
    let read_exit = || {
        state::read_json::<ExitRecord>(&dir.join("exit.json"))
            .ok()
            .flatten()
    };
    if let Some(exit) = read_exit() {
        return exited(exit);
    }
    let Ok(Some(pid)) = state::read_json::<PidRecord>(&dir.join("pid.json")) else {
        return ContainerState::Created;
    };
    if state::process_alive(pid.pid, pid.start_ticks)
        || state::process_alive(pid.shim_pid, pid.shim_start_ticks)
    {
        return ContainerState::Running {
            started_at: pid.started_at,
        };
    }
    // The shim may have written the record between the first read and the liveness check.
    if let Some(exit) = read_exit() {
        return exited(exit);
    }
    ContainerState::Exited {
        started_at: Some(pid.started_at),
        finished_at: jiff::Timestamp::now(),
        exit_code: 255,
        reason: "Error".to_string(),
        message: Some("the container's shim exited without recording the exit status".to_string()),
    }
}

fn exited(exit: ExitRecord) -> ContainerState {
    let reason = if exit.oom_killed {
        "OOMKilled"
    } else if exit.exit_code == 0 {
        "Completed"
    } else if exit.started_at.is_none() && exit.exit_code == 128 {
        "StartError"
    } else {
        "Error"
    };
    ContainerState::Exited {
        started_at: exit.started_at,
        finished_at: exit.finished_at,
        exit_code: exit.exit_code,
        reason: reason.to_string(),
        message: exit.message,
    }
}
