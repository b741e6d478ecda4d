//! The scheduler's two loops: watches that keep [`ClusterState`] current, and the
//! scheduling loop that pops one pod at a time, decides, and writes the decision.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::algorithm::{Diagnosis, Framework, select_node};
use crate::bind::{ApiBinder, BindError, Binder, EventLimiter, report_unschedulable};
use crate::cluster::{ClusterState, QueueAction};
use crate::pod::PodInfo;
use crate::queue::{PodKey, SchedulingQueue};
use crate::{Error, SchedulerConfig};

/// How long the scheduling loop waits for the first RuntimeClass list before it starts
/// anyway, so a server without RuntimeClasses does not stop scheduling.
const RUNTIME_CLASS_SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything the loops share.
struct Scheduler {
    config: SchedulerConfig,
    client: Client,
    framework: Framework,
    state: Mutex<ClusterState>,
    queue: SchedulingQueue,
    binder: Arc<dyn Binder>,
    limiter: Mutex<EventLimiter>,
}

/// Handlers of one watched kind, chosen per kind by `run`.
struct Handlers<K> {
    apply: fn(&mut ClusterState, &K) -> Vec<QueueAction>,
    delete: fn(&mut ClusterState, &K) -> Vec<QueueAction>,
    replace: fn(&mut ClusterState, &[K]) -> Vec<QueueAction>,
}

/// Watches nodes, pods and RuntimeClasses and schedules pending pods until a watch task
/// ends, which happens only when it panics.
pub async fn run(client: Client, config: SchedulerConfig) -> Result<(), Error> {
    let scheduler = Arc::new(Scheduler {
        state: Mutex::new(ClusterState::new(&config.scheduler_name)),
        config,
        binder: Arc::new(ApiBinder { client: client.clone() }),
        client: client.clone(),
        framework: Framework::default(),
        queue: SchedulingQueue::default(),
        limiter: Mutex::new(EventLimiter::default()),
    });

    // Start the watches; each reports once when its first list is in the cache.
    let (nodes_synced, nodes_ready) = oneshot::channel();
    let (pods_synced, pods_ready) = oneshot::channel();
    let (classes_synced, classes_ready) = oneshot::channel();
    let node_handlers = Handlers::<Node> {
        apply: ClusterState::apply_node,
        delete: ClusterState::delete_node,
        replace: ClusterState::replace_nodes,
    };
    let pod_handlers = Handlers::<Pod> {
        apply: ClusterState::apply_pod,
        delete: ClusterState::delete_pod,
        replace: ClusterState::replace_pods,
    };
    let class_handlers = Handlers::<RuntimeClass> {
        apply: ClusterState::apply_runtime_class,
        delete: ClusterState::delete_runtime_class,
        replace: ClusterState::replace_runtime_classes,
    };
    let watches = vec![
        tokio::spawn(watch_kind(scheduler.clone(), Api::all(client.clone()), node_handlers, nodes_synced)),
        tokio::spawn(watch_kind(scheduler.clone(), Api::all(client.clone()), pod_handlers, pods_synced)),
        tokio::spawn(watch_kind(scheduler.clone(), Api::all(client), class_handlers, classes_synced)),
    ];

    // Wait for the caches, then schedule.
    let _ = nodes_ready.await;
    let _ = pods_ready.await;
    if tokio::time::timeout(RUNTIME_CLASS_SYNC_TIMEOUT, classes_ready).await.is_err() {
        warn!("runtimeclasses not listed yet; pods naming a RuntimeClass wait until they are");
    }
    info!(scheduler.name = %scheduler.config.scheduler_name, "scheduler caches synced");
    let loop_task = tokio::spawn(scheduling_loop(scheduler));

    let (ended, _, _) = futures::future::select_all(watches.into_iter().chain([loop_task])).await;
    loop_task_error(ended)
}

fn loop_task_error(ended: Result<(), tokio::task::JoinError>) -> Result<(), Error> {
    match ended {
        Ok(()) => Err(Error::LoopEnded),
        Err(source) => Err(Error::TaskFailed { source }),
    }
}

/// Feeds one kind's watch events into the cluster state and the queue.
async fn watch_kind<K>(scheduler: Arc<Scheduler>, api: Api<K>, handlers: Handlers<K>, synced: oneshot::Sender<()>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    let kind = K::kind(&Default::default()).to_string();
    let mut synced = Some(synced);
    let mut buffer: Vec<K> = Vec::new();
    let mut stream = watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                // The watcher lists again after its backoff, so the cache catches up.
                warn!(kind = %kind, error = %error, "watch failed, retrying");
                continue;
            }
        };
        let listed = matches!(event, watcher::Event::InitDone);
        let actions = {
            let mut state = scheduler.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match event {
                watcher::Event::Apply(object) => (handlers.apply)(&mut state, &object),
                watcher::Event::Delete(object) => (handlers.delete)(&mut state, &object),
                watcher::Event::Init => {
                    buffer.clear();
                    Vec::new()
                }
                watcher::Event::InitApply(object) => {
                    buffer.push(object);
                    Vec::new()
                }
                watcher::Event::InitDone => {
                    debug!(kind = %kind, objects = buffer.len(), "watch listed");
                    (handlers.replace)(&mut state, &std::mem::take(&mut buffer))
                }
            }
        };
        apply_actions(&scheduler, actions).await;
        if listed && let Some(sender) = synced.take() {
            let _ = sender.send(());
        }
    }
}

async fn apply_actions(scheduler: &Scheduler, actions: Vec<QueueAction>) {
    for action in actions {
        match action {
            QueueAction::Add(key) => scheduler.queue.add(key).await,
            QueueAction::Remove(key) => scheduler.queue.remove(&key).await,
            QueueAction::RetryUnschedulable => scheduler.queue.move_all_to_active().await,
        }
    }
}

async fn scheduling_loop(scheduler: Arc<Scheduler>) {
    loop {
        let key = scheduler.queue.pop().await;
        let span = info_span!("schedule", pod.namespace = %key.0, pod.name = %key.1);
        schedule_one(&scheduler, key).instrument(span).await;
    }
}

/// One attempt for one pod: decide under the state lock, then write the outcome.
async fn schedule_one(scheduler: &Arc<Scheduler>, key: PodKey) {
    // Decide and assume while holding the lock, so the next pod sees this one's resources.
    let decision = {
        let mut state = scheduler.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(pod) = state.pending_pod(&key) else { return };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if state.snapshot.node_of(&uid).is_some() {
            // A bind for this pod is already on its way; the watch has not caught up.
            return;
        }
        match prepare(&state, &pod) {
            Err(diagnosis) => Err((pod, diagnosis)),
            Ok(info) => match select_node(&scheduler.framework, &state.snapshot, &info) {
                Ok(node) => {
                    state.snapshot.assume(&info, &node);
                    Ok((info, node))
                }
                Err(diagnosis) => Err((pod, diagnosis)),
            },
        }
    };

    match decision {
        Ok((info, node)) => {
            let scheduler = scheduler.clone();
            let span = tracing::Span::current();
            tokio::spawn(async move { bind_assumed(&scheduler, key, info, node).await }.instrument(span));
        }
        Err((pod, diagnosis)) => report_failure(scheduler, key, &pod, &diagnosis).await,
    }
}

/// Builds the pod's scheduling inputs, or a diagnosis that rules out every node.
fn prepare(state: &ClusterState, pod: &Pod) -> Result<PodInfo, Diagnosis> {
    let total_nodes = state.snapshot.node_count();
    let pod_failure = |reason: String| Diagnosis { total_nodes, pod_reason: Some(reason), ..Diagnosis::default() };
    let class_name = pod.spec.as_ref().and_then(|spec| spec.runtime_class_name.as_deref());
    let class = match class_name {
        None => None,
        Some(name) => match state.runtime_class(name) {
            Some(class) => Some(class),
            None => return Err(pod_failure(format!("RuntimeClass \"{name}\" not found"))),
        },
    };
    PodInfo::from_pod(pod, class).map_err(|error| pod_failure(error.to_string()))
}

async fn bind_assumed(scheduler: &Scheduler, key: PodKey, info: PodInfo, node: String) {
    match scheduler.binder.bind(&info.namespace, &info.name, &node).await {
        Ok(()) => {
            info!(node.name = %node, "pod bound");
            scheduler.queue.remove(&key).await;
            scheduler.limiter.lock().unwrap_or_else(|p| p.into_inner()).forget(&info.uid);
            record_scheduled(scheduler, &info, &node);
        }
        Err(error) => {
            scheduler.state.lock().unwrap_or_else(|p| p.into_inner()).snapshot.forget(&info.uid);
            if let BindError::PodGone { .. } = error {
                debug!(error = %error, "pod changed before its binding");
                scheduler.queue.remove(&key).await;
            } else {
                warn!(node.name = %node, error = %error, "binding failed, retrying after backoff");
                scheduler.queue.mark_error(key).await;
            }
        }
    }
}

/// Emits the `Scheduled` event that `kubectl describe pod` shows, in the background so
/// that the next pod need not wait for it.
fn record_scheduled(scheduler: &Scheduler, info: &PodInfo, node: &str) {
    let metadata = kube::api::ObjectMeta {
        name: Some(info.name.clone()),
        namespace: Some(info.namespace.clone()),
        uid: Some(info.uid.clone()),
        ..Default::default()
    };
    let reference = capstan_api::events::object_reference("v1", "Pod", &metadata);
    let message = format!("Successfully assigned {}/{} to {node}", info.namespace, info.name);
    let client = scheduler.client.clone();
    let component = scheduler.config.scheduler_name.clone();
    tokio::spawn(async move {
        capstan_api::events::record(&client, &reference, "Normal", "Scheduled", &message, &component).await;
    });
}

async fn report_failure(scheduler: &Scheduler, key: PodKey, pod: &Pod, diagnosis: &Diagnosis) {
    let message = diagnosis.message();
    debug!(message = %message, "pod is unschedulable");
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let emit_event = scheduler
        .limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow(&uid, &message, tokio::time::Instant::now());
    let reported =
        report_unschedulable(&scheduler.client, &scheduler.config.scheduler_name, pod, &message, emit_event).await;
    match reported {
        Ok(()) => scheduler.queue.mark_unschedulable(key).await,
        Err(error) => {
            warn!(error = %error, "reporting unschedulable pod failed");
            scheduler.queue.mark_error(key).await;
        }
    }
}
