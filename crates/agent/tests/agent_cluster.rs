//! The agent against a real API server and the real process runtime: it registers its
//! node, runs a bound pod, reports it Running with a pod IP, serves its log, and cleans
//! up when the pod is deleted.

#[path = "process_support/mod.rs"]
mod process_support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use capstan_agent::runtime::Runtime;
use capstan_agent::{AgentConfig, run};
use capstan_apiserver::{Server, ServerConfig};
use capstan_pki::{Authority, CertifiedKey};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Node, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, LogParams, PostParams};

const NODE: &str = "cst-node-1";
const WAIT: Duration = Duration::from_secs(30);

/// Polls `check` every 200 ms until it returns `Some`, or panics after [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn client_for(addr: SocketAddr, ca_pem: &str, user: &CertifiedKey) -> kube::Client {
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://{addr}\n    \
         certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    \
         client-key-data: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n",
        b64(ca_pem),
        b64(&user.cert_pem),
        b64(&user.key_pem)
    );
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml).expect("parse kubeconfig");
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.expect("client config");
    kube::Client::try_from(config).expect("client")
}

fn pod(name: &str, script: &str) -> Pod {
    Pod {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some("default".into()), ..ObjectMeta::default() },
        spec: Some(PodSpec {
            node_name: Some(NODE.into()),
            termination_grace_period_seconds: Some(2),
            containers: vec![Container {
                name: "web".into(),
                image: Some("host".into()),
                command: Some(vec!["sh".into(), "-c".into(), script.into()]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// An API server on loopback with a fresh CA, and an admin client for it.
struct Cluster {
    authority: Authority,
    ca_pem: String,
    client: kube::Client,
}

async fn start_cluster(pki_dir: &std::path::Path) -> Cluster {
    let authority = Authority::load_or_create(pki_dir).expect("CA");
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let ca_pem = authority.ca_cert_pem().to_string();
    let server = Server::bind(ServerConfig {
        listen: SocketAddr::new(localhost, 0),
        store: Arc::new(capstan_store::MemoryStore::new(10_000)),
        serving: authority.issue_server("capstan-apiserver", &["localhost".into()], &[localhost]).expect("cert"),
        ca_pem: ca_pem.clone(),
        kubelet_client: authority.issue_client("capstan-apiserver", &["system:masters"]).expect("cert"),
        services: capstan_apiserver::services::ServiceNetwork::default(),
    })
    .await
    .expect("API server binds");
    let addr = server.local_addr();
    tokio::spawn(server.run(std::future::pending()));
    let admin = authority.issue_client("admin", &["system:masters"]).expect("cert");
    let client = client_for(addr, &ca_pem, &admin).await;
    Cluster { authority, ca_pem, client }
}

impl Cluster {
    fn start_agent(&self, runtime: Arc<dyn Runtime>, data_dir: PathBuf, backoff: (Duration, Duration)) -> AgentTask {
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let config = AgentConfig {
            node_name: NODE.into(),
            node_ip: localhost,
            data_dir,
            pod_cidr: None,
            extra_pod_cidrs: Vec::new(),
            kubelet_listen: SocketAddr::new(localhost, 0),
            serving: self.authority.issue_server(NODE, &[NODE.into()], &[localhost]).expect("cert"),
            ca_pem: self.ca_pem.clone(),
            labels: BTreeMap::new(),
            restart_backoff: backoff,
            heartbeat: Duration::from_secs(1),
            cluster_dns: Default::default(),
        };
        let handler = runtime.handler().to_string();
        let runtimes = BTreeMap::from([(handler.clone(), runtime)]);
        let client = self.client.clone();
        AgentTask(tokio::spawn(async move { run(client, runtimes, &handler, config).await }))
    }
}

/// The agent's task, cancelled when the test ends, even by a failed assert.
struct AgentTask(tokio::task::JoinHandle<Result<(), capstan_agent::AgentError>>);

impl Drop for AgentTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits until the pod's first container satisfies `check` and returns its status.
async fn container_when(
    pods: &Api<Pod>,
    name: &str,
    what: &str,
    check: impl Fn(&ContainerStatus) -> bool,
) -> ContainerStatus {
    eventually(what, || async {
        let pod = pods.get_opt(name).await.ok().flatten()?;
        let status = pod.status?.container_statuses?.into_iter().next()?;
        check(&status).then_some(status)
    })
    .await
}

#[tokio::test]
async fn bound_pod_runs_and_logs() {
    let Some(fixture) = process_support::fixture(200, true) else { return };
    let runtime: Arc<dyn Runtime> = Arc::new(fixture.restarted_runtime());
    let cluster = start_cluster(&fixture.state_dir.join("pki")).await;
    let client = cluster.client.clone();
    let _agent = cluster.start_agent(runtime.clone(), fixture.state_dir.join("agent"), (Duration::from_secs(10), Duration::from_secs(300)));

    // node registration and lease
    let nodes: Api<Node> = Api::all(client.clone());
    let node = eventually("node registration", || async { nodes.get_opt(NODE).await.ok().flatten() }).await;
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("runtime.capstan.io/process").map(String::as_str), Some("true"));
    let port = eventually("node status", || async {
        let node = nodes.get_opt(NODE).await.ok().flatten()?;
        node.status?.daemon_endpoints?.kubelet_endpoint.map(|e| e.port).filter(|p| *p > 0)
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = eventually("node lease", || async { leases.get_opt(NODE).await.ok().flatten() }).await;
    assert_eq!(lease.spec.and_then(|s| s.holder_identity).as_deref(), Some(NODE));

    // a bound pod runs
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web", "echo hi; sleep 30")).await.expect("create pod");
    let running = eventually("pod Running", || async {
        let pod = pods.get_opt("web").await.ok().flatten()?;
        let status = pod.status.clone()?;
        (status.phase.as_deref() == Some("Running") && status.pod_ip.is_some()).then_some(status)
    })
    .await;
    let pod_ip = running.pod_ip.clone().unwrap_or_default();
    assert!(pod_ip.starts_with("10.250.200."), "pod IP {pod_ip} comes from the runtime's pod CIDR");
    let container = &running.container_statuses.clone().unwrap_or_default()[0];
    assert!(container.container_id.as_deref().is_some_and(|id| id.starts_with("process://")));

    // its log through the kubelet server
    let kubelet_user = cluster.authority.issue_client("capstan-apiserver", &[]).expect("cert");
    let tls = capstan_pki::client_config(&kubelet_user, &cluster.ca_pem).expect("tls");
    let http = reqwest::Client::builder().use_preconfigured_tls(tls).build().expect("http client");
    let url = format!("https://127.0.0.1:{port}/containerLogs/default/web/web");
    let log = eventually("log line", || async {
        let text = http.get(&url).send().await.ok()?.text().await.ok()?;
        (text == "hi\n").then_some(text)
    })
    .await;
    assert_eq!(log, "hi\n");

    // and through the API server's log subresource
    let params = LogParams { container: Some("web".into()), ..LogParams::default() };
    let proxied = pods.logs("web", &params).await.expect("pod log through the API server");
    assert_eq!(proxied, "hi\n");

    // deletion stops it and removes the pod
    pods.delete("web", &DeleteParams::default()).await.expect("delete pod");
    eventually("pod removal", || async { pods.get_opt("web").await.ok()?.is_none().then_some(()) }).await;
    eventually("sandbox removal", || async { runtime.list_sandboxes().await.ok()?.is_empty().then_some(()) }).await;
}

#[tokio::test]
async fn crash_loop_survives_agent_restart() {
    let Some(fixture) = process_support::fixture(201, true) else { return };
    let cluster = start_cluster(&fixture.state_dir.join("pki")).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let backoff = (Duration::from_secs(1), Duration::from_secs(2));
    let data_dir = fixture.state_dir.join("agent");

    // a crashing container counts restarts and backs off
    let first = cluster.start_agent(Arc::new(fixture.restarted_runtime()), data_dir.clone(), backoff);
    pods.create(&PostParams::default(), &pod("crasher", "echo try; exit 3")).await.expect("create pod");
    let crashed = container_when(&pods, "crasher", "two restarts", |c| c.restart_count >= 2).await;
    let last = crashed.last_state.and_then(|s| s.terminated).expect("last termination");
    assert_eq!(last.exit_code, 3);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    let waiting = container_when(&pods, "crasher", "CrashLoopBackOff", |c| {
        c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref()) == Some("CrashLoopBackOff")
    })
    .await;
    let message = waiting.state.and_then(|s| s.waiting).and_then(|w| w.message).unwrap_or_default();
    assert!(message.starts_with("back-off "), "{message}");
    assert!(message.contains("restarting failed container=web pod=crasher_default("), "{message}");

    // a long-running pod is adopted by a restarted agent, not restarted
    pods.create(&PostParams::default(), &pod("steady", "sleep 60")).await.expect("create pod");
    let before = container_when(&pods, "steady", "steady running", |c| c.state.as_ref().is_some_and(|s| s.running.is_some())).await;
    let crashes_before = container_when(&pods, "crasher", "crasher status", |_| true).await.restart_count;
    drop(first);
    let runtime: Arc<dyn Runtime> = Arc::new(fixture.restarted_runtime());
    let _second = cluster.start_agent(runtime.clone(), data_dir, backoff);

    // The crasher keeps counting from where the first agent left off, which shows that
    // the second agent synced both pods.
    container_when(&pods, "crasher", "restarts counted on", |c| c.restart_count > crashes_before).await;
    let after = container_when(&pods, "steady", "steady still running", |c| c.state.as_ref().is_some_and(|s| s.running.is_some())).await;
    assert_eq!(after.container_id, before.container_id);
    assert_eq!(after.restart_count, 0);
    let steady_uid = pods.get("steady").await.expect("steady pod").metadata.uid.expect("uid");
    let containers = runtime.list_containers().await.expect("list containers");
    let steady: Vec<_> = containers.iter().filter(|c| c.labels.get("capstan.io/pod-uid") == Some(&steady_uid)).collect();
    assert_eq!(steady.len(), 1, "the adopted pod kept its one container: {steady:?}");

    pods.delete("steady", &DeleteParams::default()).await.expect("delete pod");
    pods.delete("crasher", &DeleteParams::default()).await.expect("delete pod");
    eventually("pod removal", || async { pods.list(&Default::default()).await.ok()?.items.is_empty().then_some(()) }).await;
}
