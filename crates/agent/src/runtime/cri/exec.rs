//! Streaming commands in CRI containers (`kubectl exec`) through the runtime's
//! streaming server.
//!
//! CRI `Exec` returns a one-time URL on containerd's streaming server. The agent opens it
//! as a WebSocket with the `v4.channel.k8s.io` subprotocol. Every message starts with a
//! channel byte (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize). The error channel
//! carries a `metav1.Status` whose `ExitCode` cause is the command's exit code.
//!
//! NOTE: the v4 protocol cannot close stdin on its own, so a command that reads stdin to
//! its end does not see EOF when the caller closes it. Dropping the session closes the
//! connection but does not kill the command inside the container.

use futures::{FutureExt as _, SinkExt as _, StreamExt as _};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tonic::transport::Channel;

use crate::runtime::{ExecRequest, ExecSession, ResizeFn, RuntimeError, TerminalSize};

/// The WebSocket subprotocol of the streaming server.
const PROTOCOL: &str = "v4.channel.k8s.io";
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// Buffer of each output pipe between the WebSocket and the session's reader.
const PIPE_BYTES: usize = 64 * 1024;

/// Starts `request.command` in container `id` and returns its streams.
pub async fn exec(
    mut client: RuntimeServiceClient<Channel>,
    id: &str,
    request: &ExecRequest,
) -> Result<ExecSession, RuntimeError> {
    // CRI rejects a separate stderr with a terminal, whose output is all on stdout
    let exec = cri::ExecRequest {
        container_id: id.to_string(),
        cmd: request.command.clone(),
        tty: request.tty,
        stdin: request.stdin,
        stdout: request.stdout,
        stderr: request.stderr && !request.tty,
    };
    let response = client.exec(exec).await.map_err(|status| match status.code() {
        tonic::Code::NotFound => RuntimeError::ContainerNotFound { id: id.to_string() },
        _ => RuntimeError::Internal(format!("CRI Exec in container {id} failed: {}", status.message())),
    })?;
    let url = websocket_url(&response.into_inner().url);
    let mut upgrade = url
        .as_str()
        .into_client_request()
        .map_err(|error| RuntimeError::Internal(format!("invalid streaming URL {url}: {error}")))?;
    upgrade.headers_mut().insert("Sec-WebSocket-Protocol", http::HeaderValue::from_static(PROTOCOL));
    let (socket, _) = tokio_tungstenite::connect_async(upgrade).await.map_err(|error| {
        RuntimeError::Internal(format!("failed to open the exec stream of container {id}: {error}"))
    })?;
    let (mut sink, mut source) = socket.split();

    // outgoing frames: stdin data and terminal sizes
    let (frames, mut outgoing) = mpsc::channel::<Vec<u8>>(16);
    tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let stdin = request.stdin.then(|| {
        let (writer, mut reader) = tokio::io::duplex(PIPE_BYTES);
        let frames = frames.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 16 * 1024];
            while let Ok(read) = reader.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
                let mut frame = Vec::with_capacity(read + 1);
                frame.push(STDIN);
                frame.extend_from_slice(&buffer[..read]);
                if frames.send(frame).await.is_err() {
                    break;
                }
            }
        });
        writer
    });
    let resize: Option<ResizeFn> = request.tty.then(|| {
        let frames = frames.clone();
        let resize: ResizeFn = Box::new(move |size: TerminalSize| {
            let mut frame = vec![RESIZE];
            frame.extend(format!("{{\"Width\":{},\"Height\":{}}}", size.width, size.height).into_bytes());
            frames.try_send(frame).map_err(|error| std::io::Error::other(error.to_string()))
        });
        resize
    });

    // incoming frames: output to the pipes, then the exit status
    let (stdout_writer, stdout) = pipe(request.stdout);
    let (stderr_writer, stderr) = pipe(request.stderr && !request.tty);
    let (exit_sender, exit) = oneshot::channel();
    let container = id.to_string();
    tokio::spawn(async move {
        let mut outputs = Outputs { stdout: stdout_writer, stderr: stderr_writer, status: Vec::new() };
        while let Some(message) = source.next().await {
            match message {
                Ok(Message::Binary(data)) => outputs.deliver(&data).await,
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let code = outputs.finish().await;
        tracing::debug!(container.id = %container, exit_code = code, "exec finished");
        let _ = exit_sender.send(code);
        drop(frames);
    });

    let exit = async move {
        exit.await
            .map_err(|_| RuntimeError::Internal("the exec stream ended without an exit status".to_string()))
    }
    .boxed();
    Ok(ExecSession {
        stdin: stdin.map(|writer| Box::pin(writer) as _),
        stdout: stdout.map(|reader| Box::pin(reader) as _),
        stderr: stderr.map(|reader| Box::pin(reader) as _),
        resize,
        exit,
    })
}

/// An output pipe when the stream was requested: the writer for the socket task and the
/// reader for the session.
fn pipe(wanted: bool) -> (Option<tokio::io::DuplexStream>, Option<tokio::io::DuplexStream>) {
    if !wanted {
        return (None, None);
    }
    let (writer, reader) = tokio::io::duplex(PIPE_BYTES);
    (Some(writer), Some(reader))
}

/// The session's side of the incoming frames.
struct Outputs {
    stdout: Option<tokio::io::DuplexStream>,
    stderr: Option<tokio::io::DuplexStream>,
    status: Vec<u8>,
}

impl Outputs {
    async fn deliver(&mut self, frame: &[u8]) {
        let Some((&channel, data)) = frame.split_first() else { return };
        // the server opens each channel with an empty frame
        if data.is_empty() {
            return;
        }
        let target = match channel {
            STDOUT => self.stdout.as_mut(),
            STDERR => self.stderr.as_mut(),
            ERROR => {
                self.status.extend_from_slice(data);
                return;
            }
            _ => None,
        };
        // a reader that went away only loses its own stream
        if let Some(writer) = target
            && writer.write_all(data).await.is_err()
        {
            tracing::debug!(channel, "exec output dropped: the reader is gone");
        }
    }

    /// Closes the pipes and returns the exit code from the error channel's status. A
    /// failure without an exit code (the command could not start) goes to stderr.
    async fn finish(mut self) -> i32 {
        let (code, message) = exit_status(&self.status);
        if let (Some(message), Some(stderr)) = (message, self.stderr.as_mut().or(self.stdout.as_mut())) {
            let _ = stderr.write_all(format!("{message}\n").as_bytes()).await;
        }
        code
    }
}

/// Reads the exit code from a `metav1.Status`: 0 for `Success` (or no status at all),
/// the `ExitCode` cause for a failed command, and 127 or 126 with the message when the
/// command did not start.
pub fn exit_status(status: &[u8]) -> (i32, Option<String>) {
    if status.is_empty() {
        return (0, None);
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(status) else {
        return (126, Some(String::from_utf8_lossy(status).into_owned()));
    };
    if value["status"] == "Success" {
        return (0, None);
    }
    let causes = value["details"]["causes"].as_array().cloned().unwrap_or_default();
    let exit_code = causes
        .iter()
        .find(|cause| cause["reason"] == "ExitCode")
        .and_then(|cause| cause["message"].as_str()?.parse::<i32>().ok());
    if let Some(code) = exit_code {
        return (code, None);
    }
    let message = value["message"].as_str().unwrap_or("exec failed").to_string();
    let code = if message.contains("not found") || message.contains("no such file") { 127 } else { 126 };
    (code, Some(message))
}

/// The streaming URL as a WebSocket URL (`http` becomes `ws`).
fn websocket_url(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_come_from_the_status() {
        assert_eq!(exit_status(b""), (0, None));
        assert_eq!(exit_status(br#"{"metadata":{},"status":"Success"}"#), (0, None));
        let failed = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(exit_status(failed), (3, None));
        let missing = br#"{"status":"Failure","message":"OCI runtime exec failed: exec: \"nope\": executable file not found in $PATH: unknown"}"#;
        let (code, message) = exit_status(missing);
        assert_eq!(code, 127);
        assert!(message.is_some_and(|m| m.contains("nope")));
    }

    #[test]
    fn streaming_urls_become_websocket_urls() {
        assert_eq!(websocket_url("http://127.0.0.1:4451/exec/abc"), "ws://127.0.0.1:4451/exec/abc");
        assert_eq!(websocket_url("https://[::1]:1/exec/x"), "wss://[::1]:1/exec/x");
    }
}
