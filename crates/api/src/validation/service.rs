//! Service rules: ports, type, cluster IP and session affinity.

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::Value;

use super::container::{PROTOCOLS, check_port_number};
use super::metadata::validate_labels;
use super::{FieldError, Path, array_field, check_enum, field, str_field};
use crate::meta;

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const SESSION_AFFINITIES: &[&str] = &["ClientIP", "None"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const IP_FAMILIES: &[&str] = &["IPv4", "IPv6"];
const IP_FAMILY_POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
/// Largest `sessionAffinityConfig.clientIP.timeoutSeconds`: one day, as in Kubernetes.
pub const MAX_CLIENT_IP_TIMEOUT_SECONDS: i64 = 86_400;

pub(super) fn validate_service(object: &Value, errors: &mut Vec<FieldError>) {
    let path = Path::root().child("spec");
    let spec = object.get("spec");
    let service_type = str_field(spec, "type").unwrap_or("ClusterIP");
    let cluster_ip = str_field(spec, "clusterIP").unwrap_or("");
    let headless = cluster_ip == "None";

    let ports = array_field(spec, "ports");
    if ports.is_empty() && !headless && service_type != "ExternalName" {
        errors.push(FieldError::required(path.child("ports"), ""));
    }
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    for (index, port) in ports.iter().enumerate() {
        validate_port(port, &path.child("ports").index(index), ports.len() > 1, &mut names, &mut keys, errors);
    }
    validate_node_ports(ports, service_type, &path, errors);

    check_enum(spec, "type", SERVICE_TYPES, &path, errors);
    check_enum(spec, "sessionAffinity", SESSION_AFFINITIES, &path, errors);
    check_enum(spec, "internalTrafficPolicy", TRAFFIC_POLICIES, &path, errors);
    check_enum(spec, "externalTrafficPolicy", TRAFFIC_POLICIES, &path, errors);
    check_enum(spec, "ipFamilyPolicy", IP_FAMILY_POLICIES, &path, errors);
    for (index, family) in array_field(spec, "ipFamilies").iter().enumerate() {
        if !family.as_str().is_some_and(|f| IP_FAMILIES.contains(&f)) {
            errors.push(FieldError::not_supported(path.child("ipFamilies").index(index), family.clone(), IP_FAMILIES));
        }
    }
    validate_session_affinity(spec, &path, errors);
    validate_cluster_ips(spec, cluster_ip, &path, errors);
    if service_type == "ExternalName" {
        match str_field(spec, "externalName").filter(|n| !n.is_empty()) {
            None => errors.push(FieldError::required(path.child("externalName"), "")),
            Some(name) => {
                for problem in meta::dns1123_subdomain(name.trim_end_matches('.')) {
                    errors.push(FieldError::invalid(path.child("externalName"), Value::from(name), problem));
                }
            }
        }
        if !cluster_ip.is_empty() {
            let detail = "may not be set for ExternalName services";
            errors.push(FieldError::forbidden(path.child("clusterIP"), detail));
        }
    } else if !cluster_ip.is_empty() && !headless && cluster_ip.parse::<IpAddr>().is_err() {
        let detail = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
        errors.push(FieldError::invalid(path.child("clusterIP"), Value::from(cluster_ip), detail));
    }
    validate_labels(field(spec, "selector"), &path.child("selector"), errors);
}

/// Checks the rules of `spec.clusterIPs`: its first entry matches `clusterIP`, and each
/// entry is an address (or `None` for a headless Service, and then alone).
fn validate_cluster_ips(spec: Option<&Value>, cluster_ip: &str, path: &Path, errors: &mut Vec<FieldError>) {
    let cluster_ips = array_field(spec, "clusterIPs");
    let Some(first) = cluster_ips.first() else { return };
    let first_path = path.child("clusterIPs").index(0);
    if !cluster_ip.is_empty() && first.as_str() != Some(cluster_ip) {
        let detail = "must match `clusterIP` when both are specified";
        errors.push(FieldError::invalid(first_path.clone(), first.clone(), detail));
    }
    for (index, entry) in cluster_ips.iter().enumerate() {
        let text = entry.as_str().unwrap_or("");
        let valid = text.parse::<IpAddr>().is_ok() || (text == "None" && cluster_ips.len() == 1);
        if !valid {
            let detail = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
            errors.push(FieldError::invalid(path.child("clusterIPs").index(index), entry.clone(), detail));
        }
    }
    if cluster_ips.len() > 2 {
        errors.push(FieldError::invalid(path.child("clusterIPs"), Value::from(cluster_ips.to_vec()), "may only hold up to 2 values"));
    }
}

/// Checks `sessionAffinityConfig` against `sessionAffinity`: the ClientIP timeout must lie in
/// 1..=86400 seconds, and without ClientIP affinity the config must be absent.
fn validate_session_affinity(spec: Option<&Value>, path: &Path, errors: &mut Vec<FieldError>) {
    let affinity = str_field(spec, "sessionAffinity").unwrap_or("None");
    let config = field(spec, "sessionAffinityConfig");
    let config_path = path.child("sessionAffinityConfig");
    if affinity != "ClientIP" {
        if let Some(config) = config.filter(|c| c.as_object().is_some_and(|m| !m.is_empty())) {
            let detail = format!("must not be set when session affinity is {affinity}");
            errors.push(FieldError::invalid(config_path, config.clone(), detail));
        }
        return;
    }
    let timeout_path = config_path.child("clientIP").child("timeoutSeconds");
    match config.and_then(|c| c.pointer("/clientIP/timeoutSeconds")).filter(|t| !t.is_null()) {
        None => errors.push(FieldError::required(timeout_path, "")),
        Some(timeout) => {
            if !timeout.as_i64().is_some_and(|t| (1..=MAX_CLIENT_IP_TIMEOUT_SECONDS).contains(&t)) {
                let detail = format!("must be greater than 0 and less than {MAX_CLIENT_IP_TIMEOUT_SECONDS}");
                errors.push(FieldError::invalid(timeout_path, timeout.clone(), detail));
            }
        }
    }
}

/// Checks that node ports appear only on NodePort and LoadBalancer Services, and that no
/// number is requested twice for one protocol.
fn validate_node_ports(ports: &[Value], service_type: &str, path: &Path, errors: &mut Vec<FieldError>) {
    let mut seen = HashSet::new();
    for (index, port) in ports.iter().enumerate() {
        let Some(node_port) = field(Some(port), "nodePort").and_then(Value::as_i64).filter(|p| *p != 0) else {
            continue;
        };
        let node_port_path = path.child("ports").index(index).child("nodePort");
        if service_type == "ClusterIP" || service_type == "ExternalName" {
            let detail = format!("may not be used when `type` is '{service_type}'");
            errors.push(FieldError::forbidden(node_port_path, detail));
            continue;
        }
        let protocol = str_field(Some(port), "protocol").unwrap_or("TCP");
        if !seen.insert((node_port, protocol)) {
            errors.push(FieldError::duplicate(node_port_path, Value::from(node_port)));
        }
    }
}

/// Checks the Service rules that compare with the stored version: the cluster IP may not
/// change once set, except by a switch to or from `ExternalName`, which has none.
pub(super) fn validate_service_update(object: &Value, old: &Value, errors: &mut Vec<FieldError>) {
    let old_ip = old.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("");
    let new_ip = object.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("");
    let new_type = object.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
    if old_ip.is_empty() || new_type == "ExternalName" || old_ip == new_ip {
        return;
    }
    let path = Path::root().child("spec").child("clusterIPs").index(0);
    errors.push(FieldError::invalid(path, Value::from(new_ip), "field is immutable"));
}

fn validate_port<'a>(
    port: &'a Value,
    path: &Path,
    name_required: bool,
    names: &mut HashSet<&'a str>,
    keys: &mut HashSet<(i64, &'a str)>,
    errors: &mut Vec<FieldError>,
) {
    let port = Some(port);
    match str_field(port, "name").filter(|n| !n.is_empty()) {
        None if name_required => errors.push(FieldError::required(path.child("name"), "")),
        None => {}
        Some(name) => {
            for problem in meta::dns1123_label(name) {
                errors.push(FieldError::invalid(path.child("name"), Value::from(name), problem));
            }
            if !names.insert(name) {
                errors.push(FieldError::duplicate(path.child("name"), Value::from(name)));
            }
        }
    }
    match field(port, "port") {
        None => errors.push(FieldError::required(path.child("port"), "")),
        Some(number) => check_port_number(number, path.child("port"), errors),
    }
    match field(port, "protocol") {
        None => errors.push(FieldError::required(path.child("protocol"), "")),
        Some(_) => check_enum(port, "protocol", PROTOCOLS, path, errors),
    }
    match field(port, "targetPort") {
        Some(Value::String(name)) => {
            for problem in meta::port_name(name) {
                errors.push(FieldError::invalid(path.child("targetPort"), Value::from(name.as_str()), problem));
            }
        }
        Some(number) => check_port_number(number, path.child("targetPort"), errors),
        None => {}
    }
    if let Some(node_port) = field(port, "nodePort") {
        if !node_port.as_i64().is_some_and(|p| (0..=65535).contains(&p)) {
            let detail = "must be between 0 and 65535, inclusive";
            errors.push(FieldError::invalid(path.child("nodePort"), node_port.clone(), detail));
        }
    }

    // A port number may appear once per protocol.
    let number = field(port, "port").and_then(Value::as_i64);
    let protocol = str_field(port, "protocol").unwrap_or("TCP");
    if let Some(number) = number {
        if !keys.insert((number, protocol)) {
            errors.push(FieldError::duplicate(path.clone(), Value::from(format!("{number}/{protocol}"))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(spec: Value) -> Vec<String> {
        let mut errors = Vec::new();
        validate_service(&json!({"spec": spec}), &mut errors);
        errors.iter().map(FieldError::message).collect()
    }

    #[test]
    fn service_rules() {
        let port = |name: &str, number: i64| json!({"name": name, "port": number, "protocol": "TCP", "targetPort": number});
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"type": "ClusterIP", "ports": [port("http", 80)]}), vec![]),
            (json!({"type": "ClusterIP"}), vec!["spec.ports: Required value"]),
            (json!({"type": "ClusterIP", "clusterIP": "None"}), vec![]),
            (json!({"type": "ExternalName", "externalName": "db.example.com"}), vec![]),
            (json!({"type": "ExternalName"}), vec!["spec.externalName: Required value"]),
            (
                json!({"type": "Foo", "ports": [port("", 80)]}),
                vec!["spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""],
            ),
            (
                json!({"ports": [port("", 80), port("b", 81)]}),
                vec!["spec.ports[0].name: Required value"],
            ),
            (
                json!({"ports": [port("a", 80), port("a", 81)]}),
                vec!["spec.ports[1].name: Duplicate value: \"a\""],
            ),
            (
                json!({"ports": [port("a", 80), port("b", 80)]}),
                vec!["spec.ports[1]: Duplicate value: \"80/TCP\""],
            ),
            (
                json!({"ports": [port("a", 0)]}),
                vec![
                    "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                    "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                ],
            ),
            (
                json!({"clusterIP": "10.0.0.300", "ports": [port("a", 80)]}),
                vec!["spec.clusterIP: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"],
            ),
            (
                json!({"sessionAffinity": "Sticky", "ports": [port("a", 80)]}),
                vec!["spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\""],
            ),
        ];
        for (spec, expected) in cases {
            assert_eq!(messages(spec.clone()), expected, "spec {spec}");
        }
    }

    #[test]
    fn service_policy_and_affinity_rules() {
        let ports = json!([{"port": 80, "protocol": "TCP", "targetPort": 80}]);
        let node_port = |number: i64| json!({"name": format!("p{number}"), "port": number, "protocol": "TCP", "nodePort": 30080});
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"ports": ports, "sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}}), vec![]),
            (
                json!({"ports": ports, "sessionAffinity": "ClientIP",
                       "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}}),
                vec!["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400"],
            ),
            (
                json!({"ports": ports, "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}),
                vec!["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"],
            ),
            (
                json!({"ports": ports, "externalTrafficPolicy": "Nearest", "type": "NodePort"}),
                vec!["spec.externalTrafficPolicy: Unsupported value: \"Nearest\": supported values: \"Cluster\", \"Local\""],
            ),
            (
                json!({"ports": ports, "internalTrafficPolicy": "Node"}),
                vec!["spec.internalTrafficPolicy: Unsupported value: \"Node\": supported values: \"Cluster\", \"Local\""],
            ),
            (
                json!({"type": "NodePort", "ports": [node_port(80), node_port(81)]}),
                vec!["spec.ports[1].nodePort: Duplicate value: 30080"],
            ),
            (
                json!({"type": "ClusterIP", "ports": [node_port(80)]}),
                vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
            ),
            (
                json!({"clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.8"], "ports": ports}),
                vec!["spec.clusterIPs[0]: Invalid value: \"10.96.0.8\": must match `clusterIP` when both are specified"],
            ),
        ];
        for (spec, expected) in cases {
            assert_eq!(messages(spec.clone()), expected, "spec {spec}");
        }
    }

    #[test]
    fn cluster_ip_is_immutable() {
        let old = json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10"}});
        let changed = json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.11"}});
        let mut errors = Vec::new();
        validate_service_update(&changed, &old, &mut errors);
        let messages: Vec<String> = errors.iter().map(FieldError::message).collect();
        assert_eq!(messages, ["spec.clusterIPs[0]: Invalid value: \"10.96.0.11\": field is immutable"]);

        let external = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        let mut errors = Vec::new();
        validate_service_update(&external, &old, &mut errors);
        assert!(errors.is_empty(), "switching to ExternalName releases the address");
    }
}
