//! The repair loop of Service allocations.
//!
//! Claims and Services are written separately. A server that crashes after a claim but
//! before its Service is written, or after a Service is deleted but before its claims are
//! released, leaves a claim without a Service. Such a claim would keep its address or
//! port unavailable forever. A store restored from an
//! older backup can also hold a Service whose claim is missing, so its address could be
//! handed out twice. Each pass compares the claims with the Services and fixes both.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use capstan_api::resources;
use capstan_store::{Store, StoreError};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::allocator::{Claims, IP_PREFIX, Owner, PORT_PREFIX, ip_key, port_key};
use super::{cluster_ip, node_ports, owner};

/// Time between passes. Leaks are rare, so a slow period is enough.
const REPAIR_PERIOD: Duration = Duration::from_secs(180);
/// Claims younger than this are left alone, because the request that made them may
/// still be writing its Service.
const CLAIM_GRACE: SignedDuration = SignedDuration::from_secs(60);

/// The changes of one pass.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repaired {
    /// Claims deleted because no Service has their value.
    pub released: Vec<String>,
    /// Claims written for Services that held a value without one.
    pub restored: Vec<String>,
}

/// Runs a pass at start and then every [`REPAIR_PERIOD`], until the task is dropped.
pub async fn run(store: std::sync::Arc<dyn Store>) {
    let mut ticks = tokio::time::interval(REPAIR_PERIOD);
    loop {
        ticks.tick().await;
        match repair_once(store.as_ref(), Timestamp::now()).await {
            Ok(repaired) if repaired == Repaired::default() => tracing::debug!("service allocations are consistent"),
            Ok(repaired) => tracing::info!(released = ?repaired.released, restored = ?repaired.restored, "repaired service allocations"),
            Err(error) => tracing::warn!(%error, "failed to check service allocations, retrying later"),
        }
    }
}

/// Compares the claims with the Services once, as of `now`.
pub async fn repair_once(store: &dyn Store, now: Timestamp) -> Result<Repaired, StoreError> {
    // List the claims before the Services: a claim made after this list is not judged,
    // and one made before it either has its Service in the later list or is still young.
    let mut claims = store.list(IP_PREFIX, None).await?.items;
    claims.extend(store.list(PORT_PREFIX, None).await?.items);
    let held = held_values(store).await?;
    let mut repaired = Repaired::default();

    // Release the claims of no Service.
    for claim in &claims {
        if held.contains_key(&claim.key) || now.duration_since(allocated_at(&claim.value)) < CLAIM_GRACE {
            continue;
        }
        match store.delete(&claim.key, Some(claim.mod_revision)).await {
            Ok(_) => repaired.released.push(claim.key.clone()),
            // Released or re-claimed since the list: the next pass looks again.
            Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
            Err(other) => return Err(other),
        }
    }

    // Restore the claims that Services lack.
    let claimed: BTreeSet<&str> = claims.iter().map(|claim| claim.key.as_str()).collect();
    for (key, holder) in &held {
        if claimed.contains(key.as_str()) {
            continue;
        }
        let mut restore = Claims::default();
        if restore.claim(store, key.clone(), holder).await? {
            repaired.restored.push(key.clone());
        }
    }
    Ok(repaired)
}

/// Maps the claim key of every ClusterIP and node port of a stored Service to that
/// Service.
async fn held_values(store: &dyn Store) -> Result<BTreeMap<String, Owner>, StoreError> {
    let Some(services) = resources::lookup("", "v1", "services") else { return Ok(BTreeMap::new()) };
    let mut held = BTreeMap::new();
    for kv in store.list(&services.key_prefix(), None).await?.items {
        let Ok(service) = serde_json::from_slice::<Value>(&kv.value) else {
            tracing::warn!(key = kv.key, "stored service is not JSON, so its allocations are not checked");
            continue;
        };
        let holder = owner(&service);
        for port in node_ports(&service) {
            held.insert(port_key(port), holder.clone());
        }
        if let Some(ip) = cluster_ip(&service)
            && let Some(previous) = held.insert(ip_key(ip), holder.clone())
        {
            tracing::error!(cluster_ip = %ip, first = %previous.name, second = %holder.name, "two services have one cluster IP");
        }
    }
    Ok(held)
}

/// Returns when a claim was made; a claim without a readable time counts as old.
fn allocated_at(value: &[u8]) -> Timestamp {
    let parsed: Option<Value> = serde_json::from_slice(value).ok();
    let text = parsed.as_ref().and_then(|v| v.get("allocatedAt")).and_then(Value::as_str).map(str::to_string);
    text.and_then(|t| t.parse().ok()).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use capstan_store::MemoryStore;
    use serde_json::json;

    use super::*;

    fn owner(name: &str) -> Owner {
        Owner { namespace: "default".into(), name: name.into(), uid: format!("uid-{name}") }
    }

    async fn put_service(store: &MemoryStore, name: &str, ip: &str, node_port: Option<u16>) {
        let services = resources::lookup("", "v1", "services").expect("services");
        let mut port = json!({"port": 80, "protocol": "TCP"});
        if let Some(node_port) = node_port {
            port["nodePort"] = json!(node_port);
        }
        let service = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
                             "spec": {"clusterIP": ip, "ports": [port]}});
        store.create(&services.key(Some("default"), name), service.to_string().into_bytes()).await.expect("store service");
    }

    async fn claim(store: &MemoryStore, key: String, name: &str) {
        let mut claims = Claims::default();
        assert!(claims.claim(store, key, &owner(name)).await.expect("claim"));
    }

    #[tokio::test]
    async fn old_orphan_claims_are_released() {
        let store = MemoryStore::new(1000);
        put_service(&store, "web", "10.96.0.10", Some(30080)).await;
        claim(&store, ip_key("10.96.0.10".parse().unwrap()), "web").await;
        claim(&store, port_key(30080), "web").await;
        claim(&store, ip_key("10.96.0.11".parse().unwrap()), "crashed").await;
        claim(&store, port_key(30081), "crashed").await;

        let young = repair_once(&store, Timestamp::now()).await.expect("repair");
        assert_eq!(young, Repaired::default(), "claims inside the grace period stay");

        let later = Timestamp::now() + SignedDuration::from_secs(120);
        let repaired = repair_once(&store, later).await.expect("repair");
        let mut released = repaired.released.clone();
        released.sort();
        assert_eq!(released, [ip_key("10.96.0.11".parse().unwrap()), port_key(30081)]);
        assert!(store.get(&ip_key("10.96.0.10".parse().unwrap())).await.unwrap().is_some(), "held claim kept");
        assert!(store.get(&port_key(30081)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn missing_claims_are_restored() {
        let store = MemoryStore::new(1000);
        put_service(&store, "web", "10.96.0.10", Some(30080)).await;
        put_service(&store, "headless", "None", None).await;
        let repaired = repair_once(&store, Timestamp::now()).await.expect("repair");
        let mut restored = repaired.restored.clone();
        restored.sort();
        assert_eq!(restored, [ip_key("10.96.0.10".parse().unwrap()), port_key(30080)]);

        // The restored claim now keeps another Service from taking the address.
        let mut other = Claims::default();
        assert!(!other.claim(&store, ip_key("10.96.0.10".parse().unwrap()), &owner("other")).await.unwrap());
        assert_eq!(repair_once(&store, Timestamp::now()).await.expect("repair"), Repaired::default());
    }
}
