//! `GET /attach/{namespace}/{pod}/{container}`: streams a running container's output over
//! a WebSocket with the channel protocol of [`super::channel`].
//!
//! A runtime that can attach (CRI) connects the client to the container's own streams
//! through its streaming server, input included when the container has `stdin: true`.
//! Otherwise output comes from the container's log file, which every runtime writes in
//! the CRI format. The client gets what the container writes from the moment of the
//! attach, on stdout and stderr as the log records them. The session ends with a
//! `Success` status when the container stops.
//!
//! NOTE: the process runtime gives containers `/dev/null` as standard input, so there
//! `kubectl attach -i` gets the output and a notice on stderr, and its input is
//! discarded.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;

use super::logs::{LogSource, end_offset, follow_lines};
use super::exec::{accept_upgrade, find_container, normal_close, serve_session};
use super::{ServerState, channel, plain};
use crate::directory::PodDirectory;
use crate::runtime::{ExecRequest, RuntimeError};

/// The streams a client attaches to, as exec and attach requests name them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttachRequest {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// The client's terminal is in raw mode. Attach from the log file ignores it.
    pub tty: bool,
}

/// Parses the `stdin`, `stdout`, `stderr` and `tty` query parameters. Errors are messages
/// for a 400 response.
pub fn parse_request(query: &[(String, String)]) -> Result<AttachRequest, String> {
    let flag = |name: &str| query.iter().any(|(key, value)| key == name && (value == "true" || value == "1"));
    let request = AttachRequest { stdin: flag("stdin"), stdout: flag("stdout"), stderr: flag("stderr"), tty: flag("tty") };
    if !(request.stdin || request.stdout || request.stderr) {
        return Err("you must specify at least one of stdin, stdout, stderr".to_string());
    }
    Ok(request)
}

pub async fn attach(
    State(state): State<ServerState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let request = match parse_request(&query) {
        Ok(request) => request,
        Err(message) => return plain(StatusCode::BAD_REQUEST, message),
    };
    if let Some(runtime) = state.runtime.clone() {
        let container_id = match find_container(&state, runtime.as_ref(), &namespace, &pod, &container).await {
            Ok(id) => id,
            Err(response) => return response,
        };
        let streams = ExecRequest { command: Vec::new(), stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, tty: request.tty };
        match runtime.attach(&container_id, &streams).await {
            Err(RuntimeError::AttachUnsupported { .. }) => {}
            session => {
                let upgrade = match accept_upgrade(upgrade, "attach") {
                    Ok(upgrade) => upgrade,
                    Err(response) => return response,
                };
                tracing::info!(pod.namespace = %namespace, pod.name = %pod, container = %container, "attach session starting on the runtime's streams");
                return upgrade.on_upgrade(move |socket| async move {
                    serve_session(socket, session, &container_id, &[]).await;
                    tracing::info!(pod.namespace = %namespace, pod.name = %pod, container = %container, "attach session ended");
                });
            }
        }
    }
    let source = match running_log(&state.directory, &namespace, &pod, &container) {
        Ok(source) => source,
        Err(response) => return response,
    };
    let upgrade = match accept_upgrade(upgrade, "attach") {
        Ok(upgrade) => upgrade,
        Err(response) => return response,
    };
    tracing::info!(pod.namespace = %namespace, pod.name = %pod, container = %container, "attach session starting");
    upgrade.on_upgrade(move |socket| async move {
        run_session(socket, source, request).await;
        tracing::info!(pod.namespace = %namespace, pod.name = %pod, container = %container, "attach session ended");
    })
}

/// Finds the log file of the container's running instance, or the response that explains
/// why there is none.
fn running_log(directory: &PodDirectory, namespace: &str, pod: &str, container: &str) -> Result<LogSource, Response> {
    let Some(pod_logs) = directory.pod(namespace, pod) else {
        let message = format!("pod \"{pod}\" not found in namespace \"{namespace}\" on this node");
        return Err(plain(StatusCode::NOT_FOUND, message));
    };
    let Some(logs) = pod_logs.containers.get(container) else {
        return Err(plain(StatusCode::NOT_FOUND, format!("container not found ({container:?})")));
    };
    let (true, Some(path)) = (logs.running, logs.current.clone()) else {
        let message = format!("container \"{container}\" in pod \"{pod}\" is not running");
        return Err(plain(StatusCode::BAD_REQUEST, message));
    };
    Ok(LogSource {
        path,
        follow: true,
        directory: directory.clone(),
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        container: container.to_string(),
    })
}

/// Sends new log lines on their channels until the container stops or the client leaves.
async fn run_session(socket: WebSocket, source: LogSource, request: AttachRequest) {
    let (mut sink, mut incoming) = socket.split();
    if request.stdin && request.stderr {
        let notice = b"stdin is not attached: the container's standard input is /dev/null\n";
        if sink.send(Message::Binary(channel::encode(channel::STDERR, notice).into())).await.is_err() {
            return;
        }
    }

    let (lines, mut followed) = mpsc::channel(64);
    let offset = end_offset(&source.path).await;
    let follower = async move { follow_lines(&source, offset, lines).await };
    let forward = async {
        while let Some(line) = followed.recv().await {
            let channel_id = if line.stream == "stderr" { channel::STDERR } else { channel::STDOUT };
            let requested = if channel_id == channel::STDERR { request.stderr } else { request.stdout };
            if !requested {
                continue;
            }
            let frame = channel::encode(channel_id, format!("{}\n", line.text).as_bytes());
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                return false;
            }
        }
        true
    };
    // the client's messages matter only for noticing that it left; input is discarded
    let client_left = async {
        while let Some(Ok(message)) = incoming.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };

    let container_stopped = tokio::select! {
        (_, stopped) = futures::future::join(follower, forward) => stopped,
        () = client_left => false,
    };
    if container_stopped {
        let status = channel::exit_status(&[], 0);
        let _ = sink.send(Message::Binary(channel::encode(channel::STATUS, status.to_string().as_bytes()).into())).await;
        let _ = sink.send(normal_close()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{ContainerLogs, PodLogs};

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn request_needs_a_stream() {
        let error = parse_request(&query(&[("container", "app")])).expect_err("no stream");
        assert!(error.contains("stdin, stdout, stderr"), "{error}");
        let request = parse_request(&query(&[("stdout", "true"), ("stderr", "1")])).expect("valid");
        assert_eq!(request, AttachRequest { stdin: false, stdout: true, stderr: true, tty: false });
    }

    #[test]
    fn attach_needs_running_container() {
        let directory = PodDirectory::new();
        let mut containers = std::collections::BTreeMap::new();
        containers.insert(
            "done".to_string(),
            ContainerLogs { current: Some("/tmp/x.log".into()), previous: None, running: false },
        );
        directory.publish("ns1", "web", PodLogs { uid: "u1".into(), containers });

        let missing_pod = running_log(&directory, "ns1", "other", "done").err().expect("no pod");
        assert_eq!(missing_pod.status(), StatusCode::NOT_FOUND);
        let missing_container = running_log(&directory, "ns1", "web", "nope").err().expect("no container");
        assert_eq!(missing_container.status(), StatusCode::NOT_FOUND);
        let stopped = running_log(&directory, "ns1", "web", "done").err().expect("stopped");
        assert_eq!(stopped.status(), StatusCode::BAD_REQUEST);
    }
}
