//! Streaming commands in CRI containers (`kubectl exec`) and attaching to their own
//! streams (`kubectl attach`) through the runtime's streaming server.
//!
//! CRI `Exec` and `Attach` return a one-time URL on containerd's streaming server. The
//! agent upgrades it to SPDY/3.1 with the `v4.channel.k8s.io` stream protocol, as kubelet
//! clients do, and opens one SPDY stream per channel, named by its `streamtype` header:
//! `error`, `stdin`, `stdout`, `stderr` and `resize`. The error stream carries a
//! `metav1.Status` whose `ExitCode` cause is the command's exit code.
//!
//! SPDY rather than WebSocket, because a SPDY stream can be closed alone. Closing the
//! stdin stream gives the command EOF, which `kubectl cp` and `exec -i` with piped input
//! need. The WebSocket protocol of containerd 1.6 (`v4.channel.k8s.io`) has no such close.

use std::collections::HashMap;

use futures::FutureExt as _;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;

use crate::runtime::{ExecRequest, ExecSession, ResizeFn, RuntimeError, TerminalSize};
use crate::spdy::{self, Frame, HeaderCodec, Headers};

/// The stream protocol requested in the upgrade.
const PROTOCOL: &str = "v4.channel.k8s.io";
/// Buffer of each output pipe between the connection and the session's reader.
const PIPE_BYTES: usize = 64 * 1024;
/// Largest upgrade response head accepted.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

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
    let response = client.exec(exec).await.map_err(stream_error("Exec", id))?;
    open_stream(&response.into_inner().url, id, request).await
}

/// Connects to the standard streams of the running container `id`. Its input reaches
/// the container only when the container was created with `stdin`.
pub async fn attach(
    mut client: RuntimeServiceClient<Channel>,
    id: &str,
    request: &ExecRequest,
) -> Result<ExecSession, RuntimeError> {
    let attach = cri::AttachRequest {
        container_id: id.to_string(),
        stdin: request.stdin,
        tty: request.tty,
        stdout: request.stdout,
        stderr: request.stderr && !request.tty,
    };
    let response = client.attach(attach).await.map_err(stream_error("Attach", id))?;
    open_stream(&response.into_inner().url, id, request).await
}

fn stream_error<'a>(call: &'static str, id: &'a str) -> impl Fn(tonic::Status) -> RuntimeError + 'a {
    move |status| match status.code() {
        tonic::Code::NotFound => RuntimeError::ContainerNotFound { id: id.to_string() },
        _ => RuntimeError::Internal(format!("CRI {call} in container {id} failed: {}", status.message())),
    }
}

/// Opens the one-time streaming URL over SPDY and turns its streams into a session.
async fn open_stream(url: &str, id: &str, request: &ExecRequest) -> Result<ExecSession, RuntimeError> {
    let failed = |what: String| RuntimeError::Internal(format!("failed to open the stream of container {id}: {what}"));
    let uri: http::Uri = url.parse().map_err(|error| failed(format!("invalid streaming URL {url}: {error}")))?;
    let authority = uri.authority().map(|a| a.to_string()).ok_or_else(|| failed(format!("no host in {url}")))?;
    let mut socket = TcpStream::connect(&authority).await.map_err(|error| failed(error.to_string()))?;
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let upgrade = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {PROTOCOL}\r\nContent-Length: 0\r\n\r\n"
    );
    socket.write_all(upgrade.as_bytes()).await.map_err(|error| failed(error.to_string()))?;
    let head = read_response_head(&mut socket).await.map_err(|error| failed(error.to_string()))?;
    let status_line = head.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) != Some("101") {
        return Err(failed(format!("the streaming server answered {status_line:?}")));
    }
    let (mut reader, mut writer) = socket.into_split();

    // one stream per channel, opened before any data as the protocol requires
    let mut codec = HeaderCodec::new();
    let separate_stderr = request.stderr && !request.tty;
    let requested = [
        ("error", true),
        ("stdin", request.stdin),
        ("stdout", request.stdout),
        ("stderr", separate_stderr),
        ("resize", request.tty),
    ];
    let mut streams: HashMap<&str, u32> = HashMap::new();
    let mut opening = Vec::new();
    let mut next_id = 1;
    for (kind, _) in requested.iter().filter(|(_, on)| *on) {
        let headers = Headers::from([("streamtype".to_string(), kind.to_string())]);
        let block = codec.encode(&headers).map_err(|error| failed(error.to_string()))?;
        opening.extend(spdy::syn_stream(next_id, &block));
        streams.insert(kind, next_id);
        next_id += 2;
    }
    writer.write_all(&opening).await.map_err(|error| failed(error.to_string()))?;

    // outgoing frames: stdin data, its end, and terminal sizes
    let (frames, mut outgoing) = mpsc::channel::<Vec<u8>>(16);
    tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    let stdin = streams.get("stdin").map(|&stream_id| {
        let (writer, mut reader) = tokio::io::duplex(PIPE_BYTES);
        let frames = frames.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 16 * 1024];
            loop {
                match reader.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => {
                        if frames.send(spdy::data(stream_id, &buffer[..read], false)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            // the caller closed stdin: the command reads EOF
            let _ = frames.send(spdy::data(stream_id, &[], true)).await;
        });
        writer
    });
    let resize: Option<ResizeFn> = streams.get("resize").map(|&stream_id| {
        let frames = frames.clone();
        let resize: ResizeFn = Box::new(move |size: TerminalSize| {
            let json = format!("{{\"Width\":{},\"Height\":{}}}", size.width, size.height);
            frames.try_send(spdy::data(stream_id, json.as_bytes(), false)).map_err(|error| std::io::Error::other(error.to_string()))
        });
        resize
    });

    // incoming frames: output to the pipes, then the exit status
    let (stdout_writer, stdout) = pipe(request.stdout);
    let (stderr_writer, stderr) = pipe(separate_stderr);
    let (exit_sender, exit) = oneshot::channel();
    let container = id.to_string();
    let ids = StreamIds {
        error: streams.get("error").copied().unwrap_or(1),
        stdout: streams.get("stdout").copied(),
        stderr: streams.get("stderr").copied(),
    };
    tokio::spawn(async move {
        let mut outputs = Outputs { stdout: stdout_writer, stderr: stderr_writer, status: Vec::new() };
        let mut open = ids.output_count() + 1;
        loop {
            match spdy::read_frame(&mut reader).await {
                Ok(Some(Frame::Data { stream_id, flags, data })) => {
                    outputs.deliver(ids.channel(stream_id), &data).await;
                    // the pipes stay open until the end, where a failure message may follow
                    if flags & spdy::FLAG_FIN != 0 && ids.known(stream_id) {
                        open -= 1;
                        if open == 0 {
                            break;
                        }
                    }
                }
                Ok(Some(Frame::Ping { id })) => {
                    let _ = frames.send(spdy::ping(id)).await;
                }
                Ok(Some(Frame::RstStream { stream_id, .. })) if ids.known(stream_id) => {
                    open -= 1;
                    if open == 0 {
                        break;
                    }
                }
                Ok(Some(Frame::GoAway)) | Ok(None) | Err(_) => break,
                Ok(Some(_)) => {}
            }
        }
        let code = outputs.finish().await;
        tracing::debug!(container.id = %container, exit_code = code, "stream finished");
        let _ = exit_sender.send(code);
        drop(frames);
    });

    let exit = async move {
        exit.await
            .map_err(|_| RuntimeError::Internal("the stream ended without an exit status".to_string()))
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

/// Reads the upgrade response up to its blank line, one byte at a time so that no SPDY
/// frame after it is consumed.
async fn read_response_head(socket: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_RESPONSE_HEAD {
            return Err(std::io::Error::other("the upgrade response head is too long"));
        }
        head.push(socket.read_u8().await?);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The destination of an incoming stream's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
    Error,
    Unknown,
}

/// The ids of the incoming streams.
struct StreamIds {
    error: u32,
    stdout: Option<u32>,
    stderr: Option<u32>,
}

impl StreamIds {
    fn channel(&self, stream_id: u32) -> Stream {
        if stream_id == self.error {
            Stream::Error
        } else if Some(stream_id) == self.stdout {
            Stream::Stdout
        } else if Some(stream_id) == self.stderr {
            Stream::Stderr
        } else {
            Stream::Unknown
        }
    }

    fn known(&self, stream_id: u32) -> bool {
        self.channel(stream_id) != Stream::Unknown
    }

    fn output_count(&self) -> usize {
        usize::from(self.stdout.is_some()) + usize::from(self.stderr.is_some())
    }
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

/// The session's side of the incoming streams.
struct Outputs {
    stdout: Option<tokio::io::DuplexStream>,
    stderr: Option<tokio::io::DuplexStream>,
    status: Vec<u8>,
}

impl Outputs {
    async fn deliver(&mut self, channel: Stream, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let target = match channel {
            Stream::Stdout => self.stdout.as_mut(),
            Stream::Stderr => self.stderr.as_mut(),
            Stream::Error => {
                self.status.extend_from_slice(data);
                return;
            }
            Stream::Unknown => None,
        };
        // a reader that went away only loses its own stream
        if let Some(writer) = target
            && writer.write_all(data).await.is_err()
        {
            tracing::debug!(?channel, "stream output dropped: the reader is gone");
        }
    }

    /// Closes the pipes and returns the exit code from the error stream's status. A
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

}
