//! Forwarding of questions outside the cluster domain to upstream resolvers: the client's
//! query bytes go out unchanged over UDP, and over TCP when the UDP answer is truncated.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one upstream has to answer before the next is asked.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Failure of every upstream resolver.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream resolvers are configured")]
    NoUpstreams,
    #[error("upstream {upstream} failed: {reason}")]
    Upstream { upstream: SocketAddr, reason: String },
}

/// Sends `query` to each upstream in turn and returns the first answer.
pub async fn exchange(upstreams: &[SocketAddr], query: &[u8]) -> Result<Message, ForwardError> {
    let mut last = ForwardError::NoUpstreams;
    for upstream in upstreams {
        let attempt = tokio::time::timeout(UPSTREAM_TIMEOUT, exchange_one(*upstream, query)).await;
        let reason = match attempt {
            Ok(Ok(message)) => return Ok(message),
            Ok(Err(reason)) => reason,
            Err(_) => format!("no answer within {UPSTREAM_TIMEOUT:?}"),
        };
        last = ForwardError::Upstream { upstream: *upstream, reason };
    }
    Err(last)
}

async fn exchange_one(upstream: SocketAddr, query: &[u8]) -> Result<Message, String> {
    let local: SocketAddr = if upstream.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("valid");
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    socket.connect(upstream).await.map_err(|e| e.to_string())?;
    socket.send(query).await.map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; 65_535];
    let id = query.get(..2).unwrap_or_default();
    let message = loop {
        let length = socket.recv(&mut buffer).await.map_err(|e| e.to_string())?;
        // ignore stray datagrams that do not answer this query's id
        if buffer.get(..2) == Some(id) {
            break Message::from_vec(&buffer[..length]).map_err(|e| format!("invalid answer: {e}"))?;
        }
    };
    if !message.metadata.truncation {
        return Ok(message);
    }
    exchange_tcp(upstream, query).await
}

async fn exchange_tcp(upstream: SocketAddr, query: &[u8]) -> Result<Message, String> {
    let mut stream = TcpStream::connect(upstream).await.map_err(|e| e.to_string())?;
    let length = u16::try_from(query.len()).map_err(|_| "query too long".to_string())?;
    stream.write_all(&length.to_be_bytes()).await.map_err(|e| e.to_string())?;
    stream.write_all(query).await.map_err(|e| e.to_string())?;
    let length = stream.read_u16().await.map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; usize::from(length)];
    stream.read_exact(&mut buffer).await.map_err(|e| e.to_string())?;
    Message::from_vec(&buffer).map_err(|e| format!("invalid answer: {e}"))
}
