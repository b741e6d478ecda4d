//! The CNI network of CRI pods: one bridge with host-local addresses.
//!
//! containerd's CRI plugin reads the first conflist in its `conf_dir` and reloads the
//! directory while running, so writing the file is all the setup a node needs.

use std::path::{Path, PathBuf};

/// Settings of the pod network that containerd sets up through the CNI bridge plugin.
#[derive(Clone, Debug)]
pub struct CniConfig {
    /// containerd's CNI `conf_dir`; the agent writes `10-capstan.conflist` there.
    pub conf_dir: PathBuf,
    /// Linux bridge name, at most 15 bytes (for example `cst-cri0`).
    pub bridge: String,
    /// The address range for pods, such as `10.245.0.0/24`.
    pub pod_cidr: String,
    /// Where host-local IPAM records its leases.
    pub ipam_dir: PathBuf,
}

/// The conflist file name; containerd picks the first file in name order.
pub const CONFLIST_NAME: &str = "10-capstan.conflist";

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("bridge name {bridge:?} must have 1 to 15 bytes of letters, digits, '-', '_' or '.'")]
    BridgeName { bridge: String },
    #[error("pod CIDR {cidr:?} is not an IPv4 network such as 10.245.0.0/24")]
    Cidr { cidr: String },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The conflist: bridge plugin as gateway with host-local IPAM, then loopback.
///
/// Traffic of the pods passes the host's FORWARD chain (routed, or bridged with
/// `br_netfilter`), whose policy may be DROP. Instead of the CNI firewall plugin, which
/// runs iptables for every pod, [`accept_forwarding`] accepts the whole bridge once.
pub fn conflist(config: &CniConfig) -> Result<String, CniError> {
    validate(config)?;
    let list = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "capstan",
        "plugins": [
            {
                "type": "bridge",
                "bridge": config.bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": config.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": config.ipam_dir,
                },
            },
            {"type": "loopback"},
        ],
    });
    Ok(serde_json::to_string_pretty(&list).unwrap_or_default())
}

/// Accepts traffic from and to the pod bridge in the FORWARD chain.
pub async fn accept_forwarding(config: &CniConfig) {
    let bridge = config.bridge.as_str();
    crate::runtime::forward::accept(bridge, &[&["-i", bridge, "-j", "ACCEPT"], &["-o", bridge, "-j", "ACCEPT"]]).await;
}

fn validate(config: &CniConfig) -> Result<(), CniError> {
    let bridge = &config.bridge;
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if bridge.is_empty() || bridge.len() > 15 || !bridge.chars().all(valid_char) {
        return Err(CniError::BridgeName { bridge: bridge.clone() });
    }
    let cidr_error = || CniError::Cidr { cidr: config.pod_cidr.clone() };
    let (address, prefix) = config.pod_cidr.split_once('/').ok_or_else(cidr_error)?;
    address.parse::<std::net::Ipv4Addr>().map_err(|_| cidr_error())?;
    match prefix.parse::<u8>() {
        Ok(bits) if (8..=30).contains(&bits) => Ok(()),
        _ => Err(cidr_error()),
    }
}

/// Writes the conflist into `conf_dir` (atomically, so containerd never reads half a file).
pub fn write_conflist(config: &CniConfig) -> Result<PathBuf, CniError> {
    let text = conflist(config)?;
    let write = |path: &Path, result: std::io::Result<()>| {
        result.map_err(|source| CniError::Write { path: path.to_path_buf(), source })
    };
    write(&config.conf_dir, std::fs::create_dir_all(&config.conf_dir))?;
    write(&config.ipam_dir, std::fs::create_dir_all(&config.ipam_dir))?;
    let path = config.conf_dir.join(CONFLIST_NAME);
    let staging = config.conf_dir.join(".capstan.conflist.tmp");
    write(&staging, std::fs::write(&staging, text))?;
    write(&path, std::fs::rename(&staging, &path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> CniConfig {
        CniConfig {
            conf_dir: dir.join("net.d"),
            bridge: "cst-cri0".into(),
            pod_cidr: "10.245.3.0/24".into(),
            ipam_dir: dir.join("ipam"),
        }
    }

    #[test]
    fn conflist_names_the_bridge_and_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_conflist(&config(dir.path())).expect("written");
        let value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
        let bridge = &value["plugins"][0];
        assert_eq!(bridge["bridge"], "cst-cri0");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.245.3.0/24");
        assert_eq!(value["plugins"][1]["type"], "loopback");
        assert_eq!(value["plugins"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn long_bridge_names_and_bad_ranges_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut long = config(dir.path());
        long.bridge = "cst-much-too-long0".into();
        assert!(matches!(conflist(&long), Err(CniError::BridgeName { .. })));
        let mut bad = config(dir.path());
        bad.pod_cidr = "10.245.0.0".into();
        assert!(matches!(conflist(&bad), Err(CniError::Cidr { .. })));
    }
}
