//! Writes for one Deployment reconcile. [`Rollout`] contains the Deployment, its
//! ReplicaSets and the status being built, and updates its copies after each write
//! so later steps of the same reconcile plan from what was written.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::hash;
use super::rollout::{Params, RsState};
use super::status::{self, new_condition};
use super::{Context, Error};
use crate::record::{self, Kind};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Deployment annotations that are not copied to its ReplicaSets.
const NOT_COPIED: [&str; 5] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS,
    MAX_REPLICAS,
];

/// One Deployment's reconcile state.
pub struct Rollout<'a> {
    pub context: &'a Context,
    pub deployment: Deployment,
    pub params: Params,
    /// ReplicaSets the Deployment controls.
    pub sets: Vec<ReplicaSet>,
    /// Index in `sets` of the ReplicaSet matching the current template.
    pub new: Option<usize>,
    pub status: DeploymentStatus,
    pub now: Timestamp,
}

fn annotation(rs: &ReplicaSet, key: &str) -> Option<i64> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

/// Reads a ReplicaSet's state for the rollout math.
pub fn rs_state(rs: &ReplicaSet) -> RsState {
    let as_i32 = |value: Option<i64>| value.and_then(|v| i32::try_from(v).ok());
    RsState {
        name: rs.metadata.name.clone().unwrap_or_default(),
        replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        available: rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0),
        created: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        desired_annotation: as_i32(annotation(rs, DESIRED_REPLICAS)),
        max_annotation: as_i32(annotation(rs, MAX_REPLICAS)),
    }
}

/// Returns the ReplicaSet's revision, 0 when unset or invalid.
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION).unwrap_or(0)
}

impl Rollout<'_> {
    fn namespace(&self) -> String {
        self.deployment.metadata.namespace.clone().unwrap_or_default()
    }

    fn rs_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.context.client.clone(), &self.namespace())
    }

    fn write_error(&self, action: &'static str, name: &str) -> impl FnOnce(kube::Error) -> Error {
        let namespace = self.namespace();
        let name = name.to_string();
        move |source| Error::WriteFailed { action, namespace, name, source }
    }

    /// Returns the new ReplicaSet's state, if any, and the old ones' states.
    pub fn states(&self) -> (Option<RsState>, Vec<RsState>) {
        let new = self.new.map(|i| rs_state(&self.sets[i]));
        let old = self.sets.iter().enumerate().filter(|(i, _)| Some(*i) != self.new).map(|(_, rs)| rs_state(rs)).collect();
        (new, old)
    }

    fn max_old_revision(&self) -> i64 {
        self.sets.iter().enumerate().filter(|(i, _)| Some(*i) != self.new).map(|(_, rs)| revision(rs)).max().unwrap_or(0)
    }

    fn annotations_for(&self, existing: Option<&BTreeMap<String, String>>, revision: i64, with_sizes: bool) -> BTreeMap<String, String> {
        let mut annotations = existing.cloned().unwrap_or_default();
        for (key, value) in self.deployment.metadata.annotations.iter().flatten() {
            if !NOT_COPIED.contains(&key.as_str()) {
                annotations.insert(key.clone(), value.clone());
            }
        }
        let current = annotations.get(REVISION).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        if current < revision {
            annotations.insert(REVISION.into(), revision.to_string());
        }
        if with_sizes {
            annotations.insert(DESIRED_REPLICAS.into(), self.params.replicas.to_string());
            annotations.insert(MAX_REPLICAS.into(), (self.params.replicas + self.params.max_surge).to_string());
        }
        annotations
    }

    /// Brings the new ReplicaSet's annotations up to date, and creates it when
    /// `create` is set and none matches the template yet.
    pub async fn ensure_new(&mut self, create: bool) -> Result<(), Error> {
        let next_revision = self.max_old_revision() + 1;
        if let Some(index) = self.new {
            let rs = &self.sets[index];
            let annotations = self.annotations_for(rs.metadata.annotations.as_ref(), next_revision, false);
            let min_ready = self.deployment.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if rs.metadata.annotations.as_ref() != Some(&annotations) || rs_min_ready != min_ready {
                let mut updated = rs.clone();
                updated.metadata.annotations = Some(annotations);
                updated.spec.get_or_insert_with(Default::default).min_ready_seconds = min_ready;
                let name = updated.metadata.name.clone().unwrap_or_default();
                let written = self.rs_api().replace(&name, &PostParams::default(), &updated).await.map_err(self.write_error("update", &name))?;
                self.sets[index] = written;
            }
            let name = self.sets[index].metadata.name.clone().unwrap_or_default();
            if status::condition(&self.status, status::PROGRESSING).is_none() && status::progress_deadline(&self.deployment).is_some() {
                let message = format!("Found new replica set {name:?}");
                status::set_condition(&mut self.status, new_condition(status::PROGRESSING, "True", status::FOUND_NEW_RS, message, self.now));
            }
            return Ok(());
        }
        if create {
            self.create_new(next_revision).await?;
        }
        Ok(())
    }

    async fn create_new(&mut self, revision: i64) -> Result<(), Error> {
        let spec = self.deployment.spec.clone().unwrap_or_default();
        let hash = hash::compute_hash(&spec.template, self.status.collision_count);
        let deployment_name = self.deployment.metadata.name.clone().unwrap_or_default();
        let name = format!("{deployment_name}-{hash}");
        let template = hash::template_with_hash(&spec.template, &hash);

        // Size it for the first rollout step.
        let (_, old) = self.states();
        let probe = RsState { name: name.clone(), replicas: 0, available: 0, created: None, desired_annotation: None, max_annotation: None };
        let replicas = super::rollout::new_rs_replicas(&self.params, &probe, &old);
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.deployment.metadata.namespace.clone(),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(self.annotations_for(None, revision, true)),
                owner_references: Some(vec![self.owner_reference()]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector: hash::selector_with_hash(&spec.selector, &hash),
                template: Some(template),
            }),
            status: None,
        };

        let created = match self.rs_api().create(&PostParams::default(), &rs).await {
            Ok(created) => created,
            Err(kube::Error::Api(error)) if error.is_already_exists() => return self.adopt_existing(&name).await,
            Err(source) => return Err(self.write_error("create", &name)(source)),
        };
        tracing::info!(replicaset.name = %name, replicas, "created new replica set");
        if replicas > 0 {
            let message = format!("Scaled up replica set {name} from 0 to {replicas}");
            record::normal(&self.context.client, Kind::Deployment, &self.deployment.metadata, "ScalingReplicaSet", &message).await;
        }
        let message = format!("Created new replica set {name:?}");
        status::set_condition(&mut self.status, new_condition(status::PROGRESSING, "True", status::NEW_RS_CREATED, message, self.now));
        self.sets.push(created);
        self.new = Some(self.sets.len() - 1);
        Ok(())
    }

    /// Handles a name clash on create: the cache may lag behind a ReplicaSet this
    /// controller made, or another object already has the name and the collision count
    /// must change the hash.
    async fn adopt_existing(&mut self, name: &str) -> Result<(), Error> {
        let existing = self.rs_api().get(name).await.map_err(self.write_error("read", name))?;
        let uid = self.deployment.metadata.uid.clone().unwrap_or_default();
        let ours = crate::pods::controller_of(&existing.metadata).is_some_and(|o| o.uid == uid);
        let template = &self.deployment.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let same = existing.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| hash::equal_ignoring_hash(t, template));
        if ours && same {
            self.sets.push(existing);
            self.new = Some(self.sets.len() - 1);
            return Ok(());
        }
        let count = self.status.collision_count.unwrap_or(0).wrapping_add(1);
        self.status.collision_count = Some(count);
        // Persist the count now, because the next reconcile derives the name from it.
        self.write_status(None).await?;
        Err(Error::HashCollision { namespace: self.namespace(), name: name.to_string(), collision_count: count })
    }

    fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: self.deployment.metadata.name.clone().unwrap_or_default(),
            uid: self.deployment.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// Sets the replica count and size annotations of the named ReplicaSet. Returns
    /// whether the count changed.
    pub async fn scale(&mut self, name: &str, replicas: i32) -> Result<bool, Error> {
        let Some(index) = self.sets.iter().position(|rs| rs.metadata.name.as_deref() == Some(name)) else {
            return Ok(false);
        };
        let rs = &self.sets[index];
        let current = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let annotations = self.annotations_for(rs.metadata.annotations.as_ref(), 0, true);
        if current == replicas && rs.metadata.annotations.as_ref() == Some(&annotations) {
            return Ok(false);
        }
        let mut updated = rs.clone();
        updated.metadata.annotations = Some(annotations);
        updated.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
        let written = self.rs_api().replace(name, &PostParams::default(), &updated).await.map_err(self.write_error("scale", name))?;
        self.sets[index] = written;
        if current != replicas {
            let direction = if replicas > current { "up" } else { "down" };
            tracing::info!(replicaset.name = name, from = current, to = replicas, "scaled replica set");
            let message = format!("Scaled {direction} replica set {name} from {current} to {replicas}");
            record::normal(&self.context.client, Kind::Deployment, &self.deployment.metadata, "ScalingReplicaSet", &message).await;
        }
        Ok(current != replicas)
    }

    /// Applies `(name, replicas)` pairs and returns whether any count changed.
    pub async fn scale_all(&mut self, plan: Vec<(String, i32)>) -> Result<bool, Error> {
        let mut changed = false;
        for (name, replicas) in plan {
            changed |= self.scale(&name, replicas).await?;
        }
        Ok(changed)
    }

    /// Deletes the oldest empty old ReplicaSets beyond `revisionHistoryLimit`.
    pub async fn clean_up_history(&mut self) -> Result<(), Error> {
        let limit = self.deployment.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10).max(0);
        let mut old: Vec<&ReplicaSet> = self
            .sets
            .iter()
            .enumerate()
            .filter(|(i, rs)| Some(*i) != self.new && rs.metadata.deletion_timestamp.is_none())
            .map(|(_, rs)| rs)
            .collect();
        let surplus = old.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
        if surplus == 0 {
            return Ok(());
        }
        old.sort_by_key(|rs| (revision(rs), rs.metadata.creation_timestamp.as_ref().map(|t| t.0)));
        let empty = |rs: &ReplicaSet| {
            rs.spec.as_ref().and_then(|s| s.replicas) == Some(0)
                && rs.status.as_ref().is_none_or(|s| s.replicas == 0)
                && rs.metadata.generation <= rs.status.as_ref().and_then(|s| s.observed_generation)
        };
        let doomed: Vec<String> = old.into_iter().take(surplus).filter(|rs| empty(rs)).filter_map(|rs| rs.metadata.name.clone()).collect();
        for name in doomed {
            match self.rs_api().delete(&name, &DeleteParams::background()).await {
                Ok(_) => tracing::info!(replicaset.name = %name, "deleted old replica set beyond the revision history limit"),
                Err(kube::Error::Api(error)) if error.is_not_found() => {}
                Err(source) => return Err(self.write_error("delete", &name)(source)),
            }
            self.sets.retain(|rs| rs.metadata.name.as_deref() != Some(name.as_str()));
            self.new = self.new_index_after_removal();
        }
        Ok(())
    }

    fn new_index_after_removal(&self) -> Option<usize> {
        let template = self.deployment.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        super::find_new(&self.sets, &template)
    }

    /// Copies the new ReplicaSet's revision to the Deployment, then writes the status
    /// if it changed. The status write carries the resourceVersion the plan was made
    /// from, so a Deployment changed meanwhile returns a conflict.
    pub async fn write_status(&mut self, previous: Option<&DeploymentStatus>) -> Result<(), Error> {
        let name = self.deployment.metadata.name.clone().unwrap_or_default();
        let api: Api<Deployment> = Api::namespaced(self.context.client.clone(), &self.namespace());
        let revision = self.new.map(|i| revision(&self.sets[i]).to_string());
        let current = self.deployment.metadata.annotations.as_ref().and_then(|a| a.get(REVISION));
        if let Some(revision) = revision.filter(|r| Some(r) != current) {
            let patch = json!({ "metadata": { "annotations": { REVISION: revision } } });
            let written = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(self.write_error("annotate", &name))?;
            if written.metadata.generation != self.deployment.metadata.generation {
                // The spec changed under us: this plan is stale, so plan again.
                return Err(Error::Stale { namespace: self.namespace(), name });
            }
            self.deployment.metadata.resource_version = written.metadata.resource_version;
        }
        if previous == Some(&self.status) {
            return Ok(());
        }
        let mut updated = self.deployment.clone();
        updated.status = Some(self.status.clone());
        api.replace_status(&name, &PostParams::default(), &updated).await.map_err(self.write_error("update status of", &name))?;
        Ok(())
    }

    /// Returns the ReplicaSets as references for the status calculation.
    pub fn all(&self) -> Vec<&ReplicaSet> {
        self.sets.iter().collect()
    }

    /// Returns the new ReplicaSet.
    pub fn new_rs(&self) -> Option<&ReplicaSet> {
        self.new.map(|i| &self.sets[i])
    }
}

/// Returns the ReplicaSets in the cache that `deployment` controls.
pub fn owned_sets(sets: &[Arc<ReplicaSet>], deployment: &Deployment) -> Vec<ReplicaSet> {
    let uid = deployment.metadata.uid.as_deref().unwrap_or_default();
    sets.iter()
        .filter(|rs| rs.metadata.namespace == deployment.metadata.namespace)
        .filter(|rs| crate::pods::controller_of(&rs.metadata).is_some_and(|o| o.uid == uid))
        .map(|rs| rs.as_ref().clone())
        .collect()
}
