//! Pod IP allocation from the node's pod CIDR.
//!
//! A lease is a file `<dir>/<ip>` holding the sandbox id, created with `O_EXCL`, so two
//! sandboxes never hold one address, also across agent restarts and concurrent callers.
//! The first address of the range is the bridge's gateway. Allocation continues after the
//! last address handed out (stored in `<dir>/last`), so a released address is reused only
//! after the rest of the range has been used, as CNI's host-local plugin does.

use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Failure to parse the CIDR or to allocate an address.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error(
        "invalid pod CIDR {cidr:?}: expected an IPv4 network such as 10.244.0.0/24 with a prefix length between 8 and 30"
    )]
    InvalidCidr { cidr: String },
    #[error("no free address left in pod CIDR {cidr}")]
    Exhausted { cidr: String },
    #[error("failed to access IP lease {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// An IPv4 network such as `10.244.0.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn parse(text: &str) -> Result<Self, IpamError> {
        let invalid = || IpamError::InvalidCidr {
            cidr: text.to_string(),
        };
        let (addr, prefix) = text.trim().split_once('/').ok_or_else(invalid)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        if !(8..=30).contains(&prefix) {
            return Err(invalid());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Self {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    /// Returns the bridge's address, the first host address of the network.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Addresses that pods may get: after the gateway, before the broadcast address.
    fn pod_range(&self) -> (u32, u32) {
        let base = u32::from(self.network);
        let size = 1u32 << (32 - self.prefix);
        (base + 2, base + size - 2)
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Leases pod addresses from one CIDR, with the leases stored in `dir`.
#[derive(Clone, Debug)]
pub struct Ipam {
    dir: PathBuf,
    cidr: Ipv4Cidr,
}

impl Ipam {
    pub fn new(dir: PathBuf, cidr: Ipv4Cidr) -> Self {
        Self { dir, cidr }
    }

    /// Leases the next free address to `owner` (a sandbox id).
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        fs::create_dir_all(&self.dir).map_err(|source| self.io_error(&self.dir, source))?;
        let (first, last) = self.cidr.pod_range();
        let start = self
            .last_allocated()
            .map_or(first, |ip| ip.saturating_add(1));
        let count = last - first + 1;
        for offset in 0..count {
            let candidate = first + (start.saturating_sub(first) + offset) % count;
            let ip = Ipv4Addr::from(candidate);
            let path = self.dir.join(ip.to_string());
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    file.write_all(owner.as_bytes())
                        .map_err(|source| self.io_error(&path, source))?;
                    self.store_last(ip)?;
                    return Ok(ip);
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(self.io_error(&path, source)),
            }
        }
        Err(IpamError::Exhausted {
            cidr: self.cidr.to_string(),
        })
    }

    /// Releases the lease on `ip` if `owner` holds it; releasing twice is fine.
    pub fn release(&self, ip: &str, owner: &str) -> Result<(), IpamError> {
        let path = self.dir.join(ip);
        match fs::read_to_string(&path) {
            Ok(holder) if holder == owner => {
                fs::remove_file(&path).map_err(|source| self.io_error(&path, source))
            }
            Ok(_) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(self.io_error(&path, source)),
        }
    }

    fn last_allocated(&self) -> Option<u32> {
        let text = fs::read_to_string(self.dir.join("last")).ok()?;
        let ip: Ipv4Addr = text.trim().parse().ok()?;
        let (first, last) = self.cidr.pod_range();
        let value = u32::from(ip);
        (first..=last).contains(&value).then_some(value)
    }

    fn store_last(&self, ip: Ipv4Addr) -> Result<(), IpamError> {
        let path = self.dir.join("last");
        fs::write(&path, ip.to_string()).map_err(|source| self.io_error(&path, source))
    }

    fn io_error(&self, path: &Path, source: io::Error) -> IpamError {
        IpamError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_ipam(cidr: &str) -> (Ipam, PathBuf) {
        let id = super::super::state::new_id().unwrap();
        let dir = std::env::temp_dir().join(format!("cst-ipam-{}", &id[..12]));
        (Ipam::new(dir.clone(), Ipv4Cidr::parse(cidr).unwrap()), dir)
    }

    #[test]
    fn cidr_parse_rejects_bad_input() {
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/31",
            "x/24",
            "10.0.0/24",
            "10.0.0.0/-1",
        ] {
            assert!(Ipv4Cidr::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let cidr = Ipv4Cidr::parse("10.250.3.7/24").unwrap();
        assert_eq!(cidr.network, Ipv4Addr::new(10, 250, 3, 0));
        assert_eq!(cidr.gateway(), Ipv4Addr::new(10, 250, 3, 1));
    }

    #[test]
    fn allocation_skips_leased_and_exhausts() {
        // A /29 has 8 addresses: network, gateway, five for pods, broadcast.
        let (ipam, dir) = temp_ipam("10.250.9.0/29");
        let mut seen = Vec::new();
        for n in 0..5 {
            seen.push(ipam.allocate(&format!("sandbox-{n}")).unwrap());
        }
        assert_eq!(seen.first(), Some(&Ipv4Addr::new(10, 250, 9, 2)));
        assert_eq!(seen.last(), Some(&Ipv4Addr::new(10, 250, 9, 6)));
        assert!(matches!(
            ipam.allocate("sandbox-5"),
            Err(IpamError::Exhausted { .. })
        ));

        // A lease is released only by its owner.
        ipam.release("10.250.9.3", "sandbox-0").unwrap();
        assert!(
            ipam.allocate("sandbox-5").is_err(),
            "a non-owner must not free a lease"
        );
        ipam.release("10.250.9.3", "sandbox-1").unwrap();
        assert_eq!(
            ipam.allocate("sandbox-5").unwrap(),
            Ipv4Addr::new(10, 250, 9, 3)
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn allocation_survives_new_instance() {
        let (ipam, dir) = temp_ipam("10.250.10.0/24");
        let first = ipam.allocate("a").unwrap();
        ipam.release(&first.to_string(), "a").unwrap();
        let again = Ipam::new(dir.clone(), Ipv4Cidr::parse("10.250.10.0/24").unwrap());
        let second = again.allocate("b").unwrap();
        assert_ne!(first, second, "a released address is not reused right away");
        fs::remove_dir_all(dir).unwrap();
    }
}
