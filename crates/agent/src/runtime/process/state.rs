//! The process runtime's records on disk.
//!
//! Everything the runtime stores lives under `state_dir`, so that a restarted agent finds its
//! sandboxes and containers again:
//!
//! ```text
//! sandboxes/<id>/sandbox.json
//! containers/<id>/container.json   written by create_container
//! containers/<id>/spec.json        the shim's input, written by start_container
//! containers/<id>/pid.json         written by the shim once the process runs
//! containers/<id>/exit.json        written by the shim when the process has exited
//! containers/<id>/shim.log         the shim's own stderr
//! ipam/<bridge>/<ip>               IP leases (see `ipam`)
//! ```
//!
//! Every record is written to a temporary file and renamed into place, so a reader sees
//! either the old record or the whole new one.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::runtime::{Resources, SandboxConfig};

/// Failure to read or write a state record.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("failed to access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid record in {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// A pod sandbox as stored in `sandbox.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub hostname: String,
    pub host_network: bool,
    pub log_directory: PathBuf,
    pub labels: BTreeMap<String, String>,
    /// The pod's address on the bridge; `None` for host-network pods.
    pub ip: Option<String>,
    /// Name under `/run/netns` of the pod's network namespace, when it has one.
    pub netns: Option<String>,
    /// Host side of the pod's veth pair.
    pub veth: Option<String>,
    /// False once `stop_sandbox` has run.
    pub ready: bool,
    pub created_at: jiff::Timestamp,
}

impl SandboxRecord {
    pub fn new(id: String, config: &SandboxConfig) -> Self {
        Self {
            id,
            pod_uid: config.pod_uid.clone(),
            pod_namespace: config.pod_namespace.clone(),
            pod_name: config.pod_name.clone(),
            hostname: config.hostname.clone(),
            host_network: config.host_network,
            log_directory: config.log_directory.clone(),
            labels: config.labels.clone(),
            ip: None,
            netns: None,
            veth: None,
            ready: true,
            created_at: jiff::Timestamp::now(),
        }
    }
}

/// A container as stored in `container.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub image: String,
    pub attempt: u32,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub cpu_request_millis: Option<i64>,
    pub cpu_limit_millis: Option<i64>,
    pub memory_limit_bytes: Option<i64>,
    pub log_path: PathBuf,
    pub labels: BTreeMap<String, String>,
    /// The cgroup relative to each hierarchy's root; `None` when cgroups are not in use.
    pub cgroup: Option<PathBuf>,
    /// The pod's network namespace name; `None` for the host's network.
    pub netns: Option<String>,
    pub created_at: jiff::Timestamp,
}

impl ContainerRecord {
    pub fn resources(&self) -> Resources {
        Resources {
            cpu_request_millis: self.cpu_request_millis,
            cpu_limit_millis: self.cpu_limit_millis,
            memory_limit_bytes: self.memory_limit_bytes,
        }
    }
}

/// The running process, as the shim records it right after the spawn.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PidRecord {
    pub pid: i32,
    /// Start time from `/proc/<pid>/stat` (clock ticks since boot), so a reused pid is
    /// not mistaken for the container.
    pub start_ticks: u64,
    pub shim_pid: i32,
    pub shim_start_ticks: u64,
    pub started_at: jiff::Timestamp,
}

/// The end of the container's process (exit code, signal, OOM kill), written by the shim.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit status, or 128 + signal number when a signal ended the process.
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub started_at: Option<jiff::Timestamp>,
    pub finished_at: jiff::Timestamp,
    /// The reason the process could not start (such as command not found), if it never ran.
    pub message: Option<String>,
}

/// Writes `value` as JSON to `path` through a temporary file and a rename.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let io_error = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| StateError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::File::create(&tmp).map_err(io_error)?;
    file.write_all(&bytes).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    fs::rename(&tmp, path).map_err(io_error)
}

/// Reads a JSON record; a missing file is `Ok(None)`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StateError::Json {
            path: path.to_path_buf(),
            source,
        })
}

/// Creates a directory and its parents.
pub fn create_dir(path: &Path) -> Result<(), StateError> {
    fs::create_dir_all(path).map_err(|source| StateError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Removes a directory tree; a missing one is fine.
pub fn remove_dir(path: &Path) -> Result<(), StateError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StateError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Lists the entry names of a directory; a missing directory has none.
pub fn list_dir(path: &Path) -> Result<Vec<String>, StateError> {
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Returns a new random id of 64 hex digits, as containerd's ids are.
pub fn new_id() -> Result<String, StateError> {
    let path = Path::new("/dev/urandom");
    let mut bytes = [0u8; 32];
    fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut bytes))
        .map_err(|source| StateError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Returns the start time of `pid` in clock ticks since boot, or `None` when no such
/// process exists (zombies included, since they will never run again).
pub fn process_start_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in field 2 may contain spaces and parentheses, so the fields are
    // counted from the last ')'. The state is field 3, the start time field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Checks whether `pid` is still the process that was started at `start_ticks`.
pub fn process_alive(pid: i32, start_ticks: u64) -> bool {
    pid > 0 && process_start_ticks(pid) == Some(start_ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive() {
        let pid = std::process::id() as i32;
        let ticks = process_start_ticks(pid).expect("own /proc entry");
        assert!(process_alive(pid, ticks));
        assert!(
            !process_alive(pid, ticks + 1),
            "a different start time means a reused pid"
        );
    }

    #[test]
    fn atomic_write_round_trips() {
        let dir = std::env::temp_dir().join(format!("cst-state-{}", new_id().unwrap()));
        create_dir(&dir).unwrap();
        let path = dir.join("exit.json");
        let record = ExitRecord {
            exit_code: 137,
            signal: Some(9),
            oom_killed: true,
            started_at: None,
            finished_at: jiff::Timestamp::now(),
            message: None,
        };
        write_json_atomic(&path, &record).unwrap();
        let read: ExitRecord = read_json(&path).unwrap().expect("record exists");
        assert_eq!(read.exit_code, 137);
        assert!(read.oom_killed);
        assert_eq!(list_dir(&dir).unwrap(), vec!["exit.json".to_string()]);
        remove_dir(&dir).unwrap();
        assert!(read_json::<ExitRecord>(&path).unwrap().is_none());
    }

    #[test]
    fn ids_are_unique_hex() {
        let first = new_id().unwrap();
        assert_eq!(first.len(), 64);
        assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(first, new_id().unwrap());
    }
}
