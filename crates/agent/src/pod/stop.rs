//! Running due probes and acting on their verdicts, and tearing a pod down.

use std::time::Duration;

use tokio::time::Instant;

use super::probe::{ProbeKind, ProbeTarget, run_probe};
use super::worker::{PodState, PodWorker};

/// Grace period when the pod sets none, as in Kubernetes.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

impl PodWorker {
    /// Returns the pod's grace period: `deletionGracePeriodSeconds` while it is being
    /// deleted, else `terminationGracePeriodSeconds`.
    pub(super) fn grace_period(&self) -> Duration {
        let deletion = self.pod.metadata.deletion_grace_period_seconds;
        let spec = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds);
        deletion
            .or(spec)
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_GRACE)
    }

    /// Runs each due probe of each running container and applies the verdicts: a failed
    /// startup or liveness probe restarts the container, readiness sets `ready`.
    pub(super) async fn run_due_probes(&mut self) {
        let pod_ip = self
            .sandbox
            .as_ref()
            .and_then(|s| s.ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        let ports_of = |name: &str| {
            let spec = self.pod.spec.as_ref();
            let container = spec.and_then(|s| s.containers.iter().find(|c| c.name == name));
            container.and_then(|c| c.ports.clone()).unwrap_or_default()
        };
        let targets: Vec<Option<ProbeTarget>> = self
            .containers
            .iter()
            .map(|record| {
                let id = record.id.clone().filter(|_| record.is_running())?;
                Some(ProbeTarget {
                    container_id: id,
                    pod_ip,
                    host_ip: self.context.node_ip,
                    ports: ports_of(&record.name),
                })
            })
            .collect();
        for (index, target) in targets.into_iter().enumerate() {
            if let Some(target) = target {
                self.probe_container(index, &target).await;
            }
        }
    }

    async fn probe_container(&mut self, index: usize, target: &ProbeTarget) {
        let runtime = self.context.runtime.clone();
        for probe_index in 0..self.containers[index].probes.len() {
            let now = Instant::now();
            let record = &self.containers[index];
            let tracker = &record.probes[probe_index];
            // Liveness and readiness wait until the startup probe passed.
            let gated = tracker.kind != ProbeKind::Startup && !record.started;
            let finished_startup = tracker.kind == ProbeKind::Startup && record.started;
            if gated || finished_startup || !tracker.due(now) {
                continue;
            }
            let (kind, probe) = (tracker.kind, tracker.probe.clone());
            let outcome = run_probe(runtime.as_ref(), &probe, target).await;
            let name = record.name.clone();
            if !outcome.success {
                let message = format!("{} probe failed: {}", kind.label(), outcome.message);
                self.context
                    .api
                    .record_event(&self.pod, "Warning", "Unhealthy", &message)
                    .await;
            }
            let record = &mut self.containers[index];
            let Some(verdict) = record.probes[probe_index].record(outcome.success, Instant::now())
            else {
                continue;
            };
            match (kind, verdict) {
                (ProbeKind::Startup, true) => {
                    record.started = true;
                    record.ready = !record.probes.iter().any(|p| p.kind == ProbeKind::Readiness);
                }
                (ProbeKind::Readiness, ready) => record.ready = ready,
                (ProbeKind::Startup | ProbeKind::Liveness, false) => {
                    let message = format!(
                        "Container {name} failed {} probe, will be restarted",
                        kind.label().to_lowercase()
                    );
                    self.kill_container(index, &message).await;
                    return;
                }
                (ProbeKind::Liveness, true) => {}
            }
        }
    }

    /// Stops a container with the pod's grace period; the next exit poll applies the
    /// restart policy and counts the restart.
    async fn kill_container(&mut self, index: usize, message: &str) {
        let Some(id) = self.containers[index].id.clone() else {
            return;
        };
        self.context
            .api
            .record_event(&self.pod, "Normal", "Killing", message)
            .await;
        if let Err(error) = self
            .context
            .runtime
            .stop_container(&id, self.grace_period())
            .await
        {
            tracing::warn!(container.id = %id, %error, "failed to stop a container that failed its probe");
        }
        self.containers[index].ready = false;
    }

    /// Stops every container and the sandbox, removes the sandbox, and deletes the pod
    /// from the API unless it is already gone.
    pub(super) async fn terminate(&mut self) {
        debug_assert!(self.state.can_terminate());
        self.state = PodState::Terminating;
        let grace = self.grace_period();
        let runtime = self.context.runtime.clone();

        // stop app containers together, so they share one grace period
        let running: Vec<(String, String)> = self
            .containers
            .iter()
            .chain(self.init.iter())
            .filter(|r| r.is_running())
            .filter_map(|r| Some((r.name.clone(), r.id.clone()?)))
            .collect();
        for (name, _) in &running {
            self.context
                .api
                .record_event(
                    &self.pod,
                    "Normal",
                    "Killing",
                    &format!("Stopping container {name}"),
                )
                .await;
        }
        let stops = running
            .iter()
            .map(|(_, id)| runtime.stop_container(id, grace));
        for (result, (_, id)) in futures::future::join_all(stops)
            .await
            .into_iter()
            .zip(&running)
        {
            if let Err(error) = result {
                tracing::warn!(container.id = %id, %error, "failed to stop container");
            }
        }

        // then the sandbox, which also reaps anything left in it
        if let Some(sandbox) = self.sandbox.take() {
            if let Err(error) = runtime.stop_sandbox(&sandbox.id, grace).await {
                tracing::warn!(sandbox.id = %sandbox.id, %error, "failed to stop sandbox");
            }
            if let Err(error) = runtime.remove_sandbox(&sandbox.id).await {
                tracing::warn!(sandbox.id = %sandbox.id, %error, "failed to remove sandbox");
            }
        }
        let (namespace, name, uid) = (
            self.namespace().to_string(),
            self.name().to_string(),
            self.uid().to_string(),
        );
        self.context.directory.remove(&namespace, &name, &uid);
        super::volumes::remove_pod_volumes(&super::volumes::pod_dir(&self.context.data_dir, &self.pod));

        // finally the API object, guarded by uid against a new pod of the same name
        if !self.gone
            && let Err(error) = self.context.api.delete_pod(&namespace, &name, &uid).await
        {
            tracing::warn!(pod.namespace = %namespace, pod.name = %name, %error, "failed to delete pod");
        }
        tracing::info!(pod.namespace = %namespace, pod.name = %name, "pod removed from node");
        self.state = PodState::Removed;
    }
}
