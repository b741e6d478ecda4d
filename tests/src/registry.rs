//! A private image registry for pull tests: Debian's `docker-registry` (the CNCF
//! Distribution registry) serving plain HTTP on one address of this machine, filled with
//! `skopeo copy` from the archives that `scripts/build-images` writes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry; dropping it stops the server and deletes its storage.
pub struct Registry {
    /// `HOST:PORT`, the prefix of image names in this registry.
    pub address: String,
    child: Child,
    _storage: tempfile::TempDir,
}

/// Why registry tests cannot run here, or `None` when `docker-registry` and `skopeo` are
/// installed.
pub fn missing_tools() -> Option<String> {
    let missing: Vec<&str> =
        ["docker-registry", "skopeo"].into_iter().filter(|program| !crate::cri::on_path(program)).collect();
    (!missing.is_empty()).then(|| format!("{} not installed (scripts/install-deps installs them)", missing.join(", ")))
}

impl Registry {
    /// Starts a registry on `host` and a free port, and waits until it serves `/v2/`.
    pub fn start(host: &str) -> Registry {
        let port = crate::free_port();
        let address = format!("{host}:{port}");
        let storage = tempfile::tempdir().expect("registry storage directory");
        let config = storage.path().join("config.yml");
        let yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
            storage.path().join("data").display()
        );
        std::fs::write(&config, yaml).expect("write the registry configuration");
        let log = std::fs::File::create(storage.path().join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("registry log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let registry = Registry { address, child, _storage: storage };
        let deadline = Instant::now() + Duration::from_secs(20);
        while crate::http_get(host, port, "/v2/").is_none() {
            assert!(Instant::now() < deadline, "the registry on {} did not answer /v2/", registry.address);
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    /// Copies the single image in the docker archive `archive` to `<address>/<name>`
    /// and returns the manifest digest the registry stored (`sha256:…`).
    pub fn push(&self, archive: &Path, name: &str) -> String {
        let destination = format!("docker://{}/{name}", self.address);
        let source = format!("docker-archive:{}", archive.display());
        let copied = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false", &source, &destination])
            .output()
            .expect("run skopeo copy");
        assert!(copied.status.success(), "skopeo copy failed: {}", String::from_utf8_lossy(&copied.stderr));
        let inspected = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}", &destination])
            .output()
            .expect("run skopeo inspect");
        assert!(inspected.status.success(), "skopeo inspect failed: {}", String::from_utf8_lossy(&inspected.stderr));
        String::from_utf8_lossy(&inspected.stdout).trim().to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
