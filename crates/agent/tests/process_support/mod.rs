//! Shared fixture for the process runtime tests: a runtime on a temporary state directory,
//! with its own bridge, pod CIDR and cgroup parent, all removed on drop even when the test
//! fails.

#![allow(dead_code)] // each test file uses a different part of the fixture

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use capstan_agent::runtime::process::{PodNetworkConfig, ProcessRuntime, ProcessRuntimeConfig};
use capstan_agent::runtime::{ContainerConfig, ContainerState, Runtime, SandboxConfig};

const CGROUP_CONTROLLERS: [&str; 4] = ["memory", "cpu", "cpuacct", "pids"];

pub struct Fixture {
    pub runtime: ProcessRuntime,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    pub bridge: String,
    pub cgroup_parent: String,
    pod_cidr: String,
    network: bool,
}

/// Returns `None` (and prints why) when the tests cannot run: they need root.
pub fn fixture(subnet: u8, network: bool) -> Option<Fixture> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the process runtime tests need root for namespaces and cgroups");
        return None;
    }
    let suffix = random_hex(6);
    let state_dir = std::env::temp_dir().join(format!("cst-rt-{suffix}"));
    let config = ProcessRuntimeConfig {
        state_dir: state_dir.join("state"),
        shim: vec![env!("CARGO_BIN_EXE_capstan-shim").to_string()],
        network: network.then(|| PodNetworkConfig {
            bridge: format!("cstb{suffix}"),
            pod_cidr: format!("10.250.{subnet}.0/24"),
        }),
        cgroup_parent: format!("cst-test-{suffix}"),
    };
    let runtime = ProcessRuntime::new(config.clone()).expect("runtime starts");
    Some(Fixture {
        runtime,
        log_dir: state_dir.join("logs"),
        state_dir,
        bridge: format!("cstb{suffix}"),
        cgroup_parent: config.cgroup_parent,
        pod_cidr: format!("10.250.{subnet}.0/24"),
        network,
    })
}

impl Fixture {
    /// Creates a second runtime on the same state, as after an agent restart.
    pub fn restarted_runtime(&self) -> ProcessRuntime {
        ProcessRuntime::new(ProcessRuntimeConfig {
            state_dir: self.state_dir.join("state"),
            shim: vec![env!("CARGO_BIN_EXE_capstan-shim").to_string()],
            network: self.network.then(|| PodNetworkConfig {
                bridge: self.bridge.clone(),
                pod_cidr: self.pod_cidr.clone(),
            }),
            cgroup_parent: self.cgroup_parent.clone(),
        })
        .expect("restarted runtime starts")
    }

    pub fn sandbox_config(&self, name: &str) -> SandboxConfig {
        SandboxConfig {
            pod_uid: format!("uid-{name}-{}", random_hex(4)),
            pod_namespace: "default".to_string(),
            pod_name: name.to_string(),
            hostname: name.to_string(),
            host_network: false,
            log_directory: self.log_dir.join(name),
            labels: BTreeMap::from([("app".to_string(), name.to_string())]),
            runtime_handler: String::new(),
            dns: None,
        }
    }

    pub fn container_config(&self, name: &str, command: &[&str]) -> ContainerConfig {
        ContainerConfig {
            name: name.to_string(),
            image: "host".to_string(),
            command: command.iter().map(|word| word.to_string()).collect(),
            log_path: self.log_dir.join(name).join("0.log"),
            ..Default::default()
        }
    }

    /// Creates a sandbox and one started container; returns (sandbox id, container id).
    pub async fn run(&self, name: &str, command: &[&str]) -> (String, String) {
        let sandbox = self
            .runtime
            .run_sandbox(&self.sandbox_config(name))
            .await
            .expect("sandbox runs");
        let id = self
            .runtime
            .create_container(&sandbox.id, &self.container_config(name, command))
            .await
            .expect("container is created");
        self.runtime
            .start_container(&id)
            .await
            .expect("container starts");
        (sandbox.id, id)
    }

    /// Waits until the container has exited and returns its final state.
    pub async fn wait_exited(&self, id: &str, timeout: Duration) -> ContainerState {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.runtime.container_status(id).await.expect("status");
            if matches!(status.state, ContainerState::Exited { .. }) || Instant::now() > deadline {
                return status.state;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn cgroup_dir(&self, controller: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&self.cgroup_parent)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // kill every process left in the test's cgroups, then remove them deepest first
        for controller in CGROUP_CONTROLLERS {
            kill_cgroup_tree(&self.cgroup_dir(controller));
        }
        std::thread::sleep(Duration::from_millis(200));
        for controller in CGROUP_CONTROLLERS {
            remove_cgroup_tree(&self.cgroup_dir(controller));
        }

        // network namespaces, the bridge and its forwarding rule
        let sandboxes = self.state_dir.join("state/sandboxes");
        for entry in std::fs::read_dir(&sandboxes)
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(text) = std::fs::read_to_string(entry.path().join("sandbox.json")) else {
                continue;
            };
            let record: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if let Some(netns) = record["netns"].as_str() {
                let _ = Command::new("ip").args(["netns", "delete", netns]).output();
            }
        }
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            let _ = Command::new("ip")
                .args(["link", "delete", &self.bridge])
                .output();
        }
        let rule = [
            "FORWARD",
            "-i",
            &self.bridge,
            "-o",
            &self.bridge,
            "-j",
            "ACCEPT",
        ];
        while Command::new("iptables")
            .arg("-D")
            .args(rule)
            .output()
            .is_ok_and(|out| out.status.success())
        {}
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

fn kill_cgroup_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            kill_cgroup_tree(&entry.path());
        }
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs
        .lines()
        .filter_map(|line| line.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn remove_cgroup_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            remove_cgroup_tree(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut buffer))
        .expect("urandom");
    buffer
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<String>()[..bytes]
        .to_string()
}

/// Returns the real Python interpreter, because pyenv's `python3` on PATH is a shell script.
pub fn python() -> String {
    let output = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    String::from_utf8(output.stdout)
        .expect("utf-8 path")
        .trim()
        .to_string()
}

/// Reads a log file's lines as (time, stream, tag, content).
pub fn log_lines(path: &Path) -> Vec<(String, String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let mut next = || parts.next().unwrap_or("").to_string();
            (next(), next(), next(), next())
        })
        .collect()
}
