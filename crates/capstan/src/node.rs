//! Facts about the host that the node agent registers: its name and address.

use std::net::{IpAddr, Ipv4Addr};

/// The host name, lower-cased so that it is a valid Node name.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .map(|name| name.to_lowercase())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "capstan-node".to_string())
}

/// The first IPv4 address of an interface that is up and not a loopback, a bridge or a
/// veth of capstan's own; 127.0.0.1 when there is none.
pub fn primary_ipv4() -> IpAddr {
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else {
        return IpAddr::V4(Ipv4Addr::LOCALHOST);
    };
    for interface in addresses {
        let name = interface.interface_name.as_str();
        if name == "lo" || name.starts_with("cst") || name.starts_with("veth") {
            continue;
        }
        if !interface.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP) {
            continue;
        }
        let Some(address) = interface.address.as_ref().and_then(|a| a.as_sockaddr_in()) else {
            continue;
        };
        return IpAddr::V4(address.ip());
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}
