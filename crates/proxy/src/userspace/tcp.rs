//! TCP frontends: accept, connect to an endpoint, copy both directions.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{SharedBalancer, bind_socket};

/// How long one connection attempt to an endpoint may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How many endpoints a connection tries before it is closed.
const MAX_ATTEMPTS: usize = 3;

/// Binds `address` and spawns the accept loop.
pub fn listen(address: SocketAddr, balancer: SharedBalancer, service: String) -> std::io::Result<JoinHandle<()>> {
    let socket = bind_socket(address, socket2::Type::STREAM)?;
    socket.listen(1024)?;
    let listener = TcpListener::from_std(socket.into())?;
    Ok(tokio::spawn(accept_loop(listener, balancer, service)))
}

async fn accept_loop(listener: TcpListener, balancer: SharedBalancer, service: String) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning
                tracing::warn!(service, %error, "failed to accept a Service connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let balancer = balancer.clone();
        let service = service.clone();
        tokio::spawn(async move {
            if let Err(error) = forward(client, peer, &balancer).await {
                tracing::debug!(service, client = %peer, %error, "Service connection ended with an error");
            }
        });
    }
}

/// Connects to an endpoint (trying the next one when an endpoint refuses) and copies bytes
/// until both sides close.
async fn forward(mut client: TcpStream, peer: SocketAddr, balancer: &SharedBalancer) -> std::io::Result<()> {
    let mut refused = Vec::new();
    let mut last_error = None;
    for _ in 0..MAX_ATTEMPTS {
        let picked = balancer
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .pick(peer.ip(), &refused);
        let Some(endpoint) = picked else { break };
        let target = SocketAddr::from((endpoint.ip, endpoint.port));
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            Ok(Ok(mut upstream)) => {
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
                return Ok(());
            }
            Ok(Err(error)) => last_error = Some(error),
            Err(_) => last_error = Some(std::io::ErrorKind::TimedOut.into()),
        }
        refused.push(endpoint);
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("the Service has no ready endpoints")))
}
