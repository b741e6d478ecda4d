//! Store-backed allocation of ClusterIPs and NodePorts.
//!
//! Each allocated value is one key, `/registry/ipallocations/<ip>` or
//! `/registry/portallocations/<port>`, created with the store's `create`, which fails when
//! the key exists. Because the store decides, two API servers on one store, or one server
//! after a restart, never hand out the same value twice. A port is allocated by number
//! alone, whatever its protocol, as Kubernetes does.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use capstan_store::{Store, StoreError};
use rand::Rng;
use serde_json::json;

use super::ranges::{ClusterIpRange, NodePortRange};

pub(super) const IP_PREFIX: &str = "/registry/ipallocations/";
pub(super) const PORT_PREFIX: &str = "/registry/portallocations/";
/// Random picks before the allocator lists the taken values and scans for a free one.
const RANDOM_ATTEMPTS: usize = 16;

pub fn ip_key(ip: Ipv4Addr) -> String {
    format!("{IP_PREFIX}{ip}")
}

pub fn port_key(port: u16) -> String {
    format!("{PORT_PREFIX}{port}")
}

/// The Service an allocation belongs to, stored as the key's value so that an operator
/// can tell who holds it and the repair loop can tell how old the claim is.
#[derive(Clone, Debug)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    fn encode(&self) -> Vec<u8> {
        let value = json!({
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "allocatedAt": jiff::Timestamp::now().to_string(),
        });
        value.to_string().into_bytes()
    }
}

/// Keys created by one request, to delete again when the request fails.
#[derive(Debug, Default)]
pub struct Claims {
    pub keys: Vec<String>,
}

impl Claims {
    /// Creates `key` for `owner`. Returns false when another Service holds it.
    pub async fn claim(&mut self, store: &dyn Store, key: String, owner: &Owner) -> Result<bool, StoreError> {
        if self.keys.contains(&key) {
            return Ok(true);
        }
        match store.create(&key, owner.encode()).await {
            Ok(_) => {
                tracing::debug!(key, service.namespace = %owner.namespace, service.name = %owner.name, "allocated");
                self.keys.push(key);
                Ok(true)
            }
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// Allocates a free address of `range`, skipping the first one (reserved for the
    /// `kubernetes` Service). Returns None when the range is full.
    pub async fn claim_any_ip(
        &mut self,
        store: &dyn Store,
        range: &ClusterIpRange,
        owner: &Owner,
    ) -> Result<Option<Ipv4Addr>, StoreError> {
        let candidates = range.size().saturating_sub(1);
        let pick = |offset: u32| range.nth(offset + 1).map(ip_key);
        let key = self.claim_any(store, IP_PREFIX, candidates, pick, owner).await?;
        Ok(key.and_then(|k| k[IP_PREFIX.len()..].parse().ok()))
    }

    /// Allocates a free port of `range`; None when the range is full.
    pub async fn claim_any_port(
        &mut self,
        store: &dyn Store,
        range: &NodePortRange,
        owner: &Owner,
    ) -> Result<Option<u16>, StoreError> {
        let pick = |offset: u32| u16::try_from(u32::from(range.first) + offset).ok().map(port_key);
        let key = self.claim_any(store, PORT_PREFIX, range.size(), pick, owner).await?;
        Ok(key.and_then(|k| k[PORT_PREFIX.len()..].parse().ok()))
    }

    /// Tries random offsets first, which is fast while the range is mostly free, then lists
    /// the taken keys and walks the range once from a random start.
    async fn claim_any(
        &mut self,
        store: &dyn Store,
        prefix: &str,
        size: u32,
        key_at: impl Fn(u32) -> Option<String>,
        owner: &Owner,
    ) -> Result<Option<String>, StoreError> {
        if size == 0 {
            return Ok(None);
        }
        for _ in 0..RANDOM_ATTEMPTS {
            let offset = rand::rng().random_range(0..size);
            let Some(key) = key_at(offset) else { continue };
            if !self.keys.contains(&key) && self.claim(store, key.clone(), owner).await? {
                return Ok(Some(key));
            }
        }
        let taken: HashSet<String> = store.list(prefix, None).await?.items.into_iter().map(|kv| kv.key).collect();
        let start = rand::rng().random_range(0..size);
        for step in 0..size {
            let Some(key) = key_at((start + step) % size) else { continue };
            if taken.contains(&key) || self.keys.contains(&key) {
                continue;
            }
            if self.claim(store, key.clone(), owner).await? {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

    /// Deletes every key this request created.
    pub async fn release_all(self, store: &dyn Store) {
        release(store, &self.keys).await;
    }
}

/// Deletes allocation keys. A failure is logged, not returned: the caller's request has
/// already succeeded or failed for its own reason, and a leaked key only makes one value
/// unavailable.
pub async fn release(store: &dyn Store, keys: &[String]) {
    for key in keys {
        match store.delete(key, None).await {
            Ok(_) => tracing::debug!(key, "released"),
            Err(StoreError::NotFound { .. }) => {}
            Err(error) => tracing::warn!(key, %error, "failed to release a service allocation"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_store::MemoryStore;

    fn owner() -> Owner {
        Owner { namespace: "default".into(), name: "web".into(), uid: "u1".into() }
    }

    #[tokio::test]
    async fn small_range_fills_without_duplicates() {
        let store = MemoryStore::new(1000);
        let range: ClusterIpRange = "10.0.0.0/29".parse().unwrap();
        let mut claims = Claims::default();
        let mut seen = HashSet::new();
        // six assignable addresses, the first reserved: five for Services
        for _ in 0..5 {
            let ip = claims.claim_any_ip(&store, &range, &owner()).await.unwrap().expect("a free address");
            assert_ne!(ip, range.first(), "the first address is reserved");
            assert!(seen.insert(ip), "{ip} allocated twice");
        }
        assert_eq!(claims.claim_any_ip(&store, &range, &owner()).await.unwrap(), None, "range is full");
    }

    #[tokio::test]
    async fn taken_key_is_not_claimed_again() {
        let store = MemoryStore::new(1000);
        let mut first = Claims::default();
        assert!(first.claim(&store, port_key(30080), &owner()).await.unwrap());
        let mut second = Claims::default();
        assert!(!second.claim(&store, port_key(30080), &owner()).await.unwrap());
        first.release_all(&store).await;
        assert!(second.claim(&store, port_key(30080), &owner()).await.unwrap(), "released port is free again");
    }

    #[tokio::test]
    async fn port_allocation_stays_in_range() {
        let store = MemoryStore::new(1000);
        let range = NodePortRange { first: 30000, last: 30003 };
        let mut claims = Claims::default();
        let mut ports = Vec::new();
        while let Some(port) = claims.claim_any_port(&store, &range, &owner()).await.unwrap() {
            ports.push(port);
        }
        ports.sort_unstable();
        assert_eq!(ports, [30000, 30001, 30002, 30003]);
    }
}
