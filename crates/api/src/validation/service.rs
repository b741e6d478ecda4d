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

    check_enum(spec, "type", SERVICE_TYPES, &path, errors);
    check_enum(spec, "sessionAffinity", SESSION_AFFINITIES, &path, errors);
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
}
