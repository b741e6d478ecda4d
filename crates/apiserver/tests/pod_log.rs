//! `kubectl logs` through the API server to a node agent's `containerLogs` endpoint.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use common::TestServer;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::ServiceExt;

type Seen = Arc<Mutex<Vec<String>>>;

async fn container_logs(
    State(seen): State<Seen>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> String {
    seen.lock().expect("lock").push(format!("{namespace}/{pod}/{container}?{}", query.unwrap_or_default()));
    format!("hello from {container}\n")
}

/// Starts a node agent stand-in that requires a client certificate from the cluster CA.
async fn start_fake_agent(server: &TestServer) -> (SocketAddr, Seen) {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let serving = server.authority.issue_server("n1", &[], &[localhost]).expect("agent certificate");
    let tls = capstan_pki::server_config(&serving, server.authority.ca_cert_pem(), true).expect("agent TLS");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(localhost, 0)).await.expect("bind agent");
    let addr = listener.local_addr().expect("agent address");
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .with_state(seen.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |request| app.clone().oneshot(request));
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, seen)
}

async fn create(server: &TestServer, name: &str, manifest: &str) {
    let path = server.write_file(name, manifest);
    server.kubectl_ok(&["create", "-f", path.to_str().expect("path")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_come_from_node_agent() {
    let server = TestServer::start().await;
    let (agent, seen) = start_fake_agent(&server).await;
    let node = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 127.0.0.1\n  \
         daemonEndpoints:\n    kubeletEndpoint:\n      Port: {}\n",
        agent.port()
    );
    create(&server, "node.yaml", &node).await;
    create(
        &server,
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: one\nspec:\n  nodeName: n1\n  containers:\n  - name: main\n    image: host\n",
    )
    .await;

    let output = server.kubectl_ok(&["logs", "one", "--tail=5"]).await;
    assert_eq!(output, "hello from main\n");
    let requests = seen.lock().expect("lock").clone();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].starts_with("default/one/main?"), "{requests:?}");
    assert!(requests[0].contains("tailLines=5"), "{requests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_need_container_when_several() {
    let server = TestServer::start().await;
    create(
        &server,
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  nodeName: n1\n  containers:\n  - name: a\n    image: host\n  \
         - name: b\n    image: host\n",
    )
    .await;
    // kubectl picks a default container itself, so the request goes out raw
    let output = server.kubectl(&["get", "--raw", "/api/v1/namespaces/default/pods/web/log"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("a container name must be specified for pod web, choose one of: [a b]"), "{stderr}");
}
