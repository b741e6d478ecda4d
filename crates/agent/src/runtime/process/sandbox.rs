//! Pod sandbox verbs of the process runtime.

use std::path::PathBuf;
use std::time::Duration;

use super::state::{self, SandboxRecord};
use super::{ProcessRuntime, check_id};
use crate::runtime::{RuntimeError, SandboxConfig, SandboxStatus};

/// File in the sandbox directory that containers see as `/etc/resolv.conf`, present only
/// when the pod has its own resolver settings.
pub(super) const RESOLV_CONF: &str = "resolv.conf";

impl ProcessRuntime {
    /// Returns the pod's resolv.conf for a container of sandbox `sandbox_id`, if it has one.
    pub(super) fn resolv_conf_of(&self, sandbox_id: &str) -> Option<PathBuf> {
        let path = self.sandbox_dir(sandbox_id).join(RESOLV_CONF);
        path.exists().then_some(path)
    }

    pub(super) async fn run_sandbox_impl(
        &self,
        config: &SandboxConfig,
    ) -> Result<SandboxStatus, RuntimeError> {
        let id = state::new_id()?;
        let mut record = SandboxRecord::new(id.clone(), config);
        let span = tracing::debug_span!("run_sandbox", sandbox.id = %id, pod.namespace = %config.pod_namespace, pod.name = %config.pod_name);
        let _entered = span.enter();

        // the pod's cgroup parent
        if let Some(layout) = &self.cgroups {
            layout.create(&self.pod_cgroup(&record))?;
        }

        // the pod's network, unless it uses the host's
        if let (Some(network), false) = (&self.network, config.host_network) {
            let attachment = network.attach(&id).await?;
            record.ip = Some(attachment.ip.to_string());
            record.netns = Some(attachment.netns);
            record.veth = Some(attachment.veth);
        }

        let dir = self.sandbox_dir(&id);
        let resolv_conf = config.dns.as_ref().map(|dns| dns.to_resolv_conf());
        let written = state::create_dir(&dir)
            .and_then(|()| match &resolv_conf {
                Some(text) => {
                    let path = dir.join(RESOLV_CONF);
                    std::fs::write(&path, text).map_err(|source| state::StateError::Io { path, source })
                }
                None => Ok(()),
            })
            .and_then(|()| state::write_json_atomic(&dir.join("sandbox.json"), &record));
        if let Err(err) = written {
            self.release_network(&record).await;
            return Err(err.into());
        }
        tracing::debug!(ip = ?record.ip, "sandbox ready");
        Ok(status_of(&record))
    }

    pub(super) async fn stop_sandbox_impl(
        &self,
        id: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let Some(mut record) = self.load_sandbox(id)? else {
            return Ok(());
        };

        // stop the containers together, so the grace periods overlap
        let ids = self.container_ids_of(id)?;
        let stops = ids
            .iter()
            .map(|container| self.stop_container_impl(container, grace));
        for result in futures::future::join_all(stops).await {
            result?;
        }

        self.release_network(&record).await;
        if record.ready {
            record.ready = false;
            state::write_json_atomic(&self.sandbox_dir(id).join("sandbox.json"), &record)?;
        }
        tracing::debug!(sandbox.id = id, "sandbox stopped");
        Ok(())
    }

    pub(super) async fn remove_sandbox_impl(&self, id: &str) -> Result<(), RuntimeError> {
        let Some(record) = self.load_sandbox(id)? else {
            return Ok(());
        };
        self.stop_sandbox_impl(id, Duration::ZERO).await?;
        for container in self.container_ids_of(id)? {
            self.remove_container_impl(&container).await?;
        }
        if let Some(layout) = &self.cgroups {
            layout.remove_if_empty(&self.pod_cgroup(&record));
        }
        state::remove_dir(&self.sandbox_dir(id))?;
        tracing::debug!(sandbox.id = id, "sandbox removed");
        Ok(())
    }

    pub(super) fn sandbox_status_impl(&self, id: &str) -> Result<SandboxStatus, RuntimeError> {
        self.load_sandbox(id)?
            .map(|record| status_of(&record))
            .ok_or_else(|| RuntimeError::SandboxNotFound { id: id.to_string() })
    }

    pub(super) fn list_sandboxes_impl(&self) -> Result<Vec<SandboxStatus>, RuntimeError> {
        let mut list = Vec::new();
        for id in state::list_dir(&self.config.state_dir.join("sandboxes"))? {
            // A directory without its record is a sandbox whose creation or removal was
            // interrupted; it is not reported.
            if let Some(record) = self.load_sandbox(&id)? {
                list.push(status_of(&record));
            }
        }
        Ok(list)
    }

    pub(super) fn load_sandbox(&self, id: &str) -> Result<Option<SandboxRecord>, RuntimeError> {
        if !check_id(id) {
            return Ok(None);
        }
        Ok(state::read_json(
            &self.sandbox_dir(id).join("sandbox.json"),
        )?)
    }

    /// Returns the pod's cgroup relative to each hierarchy, `<parent>/<pod uid>`. A uid that is not
    /// a plain name (empty, or with '/') is replaced by the sandbox id.
    pub(super) fn pod_cgroup(&self, record: &SandboxRecord) -> PathBuf {
        let uid = &record.pod_uid;
        let plain = !uid.is_empty()
            && uid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let name = if plain {
            uid.as_str()
        } else {
            record.id.as_str()
        };
        PathBuf::from(&self.config.cgroup_parent).join(name)
    }

    async fn release_network(&self, record: &SandboxRecord) {
        if let Some(network) = &self.network {
            network
                .detach(
                    &record.id,
                    record.netns.as_deref(),
                    record.veth.as_deref(),
                    record.ip.as_deref(),
                )
                .await;
        }
    }
}

fn status_of(record: &SandboxRecord) -> SandboxStatus {
    SandboxStatus {
        id: record.id.clone(),
        pod_uid: record.pod_uid.clone(),
        pod_namespace: record.pod_namespace.clone(),
        pod_name: record.pod_name.clone(),
        ip: record.ip.clone(),
        ready: record.ready,
        created_at: record.created_at,
    }
}
