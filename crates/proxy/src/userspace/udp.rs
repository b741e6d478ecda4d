//! UDP frontends: each client address gets its own socket connected to one endpoint, and
//! replies from that endpoint go back to the client from the frontend address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::{SharedBalancer, bind_socket};

/// A client's session ends after this long without a reply from its endpoint, the
/// conntrack default for unreplied UDP flows.
const SESSION_IDLE: Duration = Duration::from_secs(30);

/// Largest datagram forwarded.
const MAX_DATAGRAM: usize = 65_535;

type Sessions = Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>;

/// Binds `address` and spawns the receive loop.
pub fn listen(address: SocketAddr, balancer: SharedBalancer, service: String) -> std::io::Result<JoinHandle<()>> {
    let socket = bind_socket(address, socket2::Type::DGRAM)?;
    let frontend = Arc::new(UdpSocket::from_std(socket.into())?);
    Ok(tokio::spawn(receive_loop(frontend, balancer, service)))
}

async fn receive_loop(frontend: Arc<UdpSocket>, balancer: SharedBalancer, service: String) {
    let sessions: Sessions = Arc::default();
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    loop {
        let (length, client) = match frontend.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                tracing::warn!(service, %error, "failed to receive a Service datagram");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let existing = sessions.lock().await.get(&client).cloned();
        let upstream = match existing {
            Some(upstream) => upstream,
            None => match open_session(&frontend, &balancer, &sessions, client).await {
                Ok(Some(upstream)) => upstream,
                Ok(None) => continue, // no endpoints: drop, as the kernel path does
                Err(error) => {
                    tracing::debug!(service, %client, %error, "failed to open a UDP session");
                    continue;
                }
            },
        };
        if let Err(error) = upstream.send(&buffer[..length]).await {
            tracing::debug!(service, %client, %error, "failed to forward a datagram");
        }
    }
}

/// Connects a new socket to an endpoint for `client` and spawns the task that relays its
/// replies until the session is idle.
async fn open_session(
    frontend: &Arc<UdpSocket>,
    balancer: &SharedBalancer,
    sessions: &Sessions,
    client: SocketAddr,
) -> std::io::Result<Option<Arc<UdpSocket>>> {
    let picked = balancer.write().unwrap_or_else(|e| e.into_inner()).pick(client.ip(), &[]);
    let Some(endpoint) = picked else { return Ok(None) };
    let upstream = UdpSocket::bind("0.0.0.0:0").await?;
    upstream.connect((endpoint.ip, endpoint.port)).await?;
    let upstream = Arc::new(upstream);
    sessions.lock().await.insert(client, upstream.clone());

    let (frontend, sessions, relay) = (frontend.clone(), sessions.clone(), upstream.clone());
    tokio::spawn(async move {
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        while let Ok(Ok(length)) = tokio::time::timeout(SESSION_IDLE, relay.recv(&mut buffer)).await {
            if frontend.send_to(&buffer[..length], client).await.is_err() {
                break;
            }
        }
        sessions.lock().await.remove(&client);
    });
    Ok(Some(upstream))
}
