//! Cluster benchmarks: API write throughput and latency, pod Create→Running latency on the
//! process runtime, and the memory of `capstan up` and its shims.
//!
//! By default it starts `capstan up --no-example` in a temporary data directory, runs all
//! three benchmarks against it and removes everything it created. `--in-process` runs only
//! the write benchmark against an API server inside this program. Results are recorded in
//! `bench/RESULTS.md`.

mod cluster;
mod inprocess;
mod pods;
mod rss;
mod writes;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use capstan_bench_stats as stats;
use clap::Parser;

use crate::cluster::{Cluster, ClusterOptions};
use crate::inprocess::{InProcessServer, client_from_kubeconfig};
use crate::stats::format_millis;
use crate::writes::{WriteKind, WriteScenario};

#[derive(Parser, Debug)]
#[command(about = "Benchmark capstan's API writes, pod start-up latency and memory use")]
struct Args {
    /// The capstan binary whose `capstan up` is benchmarked.
    #[arg(long, default_value = "target/release/capstan")]
    capstan: PathBuf,
    /// Run only the write benchmark, against an API server in this program (embedded store
    /// in a temporary directory); needs no capstan binary and no root.
    #[arg(long)]
    in_process: bool,
    /// Numbers of concurrent API clients, one write scenario each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// ConfigMap creates per write scenario, shared among its clients.
    #[arg(long, default_value_t = 2000)]
    writes: usize,
    /// Pod creates (for a scheduler that does not exist, so they stay Pending) per write
    /// scenario; 0 skips them.
    #[arg(long, default_value_t = 1000)]
    pod_writes: usize,
    /// Pods in the Create→Running benchmark; 0 skips it.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Concurrent clients that create the pods of the Create→Running benchmark.
    #[arg(long, default_value_t = 10)]
    pod_clients: usize,
    /// Seconds to wait for the pods to run, and again for them to be deleted.
    #[arg(long, default_value_t = 300)]
    pod_timeout: u64,
    /// Seconds the cluster idles after start-up before its idle RSS is read.
    #[arg(long, default_value_t = 5)]
    settle: u64,
    /// Name of the benchmark's node; its pods' cgroups are under `capstan-<name>`.
    #[arg(long, default_value = "cstbench")]
    node_name: String,
    /// Bridge for the pod network; it must not exist yet and is deleted afterwards.
    #[arg(long, default_value = "cstbench0")]
    bridge: String,
    /// Pod address range of the benchmark's node.
    #[arg(long, default_value = "10.201.0.0/24")]
    pod_cidr: String,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,hyper=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if args.in_process { run_in_process(&args).await } else { run_cluster(&args).await }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_in_process(args: &Args) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("capstan-bench-").tempdir().context("failed to create a temp dir")?;
    let server = InProcessServer::start(dir.path()).await?;
    println!("# API writes, in-process API server (embedded store in {})", dir.path().display());
    run_writes(args, &server.kubeconfig, false).await
}

/// Starts the cluster, runs the benchmarks and always shuts the cluster down, also on
/// Ctrl-C.
async fn run_cluster(args: &Args) -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterOptions {
        capstan: args.capstan.clone(),
        node_name: args.node_name.clone(),
        bridge: args.bridge.clone(),
        pod_cidr: args.pod_cidr.clone(),
    })
    .await?;
    println!("# capstan up: pid {}, log {}", cluster.pid, cluster.log_path().display());
    let result = tokio::select! {
        result = run_cluster_benchmarks(args, &cluster) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if result.is_err() {
        eprintln!("end of the capstan up log:\n{}", cluster.log_tail(40));
    }
    cluster.shutdown().await;
    println!("# cluster stopped; bridge, pod networks and cgroups removed");
    result
}

async fn run_cluster_benchmarks(args: &Args, cluster: &Cluster) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let idle = rss::vm_rss_kib(cluster.pid)?;
    println!("\n# RSS of capstan up, idle with no pods: {}", format_kib(idle));

    println!("\n# API writes against capstan up");
    run_writes(args, &cluster.kubeconfig, true).await?;
    if args.pods > 0 {
        run_pod_startup(args, cluster).await?;
    }
    Ok(())
}

async fn run_writes(args: &Args, kubeconfig: &Path, delete_after: bool) -> anyhow::Result<()> {
    let kinds = [(WriteKind::ConfigMap, args.writes), (WriteKind::Pod, args.pod_writes)];
    for (kind, total) in kinds {
        if total == 0 {
            continue;
        }
        for &clients in &args.clients {
            let scenario = WriteScenario { kind, clients: clients.max(1), total, run_id: run_id("w") };
            let summary = writes::run_scenario(kubeconfig, &scenario).await?;
            println!("{:<10} clients {:>3}: {summary}", kind.plural(), scenario.clients);
            if delete_after {
                writes::delete_run(kubeconfig, kind, &scenario.run_id).await?;
            }
        }
    }
    Ok(())
}

async fn run_pod_startup(args: &Args, cluster: &Cluster) -> anyhow::Result<()> {
    let client = client_from_kubeconfig(&cluster.kubeconfig).await?;
    let run_id = run_id("p");
    let mut watch = pods::PodWatch::start(client.clone(), &run_id).await?;
    let timeout = Duration::from_secs(args.pod_timeout);
    println!("\n# Create→Running, {} pods from {} clients", args.pods, args.pod_clients);
    let (figures, names) = pods::start_pods(client.clone(), &mut watch, &run_id, args.pods, args.pod_clients, timeout)
        .await
        .context("the pods did not all start")?;
    println!("create request:     {}", figures.create);
    println!("create→scheduled:   {}", figures.scheduled);
    println!("create→running:     {}", figures.running);

    let server = rss::vm_rss_kib(cluster.pid)?;
    let shims = rss::scan_shims(&cluster.binary, cluster.dir.path());
    println!("\n# RSS with {} pods running", names.len());
    println!("capstan up:          {}", format_kib(server));
    println!("shims ({:>3}):         {}", shims.shims.processes, format_kib(shims.shims.kib));
    println!("pod processes ({:>3}): {}", shims.children.processes, format_kib(shims.children.kib));

    let deleted = pods::delete_pods(client, &mut watch, &run_id, &names, timeout).await?;
    println!("\n# deleting {} pods until the watch shows them gone: {}", names.len(), format_millis(deleted));
    Ok(())
}

/// Returns a name prefix unique to this run, so repeated runs against one cluster do not collide.
fn run_id(kind: &str) -> String {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_millis()).unwrap_or_default();
    format!("bench-{kind}{}", millis % 1_000_000_000)
}

fn format_kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_valid_names() {
        let id = run_id("w");
        assert!(id.starts_with("bench-w"));
        assert!(id.len() <= 63, "a label value holds at most 63 characters");
        assert!(id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }

    #[test]
    fn kib_in_mebibytes() {
        assert_eq!(format_kib(41_236), "40.3 MiB");
    }

    #[test]
    fn help_parses_defaults() {
        let args = Args::try_parse_from(["capstan-bench-api"]).expect("defaults");
        assert_eq!(args.clients, vec![1, 16, 64]);
        assert_eq!(args.capstan, PathBuf::from("target/release/capstan"));
        assert!(!args.in_process);
    }
}
