//! The load generator: HTTP/1.1 GET requests from concurrent connections for a fixed time,
//! either reusing each connection (keep-alive) or opening a new one per request.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use capstan_bench_stats::Summary;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::serve::{BODY, head_end, header_value};

/// Connection use of each worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One connection per worker, requests one after another on it.
    KeepAlive,
    /// A new connection for every request, closed by the server after its response; the
    /// latency includes the TCP handshake.
    NewConnection,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keep-alive",
            Mode::NewConnection => "new connection",
        }
    }
}

/// One load run: worker `i` sends to `targets[i % targets.len()]`.
#[derive(Clone, Debug)]
pub struct Load {
    pub targets: Vec<SocketAddr>,
    pub connections: usize,
    pub duration: Duration,
    pub mode: Mode,
}

/// Figures of one load run.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub summary: Summary,
    /// Requests that failed (connect, I/O or an unexpected response); they are not in
    /// the latency samples.
    pub errors: u64,
}

/// Runs `load` and returns the latency of every successful request.
pub async fn run(load: &Load) -> anyhow::Result<Outcome> {
    if load.targets.is_empty() {
        bail!("no target addresses to send load to");
    }
    let started = Instant::now();
    let deadline = started + load.duration;
    let mut workers = tokio::task::JoinSet::new();
    for index in 0..load.connections.max(1) {
        let target = load.targets[index % load.targets.len()];
        let mode = load.mode;
        workers.spawn(async move { run_worker(target, mode, deadline).await });
    }
    collect(workers, started).await
}

/// Waits for every worker, each returning its latency samples and error count, and
/// summarizes them over the time since `started`.
pub async fn collect(
    mut workers: tokio::task::JoinSet<(Vec<Duration>, u64)>,
    started: Instant,
) -> anyhow::Result<Outcome> {
    let mut samples = Vec::new();
    let mut errors = 0;
    while let Some(joined) = workers.join_next().await {
        let (worker_samples, worker_errors) = joined.context("a load worker panicked")?;
        samples.extend(worker_samples);
        errors += worker_errors;
    }
    Ok(Outcome { summary: Summary::new(samples, started.elapsed()), errors })
}

/// Sends requests to `target` until `deadline`; returns the latencies and the error count.
async fn run_worker(target: SocketAddr, mode: Mode, deadline: Instant) -> (Vec<Duration>, u64) {
    let mut samples = Vec::with_capacity(64 * 1024);
    let mut errors = 0;
    let mut connection: Option<TcpStream> = None;
    while Instant::now() < deadline {
        let sent = Instant::now();
        let result = match mode {
            Mode::KeepAlive => keep_alive_request(&mut connection, target).await,
            Mode::NewConnection => new_connection_request(target).await,
        };
        match result {
            Ok(()) => samples.push(sent.elapsed()),
            Err(_) => {
                errors += 1;
                connection = None;
                // Back off briefly so a refusing target does not turn into a busy loop.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    (samples, errors)
}

async fn keep_alive_request(connection: &mut Option<TcpStream>, target: SocketAddr) -> anyhow::Result<()> {
    if connection.is_none() {
        *connection = Some(connect(target).await?);
    }
    let Some(stream) = connection.as_mut() else { unreachable!("the connection was just opened") };
    stream.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n").await?;
    read_response(stream).await
}

async fn new_connection_request(target: SocketAddr) -> anyhow::Result<()> {
    let mut stream = connect(target).await?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").await?;
    read_response(&mut stream).await
}

async fn connect(target: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(target).await.with_context(|| format!("failed to connect to {target}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads one response and checks that it is a 200 with the backend's body.
async fn read_response(stream: &mut TcpStream) -> anyhow::Result<()> {
    let mut buffer = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    let head = loop {
        if let Some(end) = head_end(&buffer) {
            break end;
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            bail!("connection closed before a complete response head");
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    check_head(&buffer[..head])?;
    while buffer.len() < head + BODY.len() {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            bail!("connection closed inside the response body");
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    if &buffer[head..] != BODY {
        bail!("unexpected response body {:?}", String::from_utf8_lossy(&buffer[head..]));
    }
    Ok(())
}

/// Accepts only `200` heads whose `Content-Length` is the backend's body length.
fn check_head(head: &[u8]) -> anyhow::Result<()> {
    if !head.starts_with(b"HTTP/1.1 200 ") {
        let line = head.split(|&byte| byte == b'\r').next().unwrap_or_default();
        bail!("unexpected status line {:?}", String::from_utf8_lossy(line));
    }
    let length = header_value(head, "content-length");
    if length != Some(BODY.len().to_string().as_str()) {
        bail!("unexpected Content-Length {length:?}, expected {}", BODY.len());
    }
    Ok(())
}

/// Sends single requests to `target` until one succeeds, failing after `timeout`.
pub async fn wait_until_answers(target: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let error = match tokio::time::timeout(Duration::from_secs(2), new_connection_request(target)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => error,
            Err(_) => anyhow::anyhow!("no response within 2 s"),
        };
        if Instant::now() > deadline {
            return Err(error.context(format!("{target} did not respond within {}s", timeout.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_check_rejects_other_status() {
        let error = check_head(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 13\r\n\r\n").unwrap_err();
        assert!(error.to_string().contains("503"), "{error}");
    }

    #[test]
    fn head_check_rejects_other_length() {
        assert!(check_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n").is_err());
        assert!(check_head(b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n").is_ok());
    }

    /// Runs both modes against the real backend on loopback and checks that requests
    /// complete and nothing fails.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_modes_against_backend() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let target = listener.local_addr().expect("address");
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        tokio::spawn(crate::serve::accept_loop(listener));
        for mode in [Mode::KeepAlive, Mode::NewConnection] {
            let load = Load { targets: vec![target], connections: 4, duration: Duration::from_millis(300), mode };
            let outcome = run(&load).await.expect("load run");
            assert_eq!(outcome.errors, 0, "{mode:?}");
            assert!(outcome.summary.count > 10, "{mode:?}: only {} requests", outcome.summary.count);
            assert!(outcome.summary.p50 <= outcome.summary.p99);
        }
    }
}
