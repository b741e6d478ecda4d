//! Conversions between the agent's runtime types and CRI v1 messages.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;

use crate::runtime::reference;
use crate::runtime::{
    ContainerConfig, ContainerState, ContainerStatus, Mount, Resources, SandboxConfig, SandboxStatus,
};

/// Annotation that keeps the sandbox's log directory, so a restarted agent can rebuild
/// the sandbox configuration that `CreateContainer` wants.
pub const LOG_DIRECTORY_ANNOTATION: &str = "capstan.io/log-directory";
/// CFS period for CPU limits, as kubelet uses.
const CPU_PERIOD_US: i64 = 100_000;

/// The CRI sandbox configuration: metadata, hostname (empty for host network, which
/// shares the node's UTS namespace), log directory, cgroup parent and network mode.
pub fn sandbox_config(config: &SandboxConfig, cgroup_parent: &str) -> cri::PodSandboxConfig {
    let network = if config.host_network { cri::NamespaceMode::Node } else { cri::NamespaceMode::Pod };
    let log_directory = config.log_directory.to_string_lossy().into_owned();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: config.pod_name.clone(),
            uid: config.pod_uid.clone(),
            namespace: config.pod_namespace.clone(),
            attempt: 0,
        }),
        hostname: if config.host_network { String::new() } else { config.hostname.clone() },
        log_directory: log_directory.clone(),
        labels: config.labels.clone().into_iter().collect(),
        annotations: HashMap::from([(LOG_DIRECTORY_ANNOTATION.to_string(), log_directory)]),
        dns_config: config.dns.as_ref().map(|dns| cri::DnsConfig {
            servers: dns.nameservers.clone(),
            searches: dns.searches.clone(),
            options: dns.options.clone(),
        }),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.to_string(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: network as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Rebuilds the parts of a sandbox configuration that `CreateContainer` reads from the
/// sandbox's status (after an agent restart the original is gone).
pub fn sandbox_config_from_status(status: &cri::PodSandboxStatus) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: status.metadata.clone(),
        log_directory: status.annotations.get(LOG_DIRECTORY_ANNOTATION).cloned().unwrap_or_default(),
        labels: status.labels.clone(),
        annotations: status.annotations.clone(),
        ..Default::default()
    }
}

/// Linux resources: CPU shares from the request, CFS quota from the limit, memory limit.
pub fn linux_resources(resources: &Resources) -> cri::LinuxContainerResources {
    let shares = resources.cpu_request_millis.map(|m| (m * 1024 / 1000).max(2)).unwrap_or(2);
    let (cpu_period, cpu_quota) = match resources.cpu_limit_millis {
        // the kernel refuses a quota under 1 ms
        Some(millis) => (CPU_PERIOD_US, (millis * CPU_PERIOD_US / 1000).max(1000)),
        None => (0, 0),
    };
    cri::LinuxContainerResources {
        cpu_period,
        cpu_quota,
        cpu_shares: shares,
        memory_limit_in_bytes: resources.memory_limit_bytes.unwrap_or(0),
        ..Default::default()
    }
}

/// The CRI container configuration. `log_path` is made relative to the sandbox's log
/// directory, as CRI requires.
pub fn container_config(config: &ContainerConfig, log_directory: &Path, image_ref: &str) -> cri::ContainerConfig {
    let log_path = config
        .log_path
        .strip_prefix(log_directory)
        .unwrap_or(&config.log_path)
        .to_string_lossy()
        .into_owned();
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: config.name.clone(), attempt: config.attempt }),
        image: Some(cri::ImageSpec { image: image_ref.to_string(), ..Default::default() }),
        // the agent has already joined command and args, so they all go in `command`
        command: config.command.clone(),
        args: Vec::new(),
        working_dir: config.working_dir.clone().unwrap_or_default(),
        envs: config
            .env
            .iter()
            .map(|(key, value)| cri::KeyValue { key: key.clone(), value: value.clone() })
            .collect(),
        mounts: config.mounts.iter().map(mount).collect(),
        labels: config.labels.clone().into_iter().collect(),
        log_path,
        stdin: config.stdin,
        stdin_once: config.stdin_once,
        tty: config.tty,
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(linux_resources(&config.resources)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mount(mount: &Mount) -> cri::Mount {
    cri::Mount {
        container_path: mount.container_path.to_string_lossy().into_owned(),
        host_path: mount.host_path.to_string_lossy().into_owned(),
        readonly: mount.read_only,
        ..Default::default()
    }
}

/// Returns the container's `image_ref` when it names the container's own image: a digest in
/// another registry (containerd picks any repo digest of the content) is left out.
fn image_id(status: &cri::ContainerStatus) -> String {
    let name = status.image.as_ref().map(|image| image.image.as_str()).unwrap_or_default();
    match status.image_ref.split_once('@') {
        Some((repository, _)) if reference::repository(repository) != reference::repository(name) => String::new(),
        _ => status.image_ref.clone(),
    }
}

pub fn timestamp(nanos: i64) -> Option<jiff::Timestamp> {
    (nanos > 0).then(|| jiff::Timestamp::from_nanosecond(i128::from(nanos)).ok()).flatten()
}

pub fn sandbox_status(status: &cri::PodSandboxStatus) -> SandboxStatus {
    let metadata = status.metadata.clone().unwrap_or_default();
    let ip = status.network.as_ref().map(|n| n.ip.clone()).filter(|ip| !ip.is_empty());
    SandboxStatus {
        id: status.id.clone(),
        pod_uid: metadata.uid,
        pod_namespace: metadata.namespace,
        pod_name: metadata.name,
        ip,
        ready: status.state == cri::PodSandboxState::SandboxReady as i32,
        created_at: timestamp(status.created_at).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
    }
}

/// The agent's container status. `sandbox_id` comes from the caller because CRI's
/// `ContainerStatus` does not carry it.
pub fn container_status(status: &cri::ContainerStatus, sandbox_id: &str) -> ContainerStatus {
    let metadata = status.metadata.clone().unwrap_or_default();
    let state = match cri::ContainerState::try_from(status.state) {
        Ok(cri::ContainerState::ContainerCreated) => ContainerState::Created,
        Ok(cri::ContainerState::ContainerRunning) => ContainerState::Running {
            started_at: timestamp(status.started_at).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        },
        Ok(cri::ContainerState::ContainerExited) => ContainerState::Exited {
            started_at: timestamp(status.started_at),
            finished_at: timestamp(status.finished_at).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            exit_code: status.exit_code,
            reason: exit_reason(&status.reason, status.exit_code),
            message: Some(status.message.clone()).filter(|m| !m.is_empty()),
        },
        _ => ContainerState::Unknown,
    };
    ContainerStatus {
        id: status.id.clone(),
        sandbox_id: sandbox_id.to_string(),
        name: metadata.name,
        image: status.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
        image_id: image_id(status),
        attempt: metadata.attempt,
        state,
        log_path: PathBuf::from(&status.log_path),
        labels: status.labels.clone().into_iter().collect::<BTreeMap<_, _>>(),
    }
}

/// containerd reports `Completed`, `Error` or `OOMKilled`; fill in the first two when a
/// runtime leaves the reason empty.
fn exit_reason(reason: &str, exit_code: i32) -> String {
    match (reason, exit_code) {
        ("", 0) => "Completed".to_string(),
        ("", _) => "Error".to_string(),
        (reason, _) => reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_limits_become_cfs_quota_shares_and_bytes() {
        let resources = Resources {
            cpu_request_millis: Some(250),
            cpu_limit_millis: Some(500),
            memory_limit_bytes: Some(32 << 20),
        };
        let linux = linux_resources(&resources);
        assert_eq!((linux.cpu_period, linux.cpu_quota), (100_000, 50_000));
        assert_eq!(linux.cpu_shares, 256);
        assert_eq!(linux.memory_limit_in_bytes, 33_554_432);
        let none = linux_resources(&Resources::default());
        assert_eq!((none.cpu_quota, none.memory_limit_in_bytes, none.cpu_shares), (0, 0, 2));
    }

    #[test]
    fn host_network_sandboxes_have_no_hostname() {
        let mut config = SandboxConfig {
            pod_name: "web".into(),
            hostname: "web".into(),
            log_directory: "/data/pods/u1/logs".into(),
            ..Default::default()
        };
        let pod = sandbox_config(&config, "/capstan-node");
        assert_eq!(pod.hostname, "web");
        let options = pod.linux.and_then(|l| l.security_context).and_then(|s| s.namespace_options);
        assert_eq!(options.map(|o| o.network), Some(cri::NamespaceMode::Pod as i32));
        config.host_network = true;
        let host = sandbox_config(&config, "/capstan-node");
        assert_eq!(host.hostname, "");
        assert_eq!(host.annotations[LOG_DIRECTORY_ANNOTATION], "/data/pods/u1/logs");
    }

    #[test]
    fn log_paths_are_relative_to_the_sandbox_log_directory() {
        let config = ContainerConfig {
            name: "app".into(),
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            log_path: "/data/pods/u1/logs/app/2.log".into(),
            attempt: 2,
            ..Default::default()
        };
        let cri = container_config(&config, Path::new("/data/pods/u1/logs"), "sha256:abc");
        assert_eq!(cri.log_path, "app/2.log");
        assert_eq!(cri.metadata.map(|m| m.attempt), Some(2));
        assert_eq!(cri.image.map(|i| i.image).as_deref(), Some("sha256:abc"));
    }

    #[test]
    fn exited_containers_keep_the_oom_reason() {
        let status = cri::ContainerStatus {
            id: "c1".into(),
            state: cri::ContainerState::ContainerExited as i32,
            exit_code: 137,
            reason: "OOMKilled".into(),
            finished_at: 1_000_000_000,
            ..Default::default()
        };
        match container_status(&status, "s1").state {
            ContainerState::Exited { exit_code, reason, .. } => {
                assert_eq!((exit_code, reason.as_str()), (137, "OOMKilled"));
            }
            other => panic!("expected an exited container, got {other:?}"),
        }
        assert_eq!(exit_reason("", 1), "Error");
    }
}
