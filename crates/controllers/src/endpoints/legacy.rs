//! The legacy `v1` Endpoints object of one Service: ready pods under `addresses`, the
//! others under `notReadyAddresses`, with one subset per set of ports that pods serve.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service};

use super::backends::{self, ResolvedPort};

/// Label that names the controller managing an Endpoints object.
pub const MANAGED_BY_LABEL: &str = "endpoints.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`] on the Endpoints this controller writes. Only
/// Endpoints with this label are deleted when their Service goes away.
pub const CONTROLLER_NAME: &str = "endpoint-controller.capstan.io";
/// Annotation set when addresses were left out because of [`MAX_ADDRESSES`].
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
/// Most addresses one Endpoints object lists, as in Kubernetes; EndpointSlices have
/// no such limit.
pub const MAX_ADDRESSES: usize = 1000;

/// The content an Endpoints object should have.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DesiredEndpoints {
    pub subsets: Vec<EndpointSubset>,
    /// Whether addresses were left out to stay within [`MAX_ADDRESSES`].
    pub truncated: bool,
}

/// Addresses of one subset, keyed by IP and pod name for a stable order.
#[derive(Default)]
struct Group {
    ready: BTreeMap<(IpAddr, String), EndpointAddress>,
    not_ready: BTreeMap<(IpAddr, String), EndpointAddress>,
}

/// Computes the subsets of a Service with a selector. Pods are listed by their address of
/// the Service's first IP family. A pod that resolves none of the Service's ports is left
/// out, unless the Service has no ports at all (headless Services may have none).
pub fn desired(service: &Service, pods: &[Arc<Pod>]) -> DesiredEndpoints {
    let family = backends::families(service)[0];
    let publish_not_ready = backends::publishes_not_ready(service);
    let service_has_ports = service.spec.as_ref().and_then(|s| s.ports.as_ref()).is_some_and(|p| !p.is_empty());
    let mut groups: BTreeMap<Vec<ResolvedPort>, Group> = BTreeMap::new();
    for pod in pods.iter().filter(|pod| backends::selects(service, pod)) {
        // Terminating pods are listed only for Services that publish every pod.
        if !backends::is_listable(pod, publish_not_ready) {
            continue;
        }
        let Some(ip) = backends::address(pod, family) else { continue };
        let mut ports = backends::resolve_ports(service, pod);
        if ports.is_empty() && service_has_ports {
            continue;
        }
        ports.sort();
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: backends::hostname(service, pod),
            node_name: backends::node_name(pod),
            target_ref: Some(backends::pod_reference(pod)),
        };
        let key = (ip, pod.metadata.name.clone().unwrap_or_default());
        let group = groups.entry(ports).or_default();
        if publish_not_ready || backends::is_ready(pod) {
            group.ready.insert(key, address);
        } else {
            group.not_ready.insert(key, address);
        }
    }
    truncate(groups)
}

/// Builds the subsets, keeping at most [`MAX_ADDRESSES`] addresses: ready ones first.
fn truncate(groups: BTreeMap<Vec<ResolvedPort>, Group>) -> DesiredEndpoints {
    let total: usize = groups.values().map(|g| g.ready.len() + g.not_ready.len()).sum();
    let mut budget = MAX_ADDRESSES;
    let mut take = |addresses: BTreeMap<(IpAddr, String), EndpointAddress>| -> Vec<EndpointAddress> {
        let kept: Vec<EndpointAddress> = addresses.into_values().take(budget).collect();
        budget -= kept.len();
        kept
    };
    let mut kept = Vec::new();
    for (ports, group) in groups {
        kept.push((ports, take(group.ready), group.not_ready));
    }
    let subsets = kept
        .into_iter()
        .map(|(ports, ready, not_ready)| (ports, ready, take(not_ready)))
        .filter(|(_, ready, not_ready)| !ready.is_empty() || !not_ready.is_empty())
        .map(|(ports, ready, not_ready)| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| ports.iter().map(endpoint_port).collect()),
        })
        .collect();
    DesiredEndpoints { subsets, truncated: total > MAX_ADDRESSES }
}

fn endpoint_port(port: &ResolvedPort) -> EndpointPort {
    EndpointPort {
        name: Some(port.name.clone()).filter(|name| !name.is_empty()),
        port: port.port,
        protocol: Some(port.protocol.clone()),
        app_protocol: port.app_protocol.clone(),
    }
}

/// Returns the labels of the Service's Endpoints: the Service's labels, the managing
/// controller, and the headless marker for headless Services.
pub fn labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = backends::derived_labels(service);
    labels.insert(MANAGED_BY_LABEL.to_string(), CONTROLLER_NAME.to_string());
    labels
}

/// Returns whether this controller wrote the Endpoints object.
pub fn is_managed(endpoints: &Endpoints) -> bool {
    let labels = endpoints.metadata.labels.as_ref();
    labels.and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str) == Some(CONTROLLER_NAME)
}

/// Returns whether the stored Endpoints already match what the Service needs.
pub fn is_up_to_date(stored: &Endpoints, desired: &DesiredEndpoints, labels: &BTreeMap<String, String>) -> bool {
    let subsets = stored.subsets.as_deref().unwrap_or_default();
    let truncated = stored.metadata.annotations.as_ref().and_then(|a| a.get(OVER_CAPACITY_ANNOTATION)).is_some();
    subsets == desired.subsets.as_slice()
        && stored.metadata.labels.as_ref() == Some(labels)
        && truncated == desired.truncated
}
