//! Endpoint choice for the userspace proxy: round robin, with optional client-IP affinity.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::model::Endpoint;

/// The endpoints of one frontend and the state that spreads connections over them.
#[derive(Debug)]
pub struct Balancer {
    endpoints: Vec<Endpoint>,
    next: usize,
    affinity: Option<Duration>,
    /// Client address → the endpoint it was last sent to and when that expires.
    sticky: HashMap<IpAddr, (Endpoint, Instant)>,
}

impl Balancer {
    pub fn new(endpoints: Vec<Endpoint>, affinity_seconds: Option<u32>) -> Self {
        let mut balancer = Self {
            endpoints: Vec::new(),
            next: 0,
            affinity: None,
            sticky: HashMap::new(),
        };
        balancer.set_endpoints(endpoints, affinity_seconds);
        balancer
    }

    /// Replaces the endpoint list. Affinity entries for endpoints that left are dropped, so
    /// their clients are balanced again.
    pub fn set_endpoints(&mut self, endpoints: Vec<Endpoint>, affinity_seconds: Option<u32>) {
        self.affinity = affinity_seconds.map(|seconds| Duration::from_secs(seconds.into()));
        self.sticky.retain(|_, (endpoint, _)| endpoints.contains(endpoint));
        if self.affinity.is_none() {
            self.sticky.clear();
        }
        self.endpoints = endpoints;
    }

    /// Picks the endpoint for a new connection from `client`, or `None` without endpoints.
    /// `skip` lists endpoints that already refused this connection.
    pub fn pick(&mut self, client: IpAddr, skip: &[Endpoint]) -> Option<Endpoint> {
        let now = Instant::now();
        if let Some(ttl) = self.affinity {
            if let Some((endpoint, expires)) = self.sticky.get(&client)
                && *expires > now
                && !skip.contains(endpoint)
            {
                let endpoint = endpoint.clone();
                self.sticky.insert(client, (endpoint.clone(), now + ttl));
                return Some(endpoint);
            }
            // NOTE: expired entries of clients that never return are dropped only here, so
            // the map is bounded by the clients seen within one affinity timeout.
            self.sticky.retain(|_, (_, expires)| *expires > now);
        }

        let candidates: Vec<&Endpoint> =
            self.endpoints.iter().filter(|endpoint| !skip.contains(endpoint)).collect();
        if candidates.is_empty() {
            return None;
        }
        let endpoint = candidates[self.next % candidates.len()].clone();
        self.next = self.next.wrapping_add(1);
        if let Some(ttl) = self.affinity {
            self.sticky.insert(client, (endpoint.clone(), now + ttl));
        }
        Some(endpoint)
    }

    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(last_octets: &[u8]) -> Vec<Endpoint> {
        last_octets
            .iter()
            .map(|octet| Endpoint {
                ip: [10, 0, 0, *octet].into(),
                port: 80,
                node_name: None,
            })
            .collect()
    }

    #[test]
    fn round_robin_visits_every_endpoint() {
        let mut balancer = Balancer::new(endpoints(&[1, 2, 3]), None);
        let client: IpAddr = [10, 9, 9, 9].into();
        let mut seen: Vec<u8> = (0..6)
            .map(|_| balancer.pick(client, &[]).unwrap().ip.octets()[3])
            .collect();
        seen.sort();
        assert_eq!(seen, [1, 1, 2, 2, 3, 3]);
    }

    #[test]
    fn affinity_keeps_a_client_on_one_endpoint() {
        let mut balancer = Balancer::new(endpoints(&[1, 2, 3]), Some(60));
        let client: IpAddr = [10, 9, 9, 9].into();
        let first = balancer.pick(client, &[]).unwrap();
        for _ in 0..5 {
            assert_eq!(balancer.pick(client, &[]).unwrap(), first);
        }
        let other = balancer.pick([10, 9, 9, 8].into(), &[]).unwrap();
        assert_ne!(other, first, "a second client continues the rotation");
    }

    #[test]
    fn removed_endpoint_loses_its_clients() {
        let mut balancer = Balancer::new(endpoints(&[1, 2]), Some(60));
        let client: IpAddr = [10, 9, 9, 9].into();
        let first = balancer.pick(client, &[]).unwrap();
        let rest: Vec<Endpoint> = endpoints(&[1, 2]).into_iter().filter(|e| *e != first).collect();
        balancer.set_endpoints(rest.clone(), Some(60));
        assert_eq!(balancer.pick(client, &[]).unwrap(), rest[0]);
    }

    #[test]
    fn refused_endpoints_are_skipped() {
        let mut balancer = Balancer::new(endpoints(&[1, 2]), None);
        let all = endpoints(&[1, 2]);
        let client: IpAddr = [10, 9, 9, 9].into();
        assert_eq!(balancer.pick(client, &all[..1]).unwrap(), all[1]);
        assert_eq!(balancer.pick(client, &all), None);
    }
}
