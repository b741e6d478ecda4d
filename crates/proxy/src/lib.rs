//! Service proxy and cluster DNS for one node.
//!
//! Start reading at [`start`]: it runs the Service cache ([`watch`]), the data path
//! ([`datapath`], nftables rules from [`nft`] or the [`userspace`] proxy) and the DNS
//! server ([`dns`]), all fed from one joined view of Services and EndpointSlices
//! ([`model`]).

pub mod datapath;
pub mod dns;
pub mod model;
pub mod nft;
pub mod userspace;
pub mod watch;

use tokio::task::JoinHandle;

pub use datapath::Mode;

/// Settings of the node proxy.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub node_name: String,
    pub mode: Mode,
    /// nftables table the proxy owns; only this table is ever changed or deleted.
    pub table: String,
    /// Label of the ClusterIP addresses that userspace mode puts on `lo`: `lo:` and up to
    /// 12 more characters.
    pub address_label: String,
    /// Pod range masqueraded when it reaches a Service, for hosts whose bridges bypass
    /// netfilter; `None` when bridged traffic passes conntrack.
    pub masquerade_pod_cidr: Option<String>,
    /// The DNS server, or `None` to run without one.
    pub dns: Option<dns::DnsConfig>,
}

/// Failure to start the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Nft(#[from] nft::NftError),
    #[error(transparent)]
    Dns(#[from] dns::DnsError),
}

/// The running proxy. Call [`ProxyHandle::shutdown`] to stop it and remove its rules.
pub struct ProxyHandle {
    cache: JoinHandle<()>,
    data_path: JoinHandle<datapath::DataPath>,
    dns: Option<JoinHandle<()>>,
}

/// Starts the Service cache, the data path and the DNS server.
pub async fn start(client: kube::Client, config: ProxyConfig) -> Result<ProxyHandle, ProxyError> {
    let options = nft::RuleOptions {
        table: config.table.clone(),
        node_name: config.node_name.clone(),
        masquerade_pod_cidr: config.masquerade_pod_cidr.clone(),
    };
    let data_path = datapath::DataPath::start(config.mode, options, config.address_label.clone()).await?;

    let (sender, receiver) = tokio::sync::watch::channel(watch::ServiceView::default());
    let dns = match &config.dns {
        Some(dns_config) => {
            let mut server = dns::start(dns_config, receiver.clone())?;
            Some(tokio::spawn(async move {
                if let Err(error) = server.block_until_done().await {
                    tracing::error!(%error, "DNS server stopped");
                }
            }))
        }
        None => None,
    };
    let cache = tokio::spawn(watch::run_cache(client, sender));
    let data_path = tokio::spawn(datapath::run(data_path, receiver));
    Ok(ProxyHandle { cache, data_path, dns })
}

impl ProxyHandle {
    /// Stops watching and serving DNS, and removes the proxy's table or listeners.
    pub async fn shutdown(self) {
        if let Some(dns) = &self.dns {
            dns.abort();
        }
        // Ending the cache closes the view channel, which ends the data path loop.
        self.cache.abort();
        let _ = self.cache.await;
        match self.data_path.await {
            Ok(mut data_path) => data_path.clean_up().await,
            Err(error) => tracing::warn!(%error, "the proxy's data path task failed; its rules may remain"),
        }
    }
}
