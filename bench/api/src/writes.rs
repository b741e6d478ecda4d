//! API write throughput and latency: concurrent clients creating ConfigMaps or Pods.
//!
//! Each simulated client has its own `kube::Client` (its own TLS connections, kept alive
//! between requests as client-go keeps them) and sends its creates one after another.
//! Latency is per create, from sending the request until the response has been parsed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::inprocess::client_from_kubeconfig;
use crate::stats::Summary;

/// Label on every object the write benchmark creates, so that it can delete them again.
pub const BENCH_LABEL: &str = "bench.capstan.io/run";
/// A scheduler name that no scheduler serves, so benchmark pods stay Pending.
const UNSERVED_SCHEDULER: &str = "capstan-bench-unserved";

/// The kind of object a write scenario creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    ConfigMap,
    Pod,
}

impl WriteKind {
    pub fn plural(self) -> &'static str {
        match self {
            WriteKind::ConfigMap => "configmaps",
            WriteKind::Pod => "pods",
        }
    }
}

/// One scenario: `total` creates of `kind` shared evenly among `clients` clients.
#[derive(Clone, Debug)]
pub struct WriteScenario {
    pub kind: WriteKind,
    pub clients: usize,
    pub total: usize,
    /// Value of [`BENCH_LABEL`] and prefix of the object names.
    pub run_id: String,
}

/// Runs `scenario` against the server in `kubeconfig` and summarizes the creates' latency.
/// Any failed create fails the scenario, because a failure would hide in the figures.
pub async fn run_scenario(kubeconfig: &Path, scenario: &WriteScenario) -> anyhow::Result<Summary> {
    let clients = connect_clients(kubeconfig, scenario.clients, scenario.kind).await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, client) in clients.into_iter().enumerate() {
        let count = share(scenario.total, scenario.clients, index);
        let scenario = scenario.clone();
        tasks.spawn(async move { create_sequence(client, &scenario, index, count).await });
    }

    let mut latencies = Vec::with_capacity(scenario.total);
    while let Some(joined) = tasks.join_next().await {
        latencies.extend(joined.context("a benchmark client panicked")??);
    }
    Ok(Summary::new(latencies, started.elapsed()))
}

/// Deletes every object of `kind` labelled with `run_id` in the default namespace.
pub async fn delete_run(kubeconfig: &Path, kind: WriteKind, run_id: &str) -> anyhow::Result<()> {
    let client = client_from_kubeconfig(kubeconfig).await?;
    let selector = ListParams::default().labels(&format!("{BENCH_LABEL}={run_id}"));
    let params = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
    let result = match kind {
        WriteKind::ConfigMap => Api::<ConfigMap>::default_namespaced(client).delete_collection(&params, &selector).await.map(drop),
        WriteKind::Pod => Api::<Pod>::default_namespaced(client).delete_collection(&params, &selector).await.map(drop),
    };
    result.with_context(|| format!("failed to delete the benchmark's {}", kind.plural()))
}

/// Creates `count` clients and sends one list through each, so that the TLS handshake is
/// done before timing starts.
async fn connect_clients(kubeconfig: &Path, count: usize, kind: WriteKind) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        let client = client_from_kubeconfig(kubeconfig).await?;
        let limit_one = ListParams::default().limit(1);
        let listed = match kind {
            WriteKind::ConfigMap => Api::<ConfigMap>::default_namespaced(client.clone()).list(&limit_one).await.map(drop),
            WriteKind::Pod => Api::<Pod>::default_namespaced(client.clone()).list(&limit_one).await.map(drop),
        };
        listed.context("the warm-up list failed; is the API server running?")?;
        clients.push(client);
    }
    Ok(clients)
}

/// Computes how many creates client `index` of `clients` sends, so that all add up to `total`.
fn share(total: usize, clients: usize, index: usize) -> usize {
    total / clients + usize::from(index < total % clients)
}

async fn create_sequence(
    client: Client,
    scenario: &WriteScenario,
    index: usize,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let params = PostParams::default();
    let configmaps = Api::<ConfigMap>::default_namespaced(client.clone());
    let pods = Api::<Pod>::default_namespaced(client);
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("{}-{}c-{index}-{i}", scenario.run_id, scenario.clients);
        let metadata = object_meta(&name, &scenario.run_id);
        let started = Instant::now();
        let created = match scenario.kind {
            WriteKind::ConfigMap => configmaps.create(&params, &configmap(metadata)).await.map(drop),
            WriteKind::Pod => pods.create(&params, &pending_pod(metadata)).await.map(drop),
        };
        latencies.push(started.elapsed());
        created.with_context(|| format!("failed to create {} {name}", scenario.kind.plural()))?;
    }
    Ok(latencies)
}

fn object_meta(name: &str, run_id: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(BTreeMap::from([(BENCH_LABEL.to_string(), run_id.to_string())])),
        ..ObjectMeta::default()
    }
}

/// Builds a ConfigMap with about 250 bytes of data, the size of a small application setting.
fn configmap(metadata: ObjectMeta) -> ConfigMap {
    let data = BTreeMap::from([
        ("app.properties".to_string(), "log.level=info\n".repeat(16)),
        ("mode".to_string(), "benchmark".to_string()),
    ]);
    ConfigMap { metadata, data: Some(data), ..ConfigMap::default() }
}

/// Builds a pod for a scheduler that does not exist, so it stays Pending and no node runs it.
fn pending_pod(metadata: ObjectMeta) -> Pod {
    let container = Container {
        name: "sleep".to_string(),
        image: Some("host".to_string()),
        command: Some(vec!["sleep".to_string(), "3600".to_string()]),
        ..Container::default()
    };
    let spec = PodSpec {
        containers: vec![container],
        scheduler_name: Some(UNSERVED_SCHEDULER.to_string()),
        ..PodSpec::default()
    };
    Pod { metadata, spec: Some(spec), ..Pod::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_total() {
        for (total, clients) in [(1000, 1), (1000, 16), (1000, 64), (10, 64)] {
            let sum: usize = (0..clients).map(|index| share(total, clients, index)).sum();
            assert_eq!(sum, total, "{total} creates among {clients} clients");
        }
    }

    #[test]
    fn shares_differ_by_at_most_one() {
        let shares: Vec<usize> = (0..16).map(|index| share(1000, 16, index)).collect();
        assert_eq!(shares.iter().max(), Some(&63));
        assert_eq!(shares.iter().min(), Some(&62));
    }

    #[test]
    fn pending_pod_avoids_scheduler() {
        let pod = pending_pod(object_meta("p", "run"));
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.scheduler_name.as_deref(), Some(UNSERVED_SCHEDULER));
        assert_eq!(spec.node_name, None);
        assert_eq!(pod.metadata.labels.expect("labels")[BENCH_LABEL], "run");
    }
}
