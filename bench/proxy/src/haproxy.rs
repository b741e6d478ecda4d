//! haproxy (the Debian package) as a TCP load balancer on loopback over the same pods, for
//! comparison with the Service proxy.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// A running haproxy; it is killed when dropped.
pub struct Haproxy {
    pub address: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts haproxy in the foreground, listening on a free loopback port and balancing
    /// connections round-robin over `backends` at layer 4, as the Service proxy does.
    pub fn start(backends: &[SocketAddr]) -> anyhow::Result<Haproxy> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .context("failed to find a free port")?
            .port();
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let dir = tempfile::Builder::new().prefix("capstan-bench-haproxy-").tempdir()?;
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(&config, render_config(address, backends)).context("failed to write haproxy.cfg")?;
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("haproxy.log"))?)
            .spawn()
            .context("failed to run haproxy; install it with `apt-get install haproxy`")?;
        Ok(Haproxy { address, child, dir })
    }

    /// Returns the haproxy log so far, for error reports.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Renders a configuration with one TCP frontend and one round-robin backend. `nbthread 2`
/// matches the two cores of the benchmark machine.
fn render_config(listen: SocketAddr, backends: &[SocketAddr]) -> String {
    let mut text = String::from(
        "global\n  nbthread 2\n  maxconn 4096\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\n",
    );
    text.push_str(&format!("frontend bench\n  bind {listen}\n  default_backend pods\n\nbackend pods\n  balance roundrobin\n"));
    for (index, backend) in backends.iter().enumerate() {
        text.push_str(&format!("  server pod{index} {backend}\n"));
    }
    text
}

/// Returns whether the `haproxy` program can be run.
pub fn installed() -> bool {
    Command::new("haproxy").arg("-v").output().is_ok_and(|output| output.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lists_every_backend() {
        let backends: Vec<SocketAddr> = vec!["10.1.0.2:8080".parse().unwrap(), "10.1.0.3:8080".parse().unwrap()];
        let text = render_config("127.0.0.1:4000".parse().unwrap(), &backends);
        assert!(text.contains("bind 127.0.0.1:4000\n"), "{text}");
        assert!(text.contains("mode tcp\n"), "{text}");
        assert!(text.contains("server pod0 10.1.0.2:8080\n"), "{text}");
        assert!(text.contains("server pod1 10.1.0.3:8080\n"), "{text}");
    }
}
