//! The kubelet-style HTTPS server that the API server proxies `kubectl logs` and
//! `kubectl exec` to.
//!
//! Every client must present a certificate that chains to the cluster CA. Routes:
//! `GET /healthz`, `GET /containerLogs/{namespace}/{pod}/{container}`,
//! `GET /attach/{namespace}/{pod}/{container}` (WebSocket) and, with a runtime,
//! `GET /exec/{namespace}/{pod}/{container}` (WebSocket) and
//! `GET|POST /portForward/{namespace}/{pod}` (SPDY/3.1, raw or in a WebSocket).

pub mod attach;
pub mod channel;
pub mod exec;
pub mod logs;
pub mod portforward;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::directory::PodDirectory;
use crate::runtime::Runtime;
use logs::{LogSelection, LogSource, stream_log};

/// Failure to start the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid serving certificate: {0}")]
    Tls(#[from] capstan_pki::PkiError),
}

/// A bound, not yet serving, kubelet server.
pub struct KubeletServer {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    directory: PodDirectory,
    router: Router,
}

/// What the routes read: the pod directory and, for exec, the runtime.
#[derive(Clone)]
pub struct ServerState {
    pub directory: PodDirectory,
    pub runtime: Option<Arc<dyn Runtime>>,
}

impl FromRef<ServerState> for PodDirectory {
    fn from_ref(state: &ServerState) -> Self {
        state.directory.clone()
    }
}

impl KubeletServer {
    /// Binds `address` with the serving certificate; clients must chain to `ca_pem`.
    pub async fn bind(
        address: SocketAddr,
        serving: &capstan_pki::CertifiedKey,
        ca_pem: &str,
        directory: PodDirectory,
    ) -> Result<Self, ServerError> {
        let config = capstan_pki::server_config(serving, ca_pem, true)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ServerError::Bind { address, source })?;
        Ok(Self {
            listener,
            acceptor,
            router: router(directory.clone()),
            directory,
        })
    }

    /// Serves `/exec` through `runtime`; without it exec answers 501.
    pub fn with_runtime(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.router = router_with_runtime(self.directory.clone(), Some(runtime));
        self
    }

    /// Returns the bound address, with the real port when `bind` requested port 0.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves connections until the task is dropped.
    pub async fn serve(self) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "failed to accept a kubelet server connection");
                    continue;
                }
            };
            let acceptor = self.acceptor.clone();
            let service = TowerToHyperService::new(self.router.clone());
            tokio::spawn(async move {
                let tls = match acceptor.accept(stream).await {
                    Ok(tls) => tls,
                    Err(error) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                };
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(error) = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await {
                    tracing::debug!(%peer, %error, "kubelet server connection ended with an error");
                }
            });
        }
    }
}

/// Builds the routes over the pod directory, without exec.
pub fn router(directory: PodDirectory) -> Router {
    router_with_runtime(directory, None)
}

/// Builds the routes over the pod directory, with exec when `runtime` is given.
pub fn router_with_runtime(directory: PodDirectory, runtime: Option<Arc<dyn Runtime>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", get(exec::exec).post(exec::exec))
        .route("/attach/{namespace}/{pod}/{container}", get(attach::attach).post(attach::attach))
        .route("/portForward/{namespace}/{pod}", get(portforward::port_forward).post(portforward::port_forward))
        .with_state(ServerState { directory, runtime })
}

fn plain(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

fn flag(query: &HashMap<String, String>, name: &str) -> bool {
    query.get(name).is_some_and(|v| v == "true" || v == "1")
}

fn number(query: &HashMap<String, String>, name: &str) -> Result<Option<usize>, String> {
    let Some(text) = query.get(name) else {
        return Ok(None);
    };
    let parsed = text
        .parse::<i64>()
        .ok()
        .and_then(|n| usize::try_from(n).ok());
    match parsed {
        Some(value) => Ok(Some(value)),
        None => Err(format!(
            "invalid {name} {text:?}: must be a non-negative integer"
        )),
    }
}

/// Parses `tailLines`, `sinceSeconds`, `sinceTime`, `limitBytes` and `timestamps`.
/// Errors are messages for a 400 response.
fn selection(query: &HashMap<String, String>) -> Result<LogSelection, String> {
    let mut since = None;
    if let Some(seconds) = number(query, "sinceSeconds")? {
        let span = jiff::SignedDuration::from_secs(i64::try_from(seconds).unwrap_or(i64::MAX));
        since = jiff::Timestamp::now().checked_sub(span).ok();
    }
    if let Some(text) = query.get("sinceTime") {
        let parsed = text
            .parse::<jiff::Timestamp>()
            .map_err(|error| format!("invalid sinceTime {text:?}: {error}"))?;
        since = Some(parsed);
    }
    Ok(LogSelection {
        tail_lines: number(query, "tailLines")?,
        since,
        limit_bytes: number(query, "limitBytes")?,
        timestamps: flag(query, "timestamps"),
    })
}

async fn container_logs(
    State(directory): State<PodDirectory>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let selection = match selection(&query) {
        Ok(selection) => selection,
        Err(message) => return plain(StatusCode::BAD_REQUEST, message),
    };
    let Some(pod_logs) = directory.pod(&namespace, &pod) else {
        return plain(
            StatusCode::NOT_FOUND,
            format!("pod \"{pod}\" not found in namespace \"{namespace}\" on this node"),
        );
    };
    let Some(logs) = pod_logs.containers.get(&container) else {
        return plain(
            StatusCode::NOT_FOUND,
            format!("container \"{container}\" not found in pod \"{pod}\""),
        );
    };
    let previous = flag(&query, "previous");
    let path = if previous {
        logs.previous.clone()
    } else {
        logs.current.clone()
    };
    let Some(path) = path else {
        if previous {
            let message =
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found");
            return plain(StatusCode::BAD_REQUEST, message);
        }
        let message = format!("container \"{container}\" in pod \"{pod}\" is waiting to start");
        return plain(StatusCode::BAD_REQUEST, message);
    };
    let source = LogSource {
        path,
        follow: flag(&query, "follow") && !previous,
        directory: directory.clone(),
        namespace,
        pod,
        container,
    };
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(stream_log(source, selection, sender));
    let body = Body::from_stream(ReceiverStream::new(receiver));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(body)
        .unwrap_or_else(|error| plain(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
