//! The nftables data path: rendering the ruleset for a set of Services and applying it.
//!
//! The layout follows kube-proxy's nftables mode. A verdict map from
//! `ClusterIP . protocol . port` (and one from `protocol . NodePort`) jumps to a chain per
//! Service port, which picks an endpoint chain with `numgen random mod N`; the endpoint
//! chain DNATs to the pod. Traffic that must come back through this node is marked and
//! masqueraded in postrouting: NodePort traffic and hairpin traffic (a pod reaching
//! itself through its Service). Services without ready endpoints are rejected in filter
//! chains, so clients fail at once instead of timing out.
//!
//! Every update replaces the whole table in one `nft -f` transaction, so no packet ever sees
//! half a ruleset. Open connections keep their translation in conntrack.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::model::{Endpoint, ServiceEntry, ServicePort, local_only};

/// Packet mark bit that asks postrouting to masquerade, the bit kube-proxy uses.
const MASQUERADE_MARK: &str = "0x4000";

/// Failure to program nftables.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("failed to run {program}: {source}; the proxy needs nftables' `nft` on PATH")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`nft -f -` rejected the ruleset for table {table}: {stderr}")]
    Rejected { table: String, stderr: String },
}

/// What the rules need besides the Services.
#[derive(Clone, Debug)]
pub struct RuleOptions {
    /// Name of the `ip` table the proxy owns.
    pub table: String,
    /// This node's name, for the traffic policies `Local`.
    pub node_name: String,
    /// Pod address range. Traffic from it to a Service is masqueraded when set, for hosts
    /// where bridged replies bypass conntrack (no `br_netfilter`).
    pub masquerade_pod_cidr: Option<String>,
}

/// Renders the complete ruleset for `services`: a transaction that deletes the proxy's table
/// and defines it anew.
pub fn render(services: &[ServiceEntry], options: &RuleOptions) -> String {
    let mut plan = Plan::default();
    for service in services {
        plan.add_service(service, &options.node_name);
    }

    let table = &options.table;
    let mut out = String::new();
    // `add` first, so that `delete` succeeds on the first run.
    let _ = writeln!(out, "add table ip {table}\ndelete table ip {table}\ntable ip {table} {{");
    write_map(&mut out, "service_ips", "ipv4_addr . inet_proto . inet_service : verdict", &plan.service_ips);
    write_map(&mut out, "service_nodeports", "inet_proto . inet_service : verdict", &plan.node_ports);
    write_map(&mut out, "no_endpoint_services", "ipv4_addr . inet_proto . inet_service", &plan.no_endpoint_ips);
    write_map(&mut out, "no_endpoint_nodeports", "inet_proto . inet_service", &plan.no_endpoint_ports);
    for (name, seconds) in &plan.affinity_sets {
        let _ = writeln!(
            out,
            "\tset {name} {{\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout {seconds}s\n\t}}"
        );
    }
    write_base_chains(&mut out, options);
    for (name, rules) in &plan.chains {
        let _ = writeln!(out, "\tchain {name} {{");
        for rule in rules {
            let _ = writeln!(out, "\t\t{rule}");
        }
        let _ = writeln!(out, "\t}}");
    }
    out.push_str("}\n");
    out
}

fn write_map(out: &mut String, name: &str, kind: &str, elements: &[String]) {
    let keyword = if kind.contains(": verdict") { "map" } else { "set" };
    let _ = writeln!(out, "\t{keyword} {name} {{\n\t\ttype {kind}");
    if !elements.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
    }
    let _ = writeln!(out, "\t}}");
}

/// The hooked chains: DNAT in prerouting (pods, other hosts) and output (this node), the
/// masquerade in postrouting, and the rejects for Services without endpoints.
fn write_base_chains(out: &mut String, options: &RuleOptions) {
    let masquerade_pods = match &options.masquerade_pod_cidr {
        Some(cidr) => format!("\t\tct status dnat ip saddr {cidr} masquerade\n"),
        None => String::new(),
    };
    let _ = write!(
        out,
        "\tchain nat_prerouting {{\n\t\ttype nat hook prerouting priority -100; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat_output {{\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat_postrouting {{\n\t\ttype nat hook postrouting priority 100; policy accept;\n\
         \t\tmeta mark & {MASQUERADE_MARK} == {MASQUERADE_MARK} meta mark set meta mark ^ {MASQUERADE_MARK} masquerade\n\
         {masquerade_pods}\t}}\n\
         \tchain services {{\n\t\tip daddr . meta l4proto . th dport vmap @service_ips\n\
         \t\tfib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service_nodeports\n\t}}\n\
         \tchain filter_input {{\n\t\ttype filter hook input priority -110; policy accept;\n\
         \t\tfib daddr type local meta l4proto . th dport @no_endpoint_nodeports reject\n\t}}\n\
         \tchain filter_forward {{\n\t\ttype filter hook forward priority -110; policy accept;\n\
         \t\tip daddr . meta l4proto . th dport @no_endpoint_services reject\n\t}}\n\
         \tchain filter_output {{\n\t\ttype filter hook output priority -110; policy accept;\n\
         \t\tip daddr . meta l4proto . th dport @no_endpoint_services reject\n\t}}\n"
    );
}

/// The table's contents before rendering: map elements and the per-Service chains.
#[derive(Default)]
struct Plan {
    service_ips: Vec<String>,
    node_ports: Vec<String>,
    no_endpoint_ips: Vec<String>,
    no_endpoint_ports: Vec<String>,
    affinity_sets: Vec<(String, u32)>,
    chains: Vec<(String, Vec<String>)>,
}

impl Plan {
    fn add_service(&mut self, service: &ServiceEntry, node_name: &str) {
        let Some(cluster_ip) = service.cluster_ip else {
            return;
        };
        for port in &service.ports {
            let base = port_chain_base(service, port);
            let protocol = port.protocol.as_str();
            let ip_key = format!("{cluster_ip} . {protocol} . {}", port.port);
            let node_key = port.node_port.map(|node_port| format!("{protocol} . {node_port}"));

            if port.endpoints.is_empty() {
                self.no_endpoint_ips.push(ip_key);
                self.no_endpoint_ports.extend(node_key);
                continue;
            }

            // one endpoint chain per endpoint, shared by the cluster and external pickers
            for endpoint in &port.endpoints {
                self.add_endpoint_chain(service, port, &base, endpoint);
            }

            let cluster = local_only(&port.endpoints, service.internal_local, node_name);
            let cluster_chain = format!("svc_{base}");
            self.add_picker(&cluster_chain, service, &base, &cluster);
            self.service_ips.push(format!("{ip_key} : goto {cluster_chain}"));

            if let Some(node_key) = node_key {
                let external_chain = format!("ext_{base}");
                let mut rules = Vec::new();
                if service.external_local {
                    // the client address is kept, so replies must leave from this node
                    let local = local_only(&port.endpoints, true, node_name);
                    let local_chain = format!("local_{base}");
                    self.add_picker(&local_chain, service, &base, &local);
                    rules.push(format!("goto {local_chain}"));
                } else {
                    rules.push(format!("meta mark set meta mark | {MASQUERADE_MARK}"));
                    if service.internal_local {
                        // the ClusterIP picker sees local endpoints only, NodePorts see all
                        let all_chain = format!("svc_{base}/all");
                        self.add_picker(&all_chain, service, &base, &port.endpoints);
                        rules.push(format!("goto {all_chain}"));
                    } else {
                        rules.push(format!("goto {cluster_chain}"));
                    }
                }
                self.chains.push((external_chain.clone(), rules));
                self.node_ports.push(format!("{node_key} : goto {external_chain}"));
            }
        }
    }

    fn add_endpoint_chain(
        &mut self,
        service: &ServiceEntry,
        port: &ServicePort,
        base: &str,
        endpoint: &Endpoint,
    ) {
        let name = endpoint_chain(base, endpoint);
        let mut rules = vec![format!(
            "ip saddr {} meta mark set meta mark | {MASQUERADE_MARK}",
            endpoint.ip
        )];
        if let Some(seconds) = service.affinity_seconds {
            let set = affinity_set(base, endpoint);
            rules.push(format!("update @{set} {{ ip saddr }}"));
            self.affinity_sets.push((set, seconds));
        }
        rules.push(format!(
            "meta l4proto {} dnat to {}:{}",
            port.protocol.as_str(),
            endpoint.ip,
            endpoint.port
        ));
        self.chains.push((name, rules));
    }

    /// Adds a chain that sends each new connection to one of `endpoints`, or drops it when
    /// the traffic policy leaves none.
    fn add_picker(&mut self, name: &str, service: &ServiceEntry, base: &str, endpoints: &[Endpoint]) {
        let mut rules = Vec::new();
        if endpoints.is_empty() {
            rules.push("drop".to_string());
            self.chains.push((name.to_string(), rules));
            return;
        }
        if service.affinity_seconds.is_some() {
            for endpoint in endpoints {
                let set = affinity_set(base, endpoint);
                let chain = endpoint_chain(base, endpoint);
                rules.push(format!("ip saddr @{set} goto {chain}"));
            }
        }
        let targets: Vec<String> = endpoints
            .iter()
            .enumerate()
            .map(|(index, endpoint)| format!("{index} : goto {}", endpoint_chain(base, endpoint)))
            .collect();
        rules.push(format!(
            "numgen random mod {} vmap {{ {} }}",
            endpoints.len(),
            targets.join(", ")
        ));
        self.chains.push((name.to_string(), rules));
    }
}

/// `<namespace>/<name>/<protocol>/<port name or number>`: the part of a chain name that
/// identifies a Service port. Kubernetes names hold only `[a-z0-9.-]`, which nft accepts in
/// identifiers.
fn port_chain_base(service: &ServiceEntry, port: &ServicePort) -> String {
    let port_name = if port.name.is_empty() {
        port.port.to_string()
    } else {
        port.name.clone()
    };
    format!(
        "{}/{}/{}/{port_name}",
        service.namespace,
        service.name,
        port.protocol.as_str()
    )
}

fn endpoint_chain(base: &str, endpoint: &Endpoint) -> String {
    format!("ep_{base}/{}_{}", endpoint.ip, endpoint.port)
}

/// Set names may not contain `/`, unlike chain names.
fn affinity_set(base: &str, endpoint: &Endpoint) -> String {
    let flat: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let ip = endpoint.ip.to_string().replace('.', "_");
    format!("aff_{flat}_{ip}_{}", endpoint.port)
}

/// Applies a rendered ruleset with `nft -f -` in one transaction.
pub async fn apply(ruleset: &str, table: &str) -> Result<(), NftError> {
    run_nft(&["-f", "-"], Some(ruleset), table).await
}

/// Removes the proxy's table. A missing table is not an error.
pub async fn delete_table(table: &str) -> Result<(), NftError> {
    let script = format!("add table ip {table}\ndelete table ip {table}\n");
    run_nft(&["-f", "-"], Some(&script), table).await
}

async fn run_nft(args: &[&str], input: Option<&str>, table: &str) -> Result<(), NftError> {
    let spawn_error = |source| NftError::Spawn {
        program: "nft".to_string(),
        source,
    };
    let mut child = Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes()).await.map_err(spawn_error)?;
    }
    let output = child.wait_with_output().await.map_err(spawn_error)?;
    if output.status.success() {
        return Ok(());
    }
    Err(NftError::Rejected {
        table: table.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

/// Turns on IPv4 forwarding, which routing from pods to other pods through a ClusterIP
/// needs. Failure is returned for the caller to log: the node may already forward.
pub fn enable_forwarding() -> std::io::Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
}

/// Whether bridged traffic passes the `ip` hooks (`br_netfilter` loaded and enabled). Without
/// it, a reply from a pod to another pod on the same bridge skips conntrack, so Service
/// traffic from pods must be masqueraded.
pub fn bridge_netfilter_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|value| value.trim() == "1")
}

/// Returns the first address of a CIDR such as `10.244.0.0/24` (the bridge gateway).
pub fn gateway_of(cidr: &str) -> Option<Ipv4Addr> {
    let (network, prefix) = cidr.split_once('/')?;
    let network: Ipv4Addr = network.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|prefix| *prefix <= 30)?;
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    Some(Ipv4Addr::from((u32::from(network) & mask) + 1))
}

#[cfg(test)]
#[path = "nft_tests.rs"]
mod tests;
