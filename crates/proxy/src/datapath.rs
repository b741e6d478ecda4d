//! Programs the node's data path from each new Service view: nftables when the kernel
//! takes the proxy's table, else the userspace proxy for every Service address.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use tokio::process::Command;
use tokio::sync::watch;

use crate::model::ServiceEntry;
use crate::nft::{self, RuleOptions};
use crate::userspace::{Role, UserspaceProxy};
use crate::watch::ServiceView;

/// Data path that the proxy programs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// nftables when `nft` works here, else userspace.
    #[default]
    Auto,
    /// nftables only; the proxy fails when the kernel rejects the table.
    Nftables,
    /// Userspace listeners only.
    Userspace,
}

/// The data path that [`DataPath::start`] chose.
enum Active {
    Nftables {
        options: RuleOptions,
        localhost: UserspaceProxy,
    },
    Userspace {
        proxy: UserspaceProxy,
        /// Label (`lo:<name>`) of the ClusterIP addresses the proxy put on `lo`.
        label: String,
        addresses: BTreeSet<Ipv4Addr>,
    },
}

/// The programmed data path of one node.
pub struct DataPath {
    active: Active,
}

impl DataPath {
    /// Chooses the data path for `mode`. In `Auto`, an empty ruleset is applied first: if
    /// `nft` is missing or the kernel lacks nf_tables, the userspace proxy takes over.
    pub async fn start(
        mode: Mode,
        options: RuleOptions,
        address_label: String,
    ) -> Result<DataPath, nft::NftError> {
        let node_name = options.node_name.clone();
        if mode != Mode::Userspace {
            match nft::apply(&nft::render(&[], &options), &options.table).await {
                Ok(()) => {
                    if let Err(error) = nft::enable_forwarding() {
                        tracing::warn!(%error, "failed to enable IPv4 forwarding; pods may not reach Services");
                    }
                    tracing::info!(table = options.table, "proxy programs nftables");
                    let localhost = UserspaceProxy::new(Role::LocalhostNodePorts, node_name);
                    return Ok(DataPath {
                        active: Active::Nftables { options, localhost },
                    });
                }
                Err(error) if mode == Mode::Auto => {
                    tracing::warn!(%error, "nftables is unavailable; the proxy falls back to userspace listeners");
                }
                Err(error) => return Err(error),
            }
        }
        tracing::info!(label = address_label, "proxy uses userspace listeners");
        // addresses left by a proxy that was killed before it could remove them
        if let Err(error) = ip(&["-4", "addr", "flush", "dev", "lo", "label", &address_label]).await {
            tracing::warn!(label = address_label, %error, "failed to remove stale ClusterIP addresses");
        }
        Ok(DataPath {
            active: Active::Userspace {
                proxy: UserspaceProxy::new(Role::Everything, node_name),
                label: address_label,
                addresses: BTreeSet::new(),
            },
        })
    }

    /// Returns whether the kernel path is in use.
    pub fn is_nftables(&self) -> bool {
        matches!(self.active, Active::Nftables { .. })
    }

    /// Programs `view`. Errors are logged: the previous state stays in place until the
    /// next change.
    pub async fn program(&mut self, view: &[ServiceEntry]) {
        match &mut self.active {
            Active::Nftables { options, localhost } => {
                let ruleset = nft::render(view, options);
                match nft::apply(&ruleset, &options.table).await {
                    Ok(()) => tracing::debug!(services = view.len(), "programmed nftables"),
                    Err(error) => tracing::error!(%error, "failed to program nftables; keeping the previous rules"),
                }
                localhost.sync(view);
            }
            Active::Userspace { proxy, label, addresses } => {
                let wanted: BTreeSet<Ipv4Addr> = view.iter().filter_map(|s| s.cluster_ip).collect();
                sync_addresses(label, addresses, &wanted).await;
                proxy.sync(view);
            }
        }
    }

    /// Removes what the proxy programmed: its nftables table, or its listeners and the
    /// addresses with its label. Nothing else on the host is touched.
    pub async fn clean_up(&mut self) {
        match &mut self.active {
            Active::Nftables { options, localhost } => {
                localhost.stop();
                match nft::delete_table(&options.table).await {
                    Ok(()) => tracing::info!(table = options.table, "removed the proxy's nftables table"),
                    Err(error) => tracing::warn!(%error, "failed to remove the proxy's nftables table"),
                }
            }
            Active::Userspace { proxy, label, addresses } => {
                proxy.stop();
                addresses.clear();
                if let Err(error) = ip(&["-4", "addr", "flush", "dev", "lo", "label", label]).await {
                    tracing::warn!(label, %error, "failed to remove the proxy's ClusterIP addresses");
                }
            }
        }
    }
}

/// Runs the data path until `view` closes, programming every new Service view.
pub async fn run(mut data_path: DataPath, mut view: watch::Receiver<ServiceView>) -> DataPath {
    loop {
        let current = view.borrow_and_update().clone();
        data_path.program(&current).await;
        if view.changed().await.is_err() {
            return data_path;
        }
    }
}

/// Puts exactly the ClusterIPs `wanted` on `lo` with the proxy's label, so the node
/// delivers their traffic to the listeners. `lo` is used because some kernels lack the
/// dummy driver, and the label keeps the proxy's addresses apart from all others.
async fn sync_addresses(label: &str, current: &mut BTreeSet<Ipv4Addr>, wanted: &BTreeSet<Ipv4Addr>) {
    for address in wanted.difference(&current.clone()) {
        let local = format!("{address}/32");
        match ip(&["addr", "replace", &local, "dev", "lo", "label", label]).await {
            Ok(()) => {
                current.insert(*address);
            }
            Err(error) => tracing::warn!(label, %address, %error, "failed to add a ClusterIP to lo"),
        }
    }
    for address in current.clone().difference(wanted) {
        let local = format!("{address}/32");
        if let Err(error) = ip(&["addr", "del", &local, "dev", "lo"]).await {
            tracing::warn!(label, %address, %error, "failed to remove a ClusterIP from lo");
        }
        current.remove(address);
    }
}

async fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|error| format!("failed to run `ip`: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}
