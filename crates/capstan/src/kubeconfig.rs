//! Kubeconfig files and in-process API clients built from cluster certificates.

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use capstan_pki::{Authority, CertifiedKey};

/// File name of the administrator kubeconfig inside the data directory.
pub const ADMIN_KUBECONFIG: &str = "kubeconfig";

/// Renders a kubeconfig that reaches `server_url` as the holder of `identity`.
pub fn render(server_url: &str, ca_pem: &str, identity: &CertifiedKey, user: &str) -> String {
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: capstan
  cluster:
    server: {server_url}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: capstan
  context:
    cluster: capstan
    user: {user}
    namespace: default
current-context: capstan
",
        ca = encode(ca_pem),
        cert = encode(&identity.cert_pem),
        key = encode(&identity.key_pem),
    )
}

/// Writes the administrator kubeconfig (user `admin`, group `system:masters`) into
/// `data_dir` with mode 0600 and returns its path.
pub fn write_admin(
    data_dir: &Path,
    server_url: &str,
    authority: &Authority,
) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let identity = authority.client_file("admin", "admin", &["system:masters"])?;
    let text = render(server_url, authority.ca_cert_pem(), &identity, "admin");
    let path = data_dir.join(ADMIN_KUBECONFIG);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("failed to write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(path)
}

/// Builds a `kube::Client` for an in-process component that authenticates as `user`.
pub async fn client_for(
    server_url: &str,
    authority: &Authority,
    stem: &str,
    user: &str,
    groups: &[&str],
) -> anyhow::Result<kube::Client> {
    let identity = authority.client_file(stem, user, groups)?;
    let text = render(server_url, authority.ca_cert_pem(), &identity, user);
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .context("failed to build the API client configuration")?;
    Ok(kube::Client::try_from(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_kubeconfig_parses() {
        let dir = tempfile::tempdir().unwrap();
        let authority = Authority::load_or_create(dir.path()).unwrap();
        let identity = authority.issue_client("admin", &["system:masters"]).unwrap();
        let text = render("https://127.0.0.1:6443", authority.ca_cert_pem(), &identity, "admin");
        let parsed = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("capstan"));
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
    }
}
