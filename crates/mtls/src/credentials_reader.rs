//! The credentials directory the node agent keeps on GCE and GKE, and the other layouts the same
//! credentials arrive in.
//!
//! `/var/run/secrets/workload-spiffe-credentials` is a symlink that the agent points at a new
//! `workload-spiffe-contents-<timestamp>` directory on every refresh, deleting the old one. A load
//! resolves the symlink once and reads every file from that one directory, so it never mixes two
//! generations; a Kubernetes volume's `..data` symlink (its atomic writer swaps it the same way,
//! with each file a symlink through it) is resolved likewise. If a rotation still races a load
//! (the directory vanishes, the key no longer matches), it tries again a few times.
//!
//! Which files a directory holds decides its [`CredentialLayout`]: the node agent's separate
//! `certificates.pem` and `private_key.pem`, the combined `x509.credential-bundle.private-key.pem`
//! (GKE, read by google-auth 2.61+), the SPIFFE filesystem delivery draft's
//! `credential-bundle.private-key.pem` with `<trust domain>.spiffe-trust-bundle.pem` files (named by
//! `SPIFFE_CREDENTIAL_FOLDER`), or a certificate without its key when the platform keeps the key
//! hidden.

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use workload_auth_core::fs::{
    MAX_JSON_FILE_BYTES, MAX_PEM_FILE_BYTES, MAX_SMALL_FILE_BYTES, is_not_found, read_bounded,
};
use workload_auth_core::{Error, ErrorKind, Result};
use zeroize::Zeroizing;

use crate::bundle::{TrustBundle, TrustBundleSet};
use crate::error::CredentialError;
use crate::source::{ChangeMarker, LoadFuture, SvidSource};
use crate::spiffe_id::TrustDomain;
use crate::store::X509Material;
use crate::svid::X509Svid;

/// Where the node agent writes the credentials on GCE and GKE.
pub const DEFAULT_CREDENTIALS_DIR: &str = "/var/run/secrets/workload-spiffe-credentials";

/// The leaf SVID followed by its intermediates.
pub const CERTIFICATES_FILE: &str = "certificates.pem";
/// The SVID's private key (PKCS#8 or SEC1).
pub const PRIVATE_KEY_FILE: &str = "private_key.pem";
/// Chain and key in one file.
pub const COMBINED_FILE: &str = "x509.credential-bundle.private-key.pem";
/// Roots of the workload's own trust domain.
pub const CA_CERTIFICATES_FILE: &str = "ca_certificates.pem";
/// The SPIFFE bundle map of every trust domain the workload trusts.
pub const TRUST_BUNDLES_FILE: &str = "trust_bundles.json";
/// Configuration errors reported by the node agent.
pub const CONFIG_STATUS_FILE: &str = "config_status";
/// The SPIFFE filesystem delivery's chain and key in one file: the PKCS#8 key first, then the
/// chain (leaf first, no root).
pub const SPIFFE_CREDENTIAL_BUNDLE_FILE: &str = "credential-bundle.private-key.pem";
/// The suffix of the SPIFFE filesystem delivery's trust bundle files, one per trust domain:
/// `<trust domain>.spiffe-trust-bundle.pem`.
pub const SPIFFE_TRUST_BUNDLE_SUFFIX: &str = ".spiffe-trust-bundle.pem";
/// The environment variable naming a SPIFFE filesystem delivery directory
/// ([`CredentialsDir::from_environment`]).
pub const SPIFFE_CREDENTIAL_FOLDER_ENV: &str = "SPIFFE_CREDENTIAL_FOLDER";

/// The symlink a Kubernetes volume's atomic writer swaps; the files beside it point through it.
const KUBERNETES_DATA_LINK: &str = "..data";
/// More trust bundle files than any federation needs is a misconfiguration, not a reason to open
/// thousands of files on every load.
const MAX_TRUST_BUNDLE_FILES: usize = 64;

/// Which files a credentials directory holds the workload's certificate (and key) in.
///
/// [`CredentialsDir`] finds it on every load (see [`X509Material::layout`]) unless told which to
/// expect ([`CredentialsDir::with_layout`]). The names ([`CredentialLayout::name`]) are the ones
/// the CLI prints and accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialLayout {
    /// The GCE/GKE node agent's `certificates.pem` and `private_key.pem`: `gke`.
    NodeAgent,
    /// The combined `x509.credential-bundle.private-key.pem` (chain and key in one file, the key
    /// first or last): `combined`.
    Combined,
    /// SPIFFE filesystem delivery: `credential-bundle.private-key.pem` and
    /// `<trust domain>.spiffe-trust-bundle.pem` files: `spiffe-fs`.
    SpiffeFilesystem,
    /// `certificates.pem` without a key, which the platform keeps hidden: the certificate can be
    /// presented for token binding but no handshake can be made with it: `no-key`.
    CertificateOnly,
}

impl CredentialLayout {
    /// Every layout, in the order a directory is checked for them.
    pub const ALL: [Self; 4] = [
        Self::NodeAgent,
        Self::Combined,
        Self::SpiffeFilesystem,
        Self::CertificateOnly,
    ];

    /// The short name: `gke`, `combined`, `spiffe-fs` or `no-key`.
    pub fn name(self) -> &'static str {
        match self {
            Self::NodeAgent => "gke",
            Self::Combined => "combined",
            Self::SpiffeFilesystem => "spiffe-fs",
            Self::CertificateOnly => "no-key",
        }
    }

    /// The layout of a short name, as [`CredentialLayout::name`] writes it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }

    /// The file the certificate is read from.
    pub fn certificate_file(self) -> &'static str {
        match self {
            Self::NodeAgent | Self::CertificateOnly => CERTIFICATES_FILE,
            Self::Combined => COMBINED_FILE,
            Self::SpiffeFilesystem => SPIFFE_CREDENTIAL_BUNDLE_FILE,
        }
    }

    /// Whether the layout delivers the private key (all but [`CredentialLayout::CertificateOnly`]).
    pub fn has_private_key(self) -> bool {
        self != Self::CertificateOnly
    }
}

impl fmt::Display for CredentialLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const FILES: [&str; 7] = [
    CERTIFICATES_FILE,
    PRIVATE_KEY_FILE,
    COMBINED_FILE,
    SPIFFE_CREDENTIAL_BUNDLE_FILE,
    CA_CERTIFICATES_FILE,
    TRUST_BUNDLES_FILE,
    CONFIG_STATUS_FILE,
];

/// Loads X.509 material from a credentials directory.
///
/// ```no_run
/// use workload_auth_mtls::CredentialsDir;
/// let material = CredentialsDir::default_location().load_blocking()?;
/// println!("I am {}", material.svid().spiffe_id());
/// # Ok::<(), workload_auth_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct CredentialsDir {
    path: PathBuf,
    attempts: u32,
    retry_delay: Duration,
    layout: Option<CredentialLayout>,
}

impl CredentialsDir {
    /// A directory (or symlink to one) at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            attempts: 4,
            retry_delay: Duration::from_millis(50),
            layout: None,
        }
    }

    /// [`DEFAULT_CREDENTIALS_DIR`].
    pub fn default_location() -> Self {
        Self::new(DEFAULT_CREDENTIALS_DIR)
    }

    /// A SPIFFE filesystem delivery directory at `path`: it must hold
    /// `credential-bundle.private-key.pem` (see [`CredentialLayout::SpiffeFilesystem`]).
    pub fn spiffe_credential_folder(path: impl Into<PathBuf>) -> Self {
        Self::new(path).with_layout(CredentialLayout::SpiffeFilesystem)
    }

    /// The directory `SPIFFE_CREDENTIAL_FOLDER` names, as a SPIFFE filesystem delivery directory,
    /// when the variable is set and not empty; otherwise [`DEFAULT_CREDENTIALS_DIR`], whatever its
    /// layout.
    pub fn from_environment() -> Self {
        match std::env::var_os(SPIFFE_CREDENTIAL_FOLDER_ENV) {
            Some(folder) if !folder.is_empty() => Self::spiffe_credential_folder(folder),
            _ => Self::default_location(),
        }
    }

    /// Expects `layout` rather than finding it: a directory without its files is an error naming
    /// the file missing, even if it holds another layout.
    #[must_use]
    pub fn with_layout(mut self, layout: CredentialLayout) -> Self {
        self.layout = Some(layout);
        self
    }

    /// The layout expected, if one was set with [`CredentialsDir::with_layout`].
    pub fn expected_layout(&self) -> Option<CredentialLayout> {
        self.layout
    }

    /// How often to try when a rotation races a load (default 4), and how long to wait between
    /// tries (default 50 ms).
    #[must_use]
    pub fn with_retries(mut self, attempts: u32, delay: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.retry_delay = delay;
        self
    }

    /// The path given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the material, blocking the thread on file I/O (a few small files).
    pub fn load_blocking(&self) -> Result<X509Material> {
        let mut attempt = 1;
        loop {
            let result = self.load_once();
            match result {
                Err(e) if attempt < self.attempts && e.is_transient() => {
                    tracing::debug!(error = %e, attempt, "credentials changed during load; retrying");
                    attempt += 1;
                    std::thread::sleep(self.retry_delay);
                }
                other => return other,
            }
        }
    }

    fn load_once(&self) -> Result<X509Material> {
        let dir = resolve(&self.path)?;
        let before = stat_marker(&dir);
        let result =
            read_material(&dir, self.layout).map(|m| m.with_origin(dir.display().to_string()));
        let raced = resolve(&self.path).ok().as_ref() != Some(&dir) || stat_marker(&dir) != before;
        match result {
            // Files read from a directory that changed under us may be torn even if they parse.
            Ok(_) if raced => Err(Error::new(
                ErrorKind::InvalidCredentials,
                "credentials changed while they were read",
            )
            .with_endpoint(dir.display().to_string())
            .with_retry(workload_auth_core::Retry::Transient)),
            Ok(material) => Ok(material),
            Err(e) if raced || is_race_symptom(&e) => {
                Err(e.with_retry(workload_auth_core::Retry::Transient))
            }
            Err(e) => Err(e),
        }
    }
}

impl SvidSource for CredentialsDir {
    fn load(&self) -> LoadFuture<'_> {
        let this = self.clone();
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || this.load_blocking()).await {
                Ok(result) => result,
                Err(e) => {
                    Err(Error::new(ErrorKind::Io, "credentials loader task failed").with_source(e))
                }
            }
        })
    }

    fn change_marker(&self) -> Option<ChangeMarker> {
        let mut h = DefaultHasher::new();
        match resolve(&self.path) {
            Ok(dir) => {
                dir.hash(&mut h);
                stat_marker(&dir).hash(&mut h);
            }
            Err(e) => e.to_string().hash(&mut h),
        }
        Some(ChangeMarker(h.finish()))
    }

    fn describe(&self) -> String {
        format!("credentials directory {}", self.path.display())
    }
}

/// A mismatched key or a vanished file is what a load racing a rotation looks like.
fn is_race_symptom(e: &Error) -> bool {
    if e.kind() == ErrorKind::Io {
        return true;
    }
    matches!(CredentialError::find(e), Some(CredentialError::KeyMismatch))
}

/// The directory to read one generation from: `path` with symlinks resolved, and through a
/// Kubernetes `..data` link when there is one (the files beside it are symlinks through it, so
/// reading them one by one could mix two generations).
fn resolve(path: &Path) -> Result<PathBuf> {
    let dir = canonical(path)?;
    match std::fs::canonicalize(dir.join(KUBERNETES_DATA_LINK)) {
        Ok(data) if data.is_dir() => Ok(data),
        _ => Ok(dir),
    }
}

fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| {
        let error = Error::new(ErrorKind::Io, "cannot open the credentials directory")
            .with_endpoint(path.display().to_string());
        if e.kind() == io::ErrorKind::NotFound {
            error.with_hint(
                "is managed workload identity enabled for this VM or pod? the node agent creates \
                 this directory",
            )
        } else {
            error.with_source(e)
        }
    })
}

/// Inode, size and modification time of each file (and of the directory, whose times change
/// when a trust bundle file is added, removed or renamed over), hashed.
fn stat_marker(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut h = DefaultHasher::new();
    let mut stat = |path: &Path| match std::fs::metadata(path) {
        Ok(m) => (m.ino(), m.len(), m.mtime(), m.mtime_nsec()).hash(&mut h),
        Err(e) => e.kind().hash(&mut h),
    };
    stat(dir);
    for name in FILES {
        stat(&dir.join(name));
    }
    if let Ok(files) = trust_bundle_files(dir) {
        for (_, path) in files {
            stat(&path);
        }
    }
    h.finish()
}

/// The `<trust domain>.spiffe-trust-bundle.pem` files of `dir`, sorted by trust domain; hidden
/// (dot) files are left out. A file whose name is not a valid trust domain is an error naming it.
fn trust_bundle_files(dir: &Path) -> Result<Vec<(TrustDomain, PathBuf)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::new(ErrorKind::Io, "cannot list the credentials directory")
            .with_endpoint(dir.display().to_string())
            .with_source(e)
    })?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        // Hidden names are a writer's temporary files or a Kubernetes volume's own entries.
        let Some(domain) = name
            .to_str()
            .filter(|n| !n.starts_with('.'))
            .and_then(|n| n.strip_suffix(SPIFFE_TRUST_BUNDLE_SUFFIX))
        else {
            continue;
        };
        let path = entry.path();
        let td = TrustDomain::new(domain).map_err(|reason| {
            CredentialError::InvalidTrustDomain {
                name: domain.to_owned(),
                reason,
            }
            .at(path.display().to_string())
        })?;
        if files.len() == MAX_TRUST_BUNDLE_FILES {
            return Err(Error::new(
                ErrorKind::InvalidCredentials,
                format!("more than {MAX_TRUST_BUNDLE_FILES} trust bundle files"),
            )
            .with_endpoint(dir.display().to_string()));
        }
        files.push((td, path));
    }
    files.sort();
    Ok(files)
}

/// Reads `name` through the bounded reader; `None` when it does not exist. The bytes are zeroed
/// when dropped (one of these files is the private key).
fn read_optional(dir: &Path, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
    let limit = match name {
        CONFIG_STATUS_FILE => MAX_SMALL_FILE_BYTES,
        TRUST_BUNDLES_FILE => MAX_JSON_FILE_BYTES,
        _ => MAX_PEM_FILE_BYTES,
    };
    match read_bounded(&dir.join(name), limit, name) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_material(dir: &Path, expected: Option<CredentialLayout>) -> Result<X509Material> {
    let config_status = read_optional(dir, CONFIG_STATUS_FILE)?
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|s| !s.is_empty());
    let Some(layout) = expected.or_else(|| detect_layout(dir)) else {
        let mut error = Error::new(
            ErrorKind::CredentialsNotFound,
            format!(
                "the credentials directory has no {CERTIFICATES_FILE} (nor {COMBINED_FILE} nor \
                 {SPIFFE_CREDENTIAL_BUNDLE_FILE})"
            ),
        )
        .with_endpoint(dir.display().to_string());
        if let Some(status) = &config_status {
            error = error.with_hint(format!("the node agent reports: {status}"));
        }
        return Err(error);
    };
    let svid = read_svid(dir, layout)?;
    let bundles = read_bundles(dir, svid.spiffe_id().trust_domain())?;
    Ok(X509Material::new(svid, bundles)
        .with_config_status(config_status)
        .with_warnings(key_file_warnings(dir))
        .with_layout(layout))
}

/// The first layout whose files are all present, in [`CredentialLayout::ALL`] order.
fn detect_layout(dir: &Path) -> Option<CredentialLayout> {
    let has = |name: &str| dir.join(name).exists();
    CredentialLayout::ALL
        .into_iter()
        .find(|layout| match layout {
            CredentialLayout::NodeAgent => has(CERTIFICATES_FILE) && has(PRIVATE_KEY_FILE),
            other => has(other.certificate_file()),
        })
}

/// Reads `name`, which `layout` needs: its absence is an error naming it.
fn read_required(dir: &Path, name: &str, layout: CredentialLayout) -> Result<Zeroizing<Vec<u8>>> {
    read_optional(dir, name)?.ok_or_else(|| {
        Error::new(
            ErrorKind::CredentialsNotFound,
            format!("the credentials directory has no {name} (layout {layout})"),
        )
        .with_endpoint(dir.join(name).display().to_string())
    })
}

fn read_svid(dir: &Path, layout: CredentialLayout) -> Result<X509Svid> {
    let at = |name: &str| dir.join(name).display().to_string();
    let file = layout.certificate_file();
    let text = read_required(dir, file, layout)?;
    match layout {
        CredentialLayout::NodeAgent => {
            let key = read_required(dir, PRIVATE_KEY_FILE, layout)?;
            X509Svid::from_pem(&text, &key).map_err(|e| {
                let place = match e {
                    CredentialError::NoPrivateKey
                    | CredentialError::UnsupportedPrivateKey(_)
                    | CredentialError::KeyTypeMismatch { .. } => at(PRIVATE_KEY_FILE),
                    CredentialError::KeyMismatch => {
                        format!("{} and {PRIVATE_KEY_FILE}", at(CERTIFICATES_FILE))
                    }
                    _ => at(CERTIFICATES_FILE),
                };
                e.at(place)
            })
        }
        CredentialLayout::Combined | CredentialLayout::SpiffeFilesystem => {
            X509Svid::from_combined_pem(&text).map_err(|e| e.at(at(file)))
        }
        CredentialLayout::CertificateOnly => {
            X509Svid::certificate_only_pem(&text).map_err(|e| e.at(at(file)))
        }
    }
}

/// Every trust bundle the directory holds: `trust_bundles.json`, `ca_certificates.pem` (roots of
/// the workload's own trust domain) and `<trust domain>.spiffe-trust-bundle.pem` files, merged
/// per trust domain. None at all is an error: no peer could be verified.
fn read_bundles(dir: &Path, local_domain: TrustDomain) -> Result<TrustBundleSet> {
    let at = |name: &str| dir.join(name).display().to_string();
    let mut bundles = match read_optional(dir, TRUST_BUNDLES_FILE)? {
        Some(json) => {
            TrustBundleSet::from_bundle_map_json(&json).map_err(|e| e.at(at(TRUST_BUNDLES_FILE)))?
        }
        None => TrustBundleSet::new(),
    };
    if let Some(pem) = read_optional(dir, CA_CERTIFICATES_FILE)? {
        let local = TrustBundle::from_pem(local_domain, &pem)
            .map_err(|e| e.at(at(CA_CERTIFICATES_FILE)))?;
        bundles
            .add(local)
            .map_err(|e| e.at(at(CA_CERTIFICATES_FILE)))?;
    }
    for (td, path) in trust_bundle_files(dir)? {
        let place = path.display().to_string();
        let pem = read_bounded(&path, MAX_PEM_FILE_BYTES, &place)?;
        let bundle = TrustBundle::from_pem(td, &pem)
            .and_then(check_bundle_domain)
            .map_err(|e| e.at(place.clone()))?;
        bundles.add(bundle).map_err(|e| e.at(place))?;
    }
    if bundles.is_empty() {
        return Err(CredentialError::NoTrustBundles.at(format!(
            "{} (none of {CA_CERTIFICATES_FILE}, {TRUST_BUNDLES_FILE} or \
             *{SPIFFE_TRUST_BUNDLE_SUFFIX})",
            dir.display()
        )));
    }
    Ok(bundles)
}

/// A bundle file is named for its trust domain; a root that names another one (by the SPIFFE ID
/// a signing certificate may carry) means the file was filled from the wrong domain, and trusting
/// it would let that domain's CA vouch for this one's workloads.
fn check_bundle_domain(bundle: TrustBundle) -> Result<TrustBundle, CredentialError> {
    let file_domain = bundle.trust_domain().name();
    for root in bundle.roots() {
        let Ok(cert) = crate::cert::parse(root, crate::error::ChainPosition::Intermediate) else {
            continue;
        };
        if let Some(other) = crate::cert::uri_trust_domains(&cert)
            .into_iter()
            .find(|td| td != file_domain)
        {
            return Err(CredentialError::TrustDomainMismatch {
                file_domain: file_domain.to_owned(),
                certificate_domain: other,
            });
        }
    }
    Ok(bundle)
}

/// A warning for each private key file of `dir` that group or others may read or write (mode &
/// 0o077): anyone who can read it can act as this workload until the certificate expires.
fn key_file_warnings(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    [
        PRIVATE_KEY_FILE,
        COMBINED_FILE,
        SPIFFE_CREDENTIAL_BUNDLE_FILE,
    ]
    .into_iter()
    .filter_map(|name| {
        let path = dir.join(name);
        let mode = std::fs::metadata(&path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| {
            format!(
                "the private key file {} is accessible to group or others (mode {mode:04o}); \
                     only its owner should be able to read it (chmod 600)",
                path.display()
            )
        })
    })
    .collect()
}

/// A shared credentials directory source, as the watcher wants it.
impl From<CredentialsDir> for Arc<dyn SvidSource> {
    fn from(dir: CredentialsDir) -> Self {
        Arc::new(dir)
    }
}
