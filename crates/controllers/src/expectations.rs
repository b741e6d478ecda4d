//! Expectations: what a controller has written but not yet seen in its cache.
//!
//! After a ReplicaSet reconcile creates pods, the pod cache lags until the watch
//! delivers them. A reconcile in that window would count too few pods and create
//! them again. Like kube-controller-manager, the controller records what it expects
//! and skips creating or deleting until the cache shows it. capstan tracks pod names
//! and uids instead of counters, so the check needs no event hooks: it compares the
//! records against the cache on each reconcile.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a record is trusted before the controller acts without it, as
/// kube-controller-manager does, so a lost watch event cannot stall a ReplicaSet.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Record {
    /// Names of pods created but not yet in the cache.
    creations: HashSet<String>,
    /// Uids of pods deleted but still in the cache without a deletionTimestamp.
    deletions: HashSet<String>,
    since: Instant,
}

/// Pending creations and deletions per controller key (the controlling object's uid, so
/// that an object deleted and created again under the same name starts afresh).
#[derive(Debug, Default)]
pub struct Expectations {
    records: Mutex<HashMap<String, Record>>,
}

impl Expectations {
    /// Records that the pod `name` was created for `key`.
    pub fn expect_creation(&self, key: &str, name: String) {
        self.with_record(key, |record| {
            record.creations.insert(name);
        });
    }

    /// Records that the pod with `uid` was deleted for `key`.
    pub fn expect_deletion(&self, key: &str, uid: String) {
        self.with_record(key, |record| {
            record.deletions.insert(uid);
        });
    }

    /// Returns whether the cache has caught up with every write for `key`.
    ///
    /// `seen_name` returns true when a pod of that name is in the cache, and
    /// `gone_uid` when a pod with that uid is gone from it or being deleted.
    /// Satisfied entries are dropped, and so is a whole record after
    /// [`EXPECTATIONS_TIMEOUT`].
    pub fn satisfied(
        &self,
        key: &str,
        seen_name: impl Fn(&str) -> bool,
        gone_uid: impl Fn(&str) -> bool,
    ) -> bool {
        let mut records = self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(record) = records.get_mut(key) else {
            return true;
        };
        record.creations.retain(|name| !seen_name(name));
        record.deletions.retain(|uid| !gone_uid(uid));
        let done = record.creations.is_empty() && record.deletions.is_empty();
        if done || record.since.elapsed() >= EXPECTATIONS_TIMEOUT {
            records.remove(key);
            return true;
        }
        false
    }

    /// Names of pods created for `key` at least `age` ago that the cache has not shown.
    /// A pod created and deleted again between two reconciles never shows in the cache,
    /// so the caller asks the API about these and calls [`Expectations::observe_gone`]
    /// for those it no longer finds.
    pub fn unseen_creations(&self, key: &str, age: Duration) -> Vec<String> {
        let records = self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match records.get(key) {
            Some(record) if record.since.elapsed() >= age => record.creations.iter().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Drops the creation record of pod `name`, which the API no longer has.
    pub fn observe_gone(&self, key: &str, name: &str) {
        let mut records = self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(record) = records.get_mut(key) {
            record.creations.remove(name);
        }
    }

    /// Forgets everything recorded for `key`, for example when its object is deleted.
    pub fn forget(&self, key: &str) {
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(key);
    }

    fn with_record(&self, key: &str, update: impl FnOnce(&mut Record)) {
        let mut records = self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let record = records.entry(key.to_string()).or_insert_with(|| Record {
            creations: HashSet::new(),
            deletions: HashSet::new(),
            since: Instant::now(),
        });
        update(record);
    }
}

/// How long a created pod may be missing from the cache before the API is asked about it.
pub const UNSEEN_CREATION_CHECK: Duration = Duration::from_secs(2);

/// Asks the API about pods that the controller keyed `key` created a while ago and the
/// cache still does not show. Pods the API no longer has were deleted before the cache
/// saw them, so their records are dropped.
pub async fn confirm_unseen_creations(expectations: &Expectations, client: &kube::Client, namespace: &str, key: &str) {
    let unseen = expectations.unseen_creations(key, UNSEEN_CREATION_CHECK);
    if unseen.is_empty() {
        return;
    }
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client.clone(), namespace);
    for pod_name in unseen {
        if let Ok(None) = api.get_opt(&pod_name).await {
            tracing::debug!(pod.name = %pod_name, "created pod is gone before the cache saw it");
            expectations.observe_gone(key, &pod_name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsatisfied_until_cache_shows_pods() {
        let expectations = Expectations::default();
        assert!(expectations.satisfied("ns/web", |_| false, |_| false));
        expectations.expect_creation("ns/web", "web-abcde".into());
        expectations.expect_deletion("ns/web", "uid-1".into());
        assert!(!expectations.satisfied("ns/web", |_| false, |_| false));
        assert!(!expectations.satisfied("ns/web", |name| name == "web-abcde", |_| false));
        assert!(expectations.satisfied("ns/web", |_| false, |uid| uid == "uid-1"));
    }

    #[test]
    fn unseen_creations_wait_for_their_age() {
        let expectations = Expectations::default();
        expectations.expect_creation("uid-rs", "web-abcde".into());
        assert_eq!(expectations.unseen_creations("uid-rs", Duration::from_secs(60)), Vec::<String>::new());
        assert_eq!(expectations.unseen_creations("uid-rs", Duration::ZERO), vec!["web-abcde".to_string()]);
        expectations.observe_gone("uid-rs", "web-abcde");
        assert!(expectations.satisfied("uid-rs", |_| false, |_| false));
    }

    #[test]
    fn keys_are_independent() {
        let expectations = Expectations::default();
        expectations.expect_creation("ns/a", "a-1".into());
        assert!(expectations.satisfied("ns/b", |_| false, |_| false));
        expectations.forget("ns/a");
        assert!(expectations.satisfied("ns/a", |_| false, |_| false));
    }
}
