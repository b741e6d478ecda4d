//! The node's DNS server: answers for the cluster domain from the Service view, and
//! every other question forwarded to upstream resolvers.
//!
//! hickory-server provides the UDP and TCP transports and message framing; the answers
//! come from [`records::Zone`] and the forwarding from [`forward`].

mod forward;
pub mod records;

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::sync::watch;

use crate::watch::ServiceView;
use records::{Outcome, Zone};

/// How long a TCP client may stay idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The DNS server's settings.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Address the server answers on, over UDP and TCP. Pods can send only to port 53,
    /// because resolv.conf has no port field.
    pub listen: SocketAddr,
    /// The cluster domain, such as `cluster.local`.
    pub domain: String,
    /// Resolvers that answer names outside the cluster domain, tried in order.
    pub upstreams: Vec<SocketAddr>,
}

/// Failure to start the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("failed to listen for DNS on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The request handler: cluster names from the Service view, the rest forwarded.
struct ClusterDns {
    domain: String,
    view: watch::Receiver<ServiceView>,
    upstreams: Vec<SocketAddr>,
}

/// Binds the listener sockets and returns the running server. The sockets use
/// `IP_FREEBIND`, so the server can start before the bridge carries its address.
pub fn start(config: &DnsConfig, view: watch::Receiver<ServiceView>) -> Result<Server<impl RequestHandler>, DnsError> {
    let bind_error = |source| DnsError::Bind {
        address: config.listen,
        source,
    };
    let handler = ClusterDns {
        domain: config.domain.trim_end_matches('.').to_ascii_lowercase(),
        view,
        upstreams: config.upstreams.clone(),
    };
    let mut server = Server::new(handler);

    let udp = crate::userspace::bind_socket(config.listen, socket2::Type::DGRAM).map_err(bind_error)?;
    server.register_socket(tokio::net::UdpSocket::from_std(udp.into()).map_err(bind_error)?);

    let tcp = crate::userspace::bind_socket(config.listen, socket2::Type::STREAM).map_err(bind_error)?;
    tcp.listen(128).map_err(bind_error)?;
    let tcp = tokio::net::TcpListener::from_std(tcp.into()).map_err(bind_error)?;
    server.register_listener(tcp, TCP_IDLE, 64);

    tracing::info!(listen = %config.listen, domain = config.domain, upstreams = ?config.upstreams, "DNS server is serving");
    Ok(server)
}

#[async_trait::async_trait]
impl RequestHandler for ClusterDns {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response_handle: R) -> ResponseInfo {
        let edns = response_edns(request);
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let query = request.queries.queries().first();
        let (Some(query), OpCode::Query) = (query, request.metadata.op_code) else {
            let response = builder.error_msg(&request.metadata, ResponseCode::NotImp);
            return send(response_handle.send_response(response).await, request);
        };
        let name = query.name().to_string();

        let outcome = {
            let services = self.view.borrow();
            Zone { domain: &self.domain, services: &services }.lookup(&name, query.query_type())
        };
        let soa = Zone { domain: &self.domain, services: &[] }.soa();
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        match outcome {
            Outcome::Answer { answers, additionals } => {
                metadata.authoritative = true;
                let authority: Vec<&Record> = if answers.is_empty() { vec![&soa] } else { Vec::new() };
                let response = builder.build(metadata, answers.iter(), authority, [], additionals.iter());
                send(response_handle.send_response(response).await, request)
            }
            Outcome::NxDomain => {
                metadata.authoritative = true;
                metadata.response_code = ResponseCode::NXDomain;
                let response = builder.build(metadata, [], [&soa], [], []);
                send(response_handle.send_response(response).await, request)
            }
            Outcome::Forward => match forward::exchange(&self.upstreams, request.as_slice()).await {
                Ok(upstream) => {
                    let mut metadata = upstream.metadata;
                    metadata.id = request.metadata.id;
                    let response = builder.build(
                        metadata,
                        upstream.answers.iter(),
                        upstream.authorities.iter(),
                        [],
                        upstream.additionals.iter(),
                    );
                    send(response_handle.send_response(response).await, request)
                }
                Err(error) => {
                    tracing::debug!(name, %error, "upstream resolvers failed");
                    let response = builder.error_msg(&request.metadata, ResponseCode::ServFail);
                    send(response_handle.send_response(response).await, request)
                }
            },
        }
    }
}

/// Builds the response EDNS record when the request had one, as RFC 6891 requires.
fn response_edns(request: &Request) -> Option<Edns> {
    let request_edns = request.edns.as_ref()?;
    let mut edns = Edns::new();
    edns.set_max_payload(request_edns.max_payload().max(512));
    edns.set_version(0);
    Some(edns)
}

fn send(result: Result<ResponseInfo, hickory_server::net::NetError>, request: &Request) -> ResponseInfo {
    match result {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(client = %request.src(), %error, "failed to send a DNS response");
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            hickory_proto::op::Header { metadata, counts: Default::default() }.into()
        }
    }
}

/// Reads the resolvers of a resolv.conf file (`nameserver` lines) as port-53 addresses,
/// leaving out `exclude` so the server never forwards to itself.
pub fn upstreams_from_resolv_conf(text: &str, exclude: SocketAddr) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|address| *address != exclude)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_are_read() {
        let text = "search example.org\nnameserver 10.0.0.2\nnameserver fd00::1\nnameserver 10.244.0.1\n";
        let exclude: SocketAddr = "10.244.0.1:53".parse().unwrap();
        let upstreams: Vec<String> = upstreams_from_resolv_conf(text, exclude).iter().map(ToString::to_string).collect();
        assert_eq!(upstreams, ["10.0.0.2:53", "[fd00::1]:53"]);
    }
}
