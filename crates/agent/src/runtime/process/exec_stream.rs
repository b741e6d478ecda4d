//! Streaming commands in a container (`kubectl exec`), with pipes or a pseudo-terminal.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;

use futures::FutureExt as _;
use tokio::process::Child;

use super::ProcessRuntime;
use super::exec::Prepared;
use crate::runtime::{ExecRequest, ExecSession, RuntimeError, TerminalSize};

impl ProcessRuntime {
    /// Starts `request.command` in the container's network namespace and cgroups with its
    /// environment and working directory; see [`crate::runtime::Runtime::exec`].
    pub(super) async fn exec_impl(
        &self,
        id: &str,
        request: &ExecRequest,
    ) -> Result<ExecSession, RuntimeError> {
        let command = &request.command;
        let (mut process, enter, program) = match self.prepare_exec(id, command)? {
            Prepared::Ready { process, enter, program } => (process, enter, program),
            Prepared::Missing { exit_code, message } => return Ok(failed_start(exit_code, message)),
        };
        let spawn_error =
            |err: std::io::Error| RuntimeError::Internal(format!("exec {program} in container {id}: {err}"));

        if request.tty {
            let terminal = open_terminal().map_err(spawn_error)?;
            if process.as_std().get_envs().all(|(name, _)| name != "TERM") {
                process.env("TERM", "xterm");
            }
            let slave = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
            process
                .stdin(slave(&terminal.slave).map_err(spawn_error)?)
                .stdout(slave(&terminal.slave).map_err(spawn_error)?)
                .stderr(slave(&terminal.slave).map_err(spawn_error)?);
            // SAFETY: `apply_with_terminal` makes only async-signal-safe system calls on
            // descriptors opened before the fork.
            unsafe { process.pre_exec(move || enter.apply_with_terminal()) };
            let child = process.spawn().map_err(spawn_error)?;
            // the child holds the slave now; the master reads EIO once every holder exits
            drop(process);
            drop(terminal.slave);
            return terminal_session(child, terminal.master, request).map_err(spawn_error);
        }

        let piped = |wanted: bool| if wanted { Stdio::piped() } else { Stdio::null() };
        process
            .stdin(piped(request.stdin))
            .stdout(piped(request.stdout))
            .stderr(piped(request.stderr));
        // SAFETY: `Enter::apply` makes only async-signal-safe system calls on descriptors
        // opened before the fork.
        unsafe { process.pre_exec(move || enter.apply()) };
        let mut child = process.spawn().map_err(spawn_error)?;
        Ok(ExecSession {
            stdin: child.stdin.take().map(|s| Box::pin(s) as _),
            stdout: child.stdout.take().map(|s| Box::pin(s) as _),
            stderr: child.stderr.take().map(|s| Box::pin(s) as _),
            resize: None,
            exit: wait_for_exit(child),
        })
    }
}

/// A session for a command that could not start: the message on stderr and the exit code
/// that a shell would report.
fn failed_start(exit_code: i32, message: String) -> ExecSession {
    let text = format!("{message}\n").into_bytes();
    ExecSession {
        stdin: None,
        stdout: None,
        stderr: Some(Box::pin(std::io::Cursor::new(text))),
        resize: None,
        exit: futures::future::ready(Ok(exit_code)).boxed(),
    }
}

struct Terminal {
    master: OwnedFd,
    slave: OwnedFd,
}

/// Opens a pseudo-terminal whose descriptors are not inherited across `exec`.
fn open_terminal() -> std::io::Result<Terminal> {
    let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
    for fd in [&pty.master, &pty.slave] {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
            .map_err(std::io::Error::from)?;
    }
    Ok(Terminal {
        master: pty.master,
        slave: pty.slave,
    })
}

/// Wires the terminal's master side to the session: reads are the command's output,
/// writes its input. A read after the command and all its children exit fails with
/// `EIO`, which the caller treats as the end of the output.
fn terminal_session(
    child: Child,
    master: OwnedFd,
    request: &ExecRequest,
) -> std::io::Result<ExecSession> {
    let master = Arc::new(master);
    let reader = tokio::fs::File::from_std(File::from(master.try_clone()?));
    let stdin = if request.stdin {
        let writer = tokio::fs::File::from_std(File::from(master.try_clone()?));
        Some(Box::pin(writer) as _)
    } else {
        None
    };
    let resize_fd = Arc::clone(&master);
    let resize = move |size: TerminalSize| set_window_size(&resize_fd, size);
    Ok(ExecSession {
        stdin,
        stdout: Some(Box::pin(EndOnEio(reader))),
        stderr: None,
        resize: Some(Box::new(resize)),
        exit: wait_for_exit(child),
    })
}

/// Sets the terminal size with `TIOCSWINSZ`, which also sends `SIGWINCH` to the
/// terminal's foreground process group.
pub(super) fn set_window_size(master: &OwnedFd, size: TerminalSize) -> std::io::Result<()> {
    let winsize = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which outlives the call.
    let result = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &winsize) };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for the command and returns its exit code. Dropping the future kills the
/// command's whole process group (or session, with a terminal).
fn wait_for_exit(mut child: Child) -> futures::future::BoxFuture<'static, Result<i32, RuntimeError>> {
    let guard = GroupKiller(child.id().map(|pid| pid as i32));
    async move {
        let mut guard = guard;
        let status = child
            .wait()
            .await
            .map_err(|err| RuntimeError::Internal(format!("failed to wait for the exec command: {err}")))?;
        guard.0 = None;
        use std::os::unix::process::ExitStatusExt as _;
        Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }
    .boxed()
}

/// Kills a process group on drop unless disarmed.
struct GroupKiller(Option<i32>);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill takes plain integers; a group that is gone returns ESRCH.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

/// A reader that reports `EIO` as the end of the stream, as a pty master does once the
/// slave side has no process left.
struct EndOnEio(tokio::fs::File);

impl tokio::io::AsyncRead for EndOnEio {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(err)) if err.raw_os_error() == Some(libc::EIO) => {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failed_start_reports_on_stderr() {
        let session = failed_start(127, "exec: \"nope\": executable file not found in $PATH".into());
        let mut stderr = session.stderr.expect("stderr");
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await.expect("read");
        assert_eq!(text, "exec: \"nope\": executable file not found in $PATH\n");
        assert_eq!(session.exit.await.expect("exit code"), 127);
    }

    #[test]
    fn window_size_applies_to_terminal() {
        let terminal = open_terminal().expect("openpty");
        set_window_size(&terminal.master, TerminalSize { width: 120, height: 40 }).expect("resize");
        // SAFETY: `winsize` is plain old data, so all zeroes is a valid value.
        let mut winsize: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes one `winsize` into the local variable.
        let result = unsafe { libc::ioctl(terminal.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut winsize) };
        assert_eq!(result, 0);
        assert_eq!((winsize.ws_col, winsize.ws_row), (120, 40));
    }
}
