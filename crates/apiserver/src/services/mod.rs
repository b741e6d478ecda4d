//! Service address allocation: ClusterIPs from the service range and NodePorts from the
//! node port range, held in the store (see [`allocator`]) so that they survive restarts
//! and are shared by every API server on the store.
//!
//! The handlers call in at three points. `create` calls [`allocate_new`] after validation
//! and before it writes the Service, and releases the claims if the write fails. `update`
//! calls [`carry_over`] before validation (a PUT without `clusterIP` or `nodePort` keeps the
//! allocated values, as in Kubernetes) and [`allocate_update`] before the write. `delete`
//! calls [`release_service`] once the Service is gone from the store. A crash between
//! these steps can leave claims and Services out of step, which [`repair`] fixes.

pub mod allocator;
mod assign;
mod ranges;
pub mod repair;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use capstan_api::resources::ResourceInfo;
use serde_json::Value;

use crate::routes::Shared;
use crate::rules;
use crate::status::ApiError;
use allocator::{Claims, Owner, ip_key, port_key};
pub use ranges::{ClusterIpRange, NodePortRange, RangeError};

/// The Service address settings of an API server.
#[derive(Clone, Debug, Default)]
pub struct ServiceNetwork {
    /// Range of ClusterIPs; its first address goes to the `kubernetes` Service.
    pub cluster_ip_range: ClusterIpRange,
    pub node_port_range: NodePortRange,
    /// Address that the `kubernetes` Service's Endpoints list. None uses the listen address,
    /// or 127.0.0.1 when the server listens on every address.
    pub advertise_address: Option<IpAddr>,
}

/// Assigns a new Service its ClusterIP and node ports. On success the returned claims are
/// the keys written, which the caller releases if the Service itself is not stored.
pub async fn allocate_new(state: &Shared, resource: &ResourceInfo, object: &mut Value) -> Result<Claims, ApiError> {
    let mut request = assign::Request::new(&state.services, state.store.as_ref(), owner(object));
    let outcome = request.assign(None, &BTreeSet::new(), object).await;
    let errors = std::mem::take(&mut request.errors);
    let claims = request.into_claims();
    match outcome {
        Ok(_) if errors.is_empty() => Ok(claims),
        Ok(_) => {
            claims.release_all(state.store.as_ref()).await;
            Err(rules::invalid(resource, object, &errors))
        }
        Err(error) => {
            claims.release_all(state.store.as_ref()).await;
            Err(error)
        }
    }
}

/// The outcome of [`allocate_update`]: keys claimed for the new version, and keys the old
/// version held that the new one no longer uses, to release once the update is stored.
#[derive(Debug, Default)]
pub struct UpdateClaims {
    pub claimed: Claims,
    pub released: Vec<String>,
}

/// Claims what the new version of a Service needs beyond what `current` holds.
pub async fn allocate_update(
    state: &Shared,
    resource: &ResourceInfo,
    current: &Value,
    object: &mut Value,
) -> Result<UpdateClaims, ApiError> {
    let old_ip = cluster_ip(current);
    let held = node_ports(current);
    let mut request = assign::Request::new(&state.services, state.store.as_ref(), owner(object));
    let outcome = request.assign(old_ip, &held, object).await;
    let errors = std::mem::take(&mut request.errors);
    let claimed = request.into_claims();
    let kept = match outcome {
        Ok(kept) if errors.is_empty() => kept,
        Ok(_) => {
            claimed.release_all(state.store.as_ref()).await;
            return Err(rules::invalid(resource, object, &errors));
        }
        Err(error) => {
            claimed.release_all(state.store.as_ref()).await;
            return Err(error);
        }
    };

    let mut released = Vec::new();
    if let Some(ip) = old_ip.filter(|ip| cluster_ip(object) != Some(*ip)) {
        released.push(ip_key(ip));
    }
    released.extend(held.difference(&kept).map(|port| port_key(*port)));
    Ok(UpdateClaims { claimed, released })
}

/// Releases the ClusterIP and node ports of a Service that was removed from the store.
pub async fn release_service(state: &Shared, object: &Value) {
    let mut keys: Vec<String> = cluster_ip(object).map(ip_key).into_iter().collect();
    keys.extend(node_ports(object).into_iter().map(port_key));
    allocator::release(state.store.as_ref(), &keys).await;
}

/// Prepares an updated Service before validation, as the reference server does. Values the
/// client left out keep what was allocated. Fields the new type cannot have are dropped
/// when they still contain the old allocation, so `kubectl apply` can switch a NodePort
/// Service back to ClusterIP without listing `nodePort: null`.
pub fn carry_over(current: &Value, object: &mut Value) {
    let old_type = service_type(current).to_string();
    let new_type = service_type(object).to_string();
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let old_spec = &current["spec"];

    // cluster IP
    let requested_ip = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
    if new_type == "ExternalName" {
        let old_ip = old_spec["clusterIP"].as_str().unwrap_or("");
        if requested_ip == old_ip {
            for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                spec.remove(field);
            }
        }
    } else if requested_ip.is_empty() && old_spec["clusterIP"].as_str().is_some_and(|ip| !ip.is_empty()) {
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if spec.get(field).is_none_or(Value::is_null) && !old_spec[field].is_null() {
                spec.insert(field.to_string(), old_spec[field].clone());
            }
        }
    }

    // node ports, matched by port number and protocol
    let exposed = matches!(new_type.as_str(), "NodePort" | "LoadBalancer");
    let was_exposed = matches!(old_type.as_str(), "NodePort" | "LoadBalancer");
    let old_ports = old_spec["ports"].as_array().cloned().unwrap_or_default();
    for port in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
        let old_node_port = old_ports
            .iter()
            .find(|old| old["port"] == port["port"] && protocol(old) == protocol(port))
            .and_then(|old| old["nodePort"].as_i64());
        let Some(old_node_port) = old_node_port else { continue };
        let new_node_port = port.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if exposed && new_node_port == 0 {
            port["nodePort"] = Value::from(old_node_port);
        } else if !exposed && was_exposed && new_node_port == old_node_port {
            if let Some(map) = port.as_object_mut() {
                map.remove("nodePort");
            }
        }
    }
    let needs_health_check = new_type == "LoadBalancer"
        && spec.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local");
    let old_health_check = old_spec["healthCheckNodePort"].as_i64().filter(|p| *p != 0);
    let new_health_check = spec.get("healthCheckNodePort").and_then(Value::as_i64).unwrap_or(0);
    if let Some(old) = old_health_check {
        if needs_health_check && new_health_check == 0 {
            spec.insert("healthCheckNodePort".into(), Value::from(old));
        } else if !needs_health_check && new_health_check == old {
            spec.remove("healthCheckNodePort");
        }
    }
}

fn owner(object: &Value) -> Owner {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_string();
    Owner { namespace: text("/metadata/namespace"), name: text("/metadata/name"), uid: text("/metadata/uid") }
}

fn service_type(object: &Value) -> &str {
    object.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP")
}

fn protocol(port: &Value) -> &str {
    port.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
}

/// The allocated IPv4 ClusterIP of a Service; None for headless and ExternalName Services.
fn cluster_ip(object: &Value) -> Option<Ipv4Addr> {
    object.pointer("/spec/clusterIP").and_then(Value::as_str).and_then(|ip| ip.parse().ok())
}

/// Every node port a Service holds: those of its ports and its health check port.
fn node_ports(object: &Value) -> BTreeSet<u16> {
    let ports = object.pointer("/spec/ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let mut held: BTreeSet<u16> = ports
        .iter()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .filter_map(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .collect();
    if let Some(port) = object.pointer("/spec/healthCheckNodePort").and_then(Value::as_u64) {
        held.extend(u16::try_from(port).ok().filter(|p| *p != 0));
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn put_without_cluster_ip_keeps_it() {
        let current = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.4.5", "clusterIPs": ["10.96.4.5"],
                                      "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        let mut object = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
        carry_over(&current, &mut object);
        assert_eq!(object["spec"]["clusterIP"], "10.96.4.5");
        assert_eq!(object["spec"]["clusterIPs"], json!(["10.96.4.5"]));
        assert_eq!(object["spec"]["ports"][0]["nodePort"], 30080);
    }

    #[test]
    fn switch_to_cluster_ip_drops_node_ports() {
        let current = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.4.5",
                                      "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        let mut object = json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.4.5",
                                         "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        carry_over(&current, &mut object);
        assert!(object["spec"]["ports"][0].get("nodePort").is_none());
        assert_eq!(node_ports(&object), BTreeSet::new());
    }

    #[test]
    fn switch_to_external_name_drops_cluster_ip() {
        let current = json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.4.5", "clusterIPs": ["10.96.4.5"],
                                      "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}});
        let mut object = current.clone();
        object["spec"]["type"] = json!("ExternalName");
        object["spec"]["externalName"] = json!("db.example.com");
        carry_over(&current, &mut object);
        assert!(object["spec"].get("clusterIP").is_none());
        assert!(object["spec"].get("ipFamilies").is_none());
    }

    #[test]
    fn held_ports_include_health_check() {
        let service = json!({"spec": {"ports": [{"nodePort": 30001}, {"nodePort": 30002}], "healthCheckNodePort": 30003}});
        assert_eq!(node_ports(&service), BTreeSet::from([30001, 30002, 30003]));
    }
}
