//! Moving a child process into a pod's network namespace and a container's cgroups
//! between `fork` and `exec`, and giving it the pod's resolv.conf.
//!
//! Every file is opened before the fork, so that the code that runs in the child makes only
//! async-signal-safe system calls: the parent may be a multi-threaded agent whose allocator
//! lock another thread held at the time of the fork.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The namespace and cgroups a child process enters before it runs its command.
#[derive(Debug)]
pub struct Enter {
    netns: Option<OwnedFd>,
    cgroup_procs: Vec<File>,
    /// File to bind-mount over `/etc/resolv.conf` in a new mount namespace.
    resolv_conf: Option<CString>,
}

/// The mount target of the pod's resolver settings.
const RESOLV_CONF_TARGET: &std::ffi::CStr = c"/etc/resolv.conf";

impl Enter {
    /// Opens the network namespace file (such as `/run/netns/cst-…`) and the `cgroup.procs`
    /// files. A `cgroup.procs` file that does not exist is skipped, like its controller.
    /// With `resolv_conf`, the child gets its own mount namespace in which that file is
    /// bind-mounted over `/etc/resolv.conf`.
    pub fn open(netns: Option<&Path>, cgroup_procs: &[PathBuf], resolv_conf: Option<&Path>) -> io::Result<Self> {
        let netns = match netns {
            Some(path) => Some(OwnedFd::from(
                File::open(path).map_err(|err| with_path(err, path))?,
            )),
            None => None,
        };
        let mut files = Vec::new();
        for path in cgroup_procs {
            match OpenOptions::new().write(true).open(path) {
                Ok(file) => files.push(file),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(with_path(err, path)),
            }
        }
        let resolv_conf = match resolv_conf {
            Some(path) => {
                use std::os::unix::ffi::OsStrExt;
                let bytes = path.as_os_str().as_bytes().to_vec();
                Some(CString::new(bytes).map_err(|_| with_path(io::ErrorKind::InvalidInput.into(), path))?)
            }
            None => None,
        };
        Ok(Self {
            netns,
            cgroup_procs: files,
            resolv_conf,
        })
    }

    /// Puts the calling process in a new process group, its cgroups and its network
    /// namespace. Meant for `pre_exec`: it neither allocates nor takes locks.
    pub fn apply(&self) -> io::Result<()> {
        // SAFETY: setpgid takes plain integers and is async-signal-safe.
        if unsafe { libc::setpgid(0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        self.join()
    }

    /// Like [`Enter::apply`], but starts a new session and makes the terminal on standard
    /// input its controlling terminal, so that the shell gets job control and `SIGHUP`.
    pub fn apply_with_terminal(&self) -> io::Result<()> {
        // SAFETY: setsid and ioctl(TIOCSCTTY) are async-signal-safe; fd 0 is the terminal
        // that `pre_exec` callers install before this runs.
        unsafe {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        self.join()
    }

    /// Writes the calling process into the cgroups, enters the network namespace and
    /// mounts the pod's resolv.conf.
    fn join(&self) -> io::Result<()> {
        // SAFETY: getpid, write and setns are async-signal-safe system calls on file
        // descriptors this struct owns; no memory is allocated.
        unsafe {
            let mut digits = [0u8; 20];
            let len = format_decimal(libc::getpid() as u32, &mut digits);
            for file in &self.cgroup_procs {
                let written = libc::write(file.as_raw_fd(), digits.as_ptr().cast(), len);
                if written < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(fd) = &self.netns
                && libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(source) = &self.resolv_conf {
            mount_resolv_conf(source)?;
        }
        Ok(())
    }
}

/// Unshares the mount namespace and bind-mounts `source` over `/etc/resolv.conf`. Mounts
/// are made slaves first, so the bind stays private to the container while mounts made on
/// the host later still appear in it.
fn mount_resolv_conf(source: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: unshare and mount take pointers to NUL-terminated strings that outlive the
    // calls. Both are async-signal-safe system calls and allocate nothing.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(io::Error::last_os_error());
        }
        let none = std::ptr::null();
        if libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_SLAVE, std::ptr::null()) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::mount(source.as_ptr(), RESOLV_CONF_TARGET.as_ptr(), none, libc::MS_BIND, std::ptr::null()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Writes `value` in decimal to the start of `out` and returns the length.
fn format_decimal(mut value: u32, out: &mut [u8; 20]) -> usize {
    let mut reversed = [0u8; 20];
    let mut len = 0;
    loop {
        reversed[len] = b'0' + (value % 10) as u8;
        len += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for i in 0..len {
        out[i] = reversed[len - 1 - i];
    }
    len
}

fn with_path(err: io::Error, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_formatting() {
        let mut out = [0u8; 20];
        for value in [0u32, 7, 10, 4_194_304, u32::MAX] {
            let len = format_decimal(value, &mut out);
            assert_eq!(std::str::from_utf8(&out[..len]).unwrap(), value.to_string());
        }
    }

    #[test]
    fn missing_cgroup_files_are_skipped() {
        let enter = Enter::open(None, &[PathBuf::from("/nonexistent/cgroup.procs")], None).unwrap();
        assert!(enter.cgroup_procs.is_empty());
        assert!(Enter::open(Some(Path::new("/nonexistent/netns")), &[], None).is_err());
    }
}
