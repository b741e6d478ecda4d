//! The EndpointSlices of one Service: the slices it should have ([`desired`]) and the
//! writes that turn the slices it has into them ([`plan`]).
//!
//! Pods are grouped by address family and by the ports they resolve, because one slice
//! lists one port set. Each group is cut into slices of at most
//! [`MAX_ENDPOINTS_PER_SLICE`] endpoints.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::backends::{self, Family, ResolvedPort};

/// Label that names the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label that names the controller managing a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`] on the slices this controller writes. Slices with
/// another value (or none) belong to someone else and are never touched.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.capstan.io";
pub use super::backends::HEADLESS_LABEL;
/// Most endpoints written to one slice, the default of kube-controller-manager's
/// `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// Endpoints of one slice group, keyed by address and pod name for a stable order.
type GroupEndpoints = BTreeMap<(IpAddr, String), Endpoint>;

/// The content of one slice, apart from its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceContent {
    pub address_type: String,
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<Endpoint>,
}

impl SliceContent {
    fn of(slice: &EndpointSlice) -> SliceContent {
        SliceContent {
            address_type: slice.address_type.clone(),
            ports: slice.ports.clone().unwrap_or_default(),
            endpoints: slice.endpoints.clone(),
        }
    }
}

/// The writes that bring a Service's slices up to date.
#[derive(Debug, Default)]
pub struct SlicePlan {
    /// New slices, named by the server from `generateName`.
    pub create: Vec<EndpointSlice>,
    /// Existing slices with new content; each keeps its `resourceVersion` so the write
    /// fails when the slice changed since the cache saw it.
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<Arc<EndpointSlice>>,
}

impl SlicePlan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Computes the slices a Service with a selector should have, from the pods of its
/// namespace. A Service that selects no listable pod gets one empty slice, so clients
/// can tell "no endpoints" from "not processed yet".
pub fn desired(service: &Service, pods: &[Arc<Pod>]) -> Vec<SliceContent> {
    let families = backends::families(service);
    let publish_not_ready = backends::publishes_not_ready(service);
    let mut groups: BTreeMap<(Family, Vec<ResolvedPort>), GroupEndpoints> = BTreeMap::new();
    for pod in pods.iter().filter(|pod| backends::selects(service, pod)) {
        // Terminating pods stay listed, marked terminating, so proxies can drain them.
        if !backends::is_listable(pod, true) {
            continue;
        }
        let ports = backends::resolve_ports(service, pod);
        for family in &families {
            let Some(address) = backends::address(pod, *family) else { continue };
            let key = (address, pod.metadata.name.clone().unwrap_or_default());
            let endpoint = endpoint(service, pod, address, publish_not_ready);
            groups.entry((*family, ports.clone())).or_default().insert(key, endpoint);
        }
    }

    let mut slices = Vec::new();
    for ((family, ports), endpoints) in groups {
        let ports: Vec<EndpointPort> = ports.iter().map(endpoint_port).collect();
        let endpoints: Vec<Endpoint> = endpoints.into_values().collect();
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            slices.push(SliceContent {
                address_type: family.as_str().to_string(),
                ports: ports.clone(),
                endpoints: chunk.to_vec(),
            });
        }
    }
    if slices.is_empty() {
        slices.push(SliceContent {
            address_type: families[0].as_str().to_string(),
            ports: Vec::new(),
            endpoints: Vec::new(),
        });
    }
    slices
}

fn endpoint(service: &Service, pod: &Pod, address: IpAddr, publish_not_ready: bool) -> Endpoint {
    let serving = backends::is_ready(pod);
    let terminating = backends::is_terminating(pod);
    Endpoint {
        addresses: vec![address.to_string()],
        conditions: Some(EndpointConditions {
            // A terminating pod is never ready unless the Service publishes every pod.
            ready: Some(publish_not_ready || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: backends::hostname(service, pod),
        node_name: backends::node_name(pod),
        target_ref: Some(backends::pod_reference(pod)),
        ..Endpoint::default()
    }
}

fn endpoint_port(port: &ResolvedPort) -> EndpointPort {
    EndpointPort {
        name: Some(port.name.clone()),
        port: Some(port.port),
        protocol: Some(port.protocol.clone()),
        app_protocol: port.app_protocol.clone(),
    }
}

/// Returns the labels of the Service's slices: the Service's own labels, the Service
/// name, the managing controller, and the headless marker for headless Services.
pub fn labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = backends::derived_labels(service);
    labels.insert(SERVICE_NAME_LABEL.to_string(), service.metadata.name.clone().unwrap_or_default());
    labels.insert(MANAGED_BY_LABEL.to_string(), CONTROLLER_NAME.to_string());
    labels
}

/// Returns whether this controller manages the slice on behalf of the named Service.
pub fn is_managed_for(slice: &EndpointSlice, namespace: &str, name: &str) -> bool {
    let labels = slice.metadata.labels.as_ref();
    slice.metadata.namespace.as_deref() == Some(namespace)
        && labels.and_then(|l| l.get(SERVICE_NAME_LABEL)).map(String::as_str) == Some(name)
        && labels.and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str) == Some(CONTROLLER_NAME)
}

fn owner_reference(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".to_string(),
        kind: "Service".to_string(),
        name: service.metadata.name.clone().unwrap_or_default(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Returns whether a slice's controlling owner is another object than the Service, such
/// as an earlier Service of the same name.
fn owned_by_other(slice: &EndpointSlice, service: &Service) -> bool {
    let controller = slice.metadata.owner_references.iter().flatten().find(|r| r.controller == Some(true));
    controller.is_some_and(|owner| Some(&owner.uid) != service.metadata.uid.as_ref())
}

/// Plans the writes that turn `existing` (the slices managed for this Service) into
/// `desired`. Slices already equal to a desired one are left alone, other slices of the
/// same address type are rewritten in place, and what is left over is created or deleted.
pub fn plan(service: &Service, desired: Vec<SliceContent>, existing: &[Arc<EndpointSlice>]) -> SlicePlan {
    let labels = labels(service);
    let owner = owner_reference(service);
    let mut plan = SlicePlan::default();

    // Slices of an earlier Service of this name go; the garbage collector may race us.
    let (stale, mut unused): (Vec<_>, Vec<_>) = existing.iter().cloned().partition(|slice| owned_by_other(slice, service));
    plan.delete.extend(stale);
    unused.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    // Keep the slices that are already right.
    let up_to_date = |slice: &EndpointSlice, content: &SliceContent| {
        SliceContent::of(slice) == *content
            && slice.metadata.labels.as_ref() == Some(&labels)
            && slice.metadata.owner_references.as_deref() == Some(std::slice::from_ref(&owner))
    };
    let mut pending = Vec::new();
    for content in desired {
        match unused.iter().position(|slice| up_to_date(slice, &content)) {
            Some(index) => {
                unused.remove(index);
            }
            None => pending.push(content),
        }
    }

    // Rewrite slices of the same address type, preferring ones with the same ports.
    for content in pending {
        let same_ports = unused
            .iter()
            .position(|s| s.address_type == content.address_type && s.ports.clone().unwrap_or_default() == content.ports);
        let reusable = same_ports.or_else(|| unused.iter().position(|s| s.address_type == content.address_type));
        match reusable {
            Some(index) => {
                let mut slice = EndpointSlice::clone(&unused.remove(index));
                fill(&mut slice, content, &labels, &owner);
                plan.update.push(slice);
            }
            None => {
                let mut slice = EndpointSlice {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{}-", service.metadata.name.as_deref().unwrap_or_default())),
                        namespace: service.metadata.namespace.clone(),
                        ..ObjectMeta::default()
                    },
                    ..EndpointSlice::default()
                };
                fill(&mut slice, content, &labels, &owner);
                plan.create.push(slice);
            }
        }
    }
    plan.delete.extend(unused);
    plan
}

fn fill(slice: &mut EndpointSlice, content: SliceContent, labels: &BTreeMap<String, String>, owner: &OwnerReference) {
    slice.address_type = content.address_type;
    slice.ports = Some(content.ports);
    slice.endpoints = content.endpoints;
    slice.metadata.labels = Some(labels.clone());
    slice.metadata.owner_references = Some(vec![owner.clone()]);
}
