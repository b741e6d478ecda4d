//! The backend that the benchmark runs in each pod: a minimal HTTP/1.1 server that sends
//! the same short response to every request. It keeps the connection open unless the
//! client sends `Connection: close`.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Body of every response.
pub const BODY: &[u8] = b"hello, bench\n";
/// Maximum request head length the server buffers before it drops the connection.
const MAX_HEAD: usize = 16 * 1024;

/// Serves on `0.0.0.0:port` until the process is killed.
pub fn run(port: u16) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(async {
        let address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let listener = TcpListener::bind(address).await.with_context(|| format!("failed to listen on {address}"))?;
        eprintln!("serving on {address}");
        accept_loop(listener).await
    })
}

/// Accepts connections and serves each in its own task.
pub async fn accept_loop(listener: TcpListener) -> anyhow::Result<()> {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Usually out of file descriptors or an aborted handshake; both pass.
                eprintln!("accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            // A client that resets its connection is normal under load; nothing to report.
            let _ = serve_connection(stream).await;
        });
    }
}

fn response(close: bool) -> Vec<u8> {
    let connection = if close { "close" } else { "keep-alive" };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        BODY.len()
    );
    [head.as_bytes(), BODY].concat()
}

/// Responds to each complete request head in turn. Request bodies are not expected.
async fn serve_connection(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let keep_alive = response(false);
    let close = response(true);
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = head_end(&buffer) {
            let wants_close = asks_to_close(&buffer[..end]);
            buffer.drain(..end);
            if wants_close {
                stream.write_all(&close).await?;
                return stream.shutdown().await;
            }
            stream.write_all(&keep_alive).await?;
        }
        if buffer.len() > MAX_HEAD {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "request head too long"));
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// Returns the length of the first request or response head in `buffer`, up to and
/// including the blank line, or `None` while it is incomplete.
pub fn head_end(buffer: &[u8]) -> Option<usize> {
    buffer.windows(4).position(|window| window == b"\r\n\r\n").map(|position| position + 4)
}

/// Returns whether a request head carries `Connection: close`.
fn asks_to_close(head: &[u8]) -> bool {
    header_value(head, "connection").is_some_and(|value| value.eq_ignore_ascii_case("close"))
}

/// Returns the trimmed value of the first header called `name` (case-insensitive).
pub fn header_value<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_needs_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nGET"), Some(18));
    }

    #[test]
    fn close_header_any_case() {
        assert!(asks_to_close(b"GET / HTTP/1.1\r\nconnection: Close\r\n\r\n"));
        assert!(!asks_to_close(b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"));
        assert!(!asks_to_close(b"GET / HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn response_length_matches_body() {
        let bytes = response(false);
        let end = head_end(&bytes).expect("complete head");
        assert_eq!(header_value(&bytes[..end], "content-length"), Some("13"));
        assert_eq!(&bytes[end..], BODY);
    }
}
