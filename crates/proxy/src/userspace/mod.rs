//! The userspace data path: sockets on Service addresses that copy each connection (TCP)
//! or each client's datagrams (UDP) to a ready endpoint.
//!
//! It serves in two roles. Next to nftables it listens on `127.0.0.1:<NodePort>` only,
//! because the kernel does not route DNATed packets with a loopback source unless
//! `route_localnet` is turned on for the whole host. Without nftables it is the whole data
//! path: it listens on every NodePort and on every ClusterIP, which it adds to `lo` so
//! the node (and pods, through their gateway) deliver that traffic locally.

mod balance;
mod tcp;
mod udp;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use tokio::task::JoinHandle;

pub use balance::Balancer;

use crate::model::{Endpoint, Protocol, ServiceEntry};

/// Set of Service addresses the userspace proxy listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Only `127.0.0.1:<NodePort>`, next to the nftables rules.
    LocalhostNodePorts,
    /// Every ClusterIP and NodePort, when the kernel path is unavailable.
    Everything,
}

/// One address and protocol the proxy listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frontend {
    pub address: SocketAddr,
    pub protocol: Protocol,
}

/// A frontend's endpoints and its balancing state, shared with its listener task.
pub type SharedBalancer = Arc<RwLock<Balancer>>;

/// Lists the frontends that `view` requests in `role`, each with the endpoints its traffic may
/// reach on node `node_name` and the Service's affinity timeout.
pub fn frontends(
    view: &[ServiceEntry],
    role: Role,
    node_name: &str,
) -> BTreeMap<Frontend, (Vec<Endpoint>, Option<u32>, String)> {
    let mut wanted = BTreeMap::new();
    for service in view {
        let label = format!("{}/{}", service.namespace, service.name);
        for port in &service.ports {
            if let Some(node_port) = port.node_port {
                let host = match role {
                    Role::LocalhostNodePorts => Ipv4Addr::LOCALHOST,
                    Role::Everything => Ipv4Addr::UNSPECIFIED,
                };
                let frontend = Frontend {
                    address: SocketAddr::from((host, node_port)),
                    protocol: port.protocol,
                };
                let endpoints = service.external_endpoints(port, node_name);
                wanted.insert(frontend, (endpoints, service.affinity_seconds, label.clone()));
            }
            if let (Role::Everything, Some(cluster_ip)) = (role, service.cluster_ip) {
                let frontend = Frontend {
                    address: SocketAddr::from((cluster_ip, port.port)),
                    protocol: port.protocol,
                };
                let endpoints = service.cluster_endpoints(port, node_name);
                wanted.insert(frontend, (endpoints, service.affinity_seconds, label.clone()));
            }
        }
    }
    wanted
}

struct Running {
    balancer: SharedBalancer,
    task: JoinHandle<()>,
}

/// The set of running listeners, reconciled against each new view.
pub struct UserspaceProxy {
    role: Role,
    node_name: String,
    running: BTreeMap<Frontend, Running>,
}

impl UserspaceProxy {
    pub fn new(role: Role, node_name: String) -> Self {
        Self {
            role,
            node_name,
            running: BTreeMap::new(),
        }
    }

    /// Starts listeners for new frontends, stops those that no Service requests, and hands
    /// changed endpoint lists to running listeners. A frontend whose socket cannot be bound
    /// is logged and tried again on the next sync.
    pub fn sync(&mut self, view: &[ServiceEntry]) {
        let wanted = frontends(view, self.role, &self.node_name);

        self.running.retain(|frontend, running| {
            let keep = wanted.contains_key(frontend) && !running.task.is_finished();
            if !keep {
                running.task.abort();
                tracing::debug!(address = %frontend.address, protocol = frontend.protocol.as_str(), "stopped userspace listener");
            }
            keep
        });

        for (frontend, (endpoints, affinity, service)) in wanted {
            if let Some(running) = self.running.get(&frontend) {
                let mut balancer = running.balancer.write().unwrap_or_else(|e| e.into_inner());
                balancer.set_endpoints(endpoints, affinity);
                continue;
            }
            let balancer = Arc::new(RwLock::new(Balancer::new(endpoints, affinity)));
            let started = match frontend.protocol {
                Protocol::Tcp => tcp::listen(frontend.address, balancer.clone(), service.clone()),
                Protocol::Udp => udp::listen(frontend.address, balancer.clone(), service.clone()),
            };
            match started {
                Ok(task) => {
                    tracing::debug!(address = %frontend.address, protocol = frontend.protocol.as_str(), service, "started userspace listener");
                    self.running.insert(frontend, Running { balancer, task });
                }
                Err(error) => tracing::warn!(
                    address = %frontend.address,
                    protocol = frontend.protocol.as_str(),
                    service,
                    %error,
                    "failed to listen on a Service address; retrying on the next change"
                ),
            }
        }
    }

    /// Stops every listener.
    pub fn stop(&mut self) {
        for running in self.running.values() {
            running.task.abort();
        }
        self.running.clear();
    }
}

impl Drop for UserspaceProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds a socket with `IP_FREEBIND`, so a ClusterIP listener can start before the address
/// is on `lo`, and with `SO_REUSEADDR` for quick restarts.
pub(crate) fn bind_socket(address: SocketAddr, kind: socket2::Type) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, kind, None)?;
    socket.set_reuse_address(true)?;
    socket.set_freebind_v4(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::build_services;
    use crate::model::tests::{web_service, web_slice};

    #[test]
    fn localhost_role_lists_node_ports_only() {
        let view = build_services(&[web_service()], &[web_slice()]);
        let wanted = frontends(&view, Role::LocalhostNodePorts, "n1");
        let addresses: Vec<String> = wanted.keys().map(|f| f.address.to_string()).collect();
        assert_eq!(addresses, ["127.0.0.1:30080"]);
    }

    #[test]
    fn everything_role_lists_cluster_ips() {
        let view = build_services(&[web_service()], &[web_slice()]);
        let wanted = frontends(&view, Role::Everything, "n1");
        let addresses: Vec<String> = wanted.keys().map(|f| f.address.to_string()).collect();
        assert_eq!(addresses, ["0.0.0.0:30080", "10.96.0.10:80"]);
        let (endpoints, _, service) = &wanted[&Frontend {
            address: "10.96.0.10:80".parse().unwrap(),
            protocol: Protocol::Tcp,
        }];
        assert_eq!(service, "default/web");
        assert_eq!(endpoints.len(), 2, "only ready endpoints are balanced");
    }
}
