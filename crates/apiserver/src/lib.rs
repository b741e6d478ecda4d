//! capstan's Kubernetes API server: HTTPS with client certificates, generic REST handlers
//! for every resource in `capstan_api::resources`, watch, and the subresources kubectl
//! and the components need.
//!
//! Start with [`Server`]. A request goes through `tls` (handshake, client identity),
//! `auth` (authentication, the authorization hook), `routes` (path parsing) and then one
//! handler module per verb: `create`, `update`, `delete`, `list`, `watch` and
//! `subresources`. Errors are `status::ApiError`, rendered as `Status` objects.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use serde_json::json;

mod auth;
mod bootstrap;
mod create;
mod decode;
mod delete;
pub mod discovery;
mod list;
mod meta;
pub mod openapi;
mod protobuf;
mod routes;
mod rules;
mod select;
pub mod services;
mod status;
mod subresources;
mod tls;
mod update;
mod watch;

/// Everything the API server needs to start.
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    pub store: Arc<dyn capstan_store::Store>,
    /// Certificate and key the listener presents.
    pub serving: capstan_pki::CertifiedKey,
    /// CA certificate (PEM) that client certificates must chain to.
    pub ca_pem: String,
    /// Client certificate for calls to node agents (pod logs).
    pub kubelet_client: capstan_pki::CertifiedKey,
    /// ClusterIP and NodePort ranges; `ServiceNetwork::default()` gives the Kubernetes
    /// defaults.
    pub services: services::ServiceNetwork,
}

/// Failure to start or run the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid TLS configuration: {0}")]
    Tls(#[from] capstan_pki::PkiError),
    #[error("failed to build the node agent client: {0}")]
    KubeletClient(#[source] reqwest::Error),
    #[error("failed to create the built-in object {name}: {message}")]
    Bootstrap { name: String, message: String },
}

/// A bound, not yet running API server.
pub struct Server {
    store: Arc<dyn capstan_store::Store>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    local_addr: SocketAddr,
}

impl Server {
    /// Binds the listener, prepares TLS and creates the built-in namespaces, the `process`
    /// RuntimeClass and the `kubernetes` Service when they are absent.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let tls = Arc::new(capstan_pki::server_config(&config.serving, &config.ca_pem, false)?);
        let kubelet_tls = capstan_pki::client_config(&config.kubelet_client, &config.ca_pem)?;
        let kubelet_http = reqwest::Client::builder()
            .use_preconfigured_tls(kubelet_tls.clone())
            .build()
            .map_err(ServerError::KubeletClient)?;
        let store = config.store.clone();
        let state = Arc::new(routes::AppState {
            store: config.store,
            kubelet_http,
            kubelet_tls: Arc::new(kubelet_tls),
            services: config.services,
        });
        bootstrap::create_builtin_objects(&state).await?;

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        bootstrap::create_kubernetes_service(&state, local_addr).await?;
        Ok(Server { store, listener, tls, app: router(state), local_addr })
    }

    /// Returns the address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves requests, and repairs Service allocations in the background, until
    /// `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        tracing::info!(addr = %self.local_addr, "API server listening");
        let repair = tokio::spawn(services::repair::run(self.store));
        tls::serve(self.listener, self.tls, self.app, shutdown).await;
        repair.abort();
        Ok(())
    }
}

fn router(state: routes::Shared) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(healthy))
        .route("/livez", get(healthy))
        .route("/readyz", get(healthy))
        .fallback(routes::dispatch)
        .with_state(state)
        .merge(discovery::routes())
        .merge(openapi::routes())
        .layer(axum::middleware::from_fn(auth::authenticate))
}

/// `version.Info`; the minor version decides which kubectl the dispatcher runs.
async fn version() -> axum::Json<serde_json::Value> {
    axum::Json(json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0",
        "gitCommit": concat!("capstan-", env!("CARGO_PKG_VERSION")),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": "linux/amd64",
    }))
}

async fn healthy() -> &'static str {
    "ok"
}
