//! `capstan up`: a one-node cluster in one process.
//!
//! The steps: open the certificate authority and the embedded store in the data directory,
//! start the API server, write the administrator kubeconfig, start the scheduler, the
//! controllers and the node agent (each with its own client certificate), create the
//! example workload, then wait for SIGTERM or Ctrl-C. Pods keep running across a stop:
//! their shims are detached, and the next `up` on the same data directory adopts them.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use capstan_pki::Authority;
use capstan_store::embedded::{EmbeddedOptions, EmbeddedStore};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::PostParams;
use tracing::{info, warn};

use crate::runtimes::{self, NodeRuntimes, ProcessSettings, RuntimeArgs};
use crate::{kubeconfig, node};

/// The example workload that `up` creates unless `--no-example` is given.
const EXAMPLE: &str = include_str!("../../../examples/web.yaml");

#[derive(clap::Args)]
pub struct UpArgs {
    /// Directory for the store, certificates, pod state and logs.
    #[arg(long, env = "CAPSTAN_DATA_DIR", default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Port of the node agent's HTTPS server (logs), on the node address.
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// Name of the node; the host name by default.
    #[arg(long)]
    node_name: Option<String>,
    /// Address the node registers as its InternalIP; the first non-loopback IPv4 address by default.
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// Address range for pod IPs on this node.
    #[arg(long, default_value = "10.244.0.0/24")]
    pod_cidr: String,
    /// Linux bridge that connects the pods' network namespaces.
    #[arg(long, default_value = "cst0")]
    bridge: String,
    /// First CrashLoopBackOff delay in milliseconds (doubles up to five minutes).
    #[arg(long, default_value_t = 10_000)]
    restart_backoff_ms: u64,
    /// Do not create the example web Deployment.
    #[arg(long)]
    no_example: bool,
    /// IPv4 range (CIDR) that Service ClusterIPs come from; its first address goes to the
    /// `kubernetes` Service.
    #[arg(long, default_value_t = capstan_apiserver::services::ClusterIpRange::default())]
    service_cidr: capstan_apiserver::services::ClusterIpRange,
    /// Inclusive port range (FIRST-LAST) that Service NodePorts come from.
    #[arg(long, default_value_t = capstan_apiserver::services::NodePortRange::default())]
    node_port_range: capstan_apiserver::services::NodePortRange,
    #[command(flatten)]
    runtimes: RuntimeArgs,
    #[command(flatten)]
    proxy: ProxyArgs,
}

/// Settings of the node's Service proxy and DNS server.
#[derive(clap::Args)]
pub struct ProxyArgs {
    /// Data path for Service traffic: auto (nftables when available, else userspace),
    /// nftables or userspace.
    #[arg(long, value_enum, default_value_t = capstan_proxy::Mode::Auto)]
    proxy_mode: capstan_proxy::Mode,
    /// Suffix of the proxy's nftables table (`capstan_<suffix>`) and of the label of its
    /// userspace-mode addresses (`lo:cst<suffix>`), so that
    /// several clusters on one host keep apart.
    #[arg(long, default_value = "")]
    proxy_suffix: String,
    /// Address of the cluster DNS server; the pod bridge's gateway address by default.
    #[arg(long)]
    cluster_dns: Option<IpAddr>,
    /// Port of the cluster DNS server. Pods reach it only on 53, because resolv.conf has
    /// no port field.
    #[arg(long, default_value_t = 53)]
    dns_port: u16,
    /// The cluster domain that Service and pod names end in.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Resolver (IP:port) for names outside the cluster domain; repeat for more. The
    /// nameservers of /etc/resolv.conf by default.
    #[arg(long = "dns-upstream")]
    dns_upstreams: Vec<SocketAddr>,
}

/// `/var/lib/capstan` for root, `~/.local/share/capstan` for other users.
pub fn default_data_dir() -> PathBuf {
    if nix::unistd::Uid::effective().is_root() {
        return PathBuf::from("/var/lib/capstan");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/capstan")
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("failed to create {}", args.data_dir.display()))?;
    let node_name = args.node_name.clone().unwrap_or_else(node::hostname);
    let node_ip = args.node_ip.unwrap_or_else(node::primary_ipv4);

    // Certificates: the CA, the API server's serving certificate and the identity it uses
    // to call node agents.
    let authority = Arc::new(Authority::load_or_create(&args.data_dir.join("pki"))?);
    let mut server_ips = vec![args.listen.ip(), node_ip, IpAddr::from([127, 0, 0, 1])];
    server_ips.dedup();
    let server_names = vec!["localhost".to_string(), "kubernetes".to_string(), node_name.clone()];
    let serving = authority.server_file("apiserver", &server_names, &server_ips)?;
    let kubelet_client =
        authority.client_file("apiserver-kubelet-client", "system:apiserver", &["system:masters"])?;

    // The store and the API server.
    let store = EmbeddedStore::open(&args.data_dir.join("store.redb"), EmbeddedOptions::default())
        .context("failed to open the store")?;
    let server = capstan_apiserver::Server::bind(capstan_apiserver::ServerConfig {
        listen: args.listen,
        store: Arc::new(store),
        serving,
        ca_pem: authority.ca_cert_pem().to_string(),
        kubelet_client,
        services: capstan_apiserver::services::ServiceNetwork {
            cluster_ip_range: args.service_cidr,
            node_port_range: args.node_port_range,
            advertise_address: None,
        },
    })
    .await
    .context("failed to start the API server")?;
    let server_url = format!("https://{}", display_addr(server.local_addr()));
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.run(async move {
        let _ = server_stopped.await;
    }));
    let kubeconfig_path = kubeconfig::write_admin(&args.data_dir, &server_url, &authority)?;
    info!(url = %server_url, kubeconfig = %kubeconfig_path.display(), "API server is serving");

    // The node's runtimes (and containerd for CRI), the control-plane components and
    // the node agent.
    let settings = ProcessSettings {
        data_dir: args.data_dir.clone(),
        node_name: node_name.clone(),
        bridge: args.bridge.clone(),
        pod_cidr: args.pod_cidr.clone(),
    };
    let mut node_runtimes = runtimes::build(&args.runtimes, &settings).await?;
    let containerd = node_runtimes.containerd.take();
    let admin = kubeconfig::client_for(&server_url, &authority, "admin", "admin", &["system:masters"]).await?;
    let handlers: Vec<String> = node_runtimes.runtimes.keys().cloned().collect();
    runtimes::create_runtime_classes(admin.clone(), &handlers).await?;
    let example_runtime_class =
        (node_runtimes.default_handler != capstan_agent::runtime::process::HANDLER)
            .then(|| capstan_agent::runtime::process::HANDLER.to_string());
    let mut tasks = tokio::task::JoinSet::new();
    start_control_plane(&mut tasks, &server_url, &authority).await?;
    let cluster_dns = cluster_dns_address(&args);
    start_agent(&mut tasks, &args, node_runtimes, &server_url, &authority, &node_name, node_ip, cluster_dns).await?;
    let proxy = start_proxy(&args, &server_url, &authority, &node_name, cluster_dns).await;

    if !args.no_example {
        create_example(admin.clone(), example_runtime_class).await?;
        print_welcome(&kubeconfig_path, false);
        tokio::spawn(print_example_addresses(admin));
    } else {
        print_welcome(&kubeconfig_path, true);
    }

    wait_for_signal().await;
    info!("stopping; pods keep running and are adopted by the next `capstan up`");
    tasks.abort_all();
    if let Some(proxy) = proxy {
        proxy.shutdown().await;
    }
    if let Some(containerd) = containerd {
        containerd.stop().await;
    }
    let _ = stop_server.send(());
    match tokio::time::timeout(Duration::from_secs(10), server_task).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(error))) => Err(error).context("the API server failed"),
        Ok(Err(error)) => Err(error).context("the API server task panicked"),
        Err(_) => {
            warn!("the API server did not stop within 10 s");
            Ok(())
        }
    }
}

async fn start_control_plane(
    tasks: &mut tokio::task::JoinSet<()>,
    server_url: &str,
    authority: &Authority,
) -> anyhow::Result<()> {
    let controllers = kubeconfig::client_for(
        server_url, authority, "controller-manager", "system:kube-controller-manager", &[],
    )
    .await?;
    let scheduler = kubeconfig::client_for(
        server_url, authority, "scheduler", "system:kube-scheduler", &[],
    )
    .await?;

    let client = controllers.clone();
    tasks.spawn(supervise("workload and endpoints controllers", move || {
        capstan_controllers::run_workload_controllers(client.clone())
    }));
    let client = controllers.clone();
    tasks.spawn(supervise("garbage collector", move || {
        capstan_controllers::gc::run_garbage_collector(client.clone())
    }));
    let client = controllers;
    tasks.spawn(supervise("namespace controller", move || {
        capstan_controllers::namespace::run_namespace_controller(client.clone())
    }));
    tasks.spawn(supervise("scheduler", move || {
        let config = capstan_scheduler::SchedulerConfig::default();
        capstan_scheduler::run(scheduler.clone(), config)
    }));
    Ok(())
}

async fn start_agent(
    tasks: &mut tokio::task::JoinSet<()>,
    args: &UpArgs,
    node_runtimes: NodeRuntimes,
    server_url: &str,
    authority: &Authority,
    node_name: &str,
    node_ip: IpAddr,
    cluster_dns: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let user = format!("system:node:{node_name}");
    let client =
        kubeconfig::client_for(server_url, authority, "kubelet", &user, &["system:nodes"]).await?;
    let serving = authority.server_file(
        "kubelet-serving",
        &[node_name.to_string(), "localhost".to_string()],
        &[node_ip, IpAddr::from([127, 0, 0, 1])],
    )?;

    let NodeRuntimes { runtimes, default_handler, extra_pod_cidrs, .. } = node_runtimes;

    let mut labels = BTreeMap::new();
    labels.insert("node-role.kubernetes.io/control-plane".to_string(), String::new());
    let base = Duration::from_millis(args.restart_backoff_ms);
    let config = capstan_agent::AgentConfig {
        node_name: node_name.to_string(),
        node_ip,
        data_dir: args.data_dir.join("agent"),
        pod_cidr: Some(args.pod_cidr.clone()),
        extra_pod_cidrs,
        kubelet_listen: SocketAddr::new(node_ip, args.kubelet_port),
        serving,
        ca_pem: authority.ca_cert_pem().to_string(),
        labels,
        restart_backoff: (base, Duration::from_secs(300).max(base)),
        heartbeat: Duration::from_secs(10),
        cluster_dns: capstan_agent::pod::dns::ClusterDns {
            servers: cluster_dns.map(|address| address.ip()).into_iter().collect(),
            domain: args.proxy.cluster_domain.clone(),
        },
    };
    tasks.spawn(supervise("node agent", move || {
        let (client, runtimes, config) = (client.clone(), runtimes.clone(), config.clone());
        let handler = default_handler.clone();
        async move { capstan_agent::run(client, runtimes, &handler, config).await }
    }));
    Ok(())
}

/// Returns the DNS server's address: `--cluster-dns` or the bridge gateway, on `--dns-port`.
fn cluster_dns_address(args: &UpArgs) -> Option<SocketAddr> {
    let gateway = capstan_proxy::nft::gateway_of(&args.pod_cidr).map(IpAddr::V4);
    let ip = args.proxy.cluster_dns.or(gateway)?;
    Some(SocketAddr::new(ip, args.proxy.dns_port))
}

/// Starts the Service proxy and the DNS server. A failure is logged, not returned: the
/// rest of the cluster works without Services, as on a host without root.
async fn start_proxy(
    args: &UpArgs,
    server_url: &str,
    authority: &Authority,
    node_name: &str,
    cluster_dns: Option<SocketAddr>,
) -> Option<capstan_proxy::ProxyHandle> {
    let client = match kubeconfig::client_for(server_url, authority, "kube-proxy", "system:kube-proxy", &[]).await {
        Ok(client) => client,
        Err(error) => {
            warn!(%error, "failed to create the proxy's client; Services are unreachable");
            return None;
        }
    };
    let suffix = &args.proxy.proxy_suffix;
    let (table, address_label) = if suffix.is_empty() {
        ("capstan".to_string(), "lo:cst".to_string())
    } else {
        // interface labels are at most 15 characters
        (format!("capstan_{suffix}"), format!("lo:cst{suffix}").chars().take(15).collect())
    };
    let dns = cluster_dns.map(|listen| {
        let upstreams = if args.proxy.dns_upstreams.is_empty() {
            let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            capstan_proxy::dns::upstreams_from_resolv_conf(&host, listen)
        } else {
            args.proxy.dns_upstreams.clone()
        };
        capstan_proxy::dns::DnsConfig { listen, domain: args.proxy.cluster_domain.clone(), upstreams }
    });
    let config = capstan_proxy::ProxyConfig {
        node_name: node_name.to_string(),
        mode: args.proxy.proxy_mode,
        table,
        address_label,
        // Without br_netfilter, replies between pods on the bridge skip conntrack, so
        // pod-to-Service traffic must be masqueraded to come back through the host.
        masquerade_pod_cidr: (!capstan_proxy::nft::bridge_netfilter_enabled()).then(|| args.pod_cidr.clone()),
        dns,
    };
    match capstan_proxy::start(client, config).await {
        Ok(handle) => Some(handle),
        Err(error) => {
            warn!(%error, "failed to start the Service proxy; Services are unreachable");
            None
        }
    }
}

/// Runs a component, restarting it with a growing delay when it fails, until aborted.
async fn supervise<F, Fut, E>(name: &'static str, mut start: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    let mut delay = Duration::from_millis(500);
    loop {
        match start().await {
            Ok(()) => warn!(component = name, "component stopped; restarting"),
            Err(error) => warn!(component = name, %error, "component failed; restarting"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Creates the example Deployment. Its image is `host`, which only the process runtime
/// runs, so `runtime_class` names that runtime when it is not the node's default.
async fn create_example(client: kube::Client, runtime_class: Option<String>) -> anyhow::Result<()> {
    let mut deployment: Deployment =
        serde_norway::from_str(EXAMPLE).context("the bundled example manifest is invalid")?;
    if let Some(spec) = deployment.spec.as_mut().and_then(|spec| spec.template.spec.as_mut()) {
        spec.runtime_class_name = runtime_class;
    }
    let api: kube::Api<Deployment> = kube::Api::namespaced(client, "default");
    match api.create(&PostParams::default(), &deployment).await {
        Ok(_) => info!("created the example Deployment default/web"),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            info!("the example Deployment default/web already exists");
        }
        Err(error) => return Err(error).context("failed to create the example Deployment"),
    }
    Ok(())
}

/// Waits up to a minute for the example's pods to be ready and prints how to reach each.
async fn print_example_addresses(client: kube::Client) {
    use k8s_openapi::api::core::v1::Pod;

    let api: kube::Api<Pod> = kube::Api::namespaced(client, "default");
    let params = kube::api::ListParams::default().labels("app=web");
    for _ in 0..120 {
        if let Ok(pods) = api.list(&params).await {
            let addresses: Vec<String> = pods
                .items
                .iter()
                .filter(|pod| is_ready(pod))
                .filter_map(|pod| pod.status.as_ref()?.pod_ip.clone())
                .collect();
            if !addresses.is_empty() && addresses.len() == pods.items.len() {
                println!("The example web service is ready:");
                for address in addresses {
                    println!("  curl http://{address}:8080/");
                }
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    warn!("the example web pods were not ready within a minute; see `kubectl get pods`");
}

fn is_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|status| status.conditions.as_ref());
    conditions.is_some_and(|all| all.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn print_welcome(kubeconfig_path: &std::path::Path, no_example: bool) {
    let path = kubeconfig_path.display();
    println!("capstan is up. Use it with kubectl:");
    println!();
    println!("  export KUBECONFIG={path}");
    println!("  kubectl get nodes");
    if !no_example {
        println!("  kubectl get pods -o wide          # the example web service, 3 replicas");
        println!("  curl http://<pod IP>:8080/        # each replica answers with its pod name");
        println!("The pod addresses follow as soon as the replicas are ready.");
    }
    println!();
    println!("`capstan kubeconfig` prints the kubeconfig path again. Stop with Ctrl-C.");
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            warn!(%error, "cannot listen for SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn display_addr(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}
