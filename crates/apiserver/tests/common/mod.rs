//! Test harness: an API server on 127.0.0.1 with a temporary CA, an admin kubeconfig and
//! helpers that run the real kubectl or build a `kube::Client` against it.
//!
//! Other crates can copy this module; it depends only on the public `Server` API.

#![allow(dead_code, reason = "each test binary uses a different subset of the harness")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use capstan_apiserver::{Server, ServerConfig};
use capstan_pki::{Authority, CertifiedKey};
use tokio::sync::oneshot;

/// The real kubectl matching the version the server reports (v1.33).
pub const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
/// Maximum time one kubectl command may run.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

/// A running API server and the files that reach it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub authority: Authority,
    pub admin: CertifiedKey,
    stop: Option<oneshot::Sender<()>>,
}

impl TestServer {
    /// Starts a server with an in-memory store.
    pub async fn start() -> TestServer {
        Self::start_with_store(Arc::new(capstan_store::MemoryStore::new(10_000))).await
    }

    /// Starts a server on `store`.
    pub async fn start_with_store(store: Arc<dyn capstan_store::Store>) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let authority = Authority::load_or_create(&dir.path().join("pki")).expect("CA");
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let serving = authority
            .issue_server("capstan-apiserver", &["localhost".to_string()], &[localhost])
            .expect("serving certificate");
        let kubelet_client = authority.issue_client("capstan-apiserver", &["system:masters"]).expect("kubelet client");
        let admin = authority.issue_client("admin", &["system:masters"]).expect("admin certificate");
        let config = ServerConfig {
            listen: SocketAddr::new(localhost, 0),
            store,
            serving,
            ca_pem: authority.ca_cert_pem().to_string(),
            kubelet_client,
            services: capstan_apiserver::services::ServiceNetwork::default(),
        };
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(addr, authority.ca_cert_pem(), &admin)).expect("write kubeconfig");
        TestServer { addr, dir, kubeconfig, authority, admin, stop: Some(stop) }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Writes `text` to a file in the test directory and returns its path.
    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// Starts kubectl with this server's kubeconfig and a private cache directory.
    pub fn kubectl_command(&self, args: &[&str]) -> tokio::process::Command {
        self.kubectl_binary_command(KUBECTL, args)
    }

    /// Starts the kubectl at `binary` (for example an older client) like `kubectl_command`.
    pub fn kubectl_binary_command(&self, binary: &str, args: &[&str]) -> tokio::process::Command {
        let cache = self.dir.path().join(format!("kube-cache-{}", binary.rsplit('/').next().unwrap_or("kubectl")));
        let mut command = tokio::process::Command::new(binary);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(cache)
            .args(args)
            .env_remove("KUBECONFIG")
            .kill_on_drop(true);
        command
    }

    /// Runs kubectl to completion.
    pub async fn kubectl(&self, args: &[&str]) -> Output {
        let child = self.kubectl_command(args).output();
        tokio::time::timeout(KUBECTL_TIMEOUT, child)
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .expect("run kubectl")
    }

    /// Runs kubectl and returns its stdout, failing the test when it exits non-zero.
    pub async fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args).await;
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Builds a plain HTTPS client with the admin certificate, for raw API requests.
    pub fn https_client(&self) -> reqwest::Client {
        let tls = capstan_pki::client_config(&self.admin, self.authority.ca_cert_pem()).expect("client TLS");
        reqwest::Client::builder().use_preconfigured_tls(tls).build().expect("HTTPS client")
    }

    /// Builds a kube client with the admin certificate.
    pub async fn client(&self) -> kube::Client {
        let text = std::fs::read_to_string(&self.kubeconfig).expect("read kubeconfig");
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&text).expect("parse kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .expect("client config");
        kube::Client::try_from(config).expect("client")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Renders a kubeconfig for user `admin` with the certificates embedded.
pub fn kubeconfig_yaml(addr: SocketAddr, ca_pem: &str, user: &CertifiedKey) -> String {
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: capstan\n  cluster:\n    server: https://{addr}\n    \
         certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    \
         client-key-data: {}\ncontexts:\n- name: capstan\n  context:\n    cluster: capstan\n    user: admin\n    \
         namespace: default\ncurrent-context: capstan\n",
        b64(ca_pem),
        b64(&user.cert_pem),
        b64(&user.key_pem),
    )
}
