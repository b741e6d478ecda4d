//! Support for clusters started with `capstan up --runtime cri`: the test images, and
//! the clean-up of containerd, its shims, mounts, cgroups and bridge.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::Cluster;

/// The busybox image that `scripts/build-images` tags, ready without a registry.
pub const BUSYBOX: &str = "docker.io/library/busybox:local";

/// Why CRI tests cannot run on this machine, or `None` when containerd, runc, ctr, the
/// CNI bridge plugin and busybox-static are all installed.
pub fn missing_tools() -> Option<String> {
    let programs = ["containerd", "ctr", "runc"];
    let missing: Vec<&str> = programs.iter().copied().filter(|program| !on_path(program)).collect();
    if !missing.is_empty() {
        return Some(format!("{} not installed (scripts/install-deps installs them)", missing.join(", ")));
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        return Some("the CNI bridge plugin is not in /usr/lib/cni (install containernetworking-plugins)".into());
    }
    if !nix::unistd::Uid::effective().is_root() {
        return Some("containerd needs root".into());
    }
    None
}

pub(crate) fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// The archives that `scripts/build-images` writes, built once per test binary.
fn built_images() -> &'static PathBuf {
    static IMAGES: OnceLock<PathBuf> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("capstan-e2e-images-{}", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-images");
        let output = Command::new(&script).arg(&out).output().expect("run scripts/build-images");
        assert!(
            output.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        out
    })
}

/// Copies the busybox and pause archives into a cluster's `images` directory, which
/// `up` imports at start.
pub fn prepare_images(images_dir: &Path) {
    std::fs::create_dir_all(images_dir).expect("create the images directory");
    for name in ["busybox.tar", "pause.tar"] {
        std::fs::copy(built_images().join(name), images_dir.join(name)).expect("copy an image archive");
    }
}

/// The extra archive whose image no cluster has until a test loads it.
pub fn unlisted_image_archive() -> PathBuf {
    built_images().join("extra").join("busybox-unlisted.tar")
}

/// The socket of the cluster's containerd.
pub fn containerd_socket(data_dir: &Path) -> PathBuf {
    data_dir.join("containerd").join("containerd.sock")
}

/// Runs `ctr -n k8s.io` against the cluster's containerd and returns its stdout.
pub fn ctr(data_dir: &Path, args: &[&str]) -> String {
    let output = Command::new("ctr")
        .arg("--address")
        .arg(containerd_socket(data_dir))
        .args(["-n", "k8s.io"])
        .args(args)
        .output()
        .expect("run ctr");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Deletes the workloads and pods, so that the agent stops and removes every sandbox
/// (and with it the network namespaces) through CRI, and waits up to 30 s for it.
pub fn remove_workloads(cluster: &Cluster) {
    let _ = cluster.try_kubectl(&["delete", "deployments,replicasets,jobs", "--all", "--wait=false"]);
    let _ = cluster.try_kubectl(&["delete", "pods", "--all", "--grace-period=1", "--wait=false"]);
    let data_dir = cluster.data_dir.path();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !ctr(data_dir, &["containers", "list", "-q"]).trim().is_empty() {
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Stops the cluster's containerd and shims and removes what they left: mounts under
/// the data directory, pod cgroups, network namespaces and the bridge.
pub fn clean_up(data_dir: &Path, node_name: &str, bridge: &str) {
    let socket = containerd_socket(data_dir).display().to_string();

    // containerd by its pid file, then the shims that serve its socket
    let pid_file = data_dir.join("containerd").join("containerd.pid");
    if let Some(pid) = std::fs::read_to_string(pid_file).ok().and_then(|text| text.trim().parse::<i32>().ok()) {
        signal(pid, nix::sys::signal::Signal::SIGKILL);
    }
    for pid in processes_with_argument(&socket) {
        signal(pid, nix::sys::signal::Signal::SIGKILL);
    }

    // the containers' processes, through their cgroups
    let parent = format!("capstan-cri-{node_name}");
    for controller in ["pids", "memory", "cpu", "cpuacct", "cpuset", "blkio", "devices", "freezer", "hugetlb", "net_cls", "perf_event", "systemd"] {
        crate::kill_cgroup_tree(&Path::new("/sys/fs/cgroup").join(controller).join(&parent));
    }

    // container root file systems and anything else mounted under the data directory
    for mount in mounts_under(data_dir) {
        let _ = nix::mount::umount2(mount.as_path(), nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = Command::new("ip").args(["link", "delete", bridge]).output();
    crate::remove_forward_rules(&[&["-i", bridge, "-j", "ACCEPT"], &["-o", bridge, "-j", "ACCEPT"]]);
}

fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
}

/// Processes with `argument` among their command-line arguments.
fn processes_with_argument(argument: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| cmdline.split(|byte| *byte == 0).any(|arg| arg == argument.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// Mount points under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|mount| mount.starts_with(dir))
        .collect();
    mounts.sort_by_key(|mount| std::cmp::Reverse(mount.components().count()));
    mounts
}
