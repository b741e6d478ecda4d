//! A containerd that `capstan up --runtime cri` starts and supervises itself.
//!
//! Everything lives under `<data-dir>/containerd/`: the generated `config.toml`, the root
//! and state directories, the sockets, the CNI configuration directory the agent writes
//! its conflist into, and `containerd.log`. Stopping sends SIGTERM to containerd only:
//! the per-pod shims are separate processes, so pods keep running and the next `up`
//! adopts them, as with the process runtime.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// Where the CNI plugins of Debian's containernetworking-plugins live.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// The sandbox image; `scripts/build-images` builds it as `pause.tar`.
pub const SANDBOX_IMAGE: &str = "registry.local/pause:local";
/// How long containerd may take to open its socket (about 1 s is usual).
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("failed to prepare {path}: {source}")]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start {program} (is containerd installed? see scripts/install-deps): {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid registry {registry:?}: give HOST or HOST:PORT, without a scheme or path")]
    Registry { registry: String },
    #[error("containerd exited with {status} before opening {socket}; see {log}")]
    Exited { status: String, socket: PathBuf, log: PathBuf },
    #[error("containerd did not open {socket} within {seconds}s; see {log}")]
    Timeout { socket: PathBuf, seconds: u64, log: PathBuf },
}

/// The paths of a private containerd under one directory.
#[derive(Clone, Debug)]
pub struct ContainerdPaths {
    pub dir: PathBuf,
}

impl ContainerdPaths {
    pub fn new(data_dir: &Path) -> Self {
        ContainerdPaths { dir: data_dir.join("containerd") }
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni").join("net.d")
    }
    pub fn cni_ipam_dir(&self) -> PathBuf {
        self.dir.join("cni").join("ipam")
    }
    /// Returns the directory of containerd's registry host configuration: one
    /// `<host>/hosts.toml` per registry, for mirrors, CA certificates or plain HTTP.
    pub fn registry_hosts_dir(&self) -> PathBuf {
        self.dir.join("certs.d")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }
    /// The process id of the containerd that `up` started, so a later `up` (or a test's
    /// clean-up) can find it after `up` was killed.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("containerd.pid")
    }
}

/// containerd's configuration. TOML does not expand variables, so every path is absolute.
pub fn config_toml(paths: &ContainerdPaths) -> String {
    let dir = paths.dir.display();
    let conf_dir = paths.cni_conf_dir();
    format!(
        r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
[grpc]
  address = "{dir}/containerd.sock"
[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"
[debug]
  address = "{dir}/debug.sock"
  level = "info"
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{SANDBOX_IMAGE}"
    enable_selinux = false
    # root lacks CAP_SYS_RESOURCE on some hosts; without this every sandbox fails
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{CNI_BIN_DIR}"
      conf_dir = "{conf_dir}"
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "{hosts_dir}"
"#,
        conf_dir = conf_dir.display(),
        hosts_dir = paths.registry_hosts_dir().display(),
    )
}

/// The first line of the hosts files that `--insecure-registry` writes, so that a later
/// start can tell them from the user's own.
const WRITTEN_BY: &str = "# written by capstan up --insecure-registry";

/// Checks a `--insecure-registry` value: `HOST` or `HOST:PORT`, where HOST is a DNS name,
/// an IPv4 address or a bracketed IPv6 address, and PORT is 1 to 65535. Returns the value
/// for clap, or the problem.
pub fn parse_registry(value: &str) -> Result<String, String> {
    let problem = || format!("invalid registry {value:?}: give HOST or HOST:PORT, without a scheme or path");
    let (host, port) = match value.rsplit_once(':') {
        Some((host, port)) if !port.ends_with(']') => (host, Some(port)),
        _ => (value, None),
    };
    if let Some(port) = port
        && !matches!(port.parse::<u16>(), Ok(number) if number > 0)
    {
        return Err(format!("{}: the port must be 1 to 65535", problem()));
    }
    let valid_host = match host.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
        Some(ipv6) => ipv6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
        }
    };
    if valid_host { Ok(value.to_string()) } else { Err(problem()) }
}

/// Removes the hosts files that an earlier `--insecure-registry` wrote for registries
/// that are not in `keep`, so that dropping the flag ends plain HTTP to them. Files
/// without the marker line are the user's and stay.
pub fn remove_stale_hosts(paths: &ContainerdPaths, keep: &[String]) {
    let Ok(entries) = std::fs::read_dir(paths.registry_hosts_dir()) else { return };
    for entry in entries.flatten() {
        let registry = entry.file_name().to_string_lossy().into_owned();
        let file = entry.path().join("hosts.toml");
        let ours = std::fs::read_to_string(&file).is_ok_and(|text| text.starts_with(WRITTEN_BY));
        if ours && !keep.contains(&registry) {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::info!(registry, "plain HTTP to the registry ends: --insecure-registry no longer names it"),
                Err(error) => tracing::warn!(registry, %error, path = %file.display(), "failed to remove a stale registry hosts file"),
            }
        }
    }
}

/// Writes `certs.d/<registry>/hosts.toml` so that containerd pulls from `registry` over
/// plain HTTP, as Docker's `--insecure-registry` does. containerd reads the file at each
/// pull. Registries on loopback addresses need no file: containerd uses HTTP for them.
pub fn write_plain_http_host(paths: &ContainerdPaths, registry: &str) -> Result<PathBuf, ContainerdError> {
    parse_registry(registry).map_err(|_| ContainerdError::Registry { registry: registry.to_string() })?;
    let dir = paths.registry_hosts_dir().join(registry);
    let path = dir.join("hosts.toml");
    let toml = format!(
        "{WRITTEN_BY} {registry}\nserver = \"http://{registry}\"\n\n[host.\"http://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    );
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, toml))
        .map_err(|source| ContainerdError::Files { path: path.clone(), source })?;
    Ok(path)
}

/// The containerd process: a child of this `up`, or one that an earlier `up` started and
/// left running (after a crash or SIGKILL), which is adopted rather than started twice
/// on the same root.
pub struct Containerd {
    child: Option<Child>,
    pid: Option<u32>,
    pub paths: ContainerdPaths,
}

impl Containerd {
    /// Writes the configuration, starts containerd (or adopts the one that an earlier
    /// `up` left running on the same paths) and waits until its socket accepts
    /// connections.
    pub async fn start(data_dir: &Path, insecure_registries: &[String]) -> Result<Containerd, ContainerdError> {
        let paths = ContainerdPaths::new(data_dir);
        let files = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ContainerdError::Files { path, source }
        };
        std::fs::create_dir_all(paths.cni_conf_dir()).map_err(files(&paths.cni_conf_dir()))?;
        std::fs::write(paths.config(), config_toml(&paths)).map_err(files(&paths.config()))?;
        remove_stale_hosts(&paths, insecure_registries);
        for registry in insecure_registries {
            write_plain_http_host(&paths, registry)?;
        }

        // a containerd left running by an earlier `up` keeps its pods; use it
        if let Some(pid) = running_containerd(&paths)
            && tokio::net::UnixStream::connect(paths.socket()).await.is_ok()
        {
            tracing::info!(pid, socket = %paths.socket().display(), "adopted the running containerd");
            return Ok(Containerd { child: None, pid: Some(pid), paths });
        }

        // a socket left by a containerd that was killed would make the wait below succeed early
        let _ = std::fs::remove_file(paths.socket());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(paths.log())
            .map_err(files(&paths.log()))?;
        let log_err = log.try_clone().map_err(files(&paths.log()))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(paths.config())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|source| ContainerdError::Spawn { program: "containerd".into(), source })?;
        let pid = child.id();
        if let Some(pid) = pid {
            std::fs::write(paths.pid_file(), pid.to_string()).map_err(files(&paths.pid_file()))?;
        }
        let mut containerd = Containerd { child: Some(child), pid, paths };
        containerd.wait_ready().await?;
        tracing::info!(
            socket = %containerd.paths.socket().display(),
            pid = pid.unwrap_or_default(),
            "containerd is serving"
        );
        Ok(containerd)
    }

    async fn wait_ready(&mut self) -> Result<(), ContainerdError> {
        let socket = self.paths.socket();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if tokio::net::UnixStream::connect(&socket).await.is_ok() {
                return Ok(());
            }
            let exited = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(ContainerdError::Exited {
                    status: status.to_string(),
                    socket,
                    log: self.paths.log(),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ContainerdError::Timeout {
                    socket,
                    seconds: START_TIMEOUT.as_secs(),
                    log: self.paths.log(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The containerd socket.
    pub fn socket(&self) -> PathBuf {
        self.paths.socket()
    }

    /// Sends SIGTERM and waits up to 10 s, then kills. Containers keep running in
    /// their shims, and the next `up` starts a containerd that reconnects to them.
    pub async fn stop(mut self) {
        let Some(pid) = self.pid else { return };
        let target = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
        let stopped = match self.child.as_mut() {
            Some(child) => tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_ok(),
            None => wait_for_exit(pid, Duration::from_secs(10)).await,
        };
        if stopped {
            tracing::info!(pid, "containerd stopped");
        } else {
            tracing::warn!(pid, "containerd did not stop within 10 s; killing it");
            let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = std::fs::remove_file(self.paths.pid_file());
    }
}

/// Returns the pid in the pid file when that process still runs containerd with this
/// configuration. A recycled pid runs something else and is ignored.
fn running_containerd(paths: &ContainerdPaths) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(paths.pid_file()).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let config = paths.config().to_string_lossy().into_owned();
    let arguments: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
    let runs_config = arguments.iter().any(|argument| *argument == config.as_bytes());
    let is_containerd = arguments.first().is_some_and(|program| program.ends_with(b"containerd"));
    (runs_config && is_containerd).then_some(pid)
}

/// Polls until process `pid` is gone; false when it still runs after `timeout`.
async fn wait_for_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// Imports a docker or OCI archive into containerd's `k8s.io` namespace, where CRI finds
/// it. This runs containerd's own `ctr` client.
pub async fn import_image(socket: &Path, archive: &Path) -> Result<String, ImportError> {
    let output = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["-n", "k8s.io", "images", "import"])
        .arg(archive)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| ImportError::Spawn { source })?;
    if !output.status.success() {
        return Err(ImportError::Failed {
            archive: archive.to_path_buf(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("failed to run ctr (is containerd installed? see scripts/install-deps): {source}")]
    Spawn {
        #[source]
        source: std::io::Error,
    },
    #[error("importing {archive} failed: {message}")]
    Failed { archive: PathBuf, message: String },
}

/// Imports every `*.tar` in `dir`, in name order. Failures are logged and skipped.
pub async fn import_directory(socket: &Path, dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut archives: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "tar"))
        .collect();
    archives.sort();
    let mut imported = 0;
    for archive in archives {
        match import_image(socket, &archive).await {
            Ok(_) => {
                imported += 1;
                tracing::info!(archive = %archive.display(), "imported image archive");
            }
            Err(error) => tracing::warn!(archive = %archive.display(), %error, "image import failed"),
        }
    }
    imported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_uses_absolute_private_paths() {
        let paths = ContainerdPaths::new(Path::new("/srv/capstan"));
        let toml = config_toml(&paths);
        assert!(toml.contains(r#"address = "/srv/capstan/containerd/containerd.sock""#));
        assert!(toml.contains(r#"root = "/srv/capstan/containerd/root""#));
        assert!(toml.contains("restrict_oom_score_adj = true"));
        assert!(toml.contains(r#"sandbox_image = "registry.local/pause:local""#));
        assert!(toml.contains(r#"conf_dir = "/srv/capstan/containerd/cni/net.d""#));
        assert!(toml.contains(r#"bin_dir = "/usr/lib/cni""#));
        assert!(toml.contains(r#"config_path = "/srv/capstan/containerd/certs.d""#));
    }

    #[test]
    fn insecure_registry_gets_a_plain_http_host_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = ContainerdPaths::new(dir.path());
        let path = write_plain_http_host(&paths, "10.0.0.5:5000").expect("valid registry");
        assert_eq!(path, dir.path().join("containerd/certs.d/10.0.0.5:5000/hosts.toml"));
        let toml = std::fs::read_to_string(&path).expect("read hosts.toml");
        assert!(toml.contains(r#"server = "http://10.0.0.5:5000""#), "{toml}");
        assert!(toml.contains(r#"[host."http://10.0.0.5:5000"]"#), "{toml}");
        for bad in ["http://10.0.0.5:5000", "registry/path", "", "../etc", "host:notaport", "host:99999", "host:0", "-bad.host"] {
            assert!(
                matches!(write_plain_http_host(&paths, bad), Err(ContainerdError::Registry { .. })),
                "{bad:?} was accepted"
            );
        }
        for good in ["registry.local", "registry.local:5000", "[::1]:5000", "10.0.0.5"] {
            assert_eq!(parse_registry(good).as_deref(), Ok(good));
        }
    }

    #[test]
    fn stale_insecure_registries_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = ContainerdPaths::new(dir.path());
        write_plain_http_host(&paths, "10.0.0.5:5000").expect("write");
        write_plain_http_host(&paths, "10.0.0.6:5000").expect("write");
        let users = paths.registry_hosts_dir().join("mirror.local");
        std::fs::create_dir_all(&users).expect("user dir");
        std::fs::write(users.join("hosts.toml"), "server = \"https://mirror.local\"\n").expect("user file");

        remove_stale_hosts(&paths, &["10.0.0.6:5000".to_string()]);
        assert!(!paths.registry_hosts_dir().join("10.0.0.5:5000").exists());
        assert!(paths.registry_hosts_dir().join("10.0.0.6:5000/hosts.toml").exists());
        assert!(users.join("hosts.toml").exists());
    }

    #[tokio::test]
    async fn importing_a_missing_archive_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nothing.tar");
        match import_image(&dir.path().join("no.sock"), &missing).await {
            Err(ImportError::Failed { archive, .. }) => assert_eq!(archive, missing),
            Err(ImportError::Spawn { .. }) => eprintln!("skipped: ctr is not installed"),
            Ok(output) => panic!("import of a missing archive succeeded: {output}"),
        }
    }
}
