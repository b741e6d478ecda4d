//! Harness for end-to-end tests: starts a real `capstan up` in a temporary data directory
//! and drives it with the real kubectl.
//!
//! Each [`Cluster`] gets its own API and kubelet ports, node name, pod address range and
//! bridge, so tests in one binary can run in parallel. Dropping a cluster stops the server
//! and kills every pod process it started.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod cri;
pub mod registry;

/// The kubectl client the tests use: the real 1.33 client, matching the version capstan
/// reports, called directly so the dispatcher's version probe does not interfere.
pub const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

static NEXT_CLUSTER: AtomicU32 = AtomicU32::new(0);

/// Options for starting a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Create the bundled example web Deployment.
    pub example: bool,
    /// First CrashLoopBackOff delay, short so restart tests finish quickly.
    pub restart_backoff: Duration,
    /// Start `capstan up --runtime cri`: a private containerd with the test images
    /// from `scripts/build-images`, and `cri` as the default runtime.
    pub cri: bool,
    /// Upstream resolver of the cluster DNS server. Tests never reach the host's real
    /// resolvers: the default is the discard port on loopback, where nothing answers.
    pub dns_upstream: String,
    /// Further arguments for `capstan up`, such as `--proxy-mode userspace`.
    pub extra_args: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            example: false,
            restart_backoff: Duration::from_millis(500),
            cri: false,
            dns_upstream: "127.0.0.1:9".to_string(),
            extra_args: Vec::new(),
        }
    }
}

/// A running one-node cluster.
pub struct Cluster {
    pub data_dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    cache_dir: tempfile::TempDir,
    child: Option<Child>,
    args: Vec<String>,
    pub node_name: String,
    pub bridge: String,
    pub api_port: u16,
    /// Address range of the pods; its first address is the bridge gateway, where the
    /// cluster DNS server listens.
    pub pod_cidr: String,
    /// Suffix of the proxy's nftables table and address label.
    pub proxy_suffix: String,
    /// ClusterIP range (a /24) of this cluster; its first address is the `kubernetes`
    /// Service's.
    pub service_cidr: String,
    log_path: PathBuf,
    /// The CRI pod network's bridge, for clusters started with `cri`.
    pub cri_bridge: Option<String>,
}

/// Path of the `capstan` binary built next to the test executable.
pub fn capstan_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CAPSTAN_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary has a path");
    let debug_dir = exe.parent().and_then(Path::parent).expect("tests run from target/<profile>/deps");
    let binary = debug_dir.join("capstan");
    assert!(
        binary.exists(),
        "{} is missing: build it first with `cargo build --bin capstan` (scripts/test does)",
        binary.display()
    );
    binary
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago and that this process has
/// not handed out before (the kernel may offer a just-released port again).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("ephemeral port address").port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// A number that differs between concurrently running test binaries.
fn binary_slot() -> u32 {
    std::process::id() % 97
}

impl Cluster {
    /// Starts a cluster and waits until its node is Ready.
    pub fn start(options: ClusterOptions) -> Cluster {
        let index = NEXT_CLUSTER.fetch_add(1, Ordering::SeqCst);
        let slot = binary_slot();
        let data_dir = tempfile::tempdir().expect("temporary data directory");
        let cache_dir = tempfile::tempdir().expect("temporary kubectl cache");
        let node_name = format!("e2e-{slot}-{index}");
        let bridge = format!("cst{slot}x{index}");
        let api_port = free_port();
        let kubelet_port = free_port();
        let pod_cidr = format!("10.{}.{}.0/24", 150 + slot, index);
        let proxy_suffix = format!("{slot}x{index}");
        let service_cidr = format!("10.{}.{}.0/24", 150 + slot, 100 + index);
        let mut args = vec![
            "up".to_string(),
            "--data-dir".into(),
            data_dir.path().display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{api_port}"),
            "--kubelet-port".into(),
            kubelet_port.to_string(),
            "--node-name".into(),
            node_name.clone(),
            "--node-ip".into(),
            "127.0.0.1".into(),
            "--pod-cidr".into(),
            pod_cidr.clone(),
            "--service-cidr".into(),
            service_cidr.clone(),
            "--proxy-suffix".into(),
            proxy_suffix.clone(),
            "--dns-upstream".into(),
            options.dns_upstream.clone(),
            "--bridge".into(),
            bridge.clone(),
            "--restart-backoff-ms".into(),
            options.restart_backoff.as_millis().to_string(),
        ];
        if !options.example {
            args.push("--no-example".into());
        }
        let cri_bridge = options.cri.then(|| format!("cst{slot}c{index}"));
        if let Some(cri_bridge) = &cri_bridge {
            cri::prepare_images(&data_dir.path().join("images"));
            args.extend([
                "--runtime".to_string(),
                "cri".into(),
                "--cri-pod-cidr".into(),
                format!("10.{}.{}.0/24", 150 + slot, 128 + index),
                "--cri-bridge".into(),
                cri_bridge.clone(),
            ]);
        }
        args.extend(options.extra_args.iter().cloned());
        let log_path = data_dir.path().join("capstan.log");
        let kubeconfig = data_dir.path().join("kubeconfig");
        let mut cluster = Cluster {
            data_dir,
            kubeconfig,
            cache_dir,
            child: None,
            args,
            node_name,
            bridge,
            api_port,
            pod_cidr,
            proxy_suffix,
            service_cidr,
            log_path,
            cri_bridge,
        };
        cluster.spawn();
        cluster.wait_for_node_ready();
        cluster
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open the server log");
        let child = Command::new(capstan_binary())
            .args(&self.args)
            .env("CAPSTAN_LOG", "info,kube=warn")
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("start capstan up");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.kubeconfig.exists() || self.try_kubectl(&["get", "--raw", "/version"]).is_err() {
            self.assert_running();
            assert!(Instant::now() < deadline, "API server not serving after 30 s\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for_node_ready(&self) {
        let node = self.node_name.clone();
        self.wait_until("node Ready", Duration::from_secs(30), || {
            let Ok(node) = self.get_json(&["get", "node", &node]) else { return false };
            conditions_true(&node, "Ready")
        });
    }

    /// Panics with the server log when the server process has exited.
    pub fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("capstan up exited with {status}\n{}", self.log());
            }
        }
    }

    /// The server's log so far (the tail, to keep failure output readable).
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(80);
        format!("--- capstan log (last lines) ---\n{}", lines[start..].join("\n"))
    }

    /// A kubectl command for this cluster, with its own discovery cache.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(KUBECTL);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache_dir.path())
            .args(args);
        command
    }

    /// Runs kubectl; `Err` carries stderr when it exits non-zero.
    pub fn try_kubectl(&self, args: &[&str]) -> Result<String, String> {
        let output = self.kubectl_command(args).output().expect("run kubectl");
        into_result(output)
    }

    /// Runs kubectl and panics with its output and the server log when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        match self.try_kubectl(args) {
            Ok(stdout) => stdout,
            Err(stderr) => panic!("kubectl {} failed: {stderr}\n{}", args.join(" "), self.log()),
        }
    }

    /// Runs kubectl with `input` on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<String, String> {
        use std::io::Write;
        let mut child = self
            .kubectl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
        into_result(child.wait_with_output().expect("wait for kubectl"))
    }

    /// `kubectl apply -f -` with the given manifest.
    pub fn apply(&self, manifest: &str) -> String {
        match self.kubectl_stdin(&["apply", "-f", "-"], manifest) {
            Ok(stdout) => stdout,
            Err(stderr) => panic!("kubectl apply failed: {stderr}\n{}", self.log()),
        }
    }

    /// Runs kubectl with `-o json` and parses the output.
    pub fn get_json(&self, args: &[&str]) -> Result<Value, String> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-o", "json"]);
        let stdout = self.try_kubectl(&all)?;
        serde_json::from_str(&stdout).map_err(|e| format!("invalid JSON from kubectl: {e}"))
    }

    /// Polls `check` every 200 ms until it holds, panicking after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !check() {
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Pods matching `selector` in the default namespace.
    /// The address `host` of the cluster's ClusterIP range, such as the `kubernetes`
    /// Service's at 1.
    pub fn service_ip(&self, host: u8) -> String {
        let network = self.service_cidr.split('/').next().unwrap_or_default();
        let prefix = network.rsplit_once('.').map_or(network, |(prefix, _)| prefix);
        format!("{prefix}.{host}")
    }

    pub fn pods(&self, selector: &str) -> Vec<Value> {
        self.get_json(&["get", "pods", "-l", selector])
            .map(|list| list["items"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Sends one request to the API server with curl as the administrator and returns the
    /// HTTP status code and the body.
    pub fn request(&self, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
        let pki = self.data_dir.path().join("pki");
        let output = Command::new("curl")
            .args(["-sS", "-X", method, "-H"])
            .arg(format!("Content-Type: {content_type}"))
            .arg("--cacert")
            .arg(pki.join("ca.crt"))
            .arg("--cert")
            .arg(pki.join("admin.crt"))
            .arg("--key")
            .arg(pki.join("admin.key"))
            .args(["--data-binary", "@-", "-w", "\n%{http_code}"])
            .arg(format!("https://127.0.0.1:{}{path}", self.api_port))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().expect("stdin").write_all(body.as_bytes())?;
                child.wait_with_output()
            })
            .expect("run curl");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.wait();
        }
    }

    /// Returns the bridge gateway address, where the cluster DNS server listens on port 53.
    pub fn gateway(&self) -> String {
        let network = self.pod_cidr.split('/').next().unwrap_or_default();
        let mut octets: Vec<&str> = network.split('.').collect();
        octets[3] = "1";
        octets.join(".")
    }

    /// The process id of the running server.
    pub fn server_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server and starts it again with `extra` added to its arguments.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.stop();
        self.args.extend(extra.iter().map(|arg| arg.to_string()));
        self.restart();
    }

    /// Stops the server and starts it again without the consecutive arguments `remove`.
    pub fn restart_without(&mut self, remove: &[&str]) {
        self.stop();
        if let Some(start) = self.args.windows(remove.len()).position(|window| window.iter().eq(remove.iter())) {
            self.args.drain(start..start + remove.len());
        }
        self.restart();
    }

    /// Starts the server again on the same data directory, ports and node.
    pub fn restart(&mut self) {
        self.spawn();
        self.wait_for_node_ready();
    }

    /// Kills every process in the cluster's pod cgroups and removes its network pieces.
    fn clean_up_pods(&self) {
        let parent = format!("capstan-{}", self.node_name);
        for controller in ["pids", "memory", "cpu", "cpuacct", "unified"] {
            let root = Path::new("/sys/fs/cgroup").join(controller).join(&parent);
            kill_cgroup_tree(&root);
        }
        let _ = Command::new("ip").args(["link", "delete", &self.bridge]).output();
        remove_forward_rules(&[&["-i", &self.bridge, "-o", &self.bridge, "-j", "ACCEPT"]]);
        // a killed server cannot remove its proxy rules itself
        let table = format!("capstan_{}", self.proxy_suffix);
        let _ = Command::new("nft").args(["delete", "table", "ip", &table]).output();
        let label: String = format!("lo:cst{}", self.proxy_suffix).chars().take(15).collect();
        let _ = Command::new("ip").args(["-4", "addr", "flush", "dev", "lo", "label", &label]).output();
        remove_namespaces_listed(&self.data_dir.path().join("runtime"));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.cri_bridge.is_some() {
            cri::remove_workloads(self);
        }
        self.kill();
        self.clean_up_pods();
        if let Some(bridge) = &self.cri_bridge {
            cri::clean_up(self.data_dir.path(), &self.node_name, bridge);
        }
    }
}

/// Deletes the FORWARD rules that `capstan up` leaves for a pod bridge.
pub(crate) fn remove_forward_rules(rules: &[&[&str]]) {
    for rule in rules {
        let _ = Command::new("iptables").args(["-D", "FORWARD"]).args(*rule).output();
    }
}

fn into_result(output: Output) -> Result<String, String> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&output.stderr), stdout))
    }
}

/// Kills every process in the cgroup `dir` and its children, then removes them.
pub fn kill_cgroup_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.path().is_dir() {
            kill_cgroup_tree(&entry.path());
        }
    }
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|line| line.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    std::thread::sleep(Duration::from_millis(50));
    let _ = std::fs::remove_dir(dir);
}

/// Removes the network namespaces whose names the runtime's state files mention.
fn remove_namespaces_listed(state_dir: &Path) {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else { return };
    let listed = String::from_utf8_lossy(&output.stdout).into_owned();
    let state = read_tree_text(state_dir);
    for line in listed.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if !name.is_empty() && state.contains(name) {
            let _ = Command::new("ip").args(["netns", "delete", name]).output();
        }
    }
}

fn read_tree_text(dir: &Path) -> String {
    let mut text = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return text };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&read_tree_text(&path));
        } else if let Ok(contents) = std::fs::read_to_string(&path) {
            text.push_str(&contents);
        }
    }
    text
}

/// Whether the object's `status.conditions` has `kind` with status True.
pub fn conditions_true(object: &Value, kind: &str) -> bool {
    object["status"]["conditions"]
        .as_array()
        .map(|conditions| {
            conditions.iter().any(|c| c["type"] == kind && c["status"] == "True")
        })
        .unwrap_or(false)
}

/// Whether a pod is Running with its Ready condition True.
pub fn pod_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running" && conditions_true(pod, "Ready")
}

/// Sends an HTTP GET to `url` with a 2 s timeout and returns the body on a 2xx answer.
pub fn http_get(address: &str, port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let target: std::net::SocketAddr = format!("{address}:{port}").parse().ok()?;
    let mut stream = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status_line = head.lines().next()?;
    status_line.split_whitespace().nth(1)?.starts_with('2').then(|| body.to_string())
}

/// Reads lines from a child's stdout until `predicate` matches one or `timeout` passes.
pub fn read_until(child: &mut Child, timeout: Duration, predicate: impl Fn(&str) -> bool) -> Vec<String> {
    let stdout = child.stdout.take().expect("child stdout is piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match receiver.recv_timeout(left) {
            Ok(line) => {
                let done = predicate(&line);
                lines.push(line);
                if done {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    lines
}
