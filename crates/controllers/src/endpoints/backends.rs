//! Pods as Service backends: which pods a Service selects, which of them may be listed,
//! their address per family, their readiness, and the ports each one serves.
//!
//! EndpointSlices and legacy Endpoints are both computed from these facts, so the two
//! always agree on which pod serves which port.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Label present (with an empty value) on the slices and Endpoints of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// A Service port resolved against one pod: the port number the pod serves it on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResolvedPort {
    /// The Service port's name (empty for a single unnamed port).
    pub name: String,
    /// The pod's port number.
    pub port: i32,
    pub protocol: String,
    pub app_protocol: Option<String>,
}

/// An IP family, which is also an EndpointSlice `addressType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    IPv4,
    IPv6,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::IPv4 => "IPv4",
            Family::IPv6 => "IPv6",
        }
    }

    fn contains(self, ip: &IpAddr) -> bool {
        match self {
            Family::IPv4 => ip.is_ipv4(),
            Family::IPv6 => ip.is_ipv6(),
        }
    }
}

/// Returns the Service's label selector, or None when the Service has none. An empty
/// selector counts as none, because the reference server stores `{}` as absent too.
pub fn selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    service.spec.as_ref()?.selector.as_ref().filter(|labels| !labels.is_empty())
}

/// Returns whether the Service selects the pod: same namespace, and the pod carries every
/// label of the selector. A Service without a selector selects nothing.
pub fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = selector(service) else { return false };
    if pod.metadata.namespace != service.metadata.namespace {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    selector.iter().all(|(key, value)| labels.and_then(|l| l.get(key)) == Some(value))
}

/// Returns the IP families the Service's endpoints are listed for: `spec.ipFamilies`, or
/// IPv4 when the field is empty.
pub fn families(service: &Service) -> Vec<Family> {
    let listed = service.spec.as_ref().and_then(|spec| spec.ip_families.as_ref());
    let mut families: Vec<Family> = listed
        .into_iter()
        .flatten()
        .filter_map(|family| match family.as_str() {
            "IPv4" => Some(Family::IPv4),
            "IPv6" => Some(Family::IPv6),
            _ => None,
        })
        .collect();
    families.dedup();
    if families.is_empty() {
        families.push(Family::IPv4);
    }
    families
}

/// Returns whether the Service lists pods that are not ready as ready
/// (`spec.publishNotReadyAddresses`).
pub fn publishes_not_ready(service: &Service) -> bool {
    service.spec.as_ref().and_then(|spec| spec.publish_not_ready_addresses).unwrap_or(false)
}

/// Returns whether the Service is headless (`clusterIP: None`).
pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|spec| spec.cluster_ip.as_deref()) == Some("None")
}

/// Returns the labels that a Service passes on to its slices and Endpoints: its own
/// labels, with [`HEADLESS_LABEL`] set exactly when the Service is headless.
pub fn derived_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.to_string(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// Returns whether the pod may be listed at all: it has an address and has not finished.
/// A pod that is being deleted is listed only when `include_terminating` is set.
pub fn is_listable(pod: &Pod, include_terminating: bool) -> bool {
    if pod_ips(pod).is_empty() {
        return false;
    }
    let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref());
    if matches!(phase, Some("Succeeded") | Some("Failed")) {
        return false;
    }
    include_terminating || !is_terminating(pod)
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Returns whether the pod's `Ready` condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|status| status.conditions.as_ref());
    conditions.is_some_and(|all| all.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Returns the pod's addresses from `status.podIPs`, or from `status.podIP` when the list
/// is empty. Unparsable entries are skipped.
pub fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else { return Vec::new() };
    let listed: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|entry| entry.ip.parse().ok())
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    status.pod_ip.iter().filter_map(|ip| ip.parse().ok()).collect()
}

/// Returns the pod's first address of `family`.
pub fn address(pod: &Pod, family: Family) -> Option<IpAddr> {
    pod_ips(pod).into_iter().find(|ip| family.contains(ip))
}

/// Resolves every Service port against the pod. A named `targetPort` resolves to the
/// container port of that name and protocol. A port the pod does not define is left out,
/// so the pod is listed without it, as Kubernetes does.
pub fn resolve_ports(service: &Service, pod: &Pod) -> Vec<ResolvedPort> {
    let ports = service.spec.as_ref().and_then(|spec| spec.ports.as_ref());
    ports
        .into_iter()
        .flatten()
        .filter_map(|service_port| {
            let port = target_port(pod, service_port)?;
            Some(ResolvedPort {
                name: service_port.name.clone().unwrap_or_default(),
                port,
                protocol: protocol(service_port).to_string(),
                app_protocol: service_port.app_protocol.clone(),
            })
        })
        .collect()
}

fn protocol(port: &ServicePort) -> &str {
    port.protocol.as_deref().unwrap_or("TCP")
}

/// Finds the pod port that a Service port targets. An absent or zero `targetPort` means
/// the Service port's own number.
fn target_port(pod: &Pod, service_port: &ServicePort) -> Option<i32> {
    let name = match &service_port.target_port {
        None | Some(IntOrString::Int(0)) => return Some(service_port.port),
        Some(IntOrString::Int(number)) => return Some(*number),
        Some(IntOrString::String(name)) => name,
    };
    let spec = pod.spec.as_ref()?;
    // Regular containers and restartable init containers (sidecars) may serve ports.
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|container| container.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|container| container.ports.iter().flatten())
        .find(|port| port.name.as_deref() == Some(name.as_str()) && port.protocol.as_deref().unwrap_or("TCP") == protocol(service_port))
        .map(|port| port.container_port)
}

/// Returns the DNS hostname a pod has under the Service: its `spec.hostname` when its
/// `spec.subdomain` names the Service.
pub fn hostname(service: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same_namespace = pod.metadata.namespace == service.metadata.namespace;
    (same_namespace && spec.subdomain.as_deref() == service.metadata.name.as_deref()).then(|| hostname.to_string())
}

/// Returns a reference to the pod, as endpoints list their `targetRef`.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".to_string()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// Returns the node the pod runs on, if it is scheduled.
pub fn node_name(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone().filter(|name| !name.is_empty())
}
