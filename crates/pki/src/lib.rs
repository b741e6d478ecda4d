//! The cluster's certificate authority.
//!
//! The first server creates a CA key pair in its data directory; every server, agent and
//! user certificate is issued by it. [`Authority::load_or_create`] is the entry point, and
//! [`server_config`] / [`client_config`] turn issued certificates into rustls
//! configurations that require the peer to chain to the same CA.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Failure to create, load or use a certificate.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("failed to read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to generate or parse a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("invalid PEM in {what}: {message}")]
    Pem { what: String, message: String },
    #[error("failed to build the TLS configuration: {0}")]
    Tls(String),
}

/// A certificate and its private key, both PEM-encoded.
#[derive(Clone, Debug)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Who a client certificate identifies: the user name (subject CN) and groups (subject O),
/// as Kubernetes reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    pub user: String,
    pub groups: Vec<String>,
}

/// The certificate authority, loaded from or written to `dir/ca.crt` and `dir/ca.key`.
pub struct Authority {
    dir: PathBuf,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// Validity of issued leaf certificates, in days.
const LEAF_VALIDITY_DAYS: i64 = 365;
/// Validity of the CA certificate, in days.
const CA_VALIDITY_DAYS: i64 = 3650;

impl Authority {
    /// Loads the CA from `dir`, or creates a new one there when `dir/ca.crt` is absent.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        if cert_path.exists() {
            let cert_pem = read(&cert_path)?;
            let key = KeyPair::from_pem(&read(&key_path)?)?;
            let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
            return Ok(Authority { dir: dir.to_path_buf(), cert_pem, issuer });
        }

        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = distinguished_name("capstan-ca", &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY_DAYS);
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        write_private(&key_path, &key.serialize_pem())?;
        write(&cert_path, &cert_pem)?;
        let issuer = Issuer::new(params, key);
        Ok(Authority { dir: dir.to_path_buf(), cert_pem, issuer })
    }

    /// The CA certificate, PEM-encoded.
    pub fn ca_cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The directory that holds the CA and the certificates written by `*_file` methods.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Issues a serving certificate for the given DNS names and IP addresses.
    pub fn issue_server(
        &self,
        common_name: &str,
        dns_names: &[String],
        ips: &[IpAddr],
    ) -> Result<CertifiedKey, PkiError> {
        let mut params = CertificateParams::new(dns_names.to_vec())?;
        params.subject_alt_names.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.distinguished_name = distinguished_name(common_name, &[]);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params)
    }

    /// Issues a client certificate whose subject names `user` (CN) and `groups` (O).
    ///
    /// NOTE: rcgen's distinguished name holds one value per attribute type, so only the
    /// last group is kept. Remove this note once rcgen can write repeated attributes.
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<CertifiedKey, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = distinguished_name(user, groups);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// Returns the serving certificate stored as `dir/<stem>.crt` and `.key`, issuing and
    /// writing a new one when absent or when it lacks one of the requested names.
    pub fn server_file(
        &self,
        stem: &str,
        dns_names: &[String],
        ips: &[IpAddr],
    ) -> Result<CertifiedKey, PkiError> {
        let wanted = names_marker(dns_names, ips);
        let marker_path = self.dir.join(format!("{stem}.names"));
        let current = fs::read_to_string(&marker_path).unwrap_or_default();
        if current == wanted {
            if let Some(existing) = self.read_pair(stem)? {
                return Ok(existing);
            }
        }
        let issued = self.issue_server(stem, dns_names, ips)?;
        self.write_pair(stem, &issued)?;
        write(&marker_path, &wanted)?;
        Ok(issued)
    }

    /// Returns the client certificate stored as `dir/<stem>.crt` and `.key`, issuing and
    /// writing a new one for `user` and `groups` when absent.
    pub fn client_file(
        &self,
        stem: &str,
        user: &str,
        groups: &[&str],
    ) -> Result<CertifiedKey, PkiError> {
        if let Some(existing) = self.read_pair(stem)? {
            return Ok(existing);
        }
        let issued = self.issue_client(user, groups)?;
        self.write_pair(stem, &issued)?;
        Ok(issued)
    }

    fn sign(&self, mut params: CertificateParams) -> Result<CertifiedKey, PkiError> {
        set_validity(&mut params, LEAF_VALIDITY_DAYS);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    fn read_pair(&self, stem: &str) -> Result<Option<CertifiedKey>, PkiError> {
        let cert_path = self.dir.join(format!("{stem}.crt"));
        let key_path = self.dir.join(format!("{stem}.key"));
        if !cert_path.exists() || !key_path.exists() {
            return Ok(None);
        }
        Ok(Some(CertifiedKey { cert_pem: read(&cert_path)?, key_pem: read(&key_path)? }))
    }

    fn write_pair(&self, stem: &str, pair: &CertifiedKey) -> Result<(), PkiError> {
        write_private(&self.dir.join(format!("{stem}.key")), &pair.key_pem)?;
        write(&self.dir.join(format!("{stem}.crt")), &pair.cert_pem)
    }
}

/// Builds a TLS server configuration that presents `identity` and accepts client
/// certificates issued by `ca_pem`. With `require_client_cert` false, clients without a
/// certificate may connect too (the API server then treats them as anonymous).
pub fn server_config(
    identity: &CertifiedKey,
    ca_pem: &str,
    require_client_cert: bool,
) -> Result<rustls::ServerConfig, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(root_store(ca_pem)?);
    let builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
    let builder = if require_client_cert { builder } else { builder.allow_unauthenticated() };
    let verifier = builder.build().map_err(|e| PkiError::Tls(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert_chain(&identity.cert_pem)?, private_key(&identity.key_pem)?)
        .map_err(|e| PkiError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Builds a TLS client configuration that trusts only `ca_pem` and presents `identity`.
pub fn client_config(
    identity: &CertifiedKey,
    ca_pem: &str,
) -> Result<rustls::ClientConfig, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Tls(e.to_string()))?
        .with_root_certificates(root_store(ca_pem)?)
        .with_client_auth_cert(cert_chain(&identity.cert_pem)?, private_key(&identity.key_pem)?)
        .map_err(|e| PkiError::Tls(e.to_string()))
}

/// Reads the user (CN) and groups (O) from a DER client certificate.
pub fn client_identity(cert_der: &[u8]) -> Option<ClientIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let subject = cert.subject();
    let user = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|attribute| attribute.as_str().ok().map(str::to_string))
        .collect();
    Some(ClientIdentity { user, groups })
}

fn distinguished_name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    for organization in organizations {
        name.push(DnType::OrganizationName, *organization);
    }
    name
}

fn set_validity(params: &mut CertificateParams, days: i64) {
    let now = jiff::Timestamp::now();
    let start = now - jiff::SignedDuration::from_hours(1);
    let end = now + jiff::SignedDuration::from_hours(24 * days);
    params.not_before = rcgen_time(start);
    params.not_after = rcgen_time(end);
}

fn rcgen_time(at: jiff::Timestamp) -> time::OffsetDateTime {
    let date = at.to_zoned(jiff::tz::TimeZone::UTC).date();
    rcgen::date_time_ymd(i32::from(date.year()), date.month() as u8, date.day() as u8)
}

fn names_marker(dns_names: &[String], ips: &[IpAddr]) -> String {
    let mut names: Vec<String> = dns_names.to_vec();
    names.extend(ips.iter().map(|ip| ip.to_string()));
    names.sort();
    names.join("\n")
}

fn root_store(ca_pem: &str) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    for cert in cert_chain(ca_pem)? {
        roots.add(cert).map_err(|e| PkiError::Tls(e.to_string()))?;
    }
    Ok(roots)
}

/// Parses every certificate in a PEM bundle.
pub fn cert_chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem { what: "certificate".into(), message: e.to_string() })
}

/// Parses the first private key in a PEM document.
pub fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::Pem { what: "private key".into(), message: e.to_string() })
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| io_error(path, source))
}

fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    fs::write(path, contents).map_err(|source| io_error(path, source))
}

fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| io_error(path, source))?;
    file.write_all(contents.as_bytes()).map_err(|source| io_error(path, source))
}

fn io_error(path: &Path, source: std::io::Error) -> PkiError {
    PkiError::Io { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_survives_reload() {
        let dir = tempfile::tempdir().unwrap();
        let first = Authority::load_or_create(dir.path()).unwrap();
        let second = Authority::load_or_create(dir.path()).unwrap();
        assert_eq!(first.ca_cert_pem(), second.ca_cert_pem());
    }

    #[test]
    fn client_identity_reads_user_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::load_or_create(dir.path()).unwrap();
        let issued = ca.issue_client("alice", &["system:masters"]).unwrap();
        let der = cert_chain(&issued.cert_pem).unwrap().remove(0);
        let identity = client_identity(&der).unwrap();
        assert_eq!(identity.user, "alice");
        assert_eq!(identity.groups, vec!["system:masters".to_string()]);
    }

    #[test]
    fn configs_build_from_issued_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::load_or_create(dir.path()).unwrap();
        let server = ca
            .server_file("apiserver", &["localhost".into()], &["127.0.0.1".parse().unwrap()])
            .unwrap();
        let client = ca.issue_client("admin", &["system:masters"]).unwrap();
        assert!(server_config(&server, ca.ca_cert_pem(), true).is_ok());
        assert!(client_config(&client, ca.ca_cert_pem()).is_ok());
    }
}
