//! Starts `capstan up --runtime cri` (with its own containerd), creates busybox pods in
//! one `kubectl apply`, and reports how long each took from the apply until kubectl saw
//! it Running, then the resident memory of `capstan up` and containerd with all of them
//! running.
//!
//! Then the floor: the same number of sandboxes and busybox containers started on the
//! same containerd directly over CRI, all at once, with no API server, scheduler or
//! status writes in the way. The agent's CRI client does the calls, so this is what the
//! node's runtime alone costs for the burst.
//!
//! Usage: `capstan-bench-cri [PODS]` (50 by default). The `capstan` binary is taken from
//! `CAPSTAN_BIN`, or from the directory of this program.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_agent::runtime::cri::{CriRuntime, CriRuntimeConfig};
use capstan_agent::runtime::{ContainerConfig, PullPolicy, Runtime, SandboxConfig};

use capstan_e2e::cri::BUSYBOX;
use capstan_e2e::{Cluster, ClusterOptions};

/// How often kubectl lists the pods while they start.
const POLL: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_secs(300);

fn main() {
    let count: usize = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(50);
    if std::env::var_os("CAPSTAN_BIN").is_none()
        && let Some(dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        // SAFETY: set before any other thread starts.
        unsafe { std::env::set_var("CAPSTAN_BIN", dir.join("capstan")) };
    }
    if let Some(reason) = capstan_e2e::cri::missing_tools() {
        eprintln!("error: containerd cannot run here: {reason}");
        std::process::exit(1);
    }

    let cluster = Cluster::start(ClusterOptions { cri: true, ..ClusterOptions::default() });
    let manifest: String = (0..count)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: bench-{i}, labels: {{app: bench}}}}\nspec:\n  containers:\n  - name: app\n    image: {BUSYBOX}\n    command: [sleep, \"3600\"]\n---\n"
            )
        })
        .collect();

    // create all pods at once, then watch for each to run
    let start = Instant::now();
    cluster.kubectl_stdin(&["apply", "-f", "-"], &manifest).expect("kubectl apply");
    let mut running: BTreeMap<String, Duration> = BTreeMap::new();
    while running.len() < count {
        assert!(start.elapsed() < TIMEOUT, "only {} of {count} pods running after {TIMEOUT:?}\n{}", running.len(), cluster.log());
        for pod in cluster.pods("app=bench") {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
            if pod["status"]["phase"] == "Running" {
                running.entry(name).or_insert_with(|| start.elapsed());
            }
        }
        std::thread::sleep(POLL);
    }
    let mut latencies: Vec<Duration> = running.values().copied().collect();
    latencies.sort();

    // memory with every pod running
    let up_rss = cluster.server_pid().and_then(rss_kib).unwrap_or(0);
    let pid_file = cluster.data_dir.path().join("containerd/containerd.pid");
    let containerd_rss = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .and_then(rss_kib)
        .unwrap_or(0);

    // the floor, once the pods are gone
    cluster.kubectl(&["delete", "pods", "-l", "app=bench", "--wait=true"]);
    let socket = capstan_e2e::cri::containerd_socket(cluster.data_dir.path());
    let floor_dir = cluster.data_dir.path().join("floor");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let floor = runtime.block_on(floor_latencies(&socket, &floor_dir, count));

    println!("| run | pods | p50 create→Running | p99 create→Running | last Running | capstan up RSS | containerd RSS |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| capstan | {count} | {} | {} | {} | {} MiB | {} MiB |",
        format_ms(percentile(&latencies, 50)),
        format_ms(percentile(&latencies, 99)),
        format_ms(*latencies.last().unwrap_or(&Duration::ZERO)),
        up_rss / 1024,
        containerd_rss / 1024
    );
    println!(
        "| containerd alone | {count} | {} | {} | {} | | |",
        format_ms(percentile(&floor, 50)),
        format_ms(percentile(&floor, 99)),
        format_ms(*floor.last().unwrap_or(&Duration::ZERO)),
    );
}

/// Starts `count` sandboxes with one busybox container each, all at once, straight over
/// CRI, and returns the sorted times from the start until each container was started.
/// Everything is removed again afterwards.
async fn floor_latencies(socket: &Path, dir: &Path, count: usize) -> Vec<Duration> {
    let config = CriRuntimeConfig { socket: socket.to_path_buf(), cgroup_parent: "/capstan-bench-floor".into(), cni: None };
    let runtime = Arc::new(CriRuntime::connect(config).await.expect("connect to containerd"));
    let start = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let runtime = runtime.clone();
            let log_directory = dir.join(format!("pod-{i}"));
            tokio::spawn(async move {
                let sandbox = SandboxConfig {
                    pod_uid: format!("floor-uid-{i}"),
                    pod_namespace: "bench-floor".into(),
                    pod_name: format!("floor-{i}"),
                    hostname: format!("floor-{i}"),
                    log_directory: log_directory.clone(),
                    ..SandboxConfig::default()
                };
                let sandbox = runtime.run_sandbox(&sandbox).await.expect("run sandbox");
                let container = ContainerConfig {
                    name: "app".into(),
                    image: BUSYBOX.into(),
                    image_pull_policy: PullPolicy::IfNotPresent,
                    command: vec!["sleep".into(), "3600".into()],
                    log_path: log_directory.join("app/0.log"),
                    ..ContainerConfig::default()
                };
                let id = runtime.create_container(&sandbox.id, &container).await.expect("create container");
                runtime.start_container(&id).await.expect("start container");
                (start.elapsed(), sandbox.id)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut sandboxes = Vec::new();
    for task in tasks {
        let (latency, sandbox) = task.await.expect("floor task");
        latencies.push(latency);
        sandboxes.push(sandbox);
    }
    for sandbox in sandboxes {
        let _ = runtime.stop_sandbox(&sandbox, Duration::ZERO).await;
        let _ = runtime.remove_sandbox(&sandbox).await;
    }
    latencies.sort();
    latencies
}

/// Returns the nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn format_ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

/// Resident memory of a process in KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
