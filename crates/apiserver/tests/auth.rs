//! Authentication: a client certificate is required except on the health and version paths.

mod common;

use std::sync::Arc;

use common::TestServer;

/// Builds an HTTPS client that trusts the test CA and presents no client certificate.
fn anonymous_client(server: &TestServer) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in capstan_pki::cert_chain(server.authority.ca_cert_pem()).expect("CA certificate") {
        roots.add(cert).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().use_preconfigured_tls(tls).build().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_request_is_unauthorized() {
    let server = TestServer::start().await;
    let client = anonymous_client(&server);
    let response = client.get(format!("{}/api/v1/namespaces", server.url())).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 401);
    let status: serde_json::Value = response.json().await.expect("Status body");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Unauthorized");
    assert_eq!(status["code"], 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_needs_no_certificate() {
    let server = TestServer::start().await;
    let client = anonymous_client(&server);
    let response = client.get(format!("{}/version", server.url())).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let version: serde_json::Value = response.json().await.expect("version body");
    assert_eq!(version["major"], "1");
    assert_eq!(version["minor"], "33");
    assert_eq!(version["gitVersion"], "v1.33.0");
    let health = client.get(format!("{}/healthz", server.url())).send().await.expect("request");
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_path_is_not_found_status() {
    let server = TestServer::start().await;
    let output = server.kubectl(&["get", "--raw", "/api/v1/bogus"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("NotFound"), "{stderr}");
}
