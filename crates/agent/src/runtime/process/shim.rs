//! The shim: the parent of one container process.
//!
//! The runtime starts `<shim program> <container dir>` in a new session. The shim reads
//! `spec.json` from the container directory, starts the command in the pod's network
//! namespace and the container's cgroups, records its pid in `pid.json`, copies its output
//! into the CRI log file, waits for it and records how it ended in `exit.json`. Because the
//! shim is not the agent, the container and its logging survive an agent restart.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cgroups::oom_kill_count;
use super::crilog::{LogFile, copy_stream};
use super::enter::Enter;
use super::state::{self, ExitRecord, PidRecord};

/// How long the shim waits for the log copiers after the process exited. Output of a
/// process that escaped both the process group and the cgroup is lost after this.
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The `PATH` a container gets when its environment sets none (the Docker default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The shim's input, written by `start_container` as `spec.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShimSpec {
    pub container_id: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// `/run/netns/<name>` of the pod, or `None` for the host's network.
    pub netns_path: Option<PathBuf>,
    /// File bind-mounted over `/etc/resolv.conf` in a mount namespace of the container's
    /// own; `None` keeps the node's.
    #[serde(default)]
    pub resolv_conf: Option<PathBuf>,
    /// The container cgroup's `cgroup.procs` files, one per hierarchy.
    pub cgroup_procs: Vec<PathBuf>,
    /// The container's memory cgroup directory, for the OOM kill counter.
    pub memory_dir: Option<PathBuf>,
    pub log_path: PathBuf,
}

/// Failure of the shim before it could record an exit.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("usage: shim <container directory>")]
    Usage,
    #[error("missing shim spec {path}")]
    MissingSpec { path: PathBuf },
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("failed to wait for container process {pid}: {source}")]
    Wait {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open log file {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Entry point of `capstan shim <container dir>`; `args` are the arguments after the
/// program (and subcommand) name. Returns the process exit code: 0 once `exit.json` is
/// written, 1 when the shim failed before that.
pub fn shim_main(args: Vec<String>) -> i32 {
    let [dir] = args.as_slice() else {
        eprintln!("{}", ShimError::Usage);
        return 1;
    };
    match run(Path::new(dir)) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("shim for {dir} failed: {err}");
            1
        }
    }
}

fn run(dir: &Path) -> Result<(), ShimError> {
    let spec_path = dir.join("spec.json");
    let spec: ShimSpec =
        state::read_json(&spec_path)?.ok_or(ShimError::MissingSpec { path: spec_path })?;
    let log = Arc::new(
        LogFile::open(&spec.log_path).map_err(|source| ShimError::Log {
            path: spec.log_path.clone(),
            source,
        })?,
    );
    let exit_path = dir.join("exit.json");

    // resolve the program as exec would, so a missing command is an exit code, not a crash
    let env_path = spec.env.iter().rev().find(|(name, _)| name == "PATH");
    let search_path = env_path.map_or(DEFAULT_PATH, |(_, value)| value.as_str());
    let program = match resolve_command(&spec.command, search_path) {
        Ok(program) => program,
        Err((exit_code, message)) => {
            return record_start_failure(&exit_path, &log, exit_code, message);
        }
    };

    // start it and record the pid before anything else can fail
    let mut child = match spawn(&spec, &program, env_path.is_none()) {
        Ok(child) => child,
        Err(message) => return record_start_failure(&exit_path, &log, 128, message),
    };
    let pid = child.id() as i32;
    let started_at = jiff::Timestamp::now();
    let own_pid = std::process::id() as i32;
    let record = PidRecord {
        pid,
        start_ticks: state::process_start_ticks(pid).unwrap_or(0),
        shim_pid: own_pid,
        shim_start_ticks: state::process_start_ticks(own_pid).unwrap_or(0),
        started_at,
    };
    state::write_json_atomic(&dir.join("pid.json"), &record)?;

    // copy the output, wait, then end whatever the process left behind
    let copiers_done = copy_output(&mut child, &log);
    let status = child
        .wait()
        .map_err(|source| ShimError::Wait { pid, source })?;
    let finished_at = jiff::Timestamp::now();
    kill_leftovers(pid, &spec.cgroup_procs);
    for _ in 0..2 {
        if copiers_done.recv_timeout(LOG_DRAIN_TIMEOUT).is_err() {
            break;
        }
    }

    let signal = status.signal();
    let oom_killed = spec
        .memory_dir
        .as_deref()
        .is_some_and(|dir| oom_kill_count(dir) > 0);
    let exit = ExitRecord {
        exit_code: status.code().unwrap_or_else(|| 128 + signal.unwrap_or(0)),
        signal,
        oom_killed,
        started_at: Some(started_at),
        finished_at,
        message: None,
    };
    state::write_json_atomic(&exit_path, &exit)?;
    Ok(())
}

/// Starts the command in its own process group, cgroups and network namespace, with
/// stdout and stderr piped. Errors are the message for the container's status.
fn spawn(spec: &ShimSpec, program: &Path, default_path: bool) -> Result<Child, String> {
    let enter = Enter::open(spec.netns_path.as_deref(), &spec.cgroup_procs, spec.resolv_conf.as_deref())
        .map_err(|err| err.to_string())?;
    let mut command = Command::new(program);
    command
        .arg0(&spec.command[0])
        .args(&spec.command[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(name, value)| (name, value)))
        .current_dir(spec.working_dir.as_deref().unwrap_or("/"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if default_path {
        command.env("PATH", DEFAULT_PATH);
    }
    // SAFETY: `Enter::apply` makes only async-signal-safe system calls, and this process
    // has a single thread until the log copiers start.
    unsafe { command.pre_exec(move || enter.apply()) };
    command
        .spawn()
        .map_err(|err| format!("failed to start {program:?}: {err}"))
}

/// Starts one thread per output stream that copies it into the log. The receiver gets one
/// message per stream when its copy has ended.
fn copy_output(child: &mut Child, log: &Arc<LogFile>) -> mpsc::Receiver<()> {
    let (done_tx, done_rx) = mpsc::channel();
    let stdout = child
        .stdout
        .take()
        .map(|out| Box::new(out) as Box<dyn Read + Send>);
    let stderr = child
        .stderr
        .take()
        .map(|err| Box::new(err) as Box<dyn Read + Send>);
    for (stream, reader) in [("stdout", stdout), ("stderr", stderr)] {
        let Some(reader) = reader else { continue };
        let (log, done_tx) = (Arc::clone(log), done_tx.clone());
        std::thread::spawn(move || {
            if let Err(err) = copy_stream(reader, stream, &log) {
                eprintln!("copying {stream} to the log failed: {err}");
            }
            let _ = done_tx.send(());
        });
    }
    done_rx
}

/// Records a container that never ran: the message goes to the log and the exit record.
fn record_start_failure(
    exit_path: &Path,
    log: &LogFile,
    exit_code: i32,
    message: String,
) -> Result<(), ShimError> {
    let _ = log.write_entry("stderr", false, message.as_bytes());
    let exit = ExitRecord {
        exit_code,
        signal: None,
        oom_killed: false,
        started_at: None,
        finished_at: jiff::Timestamp::now(),
        message: Some(message),
    };
    state::write_json_atomic(exit_path, &exit)?;
    Ok(())
}

/// Sends SIGKILL to the process group and to every process left in the cgroups, as a
/// container's other processes die with its main process under runc.
fn kill_leftovers(pgid: i32, cgroup_procs: &[PathBuf]) {
    // SAFETY: kill takes plain integers; an absent group or pid only returns ESRCH.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    for path in cgroup_procs {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for pid in text
            .lines()
            .filter_map(|line| line.trim().parse::<i32>().ok())
        {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Finds the executable for `command[0]` the way `execvp` does. Errors carry the exit
/// code (127 not found, 126 not executable) and the message Kubernetes users know from
/// runc.
pub fn resolve_command(command: &[String], search_path: &str) -> Result<PathBuf, (i32, String)> {
    let Some(program) = command.first().filter(|program| !program.is_empty()) else {
        return Err((
            127,
            "exec: no command given: set the container's command".to_string(),
        ));
    };
    if program.contains('/') {
        let path = PathBuf::from(program);
        return match std::fs::metadata(&path) {
            Err(err) => Err((127, format!("exec: {program:?}: stat {program}: {err}"))),
            Ok(meta) if meta.is_dir() || meta.permissions().mode() & 0o111 == 0 => {
                Err((126, format!("exec: {program:?}: permission denied")))
            }
            Ok(_) => Ok(path),
        };
    }
    let mut found_not_executable = false;
    for dir in search_path.split(':').filter(|dir| !dir.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
            found_not_executable = true;
        }
    }
    if found_not_executable {
        return Err((126, format!("exec: {program:?}: permission denied")));
    }
    Err((
        127,
        format!("exec: {program:?}: executable file not found in $PATH"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| word.to_string()).collect()
    }

    #[test]
    fn resolve_finds_programs_on_path() {
        assert_eq!(
            resolve_command(&command(&["sh"]), DEFAULT_PATH)
                .unwrap()
                .file_name()
                .unwrap(),
            "sh"
        );
        assert_eq!(
            resolve_command(&command(&["/bin/sh", "-c"]), "").unwrap(),
            PathBuf::from("/bin/sh")
        );
    }

    #[test]
    fn resolve_reports_exit_codes() {
        let (code, message) =
            resolve_command(&command(&["no-such-cmd-cst"]), DEFAULT_PATH).unwrap_err();
        assert_eq!(code, 127);
        assert_eq!(
            message,
            "exec: \"no-such-cmd-cst\": executable file not found in $PATH"
        );
        let (code, _) = resolve_command(&command(&["/no/such/file"]), DEFAULT_PATH).unwrap_err();
        assert_eq!(code, 127);
        let (code, message) =
            resolve_command(&command(&["/etc/passwd"]), DEFAULT_PATH).unwrap_err();
        assert_eq!(code, 126, "{message}");
        let (code, _) = resolve_command(&[], DEFAULT_PATH).unwrap_err();
        assert_eq!(code, 127);
    }

    #[test]
    fn shim_rejects_bad_arguments() {
        assert_eq!(shim_main(vec![]), 1);
        assert_eq!(shim_main(vec!["/nonexistent/cst-dir".into()]), 1);
    }
}
