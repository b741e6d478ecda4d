//! The pod worker: one task per pod that drives its sandbox and containers toward the
//! spec, woken by pod updates and by its own timers (exit polling, back-off, probes).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tokio::sync::watch;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::container::{ContainerEvent, ContainerRecord, Lifecycle, Termination};
use super::status::{StatusInput, build_status, pod_phase};
use crate::api::PodApi;
use crate::directory::{ContainerLogs, PodDirectory, PodLogs};
use crate::runtime::{ContainerState, ContainerStatus, Runtime, RuntimeError, SandboxStatus};

/// Period at which a worker polls the runtime for exits of its running containers.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Node-wide settings and handles that every worker shares.
pub struct WorkerContext {
    pub runtime: Arc<dyn Runtime>,
    pub api: Arc<dyn PodApi>,
    pub directory: PodDirectory,
    pub node_name: String,
    pub node_ip: IpAddr,
    pub data_dir: PathBuf,
    /// CrashLoopBackOff base and cap.
    pub backoff: (Duration, Duration),
    pub node_cpu_millis: i64,
    pub node_memory_bytes: i64,
    /// The cluster DNS server that pods with `dnsPolicy: ClusterFirst` use.
    pub cluster_dns: super::dns::ClusterDns,
}

/// Message from the pod watch to a worker.
#[derive(Clone, Debug)]
pub enum PodUpdate {
    Changed(Box<Pod>),
    /// The pod left the watch: deleted, or bound elsewhere.
    Gone,
}

/// Lifecycle state of a pod on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodState {
    /// No sandbox yet. Next: `Initializing`, `Terminating`.
    Creating,
    /// The sandbox runs; init containers run one at a time. Next: `Running`,
    /// `Completed` (an init container failed for good), `Terminating`.
    Initializing,
    /// The app containers were started and restart under the restart policy.
    /// Next: `Completed`, `Terminating`.
    Running,
    /// The pod reached Succeeded or Failed; nothing starts again. Next: `Terminating`.
    Completed,
    /// Stopping containers and the sandbox. Next: `Removed`.
    Terminating,
    /// Everything is gone; the worker ends.
    Removed,
}

impl PodState {
    pub fn can_start_containers(self) -> bool {
        matches!(self, PodState::Initializing | PodState::Running)
    }

    pub fn can_terminate(self) -> bool {
        !matches!(self, PodState::Terminating | PodState::Removed)
    }
}

/// Sandbox and containers left by an earlier agent for one pod.
#[derive(Clone, Debug)]
pub struct Adopted {
    pub sandbox: SandboxStatus,
    pub containers: Vec<ContainerStatus>,
}

/// Label with the pod uid on every container the agent creates.
pub const POD_UID_LABEL: &str = "capstan.io/pod-uid";
/// Label with the container's name in the pod spec.
pub const CONTAINER_NAME_LABEL: &str = "capstan.io/container-name";

/// One pod's worker.
pub struct PodWorker {
    pub(super) context: Arc<WorkerContext>,
    pub(super) pod: Pod,
    pub(super) state: PodState,
    pub(super) gone: bool,
    pub(super) sandbox: Option<SandboxStatus>,
    pub(super) init: Vec<ContainerRecord>,
    pub(super) containers: Vec<ContainerRecord>,
    pub(super) start_time: Option<jiff::Timestamp>,
    pub(super) last_status: Option<PodStatus>,
}

impl PodWorker {
    /// Creates the worker. With `adopted`, it takes over the running sandbox and
    /// containers instead of starting new ones.
    pub fn new(context: Arc<WorkerContext>, pod: Pod, adopted: Option<Adopted>) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let (base, cap) = context.backoff;
        let records = |list: &[k8s_openapi::api::core::v1::Container]| {
            list.iter()
                .map(|c| ContainerRecord::new(c, Backoff::new(base, cap)))
                .collect::<Vec<_>>()
        };
        let previous_phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        let terminal = matches!(previous_phase.as_deref(), Some("Succeeded" | "Failed"));
        let mut worker = Self {
            state: if terminal && adopted.is_none() {
                PodState::Completed
            } else {
                PodState::Creating
            },
            last_status: if terminal { pod.status.clone() } else { None },
            start_time: pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0),
            init: records(spec.init_containers.as_deref().unwrap_or_default()),
            containers: records(&spec.containers),
            context,
            pod,
            gone: false,
            sandbox: None,
        };
        if let Some(adopted) = adopted {
            worker.adopt(adopted);
        }
        worker
    }

    /// Takes over an earlier agent's sandbox and the latest run of each container.
    /// Containers that exited meanwhile show up as exits on the first sync, which applies
    /// the restart policy to them.
    fn adopt(&mut self, adopted: Adopted) {
        let now = Instant::now();
        self.state = PodState::Initializing;
        self.start_time.get_or_insert(adopted.sandbox.created_at);
        self.sandbox = Some(adopted.sandbox);
        for record in self.init.iter_mut().chain(self.containers.iter_mut()) {
            let latest = adopted
                .containers
                .iter()
                .filter(|c| c.labels.get(CONTAINER_NAME_LABEL).unwrap_or(&c.name) == &record.name)
                .max_by_key(|c| c.attempt);
            let Some(latest) = latest else { continue };
            let started_at = match &latest.state {
                ContainerState::Running { started_at } => *started_at,
                ContainerState::Exited {
                    started_at,
                    finished_at,
                    ..
                } => started_at.unwrap_or(*finished_at),
                ContainerState::Created | ContainerState::Unknown => continue,
            };
            record.restart_count = latest.attempt;
            record.log_path = Some(latest.log_path.clone());
            record.image_id = Some(latest.image_id.clone()).filter(|id| !id.is_empty());
            record.apply(
                ContainerEvent::Started {
                    id: latest.id.clone(),
                    started_at,
                },
                now,
            );
            // An adopted container keeps running unprobed for one period rather than
            // failing a fresh readiness probe at once.
            record.started = true;
            record.ready = true;
        }
    }

    pub fn state(&self) -> PodState {
        self.state
    }

    pub fn uid(&self) -> &str {
        self.pod.metadata.uid.as_deref().unwrap_or_default()
    }

    pub(super) fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    pub(super) fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    /// Applies a pod update. A changed spec clears the hold on containers that could not
    /// be created, so an edited pod is tried again at once. Other changes, such as the
    /// agent's own status writes coming back through the watch, keep the hold.
    pub fn update(&mut self, update: PodUpdate) {
        match update {
            PodUpdate::Changed(pod) => {
                let spec_changed = pod.spec != self.pod.spec;
                self.pod = *pod;
                if !spec_changed {
                    return;
                }
                for record in self.init.iter_mut().chain(self.containers.iter_mut()) {
                    if let Lifecycle::Waiting { retry_at, .. } = &mut record.lifecycle {
                        *retry_at = None;
                    }
                }
            }
            PodUpdate::Gone => self.gone = true,
        }
    }

    /// Runs the worker until the pod is removed.
    pub async fn run(mut self, mut updates: watch::Receiver<PodUpdate>) {
        loop {
            let wake = self.sync().await;
            if self.state == PodState::Removed {
                return;
            }
            tokio::select! {
                changed = updates.changed() => match changed {
                    Ok(()) => {
                        let update = updates.borrow_and_update().clone();
                        self.update(update);
                    }
                    // The manager dropped the sender: the agent is shutting down, and the
                    // containers keep running for the next agent to adopt.
                    Err(_) => return,
                },
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Moves the pod one step toward its spec and returns when to sync again.
    pub async fn sync(&mut self) -> Instant {
        let now = Instant::now();

        // deletion wins over everything else
        if self.gone || self.pod.metadata.deletion_timestamp.is_some() {
            if self.state.can_terminate() {
                self.terminate().await;
            }
            return now;
        }

        // sandbox
        if self.state == PodState::Creating && !self.run_sandbox().await {
            return now + Duration::from_secs(2);
        }

        // exits of running containers
        self.poll_exits(now).await;

        // init containers, then app containers
        if self.state == PodState::Initializing {
            self.advance_init(now).await;
        }
        if self.state == PodState::Running {
            self.start_due_containers(now).await;
            let policy = self.restart_policy();
            let phase = pod_phase(&policy, &self.init, &self.containers);
            if phase == "Succeeded" || phase == "Failed" {
                self.state = PodState::Completed;
            }
        }
        self.run_due_probes().await;
        self.report().await;
        self.next_wake(Instant::now())
    }

    pub(super) fn restart_policy(&self) -> String {
        let spec = self.pod.spec.as_ref();
        spec.and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".to_string())
    }

    async fn run_sandbox(&mut self) -> bool {
        let config = self.sandbox_config();
        match self.context.runtime.run_sandbox(&config).await {
            Ok(sandbox) => {
                tracing::debug!(pod.uid = self.uid(), sandbox.id = %sandbox.id, "sandbox running");
                self.sandbox = Some(sandbox);
                self.start_time.get_or_insert_with(jiff::Timestamp::now);
                self.state = PodState::Initializing;
                true
            }
            Err(error) => {
                tracing::warn!(pod.uid = self.uid(), %error, "failed to run the pod sandbox");
                let message = format!("Failed to create pod sandbox: {error}");
                self.context
                    .api
                    .record_event(&self.pod, "Warning", "FailedCreatePodSandBox", &message)
                    .await;
                false
            }
        }
    }

    /// Records exits of running containers, deciding restarts by the restart policy.
    async fn poll_exits(&mut self, now: Instant) {
        let policy = self.restart_policy();
        let runtime = self.context.runtime.clone();
        let mut backing_off = Vec::new();
        for (is_init, record) in self
            .init
            .iter_mut()
            .map(|r| (true, r))
            .chain(self.containers.iter_mut().map(|r| (false, r)))
        {
            let Some(id) = record.id.clone().filter(|_| record.is_running()) else {
                continue;
            };
            let termination = match runtime.container_status(&id).await {
                Ok(status) => match status.state {
                    ContainerState::Exited {
                        started_at,
                        finished_at,
                        exit_code,
                        reason,
                        message,
                    } => Termination {
                        container_id: id,
                        exit_code,
                        reason,
                        message,
                        started_at,
                        finished_at,
                    },
                    _ => continue,
                },
                Err(RuntimeError::ContainerNotFound { .. }) => Termination {
                    container_id: id,
                    exit_code: 137,
                    reason: "ContainerStatusUnknown".to_string(),
                    message: Some(
                        "The container could not be located when the pod was terminated"
                            .to_string(),
                    ),
                    started_at: None,
                    finished_at: jiff::Timestamp::now(),
                },
                Err(error) => {
                    tracing::debug!(container.id = %id, %error, "failed to read container status");
                    continue;
                }
            };
            let restart = should_restart(&policy, is_init, termination.exit_code);
            tracing::debug!(container.name = %record.name, exit_code = termination.exit_code, restart, "container exited");
            record.apply(
                ContainerEvent::Exited {
                    termination,
                    restart,
                },
                now,
            );
            if let Lifecycle::BackingOff { delay, .. } = record.lifecycle
                && !delay.is_zero()
            {
                backing_off.push(record.name.clone());
            }
        }
        for name in backing_off {
            let pod_ref = format!("{}_{}({})", self.name(), self.namespace(), self.uid());
            let message = format!("Back-off restarting failed container {name} in pod {pod_ref}");
            self.context
                .api
                .record_event(&self.pod, "Warning", "BackOff", &message)
                .await;
        }
    }

    /// Starts the first unfinished init container when it is due; moves on to the app
    /// containers once all have succeeded.
    async fn advance_init(&mut self, now: Instant) {
        let Some(index) = self.init.iter().position(|r| !r.succeeded()) else {
            self.state = PodState::Running;
            return;
        };
        if matches!(self.init[index].lifecycle, Lifecycle::Exited(_)) {
            // Failed with restartPolicy Never: the pod fails.
            self.state = PodState::Completed;
            return;
        }
        if self.init[index].can_start(now) {
            self.start_container(true, index).await;
        }
    }

    async fn start_due_containers(&mut self, now: Instant) {
        for index in 0..self.containers.len() {
            if self.state.can_start_containers() && self.containers[index].can_start(now) {
                self.start_container(false, index).await;
            }
        }
    }

    /// Writes the status when it differs from the last one written, and publishes the
    /// log files to the kubelet server.
    async fn report(&mut self) {
        self.publish_logs();
        if self.state == PodState::Completed && self.sandbox.is_none() {
            return;
        }
        let host_network = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let sandbox_ip = self.sandbox.as_ref().and_then(|s| s.ip.clone());
        // NOTE: a sandbox without its own address (the process runtime without root shares
        // the host network) reports the node IP, as a host-network pod would.
        let pod_ip = if host_network {
            Some(self.context.node_ip.to_string())
        } else {
            sandbox_ip
        };
        let runtime = self.context.runtime.clone();
        let container_uri = move |id: &str| runtime.container_uri(id);
        let input = StatusInput {
            pod: &self.pod,
            container_uri: &container_uri,
            init: &self.init,
            containers: &self.containers,
            sandbox_ready: self.sandbox.as_ref().is_some_and(|s| s.ready),
            pod_ip: pod_ip.or_else(|| {
                self.sandbox
                    .as_ref()
                    .map(|_| self.context.node_ip.to_string())
            }),
            host_ip: self.context.node_ip.to_string(),
            start_time: self.start_time,
            previous: self.last_status.as_ref().or(self.pod.status.as_ref()),
            now: Instant::now(),
        };
        let status = build_status(&input);
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        match self.context.api.patch_status(&self.pod, &status).await {
            Ok(()) => self.last_status = Some(status),
            Err(error) => {
                tracing::debug!(pod.uid = self.uid(), %error, "failed to write pod status; retrying on the next sync")
            }
        }
    }

    fn publish_logs(&self) {
        let containers = self
            .init
            .iter()
            .chain(self.containers.iter())
            .map(|record| {
                let logs = ContainerLogs {
                    current: record.log_path.clone(),
                    previous: record.previous_log_path.clone(),
                    running: record.is_running(),
                };
                (record.name.clone(), logs)
            })
            .collect();
        let logs = PodLogs {
            uid: self.uid().to_string(),
            containers,
        };
        self.context
            .directory
            .publish(self.namespace(), self.name(), logs);
    }

    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + POLL_INTERVAL;
        for record in self.init.iter().chain(self.containers.iter()) {
            if let Lifecycle::BackingOff { restart_at, .. } = record.lifecycle {
                wake = wake.min(restart_at.max(now));
            }
            for probe in &record.probes {
                wake = wake.min(probe.next_run().max(now));
            }
        }
        wake
    }
}

/// Decides whether a container that exited with `exit_code` runs again. Init containers
/// that succeeded are done whatever the policy.
pub fn should_restart(policy: &str, is_init: bool, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        _ if is_init => exit_code != 0,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
