//! Facts about the host that the Node object reports: capacity and system info.

use std::path::Path;

/// Capacity and identity of the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    pub cpus: u32,
    pub memory_bytes: i64,
    /// Total size of the filesystem that contains the data directory.
    pub ephemeral_storage_bytes: i64,
    pub kernel_version: String,
    pub os_image: String,
    /// Architecture in Go's spelling (`amd64`, `arm64`), as Kubernetes reports it.
    pub architecture: String,
    pub machine_id: String,
    pub boot_id: String,
    pub hostname: String,
}

impl HostInfo {
    /// Reads the host's facts. Facts that cannot be read are reported empty or zero
    /// rather than failing registration.
    pub fn read(data_dir: &Path) -> Self {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            memory_bytes: mem_total_bytes(&meminfo).unwrap_or(0),
            ephemeral_storage_bytes: filesystem_bytes(data_dir).unwrap_or(0),
            kernel_version: read("/proc/sys/kernel/osrelease"),
            os_image: pretty_name(&os_release).unwrap_or_else(|| "Linux".to_string()),
            architecture: go_arch(std::env::consts::ARCH).to_string(),
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|name| name.into_string().ok())
                .unwrap_or_default(),
        }
    }
}

/// Parses `MemTotal` from /proc/meminfo (given in KiB) into bytes.
pub fn mem_total_bytes(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Reads `PRETTY_NAME` from /etc/os-release, without its quotes.
pub fn pretty_name(os_release: &str) -> Option<String> {
    let value = os_release
        .lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))?;
    Some(
        value
            .trim()
            .trim_matches('"')
            .trim_matches('\'')
            .to_string(),
    )
}

/// Maps Rust's architecture names to Go's.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn filesystem_bytes(path: &Path) -> Option<i64> {
    // The data directory may not exist yet on first start; its parent's filesystem is
    // then the one it will be created on.
    let existing = path.ancestors().find(|p| p.exists())?;
    let stats = nix::sys::statvfs::statvfs(existing).ok()?;
    #[allow(
        clippy::useless_conversion,
        reason = "the statvfs field types differ between targets"
    )]
    let (blocks, size) = (
        u64::try_from(stats.blocks()).ok()?,
        u64::try_from(stats.fragment_size()).ok()?,
    );
    i64::try_from(blocks.checked_mul(size)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_in_bytes() {
        let meminfo = "MemTotal:        8046508 kB\nMemFree:          123 kB\n";
        assert_eq!(mem_total_bytes(meminfo), Some(8046508 * 1024));
        assert_eq!(mem_total_bytes("MemFree: 1 kB"), None);
    }

    #[test]
    fn os_release_pretty_name() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            pretty_name(text).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn arch_uses_go_names() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("riscv64"), "riscv64");
    }

    #[test]
    fn read_reports_this_host() {
        let dir = tempfile::tempdir().expect("temp dir");
        let info = HostInfo::read(&dir.path().join("not-yet-created"));
        assert!(info.cpus >= 1);
        assert!(info.memory_bytes > 0);
        assert!(info.ephemeral_storage_bytes > 0);
        assert!(!info.kernel_version.is_empty());
    }
}
