//! An API server in this process, on the embedded store in a temporary directory, with a
//! fresh certificate authority and an administrator kubeconfig beside it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use capstan_apiserver::{Server, ServerConfig};
use capstan_pki::{Authority, CertifiedKey};
use capstan_store::{EmbeddedOptions, EmbeddedStore};
use tokio::sync::oneshot;

/// A running in-process API server; it stops when dropped.
pub struct InProcessServer {
    pub kubeconfig: PathBuf,
    stop: Option<oneshot::Sender<()>>,
}

impl InProcessServer {
    /// Starts a server on 127.0.0.1 with a free port, keeping its files in `dir`.
    pub async fn start(dir: &Path) -> anyhow::Result<InProcessServer> {
        let authority = Authority::load_or_create(&dir.join("pki")).context("failed to create the CA")?;
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let serving = authority.issue_server("capstan-apiserver", &["localhost".to_string()], &[localhost])?;
        let kubelet_client = authority.issue_client("capstan-apiserver", &["system:masters"])?;
        let admin = authority.issue_client("admin", &["system:masters"])?;

        // The same store `capstan up` uses, so every create waits for a durable commit.
        let store = EmbeddedStore::open(&dir.join("store.redb"), EmbeddedOptions::default())
            .context("failed to open the embedded store")?;
        let server = Server::bind(ServerConfig {
            listen: SocketAddr::new(localhost, 0),
            store: Arc::new(store),
            serving,
            ca_pem: authority.ca_cert_pem().to_string(),
            kubelet_client,
            services: capstan_apiserver::services::ServiceNetwork::default(),
        })
        .await
        .context("failed to start the in-process API server")?;
        let addr = server.local_addr();

        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let kubeconfig = dir.join("kubeconfig");
        let text = render_kubeconfig(&format!("https://{addr}"), authority.ca_cert_pem(), &admin);
        std::fs::write(&kubeconfig, text)
            .with_context(|| format!("failed to write {}", kubeconfig.display()))?;
        tracing::info!(%addr, "in-process API server started");
        Ok(InProcessServer { kubeconfig, stop: Some(stop) })
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Renders a kubeconfig for user `admin` with the certificates embedded.
fn render_kubeconfig(server_url: &str, ca_pem: &str, admin: &CertifiedKey) -> String {
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: capstan\n  cluster:\n    server: {server_url}\n    \
         certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    \
         client-key-data: {}\ncontexts:\n- name: capstan\n  context:\n    cluster: capstan\n    user: admin\n    \
         namespace: default\ncurrent-context: capstan\n",
        encode(ca_pem),
        encode(&admin.cert_pem),
        encode(&admin.key_pem),
    )
}

/// Builds a client from a kubeconfig file. Each call makes a client with its own
/// connection pool, as a separate kubectl or controller process would have.
pub async fn client_from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let text = std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
        .with_context(|| format!("invalid kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("unusable kubeconfig {}", path.display()))?;
    kube::Client::try_from(config).context("failed to build the API client")
}
