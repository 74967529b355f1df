//! The metadata server over mutual TLS: which transport a client uses, the files it reads, and
//! the TLS configuration that verifies the server by its fixed names.
//!
//! On Shielded VMs the guest agent writes the metadata server's CA to
//! `/run/google-mds-mtls/root.crt` and an EC key plus client certificate (one PEM file) to
//! `/run/google-mds-mtls/client.key`, rotating the certificate every 48 hours. The server is then
//! reachable at `https://metadata.google.internal/` (data) and `https://169.254.169.254/` (the
//! detection ping), and its certificate carries both names.
//!
//! `GCE_METADATA_MTLS_MODE` chooses what a client does with that:
//!
//! - `none` (the default, as google-auth since 2.50): plain HTTP.
//! - `default`: mTLS when both files exist, else plain HTTP. Before its first request a client
//!   pings the server over mTLS once; a TLS error, a connection error, a timeout or a 4xx/5xx
//!   answer (the failures google-auth falls back on) makes that client use plain HTTP for its
//!   whole life, with a warning logged. The decision is never revisited, so a client never
//!   alternates between transports.
//! - `strict`: mTLS or nothing. The files must exist and be usable, the HTTP client used only
//!   speaks HTTPS, and no request ever goes out in plain HTTP.
//!
//! Whatever address `GCE_METADATA_HOST` gives, the server certificate is verified as
//! `metadata.google.internal` (as `169.254.169.254` for the ping), against `root.crt` only. An
//! overridden host must be a loopback address (`127.0.0.0/8`, `::1`, `localhost`: a local
//! emulator); google-auth refuses every override in `strict`, which would make the mode
//! untestable, and with a remote override it verifies against the public roots, which proves
//! nothing about a metadata server.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use url::Url;
use workload_auth_core::fs::{MAX_PEM_FILE_BYTES, is_not_found, read_bounded};
use workload_auth_core::http_client::{self, ClientOptions, Proxy};
use workload_auth_core::{Error, ErrorKind, Result};

use crate::host::{API_PREFIX, DEFAULT_METADATA_HOST, MetadataHost};

/// The environment variable that chooses the transport: `none`, `default` or `strict`.
pub const MDS_MTLS_MODE_ENV: &str = "GCE_METADATA_MTLS_MODE";

/// The environment variable naming another directory holding `root.crt` and `client.key` (for
/// tests and the emulator).
pub const MDS_MTLS_DIR_ENV: &str = "WORKLOAD_AUTH_MDS_MTLS_DIR";

/// Where the guest agent writes the files on Linux.
pub const DEFAULT_MDS_MTLS_DIR: &str = "/run/google-mds-mtls";

/// The metadata server's CA certificate, in the directory.
pub const MDS_MTLS_ROOT_FILE: &str = "root.crt";

/// The client's EC private key and certificate in one PEM file, in the directory.
pub const MDS_MTLS_CLIENT_FILE: &str = "client.key";

/// The name the server certificate is verified against for the detection ping.
pub const METADATA_IP_NAME: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// How the metadata server is reached ([`MDS_MTLS_MODE_ENV`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MdsMtlsMode {
    /// Plain HTTP (the default).
    #[default]
    None,
    /// mTLS when both files exist, plain HTTP otherwise or after the first mTLS ping fails.
    Default,
    /// mTLS only; never plain HTTP.
    Strict,
}

impl MdsMtlsMode {
    /// Parses a mode (`none`, `default`, `strict`, any case, surrounding blanks ignored); `source`
    /// names where the value came from. Anything else is an [`ErrorKind::InvalidArgument`].
    pub fn parse(value: &str, source: &str) -> Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "default" => Ok(Self::Default),
            "strict" => Ok(Self::Strict),
            _ => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "invalid metadata server mTLS mode {:?}: expected none, default or strict",
                    workload_auth_core::text::snippet(value, 40)
                ),
            )
            .with_endpoint(source.to_owned())),
        }
    }

    /// The mode from `env_value` (the value of [`MDS_MTLS_MODE_ENV`]; unset or blank is `none`).
    pub fn from_env_value(env_value: Option<&str>) -> Result<Self> {
        match env_value.filter(|v| !v.trim().is_empty()) {
            Some(v) => Self::parse(v, MDS_MTLS_MODE_ENV),
            None => Ok(Self::None),
        }
    }

    /// `none`, `default` or `strict`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Default => "default",
            Self::Strict => "strict",
        }
    }
}

impl FromStr for MdsMtlsMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s, "metadata server mTLS mode")
    }
}

impl fmt::Display for MdsMtlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transport a [`MetadataClient`](crate::MetadataClient) decided on, and why: what
/// `explain` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdsTransport {
    mode: MdsMtlsMode,
    mtls: bool,
    dir: Option<PathBuf>,
    reason: String,
}

impl MdsTransport {
    pub(crate) fn http(mode: MdsMtlsMode, dir: Option<PathBuf>, reason: impl Into<String>) -> Self {
        Self {
            mode,
            mtls: false,
            dir,
            reason: reason.into(),
        }
    }

    pub(crate) fn mtls(mode: MdsMtlsMode, dir: PathBuf, reason: impl Into<String>) -> Self {
        Self {
            mode,
            mtls: true,
            dir: Some(dir),
            reason: reason.into(),
        }
    }

    /// Whether requests go over mutual TLS.
    pub fn is_mtls(&self) -> bool {
        self.mtls
    }

    /// The mode the decision was made under.
    pub fn mode(&self) -> MdsMtlsMode {
        self.mode
    }

    /// The directory of `root.crt` and `client.key`, when the mode looks at one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Why, in words.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// `mtls` or `http`.
    pub fn name(&self) -> &'static str {
        if self.mtls { "mtls" } else { "http" }
    }
}

impl fmt::Display for MdsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.mtls { "mTLS" } else { "plain HTTP" };
        write!(
            f,
            "{what} ({MDS_MTLS_MODE_ENV}={}): {}",
            self.mode, self.reason
        )
    }
}

/// Where the files are: an explicit directory, else [`MDS_MTLS_DIR_ENV`], else the default.
pub(crate) fn resolve_dir(explicit: Option<&Path>, env_value: Option<&str>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    match env_value.filter(|v| !v.trim().is_empty()) {
        Some(v) => PathBuf::from(v),
        None => PathBuf::from(DEFAULT_MDS_MTLS_DIR),
    }
}

/// Whether a file exists at all (anything but "not found" counts as existing, so that a
/// directory or an unreadable file is reported rather than silently skipped).
pub(crate) fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

fn file_error(path: &Path, message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidCredentials, message)
        .with_endpoint(path.display().to_string())
        .with_hint(
            "the guest agent writes root.crt and client.key on Shielded VMs; point \
             WORKLOAD_AUTH_MDS_MTLS_DIR at a directory holding both, or set \
             GCE_METADATA_MTLS_MODE=none",
        )
}

/// Reads a file of the directory, naming it in every error.
fn read_file(path: &Path, what: &str) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    read_bounded(path, MAX_PEM_FILE_BYTES, what).map_err(|e| {
        let message = if is_not_found(&e) {
            format!("{what} {} does not exist", path.display())
        } else {
            format!("{what} {}: {}", path.display(), e.message())
        };
        file_error(path, message).with_source(e)
    })
}

/// Words for a PEM parse failure, never quoting the file (it holds a key).
fn pem_problem(e: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { .. } => "a PEM section has no END line (is it half-written?)",
        E::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        E::Base64Decode(_) => "a PEM section is not valid base64 (is it half-written?)",
        E::NoItemsFound => "it holds no PEM section of the expected kind",
        _ => "it is not valid PEM",
    }
}

/// The CA certificates in `root.crt`.
pub(crate) fn load_roots(path: &Path) -> Result<rustls::RootCertStore> {
    let what = "the metadata server mTLS CA file";
    let pem = read_file(path, what)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| {
            file_error(
                path,
                format!("{what} {} is unusable: {}", path.display(), pem_problem(&e)),
            )
        })?;
        roots.add(cert).map_err(|e| {
            file_error(
                path,
                format!(
                    "{what} {} holds a certificate that cannot be a trust anchor: {e}",
                    path.display()
                ),
            )
        })?;
    }
    if roots.is_empty() {
        return Err(file_error(
            path,
            format!("{what} {} holds no certificate", path.display()),
        ));
    }
    Ok(roots)
}

/// The client key and certificate chain in `client.key`: the key must be an EC key, match the
/// first certificate, and that certificate must be valid at `now`.
pub(crate) fn load_client(
    path: &Path,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<Arc<CertifiedKey>> {
    let what = "the metadata server mTLS client key and certificate file";
    let pem = read_file(path, what)?;
    let unusable = |why: String| file_error(path, format!("{what} {} {why}", path.display()));
    let mut chain = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        chain.push(cert.map_err(|e| unusable(format!("is unusable: {}", pem_problem(&e))))?);
    }
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            unusable("holds no private key (is it half-written?)".to_owned())
        }
        e => unusable(format!("is unusable: {}", pem_problem(&e))),
    })?;
    if chain.is_empty() {
        return Err(unusable(
            "holds no certificate (is it half-written?)".to_owned(),
        ));
    }
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| unusable("holds a private key that cannot be loaded".to_owned()))?;
    if signing.algorithm() != rustls::SignatureAlgorithm::ECDSA {
        return Err(unusable(format!(
            "holds a {:?} private key; the metadata server's client key is an EC key",
            signing.algorithm()
        )));
    }
    let (not_before, not_after, not_after_text) = validity(&chain[0])
        .ok_or_else(|| unusable("holds a certificate that cannot be parsed".to_owned()))?;
    if now >= not_after {
        return Err(unusable(format!(
            "holds a client certificate that expired at {not_after_text} (the guest agent rotates it every 48 h; is it running?)"
        )));
    }
    if now < not_before {
        return Err(unusable(
            "holds a client certificate that is not valid yet (check the clock)".to_owned(),
        ));
    }
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| {
        unusable("holds a private key that does not belong to its certificate".to_owned())
    })?;
    Ok(Arc::new(certified))
}

/// A certificate's notBefore and notAfter (also as text).
fn validity(cert: &CertificateDer<'_>) -> Option<(SystemTime, SystemTime, String)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let to_time = |t: i64| {
        let secs = u64::try_from(t).ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
    };
    let v = parsed.validity();
    Some((
        to_time(v.not_before.timestamp())?,
        to_time(v.not_after.timestamp())?,
        v.not_after.to_string(),
    ))
}

/// What identifies a version of a file: rotation replaces it (new inode, size or time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let ino = 0;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        ino,
    })
}

/// Where the mTLS requests go.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// `https://metadata.google.internal[:port]/computeMetadata/v1/`.
    pub(crate) base: Url,
    /// The detection ping: `https://169.254.169.254/`, or the loopback override.
    pub(crate) ping: Url,
    /// The loopback address `metadata.google.internal` is pinned to, for an override.
    pub(crate) pin: Option<SocketAddr>,
}

/// Where mTLS requests go for `host`, or why `host` cannot be used over mTLS.
pub(crate) fn target(host: &MetadataHost) -> std::result::Result<Target, String> {
    let base = host.base_url();
    let port = base.port();
    let https = |authority: &str, path: &str| {
        Url::parse(&format!("https://{authority}{path}")).map_err(|e| e.to_string())
    };
    let name = base.host_str().unwrap_or_default();
    let is_real =
        port.is_none() && (name == DEFAULT_METADATA_HOST || name == METADATA_IP_NAME.to_string());
    if is_real {
        return Ok(Target {
            base: https(DEFAULT_METADATA_HOST, API_PREFIX)?,
            ping: https(&METADATA_IP_NAME.to_string(), "/")?,
            pin: None,
        });
    }
    let ip = match base.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        _ => {
            return Err(format!(
                "the metadata server host is overridden to {host}, which is not a loopback address; \
                 mTLS verifies the server as {DEFAULT_METADATA_HOST}, so only a local emulator may stand in for it"
            ));
        }
    };
    if !ip.is_loopback() {
        return Err(format!(
            "the metadata server host is overridden to {host}, which is not a loopback address; \
             mTLS verifies the server as {DEFAULT_METADATA_HOST}, so only a local emulator may stand in for it"
        ));
    }
    let addr = SocketAddr::new(ip, port.unwrap_or(443));
    Ok(Target {
        base: https(
            &format!("{DEFAULT_METADATA_HOST}:{}", addr.port()),
            API_PREFIX,
        )?,
        ping: https(&addr.to_string(), "/")?,
        pin: Some(addr),
    })
}

/// Verifies the server certificate against `root.crt` as `metadata.google.internal` (a DNS
/// name was asked for) or `169.254.169.254` (an IP address was: the ping), whatever address the
/// connection went to.
#[derive(Debug)]
struct PinnedNames {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for PinnedNames {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let pinned = match server_name {
            ServerName::IpAddress(_) => ServerName::IpAddress(IpAddr::V4(METADATA_IP_NAME).into()),
            _ => ServerName::DnsName(
                rustls::pki_types::DnsName::try_from(DEFAULT_METADATA_HOST)
                    .map_err(|_| rustls::Error::General("invalid pinned name".into()))?,
            ),
        };
        self.inner
            .verify_server_cert(end_entity, intermediates, &pinned, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Settings shared by every reqwest client a [`MtlsTransport`] builds.
#[derive(Clone, Debug)]
pub(crate) struct ClientSettings {
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

impl ClientSettings {
    /// These limits, and never a proxy: the metadata server is a link-local address that a
    /// proxy cannot reach, and its tokens must not pass through one.
    pub(crate) fn options(&self) -> ClientOptions {
        ClientOptions::new(self.timeout)
            .with_connect_timeout(self.connect_timeout)
            .with_proxy(Proxy::None)
    }
}

struct Loaded {
    stamps: (Option<Stamp>, Option<Stamp>),
    client: reqwest::Client,
}

/// The mTLS side of a client: the files, the target, and a reqwest client rebuilt whenever
/// the guest agent rotates the files, so the next request presents the new certificate.
pub(crate) struct MtlsTransport {
    pub(crate) dir: PathBuf,
    pub(crate) target: Target,
    settings: ClientSettings,
    current: Mutex<Loaded>,
}

impl MtlsTransport {
    /// Loads the files in `dir` and builds the client; every problem is a typed error naming the
    /// file.
    pub(crate) fn load(dir: PathBuf, target: Target, settings: ClientSettings) -> Result<Self> {
        let stamps = (
            stamp(&dir.join(MDS_MTLS_ROOT_FILE)),
            stamp(&dir.join(MDS_MTLS_CLIENT_FILE)),
        );
        let client = build_client(&dir, &target, &settings)?;
        Ok(Self {
            dir,
            target,
            settings,
            current: Mutex::new(Loaded { stamps, client }),
        })
    }

    /// The client for the next request: rebuilt first if either file changed since it was
    /// built. A rotated file that cannot be used (half-written, expired) keeps the previous
    /// client, with a warning: the old certificate is still valid for a while and the next
    /// request looks again.
    pub(crate) fn client(&self) -> reqwest::Client {
        let stamps = (
            stamp(&self.dir.join(MDS_MTLS_ROOT_FILE)),
            stamp(&self.dir.join(MDS_MTLS_CLIENT_FILE)),
        );
        let mut current = match self.current.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if current.stamps != stamps {
            match build_client(&self.dir, &self.target, &self.settings) {
                Ok(client) => {
                    tracing::info!(
                        dir = %self.dir.display(),
                        "metadata server mTLS files changed; using the new client certificate"
                    );
                    *current = Loaded { stamps, client };
                }
                Err(e) => {
                    tracing::warn!(
                        "metadata server mTLS files changed but cannot be used yet; keeping the previous certificate: {e}"
                    );
                    current.stamps = stamps;
                }
            }
        }
        current.client.clone()
    }
}

impl fmt::Debug for MtlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsTransport")
            .field("dir", &self.dir)
            .field("target", &self.target.base.as_str())
            .finish_non_exhaustive()
    }
}

fn build_client(dir: &Path, target: &Target, settings: &ClientSettings) -> Result<reqwest::Client> {
    http_client::build_client(tls_config(dir)?, settings.options(), |builder| {
        let builder = builder.https_only(true);
        match target.pin {
            Some(addr) => builder.resolve(DEFAULT_METADATA_HOST, addr),
            None => builder,
        }
    })
}

/// The TLS client configuration for the files in `dir`: the server verified against `root.crt`
/// by the metadata server's fixed names, `client.key` presented.
pub(crate) fn tls_config(dir: &Path) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = load_roots(&dir.join(MDS_MTLS_ROOT_FILE))?;
    let client_path = dir.join(MDS_MTLS_CLIENT_FILE);
    let certified = load_client(&client_path, &provider, SystemTime::now())?;
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .map_err(|e| {
        file_error(
            &dir.join(MDS_MTLS_ROOT_FILE),
            format!("cannot verify with the metadata server mTLS CA: {e}"),
        )
    })?;
    let tls_error =
        |e: rustls::Error| Error::new(ErrorKind::Setup, "cannot configure TLS").with_source(e);
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedNames { inner }))
        .with_client_cert_resolver(Arc::new(FixedClientCert(certified)));
    Ok(config)
}

/// Presents `certified` whatever the server asks.
#[derive(Debug)]
struct FixedClientCert(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}
