//! The garbage collector: deletes objects whose owners are gone and carries out the
//! `foregroundDeletion` and `orphan` finalizers.
//!
//! One watch per resource kind in the table feeds an ownership [`graph::Graph`] keyed by
//! uid. Each event marks the uids it may affect as dirty; one worker plans and commits the
//! actions for each dirty uid. Nothing is collected until every watch has listed once,
//! because a half-filled graph would make live owners look absent.

mod commit;
pub mod graph;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_api::resources::{RESOURCES, ResourceInfo};
use futures::StreamExt;
use kube::api::DynamicObject;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use graph::{Graph, ObjectNode};

/// How long a uid whose actions failed waits before it is planned again.
const RETRY_DELAY: Duration = Duration::from_secs(2);

/// A garbage-collector failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} {kind} {namespace}/{name}: {source}")]
    WriteFailed {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the garbage collector's {task} stopped")]
    Stopped { task: &'static str },
}

/// The graph and the dirty set, shared by the watches and the worker.
#[derive(Default)]
struct Collector {
    graph: Mutex<Graph>,
    dirty: Mutex<BTreeSet<String>>,
    wake: Notify,
    synced: Mutex<HashSet<&'static str>>,
}

impl Collector {
    fn mark(&self, uids: Vec<String>) {
        if uids.is_empty() {
            return;
        }
        self.dirty.lock().unwrap_or_else(|p| p.into_inner()).extend(uids);
        self.wake.notify_one();
    }
}

/// Whether the collector watches this kind: anything it can list, watch and delete.
fn collectable(resource: &ResourceInfo) -> bool {
    ["list", "watch", "delete"].iter().all(|verb| resource.verbs.contains(verb))
}

/// Runs the garbage collector until one of its tasks stops.
pub async fn run_garbage_collector(client: Client) -> Result<(), Error> {
    let collector = Arc::new(Collector::default());
    let kinds: Vec<&'static ResourceInfo> = RESOURCES.iter().filter(|r| collectable(r)).collect();
    let mut tasks = Vec::new();
    for resource in &kinds {
        tasks.push(tokio::spawn(watch_resource(client.clone(), collector.clone(), resource)));
    }
    tasks.push(tokio::spawn(work(client, collector, kinds.len())));
    info!(kinds = tasks.len() - 1, "starting the garbage collector");
    let (_, _, _) = futures::future::select_all(tasks).await;
    Err(Error::Stopped { task: "watch or worker" })
}

async fn watch_resource(client: Client, collector: Arc<Collector>, resource: &'static ResourceInfo) {
    let api: Api<DynamicObject> = Api::all_with(client, &commit::api_resource(resource));
    let mut stream = watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut buffer = Vec::new();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                debug!(kind = resource.kind, %error, "watch failed, retrying");
                continue;
            }
        };
        let node = |object: &DynamicObject| ObjectNode::from_metadata(resource, &object.metadata);
        let dirty = {
            let mut graph = collector.graph.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                watcher::Event::Apply(object) => node(&object).map(|n| graph.upsert(n)).unwrap_or_default(),
                watcher::Event::Delete(object) => {
                    object.metadata.uid.as_deref().map(|uid| graph.remove(uid)).unwrap_or_default()
                }
                watcher::Event::Init => {
                    buffer.clear();
                    Vec::new()
                }
                watcher::Event::InitApply(object) => {
                    buffer.extend(node(&object));
                    Vec::new()
                }
                watcher::Event::InitDone => {
                    collector.synced.lock().unwrap_or_else(|p| p.into_inner()).insert(resource.plural);
                    graph.replace_resource(resource, std::mem::take(&mut buffer))
                }
            }
        };
        collector.mark(dirty);
    }
}

/// Plans and commits the dirty uids one at a time, once every watch has listed.
async fn work(client: Client, collector: Arc<Collector>, kinds: usize) {
    loop {
        let notified = collector.wake.notified();
        let synced = collector.synced.lock().unwrap_or_else(|p| p.into_inner()).len() >= kinds;
        let next = if synced {
            let mut dirty = collector.dirty.lock().unwrap_or_else(|p| p.into_inner());
            dirty.pop_first()
        } else {
            None
        };
        let Some(uid) = next else {
            notified.await;
            continue;
        };

        // Plan from a copy so the lock is not held across writes.
        let (actions, graph) = {
            let graph = collector.graph.lock().unwrap_or_else(|p| p.into_inner());
            (graph.plan(&uid), graph.subgraph_for(&uid))
        };
        for action in &actions {
            if let Err(error) = commit::commit(&client, &graph, action).await {
                warn!(%error, "garbage collection step failed, retrying");
                let collector = collector.clone();
                let uid = uid.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(RETRY_DELAY).await;
                    collector.mark(vec![uid]);
                });
                break;
            }
        }
    }
}
