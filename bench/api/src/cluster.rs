//! A `capstan up` child process in a temporary data directory, and the clean-up of
//! everything it creates on the host: shims, pod network namespaces, the bridge, its
//! iptables rule and the pods' cgroups.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::inprocess::client_from_kubeconfig;
use crate::rss;

/// How long the cluster may take to write its kubeconfig and report its node Ready.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `capstan up` may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The binary to run and the host resources it gets.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub capstan: PathBuf,
    pub node_name: String,
    pub bridge: String,
    pub pod_cidr: String,
}

/// A running `capstan up`; call [`Cluster::shutdown`] to stop it and clean up.
pub struct Cluster {
    pub options: ClusterOptions,
    pub binary: PathBuf,
    pub pid: u32,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
    child: Child,
    forward_rule_existed: bool,
}

impl Cluster {
    /// Starts `capstan up --no-example` on free loopback ports and waits until its node is
    /// Ready.
    pub async fn start(mut options: ClusterOptions) -> anyhow::Result<Cluster> {
        let binary = std::fs::canonicalize(&options.capstan).with_context(|| {
            format!(
                "capstan binary not found at {}; build it with `cargo build --release -p capstan` or pass --capstan",
                options.capstan.display()
            )
        })?;
        options.capstan = binary.clone();
        if Path::new("/sys/class/net").join(&options.bridge).exists() {
            bail!(
                "bridge {} already exists (another run, or a leftover: `ip link delete {}`)",
                options.bridge,
                options.bridge
            );
        }
        let forward_rule_existed = forward_rule_exists(&options.bridge).await;
        let dir = tempfile::Builder::new().prefix("capstan-bench-").tempdir().context("failed to create a temp dir")?;
        let child = spawn_up(&options, dir.path())?;
        let pid = child.id().context("capstan up exited at once")?;
        let kubeconfig = dir.path().join("kubeconfig");
        let mut cluster = Cluster { options, binary, pid, kubeconfig, dir, child, forward_rule_existed };
        if let Err(error) = cluster.wait_ready().await {
            let log = cluster.log_tail(20);
            cluster.shutdown().await;
            return Err(error.context(format!("capstan up did not become ready; end of its log:\n{log}")));
        }
        Ok(cluster)
    }

    /// Path of the file that receives the cluster's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("capstan.log")
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_problem = String::from("no kubeconfig yet");
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("capstan up exited with {status}");
            }
            match self.node_ready().await {
                Ok(true) => return Ok(()),
                Ok(false) => last_problem = format!("node {} is not Ready", self.options.node_name),
                Err(error) => last_problem = format!("{error:#}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("timed out after {}s: {last_problem}", START_TIMEOUT.as_secs())
    }

    async fn node_ready(&self) -> anyhow::Result<bool> {
        if !self.kubeconfig.exists() {
            bail!("no kubeconfig at {}", self.kubeconfig.display());
        }
        let client = client_from_kubeconfig(&self.kubeconfig).await?;
        let node = Api::<Node>::all(client).get_opt(&self.options.node_name).await?;
        let conditions = node.and_then(|node| node.status?.conditions).unwrap_or_default();
        Ok(conditions.iter().any(|condition| condition.type_ == "Ready" && condition.status == "True"))
    }

    /// Returns the last `count` lines of the cluster's log.
    pub fn log_tail(&self, count: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(count)..].join("\n")
    }

    /// Stops `capstan up` (SIGTERM, then SIGKILL) and removes what it left on the host.
    /// Every step runs even when an earlier one fails; failures are logged.
    pub async fn shutdown(mut self) {
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) => tracing::info!(%status, "capstan up stopped"),
            Ok(Err(error)) => tracing::warn!(%error, "failed to wait for capstan up"),
            Err(_) => {
                tracing::warn!(pid = self.pid, "capstan up ignored SIGTERM; killing it");
                let _ = self.child.kill().await;
            }
        }

        // Pods keep running after `up` stops, so stray shims and their pods go too. A shim
        // leads its own session, so its process group contains the pod's processes.
        let leftover = rss::scan_shims(&self.binary, self.dir.path());
        for pid in &leftover.shim_pids {
            tracing::warn!(pid, "killing a shim left after the pods were deleted");
            let _ = killpg(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }

        remove_pod_networks(&self.options.bridge).await;
        if !self.forward_rule_existed && forward_rule_exists(&self.options.bridge).await {
            let rule = forward_rule(&self.options.bridge);
            run_quiet("iptables", &[&["-D"], rule.as_slice()].concat()).await;
        }
        remove_cgroups(&format!("capstan-{}", self.options.node_name));
    }
}

fn spawn_up(options: &ClusterOptions, dir: &Path) -> anyhow::Result<Child> {
    let listen = format!("127.0.0.1:{}", free_port()?);
    let kubelet_port = free_port()?.to_string();
    let log = std::fs::File::create(dir.join("capstan.log")).context("failed to create the log file")?;
    let mut command = Command::new(&options.capstan);
    command
        .args(["up", "--no-example", "--data-dir"])
        .arg(dir)
        .args(["--listen", &listen, "--kubelet-port", &kubelet_port, "--node-ip", "127.0.0.1"])
        .args(["--node-name", &options.node_name, "--pod-cidr", &options.pod_cidr, "--bridge", &options.bridge])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    tracing::info!(?command, "starting capstan up");
    command.spawn().with_context(|| format!("failed to run {}", options.capstan.display()))
}

/// Returns a loopback port that was free a moment ago; another process may take it first.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("failed to find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn forward_rule(bridge: &str) -> [&str; 7] {
    ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
}

async fn forward_rule_exists(bridge: &str) -> bool {
    let args = [&["-C"], forward_rule(bridge).as_slice()].concat();
    Command::new("iptables").args(&args).output().await.is_ok_and(|output| output.status.success())
}

/// Deletes the veth pairs on `bridge` with their namespaces (host end `cst<id>`,
/// namespace `cst-<id>`), then the bridge.
async fn remove_pod_networks(bridge: &str) {
    let ports = Path::new("/sys/class/net").join(bridge).join("brif");
    if let Ok(entries) = std::fs::read_dir(&ports) {
        for entry in entries.flatten() {
            let veth = entry.file_name().to_string_lossy().into_owned();
            tracing::warn!(veth, "removing a pod network left on the bridge");
            if let Some(id) = veth.strip_prefix("cst") {
                run_quiet("ip", &["netns", "delete", &format!("cst-{id}")]).await;
            }
            run_quiet("ip", &["link", "delete", &veth]).await;
        }
    }
    if Path::new("/sys/class/net").join(bridge).exists() {
        run_quiet("ip", &["link", "delete", bridge]).await;
    }
}

async fn run_quiet(program: &str, args: &[&str]) {
    match Command::new(program).args(args).output().await {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            tracing::warn!(program, ?args, stderr = %stderr.trim(), "clean-up command failed");
        }
        Err(error) => tracing::warn!(program, ?args, %error, "failed to run a clean-up command"),
    }
}

/// Removes `<parent>` and its descendants under every hierarchy in `/sys/fs/cgroup`,
/// deepest first, because `rmdir` removes only empty cgroups.
fn remove_cgroups(parent: &str) {
    remove_cgroups_under(Path::new("/sys/fs/cgroup"), parent);
}

fn remove_cgroups_under(cgroup_root: &Path, parent: &str) {
    let Ok(hierarchies) = std::fs::read_dir(cgroup_root) else {
        return;
    };
    for hierarchy in hierarchies.flatten() {
        let root = hierarchy.path().join(parent);
        if !root.is_dir() {
            continue;
        }
        let mut dirs = Vec::new();
        collect_dirs(&root, &mut dirs);
        dirs.sort_by_key(|dir| std::cmp::Reverse(dir.components().count()));
        for dir in dirs {
            if let Err(error) = std::fs::remove_dir(&dir) {
                tracing::warn!(cgroup = %dir.display(), %error, "failed to remove a cgroup");
            }
        }
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_dirs_includes_nested() {
        let root = tempfile::tempdir().expect("temp dir");
        let parent = root.path().join("capstan-n1");
        std::fs::create_dir_all(parent.join("pod-a/c1")).expect("mkdir");
        std::fs::create_dir_all(parent.join("pod-b")).expect("mkdir");
        let mut dirs = Vec::new();
        collect_dirs(&parent, &mut dirs);
        assert_eq!(dirs.len(), 4);
        assert!(dirs.contains(&parent.join("pod-a/c1")));
    }

    #[test]
    fn cgroups_removed_in_every_hierarchy() {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join("memory/capstan-n1/pod-a/c1")).expect("mkdir");
        std::fs::create_dir_all(root.path().join("cpu/capstan-n1")).expect("mkdir");
        std::fs::create_dir_all(root.path().join("cpu/capstan-other/pod")).expect("mkdir");
        remove_cgroups_under(root.path(), "capstan-n1");
        assert!(!root.path().join("memory/capstan-n1").exists());
        assert!(!root.path().join("cpu/capstan-n1").exists());
        assert!(root.path().join("cpu/capstan-other/pod").exists());
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().expect("port");
        assert_ne!(port, 0);
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok());
    }
}
