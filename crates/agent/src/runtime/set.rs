//! Several runtimes behind one [`Runtime`], chosen per pod by RuntimeClass handler.
//!
//! A sandbox goes to the runtime named by [`SandboxConfig::runtime_handler`] (the default
//! runtime when it is empty). Later calls carry only an id, so the set remembers which
//! runtime created or listed each id. An id it has not seen is tried on every runtime.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    ContainerConfig, ContainerStats, ContainerStatus, ExecOutput, ExecRequest, ExecSession, Runtime,
    RuntimeError, SandboxConfig, SandboxStatus,
};

/// Runtimes by handler, plus the default for pods that name none.
pub struct RuntimeSet {
    runtimes: BTreeMap<String, Arc<dyn Runtime>>,
    default: String,
    owners: Mutex<HashMap<String, String>>,
}

impl RuntimeSet {
    /// Fails when `default` is not one of the handlers.
    pub fn new(runtimes: BTreeMap<String, Arc<dyn Runtime>>, default: &str) -> Result<Self, RuntimeError> {
        if !runtimes.contains_key(default) {
            return Err(RuntimeError::Internal(format!(
                "the default runtime handler {default:?} is not among the node's runtimes {:?}",
                runtimes.keys().collect::<Vec<_>>()
            )));
        }
        Ok(RuntimeSet { runtimes, default: default.to_string(), owners: Mutex::new(HashMap::new()) })
    }

    /// Returns the handlers this node offers, in name order.
    pub fn handlers(&self) -> Vec<String> {
        self.runtimes.keys().cloned().collect()
    }

    /// The handler that owns `id`, if known.
    pub fn owner_of(&self, id: &str) -> Option<String> {
        self.owners.lock().ok()?.get(id).cloned()
    }

    fn remember(&self, id: &str, handler: &str) {
        if let Ok(mut owners) = self.owners.lock() {
            owners.insert(id.to_string(), handler.to_string());
        }
    }

    fn forget(&self, id: &str) {
        if let Ok(mut owners) = self.owners.lock() {
            owners.remove(id);
        }
    }

    /// Returns the runtimes to try for `id`: its owner, or all of them.
    fn candidates(&self, id: &str) -> Vec<(String, Arc<dyn Runtime>)> {
        match self.owner_of(id).and_then(|h| self.runtimes.get(&h).map(|r| (h, r.clone()))) {
            Some(owner) => vec![owner],
            None => self.runtimes.iter().map(|(h, r)| (h.clone(), r.clone())).collect(),
        }
    }
}

/// Calls `$call` on the runtime that owns `$id`, trying each candidate until one returns
/// something other than "not found".
macro_rules! by_id {
    ($set:expr, $id:expr, |$runtime:ident| $call:expr) => {{
        let mut last = None;
        for (handler, $runtime) in $set.candidates($id) {
            match $call.await {
                Err(error @ (RuntimeError::SandboxNotFound { .. } | RuntimeError::ContainerNotFound { .. })) => {
                    last = Some(error);
                }
                result => {
                    $set.remember($id, &handler);
                    return result;
                }
            }
        }
        Err(last.unwrap_or_else(|| RuntimeError::ContainerNotFound { id: $id.to_string() }))
    }};
}

#[async_trait::async_trait]
impl Runtime for RuntimeSet {
    fn handler(&self) -> &str {
        &self.default
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus, RuntimeError> {
        let handler = if config.runtime_handler.is_empty() { &self.default } else { &config.runtime_handler };
        let Some(runtime) = self.runtimes.get(handler) else {
            return Err(RuntimeError::Internal(format!(
                "no runtime handler {handler:?} on this node (it offers {:?})",
                self.handlers()
            )));
        };
        let status = runtime.run_sandbox(config).await?;
        self.remember(&status.id, handler);
        Ok(status)
    }

    async fn stop_sandbox(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        by_id!(self, id, |runtime| runtime.stop_sandbox(id, grace))
    }

    async fn remove_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let result: Result<(), RuntimeError> = async { by_id!(self, id, |runtime| runtime.remove_sandbox(id)) }.await;
        self.forget(id);
        result
    }

    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus, RuntimeError> {
        by_id!(self, id, |runtime| runtime.sandbox_status(id))
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>, RuntimeError> {
        let mut all = Vec::new();
        for (handler, runtime) in &self.runtimes {
            for sandbox in runtime.list_sandboxes().await? {
                self.remember(&sandbox.id, handler);
                all.push(sandbox);
            }
        }
        Ok(all)
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String, RuntimeError> {
        let mut last = None;
        for (handler, runtime) in self.candidates(sandbox_id) {
            match runtime.create_container(sandbox_id, config).await {
                Err(error @ RuntimeError::SandboxNotFound { .. }) => last = Some(error),
                Err(error) => return Err(error),
                Ok(id) => {
                    self.remember(sandbox_id, &handler);
                    self.remember(&id, &handler);
                    return Ok(id);
                }
            }
        }
        Err(last.unwrap_or_else(|| RuntimeError::SandboxNotFound { id: sandbox_id.to_string() }))
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        by_id!(self, id, |runtime| runtime.start_container(id))
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        by_id!(self, id, |runtime| runtime.stop_container(id, grace))
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let result: Result<(), RuntimeError> = async { by_id!(self, id, |runtime| runtime.remove_container(id)) }.await;
        self.forget(id);
        result
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        by_id!(self, id, |runtime| runtime.container_status(id))
    }

    async fn list_containers(&self) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let mut all = Vec::new();
        for (handler, runtime) in &self.runtimes {
            for container in runtime.list_containers().await? {
                self.remember(&container.id, handler);
                all.push(container);
            }
        }
        Ok(all)
    }

    /// The default runtime's version, since most pods run there.
    fn version(&self) -> String {
        self.runtimes.get(&self.default).map(|runtime| runtime.version()).unwrap_or_default()
    }

    fn container_uri(&self, id: &str) -> String {
        let owner = self.owner_of(id).unwrap_or_else(|| self.default.clone());
        match self.runtimes.get(&owner) {
            Some(runtime) => runtime.container_uri(id),
            None => format!("{owner}://{id}"),
        }
    }

    async fn image_status(&self, sandbox_id: &str, image: &str) -> Result<Option<String>, RuntimeError> {
        by_id!(self, sandbox_id, |runtime| runtime.image_status(sandbox_id, image))
    }

    async fn pull_image(&self, sandbox_id: &str, image: &str) -> Result<String, RuntimeError> {
        by_id!(self, sandbox_id, |runtime| runtime.pull_image(sandbox_id, image))
    }

    async fn exec_sync(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput, RuntimeError> {
        by_id!(self, id, |runtime| runtime.exec_sync(id, command, timeout))
    }

    async fn container_stats(&self, id: &str) -> Result<ContainerStats, RuntimeError> {
        by_id!(self, id, |runtime| runtime.container_stats(id))
    }

    async fn exec(&self, id: &str, request: &ExecRequest) -> Result<ExecSession, RuntimeError> {
        by_id!(self, id, |runtime| runtime.exec(id, request))
    }

    async fn attach(&self, id: &str, request: &ExecRequest) -> Result<ExecSession, RuntimeError> {
        by_id!(self, id, |runtime| runtime.attach(id, request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeRuntime;

    #[tokio::test]
    async fn sandboxes_go_to_the_named_handler_and_calls_follow_their_ids() {
        let process = Arc::new(FakeRuntime::new());
        let cri = Arc::new(FakeRuntime::new());
        let runtimes: BTreeMap<String, Arc<dyn Runtime>> = BTreeMap::from([
            ("process".to_string(), process.clone() as Arc<dyn Runtime>),
            ("cri".to_string(), cri.clone() as Arc<dyn Runtime>),
        ]);
        let set = RuntimeSet::new(runtimes, "process").expect("default is offered");
        assert_eq!(set.handlers(), vec!["cri".to_string(), "process".to_string()]);

        let config = SandboxConfig { runtime_handler: "cri".into(), pod_uid: "u1".into(), ..Default::default() };
        let sandbox = set.run_sandbox(&config).await.expect("sandbox on cri");
        assert_eq!(set.owner_of(&sandbox.id).as_deref(), Some("cri"));
        assert_eq!(cri.list_sandboxes().await.expect("list").len(), 1);
        assert!(process.list_sandboxes().await.expect("list").is_empty());

        let plain = SandboxConfig { pod_uid: "u2".into(), ..Default::default() };
        let sandbox2 = set.run_sandbox(&plain).await.expect("sandbox on the default");
        assert_eq!(set.owner_of(&sandbox2.id).as_deref(), Some("process"));
        assert_eq!(set.list_sandboxes().await.expect("list").len(), 2);
    }

    #[tokio::test]
    async fn an_unknown_handler_is_an_error_that_names_it() {
        let runtimes: BTreeMap<String, Arc<dyn Runtime>> =
            BTreeMap::from([("process".to_string(), Arc::new(FakeRuntime::new()) as Arc<dyn Runtime>)]);
        assert!(RuntimeSet::new(runtimes.clone(), "cri").is_err());
        let set = RuntimeSet::new(runtimes, "process").expect("set");
        let config = SandboxConfig { runtime_handler: "gvisor".into(), ..Default::default() };
        let error = set.run_sandbox(&config).await.expect_err("no such handler");
        assert!(error.to_string().contains("gvisor"), "{error}");
    }
}
