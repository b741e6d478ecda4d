//! The pods and containers the agent runs, as the kubelet server looks them up: which log
//! file belongs to a container's current and previous run, and whether it still runs.
//!
//! Pod workers publish here after each sync; the server only reads.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// Log files of one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerLogs {
    pub current: Option<PathBuf>,
    pub previous: Option<PathBuf>,
    /// The current run has not exited, so a follower should wait for more lines.
    pub running: bool,
}

/// Log files of one pod, by container name (init containers included).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodLogs {
    pub uid: String,
    pub containers: BTreeMap<String, ContainerLogs>,
}

/// Shared map from `(namespace, name)` to the pod's log files.
#[derive(Clone, Debug, Default)]
pub struct PodDirectory {
    pods: Arc<RwLock<HashMap<(String, String), PodLogs>>>,
}

impl PodDirectory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the pod's current log files, replacing what was there.
    pub fn publish(&self, namespace: &str, name: &str, logs: PodLogs) {
        let mut pods = self
            .pods
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pods.insert((namespace.to_string(), name.to_string()), logs);
    }

    /// Forgets the pod, unless a newer pod with the same name replaced it.
    pub fn remove(&self, namespace: &str, name: &str, uid: &str) {
        let mut pods = self
            .pods
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (namespace.to_string(), name.to_string());
        if pods.get(&key).is_some_and(|logs| logs.uid == uid) {
            pods.remove(&key);
        }
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodLogs> {
        let pods = self
            .pods
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pods.get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Returns the container's log files, or `None` when the pod or container is unknown.
    pub fn container(&self, namespace: &str, name: &str, container: &str) -> Option<ContainerLogs> {
        self.pod(namespace, name)?
            .containers
            .get(container)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_keeps_newer_pod() {
        let directory = PodDirectory::new();
        directory.publish(
            "default",
            "web",
            PodLogs {
                uid: "new".into(),
                ..PodLogs::default()
            },
        );
        directory.remove("default", "web", "old");
        assert!(directory.pod("default", "web").is_some());
        directory.remove("default", "web", "new");
        assert!(directory.pod("default", "web").is_none());
    }
}
