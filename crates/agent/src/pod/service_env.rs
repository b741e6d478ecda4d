//! Service environment variables, as kubelet injects them: for each Service with a
//! ClusterIP, `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT`, `<NAME>_SERVICE_PORT_<PORT>` for
//! named ports, and the Docker link variables `<NAME>_PORT…`.
//!
//! A pod gets the variables of the Services in its own namespace when
//! `enableServiceLinks` is not false, and those of the `kubernetes` Service in `default`
//! always.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};

use super::env::EnvError;
use crate::api::PodApi;

/// Namespace of the Service that every pod gets variables for.
const MASTER_NAMESPACE: &str = "default";
/// Name of the API server's Service, which every pod gets variables for.
const MASTER_SERVICE: &str = "kubernetes";

/// Reads the Services visible to the pod and returns their variables, sorted by Service
/// name. A failed read fails the container start, as in kubelet, because a container
/// started without its variables would never get them.
pub async fn service_variables(api: &dyn PodApi, pod: &Pod) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod.spec.as_ref().and_then(|spec| spec.enable_service_links).unwrap_or(true);
    let own = if links { api.services(namespace).await? } else { Vec::new() };
    let master = if links && namespace == MASTER_NAMESPACE { Vec::new() } else { api.services(MASTER_NAMESPACE).await? };
    Ok(variables(&select(namespace, links, own.iter().chain(master.iter()))))
}

/// Picks the Services whose variables a pod in `namespace` gets, one per name. A Service of the pod's own
/// namespace wins over the `kubernetes` Service of `default` when both share the name.
fn select<'a>(namespace: &str, links: bool, services: impl Iterator<Item = &'a Service>) -> Vec<&'a Service> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for service in services.filter(|service| cluster_ip(service).is_some()) {
        let name = service.metadata.name.as_deref().unwrap_or_default();
        let service_namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        if links && service_namespace == namespace {
            chosen.insert(name, service);
        } else if service_namespace == MASTER_NAMESPACE && name == MASTER_SERVICE {
            chosen.entry(name).or_insert(service);
        }
    }
    chosen.into_values().collect()
}

/// Returns the Service's ClusterIP; None for headless and ExternalName Services.
fn cluster_ip(service: &Service) -> Option<&str> {
    let ip = service.spec.as_ref()?.cluster_ip.as_deref()?;
    (!ip.is_empty() && ip != "None").then_some(ip)
}

/// Builds the variables of each Service, in the given order.
fn variables(services: &[&Service]) -> Vec<(String, String)> {
    let mut result = Vec::new();
    for service in services {
        let (Some(ip), Some(spec)) = (cluster_ip(service), service.spec.as_ref()) else { continue };
        let ports = spec.ports.as_deref().unwrap_or_default();
        // Validation requires ports on every Service that has a ClusterIP.
        let Some(first) = ports.first() else { continue };
        let prefix = variable_name(service.metadata.name.as_deref().unwrap_or_default());

        result.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        result.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for port in ports {
            if let Some(name) = port.name.as_deref().filter(|name| !name.is_empty()) {
                result.push((format!("{prefix}_SERVICE_PORT_{}", variable_name(name)), port.port.to_string()));
            }
        }

        // Docker link variables; the first port also gets the bare `<NAME>_PORT`.
        for (index, port) in ports.iter().enumerate() {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let scheme = protocol.to_lowercase();
            let address = host_port(ip, port.port);
            if index == 0 {
                result.push((format!("{prefix}_PORT"), format!("{scheme}://{address}")));
            }
            let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
            result.push((port_prefix.clone(), format!("{scheme}://{address}")));
            result.push((format!("{port_prefix}_PROTO"), scheme));
            result.push((format!("{port_prefix}_PORT"), port.port.to_string()));
            result.push((format!("{port_prefix}_ADDR"), ip.to_string()));
        }
    }
    result
}

/// Turns a Service or port name into a variable name part: upper case, `-` as `_`.
fn variable_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

/// Joins an address and a port, with brackets around an IPv6 address.
fn host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn service(namespace: &str, name: &str, cluster_ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": cluster_ip, "ports": ports},
        }))
        .expect("test Service is valid")
    }

    fn lookup<'a>(variables: &'a [(String, String)], name: &str) -> Option<&'a str> {
        variables.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn variables_of_named_ports() {
        let web = service("shop", "web-front", "10.96.0.20", json!([
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "dns-udp", "port": 53, "protocol": "UDP"},
        ]));
        let variables = variables(&[&web]);
        let expected = [
            ("WEB_FRONT_SERVICE_HOST", "10.96.0.20"),
            ("WEB_FRONT_SERVICE_PORT", "80"),
            ("WEB_FRONT_SERVICE_PORT_HTTP", "80"),
            ("WEB_FRONT_SERVICE_PORT_DNS_UDP", "53"),
            ("WEB_FRONT_PORT", "tcp://10.96.0.20:80"),
            ("WEB_FRONT_PORT_80_TCP", "tcp://10.96.0.20:80"),
            ("WEB_FRONT_PORT_80_TCP_PROTO", "tcp"),
            ("WEB_FRONT_PORT_80_TCP_PORT", "80"),
            ("WEB_FRONT_PORT_80_TCP_ADDR", "10.96.0.20"),
            ("WEB_FRONT_PORT_53_UDP", "udp://10.96.0.20:53"),
            ("WEB_FRONT_PORT_53_UDP_PROTO", "udp"),
        ];
        for (name, value) in expected {
            assert_eq!(lookup(&variables, name), Some(value), "{name}");
        }
        assert_eq!(variables.len(), 13);
    }

    #[test]
    fn unnamed_port_has_no_port_suffix() {
        let db = service("shop", "db", "10.96.0.21", json!([{"port": 5432}]));
        let variables = variables(&[&db]);
        assert_eq!(lookup(&variables, "DB_SERVICE_PORT"), Some("5432"));
        assert!(variables.iter().all(|(name, _)| !name.starts_with("DB_SERVICE_PORT_")));
        assert_eq!(lookup(&variables, "DB_PORT"), Some("tcp://10.96.0.21:5432"), "protocol defaults to TCP");
    }

    #[test]
    fn ipv6_address_is_bracketed() {
        let db = service("shop", "db", "fd00::10", json!([{"port": 5432, "protocol": "TCP"}]));
        let variables = variables(&[&db]);
        assert_eq!(lookup(&variables, "DB_PORT"), Some("tcp://[fd00::10]:5432"));
        assert_eq!(lookup(&variables, "DB_PORT_5432_TCP_ADDR"), Some("fd00::10"));
    }

    #[test]
    fn selection_follows_service_links() {
        let ports = json!([{"port": 443, "protocol": "TCP"}]);
        let all = [
            service("default", "kubernetes", "10.96.0.1", ports.clone()),
            service("default", "other", "10.96.0.5", ports.clone()),
            service("shop", "web", "10.96.0.6", ports.clone()),
            service("shop", "headless", "None", ports.clone()),
            service("elsewhere", "web2", "10.96.0.7", ports.clone()),
        ];
        let names = |chosen: Vec<&Service>| -> Vec<String> {
            chosen.iter().map(|s| s.metadata.name.clone().unwrap_or_default()).collect()
        };
        assert_eq!(names(select("shop", true, all.iter())), ["kubernetes", "web"]);
        assert_eq!(names(select("shop", false, all.iter())), ["kubernetes"]);
        assert_eq!(names(select("default", true, all.iter())), ["kubernetes", "other"]);
    }

    #[test]
    fn own_namespace_shadows_master_service() {
        let ports = json!([{"port": 443, "protocol": "TCP"}]);
        let all = [
            service("default", "kubernetes", "10.96.0.1", ports.clone()),
            service("shop", "kubernetes", "10.96.0.9", ports.clone()),
        ];
        let chosen = select("shop", true, all.iter());
        assert_eq!(chosen.len(), 1);
        assert_eq!(cluster_ip(chosen[0]), Some("10.96.0.9"));
    }
}
