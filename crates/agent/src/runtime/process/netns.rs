//! Pod networks: a network namespace per pod, joined to a host bridge by a veth pair.
//!
//! The namespace is `cst-<first 12 hex digits of the sandbox id>` under `/run/netns`. It is
//! made by `ip netns add`, so it outlives the agent. The host end of the veth pair is
//! `cst<same 12 digits>` and the pod end is `eth0`. The bridge carries the CIDR's first
//! address and is the pods' default gateway, so the node reaches every pod directly and
//! pods reach each other through the bridge.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use tokio::process::Command;
use tokio::sync::Mutex;

use super::ipam::{Ipam, IpamError, Ipv4Cidr};

/// Failure to set up or tear down a pod network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("`ip {args}` failed: {stderr}")]
    Command { args: String, stderr: String },
    #[error(
        "failed to run `ip {args}`: {source}; the process runtime needs iproute2's `ip` on PATH"
    )]
    Spawn {
        args: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Ipam(#[from] IpamError),
}

/// The network a pod sandbox was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub netns: String,
    pub veth: String,
    pub ip: Ipv4Addr,
}

/// Creates pod networks on one bridge with addresses from one CIDR.
#[derive(Debug)]
pub struct PodNetwork {
    bridge: String,
    cidr: Ipv4Cidr,
    ipam: Ipam,
    /// Serializes bridge set-up and address leases; holds whether the bridge is set up.
    lock: Mutex<bool>,
}

/// Returns the path of a named network namespace.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

impl PodNetwork {
    pub fn new(bridge: String, cidr: Ipv4Cidr, ipam_dir: PathBuf) -> Self {
        let ipam = Ipam::new(ipam_dir, cidr);
        Self {
            bridge,
            cidr,
            ipam,
            lock: Mutex::new(false),
        }
    }

    /// Creates the bridge and its gateway address now rather than with the first pod, so
    /// that services listening on the gateway (the cluster DNS) are reachable before any
    /// process pod runs.
    pub async fn prepare(&self) -> Result<(), NetworkError> {
        let mut bridge_ready = self.lock.lock().await;
        self.ensure_bridge(&mut bridge_ready).await
    }

    /// Creates the namespace, the veth pair and the addresses for sandbox `id`. On failure
    /// whatever was made is removed again.
    pub async fn attach(&self, id: &str) -> Result<Attachment, NetworkError> {
        let short = &id[..id.len().min(12)];
        let attachment = {
            // the bridge and the address lease need the lock; the pod's own links do not,
            // so many sandboxes can be wired up at once
            let mut bridge_ready = self.lock.lock().await;
            self.ensure_bridge(&mut bridge_ready).await?;
            Attachment {
                netns: format!("cst-{short}"),
                veth: format!("cst{short}"),
                ip: self.ipam.allocate(id)?,
            }
        };
        if let Err(err) = self.configure(&attachment).await {
            self.detach(
                id,
                Some(&attachment.netns),
                Some(&attachment.veth),
                Some(&attachment.ip.to_string()),
            )
            .await;
            return Err(err);
        }
        Ok(attachment)
    }

    /// Two `ip -batch` runs: the host side (namespace, veth pair, hairpin bridge port), then the
    /// pod side (loopback, address, default route).
    async fn configure(&self, attachment: &Attachment) -> Result<(), NetworkError> {
        let Attachment { netns, veth, ip } = attachment;
        let bridge = &self.bridge;
        let gateway = self.cidr.gateway();
        let prefix = self.cidr.prefix;
        run_ip_batch(
            None,
            &[
                format!("netns add {netns}"),
                format!("link add {veth} type veth peer name eth0 netns {netns}"),
                format!("link set {veth} master {bridge} up"),
                // with br_netfilter, a pod's packet to its own Service is DNATed while
                // still on the bridge and must leave through the port it came in on
                format!("link set {veth} type bridge_slave hairpin on"),
            ],
        )
        .await?;
        run_ip_batch(
            Some(netns),
            &[
                "link set lo up".to_string(),
                format!("addr add {ip}/{prefix} dev eth0"),
                "link set eth0 up".to_string(),
                format!("route add default via {gateway}"),
            ],
        )
        .await
    }

    /// Removes a pod's namespace, veth pair and IP lease. Parts already gone are skipped,
    /// so this can run any number of times. Failures are logged, not returned, because a
    /// half-removed network must not block the rest of the removal.
    pub async fn detach(
        &self,
        id: &str,
        netns: Option<&str>,
        veth: Option<&str>,
        ip: Option<&str>,
    ) {
        if let Some(netns) = netns.filter(|name| netns_path(name).exists())
            && let Err(err) = run_ip(&["netns", "delete", netns]).await
        {
            tracing::warn!(sandbox.id = id, netns, error = %err, "failed to delete network namespace");
        }
        // Deleting the namespace destroys eth0 and with it the host end; this covers a
        // host end left by a failed set-up.
        // The kernel removes the host end shortly after the namespace, so a veth that
        // vanished between the check and the delete is not an error.
        if let Some(veth) = veth.filter(|name| Path::new("/sys/class/net").join(name).exists())
            && let Err(err) = run_ip(&["link", "delete", veth]).await
            && Path::new("/sys/class/net").join(veth).exists()
        {
            tracing::warn!(sandbox.id = id, veth, error = %err, "failed to delete veth");
        }
        if let Some(ip) = ip
            && let Err(err) = self.ipam.release(ip, id)
        {
            tracing::warn!(sandbox.id = id, ip, error = %err, "failed to release pod IP");
        }
    }

    /// Creates the bridge with the gateway address unless it exists, and lets traffic
    /// between its ports pass the host's FORWARD chain. `ready` records that this was done
    /// for the bridge as it exists now, so later sandboxes only check that it still exists.
    async fn ensure_bridge(&self, ready: &mut bool) -> Result<(), NetworkError> {
        let bridge = self.bridge.as_str();
        let exists = Path::new("/sys/class/net").join(bridge).exists();
        if exists && *ready {
            return Ok(());
        }
        if !exists {
            run_ip(&["link", "add", "name", bridge, "type", "bridge"]).await?;
            tracing::info!(bridge, cidr = %self.cidr, "created pod bridge");
        }
        let gateway = format!("{}/{}", self.cidr.gateway(), self.cidr.prefix);
        run_ip(&["addr", "replace", &gateway, "dev", bridge]).await?;
        run_ip(&["link", "set", bridge, "up"]).await?;
        allow_bridge_forwarding(bridge).await;
        *ready = true;
        Ok(())
    }
}

/// With `br_netfilter` loaded, frames between two ports of a bridge pass iptables' FORWARD
/// chain. An ACCEPT rule for this bridge only keeps pod-to-pod traffic working there.
async fn allow_bridge_forwarding(bridge: &str) {
    let enabled = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|value| value.trim() == "1");
    if enabled {
        crate::runtime::forward::accept(bridge, &[&["-i", bridge, "-o", bridge, "-j", "ACCEPT"]]).await;
    }
}

/// Runs `lines` as one `ip -batch` (inside `netns` when given), so a pod's set-up costs
/// two processes instead of one per command. Fails with the stderr of the first failing
/// line.
async fn run_ip_batch(netns: Option<&str>, lines: &[String]) -> Result<(), NetworkError> {
    use tokio::io::AsyncWriteExt as _;

    let mut args: Vec<&str> = Vec::new();
    if let Some(netns) = netns {
        args.extend(["-n", netns]);
    }
    args.extend(["-batch", "-"]);
    let joined = format!("{} <<< {:?}", args.join(" "), lines.join("; "));
    let spawn_error = |source| NetworkError::Spawn { args: joined.clone(), source };
    let mut child = Command::new("ip")
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        let script = lines.join("\n") + "\n";
        stdin.write_all(script.as_bytes()).await.map_err(spawn_error)?;
    }
    let output = child.wait_with_output().await.map_err(spawn_error)?;
    if output.status.success() {
        return Ok(());
    }
    Err(NetworkError::Command { args: joined, stderr: String::from_utf8_lossy(&output.stderr).trim().to_string() })
}

/// Runs `ip` with `args` and returns its stderr as the error when it fails.
pub async fn run_ip(args: &[&str]) -> Result<(), NetworkError> {
    let joined = args.join(" ");
    let output = Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|source| NetworkError::Spawn {
            args: joined.clone(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(NetworkError::Command {
        args: joined,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}
