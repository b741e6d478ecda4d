//! The pod manager: watches the pods bound to this node, runs one worker task per pod,
//! and on start adopts what an earlier agent left running.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::worker::{Adopted, PodUpdate, PodWorker, WorkerContext};
use crate::runtime::RuntimeError;

/// Grace period for containers of pods that are no longer bound here.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

struct WorkerHandle {
    sender: watch::Sender<PodUpdate>,
    task: JoinHandle<()>,
}

/// Routes pod watch events to per-pod workers.
pub struct PodManager {
    context: Arc<WorkerContext>,
    workers: HashMap<String, WorkerHandle>,
    /// Sandboxes from an earlier agent, by pod uid, until a worker takes them.
    adoptable: HashMap<String, Adopted>,
    /// Uids seen in the current relist.
    relisted: HashSet<String>,
    listed_once: bool,
}

impl PodManager {
    /// Lists what the runtime still runs, so that workers can adopt it.
    pub async fn new(context: Arc<WorkerContext>) -> Result<Self, RuntimeError> {
        let sandboxes = context.runtime.list_sandboxes().await?;
        let containers = context.runtime.list_containers().await?;
        let mut adoptable: HashMap<String, Adopted> = HashMap::new();
        for sandbox in sandboxes {
            let owned = containers
                .iter()
                .filter(|c| c.sandbox_id == sandbox.id)
                .cloned()
                .collect();
            adoptable.insert(
                sandbox.pod_uid.clone(),
                Adopted {
                    sandbox,
                    containers: owned,
                },
            );
        }
        tracing::debug!(
            sandboxes = adoptable.len(),
            "runtime state listed for adoption"
        );
        Ok(Self {
            context,
            workers: HashMap::new(),
            adoptable,
            relisted: HashSet::new(),
            listed_once: false,
        })
    }

    /// Number of pods with a live worker.
    pub fn worker_count(&self) -> usize {
        self.workers
            .values()
            .filter(|w| !w.task.is_finished())
            .count()
    }

    /// Handles one watch event.
    pub async fn handle(&mut self, event: Event<Pod>) {
        match event {
            Event::Init => self.relisted.clear(),
            Event::InitApply(pod) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    self.relisted.insert(uid);
                }
                self.dispatch(pod);
            }
            Event::InitDone => {
                // Pods missing from the relist were deleted while the watch was down.
                let missing: Vec<String> = self
                    .workers
                    .keys()
                    .filter(|uid| !self.relisted.contains(*uid))
                    .cloned()
                    .collect();
                for uid in missing {
                    self.mark_gone(&uid);
                }
                if !self.listed_once {
                    self.listed_once = true;
                    self.remove_orphans();
                }
            }
            Event::Apply(pod) => self.dispatch(pod),
            Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    self.mark_gone(uid);
                }
            }
        }
    }

    fn dispatch(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        self.workers.retain(|_, worker| !worker.task.is_finished());
        if let Some(worker) = self.workers.get(&uid) {
            // A send fails only when the worker ended. Finished workers were removed above,
            // so a failure here means the worker ended just now and the next event restarts it.
            let _ = worker.sender.send(PodUpdate::Changed(Box::new(pod)));
            return;
        }
        let adopted = self.adoptable.remove(&uid);
        tracing::debug!(pod.uid = %uid, pod.name = ?pod.metadata.name, adopted = adopted.is_some(), "starting pod worker");
        let worker = PodWorker::new(self.context.clone(), pod.clone(), adopted);
        let (sender, receiver) = watch::channel(PodUpdate::Changed(Box::new(pod)));
        let task = tokio::spawn(worker.run(receiver));
        self.workers.insert(uid, WorkerHandle { sender, task });
    }

    fn mark_gone(&mut self, uid: &str) {
        if let Some(worker) = self.workers.get(uid) {
            let _ = worker.sender.send(PodUpdate::Gone);
        }
    }

    /// Stops and removes sandboxes and containers that no bound pod claimed.
    fn remove_orphans(&mut self) {
        let orphans: Vec<Adopted> = self.adoptable.drain().map(|(_, adopted)| adopted).collect();
        let runtime = self.context.runtime.clone();
        tokio::spawn(async move {
            for orphan in orphans {
                let id = orphan.sandbox.id.clone();
                tracing::info!(sandbox.id = %id, pod.uid = %orphan.sandbox.pod_uid, "removing sandbox of a pod no longer bound here");
                if let Err(error) = runtime.stop_sandbox(&id, ORPHAN_GRACE).await {
                    tracing::warn!(sandbox.id = %id, %error, "failed to stop orphaned sandbox");
                }
                if let Err(error) = runtime.remove_sandbox(&id).await {
                    tracing::warn!(sandbox.id = %id, %error, "failed to remove orphaned sandbox");
                }
            }
        });
    }
}

/// Watches the pods bound to the node and feeds them to a [`PodManager`]. Returns only
/// when the watch stream ends.
pub async fn run_pods(client: Client, context: Arc<WorkerContext>) -> Result<(), RuntimeError> {
    let mut manager = PodManager::new(context.clone()).await?;
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", context.node_name));
    let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => manager.handle(event).await,
            Err(error) => {
                tracing::warn!(node.name = %context.node_name, %error, "pod watch failed; retrying")
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::PathBuf;

    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::api::RecordingPodApi;
    use crate::directory::PodDirectory;
    use crate::fake::FakeRuntime;
    use crate::runtime::SandboxStatus;

    fn context(runtime: Arc<FakeRuntime>) -> Arc<WorkerContext> {
        Arc::new(WorkerContext {
            runtime,
            api: Arc::new(RecordingPodApi::new()),
            directory: PodDirectory::new(),
            node_name: "node-1".into(),
            node_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            data_dir: PathBuf::from("/tmp/capstan-manager-test"),
            backoff: (Duration::from_secs(10), Duration::from_secs(300)),
            node_cpu_millis: 1000,
            node_memory_bytes: 1 << 30,
            cluster_dns: Default::default(),
        })
    }

    fn sandbox(id: &str, uid: &str) -> SandboxStatus {
        SandboxStatus {
            id: id.into(),
            pod_uid: uid.into(),
            pod_namespace: "default".into(),
            pod_name: uid.into(),
            ip: None,
            ready: true,
            created_at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    fn pod(uid: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(uid.into()),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some("host".into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    #[tokio::test]
    async fn relist_adopts_and_removes_orphans() {
        let runtime = Arc::new(FakeRuntime::new());
        runtime.insert_sandbox(sandbox("kept", "bound"));
        runtime.insert_sandbox(sandbox("stale", "unbound"));
        let mut manager = PodManager::new(context(runtime.clone()))
            .await
            .expect("manager");
        manager.handle(Event::Init).await;
        manager.handle(Event::InitApply(pod("bound"))).await;
        manager.handle(Event::InitDone).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            runtime.calls_starting_with("remove_sandbox"),
            vec!["remove_sandbox stale"]
        );
        // The bound pod kept its sandbox instead of getting a new one.
        assert!(runtime.calls_starting_with("run_sandbox").is_empty());
        assert_eq!(manager.worker_count(), 1);
    }

    #[tokio::test]
    async fn delete_event_stops_worker() {
        let runtime = Arc::new(FakeRuntime::new());
        let mut manager = PodManager::new(context(runtime.clone()))
            .await
            .expect("manager");
        manager.handle(Event::Apply(pod("p1"))).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(runtime.calls_starting_with("run_sandbox").len(), 1);
        manager.handle(Event::Delete(pod("p1"))).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(runtime.calls_starting_with("remove_sandbox").len(), 1);
        assert_eq!(manager.worker_count(), 0);
    }
}
