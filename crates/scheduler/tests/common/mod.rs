//! An API server on 127.0.0.1 with a temporary CA and an in-memory store, and a
//! `kube::Client` with an admin client certificate.

#![allow(dead_code, reason = "each test binary uses a different subset of the harness")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use capstan_apiserver::{Server, ServerConfig};
use capstan_pki::Authority;
use tokio::sync::oneshot;

/// A running API server; dropping it stops the server.
pub struct TestServer {
    pub client: kube::Client,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

/// Starts a server and returns it with an admin client.
pub async fn start_server() -> TestServer {
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
        store: Arc::new(capstan_store::MemoryStore::new(10_000)),
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

    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: capstan\n  cluster:\n    server: https://{addr}\n    \
         certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    \
         client-key-data: {}\ncontexts:\n- name: capstan\n  context:\n    cluster: capstan\n    user: admin\n\
         current-context: capstan\n",
        b64(authority.ca_cert_pem()),
        b64(&admin.cert_pem),
        b64(&admin.key_pem),
    );
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml).expect("parse kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .expect("client config");
    let client = kube::Client::try_from(config).expect("client");
    TestServer { client, _dir: dir, _stop: stop }
}

/// Polls `check` every 100 ms until it returns `Some`, failing the test after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
