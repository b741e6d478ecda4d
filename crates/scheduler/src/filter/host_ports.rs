//! HostPorts: rejects nodes where another pod already claims one of the pod's host ports.

use super::{Filter, REASON_PORTS_IN_USE, Reason};
use crate::pod::PodInfo;
use crate::snapshot::NodeInfo;

pub struct HostPorts;

impl Filter for HostPorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
        let used = &node.usage.host_ports;
        let conflict = pod
            .host_ports
            .iter()
            .any(|wanted| used.iter().any(|taken| taken.conflicts_with(wanted)));
        if conflict { Err(vec![REASON_PORTS_IN_USE.into()]) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::test_support::{empty_pod, roomy_node};
    use crate::pod::HostPort;

    fn port(ip: &str, protocol: &str, port: i32) -> HostPort {
        HostPort { ip: ip.into(), protocol: protocol.into(), port }
    }

    #[test]
    fn host_port_table() {
        let cases = [
            ("no ports wanted", vec![], vec![port("", "TCP", 80)], true),
            ("free port", vec![port("", "TCP", 81)], vec![port("", "TCP", 80)], true),
            ("same port", vec![port("", "TCP", 80)], vec![port("", "TCP", 80)], false),
            ("wildcard against address", vec![port("", "TCP", 80)], vec![port("10.0.0.1", "TCP", 80)], false),
            ("different addresses", vec![port("10.0.0.2", "TCP", 80)], vec![port("10.0.0.1", "TCP", 80)], true),
            ("other protocol", vec![port("", "UDP", 53)], vec![port("", "TCP", 53)], true),
        ];
        for (case, wanted, used, fits) in cases {
            let mut pod = empty_pod();
            pod.host_ports = wanted;
            let mut node = roomy_node();
            node.usage.host_ports = used;
            assert_eq!(HostPorts.filter(&pod, &node).is_ok(), fits, "{case}");
        }
    }
}
