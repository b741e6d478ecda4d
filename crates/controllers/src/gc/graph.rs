//! The ownership graph: every watched object by uid, with its owners and dependents, and
//! the plan of garbage-collector actions for one object.
//!
//! Planning is pure, so the rules can be tested without a server. The `commit` module
//! performs the actions and checks the API server again where the cache could be behind.

use std::collections::{BTreeSet, HashMap};

use capstan_api::resources::ResourceInfo;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The finalizer that requests deletion of the dependents before their owner.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer that requests that dependents be kept and released from their owner.
pub const ORPHAN_FINALIZER: &str = "orphan";

/// One watched object, reduced to what the collector reads.
#[derive(Debug, Clone)]
pub struct ObjectNode {
    pub resource: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
    pub owners: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

impl ObjectNode {
    /// Builds a node from an object's metadata; `None` for an object without name or uid.
    pub fn from_metadata(resource: &'static ResourceInfo, metadata: &ObjectMeta) -> Option<Self> {
        Some(ObjectNode {
            resource,
            namespace: metadata.namespace.clone(),
            name: metadata.name.clone()?,
            uid: metadata.uid.clone()?,
            resource_version: metadata.resource_version.clone(),
            owners: metadata.owner_references.clone().unwrap_or_default(),
            finalizers: metadata.finalizers.clone().unwrap_or_default(),
            deleting: metadata.deletion_timestamp.is_some(),
        })
    }

    fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|present| present == finalizer)
    }
}

/// One write the collector wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcAction {
    /// Every owner of `uid` is missing from the cache: confirm with the API server, then
    /// delete the object with propagation Background.
    DeleteIfOrphaned { uid: String },
    /// Delete a dependent of an owner in foreground deletion, itself in the foreground.
    DeleteDependent { uid: String },
    /// Drop the owner reference to `owner_uid` from `uid`, for an owner deleted with the
    /// orphan policy.
    RemoveOwnerReference { uid: String, owner_uid: String },
    /// Remove `finalizer` from `uid` once its work is done.
    RemoveFinalizer { uid: String, finalizer: &'static str },
}

/// Objects by uid and the reverse owner index.
#[derive(Debug, Default)]
pub struct Graph {
    objects: HashMap<String, ObjectNode>,
    /// Dependents by owner uid.
    dependents: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&ObjectNode> {
        self.objects.get(uid)
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Adds or replaces an object. Returns the uids to re-plan: the object, its owners
    /// (one of them may be waiting for it) and its dependents.
    pub fn upsert(&mut self, node: ObjectNode) -> Vec<String> {
        let uid = node.uid.clone();
        let mut dirty = self.unlink(&uid);
        for owner in &node.owners {
            self.dependents.entry(owner.uid.clone()).or_default().insert(uid.clone());
            dirty.push(owner.uid.clone());
        }
        dirty.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
        dirty.push(uid.clone());
        self.objects.insert(uid, node);
        dirty
    }

    /// Removes an object. Returns the uids to re-plan: its owners and its dependents,
    /// which may now be orphans.
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let mut dirty = self.unlink(uid);
        self.objects.remove(uid);
        dirty.extend(self.dependents.get(uid).into_iter().flatten().cloned());
        dirty
    }

    /// Replaces every object of one resource after its watch relisted.
    pub fn replace_resource(&mut self, resource: &'static ResourceInfo, nodes: Vec<ObjectNode>) -> Vec<String> {
        let listed: BTreeSet<&str> = nodes.iter().map(|node| node.uid.as_str()).collect();
        let stale: Vec<String> = self
            .objects
            .values()
            .filter(|node| node.resource == resource && !listed.contains(node.uid.as_str()))
            .map(|node| node.uid.clone())
            .collect();
        let mut dirty = Vec::new();
        for uid in stale {
            dirty.extend(self.remove(&uid));
        }
        for node in nodes {
            dirty.extend(self.upsert(node));
        }
        dirty
    }

    /// Copies `uid` and its dependents into a new graph, enough to commit the actions
    /// planned for `uid` without holding the shared graph's lock.
    pub fn subgraph_for(&self, uid: &str) -> Graph {
        let mut copy = Graph::default();
        let related = self.dependents.get(uid).into_iter().flatten().map(String::as_str);
        for member in related.chain([uid]) {
            if let Some(node) = self.objects.get(member) {
                copy.objects.insert(member.to_string(), node.clone());
            }
        }
        copy
    }

    /// Drops `uid` from its owners' dependent sets, returning those owners.
    fn unlink(&mut self, uid: &str) -> Vec<String> {
        let Some(old) = self.objects.get(uid) else { return Vec::new() };
        let owners: Vec<String> = old.owners.iter().map(|owner| owner.uid.clone()).collect();
        for owner in &owners {
            if let Some(set) = self.dependents.get_mut(owner) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(owner);
                }
            }
        }
        owners
    }

    /// Plans the collector's work for one object.
    pub fn plan(&self, uid: &str) -> Vec<GcAction> {
        let Some(object) = self.objects.get(uid) else { return Vec::new() };
        let dependents: Vec<&ObjectNode> = self
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|dependent| self.objects.get(dependent))
            .collect();

        // An owner deleted with the orphan policy releases its dependents first.
        if object.deleting && object.has_finalizer(ORPHAN_FINALIZER) {
            let mut actions: Vec<GcAction> = dependents
                .iter()
                .map(|dependent| GcAction::RemoveOwnerReference {
                    uid: dependent.uid.clone(),
                    owner_uid: uid.to_string(),
                })
                .collect();
            actions.push(GcAction::RemoveFinalizer { uid: uid.to_string(), finalizer: ORPHAN_FINALIZER });
            return actions;
        }

        // An owner deleted in the foreground waits for its blocking dependents.
        if object.deleting && object.has_finalizer(FOREGROUND_FINALIZER) {
            let mut actions: Vec<GcAction> = dependents
                .iter()
                .filter(|dependent| !dependent.deleting)
                .map(|dependent| GcAction::DeleteDependent { uid: dependent.uid.clone() })
                .collect();
            let blocked = dependents.iter().any(|dependent| {
                dependent
                    .owners
                    .iter()
                    .any(|owner| owner.uid == uid && owner.block_owner_deletion == Some(true))
            });
            if !blocked {
                actions.push(GcAction::RemoveFinalizer {
                    uid: uid.to_string(),
                    finalizer: FOREGROUND_FINALIZER,
                });
            }
            return actions;
        }

        // A dependent whose every owner is gone is garbage.
        let orphaned = !object.owners.is_empty()
            && object.owners.iter().all(|owner| !self.objects.contains_key(&owner.uid));
        if orphaned && !object.deleting {
            return vec![GcAction::DeleteIfOrphaned { uid: uid.to_string() }];
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests;
