//! `GET /exec/{namespace}/{pod}/{container}?command=..`: runs a command in a container
//! and streams it over a WebSocket with the channel protocol of [`super::channel`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use super::channel::{self, ClientFrame};
use super::{ServerState, plain};
use crate::pod::worker::{CONTAINER_NAME_LABEL, POD_UID_LABEL};
use crate::runtime::{ContainerState, ExecRequest, ExecSession, Runtime, RuntimeError, TerminalSize};

/// How long output may keep arriving after the command exits, for example from a
/// background child that still holds the pipe open.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Parses the `command`, `stdin`, `stdout`, `stderr` and `tty` query parameters.
/// Errors are messages for a 400 response.
pub fn parse_request(query: &[(String, String)]) -> Result<ExecRequest, String> {
    let command: Vec<String> = query
        .iter()
        .filter(|(key, _)| key == "command")
        .map(|(_, value)| value.clone())
        .collect();
    if command.is_empty() {
        return Err("you must specify at least one command for the container".to_string());
    }
    let streams = super::attach::parse_request(query)?;
    Ok(ExecRequest {
        command,
        stdin: streams.stdin,
        stdout: streams.stdout,
        stderr: streams.stderr,
        tty: streams.tty,
    })
}

pub async fn exec(
    State(state): State<ServerState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let request = match parse_request(&query) {
        Ok(request) => request,
        Err(message) => return plain(StatusCode::BAD_REQUEST, message),
    };
    let Some(runtime) = state.runtime.clone() else {
        return plain(StatusCode::NOT_IMPLEMENTED, "this node agent serves no exec".to_string());
    };
    let container_id = match find_container(&state, runtime.as_ref(), &namespace, &pod, &container).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    let upgrade = match accept_upgrade(upgrade, "exec") {
        Ok(upgrade) => upgrade,
        Err(response) => return response,
    };
    let protocol = upgrade.selected_protocol().cloned();
    tracing::info!(pod.namespace = %namespace, pod.name = %pod, container = %container, ?protocol, command = ?request.command, tty = request.tty, "exec session starting");
    upgrade.on_upgrade(move |socket| async move {
        run_session(socket, runtime, container_id, request).await;
        tracing::info!(pod.namespace = %namespace, pod.name = %pod, container = %container, "exec session ended");
    })
}

/// A close frame with status 1000. kubectl treats any other close, including one without
/// a status, as an error while it reads the final status.
pub(super) fn normal_close() -> Message {
    Message::Close(Some(CloseFrame { code: axum::extract::ws::close_code::NORMAL, reason: "".into() }))
}

/// Selects the channel subprotocol for `operation` (`exec`, `attach`), or returns the 400
/// response for a request that is no WebSocket upgrade or offers no known subprotocol.
///
/// NOTE: kubectl before 1.30, or with `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`, sends a
/// SPDY/3.1 upgrade instead, which gets this 400 because the agent speaks no SPDY.
pub(super) fn accept_upgrade(
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    operation: &str,
) -> Result<WebSocketUpgrade, Response> {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade.protocols(channel::PROTOCOLS),
        Err(rejection) => {
            let message = format!(
                "{operation} requires a WebSocket upgrade with the subprotocol {}: {rejection}",
                channel::PROTOCOL_V5
            );
            return Err(plain(StatusCode::BAD_REQUEST, message));
        }
    };
    if upgrade.selected_protocol().is_none() {
        let message = format!(
            "{operation} requires one of the WebSocket subprotocols {}",
            channel::PROTOCOLS.join(", ")
        );
        return Err(plain(StatusCode::BAD_REQUEST, message));
    }
    Ok(upgrade)
}

/// Finds the runtime's id of the running container, or the response that explains why
/// there is none.
pub(super) async fn find_container(
    state: &ServerState,
    runtime: &dyn Runtime,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<String, Response> {
    let Some(pod_logs) = state.directory.pod(namespace, pod) else {
        let message = format!("pod \"{pod}\" not found in namespace \"{namespace}\" on this node");
        return Err(plain(StatusCode::NOT_FOUND, message));
    };
    if !pod_logs.containers.contains_key(container) {
        return Err(plain(StatusCode::NOT_FOUND, format!("container not found ({container:?})")));
    }
    let containers = runtime.list_containers().await.map_err(|error| {
        tracing::warn!(%error, "failed to list containers for exec");
        plain(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
    })?;
    containers
        .into_iter()
        .filter(|status| {
            status.labels.get(POD_UID_LABEL) == Some(&pod_logs.uid)
                && status.labels.get(CONTAINER_NAME_LABEL).map(String::as_str) == Some(container)
                && matches!(status.state, ContainerState::Running { .. })
        })
        .max_by_key(|status| status.attempt)
        .map(|status| status.id)
        .ok_or_else(|| {
            let message = format!("container \"{container}\" in pod \"{pod}\" is not running");
            plain(StatusCode::BAD_REQUEST, message)
        })
}

/// Starts the command and serves it with [`serve_session`].
async fn run_session(socket: WebSocket, runtime: Arc<dyn Runtime>, container_id: String, request: ExecRequest) {
    let session = runtime.exec(&container_id, &request).await;
    serve_session(socket, session, &container_id, &request.command).await;
}

/// Pumps a session's streams until it exits, then writes the final `Status` on channel 3
/// and closes the socket. A client that goes away ends the session: an exec'd command is
/// killed, an attached container keeps running. `command` names the command in a failure
/// status; it is empty for attach.
pub(super) async fn serve_session(
    socket: WebSocket,
    session: Result<ExecSession, RuntimeError>,
    container_id: &str,
    command: &[String],
) {
    let (mut sink, mut incoming) = socket.split();
    let session = match session {
        Ok(session) => session,
        Err(error) => {
            tracing::warn!(container.id = %container_id, %error, "stream failed to start");
            let status = channel::failure_status(&format!("failed to stream container {container_id}: {error}"));
            let frame = channel::encode(channel::STATUS, status.to_string().as_bytes());
            let _ = sink.send(Message::Binary(frame.into())).await;
            let _ = sink.send(normal_close()).await;
            return;
        }
    };
    let ExecSession { stdin, stdout, stderr, resize, mut exit } = session;

    // one writer owns the sink; output pumps and the final status queue frames for it
    let (frames, mut queued) = mpsc::channel::<Vec<u8>>(16);
    let writer = tokio::spawn(async move {
        while let Some(frame) = queued.recv().await {
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.send(normal_close()).await;
    });
    let mut pumps = Vec::new();
    for (channel_id, stream) in [(channel::STDOUT, stdout), (channel::STDERR, stderr)] {
        if let Some(stream) = stream {
            pumps.push(tokio::spawn(pump_output(stream, channel_id, frames.clone())));
        }
    }
    let (stdin_sender, stdin_receiver) = mpsc::channel::<Vec<u8>>(16);
    let stdin_task = stdin.map(|stdin| tokio::spawn(pump_input(stdin, stdin_receiver)));
    let mut stdin_sender = stdin_task.as_ref().map(|_| stdin_sender);

    let exit_code = loop {
        tokio::select! {
            result = &mut exit => break result,
            message = incoming.next() => match message {
                Some(Ok(Message::Binary(data))) => match channel::decode(&data) {
                    Ok(ClientFrame::Stdin(bytes)) => {
                        if let Some(sender) = &stdin_sender {
                            let _ = sender.send(bytes.to_vec()).await;
                        }
                    }
                    Ok(ClientFrame::Close(channel::STDIN)) => stdin_sender = None,
                    Ok(ClientFrame::Close(_)) => {}
                    Ok(ClientFrame::Resize { width, height }) => {
                        if let Some(resize) = &resize
                            && let Err(error) = resize(TerminalSize { width, height })
                        {
                            tracing::debug!(%error, "failed to resize the exec terminal");
                        }
                    }
                    Err(error) => tracing::debug!(%error, "ignoring an invalid exec message"),
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    tracing::debug!(container.id = %container_id, "stream client went away; ending the session");
                    writer.abort();
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    };
    drop(stdin_sender);
    if let Some(task) = stdin_task {
        task.abort();
    }
    for pump in pumps {
        if tokio::time::timeout(OUTPUT_DRAIN, pump).await.is_err() {
            tracing::debug!(container.id = %container_id, "exec output still open after the command exited");
        }
    }
    let status = match exit_code {
        Ok(code) => channel::exit_status(command, code),
        Err(error) => channel::failure_status(&error.to_string()),
    };
    let _ = frames.send(channel::encode(channel::STATUS, status.to_string().as_bytes())).await;
    drop(frames);
    let _ = writer.await;
}

/// Copies a command's output into frames of `channel_id` until it ends.
async fn pump_output(mut stream: std::pin::Pin<Box<dyn AsyncRead + Send>>, channel_id: u8, frames: mpsc::Sender<Vec<u8>>) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) => break,
            Ok(read) => {
                if frames.send(channel::encode(channel_id, &buffer[..read])).await.is_err() {
                    break;
                }
            }
            Err(error) => {
                tracing::debug!(%error, channel = channel_id, "exec output ended with an error");
                break;
            }
        }
    }
}

/// Writes client input to the command's stdin; the stdin closes when the sender is gone.
async fn pump_input(mut stdin: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>, mut input: mpsc::Receiver<Vec<u8>>) {
    while let Some(bytes) = input.recv().await {
        if stdin.write_all(&bytes).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
    let _ = stdin.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn request_keeps_command_order() {
        let pairs = query(&[("command", "sh"), ("command", "-c"), ("command", "echo hi"), ("stdout", "true"), ("tty", "1")]);
        let request = parse_request(&pairs).expect("valid");
        assert_eq!(request.command, ["sh", "-c", "echo hi"]);
        assert!(request.stdout);
        assert!(request.tty);
        assert!(!request.stdin);
    }

    #[test]
    fn request_needs_command_and_stream() {
        let missing_command = parse_request(&query(&[("stdout", "true")])).expect_err("no command");
        assert!(missing_command.contains("at least one command"), "{missing_command}");
        let missing_stream = parse_request(&query(&[("command", "true")])).expect_err("no stream");
        assert!(missing_stream.contains("stdin, stdout, stderr"), "{missing_stream}");
    }
}
