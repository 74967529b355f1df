//! The credentials directory the node agent keeps on GCE and GKE.
//!
//! `/var/run/secrets/workload-spiffe-credentials` is a symlink that the agent points at a new
//! `workload-spiffe-contents-<timestamp>` directory on every refresh, deleting the old one. A load
//! resolves the symlink once and reads every file from that one directory, so it never mixes two
//! generations; if a rotation still races it (the directory vanishes, the key no longer matches),
//! it tries again a few times.

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

const FILES: [&str; 6] = [
    CERTIFICATES_FILE,
    PRIVATE_KEY_FILE,
    COMBINED_FILE,
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
}

impl CredentialsDir {
    /// A directory (or symlink to one) at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            attempts: 4,
            retry_delay: Duration::from_millis(50),
        }
    }

    /// [`DEFAULT_CREDENTIALS_DIR`].
    pub fn default_location() -> Self {
        Self::new(DEFAULT_CREDENTIALS_DIR)
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
        let result = read_material(&dir).map(|m| m.with_origin(dir.display().to_string()));
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
        match std::fs::canonicalize(&self.path) {
            Ok(dir) => {
                dir.hash(&mut h);
                stat_marker(&dir).hash(&mut h);
            }
            Err(e) => e.kind().hash(&mut h),
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

fn resolve(path: &Path) -> Result<PathBuf> {
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

/// Inode, size and modification time of each file, hashed.
fn stat_marker(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut h = DefaultHasher::new();
    for name in FILES {
        match std::fs::metadata(dir.join(name)) {
            Ok(m) => (m.ino(), m.len(), m.mtime(), m.mtime_nsec()).hash(&mut h),
            Err(e) => e.kind().hash(&mut h),
        }
    }
    h.finish()
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

fn read_material(dir: &Path) -> Result<X509Material> {
    let at = |name: &str| dir.join(name).display().to_string();
    let config_status = read_optional(dir, CONFIG_STATUS_FILE)?
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|s| !s.is_empty());

    let certs = read_optional(dir, CERTIFICATES_FILE)?;
    let key = read_optional(dir, PRIVATE_KEY_FILE)?;
    let svid = match (certs, key) {
        (Some(certs), Some(key)) => X509Svid::from_pem(&certs, &key).map_err(|e| {
            let place = match e {
                CredentialError::NoPrivateKey | CredentialError::UnsupportedPrivateKey(_) => {
                    at(PRIVATE_KEY_FILE)
                }
                CredentialError::KeyMismatch => {
                    format!("{} and {PRIVATE_KEY_FILE}", at(CERTIFICATES_FILE))
                }
                _ => at(CERTIFICATES_FILE),
            };
            e.at(place)
        })?,
        (certs, _) => match read_optional(dir, COMBINED_FILE)? {
            Some(combined) => {
                X509Svid::from_combined_pem(&combined).map_err(|e| e.at(at(COMBINED_FILE)))?
            }
            None => {
                let missing = if certs.is_some() {
                    PRIVATE_KEY_FILE
                } else {
                    CERTIFICATES_FILE
                };
                let mut error = Error::new(
                    ErrorKind::CredentialsNotFound,
                    format!("the credentials directory has no {missing} (nor {COMBINED_FILE})"),
                )
                .with_endpoint(dir.display().to_string());
                if let Some(status) = &config_status {
                    error = error.with_hint(format!("the node agent reports: {status}"));
                }
                return Err(error);
            }
        },
    };

    let local_domain = svid.spiffe_id().trust_domain();
    let mut bundles = match read_optional(dir, TRUST_BUNDLES_FILE)? {
        Some(json) => {
            TrustBundleSet::from_bundle_map_json(&json).map_err(|e| e.at(at(TRUST_BUNDLES_FILE)))?
        }
        None => TrustBundleSet::new(),
    };
    let have_map = !bundles.is_empty();
    if let Some(pem) = read_optional(dir, CA_CERTIFICATES_FILE)? {
        let local = TrustBundle::from_pem(local_domain, &pem)
            .map_err(|e| e.at(at(CA_CERTIFICATES_FILE)))?;
        bundles
            .add(local)
            .map_err(|e| e.at(at(CA_CERTIFICATES_FILE)))?;
    } else if !have_map {
        return Err(CredentialError::NoTrustBundles.at(format!(
            "{} (neither {CA_CERTIFICATES_FILE} nor {TRUST_BUNDLES_FILE})",
            dir.display()
        )));
    }

    Ok(X509Material::new(svid, bundles)
        .with_config_status(config_status)
        .with_warnings(key_file_warnings(dir)))
}

/// A warning for each private key file of `dir` that group or others may read or write (mode &
/// 0o077): anyone who can read it can act as this workload until the certificate expires.
fn key_file_warnings(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    [PRIVATE_KEY_FILE, COMBINED_FILE]
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
