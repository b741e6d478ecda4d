//! Proxying a protocol upgrade (WebSocket or SPDY/3.1) to a node agent.
//!
//! The client's upgrade request goes to the agent almost unchanged, so the agent does
//! the handshake: it picks the subprotocol and computes `Sec-WebSocket-Accept` from the
//! client's key. When the agent switches protocols, the API server returns the agent's
//! 101 response to the client and copies bytes both ways until either side closes.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::node_agent::PodOnNode;
use crate::routes::{ApiRequest, Shared};
use crate::status::ApiError;

/// Maximum time to connect to the agent and receive its response to the upgrade.
const AGENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest error body read from the agent.
const MAX_ERROR_BYTES: usize = 64 * 1024;
/// Request headers that describe the client's connection to the API server rather than
/// the upgrade, so they are not forwarded.
const DROPPED_HEADERS: &[header::HeaderName] = &[
    header::HOST,
    header::AUTHORIZATION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::ACCEPT_ENCODING,
];

/// Sends the upgrade request to the agent at `path` and, when the agent switches
/// protocols, returns its 101 response and starts copying bytes between the two sides.
pub async fn proxy(
    state: &Shared,
    agent: &PodOnNode,
    request: &ApiRequest,
    path: String,
    client_upgrade: OnUpgrade,
) -> Result<Response, ApiError> {
    let node_name = agent.node_name.clone();
    let unreachable = |message: String| ApiError::ServiceUnavailable {
        message: format!("failed to reach the node agent of node {node_name}: {message}"),
    };
    let mut response = tokio::time::timeout(AGENT_TIMEOUT, send_upgrade(state, agent, request, &path))
        .await
        .map_err(|_| unreachable(format!("no response within {}s", AGENT_TIMEOUT.as_secs())))?
        .map_err(unreachable)?;

    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(agent_error(response, &node_name).await);
    }

    // answer the client with the agent's handshake, then join the two upgraded streams
    let mut switching = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in response.headers() {
        switching = switching.header(name, value);
    }
    let agent_upgrade = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let (agent_io, client_io) = match tokio::try_join!(agent_upgrade, client_upgrade) {
            Ok(streams) => streams,
            Err(error) => {
                tracing::debug!(node.name = %node_name, %error, "stream upgrade failed");
                return;
            }
        };
        let mut agent_io = TokioIo::new(agent_io);
        let mut client_io = TokioIo::new(client_io);
        match tokio::io::copy_bidirectional(&mut client_io, &mut agent_io).await {
            Ok((sent, received)) => {
                tracing::debug!(node.name = %node_name, sent, received, "stream closed");
            }
            Err(error) => tracing::debug!(node.name = %node_name, %error, "stream ended with an error"),
        }
    });
    switching.body(Body::empty()).map_err(ApiError::internal)
}

/// Opens a TLS connection to the agent with the kubelet client certificate and sends the
/// upgrade request over HTTP/1.1.
async fn send_upgrade(
    state: &Shared,
    agent: &PodOnNode,
    request: &ApiRequest,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let tcp = TcpStream::connect((agent.address.as_str(), agent.port))
        .await
        .map_err(|error| error.to_string())?;
    let server_name = ServerName::try_from(agent.address.clone()).map_err(|error| error.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(state.kubelet_tls.clone());
    let tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|error| format!("TLS handshake failed: {error}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|error| error.to_string())?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "node agent connection ended with an error");
        }
    });

    let mut upstream = Request::builder().method(request.method.clone()).uri(path);
    let headers = upstream.headers_mut().ok_or("invalid upgrade request")?;
    copy_upgrade_headers(&request.headers, headers);
    let host = HeaderValue::try_from(format!("{}:{}", agent.address, agent.port)).map_err(|error| error.to_string())?;
    headers.insert(header::HOST, host);
    let upstream = upstream.body(Empty::<Bytes>::new()).map_err(|error| error.to_string())?;
    sender.send_request(upstream).await.map_err(|error| error.to_string())
}

fn copy_upgrade_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !DROPPED_HEADERS.contains(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// Turns the agent's refusal into a `Status` with the agent's message. The agent answers
/// 4xx for a problem with the request or the container and 5xx for its own failures.
async fn agent_error(response: hyper::Response<hyper::body::Incoming>, node_name: &str) -> ApiError {
    let code = response.status();
    let limited = http_body_util::Limited::new(response.into_body(), MAX_ERROR_BYTES);
    let text = match limited.collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).trim().to_string(),
        Err(error) => format!("failed to read the response: {error}"),
    };
    let message = if text.is_empty() { format!("the node agent of node {node_name} returned {code}") } else { text };
    match code.as_u16() {
        404 => ApiError::NotFoundMessage { message },
        400..=499 => ApiError::bad_request(message),
        _ => ApiError::ServiceUnavailable { message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_headers_forwarded_without_credentials() {
        let mut from = HeaderMap::new();
        from.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        from.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        from.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("v5.channel.k8s.io"));
        from.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer secret"));
        from.insert(header::HOST, HeaderValue::from_static("api:6443"));
        let mut to = HeaderMap::new();
        copy_upgrade_headers(&from, &mut to);
        assert_eq!(to.get(header::SEC_WEBSOCKET_PROTOCOL).unwrap(), "v5.channel.k8s.io");
        assert_eq!(to.get(header::UPGRADE).unwrap(), "websocket");
        assert!(to.get(header::AUTHORIZATION).is_none());
        assert!(to.get(header::HOST).is_none());
    }
}
