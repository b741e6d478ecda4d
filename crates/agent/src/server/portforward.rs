//! `GET|POST /portForward/{namespace}/{pod}`: `kubectl port-forward` over SPDY/3.1.
//!
//! kubectl 1.31 and later first offer a WebSocket with the subprotocol
//! `SPDY/3.1+portforward.k8s.io`, whose binary messages carry the SPDY byte stream, and
//! fall back to a plain `Upgrade: SPDY/3.1` with `X-Stream-Protocol-Version:
//! portforward.k8s.io`. Both end in the same session: for each local connection the
//! client opens an `error` stream and then a `data` stream, both with the headers `port`
//! and `requestid`. The agent connects to that port on the pod's IP, copies bytes on the
//! data stream, and writes a connection failure as text on the error stream.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use futures::{SinkExt as _, StreamExt as _};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::spdy::{self, Frame, HeaderCodec, Headers};
use super::{ServerState, plain};

/// The WebSocket subprotocol of the tunnelled SPDY session.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The port-forward protocol name in `X-Stream-Protocol-Version`.
pub const STREAM_PROTOCOL: &str = "portforward.k8s.io";
/// Maximum time to connect to the pod's port.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from the pod's connection per DATA frame.
const CHUNK: usize = 32 * 1024;

pub async fn port_forward(
    State(state): State<ServerState>,
    Path((namespace, pod)): Path<(String, String)>,
    websocket: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    mut request: Request,
) -> Response {
    let pod_ip = match pod_address(&state, &namespace, &pod).await {
        Ok(ip) => ip,
        Err(response) => return response,
    };
    tracing::info!(pod.namespace = %namespace, pod.name = %pod, pod.ip = %pod_ip, "port-forward session starting");

    // tunnelled in a WebSocket
    if let Ok(websocket) = websocket {
        let websocket = websocket.protocols([TUNNEL_PROTOCOL]);
        if websocket.selected_protocol().is_none() {
            let message = format!("port-forward over WebSocket requires the subprotocol {TUNNEL_PROTOCOL}");
            return plain(StatusCode::BAD_REQUEST, message);
        }
        return websocket.on_upgrade(move |socket| async move {
            let (session_side, tunnel_side) = tokio::io::duplex(64 * 1024);
            tokio::join!(run_session(session_side, pod_ip), tunnel(socket, tunnel_side));
            tracing::info!(pod.namespace = %namespace, pod.name = %pod, "port-forward session ended");
        });
    }

    // a plain SPDY/3.1 upgrade
    let wants_spdy = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("SPDY/3.1"));
    let upgrade = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
    let (true, Some(upgrade)) = (wants_spdy, upgrade) else {
        let message = format!(
            "port-forward requires a WebSocket upgrade with the subprotocol {TUNNEL_PROTOCOL} or an HTTP/1.1 upgrade to SPDY/3.1"
        );
        return plain(StatusCode::BAD_REQUEST, message);
    };
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => run_session(TokioIo::new(upgraded), pod_ip).await,
            Err(error) => tracing::debug!(%error, "port-forward upgrade failed"),
        }
        tracing::info!(pod.namespace = %namespace, pod.name = %pod, "port-forward session ended");
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", STREAM_PROTOCOL)
        .body(axum::body::Body::empty())
        .unwrap_or_else(|error| plain(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))
}

/// Finds the IP of the pod's sandbox, or the response that explains why there is none.
async fn pod_address(state: &ServerState, namespace: &str, pod: &str) -> Result<String, Response> {
    let Some(runtime) = state.runtime.clone() else {
        return Err(plain(StatusCode::NOT_IMPLEMENTED, "this node agent serves no port-forward".to_string()));
    };
    let Some(pod_logs) = state.directory.pod(namespace, pod) else {
        let message = format!("pod \"{pod}\" not found in namespace \"{namespace}\" on this node");
        return Err(plain(StatusCode::NOT_FOUND, message));
    };
    let sandboxes = runtime.list_sandboxes().await.map_err(|error| {
        tracing::warn!(%error, "failed to list sandboxes for port-forward");
        plain(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
    })?;
    sandboxes
        .into_iter()
        .filter(|sandbox| sandbox.pod_uid == pod_logs.uid && sandbox.ready)
        .max_by_key(|sandbox| sandbox.created_at)
        .and_then(|sandbox| sandbox.ip)
        .ok_or_else(|| {
            let message = format!("pod \"{pod}\" in namespace \"{namespace}\" has no network address yet");
            plain(StatusCode::BAD_REQUEST, message)
        })
}

/// Copies binary WebSocket messages into `io` and what `io` returns into binary messages.
async fn tunnel(socket: WebSocket, io: tokio::io::DuplexStream) {
    let (mut sink, mut incoming) = socket.split();
    let (mut reader, mut writer) = tokio::io::split(io);
    let inbound = async move {
        while let Some(Ok(message)) = incoming.next().await {
            match message {
                Message::Binary(bytes) => {
                    if writer.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = writer.shutdown().await;
    };
    let outbound = async move {
        let mut buffer = vec![0u8; CHUNK];
        while let Ok(read) = reader.read(&mut buffer).await {
            if read == 0 || sink.send(Message::Binary(buffer[..read].to_vec().into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    };
    // the session ends both directions when it stops, so neither future waits forever
    tokio::select! {
        () = inbound => {}
        () = outbound => {}
    }
}

/// What the reader asks the single frame writer to send.
enum Outgoing {
    /// Accept the client's stream with an empty header block.
    Reply(u32),
    Frame(Vec<u8>),
}

/// One forwarded connection's streams, filled in as the client opens them.
#[derive(Default)]
struct Pending {
    error_stream: Option<u32>,
    data_stream: Option<u32>,
}

/// Runs one SPDY session until the client goes away.
async fn run_session(io: impl AsyncRead + AsyncWrite + Send + 'static, pod_ip: String) {
    let (mut reader, mut writer) = tokio::io::split(io);
    let (outgoing, mut queued) = mpsc::channel::<Outgoing>(64);
    let writer_task = tokio::spawn(async move {
        let mut codec = HeaderCodec::new();
        while let Some(item) = queued.recv().await {
            let bytes = match item {
                Outgoing::Frame(bytes) => bytes,
                Outgoing::Reply(stream_id) => match codec.encode(&Headers::new()) {
                    Ok(block) => spdy::syn_reply(stream_id, &block),
                    Err(error) => {
                        tracing::warn!(%error, "failed to encode a SPDY reply");
                        break;
                    }
                },
            };
            if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });

    let mut codec = HeaderCodec::new();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut inputs: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut forwards = tokio::task::JoinSet::new();
    loop {
        let frame = match spdy::read_frame(&mut reader).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(error) => {
                tracing::debug!(%error, "port-forward session ended with an invalid frame");
                break;
            }
        };
        match frame {
            Frame::SynStream { stream_id, header_block, .. } => {
                let headers = match codec.decode(&header_block) {
                    Ok(headers) => headers,
                    Err(error) => {
                        tracing::debug!(%error, "port-forward session sent an invalid header block");
                        break;
                    }
                };
                let Some(stream) = open_stream(stream_id, &headers, &mut pending, &outgoing).await else {
                    continue;
                };
                let (input, received) = mpsc::channel(16);
                inputs.insert(stream.data_stream, input);
                forwards.spawn(forward(pod_ip.clone(), stream, received, outgoing.clone()));
            }
            Frame::Data { stream_id, flags, data } => {
                if let Some(input) = inputs.get(&stream_id)
                    && !data.is_empty()
                    && input.send(data).await.is_err()
                {
                    inputs.remove(&stream_id);
                }
                if flags & spdy::FLAG_FIN != 0 {
                    inputs.remove(&stream_id);
                }
            }
            Frame::RstStream { stream_id, .. } => {
                inputs.remove(&stream_id);
            }
            Frame::Ping { id } => {
                let _ = outgoing.send(Outgoing::Frame(spdy::ping(id))).await;
            }
            Frame::GoAway => break,
            Frame::Ignored { .. } => {}
        }
    }
    forwards.shutdown().await;
    drop(outgoing);
    let _ = writer_task.await;
}

/// A data stream paired with its error stream, ready to forward.
struct ForwardStream {
    port: u16,
    data_stream: u32,
    error_stream: u32,
}

/// Accepts a new stream and returns the pair once both of a request's streams are open.
/// Streams with missing or invalid headers are reset.
async fn open_stream(
    stream_id: u32,
    headers: &Headers,
    pending: &mut HashMap<String, Pending>,
    outgoing: &mpsc::Sender<Outgoing>,
) -> Option<ForwardStream> {
    let port = headers.get("port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
    let (Some(port), Some(kind)) = (port, headers.get("streamtype")) else {
        tracing::debug!(stream_id, ?headers, "rejecting a port-forward stream without a valid port and streamtype");
        let _ = outgoing.send(Outgoing::Frame(spdy::rst_stream(stream_id, spdy::RST_INVALID_STREAM))).await;
        return None;
    };
    let _ = outgoing.send(Outgoing::Reply(stream_id)).await;
    let request_id = headers.get("requestid").cloned().unwrap_or_else(|| format!("port-{port}"));
    let entry = pending.entry(request_id.clone()).or_default();
    match kind.as_str() {
        "error" => entry.error_stream = Some(stream_id),
        "data" => entry.data_stream = Some(stream_id),
        other => {
            tracing::debug!(stream_id, streamtype = other, "ignoring a port-forward stream of unknown type");
            return None;
        }
    }
    let (Some(error_stream), Some(data_stream)) = (entry.error_stream, entry.data_stream) else {
        return None;
    };
    pending.remove(&request_id);
    Some(ForwardStream { port, data_stream, error_stream })
}

/// Connects to the pod's port and copies bytes until the pod's side closes, then closes
/// both streams. A failed connect is reported as text on the error stream.
async fn forward(pod_ip: String, stream: ForwardStream, mut input: mpsc::Receiver<Vec<u8>>, outgoing: mpsc::Sender<Outgoing>) {
    let ForwardStream { port, data_stream, error_stream } = stream;
    let close = |id: u32| Outgoing::Frame(spdy::data(id, &[], true));
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((pod_ip.as_str(), port))).await;
    let tcp = match connected {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(error)) => {
            let message = format!("failed to connect to {pod_ip}:{port} inside the pod: {error}");
            tracing::debug!(message, "port-forward connect failed");
            let _ = outgoing.send(Outgoing::Frame(spdy::data(error_stream, message.as_bytes(), true))).await;
            let _ = outgoing.send(close(data_stream)).await;
            return;
        }
        Err(_) => {
            let message = format!("timed out connecting to {pod_ip}:{port} inside the pod");
            let _ = outgoing.send(Outgoing::Frame(spdy::data(error_stream, message.as_bytes(), true))).await;
            let _ = outgoing.send(close(data_stream)).await;
            return;
        }
    };
    let (mut from_pod, mut to_pod) = tcp.into_split();

    // client to pod: ends when the client closes its half of the data stream
    let upload = tokio::spawn(async move {
        while let Some(bytes) = input.recv().await {
            if to_pod.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to_pod.shutdown().await;
    });

    // pod to client: ends when the pod closes the connection
    let mut buffer = vec![0u8; CHUNK];
    loop {
        match from_pod.read(&mut buffer).await {
            Ok(0) => break,
            Ok(read) => {
                let frame = spdy::data(data_stream, &buffer[..read], false);
                if outgoing.send(Outgoing::Frame(frame)).await.is_err() {
                    break;
                }
            }
            Err(error) => {
                tracing::debug!(%error, port, "port-forward connection to the pod failed");
                break;
            }
        }
    }
    let _ = outgoing.send(close(data_stream)).await;
    let _ = outgoing.send(close(error_stream)).await;
    upload.abort();
}
