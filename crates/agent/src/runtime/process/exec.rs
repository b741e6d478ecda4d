//! Running commands in a container (`exec_sync`) and reading its resource use.

use std::process::Stdio;
use std::time::Duration;

use super::ProcessRuntime;
use super::enter::Enter;
use super::netns::netns_path;
use super::shim::{DEFAULT_PATH, resolve_command};
use crate::runtime::{ContainerStats, ExecOutput, RuntimeError};

/// A command made ready to run in a container, or why it cannot start.
pub(super) enum Prepared {
    /// The process to spawn, the handle that moves it into the container's namespaces
    /// and cgroups, and the program's path for messages.
    Ready { process: tokio::process::Command, enter: Enter, program: String },
    /// The program was not found: a failed command, as with `kubectl exec`, not a runtime
    /// error.
    Missing { exit_code: i32, message: String },
}

impl ProcessRuntime {
    /// Builds the process for `command` in container `id`: its program found on the
    /// container's PATH, its environment, working directory and namespaces. The caller
    /// sets the standard streams and installs `enter` before spawning.
    pub(super) fn prepare_exec(&self, id: &str, command: &[String]) -> Result<Prepared, RuntimeError> {
        let record = self.require_container(id)?;
        let env_path = record.env.iter().rev().find(|(name, _)| name == "PATH").map(|(_, value)| value.clone());
        let program = match resolve_command(command, env_path.as_deref().unwrap_or(DEFAULT_PATH)) {
            Ok(program) => program,
            Err((exit_code, message)) => return Ok(Prepared::Missing { exit_code, message }),
        };

        let netns = record.netns.as_deref().map(netns_path);
        let cgroup_procs = match (&self.cgroups, &record.cgroup) {
            (Some(layout), Some(cgroup)) => layout.procs_files(cgroup),
            _ => Vec::new(),
        };
        let resolv_conf = self.resolv_conf_of(&record.sandbox_id);
        let enter = Enter::open(netns.as_deref(), &cgroup_procs, resolv_conf.as_deref())
            .map_err(|err| RuntimeError::Internal(format!("exec in container {id}: {err}")))?;

        let mut process = tokio::process::Command::new(&program);
        process
            .arg0(&command[0])
            .args(&command[1..])
            .env_clear()
            .envs(record.env.iter().map(|(name, value)| (name, value)))
            .current_dir(record.working_dir.as_deref().unwrap_or("/"))
            .kill_on_drop(true);
        if env_path.is_none() {
            process.env("PATH", DEFAULT_PATH);
        }
        Ok(Prepared::Ready { process, enter, program: format!("{program:?}") })
    }

    /// Runs `command` with the container's environment and working directory, in its
    /// network namespace and cgroups, and kills its process group after `timeout`.
    pub(super) async fn exec_sync_impl(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let (mut process, enter, program) = match self.prepare_exec(id, command)? {
            Prepared::Ready { process, enter, program } => (process, enter, program),
            Prepared::Missing { exit_code, message } => {
                return Ok(ExecOutput { exit_code, stdout: Vec::new(), stderr: message.into_bytes() });
            }
        };
        process.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // SAFETY: `Enter::apply` makes only async-signal-safe system calls on descriptors
        // opened before the fork.
        unsafe { process.pre_exec(move || enter.apply()) };
        let child = process
            .spawn()
            .map_err(|err| RuntimeError::Internal(format!("exec {program} in container {id}: {err}")))?;
        let pgid = child.id().map(|pid| pid as i32);

        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => {
                use std::os::unix::process::ExitStatusExt as _;
                let status = output.status;
                let exit_code = status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                Ok(ExecOutput {
                    exit_code,
                    stdout: output.stdout,
                    stderr: output.stderr,
                })
            }
            Ok(Err(err)) => Err(RuntimeError::Internal(format!(
                "exec in container {id}: {err}"
            ))),
            Err(_) => {
                // Dropping the future killed the child; its own children go with the group.
                if let Some(pgid) = pgid {
                    // SAFETY: kill takes plain integers; a group that is gone returns ESRCH.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                }
                Err(RuntimeError::ExecTimeout {
                    id: id.to_string(),
                    seconds: timeout.as_secs(),
                })
            }
        }
    }

    /// Reads CPU time and the memory working set from the container's cgroup. Without
    /// cgroups (not root) both are zero.
    pub(super) fn container_stats_impl(&self, id: &str) -> Result<ContainerStats, RuntimeError> {
        let record = self.require_container(id)?;
        let usage = match (&self.cgroups, &record.cgroup) {
            (Some(layout), Some(cgroup)) => layout.usage(cgroup),
            _ => Default::default(),
        };
        Ok(ContainerStats {
            container_id: record.id,
            cpu_usage_nanos: usage.cpu_nanos,
            memory_working_set_bytes: usage.memory_working_set,
            timestamp: Some(jiff::Timestamp::now()),
        })
    }
}
