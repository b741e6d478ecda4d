//! Filling in a Service's ClusterIP, IP family fields and node ports, claiming each value
//! that the stored version does not hold yet.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use capstan_api::validation::{FieldError, Path};
use capstan_store::Store;
use serde_json::{Value, json};

use super::ServiceNetwork;
use super::allocator::{Claims, Owner, ip_key, port_key};
use crate::status::ApiError;

/// One Service write's allocation: the claims made so far and the field errors found.
pub(super) struct Request<'a> {
    network: &'a ServiceNetwork,
    store: &'a dyn Store,
    owner: Owner,
    claims: Claims,
    pub errors: Vec<FieldError>,
}

impl<'a> Request<'a> {
    pub fn new(network: &'a ServiceNetwork, store: &'a dyn Store, owner: Owner) -> Self {
        Request { network, store, owner, claims: Claims::default(), errors: Vec::new() }
    }

    pub fn into_claims(self) -> Claims {
        self.claims
    }

    /// Assigns the cluster IP and node ports of `object`. `old_ip` and `held` are what the
    /// stored version owns and need no new claim. Returns the node ports `object` holds
    /// afterwards. Field errors go to `self.errors`; store failures are returned.
    pub async fn assign(
        &mut self,
        old_ip: Option<Ipv4Addr>,
        held: &BTreeSet<u16>,
        object: &mut Value,
    ) -> Result<BTreeSet<u16>, ApiError> {
        let Some(spec) = object.get_mut("spec").filter(|s| s.is_object()) else {
            return Ok(BTreeSet::new());
        };
        self.assign_cluster_ip(old_ip, spec).await?;
        self.assign_node_ports(held, spec).await
    }

    async fn assign_cluster_ip(&mut self, old_ip: Option<Ipv4Addr>, spec: &mut Value) -> Result<(), ApiError> {
        let root = Path::root().child("spec");
        if spec["type"] == "ExternalName" {
            return Ok(());
        }
        self.check_families(spec, &root);

        let requested = match spec["clusterIP"].as_str().filter(|ip| !ip.is_empty()) {
            Some(ip) => ip.to_string(),
            None => spec.pointer("/clusterIPs/0").and_then(Value::as_str).unwrap_or("").to_string(),
        };
        let path = root.child("clusterIPs").index(0);
        let assigned = if requested == "None" {
            "None".to_string()
        } else if requested.is_empty() {
            let range = self.network.cluster_ip_range;
            match self.claims.claim_any_ip(self.store, &range, &self.owner).await? {
                Some(ip) => ip.to_string(),
                None => {
                    return Err(ApiError::internal(format!(
                        "failed to allocate a serviceIP: the range {range} is full"
                    )));
                }
            }
        } else {
            match requested.parse::<Ipv4Addr>() {
                Ok(ip) if Some(ip) == old_ip => {}
                Ok(ip) if !self.network.cluster_ip_range.contains(ip) => {
                    let detail = format!(
                        "provided IP is not in the valid range. The range of valid IPs is {}",
                        self.network.cluster_ip_range
                    );
                    self.errors.push(FieldError::invalid(path, json!(requested), detail));
                }
                Ok(ip) => {
                    if !self.claims.claim(self.store, ip_key(ip), &self.owner).await? {
                        self.errors.push(FieldError::invalid(path, json!(requested), "provided IP is already allocated"));
                    }
                }
                // validation has checked the syntax, so this is an IPv6 address
                Err(_) => {
                    self.errors.push(FieldError::invalid(path, json!(requested), "IPv6 is not configured on this cluster"));
                }
            }
            requested
        };

        spec["clusterIP"] = json!(assigned);
        spec["clusterIPs"] = json!([assigned]);
        spec["ipFamilies"] = json!(["IPv4"]);
        if spec.get("ipFamilyPolicy").is_none_or(Value::is_null) {
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
        Ok(())
    }

    /// This cluster is IPv4 only: IPv6 and required dual-stack are rejected.
    fn check_families(&mut self, spec: &Value, root: &Path) {
        let families = spec["ipFamilies"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        for (index, family) in families.iter().enumerate() {
            if family == "IPv6" {
                let path = root.child("ipFamilies").index(index);
                self.errors.push(FieldError::invalid(path, family.clone(), "not configured on this cluster"));
            }
        }
        if spec["ipFamilyPolicy"] == "RequireDualStack" {
            let detail = "this cluster is not configured for dual-stack services";
            self.errors.push(FieldError::invalid(root.child("ipFamilyPolicy"), json!("RequireDualStack"), detail));
        }
    }

    async fn assign_node_ports(&mut self, held: &BTreeSet<u16>, spec: &mut Value) -> Result<BTreeSet<u16>, ApiError> {
        let root = Path::root().child("spec");
        let service_type = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
        let exposed = matches!(service_type.as_str(), "NodePort" | "LoadBalancer");
        let allocate_missing = service_type == "NodePort"
            || (service_type == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"] != false);
        let mut holds = BTreeSet::new();
        if !exposed {
            return Ok(holds);
        }

        let count = spec["ports"].as_array().map_or(0, Vec::len);
        for index in 0..count {
            let path = root.child("ports").index(index).child("nodePort");
            let requested = spec["ports"][index]["nodePort"].as_i64().unwrap_or(0);
            if requested == 0 && !allocate_missing {
                continue;
            }
            if let Some(port) = self.node_port(requested, held, &holds, path).await? {
                holds.insert(port);
                spec["ports"][index]["nodePort"] = json!(port);
            }
        }

        // the health check port of LoadBalancers that keep traffic on the receiving node
        let health_path = root.child("healthCheckNodePort");
        let requested = spec["healthCheckNodePort"].as_i64().unwrap_or(0);
        let needs_health_check = service_type == "LoadBalancer" && spec["externalTrafficPolicy"] == "Local";
        if needs_health_check {
            if let Some(port) = self.node_port(requested, held, &holds, health_path).await? {
                holds.insert(port);
                spec["healthCheckNodePort"] = json!(port);
            }
        } else if requested != 0 {
            let detail = "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'";
            self.errors.push(FieldError::invalid(health_path, json!(requested), detail));
        }
        Ok(holds)
    }

    /// Claims the requested node port (0 for any free one) unless this Service already
    /// holds it. Returns None after recording a field error.
    async fn node_port(
        &mut self,
        requested: i64,
        held: &BTreeSet<u16>,
        holds: &BTreeSet<u16>,
        path: Path,
    ) -> Result<Option<u16>, ApiError> {
        let range = self.network.node_port_range;
        if requested == 0 {
            return match self.claims.claim_any_port(self.store, &range, &self.owner).await? {
                Some(port) => Ok(Some(port)),
                None => Err(ApiError::internal(format!("failed to allocate a nodePort: the range {range} is full"))),
            };
        }
        let port = u16::try_from(requested).ok().filter(|_| range.contains(requested));
        let Some(port) = port else {
            let detail = format!("provided port is not in the valid range. The range of valid ports is {range}");
            self.errors.push(FieldError::invalid(path, json!(requested), detail));
            return Ok(None);
        };
        // the same port may serve several protocols of one Service
        if held.contains(&port) || holds.contains(&port) {
            return Ok(Some(port));
        }
        if self.claims.claim(self.store, port_key(port), &self.owner).await? {
            Ok(Some(port))
        } else {
            self.errors.push(FieldError::invalid(path, json!(requested), "provided port is already allocated"));
            Ok(None)
        }
    }
}
