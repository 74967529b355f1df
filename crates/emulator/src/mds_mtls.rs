//! The metadata server over mutual TLS, as Shielded VMs serve it: the same endpoints, over TLS
//! on the emulator's own port (a connection whose first byte starts a TLS handshake is served
//! over TLS, any other over plain HTTP), with a server certificate for both
//! `metadata.google.internal` and `169.254.169.254`, and a client certificate required that
//! chains to the emulator's MDS CA.
//!
//! [`MdsMtlsCa`] is that CA: it issues client certificates and writes them as the guest agent
//! does, `root.crt` (the CA) and `client.key` (EC key and certificate in one PEM file), into a
//! directory a client reads through `WORKLOAD_AUTH_MDS_MTLS_DIR`.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use workload_auth_core::{Error, ErrorKind, Result, SecretString};

/// The CA file the guest agent writes.
pub const ROOT_FILE: &str = "root.crt";
/// The client key and certificate file the guest agent writes.
pub const CLIENT_FILE: &str = "client.key";
/// How long the guest agent's client certificates live before rotation.
pub const CLIENT_CERT_LIFETIME: Duration = Duration::from_secs(48 * 3600);

/// The most client certificates remembered (one per mTLS connection).
const MAX_SEEN: usize = 64;

fn tls_error(what: &str, e: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("emulator MDS mTLS: {what}: {e}"),
    )
}

/// A root certificate, its issuer, a server certificate and the server's key.
pub(crate) type ServerPki = (
    rcgen::Certificate,
    Issuer<'static, KeyPair>,
    rcgen::Certificate,
    KeyPair,
);

/// A fresh root CA named `root_name` and a server certificate named `leaf_name` for `sans` that it
/// signed (ECDSA P-256): the root, its issuer, the server certificate and key. An error names the
/// step that failed.
pub(crate) fn root_and_server(
    root_name: &str,
    leaf_name: &str,
    sans: Vec<SanType>,
) -> std::result::Result<ServerPki, (&'static str, rcgen::Error)> {
    let root_key = KeyPair::generate().map_err(|e| ("root key", e))?;
    let mut root = CertificateParams::default();
    root.distinguished_name.push(DnType::CommonName, root_name);
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root_cert = root
        .self_signed(&root_key)
        .map_err(|e| ("root certificate", e))?;
    let issuer = Issuer::new(root, root_key);

    let key = KeyPair::generate().map_err(|e| ("server key", e))?;
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name.push(DnType::CommonName, leaf_name);
    leaf.subject_alt_names = sans;
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf
        .signed_by(&key, &issuer)
        .map_err(|e| ("server certificate", e))?;
    Ok((root_cert, issuer, leaf_cert, key))
}

/// A fresh root CA and a rustls server configuration for `localhost` and `127.0.0.1` that asks
/// for no client certificate: the emulator's endpoints over plain HTTPS, as Google's token
/// endpoints are reached (see [`crate::Emulator::enable_tls`]). Returns the root (DER) clients
/// trust, and the configuration.
pub(crate) fn https_server() -> Result<(CertificateDer<'static>, rustls::ServerConfig)> {
    let sans = vec![
        SanType::DnsName("localhost".try_into().map_err(|e| tls_error("SAN", e))?),
        SanType::IpAddress(Ipv4Addr::LOCALHOST.into()),
    ];
    let (root_cert, _issuer, leaf_cert, key) =
        root_and_server("workload-auth emulator TLS root", "localhost", sans)
            .map_err(|(what, e)| tls_error(what, e))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(|e| tls_error("server certificate", e))?;
    Ok((root_cert.der().clone(), config))
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, "emulator MDS mTLS: cannot write a file")
        .with_endpoint(path.display().to_string())
        .with_source(e)
}

/// A client certificate issued by [`MdsMtlsCa`].
#[derive(Clone)]
pub struct MdsClientCert {
    key_pem: SecretString,
    cert_pem: String,
    cert_der: Vec<u8>,
    not_after: SystemTime,
}

impl MdsClientCert {
    /// The certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The EC private key (SEC1 `EC PRIVATE KEY` PEM).
    pub fn key_pem(&self) -> &SecretString {
        &self.key_pem
    }

    /// When the certificate expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// What `client.key` holds: the key, then the certificate.
    pub fn combined_pem(&self) -> SecretString {
        SecretString::new(format!("{}{}", self.key_pem.expose(), self.cert_pem))
    }
}

impl fmt::Debug for MdsClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MdsClientCert")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The metadata server's mTLS CA, server certificate and client certificates.
pub struct MdsMtlsCa {
    root_pem: String,
    root_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key_der: Vec<u8>,
}

impl fmt::Debug for MdsMtlsCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MdsMtlsCa").finish_non_exhaustive()
    }
}

impl MdsMtlsCa {
    /// A fresh CA (ECDSA P-256) and a server certificate for `metadata.google.internal` and
    /// `169.254.169.254`.
    pub fn new() -> Result<Self> {
        let sans = vec![
            SanType::DnsName(
                "metadata.google.internal"
                    .try_into()
                    .map_err(|e| tls_error("SAN", e))?,
            ),
            SanType::IpAddress(Ipv4Addr::new(169, 254, 169, 254).into()),
        ];
        let (root_cert, issuer, leaf_cert, key) = root_and_server(
            "workload-auth emulator MDS mTLS root",
            "metadata.google.internal",
            sans,
        )
        .map_err(|(what, e)| tls_error(what, e))?;
        Ok(Self {
            root_pem: root_cert.pem(),
            root_der: root_cert.der().to_vec(),
            issuer,
            server_chain: vec![leaf_cert.der().clone()],
            server_key_der: key.serialize_der(),
        })
    }

    /// The CA certificate (PEM): what `root.crt` holds.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The CA certificate (DER).
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// A server certificate from this CA for `dns_names` and `ips`, and its key (PKCS#8 PEM):
    /// for other servers in tests (the emulator's own has both of the metadata server's names).
    pub fn issue_server(
        &self,
        dns_names: &[&str],
        ips: &[std::net::IpAddr],
    ) -> Result<(String, SecretString)> {
        let key = KeyPair::generate().map_err(|e| tls_error("server key", e))?;
        let mut leaf = CertificateParams::default();
        leaf.distinguished_name
            .push(DnType::CommonName, "workload-auth test metadata server");
        for name in dns_names {
            let name = (*name).try_into().map_err(|e| tls_error("SAN", e))?;
            leaf.subject_alt_names.push(SanType::DnsName(name));
        }
        for ip in ips {
            leaf.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = leaf
            .signed_by(&key, &self.issuer)
            .map_err(|e| tls_error("server certificate", e))?;
        Ok((cert.pem(), SecretString::new(key.serialize_pem())))
    }

    /// A client certificate valid from a minute ago for `lifetime`.
    pub fn issue_client(&self, lifetime: Duration) -> Result<MdsClientCert> {
        let now = SystemTime::now();
        let not_after = now
            .checked_add(lifetime)
            .ok_or_else(|| tls_error("lifetime", "too long"))?;
        self.issue_client_valid(now - Duration::from_secs(60), not_after)
    }

    /// A client certificate valid from `not_before` to `not_after` (e.g. an expired one).
    pub fn issue_client_valid(
        &self,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<MdsClientCert> {
        let key = KeyPair::generate().map_err(|e| tls_error("client key", e))?;
        self.issue_for(key, not_before, not_after, true)
    }

    /// A client certificate with an Ed25519 key (PKCS#8 `PRIVATE KEY`), which is not the EC key
    /// the metadata server's clients hold: for tests of the wrong key type.
    pub fn issue_client_ed25519(&self) -> Result<MdsClientCert> {
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| tls_error("client key", e))?;
        let now = SystemTime::now();
        self.issue_for(
            key,
            now - Duration::from_secs(60),
            now + CLIENT_CERT_LIFETIME,
            false,
        )
    }

    fn issue_for(
        &self,
        key: KeyPair,
        not_before: SystemTime,
        not_after: SystemTime,
        sec1: bool,
    ) -> Result<MdsClientCert> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "workload-auth emulator MDS client");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| tls_error("client certificate", e))?;
        let key_pem = if sec1 {
            let der = crate::ca::pkcs8_p256_to_sec1(&key.serialize_der())
                .ok_or_else(|| tls_error("client key", "cannot re-encode"))?;
            crate::ca::pem_encode("EC PRIVATE KEY", &der)
        } else {
            key.serialize_pem()
        };
        Ok(MdsClientCert {
            key_pem: SecretString::new(key_pem),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            not_after,
        })
    }

    /// Writes `root.crt` and `client` as `client.key` into `dir` (created if missing), each
    /// through a temporary file and a rename, so a reader never sees half a file; `client.key`
    /// is readable by its owner only.
    pub fn write_dir(&self, dir: &Path, client: &MdsClientCert) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        write_atomically(&dir.join(ROOT_FILE), self.root_pem.as_bytes(), 0o644)?;
        write_atomically(
            &dir.join(CLIENT_FILE),
            client.combined_pem().expose().as_bytes(),
            0o600,
        )
    }

    /// The server side: TLS 1.2 or 1.3, a client certificate from this CA required.
    pub(crate) fn server_config(&self) -> Result<rustls::ServerConfig> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.root_der.clone()))
            .map_err(|e| tls_error("client root", e))?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::clone(&provider),
        )
        .build()
        .map_err(|e| tls_error("client verifier", e))?;
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("protocol versions", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                self.server_chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone())),
            )
            .map_err(|e| tls_error("server certificate", e))
    }
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write as _;
    let tmp: PathBuf = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(|e| io_error(&tmp, e))?;
    file.write_all(bytes).map_err(|e| io_error(&tmp, e))?;
    file.sync_all().map_err(|e| io_error(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

/// How a request reached the emulator's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Plain,
    /// TLS with a server certificate only ([`crate::Emulator::enable_tls`]).
    Tls,
    /// TLS with a client certificate ([`crate::Emulator::enable_mds_mtls`]).
    MutualTls,
}

/// What the server's connections share about MDS mTLS: the acceptor when it is on, and counts
/// of the requests that arrived over each transport.
#[derive(Default)]
pub(crate) struct MdsMtlsState {
    pub(crate) acceptor: ArcSwapOption<tokio_rustls::TlsAcceptor>,
    pub(crate) plain_requests: AtomicU64,
    pub(crate) tls_requests: AtomicU64,
    pub(crate) mtls_requests: AtomicU64,
    /// The leaf certificate (DER) of each mTLS connection, most recent last.
    pub(crate) client_certs: Mutex<Vec<Vec<u8>>>,
}

impl fmt::Debug for MdsMtlsState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MdsMtlsState")
            .field("enabled", &self.acceptor.load().is_some())
            .field(
                "plain_requests",
                &self.plain_requests.load(Ordering::Relaxed),
            )
            .field("tls_requests", &self.tls_requests.load(Ordering::Relaxed))
            .field("mtls_requests", &self.mtls_requests.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl MdsMtlsState {
    pub(crate) fn count(&self, transport: Transport) {
        let counter = match transport {
            Transport::Plain => &self.plain_requests,
            Transport::Tls => &self.tls_requests,
            Transport::MutualTls => &self.mtls_requests,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn saw_client_cert(&self, der: &[u8]) {
        let mut seen = match self.client_certs.lock() {
            Ok(seen) => seen,
            Err(poisoned) => poisoned.into_inner(),
        };
        if seen.len() >= MAX_SEEN {
            seen.remove(0);
        }
        seen.push(der.to_vec());
    }

    pub(crate) fn client_certs(&self) -> Vec<Vec<u8>> {
        match self.client_certs.lock() {
            Ok(seen) => seen.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_guest_agent_layout() {
        let ca = MdsMtlsCa::new().unwrap();
        let client = ca.issue_client(CLIENT_CERT_LIFETIME).unwrap();
        let dir = std::env::temp_dir().join(format!("wa-emu-mds-{}", std::process::id()));
        ca.write_dir(&dir, &client).unwrap();
        let root = std::fs::read_to_string(dir.join(ROOT_FILE)).unwrap();
        assert_eq!(root, ca.root_pem());
        let combined = std::fs::read_to_string(dir.join(CLIENT_FILE)).unwrap();
        let key_at = combined.find("-----BEGIN EC PRIVATE KEY-----").unwrap();
        let cert_at = combined.find("-----BEGIN CERTIFICATE-----").unwrap();
        assert!(key_at < cert_at);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join(CLIENT_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "client.key is readable by others: {mode:o}"
            );
        }
        assert!(!format!("{client:?}").contains("PRIVATE"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
