//! The proxy's view of the cluster: each Service joined with the ready endpoints of its
//! EndpointSlices, in a form that the rule renderer and the DNS server read.
//!
//! Only IPv4 is handled: Services without an IPv4 ClusterIP are proxied as headless (DNS
//! only), and EndpointSlices whose `addressType` is not `IPv4` are ignored.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The timeout of `sessionAffinity: ClientIP` when the Service sets none (three hours, the
/// Kubernetes default).
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10_800;

/// A transport protocol the proxy forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// Parses a Kubernetes protocol name; `None` for SCTP and unknown names.
    pub fn parse(name: Option<&str>) -> Option<Self> {
        match name.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// The lower-case name, as nftables and DNS SRV labels spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One ready backend of a Service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// Node the endpoint runs on, from the slice's `nodeName`.
    pub node_name: Option<String>,
}

/// One port of a Service with the ready endpoints behind it, sorted by address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name; empty for the single unnamed port a Service may have.
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
    pub endpoints: Vec<Endpoint>,
}

/// A ready address of a Service for DNS: headless Services answer with these.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadyAddress {
    pub ip: Ipv4Addr,
    /// The endpoint's `hostname` (set for StatefulSet pods), used as its DNS label.
    pub hostname: Option<String>,
}

/// A Service as the proxy and the DNS server need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub namespace: String,
    pub name: String,
    /// The IPv4 ClusterIP; `None` for headless Services and ExternalName Services.
    pub cluster_ip: Option<Ipv4Addr>,
    /// `spec.externalName` of an ExternalName Service, answered as a CNAME.
    pub external_name: Option<String>,
    pub ports: Vec<ServicePort>,
    /// Every ready address of the Service, for headless A records.
    pub ready_addresses: Vec<ReadyAddress>,
    /// Timeout of `sessionAffinity: ClientIP` in seconds, `None` without affinity.
    pub affinity_seconds: Option<u32>,
    /// `internalTrafficPolicy: Local`: ClusterIP traffic goes to this node's endpoints only.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`: NodePort traffic goes to this node's endpoints only.
    pub external_local: bool,
}

impl ServiceEntry {
    /// The endpoints that ClusterIP traffic to `port` may reach from node `node_name`:
    /// every ready endpoint, or only this node's with `internalTrafficPolicy: Local`.
    pub fn cluster_endpoints(&self, port: &ServicePort, node_name: &str) -> Vec<Endpoint> {
        local_only(&port.endpoints, self.internal_local, node_name)
    }

    /// The endpoints that NodePort traffic to `port` may reach: every ready endpoint, or
    /// only this node's with `externalTrafficPolicy: Local`.
    pub fn external_endpoints(&self, port: &ServicePort, node_name: &str) -> Vec<Endpoint> {
        local_only(&port.endpoints, self.external_local, node_name)
    }
}

/// Keeps the endpoints on `node_name` when `local` is set, else all of them.
pub fn local_only(endpoints: &[Endpoint], local: bool, node_name: &str) -> Vec<Endpoint> {
    endpoints
        .iter()
        .filter(|endpoint| !local || endpoint.node_name.as_deref() == Some(node_name))
        .cloned()
        .collect()
}

/// Joins Services with the EndpointSlices labelled with their name. The result is sorted by
/// namespace and name, so the same cluster state always renders the same rules.
pub fn build_services(services: &[Service], slices: &[EndpointSlice]) -> Vec<ServiceEntry> {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        let labels = slice.metadata.labels.as_ref();
        let Some(service) = labels.and_then(|labels| labels.get(SERVICE_NAME_LABEL)) else {
            continue;
        };
        let namespace = slice.metadata.namespace.clone().unwrap_or_default();
        by_service.entry((namespace, service.clone())).or_default().push(slice);
    }

    let mut entries: Vec<ServiceEntry> = services
        .iter()
        .filter_map(|service| {
            let namespace = service.metadata.namespace.clone().unwrap_or_default();
            let name = service.metadata.name.clone()?;
            let slices = by_service.get(&(namespace, name)).map(Vec::as_slice).unwrap_or(&[]);
            Some(service_entry(service, slices))
        })
        .collect();
    entries.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    entries
}

fn service_entry(service: &Service, slices: &[&EndpointSlice]) -> ServiceEntry {
    let spec = service.spec.clone().unwrap_or_default();
    let cluster_ip = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    let external_name = match spec.type_.as_deref() {
        Some("ExternalName") => spec.external_name.clone(),
        _ => None,
    };
    let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|config| config.client_ip.as_ref())
            .and_then(|client_ip| client_ip.timeout_seconds)
            .and_then(|seconds| u32::try_from(seconds).ok())
            .unwrap_or(DEFAULT_AFFINITY_SECONDS)
    });

    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|port| {
            let protocol = Protocol::parse(port.protocol.as_deref())?;
            let name = port.name.clone().unwrap_or_default();
            Some(ServicePort {
                endpoints: ready_endpoints(slices, &name, protocol),
                name,
                protocol,
                port: u16::try_from(port.port).ok()?,
                node_port: port.node_port.and_then(|port| u16::try_from(port).ok()),
            })
        })
        .collect();

    let mut ready_addresses: Vec<ReadyAddress> = ipv4_slices(slices)
        .flat_map(|slice| slice.endpoints.iter())
        .filter(|endpoint| is_ready(endpoint))
        .flat_map(|endpoint| {
            endpoint.addresses.iter().filter_map(|address| {
                Some(ReadyAddress {
                    ip: address.parse().ok()?,
                    hostname: endpoint.hostname.clone(),
                })
            })
        })
        .collect();
    ready_addresses.sort();
    ready_addresses.dedup();

    ServiceEntry {
        namespace: service.metadata.namespace.clone().unwrap_or_default(),
        name: service.metadata.name.clone().unwrap_or_default(),
        cluster_ip,
        external_name,
        ports,
        ready_addresses,
        affinity_seconds,
        internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
    }
}

fn ipv4_slices<'a>(slices: &'a [&'a EndpointSlice]) -> impl Iterator<Item = &'a EndpointSlice> {
    slices
        .iter()
        .copied()
        .filter(|slice| slice.address_type == "IPv4")
}

/// A missing `ready` condition means ready, as the EndpointSlice API defines it.
fn is_ready(endpoint: &k8s_openapi::api::discovery::v1::Endpoint) -> bool {
    endpoint
        .conditions
        .as_ref()
        .and_then(|conditions| conditions.ready)
        .unwrap_or(true)
}

/// Collects the ready endpoints for the Service port `name`: the slice port with the same
/// name and protocol gives the target port number.
fn ready_endpoints(slices: &[&EndpointSlice], name: &str, protocol: Protocol) -> Vec<Endpoint> {
    let mut endpoints = Vec::new();
    for slice in ipv4_slices(slices) {
        let target = slice.ports.iter().flatten().find(|port| {
            port.name.as_deref().unwrap_or("") == name
                && Protocol::parse(port.protocol.as_deref()) == Some(protocol)
        });
        let Some(port) = target.and_then(|port| port.port).and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in slice.endpoints.iter().filter(|endpoint| is_ready(endpoint)) {
            for address in &endpoint.addresses {
                let Ok(ip) = address.parse() else { continue };
                endpoints.push(Endpoint {
                    ip,
                    port,
                    node_name: endpoint.node_name.clone(),
                });
            }
        }
    }
    endpoints.sort();
    endpoints.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
    endpoints
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a Service from JSON, the shape users write.
    pub fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).expect("test Service is valid")
    }

    pub fn slice(value: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(value).expect("test EndpointSlice is valid")
    }

    pub fn web_service() -> Service {
        service(serde_json::json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": "10.96.0.10", "type": "NodePort",
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]}
        }))
    }

    pub fn web_slice() -> EndpointSlice {
        slice(serde_json::json!({
            "metadata": {"namespace": "default", "name": "web-abc",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.0.7"], "nodeName": "n1", "conditions": {"ready": true}},
                {"addresses": ["10.244.0.5"], "nodeName": "n2"},
                {"addresses": ["10.244.0.9"], "nodeName": "n1", "conditions": {"ready": false}}
            ]
        }))
    }

    #[test]
    fn ready_endpoints_are_joined_by_port_name() {
        let entries = build_services(&[web_service()], &[web_slice()]);
        assert_eq!(entries.len(), 1);
        let port = &entries[0].ports[0];
        let ips: Vec<String> = port.endpoints.iter().map(|e| e.ip.to_string()).collect();
        assert_eq!(ips, ["10.244.0.5", "10.244.0.7"], "not-ready 10.244.0.9 must be left out");
        assert!(port.endpoints.iter().all(|e| e.port == 8080));
        assert_eq!(port.node_port, Some(30080));
        assert_eq!(entries[0].cluster_ip, Some(Ipv4Addr::new(10, 96, 0, 10)));
    }

    #[test]
    fn slices_of_other_services_are_ignored() {
        let mut other = web_slice();
        other.metadata.labels = Some([(SERVICE_NAME_LABEL.to_string(), "db".to_string())].into());
        let entries = build_services(&[web_service()], &[other]);
        assert!(entries[0].ports[0].endpoints.is_empty());
    }

    #[test]
    fn headless_and_affinity_are_read() {
        let headless = service(serde_json::json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": "None", "sessionAffinity": "ClientIP",
                     "ports": [{"name": "http", "port": 80}, {"name": "sctp", "port": 9, "protocol": "SCTP"}]}
        }));
        let entries = build_services(&[headless], &[web_slice()]);
        assert_eq!(entries[0].cluster_ip, None);
        assert_eq!(entries[0].affinity_seconds, Some(DEFAULT_AFFINITY_SECONDS));
        assert_eq!(entries[0].ports.len(), 1, "SCTP ports are not proxied");
        assert_eq!(entries[0].ready_addresses.len(), 2);
    }
}
