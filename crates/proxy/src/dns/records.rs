//! Answers for names in the cluster domain, computed from the proxy's Service view. This
//! follows the Kubernetes DNS specification for Services and pods:
//!
//! - `<service>.<namespace>.svc.<domain>`: A with the ClusterIP, or with every ready
//!   address of a headless Service; a CNAME for an ExternalName Service.
//! - `<hostname>.<service>.<namespace>.svc.<domain>`: A for a headless endpoint with a
//!   hostname (StatefulSet pods).
//! - `_<port>._<protocol>.<service>.<namespace>.svc.<domain>`: SRV for each named port.
//! - `<a-b-c-d>.<namespace>.pod.<domain>`: A with the address spelled in the name.
//! - `<d.c.b.a>.in-addr.arpa`: PTR for ClusterIPs and headless endpoint addresses.
//!
//! Only IPv4 is served, so AAAA queries for existing names get an empty answer.

use std::net::Ipv4Addr;

use hickory_proto::rr::rdata::{A, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::model::{ReadyAddress, ServiceEntry};

/// TTL of every answer, in seconds, short so that endpoint changes show quickly.
pub const TTL: u32 = 5;

/// Result of looking up one question.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The name exists: these records answer it (possibly none of the asked type), with
    /// extra records for the additional section.
    Answer { answers: Vec<Record>, additionals: Vec<Record> },
    /// The name is in the cluster domain but does not exist.
    NxDomain,
    /// The name is outside the cluster's zones: ask the upstream resolvers.
    Forward,
}

/// The cluster domain and the Service view that answers are computed from.
pub struct Zone<'a> {
    /// The cluster domain in lower case without a trailing dot, such as `cluster.local`.
    pub domain: &'a str,
    pub services: &'a [ServiceEntry],
}

impl Zone<'_> {
    /// Answers a question for `name` (any case, with or without the trailing dot).
    pub fn lookup(&self, name: &str, kind: RecordType) -> Outcome {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(reversed) = name.strip_suffix(".in-addr.arpa") {
            return self.lookup_ptr(reversed, kind);
        }
        let relative = if name == self.domain {
            ""
        } else if let Some(relative) = name.strip_suffix(&format!(".{}", self.domain)) {
            relative
        } else {
            return Outcome::Forward;
        };
        let labels: Vec<&str> = if relative.is_empty() { Vec::new() } else { relative.split('.').collect() };
        let exists = |answers| Outcome::Answer { answers, additionals: Vec::new() };

        match labels.as_slice() {
            [] if kind == RecordType::SOA => exists(vec![self.soa()]),
            [] | ["svc"] | ["pod"] => exists(Vec::new()),
            [namespace, "svc"] if self.services.iter().any(|s| s.namespace == *namespace) => {
                exists(Vec::new())
            }
            [service, namespace, "svc"] => match self.find(namespace, service) {
                Some(entry) => exists(self.service_records(&name, entry, kind)),
                None => Outcome::NxDomain,
            },
            [port, protocol, service, namespace, "svc"] if port.starts_with('_') => {
                self.lookup_srv(&name, port, protocol, service, namespace, kind)
            }
            [host, service, namespace, "svc"] => {
                let Some(entry) = self.find(namespace, service) else { return Outcome::NxDomain };
                let addresses: Vec<Ipv4Addr> = entry
                    .ready_addresses
                    .iter()
                    .filter(|address| host_label(address) == *host)
                    .map(|address| address.ip)
                    .collect();
                if addresses.is_empty() {
                    return Outcome::NxDomain;
                }
                exists(a_records(&name, &addresses, kind))
            }
            [address, _namespace, "pod"] => match parse_dashed(address) {
                Some(ip) => exists(a_records(&name, &[ip], kind)),
                None => Outcome::NxDomain,
            },
            _ => Outcome::NxDomain,
        }
    }

    fn find(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.services
            .iter()
            .find(|entry| entry.namespace == namespace && entry.name == name)
    }

    fn service_records(&self, name: &str, entry: &ServiceEntry, kind: RecordType) -> Vec<Record> {
        if let Some(external) = &entry.external_name {
            let target = fqdn(external);
            return vec![Record::from_rdata(fqdn(name), TTL, RData::CNAME(CNAME(target)))];
        }
        let addresses: Vec<Ipv4Addr> = match entry.cluster_ip {
            Some(ip) => vec![ip],
            None => entry.ready_addresses.iter().map(|address| address.ip).collect(),
        };
        a_records(name, &addresses, kind)
    }

    fn lookup_srv(
        &self,
        name: &str,
        port: &str,
        protocol: &str,
        service: &str,
        namespace: &str,
        kind: RecordType,
    ) -> Outcome {
        let Some(entry) = self.find(namespace, service) else { return Outcome::NxDomain };
        let port_name = &port[1..];
        let protocol = protocol.strip_prefix('_').unwrap_or("");
        let Some(port) = entry
            .ports
            .iter()
            .find(|p| !p.name.is_empty() && p.name == port_name && p.protocol.as_str() == protocol)
        else {
            return Outcome::NxDomain;
        };
        if kind != RecordType::SRV {
            return Outcome::Answer { answers: Vec::new(), additionals: Vec::new() };
        }

        let service_name = format!("{service}.{namespace}.svc.{}", self.domain);
        let srv = |target: &str, number: u16| {
            let data = SRV::new(0, 100, number, fqdn(target));
            Record::from_rdata(fqdn(name), TTL, RData::SRV(data))
        };
        if let Some(ip) = entry.cluster_ip {
            let answers = vec![srv(&service_name, port.port)];
            let additionals = a_records(&service_name, &[ip], RecordType::A);
            return Outcome::Answer { answers, additionals };
        }
        // Headless: one SRV per ready endpoint of this port, naming the endpoint itself.
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        for endpoint in &port.endpoints {
            let label = entry
                .ready_addresses
                .iter()
                .find(|address| address.ip == endpoint.ip)
                .map(host_label)
                .unwrap_or_else(|| endpoint.ip.to_string().replace('.', "-"));
            let target = format!("{label}.{service_name}");
            answers.push(srv(&target, endpoint.port));
            additionals.extend(a_records(&target, &[endpoint.ip], RecordType::A));
        }
        Outcome::Answer { answers, additionals }
    }

    fn lookup_ptr(&self, reversed: &str, kind: RecordType) -> Outcome {
        let mut octets: Vec<&str> = reversed.split('.').collect();
        octets.reverse();
        let Ok(ip) = octets.join(".").parse::<Ipv4Addr>() else { return Outcome::Forward };
        let mut targets = Vec::new();
        for entry in self.services {
            let service_name = format!("{}.{}.svc.{}", entry.name, entry.namespace, self.domain);
            if entry.cluster_ip == Some(ip) {
                targets.push(service_name);
            } else if entry.cluster_ip.is_none() {
                let hosts = entry.ready_addresses.iter().filter(|address| address.ip == ip);
                targets.extend(hosts.map(|address| format!("{}.{service_name}", host_label(address))));
            }
        }
        if targets.is_empty() {
            return Outcome::Forward;
        }
        let name = fqdn(&format!("{reversed}.in-addr.arpa"));
        let answers = if kind == RecordType::PTR {
            let ptr = |target: &String| Record::from_rdata(name.clone(), TTL, RData::PTR(PTR(fqdn(target))));
            targets.iter().map(ptr).collect()
        } else {
            Vec::new()
        };
        Outcome::Answer { answers, additionals: Vec::new() }
    }

    /// Returns the zone's SOA record, also sent in the authority section of negative answers so
    /// resolvers cache them for [`TTL`] seconds.
    pub fn soa(&self) -> Record {
        let data = SOA::new(
            fqdn(&format!("ns.dns.{}", self.domain)),
            fqdn(&format!("hostmaster.{}", self.domain)),
            1,
            7200,
            1800,
            86_400,
            TTL,
        );
        Record::from_rdata(fqdn(self.domain), TTL, RData::SOA(data))
    }
}

/// Builds A records for `addresses` when `kind` is A or ANY, and none otherwise.
fn a_records(name: &str, addresses: &[Ipv4Addr], kind: RecordType) -> Vec<Record> {
    if kind != RecordType::A && kind != RecordType::ANY {
        return Vec::new();
    }
    let owner = fqdn(name);
    addresses
        .iter()
        .map(|ip| Record::from_rdata(owner.clone(), TTL, RData::A(A(*ip))))
        .collect()
}

/// Returns the DNS label of a headless endpoint: its hostname, or its address with dashes.
fn host_label(address: &ReadyAddress) -> String {
    match &address.hostname {
        Some(hostname) => hostname.to_ascii_lowercase(),
        None => address.ip.to_string().replace('.', "-"),
    }
}

/// Parses `10-244-0-7` into an address.
fn parse_dashed(label: &str) -> Option<Ipv4Addr> {
    label.replace('-', ".").parse().ok()
}

/// Builds an absolute name. Names come from Kubernetes objects, which validation keeps to
/// DNS labels, so a failure here is a bug and gets the root name.
fn fqdn(name: &str) -> Name {
    let absolute = format!("{}.", name.trim_end_matches('.'));
    Name::from_ascii(&absolute).unwrap_or_else(|error| {
        tracing::error!(name, %error, "invalid DNS name built from the cluster state");
        Name::root()
    })
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
