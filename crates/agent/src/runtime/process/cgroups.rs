//! Pod and container cgroups, through the cgroup file system.
//!
//! On a cgroup v1 (or hybrid) host the runtime uses the hierarchies `memory`, `cpu`,
//! `cpuacct` and `pids` at `/sys/fs/cgroup/<controller>/<parent>/<pod uid>/<container id>`.
//! On a pure cgroup v2 host (`/sys/fs/cgroup/cgroup.controllers` exists) it uses
//! `/sys/fs/cgroup/<parent>/<pod uid>/<container id>` and enables the controllers in the
//! parents' `cgroup.subtree_control`.
//!
//! NOTE: a v1 controller that is not mounted is skipped without an error, so its limits
//! and statistics are then missing (stats read as zero).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::runtime::Resources;

/// The CFS period the runtime sets, in microseconds (the kernel's default).
const CFS_PERIOD_US: i64 = 100_000;

const V1_CONTROLLERS: [&str; 4] = ["memory", "cpu", "cpuacct", "pids"];

/// Failure of a cgroup file operation.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("failed to write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to create cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The cgroup version the host offers, with its mount point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupLayout {
    /// v1 hierarchies by controller name, those that are mounted.
    V1 {
        root: PathBuf,
        controllers: Vec<String>,
    },
    V2 {
        root: PathBuf,
    },
}

/// Memory and CPU usage read from a container's cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    pub cpu_nanos: u64,
    pub memory_working_set: u64,
}

impl CgroupLayout {
    /// Detects the layout under `root` (normally `/sys/fs/cgroup`).
    pub fn detect(root: &Path) -> Self {
        if root.join("cgroup.controllers").exists() {
            return Self::V2 {
                root: root.to_path_buf(),
            };
        }
        let controllers = V1_CONTROLLERS
            .iter()
            .filter(|name| root.join(name).join("cgroup.procs").exists())
            .map(|name| name.to_string())
            .collect();
        Self::V1 {
            root: root.to_path_buf(),
            controllers,
        }
    }

    /// Returns the directories of the cgroup at `relative` (such as `capstan/<pod>/<ctr>`):
    /// one per v1 controller, or the single v2 directory.
    pub fn dirs(&self, relative: &Path) -> Vec<PathBuf> {
        match self {
            Self::V1 { root, controllers } => controllers
                .iter()
                .map(|name| root.join(name).join(relative))
                .collect(),
            Self::V2 { root } => vec![root.join(relative)],
        }
    }

    /// Creates the cgroup at `relative` in every hierarchy.
    pub fn create(&self, relative: &Path) -> Result<(), CgroupError> {
        for dir in self.dirs(relative) {
            fs::create_dir_all(&dir).map_err(|source| CgroupError::Create {
                path: dir.clone(),
                source,
            })?;
        }
        if let Self::V2 { root } = self {
            enable_v2_controllers(root, relative)?;
        }
        Ok(())
    }

    /// Writes the container's limits into its cgroup.
    pub fn apply_limits(&self, relative: &Path, resources: &Resources) -> Result<(), CgroupError> {
        let memory = resources.memory_limit_bytes.filter(|bytes| *bytes > 0);
        let quota = resources
            .cpu_limit_millis
            .filter(|m| *m > 0)
            .map(cfs_quota_us);
        let shares = resources
            .cpu_request_millis
            .filter(|m| *m > 0)
            .map(cpu_shares);
        match self {
            Self::V1 { .. } => {
                if let (Some(bytes), Some(dir)) = (memory, self.controller_dir("memory", relative))
                {
                    write_file(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                }
                if let Some(dir) = self.controller_dir("cpu", relative) {
                    if let Some(quota) = quota {
                        write_file(&dir.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
                        write_file(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                    }
                    if let Some(shares) = shares {
                        write_file(&dir.join("cpu.shares"), &shares.to_string())?;
                    }
                }
            }
            Self::V2 { root } => {
                let dir = root.join(relative);
                if let Some(bytes) = memory {
                    write_file(&dir.join("memory.max"), &bytes.to_string())?;
                }
                if let Some(quota) = quota {
                    write_file(&dir.join("cpu.max"), &format!("{quota} {CFS_PERIOD_US}"))?;
                }
                if let Some(shares) = shares {
                    write_file(
                        &dir.join("cpu.weight"),
                        &shares_to_weight(shares).to_string(),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Returns the `cgroup.procs` files that a process writes its pid into to join the cgroup.
    pub fn procs_files(&self, relative: &Path) -> Vec<PathBuf> {
        self.dirs(relative)
            .into_iter()
            .map(|dir| dir.join("cgroup.procs"))
            .collect()
    }

    /// Returns the directory with the memory controller's files (OOM and usage counters).
    pub fn memory_dir(&self, relative: &Path) -> Option<PathBuf> {
        self.controller_dir("memory", relative)
    }

    /// Lists the pids of every process in the cgroup, across its hierarchies.
    pub fn pids(&self, relative: &Path) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs(relative)
            .iter()
            .filter_map(|dir| fs::read_to_string(dir.join("cgroup.procs")).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|line| line.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Reads CPU time and the memory working set (usage minus inactive file pages).
    pub fn usage(&self, relative: &Path) -> CgroupUsage {
        match self {
            Self::V1 { .. } => {
                let cpu_nanos = self
                    .controller_dir("cpuacct", relative)
                    .and_then(|dir| read_u64(&dir.join("cpuacct.usage")))
                    .unwrap_or(0);
                let memory_working_set = self
                    .memory_dir(relative)
                    .map(|dir| working_set(&dir, "memory.usage_in_bytes", "total_inactive_file"))
                    .unwrap_or(0);
                CgroupUsage {
                    cpu_nanos,
                    memory_working_set,
                }
            }
            Self::V2 { root } => {
                let dir = root.join(relative);
                let cpu_nanos = stat_value(&dir.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000;
                let memory_working_set = working_set(&dir, "memory.current", "inactive_file");
                CgroupUsage {
                    cpu_nanos,
                    memory_working_set,
                }
            }
        }
    }

    /// Removes the cgroup at `relative`, deepest directories first. Missing ones are fine.
    /// A cgroup that still contains processes stays, and the failure is logged.
    pub fn remove(&self, relative: &Path) {
        for dir in self.dirs(relative) {
            remove_tree(&dir);
        }
    }

    /// Removes the cgroup at `relative` only if it has no child cgroups left, as a pod's
    /// cgroup may also contain the containers of a newer sandbox of the same pod.
    pub fn remove_if_empty(&self, relative: &Path) {
        for dir in self.dirs(relative) {
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    tracing::debug!(cgroup = %dir.display(), error = %err, "pod cgroup kept")
                }
            }
        }
    }

    fn controller_dir(&self, controller: &str, relative: &Path) -> Option<PathBuf> {
        match self {
            Self::V1 { root, controllers } => controllers
                .iter()
                .any(|name| name == controller)
                .then(|| root.join(controller).join(relative)),
            Self::V2 { root } => Some(root.join(relative)),
        }
    }
}

/// Reads the kernel's OOM kill counter of a memory cgroup: `oom_kill` in v1's
/// `memory.oom_control` or v2's `memory.events`.
pub fn oom_kill_count(memory_dir: &Path) -> u64 {
    stat_value(&memory_dir.join("memory.oom_control"), "oom_kill")
        .or_else(|| stat_value(&memory_dir.join("memory.events"), "oom_kill"))
        .unwrap_or(0)
}

/// `cpu.cfs_quota_us` for a CPU limit in millicores, at least the kernel minimum of 1 ms.
pub fn cfs_quota_us(limit_millis: i64) -> i64 {
    (limit_millis.saturating_mul(CFS_PERIOD_US) / 1000).max(1000)
}

/// `cpu.shares` for a CPU request in millicores, as kubelet computes it (minimum 2).
pub fn cpu_shares(request_millis: i64) -> i64 {
    (request_millis.saturating_mul(1024) / 1000).clamp(2, 262_144)
}

/// Converts v1 shares to a v2 `cpu.weight` with the mapping runc uses.
fn shares_to_weight(shares: i64) -> i64 {
    1 + ((shares - 2) * 9999) / 262_142
}

fn enable_v2_controllers(root: &Path, relative: &Path) -> Result<(), CgroupError> {
    // Each ancestor must delegate the controllers to its children; the leaf needs none.
    let mut dir = root.to_path_buf();
    let components: Vec<_> = relative.components().collect();
    for component in &components[..components.len().saturating_sub(1)] {
        for controller in ["+memory", "+cpu", "+pids"] {
            // A controller the host lacks fails with an error; it is skipped like on v1.
            let _ = fs::write(dir.join("cgroup.subtree_control"), controller);
        }
        dir = dir.join(component);
    }
    for controller in ["+memory", "+cpu", "+pids"] {
        let _ = fs::write(dir.join("cgroup.subtree_control"), controller);
    }
    Ok(())
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.filter_map(|entry| entry.ok()) {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::warn!(cgroup = %dir.display(), error = %err, "failed to remove cgroup")
        }
    }
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads `key value` lines (as in `memory.stat`, `cpu.stat`) and returns `key`'s value.
fn stat_value(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

fn working_set(dir: &Path, usage_file: &str, inactive_key: &str) -> u64 {
    let usage = read_u64(&dir.join(usage_file)).unwrap_or(0);
    let inactive = stat_value(&dir.join("memory.stat"), inactive_key).unwrap_or(0);
    usage.saturating_sub(inactive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_values_match_kubelet() {
        assert_eq!(cfs_quota_us(500), 50_000);
        assert_eq!(cfs_quota_us(2000), 200_000);
        assert_eq!(
            cfs_quota_us(1),
            1000,
            "quota is raised to the kernel minimum"
        );
        assert_eq!(cpu_shares(250), 256);
        assert_eq!(cpu_shares(1), 2);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn layout_lists_dirs_per_controller() {
        let layout = CgroupLayout::V1 {
            root: PathBuf::from("/sys/fs/cgroup"),
            controllers: vec!["memory".into(), "cpu".into()],
        };
        let dirs = layout.dirs(Path::new("capstan/pod/ctr"));
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/sys/fs/cgroup/memory/capstan/pod/ctr"),
                PathBuf::from("/sys/fs/cgroup/cpu/capstan/pod/ctr"),
            ]
        );
        assert_eq!(
            layout.memory_dir(Path::new("p")),
            Some(PathBuf::from("/sys/fs/cgroup/memory/p"))
        );
        assert_eq!(layout.controller_dir("cpuacct", Path::new("p")), None);
    }

    #[test]
    fn stat_value_reads_named_line() {
        let dir = std::env::temp_dir().join(format!("cst-cg-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(oom_kill_count(&dir), 2);
        fs::write(dir.join("memory.usage_in_bytes"), "1000\n").unwrap();
        fs::write(
            dir.join("memory.stat"),
            "cache 5\ntotal_inactive_file 300\n",
        )
        .unwrap();
        assert_eq!(
            working_set(&dir, "memory.usage_in_bytes", "total_inactive_file"),
            700
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
