//! Create→Running latency: pods on the process runtime, from the create request until a
//! watch shows them Running and Ready, then their deletion until a watch shows them gone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc;

use crate::stats::Summary;
use crate::writes::BENCH_LABEL;

/// A state change the watch reports for a pod, with the moment it was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Milestone {
    Scheduled,
    Ready,
    Deleted,
}

/// Figures of one pod start-up run.
#[derive(Clone, Debug)]
pub struct StartupFigures {
    /// Latency of the create requests themselves.
    pub create: Summary,
    /// From the create request until the watch shows `spec.nodeName`.
    pub scheduled: Summary,
    /// From the create request until the watch shows phase Running with Ready True.
    pub running: Summary,
}

/// A watch on the benchmark's pods, started before the first create.
pub struct PodWatch {
    events: mpsc::UnboundedReceiver<(String, Milestone, Instant)>,
    task: tokio::task::JoinHandle<()>,
    scheduled: HashMap<String, Instant>,
    ready: HashMap<String, Instant>,
    deleted: HashMap<String, Instant>,
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PodWatch {
    /// Starts watching pods labelled with `run_id` and returns once the initial list is done.
    pub async fn start(client: Client, run_id: &str) -> anyhow::Result<PodWatch> {
        let api = Api::<Pod>::default_namespaced(client);
        let config = watcher::Config::default().labels(&format!("{BENCH_LABEL}={run_id}"));
        let (sender, events) = mpsc::unbounded_channel();
        let (synced, is_synced) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(forward_events(api, config, sender, synced));
        tokio::time::timeout(Duration::from_secs(30), is_synced)
            .await
            .context("timed out waiting for the pod watch to start")?
            .context("the pod watch stopped before it started")?;
        Ok(PodWatch {
            events,
            task,
            scheduled: HashMap::new(),
            ready: HashMap::new(),
            deleted: HashMap::new(),
        })
    }

    /// Receives events until `done` holds for every name in `names`, or fails at `deadline`.
    async fn wait_for(&mut self, names: &[String], milestone: Milestone, deadline: Instant) -> anyhow::Result<()> {
        loop {
            let seen = match milestone {
                Milestone::Scheduled => &self.scheduled,
                Milestone::Ready => &self.ready,
                Milestone::Deleted => &self.deleted,
            };
            let missing = names.iter().filter(|name| !seen.contains_key(*name)).count();
            if missing == 0 {
                return Ok(());
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Ok(received) = tokio::time::timeout(remaining, self.events.recv()).await else {
                bail!("timed out: {missing} of {} pods did not reach {milestone:?}", names.len());
            };
            let (name, reached, at) = received.context("the pod watch ended")?;
            let seen = match reached {
                Milestone::Scheduled => &mut self.scheduled,
                Milestone::Ready => &mut self.ready,
                Milestone::Deleted => &mut self.deleted,
            };
            seen.entry(name).or_insert(at);
        }
    }
}

/// Creates `count` pods from `clients` concurrent tasks and waits until all are Running
/// and Ready. Returns the figures and the pods' names.
pub async fn start_pods(
    client: Client,
    watch: &mut PodWatch,
    run_id: &str,
    count: usize,
    clients: usize,
    timeout: Duration,
) -> anyhow::Result<(StartupFigures, Vec<String>)> {
    let deadline = Instant::now() + timeout;
    let started = Instant::now();
    let created = create_pods(client, run_id, count, clients.max(1)).await?;
    let create_elapsed = started.elapsed();
    let names: Vec<String> = created.keys().cloned().collect();
    watch.wait_for(&names, Milestone::Ready, deadline).await?;
    let all_running = started.elapsed();

    let since_create = |seen: &HashMap<String, Instant>| -> Vec<Duration> {
        created.iter().filter_map(|(name, (sent, _))| Some(seen.get(name)?.saturating_duration_since(*sent))).collect()
    };
    let figures = StartupFigures {
        create: Summary::new(created.values().map(|(_, latency)| *latency).collect(), create_elapsed),
        scheduled: Summary::new(since_create(&watch.scheduled), all_running),
        running: Summary::new(since_create(&watch.ready), all_running),
    };
    Ok((figures, names))
}

/// Deletes the run's pods with the default grace period and returns the time until the
/// watch has shown every one of `names` deleted.
pub async fn delete_pods(
    client: Client,
    watch: &mut PodWatch,
    run_id: &str,
    names: &[String],
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let selector = ListParams::default().labels(&format!("{BENCH_LABEL}={run_id}"));
    Api::<Pod>::default_namespaced(client)
        .delete_collection(&DeleteParams::default(), &selector)
        .await
        .context("failed to delete the benchmark pods")?;
    watch.wait_for(names, Milestone::Deleted, started + timeout).await?;
    Ok(started.elapsed())
}

/// Creates the pods; returns for each name the moment its request was sent and its latency.
async fn create_pods(
    client: Client,
    run_id: &str,
    count: usize,
    clients: usize,
) -> anyhow::Result<BTreeMap<String, (Instant, Duration)>> {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..clients {
        let api = Api::<Pod>::default_namespaced(client.clone());
        let run_id = run_id.to_string();
        let names: Vec<String> = (worker..count).step_by(clients).map(|i| format!("{run_id}-{i:04}")).collect();
        tasks.spawn(async move {
            let mut sent = Vec::with_capacity(names.len());
            for name in names {
                let pod = sleep_pod(&name, &run_id);
                let at = Instant::now();
                api.create(&PostParams::default(), &pod).await.with_context(|| format!("failed to create pod {name}"))?;
                sent.push((name, (at, at.elapsed())));
            }
            anyhow::Ok(sent)
        });
    }
    let mut created = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        created.extend(joined.context("a pod creator panicked")??);
    }
    Ok(created)
}

/// Builds a process-runtime pod that sleeps for an hour.
fn sleep_pod(name: &str, run_id: &str) -> Pod {
    let container = Container {
        name: "sleep".to_string(),
        image: Some("host".to_string()),
        command: Some(vec!["sleep".to_string(), "3600".to_string()]),
        ..Container::default()
    };
    let metadata = ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(BTreeMap::from([(BENCH_LABEL.to_string(), run_id.to_string())])),
        ..ObjectMeta::default()
    };
    Pod { metadata, spec: Some(PodSpec { containers: vec![container], ..PodSpec::default() }), ..Pod::default() }
}

/// Checks that the pod is in phase Running with the Ready condition True.
fn is_running_and_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    let ready = status.conditions.iter().flatten().any(|condition| condition.type_ == "Ready" && condition.status == "True");
    status.phase.as_deref() == Some("Running") && ready
}

fn is_scheduled(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()).is_some_and(|node| !node.is_empty())
}

/// Turns watch events into milestones. After a re-list, pods that the list no longer
/// contains count as deleted, because their delete events were missed.
async fn forward_events(
    api: Api<Pod>,
    config: watcher::Config,
    sender: mpsc::UnboundedSender<(String, Milestone, Instant)>,
    synced: tokio::sync::oneshot::Sender<()>,
) {
    let mut synced = Some(synced);
    let mut present: HashSet<String> = HashSet::new();
    let mut relisted: HashSet<String> = HashSet::new();
    let mut stream = watcher(api, config).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let now = Instant::now();
        let emit = |name: &str, milestone| {
            let _ = sender.send((name.to_string(), milestone, now));
        };
        match event {
            Ok(watcher::Event::Init) => relisted.clear(),
            Ok(watcher::Event::InitApply(pod)) | Ok(watcher::Event::Apply(pod)) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                if is_scheduled(&pod) {
                    emit(&name, Milestone::Scheduled);
                }
                if is_running_and_ready(&pod) {
                    emit(&name, Milestone::Ready);
                }
                relisted.insert(name.clone());
                present.insert(name);
            }
            Ok(watcher::Event::InitDone) => {
                for name in present.difference(&relisted) {
                    emit(name, Milestone::Deleted);
                }
                present = std::mem::take(&mut relisted);
                if let Some(synced) = synced.take() {
                    let _ = synced.send(());
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                let name = pod.metadata.name.unwrap_or_default();
                present.remove(&name);
                emit(&name, Milestone::Deleted);
            }
            Err(error) => tracing::warn!(%error, "pod watch failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    fn with_status(phase: &str, ready: &str) -> Pod {
        let mut pod = sleep_pod("p", "run");
        pod.status = Some(PodStatus {
            phase: Some(phase.to_string()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".to_string(),
                status: ready.to_string(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        });
        pod
    }

    #[test]
    fn running_needs_ready_true() {
        assert!(is_running_and_ready(&with_status("Running", "True")));
        assert!(!is_running_and_ready(&with_status("Running", "False")));
        assert!(!is_running_and_ready(&with_status("Pending", "True")));
        assert!(!is_running_and_ready(&sleep_pod("p", "run")));
    }

    #[test]
    fn scheduled_needs_node_name() {
        let mut pod = sleep_pod("p", "run");
        assert!(!is_scheduled(&pod));
        pod.spec.as_mut().expect("spec").node_name = Some("node-1".to_string());
        assert!(is_scheduled(&pod));
    }

    #[test]
    fn sleep_pod_uses_process_runtime_image() {
        let pod = sleep_pod("run-0001", "run");
        let container = &pod.spec.expect("spec").containers[0];
        assert_eq!(container.image.as_deref(), Some("host"));
        assert_eq!(container.command.as_deref(), Some(&["sleep".to_string(), "3600".to_string()][..]));
    }
}
