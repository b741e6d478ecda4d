//! Creating and starting one container: environment, command line, resources, log file
//! and labels, with the Events kubelet records along the way.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use tokio::time::Instant;

use super::container::ContainerEvent;
use super::env::{EnvContext, command_line, resolve_env};
use super::probe::{ProbeKind, ProbeTracker};
use super::volumes;
use super::worker::{CONTAINER_NAME_LABEL, POD_UID_LABEL, PodWorker};
use crate::runtime::{ContainerConfig, PullPolicy, Resources, RuntimeError, SandboxConfig};

/// Retry period of a container whose ConfigMap or Secret is missing. The agent does not
/// watch those objects, so it looks again on this period and on every pod change.
const CONFIG_RETRY: Duration = Duration::from_secs(10);
/// Hold on a container whose image the runtime rejected; only a pod change retries sooner.
const IMAGE_RETRY: Duration = Duration::from_secs(300);

impl PodWorker {
    pub(super) fn sandbox_config(&self) -> SandboxConfig {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        SandboxConfig {
            pod_uid: self.uid().to_string(),
            pod_namespace: self.namespace().to_string(),
            pod_name: self.name().to_string(),
            // A host-network pod shares the node's UTS namespace, so it keeps the node's
            // hostname, as with kubelet.
            hostname: if host_network {
                String::new()
            } else {
                spec.hostname
                    .clone()
                    .unwrap_or_else(|| self.name().to_string())
            },
            host_network,
            // RuntimeClass names equal their handlers (`process`, `cri`)
            runtime_handler: spec.runtime_class_name.clone().unwrap_or_default(),
            log_directory: self
                .context
                .data_dir
                .join("pods")
                .join(self.uid())
                .join("logs"),
            labels: self.pod.metadata.labels.clone().unwrap_or_default(),
            dns: super::dns::pod_dns(&spec, self.namespace(), &self.context.cluster_dns),
        }
    }

    fn spec_container(&self, is_init: bool, index: usize) -> Option<Container> {
        let spec = self.pod.spec.as_ref()?;
        let list = if is_init {
            spec.init_containers.as_deref().unwrap_or_default()
        } else {
            &spec.containers
        };
        list.get(index).cloned()
    }

    /// Creates and starts the container at `index`, recording the outcome on its record.
    pub(super) async fn start_container(&mut self, is_init: bool, index: usize) {
        let Some(container) = self.spec_container(is_init, index) else {
            return;
        };
        let Some(sandbox) = self.sandbox.clone() else {
            return;
        };
        let now = Instant::now();
        let record = if is_init {
            &self.init[index]
        } else {
            &self.containers[index]
        };
        let attempt = record.restart_count;
        let previous_log = record.log_path.clone();

        // environment and command line
        let env = match self.container_env(&container, sandbox.ip.as_deref()).await {
            Ok(env) => env,
            Err(message) => {
                let event = ContainerEvent::CreateFailed {
                    reason: "CreateContainerConfigError".to_string(),
                    message: message.clone(),
                    retry_at: Some(now + CONFIG_RETRY),
                };
                self.record_mut(is_init, index).apply(event, now);
                self.context
                    .api
                    .record_event(&self.pod, "Warning", "Failed", &format!("Error: {message}"))
                    .await;
                return;
            }
        };
        let mut config = self.container_config(&container, env, attempt);

        // volumes
        match self.container_mounts(&container, sandbox.ip.as_deref()).await {
            Ok(mounts) => config.mounts = mounts,
            Err(message) => {
                let event = ContainerEvent::CreateFailed {
                    reason: "CreateContainerConfigError".to_string(),
                    message: message.clone(),
                    retry_at: Some(now + CONFIG_RETRY),
                };
                self.record_mut(is_init, index).apply(event, now);
                self.context
                    .api
                    .record_event(&self.pod, "Warning", "FailedMount", &message)
                    .await;
                return;
            }
        }
        let log_path = config.log_path.clone();

        // image, then create
        let image_id = match self.ensure_image(&sandbox.id, &config).await {
            Ok(image_id) => image_id,
            Err(error) => {
                self.fail_create(is_init, index, error, now).await;
                return;
            }
        };
        let runtime = self.context.runtime.clone();
        let id = match runtime.create_container(&sandbox.id, &config).await {
            Ok(id) => id,
            Err(error) => {
                self.fail_create(is_init, index, error, now).await;
                return;
            }
        };
        let name = container.name.clone();
        self.context
            .api
            .record_event(
                &self.pod,
                "Normal",
                "Created",
                &format!("Created container: {name}"),
            )
            .await;
        if let Err(error) = runtime.start_container(&id).await {
            // kubelet reports a failed start as a run that ended at once with code 128, so
            // the restart policy and back-off apply to it.
            let message = error.to_string();
            self.context
                .api
                .record_event(&self.pod, "Warning", "Failed", &format!("Error: {message}"))
                .await;
            let started_at = jiff::Timestamp::now();
            let record = self.record_mut(is_init, index);
            record.apply(
                ContainerEvent::Started {
                    id: id.clone(),
                    started_at,
                },
                now,
            );
            record.log_path = Some(log_path);
            record.previous_log_path = previous_log;
            let termination = super::container::Termination {
                container_id: id,
                exit_code: 128,
                reason: "StartError".to_string(),
                message: Some(message),
                started_at: None,
                finished_at: started_at,
            };
            let restart = super::worker::should_restart(&self.restart_policy(), is_init, 128);
            self.record_mut(is_init, index).apply(
                ContainerEvent::Exited {
                    termination,
                    restart,
                },
                now,
            );
            return;
        }
        self.context
            .api
            .record_event(
                &self.pod,
                "Normal",
                "Started",
                &format!("Started container {name}"),
            )
            .await;

        // bookkeeping: the image, the record, probes, and the run before last
        let record = self.record_mut(is_init, index);
        record.image_id = Some(image_id);
        record.apply(
            ContainerEvent::Started {
                id,
                started_at: jiff::Timestamp::now(),
            },
            now,
        );
        record.log_path = Some(log_path);
        record.previous_log_path = previous_log;
        arm_probes(record, &container, now);
        let stale = self.record_mut(is_init, index).previous_id.clone();
        let last = self
            .record_mut(is_init, index)
            .last_termination
            .as_ref()
            .map(|t| t.container_id.clone());
        if let Some(stale) = stale.filter(|stale| Some(stale) != last.as_ref())
            && let Err(error) = runtime.remove_container(&stale).await
        {
            tracing::debug!(container.id = %stale, %error, "failed to remove an old container");
        }
    }

    pub(super) fn record_mut(
        &mut self,
        is_init: bool,
        index: usize,
    ) -> &mut super::container::ContainerRecord {
        if is_init {
            &mut self.init[index]
        } else {
            &mut self.containers[index]
        }
    }

    async fn container_mounts(
        &self,
        container: &Container,
        pod_ip: Option<&str>,
    ) -> Result<Vec<crate::runtime::Mount>, String> {
        let host_ip = self.context.node_ip.to_string();
        let context = self.env_context(&host_ip, pod_ip);
        let pod_dir = volumes::pod_dir(&self.context.data_dir, &self.pod);
        volumes::container_mounts(self.context.api.as_ref(), &context, &pod_dir, container)
            .await
            .map_err(|error| error.to_string())
    }

    fn env_context<'a>(&'a self, host_ip: &'a str, pod_ip: Option<&'a str>) -> EnvContext<'a> {
        let host_network = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        EnvContext {
            pod: &self.pod,
            node_name: &self.context.node_name,
            host_ip,
            pod_ip: if host_network { Some(host_ip) } else { pod_ip },
            node_cpu_millis: self.context.node_cpu_millis,
            node_memory_bytes: self.context.node_memory_bytes,
        }
    }

    async fn container_env(
        &self,
        container: &Container,
        pod_ip: Option<&str>,
    ) -> Result<Vec<(String, String)>, String> {
        let host_ip = self.context.node_ip.to_string();
        let context = self.env_context(&host_ip, pod_ip);
        resolve_env(self.context.api.as_ref(), &context, container)
            .await
            .map_err(|error| error.to_string())
    }

    fn container_config(
        &self,
        container: &Container,
        env: Vec<(String, String)>,
        attempt: u32,
    ) -> ContainerConfig {
        let log_directory = self
            .context
            .data_dir
            .join("pods")
            .join(self.uid())
            .join("logs");
        let labels = BTreeMap::from([
            (POD_UID_LABEL.to_string(), self.uid().to_string()),
            (CONTAINER_NAME_LABEL.to_string(), container.name.clone()),
        ]);
        ContainerConfig {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            image_pull_policy: crate::runtime::PullPolicy::from_spec(
                container.image_pull_policy.as_deref(),
                container.image.as_deref().unwrap_or_default(),
            ),
            command: command_line(container, &env),
            env,
            working_dir: container.working_dir.clone(),
            mounts: Vec::new(),
            resources: resources(container),
            attempt,
            log_path: log_directory
                .join(&container.name)
                .join(format!("{attempt}.log")),
            stdin: container.stdin.unwrap_or(false),
            stdin_once: container.stdin_once.unwrap_or(false),
            tty: container.tty.unwrap_or(false),
            labels,
        }
    }

    /// Makes the container's image present according to its pull policy, with kubelet's events:
    /// `Pulled` "already present", or `Pulling` then `Pulled` with the pull's duration.
    /// Returns the image's identity for `imageID`.
    ///
    /// NOTE: an image that is present is used without a pull also under the policy
    /// `Always`. Images usually come from `capstan image load` on nodes without a
    /// registry, where kubelet's re-check of the digest would fail every start.
    async fn ensure_image(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String, RuntimeError> {
        let image = config.image.trim();
        if let Err(problem) = crate::runtime::reference::check(image) {
            return Err(RuntimeError::ImagePull {
                reason: "InvalidImageName".to_string(),
                message: format!("Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": {problem}"),
            });
        }
        let api = &self.context.api;
        let runtime = &self.context.runtime;
        if let Some(image_id) = runtime.image_status(sandbox_id, image).await? {
            let message = format!("Container image \"{image}\" already present on machine");
            api.record_event(&self.pod, "Normal", "Pulled", &message).await;
            return Ok(image_id);
        }
        if config.image_pull_policy == PullPolicy::Never {
            return Err(RuntimeError::ImagePull {
                reason: "ErrImageNeverPull".to_string(),
                message: format!("Container image \"{image}\" is not present with pull policy of Never"),
            });
        }
        api.record_event(&self.pod, "Normal", "Pulling", &format!("Pulling image \"{image}\"")).await;
        let started = std::time::Instant::now();
        let image_id = runtime.pull_image(sandbox_id, image).await?;
        let message = format!(
            "Successfully pulled image \"{image}\" in {:.3}s",
            started.elapsed().as_secs_f64()
        );
        api.record_event(&self.pod, "Normal", "Pulled", &message).await;
        Ok(image_id)
    }

    /// Records a container that could not be created: its waiting reason and message, when
    /// to retry, and a `Failed` event.
    async fn fail_create(&mut self, is_init: bool, index: usize, error: RuntimeError, now: Instant) {
        let (reason, retry_at) = match &error {
            RuntimeError::ImageUnsupported { reason, .. } => (reason.clone(), now + IMAGE_RETRY),
            // an invalid name waits for the spec to change
            RuntimeError::ImagePull { reason, .. } if reason == "InvalidImageName" => (reason.clone(), now + IMAGE_RETRY),
            RuntimeError::ImagePull { reason, .. } => {
                let record = self.record_mut(is_init, index);
                let waiting = match &record.lifecycle {
                    super::container::Lifecycle::Waiting { reason, .. } => Some(reason.clone()),
                    _ => None,
                };
                record.pull_failures += 1;
                let delay = pull_backoff(record.pull_failures);
                let reason = image_pull_reason(reason, waiting.as_deref());
                if reason == "ImagePullBackOff" {
                    let message = format!("Back-off pulling image \"{}\"", record.image);
                    self.context.api.record_event(&self.pod, "Normal", "BackOff", &message).await;
                }
                (reason, now + delay)
            }
            _ => ("CreateContainerError".to_string(), now + CONFIG_RETRY),
        };
        let message = match &error {
            RuntimeError::ImageUnsupported { message, .. } | RuntimeError::ImagePull { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let event = ContainerEvent::CreateFailed { reason, message: message.clone(), retry_at: Some(retry_at) };
        self.record_mut(is_init, index).apply(event, now);
        self.context.api.record_event(&self.pod, "Warning", "Failed", &format!("Error: {message}")).await;
    }
}

/// Returns the wait before pull number `failures + 1`: 10 s, doubling up to five minutes,
/// as kubelet's image back-off does.
fn pull_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(5);
    (CONFIG_RETRY * 2u32.pow(doublings)).min(IMAGE_RETRY)
}

/// The waiting reason after a failed pull: `ErrImagePull` the first time, then
/// `ImagePullBackOff` while the agent keeps retrying, as kubelet shows them.
fn image_pull_reason(reason: &str, waiting: Option<&str>) -> String {
    match (reason, waiting) {
        ("ErrImagePull", Some("ErrImagePull" | "ImagePullBackOff")) => "ImagePullBackOff".to_string(),
        (reason, _) => reason.to_string(),
    }
}

/// Converts the container's CPU and memory quantities. Unparsable quantities count as
/// unset, because the API server validates them before the pod reaches the node.
pub fn resources(container: &Container) -> Resources {
    let requirements = container.resources.clone().unwrap_or_default();
    let limits = requirements.limits.unwrap_or_default();
    let requests = requirements.requests.unwrap_or_default();
    let millis = |q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
        q.and_then(|q| capstan_api::quantity::parse_millis(&q.0).ok())
    };
    Resources {
        cpu_request_millis: millis(requests.get("cpu")).or(millis(limits.get("cpu"))),
        cpu_limit_millis: millis(limits.get("cpu")),
        memory_limit_bytes: limits
            .get("memory")
            .and_then(|q| capstan_api::quantity::parse_units(&q.0).ok()),
    }
}

/// Creates probe trackers for a container that just started. Without a startup probe the
/// container counts as started, and without a readiness probe also as ready.
fn arm_probes(record: &mut super::container::ContainerRecord, container: &Container, now: Instant) {
    let kinds = [
        (ProbeKind::Startup, &container.startup_probe),
        (ProbeKind::Liveness, &container.liveness_probe),
        (ProbeKind::Readiness, &container.readiness_probe),
    ];
    for (kind, probe) in kinds {
        if let Some(probe) = probe {
            record
                .probes
                .push(ProbeTracker::new(kind, probe.clone(), now));
        }
    }
    record.started = container.startup_probe.is_none();
    record.ready = record.started && container.readiness_probe.is_none();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_backoff_doubles_to_five_minutes() {
        let delays: Vec<u64> = (1..=7).map(|failures| pull_backoff(failures).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
    }
}
