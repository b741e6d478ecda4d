//! Stopping and removing containers of the process runtime.

use std::path::Path;
use std::time::Duration;

use super::ProcessRuntime;
use super::state::{self, ExitRecord, PidRecord};
use crate::runtime::RuntimeError;

/// How long `stop_container` waits for the exit record after SIGKILL. The shim needs this
/// only to drain the log pipes and write one file.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

impl ProcessRuntime {
    /// Sends SIGTERM to the container's process group, SIGKILL to the group and its cgroup
    /// after `grace`, and returns once the shim has recorded the exit.
    pub(super) async fn stop_container_impl(
        &self,
        id: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let record = self.require_container(id)?;
        let dir = self.container_dir(id);
        let exit_path = dir.join("exit.json");
        if exit_path.exists() {
            return Ok(());
        }
        let Some(pid) = state::read_json::<PidRecord>(&dir.join("pid.json"))? else {
            // Never started: there is nothing to stop.
            return Ok(());
        };

        // ask politely, then insist
        if !grace.is_zero() && state::process_alive(pid.pid, pid.start_ticks) {
            signal_group(pid.pid, libc::SIGTERM);
            if wait_for(&exit_path, grace).await {
                tracing::debug!(container.id = id, "container stopped on SIGTERM");
                return Ok(());
            }
        }
        if state::process_alive(pid.pid, pid.start_ticks) {
            signal_group(pid.pid, libc::SIGKILL);
        }
        if let (Some(layout), Some(cgroup)) = (&self.cgroups, &record.cgroup) {
            for leftover in layout.pids(cgroup) {
                // SAFETY: kill takes plain integers; a pid that is gone returns ESRCH.
                unsafe { libc::kill(leftover, libc::SIGKILL) };
            }
        }
        if wait_for(&exit_path, KILL_TIMEOUT).await {
            tracing::debug!(container.id = id, "container killed");
            return Ok(());
        }

        // The shim is gone without a record (killed itself, or the machine rebooted), so
        // the runtime writes one to make the stop final.
        if !state::process_alive(pid.shim_pid, pid.shim_start_ticks) {
            let exit = ExitRecord {
                exit_code: 137,
                signal: Some(libc::SIGKILL),
                oom_killed: false,
                started_at: Some(pid.started_at),
                finished_at: jiff::Timestamp::now(),
                message: Some(
                    "the container's shim exited without recording the exit status".to_string(),
                ),
            };
            state::write_json_atomic(&exit_path, &exit)?;
            return Ok(());
        }
        Err(RuntimeError::Internal(format!(
            "container {id} did not exit within {}s of SIGKILL",
            KILL_TIMEOUT.as_secs()
        )))
    }

    /// Kills the container if it runs, then deletes its cgroup and records. The log file
    /// stays: it belongs to the pod's log directory, which the agent cleans up.
    pub(super) async fn remove_container_impl(&self, id: &str) -> Result<(), RuntimeError> {
        let Some(record) = self.load_container(id)? else {
            return Ok(());
        };
        self.stop_container_impl(id, Duration::ZERO).await?;
        if let (Some(layout), Some(cgroup)) = (&self.cgroups, &record.cgroup) {
            layout.remove(cgroup);
        }
        state::remove_dir(&self.container_dir(id))?;
        tracing::debug!(container.id = id, "container removed");
        Ok(())
    }
}

fn signal_group(pgid: i32, signal: libc::c_int) {
    // SAFETY: kill takes plain integers; a group that is gone returns ESRCH.
    unsafe { libc::kill(-pgid, signal) };
}

/// Waits until `path` exists or `timeout` passes; returns whether it exists.
async fn wait_for(path: &Path, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if path.exists() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
