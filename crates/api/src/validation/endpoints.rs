//! Rules for the objects that list a Service's backends: legacy `Endpoints` and
//! `discovery.k8s.io/v1` EndpointSlices. Controllers write most of them, but users write
//! them for Services without a selector, so every address and port is checked.

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::Value;

use super::container::{PROTOCOLS, check_port_number};
use super::{FieldError, Path, array_field, check_enum, field, str_field};
use crate::meta;

const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
/// Most endpoints one EndpointSlice may list, as in Kubernetes.
pub const MAX_SLICE_ENDPOINTS: usize = 1000;
/// Most addresses one slice endpoint may carry (only the first is used).
const MAX_ENDPOINT_ADDRESSES: usize = 100;

/// Validates an `Endpoints` object: every address is an IP and every port a valid number.
pub(super) fn validate_endpoints(object: &Value, errors: &mut Vec<FieldError>) {
    let path = Path::root().child("subsets");
    for (index, subset) in array_field(Some(object), "subsets").iter().enumerate() {
        let subset_path = path.index(index);
        let subset = Some(subset);
        for list in ["addresses", "notReadyAddresses"] {
            for (position, address) in array_field(subset, list).iter().enumerate() {
                let ip_path = subset_path.child(list).index(position).child("ip");
                match str_field(Some(address), "ip") {
                    None | Some("") => errors.push(FieldError::required(ip_path, "")),
                    Some(ip) if ip.parse::<IpAddr>().is_err() => {
                        let detail = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
                        errors.push(FieldError::invalid(ip_path, Value::from(ip), detail));
                    }
                    Some(_) => {}
                }
            }
        }
        let ports = array_field(subset, "ports");
        for (position, port) in ports.iter().enumerate() {
            validate_port(port, &subset_path.child("ports").index(position), ports.len() > 1, false, errors);
        }
    }
}

/// Validates an EndpointSlice; `old` is the stored slice on updates, whose address type
/// may not change.
pub(super) fn validate_endpoint_slice(object: &Value, old: Option<&Value>, errors: &mut Vec<FieldError>) {
    let root = Path::root();
    let object = Some(object);
    let address_type = str_field(object, "addressType").unwrap_or("");
    if address_type.is_empty() {
        errors.push(FieldError::required(root.child("addressType"), ""));
    } else {
        check_enum(object, "addressType", ADDRESS_TYPES, &root, errors);
    }
    if let Some(old_type) = old.and_then(|o| o.get("addressType")).and_then(Value::as_str)
        && old_type != address_type
    {
        errors.push(FieldError::invalid(root.child("addressType"), Value::from(address_type), "field is immutable"));
    }

    let endpoints = array_field(object, "endpoints");
    if endpoints.len() > MAX_SLICE_ENDPOINTS {
        errors.push(FieldError::too_many(root.child("endpoints"), endpoints.len(), MAX_SLICE_ENDPOINTS));
    }
    for (index, endpoint) in endpoints.iter().enumerate() {
        validate_slice_endpoint(endpoint, address_type, &root.child("endpoints").index(index), errors);
    }

    let ports = array_field(object, "ports");
    let mut names = HashSet::new();
    for (index, port) in ports.iter().enumerate() {
        let port_path = root.child("ports").index(index);
        validate_port(port, &port_path, false, true, errors);
        let name = str_field(Some(port), "name").unwrap_or("");
        if !names.insert(name) {
            errors.push(FieldError::duplicate(port_path.child("name"), Value::from(name)));
        }
    }
}

fn validate_slice_endpoint(endpoint: &Value, address_type: &str, path: &Path, errors: &mut Vec<FieldError>) {
    let addresses = array_field(Some(endpoint), "addresses");
    let addresses_path = path.child("addresses");
    if addresses.is_empty() {
        errors.push(FieldError::required(addresses_path.clone(), "must contain at least 1 address"));
    } else if addresses.len() > MAX_ENDPOINT_ADDRESSES {
        errors.push(FieldError::too_many(addresses_path.clone(), addresses.len(), MAX_ENDPOINT_ADDRESSES));
    }
    for (index, address) in addresses.iter().enumerate() {
        let text = address.as_str().unwrap_or("");
        let problem = match address_type {
            "IPv4" if !text.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4()) => Some("must be a valid IPv4 address".to_string()),
            "IPv6" if !text.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) => Some("must be a valid IPv6 address".to_string()),
            "FQDN" => meta::dns1123_subdomain(text).into_iter().next(),
            _ => None,
        };
        if let Some(detail) = problem {
            errors.push(FieldError::invalid(addresses_path.index(index), address.clone(), detail));
        }
    }
    if let Some(hostname) = str_field(Some(endpoint), "hostname") {
        for problem in meta::dns1123_label(hostname) {
            errors.push(FieldError::invalid(path.child("hostname"), Value::from(hostname), problem));
        }
    }
}

/// Checks one port of an Endpoints subset or an EndpointSlice. Slices allow an absent
/// number (all ports) and a port without a name; Endpoints need the number and, when a
/// subset has several ports, the name.
fn validate_port(port: &Value, path: &Path, name_required: bool, slice: bool, errors: &mut Vec<FieldError>) {
    let port = Some(port);
    match str_field(port, "name").filter(|n| !n.is_empty()) {
        None if name_required => errors.push(FieldError::required(path.child("name"), "")),
        None => {}
        Some(name) => {
            for problem in meta::dns1123_label(name) {
                errors.push(FieldError::invalid(path.child("name"), Value::from(name), problem));
            }
        }
    }
    match field(port, "port") {
        None if slice => {}
        None => errors.push(FieldError::required(path.child("port"), "")),
        Some(number) => check_port_number(number, path.child("port"), errors),
    }
    check_enum(port, "protocol", PROTOCOLS, path, errors);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice_messages(slice: Value, old: Option<&Value>) -> Vec<String> {
        let mut errors = Vec::new();
        validate_endpoint_slice(&slice, old, &mut errors);
        errors.iter().map(FieldError::message).collect()
    }

    #[test]
    fn slice_rules() {
        let endpoint = |ip: &str| json!({"addresses": [ip], "conditions": {"ready": true}});
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"addressType": "IPv4", "endpoints": [endpoint("10.0.0.1")], "ports": [{"name": "http", "port": 80}]}), vec![]),
            (json!({"endpoints": []}), vec!["addressType: Required value"]),
            (
                json!({"addressType": "IPv4", "endpoints": [endpoint("fe80::1")]}),
                vec!["endpoints[0].addresses[0]: Invalid value: \"fe80::1\": must be a valid IPv4 address"],
            ),
            (
                json!({"addressType": "IPv4", "endpoints": [{"addresses": []}]}),
                vec!["endpoints[0].addresses: Required value: must contain at least 1 address"],
            ),
            (
                json!({"addressType": "IPv4", "ports": [{"name": "a", "port": 70000}]}),
                vec!["ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"],
            ),
            (
                json!({"addressType": "IPv4", "ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}),
                vec!["ports[1].name: Duplicate value: \"a\""],
            ),
        ];
        for (slice, expected) in cases {
            assert_eq!(slice_messages(slice.clone(), None), expected, "slice {slice}");
        }
    }

    #[test]
    fn slice_address_type_is_immutable() {
        let old = json!({"addressType": "IPv4"});
        let messages = slice_messages(json!({"addressType": "IPv6"}), Some(&old));
        assert_eq!(messages, ["addressType: Invalid value: \"IPv6\": field is immutable"]);
    }

    #[test]
    fn endpoints_rules() {
        let endpoints = json!({"subsets": [{
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "nope"}],
            "notReadyAddresses": [{"ip": ""}],
            "ports": [{"name": "a", "port": 80}, {"port": 0}],
        }]});
        let mut errors = Vec::new();
        validate_endpoints(&endpoints, &mut errors);
        let messages: Vec<String> = errors.iter().map(FieldError::message).collect();
        assert_eq!(messages, [
            "subsets[0].addresses[1].ip: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            "subsets[0].notReadyAddresses[0].ip: Required value",
            "subsets[0].ports[1].name: Required value",
            "subsets[0].ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        ]);
    }
}
