//! Resident memory from `/proc`: the `VmRSS` of a process, and the shim processes that the
//! process runtime started for one cluster.

use std::fs;
use std::path::Path;

/// Resident set size of a group of processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupRss {
    pub processes: usize,
    pub kib: u64,
}

impl GroupRss {
    fn add(&mut self, kib: u64) {
        self.processes += 1;
        self.kib += kib;
    }
}

/// Reads `VmRSS` of `pid` in KiB.
pub fn vm_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).map_err(|err| anyhow::anyhow!("failed to read {path}: {err}"))?;
    parse_vm_rss(&status).ok_or_else(|| anyhow::anyhow!("no VmRSS line in {path}"))
}

/// Extracts the `VmRSS:   1234 kB` value of a `/proc/<pid>/status` text.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value = fields.next()?.parse().ok()?;
    (fields.next() == Some("kB")).then_some(value)
}

/// The shims of one cluster and the pod processes they started (their children).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShimScan {
    pub shim_pids: Vec<u32>,
    pub shims: GroupRss,
    pub children: GroupRss,
}

/// Finds the processes started as `<binary> shim …` with an argument under `data_dir`, so
/// shims of other clusters on the machine are left out, and sums their RSS and that of
/// their direct children.
pub fn scan_shims(binary: &Path, data_dir: &Path) -> ShimScan {
    let mut scan = ShimScan::default();
    let processes: Vec<(u32, Vec<String>, Option<u32>)> = list_pids()
        .into_iter()
        .filter_map(|pid| Some((pid, read_cmdline(pid)?, read_parent(pid))))
        .collect();
    for (pid, argv, _) in &processes {
        if is_shim_of(argv, binary, data_dir) {
            scan.shim_pids.push(*pid);
            scan.shims.add(vm_rss_kib(*pid).unwrap_or(0));
        }
    }
    for (pid, _, parent) in &processes {
        if parent.is_some_and(|parent| scan.shim_pids.contains(&parent)) {
            scan.children.add(vm_rss_kib(*pid).unwrap_or(0));
        }
    }
    scan
}

/// Checks that `argv` is a shim command of `binary` working under `data_dir`.
pub fn is_shim_of(argv: &[String], binary: &Path, data_dir: &Path) -> bool {
    let data_dir = data_dir.to_string_lossy();
    argv.len() >= 2
        && Path::new(&argv[0]) == binary
        && argv[1] == "shim"
        && argv[2..].iter().any(|arg| arg.starts_with(data_dir.as_ref()))
}

fn list_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok()).collect()
}

fn read_cmdline(pid: u32) -> Option<Vec<String>> {
    let bytes = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    Some(text.split('\0').filter(|arg| !arg.is_empty()).map(str::to_string).collect())
}

/// Reads the parent pid from `/proc/<pid>/stat`. The command name may contain spaces and
/// parentheses, so fields are counted after its last `)`.
fn read_parent(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_parent(&stat)
}

fn parse_parent(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    #[test]
    fn vm_rss_from_status() {
        let status = "Name:\tcapstan\nVmPeak:\t  90000 kB\nVmRSS:\t   41236 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss(status), Some(41236));
    }

    #[test]
    fn vm_rss_missing_or_malformed() {
        assert_eq!(parse_vm_rss("Name:\tkthreadd\nThreads:\t1\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tmany kB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn vm_rss_of_this_process() {
        let kib = vm_rss_kib(std::process::id()).expect("own status");
        assert!(kib > 0);
    }

    #[test]
    fn parent_after_odd_command_name() {
        assert_eq!(parse_parent("42 (a b) c) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parse_parent("garbage"), None);
    }

    #[test]
    fn shim_matching() {
        let binary = Path::new("/opt/capstan");
        let data_dir = Path::new("/tmp/bench1");
        let shim = strings(&["/opt/capstan", "shim", "/tmp/bench1/runtime/containers/abc"]);
        assert!(is_shim_of(&shim, binary, data_dir));
        let other_cluster = strings(&["/opt/capstan", "shim", "/var/lib/capstan/runtime/containers/abc"]);
        assert!(!is_shim_of(&other_cluster, binary, data_dir));
        let server = strings(&["/opt/capstan", "up", "--data-dir", "/tmp/bench1"]);
        assert!(!is_shim_of(&server, binary, data_dir));
        assert!(!is_shim_of(&strings(&["/opt/capstan"]), binary, data_dir));
    }

    #[test]
    fn scan_finds_nothing_for_unknown_binary() {
        let scan = scan_shims(Path::new("/nonexistent/capstan"), Path::new("/nonexistent"));
        assert_eq!(scan, ShimScan::default());
    }
}
