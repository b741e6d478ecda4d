//! What the scheduler needs to know about one pod, extracted once per attempt.
//!
//! Requests follow Kubernetes: for each resource the pod needs
//! `max(sum(containers) + sum(sidecars), max(init container at its step)) + overhead`,
//! where a sidecar is an init container with `restartPolicy: Always` that keeps running
//! beside the later init containers and the app containers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, NodeSelector, Pod, ResourceRequirements, Toleration,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A pod spec value the scheduler cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodSpecError {
    #[error("invalid {resource} quantity {value:?} in container {container}")]
    InvalidQuantity { container: String, resource: String, value: String },
    #[error("pod has no spec")]
    MissingSpec,
}

/// CPU, memory and pod slots, in the units the filters compare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub pods: i64,
}

impl Resources {
    pub fn add(&mut self, other: &Resources) {
        self.cpu_millis += other.cpu_millis;
        self.memory_bytes += other.memory_bytes;
        self.pods += other.pods;
    }

    pub fn subtract(&mut self, other: &Resources) {
        self.cpu_millis -= other.cpu_millis;
        self.memory_bytes -= other.memory_bytes;
        self.pods -= other.pods;
    }

    fn max(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
            pods: self.pods.max(other.pods),
        }
    }
}

/// A host port a pod claims: `hostIP` (empty means every address), protocol and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Whether two claims collide: same protocol and port, and either address is a
    /// wildcard or both are equal.
    pub fn conflicts_with(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        self.port == other.port
            && self.protocol == other.protocol
            && (wildcard(&self.ip) || wildcard(&other.ip) || self.ip == other.ip)
    }
}

/// The scheduling-relevant view of a pending pod, with its RuntimeClass already merged in.
#[derive(Debug, Clone, Default)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Requests including one pod slot.
    pub requests: Resources,
    /// `spec.nodeSelector` plus the RuntimeClass's `scheduling.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    pub required_affinity: Option<NodeSelector>,
    /// `spec.tolerations` plus the RuntimeClass's tolerations.
    pub tolerations: Vec<Toleration>,
    pub host_ports: Vec<HostPort>,
    /// The uid of the controlling owner (or first owner), used to spread replicas.
    pub owner_uid: Option<String>,
}

impl PodInfo {
    /// Extracts the pod's scheduling inputs, merging `runtime_class` when the pod names one.
    pub fn from_pod(pod: &Pod, runtime_class: Option<&RuntimeClass>) -> Result<Self, PodSpecError> {
        let spec = pod.spec.as_ref().ok_or(PodSpecError::MissingSpec)?;
        let metadata = &pod.metadata;
        let mut node_selector = spec.node_selector.clone().unwrap_or_default();
        let mut tolerations = spec.tolerations.clone().unwrap_or_default();
        if let Some(scheduling) = runtime_class.and_then(|class| class.scheduling.as_ref()) {
            for (key, value) in scheduling.node_selector.iter().flatten() {
                node_selector.insert(key.clone(), value.clone());
            }
            tolerations.extend(scheduling.tolerations.iter().flatten().cloned());
        }
        let owner_uid = metadata.owner_references.as_ref().and_then(|owners| {
            owners
                .iter()
                .find(|owner| owner.controller == Some(true))
                .or_else(|| owners.first())
                .map(|owner| owner.uid.clone())
        });
        Ok(PodInfo {
            namespace: metadata.namespace.clone().unwrap_or_default(),
            name: metadata.name.clone().unwrap_or_default(),
            uid: metadata.uid.clone().unwrap_or_default(),
            requests: pod_requests(pod)?,
            node_selector,
            required_affinity: spec
                .affinity
                .as_ref()
                .and_then(|affinity| affinity.node_affinity.as_ref())
                .and_then(|node| node.required_during_scheduling_ignored_during_execution.clone()),
            tolerations,
            host_ports: host_ports(pod),
            owner_uid,
        })
    }
}

/// Computes the resources a pod reserves on its node, including one pod slot.
pub fn pod_requests(pod: &Pod) -> Result<Resources, PodSpecError> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(Resources { pods: 1, ..Resources::default() });
    };

    // Sum the app containers.
    let mut containers = Resources::default();
    for container in &spec.containers {
        containers.add(&container_requests(container)?);
    }

    // Walk the init containers in order: each regular one runs beside the sidecars
    // started before it, and every sidecar stays for the pod's life.
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for container in spec.init_containers.iter().flatten() {
        let requests = container_requests(container)?;
        let mut step = sidecars;
        step.add(&requests);
        init_peak = init_peak.max(&step);
        if container.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&requests);
        }
    }
    containers.add(&sidecars);
    let mut total = containers.max(&init_peak);

    // Add the runtime's overhead.
    if let Some(overhead) = spec.overhead.as_ref() {
        total.add(&parse_resource_map("pod overhead", overhead)?);
    }
    total.pods = 1;
    Ok(total)
}

fn container_requests(container: &Container) -> Result<Resources, PodSpecError> {
    let Some(ResourceRequirements { requests, limits, .. }) = container.resources.as_ref() else {
        return Ok(Resources::default());
    };

    // Kubernetes defaults a missing request to the limit.
    let mut merged = limits.clone().unwrap_or_default();
    merged.extend(requests.clone().unwrap_or_default());
    parse_resource_map(&container.name, &merged)
}

fn parse_resource_map(
    container: &str,
    values: &BTreeMap<String, Quantity>,
) -> Result<Resources, PodSpecError> {
    let invalid = |resource: &str, value: &str| PodSpecError::InvalidQuantity {
        container: container.to_string(),
        resource: resource.to_string(),
        value: value.to_string(),
    };
    let mut resources = Resources::default();
    if let Some(Quantity(cpu)) = values.get("cpu") {
        resources.cpu_millis =
            capstan_api::quantity::parse_millis(cpu).map_err(|_| invalid("cpu", cpu))?;
    }
    if let Some(Quantity(memory)) = values.get("memory") {
        resources.memory_bytes =
            capstan_api::quantity::parse_units(memory).map_err(|_| invalid("memory", memory))?;
    }
    Ok(resources)
}

fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else { return Vec::new() };
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    containers
        .flat_map(|container| container.ports.iter().flatten())
        .filter_map(|port| {
            let host_port = port.host_port.filter(|p| *p > 0)?;
            Some(HostPort {
                ip: port.host_ip.clone().unwrap_or_default(),
                protocol: port.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                port: host_port,
            })
        })
        .collect()
}

/// Whether the pod has finished and no longer holds resources on its node.
pub fn is_terminal(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref());
    matches!(phase, Some("Succeeded") | Some("Failed"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    pub(crate) fn container(name: &str, cpu: &str, memory: &str) -> Container {
        let mut requests = BTreeMap::new();
        if !cpu.is_empty() {
            requests.insert("cpu".to_string(), Quantity(cpu.to_string()));
        }
        if !memory.is_empty() {
            requests.insert("memory".to_string(), Quantity(memory.to_string()));
        }
        Container {
            name: name.to_string(),
            resources: Some(ResourceRequirements { requests: Some(requests), ..Default::default() }),
            ..Container::default()
        }
    }

    fn pod_with(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                init_containers: Some(init),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn requests_sum_app_containers() {
        let pod = pod_with(vec![container("a", "250m", "64Mi"), container("b", "1", "")], vec![]);
        let requests = pod_requests(&pod).unwrap();
        assert_eq!(requests.cpu_millis, 1250);
        assert_eq!(requests.memory_bytes, 64 << 20);
        assert_eq!(requests.pods, 1);
    }

    #[test]
    fn requests_take_larger_init_container() {
        let pod = pod_with(vec![container("app", "100m", "10Mi")], vec![container("init", "2", "1Mi")]);
        let requests = pod_requests(&pod).unwrap();
        assert_eq!(requests.cpu_millis, 2000);
        assert_eq!(requests.memory_bytes, 10 << 20);
    }

    #[test]
    fn requests_count_sidecars_beside_app() {
        let mut sidecar = container("proxy", "300m", "");
        sidecar.restart_policy = Some("Always".to_string());
        let pod = pod_with(
            vec![container("app", "100m", "")],
            vec![sidecar, container("migrate", "500m", "")],
        );
        // The regular init container runs beside the sidecar: 300m + 500m = 800m, which
        // exceeds app + sidecar = 400m.
        assert_eq!(pod_requests(&pod).unwrap().cpu_millis, 800);
    }

    #[test]
    fn requests_default_to_limits() {
        let mut app = Container { name: "app".into(), ..Container::default() };
        let limits = BTreeMap::from([("cpu".to_string(), Quantity("500m".to_string()))]);
        app.resources = Some(ResourceRequirements { limits: Some(limits), ..Default::default() });
        assert_eq!(pod_requests(&pod_with(vec![app], vec![])).unwrap().cpu_millis, 500);
    }

    #[test]
    fn invalid_quantity_names_container() {
        let pod = pod_with(vec![container("app", "lots", "")], vec![]);
        let error = pod_requests(&pod).unwrap_err();
        assert_eq!(error.to_string(), "invalid cpu quantity \"lots\" in container app");
    }

    #[test]
    fn host_ports_conflict_on_wildcard() {
        let any = HostPort { ip: String::new(), protocol: "TCP".into(), port: 80 };
        let local = HostPort { ip: "127.0.0.1".into(), protocol: "TCP".into(), port: 80 };
        let other = HostPort { ip: "10.0.0.1".into(), protocol: "TCP".into(), port: 80 };
        let udp = HostPort { ip: String::new(), protocol: "UDP".into(), port: 80 };
        assert!(any.conflicts_with(&local));
        assert!(!local.conflicts_with(&other));
        assert!(!any.conflicts_with(&udp));
    }
}
