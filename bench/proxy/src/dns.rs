//! Cluster DNS load: A queries for a Service name over UDP from concurrent sockets, each
//! with one query in flight at a time.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;

use crate::load::{self, Outcome};

/// Time a query may wait for its response before it counts as an error.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends A queries for `name` to `server` from `in_flight` sockets for `duration`.
pub async fn run(server: SocketAddr, name: &str, in_flight: usize, duration: Duration) -> anyhow::Result<Outcome> {
    let query = encode_query(name)?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight.max(1) {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await.context("failed to bind a UDP socket")?;
        socket.connect(server).await.with_context(|| format!("failed to connect a UDP socket to {server}"))?;
        let query = query.clone();
        workers.spawn(async move { run_worker(socket, query, deadline).await });
    }
    load::collect(workers, started).await
}

/// Encodes a recursive A query for `name`; workers overwrite its id (the first two bytes).
fn encode_query(name: &str) -> anyhow::Result<Vec<u8>> {
    let name = Name::from_ascii(name).with_context(|| format!("invalid DNS name {name:?}"))?;
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name, RecordType::A));
    message.to_vec().context("failed to encode the DNS query")
}

async fn run_worker(socket: UdpSocket, mut query: Vec<u8>, deadline: Instant) -> (Vec<Duration>, u64) {
    let mut samples = Vec::with_capacity(16 * 1024);
    let mut errors = 0;
    let mut buffer = [0u8; 1500];
    let mut id: u16 = rand_start();
    while Instant::now() < deadline {
        id = id.wrapping_add(1);
        query[..2].copy_from_slice(&id.to_be_bytes());
        let sent = Instant::now();
        let answered = async {
            socket.send(&query).await?;
            // Skip late responses to earlier queries that timed out.
            loop {
                let length = socket.recv(&mut buffer).await?;
                if buffer[..length].starts_with(&id.to_be_bytes()) {
                    return Ok::<usize, std::io::Error>(length);
                }
            }
        };
        match tokio::time::timeout(QUERY_TIMEOUT, answered).await {
            Ok(Ok(length)) if check_answer(&buffer[..length]).is_ok() => samples.push(sent.elapsed()),
            _ => errors += 1,
        }
    }
    (samples, errors)
}

/// Spreads the workers' query ids apart without a random number generator.
fn rand_start() -> u16 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    (nanos % u32::from(u16::MAX)) as u16
}

/// Accepts a NOERROR response with at least one answer record.
pub fn check_answer(bytes: &[u8]) -> anyhow::Result<()> {
    let message = Message::from_vec(bytes).context("invalid DNS response")?;
    if message.metadata.response_code != ResponseCode::NoError {
        bail!("DNS response code {}", message.metadata.response_code);
    }
    if message.answers.is_empty() {
        bail!("DNS response without answers");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trips() {
        let bytes = encode_query("bench.default.svc.cluster.local").expect("encode");
        let message = Message::from_vec(&bytes).expect("decode");
        assert_eq!(message.queries.len(), 1);
        assert_eq!(message.queries[0].query_type(), RecordType::A);
        assert!(message.metadata.recursion_desired);
    }

    #[test]
    fn answer_without_records_rejected() {
        let query = Message::from_vec(&encode_query("a.b.svc.cluster.local").unwrap()).unwrap();
        let response = Message::response(query.metadata.id, query.metadata.op_code);
        let error = check_answer(&response.to_vec().unwrap()).unwrap_err();
        assert!(error.to_string().contains("without answers"), "{error}");
    }
}
