//! The address range for ClusterIPs and the port range for NodePorts, with their flag
//! syntax (`10.96.0.0/16`, `30000-32767`).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// A range flag that failed to parse.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RangeError {
    #[error("invalid service CIDR \"{value}\": {reason}")]
    Cidr { value: String, reason: &'static str },
    #[error("invalid node port range \"{value}\": {reason}")]
    Ports { value: String, reason: &'static str },
}

/// An IPv4 CIDR block for Service ClusterIPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterIpRange {
    network: u32,
    prefix: u8,
}

impl ClusterIpRange {
    /// The first address that may go to a Service (the network address + 1). The API server
    /// gives it to the `kubernetes` Service.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    /// Number of addresses Services may get: all but the network and broadcast addresses.
    pub fn size(&self) -> u32 {
        (self.host_mask()).saturating_sub(1)
    }

    /// The `offset`-th assignable address, counting from [`Self::first`] at 0.
    pub fn nth(&self, offset: u32) -> Option<Ipv4Addr> {
        (offset < self.size()).then(|| Ipv4Addr::from(self.network + 1 + offset))
    }

    /// Checks whether `ip` is an assignable address of the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let value = u32::from(ip);
        value & !self.host_mask() == self.network && value != self.network && value != self.network | self.host_mask()
    }

    fn host_mask(&self) -> u32 {
        u32::MAX.checked_shr(u32::from(self.prefix)).unwrap_or(0)
    }
}

impl Default for ClusterIpRange {
    /// `10.96.0.0/16`, the range kubeadm uses.
    fn default() -> Self {
        ClusterIpRange { network: u32::from(Ipv4Addr::new(10, 96, 0, 0)), prefix: 16 }
    }
}

impl FromStr for ClusterIpRange {
    type Err = RangeError;

    fn from_str(value: &str) -> Result<Self, RangeError> {
        let invalid = |reason| RangeError::Cidr { value: value.to_string(), reason };
        let (address, prefix) = value.split_once('/').ok_or_else(|| invalid("expected ADDRESS/PREFIX"))?;
        let address: Ipv4Addr = address.parse().map_err(|_| invalid("the address is not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid("the prefix length is not a number"))?;
        // A /31 or /32 leaves no address for Services once the network and broadcast
        // addresses are excluded; /8 is the widest range worth tracking key by key.
        if !(8..=30).contains(&prefix) {
            return Err(invalid("the prefix length must be between 8 and 30"));
        }
        let range = ClusterIpRange { network: u32::from(address), prefix };
        if range.network & range.host_mask() != 0 {
            return Err(invalid("the address has host bits set"));
        }
        Ok(range)
    }
}

impl fmt::Display for ClusterIpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

/// An inclusive range of node ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodePortRange {
    pub first: u16,
    pub last: u16,
}

impl NodePortRange {
    pub fn contains(&self, port: i64) -> bool {
        (i64::from(self.first)..=i64::from(self.last)).contains(&port)
    }

    pub fn size(&self) -> u32 {
        u32::from(self.last - self.first) + 1
    }
}

impl Default for NodePortRange {
    /// 30000-32767, the Kubernetes default.
    fn default() -> Self {
        NodePortRange { first: 30000, last: 32767 }
    }
}

impl FromStr for NodePortRange {
    type Err = RangeError;

    fn from_str(value: &str) -> Result<Self, RangeError> {
        let invalid = |reason| RangeError::Ports { value: value.to_string(), reason };
        let (first, last) = value.split_once('-').ok_or_else(|| invalid("expected FIRST-LAST"))?;
        let first: u16 = first.trim().parse().map_err(|_| invalid("the first port is not a number from 1 to 65535"))?;
        let last: u16 = last.trim().parse().map_err(|_| invalid("the last port is not a number from 1 to 65535"))?;
        if first == 0 || first > last {
            return Err(invalid("the first port must be at least 1 and not above the last port"));
        }
        Ok(NodePortRange { first, last })
    }
}

impl fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_bounds() {
        let range: ClusterIpRange = "10.96.0.0/16".parse().unwrap();
        assert_eq!(range, ClusterIpRange::default());
        assert_eq!(range.first(), Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(range.size(), 65_534);
        assert_eq!(range.nth(65_533), Some(Ipv4Addr::new(10, 96, 255, 254)));
        assert_eq!(range.nth(65_534), None);
        assert!(range.contains(Ipv4Addr::new(10, 96, 3, 4)));
        assert!(!range.contains(Ipv4Addr::new(10, 96, 0, 0)), "network address");
        assert!(!range.contains(Ipv4Addr::new(10, 96, 255, 255)), "broadcast address");
        assert!(!range.contains(Ipv4Addr::new(10, 97, 0, 1)));
        assert_eq!(range.to_string(), "10.96.0.0/16");
    }

    #[test]
    fn bad_cidrs_are_rejected() {
        for bad in ["10.96.0.0", "10.96.0.1/16", "10.96.0.0/31", "fd00::/64", "10.96.0.0/x"] {
            assert!(bad.parse::<ClusterIpRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn port_range_parses() {
        let range: NodePortRange = "30000-32767".parse().unwrap();
        assert_eq!(range, NodePortRange::default());
        assert_eq!(range.size(), 2768);
        assert!(range.contains(30000));
        assert!(range.contains(32767));
        assert!(!range.contains(29999));
        assert!(!range.contains(32768));
        for bad in ["30000", "32767-30000", "0-10", "1-70000"] {
            assert!(bad.parse::<NodePortRange>().is_err(), "{bad}");
        }
    }
}
