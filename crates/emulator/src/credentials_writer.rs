//! Writes a credentials directory exactly as the GCE/GKE node agent does, in each layout the
//! credentials are delivered in ([`Layout`]).
//!
//! Each write creates `workload-spiffe-contents-<RFC3339 time>` (mode 0755) beside the link, fills
//! it (files mode 0644), points a temporary symlink at it, renames that symlink over
//! `workload-spiffe-credentials` (an atomic swap) and deletes the directory the link pointed to
//! before. A reader that resolves the link once always sees one complete generation.
//!
//! [`CredentialsDirWriter::kubernetes`] writes the way a Kubernetes volume's atomic writer does
//! instead: the directory itself stays, each generation is a `..<time>` directory inside it, a
//! `..data` symlink is swapped to it, and each file is a symlink through `..data`.
//!
//! ```
//! # fn main() -> workload_auth_core::Result<()> {
//! use workload_auth_emulator::ca::TrustDomainCa;
//! use workload_auth_emulator::credentials_writer::{CredentialsContents, CredentialsDirWriter};
//! let parent = std::env::temp_dir().join(format!("creds-doc-{}", std::process::id()));
//! let ca = TrustDomainCa::new("example.org")?;
//! let writer = CredentialsDirWriter::new(&parent);
//! writer.write(&CredentialsContents::new(&ca.issue("spiffe://example.org/w")?, &ca, []))?;
//! assert!(writer.link_path().join("certificates.pem").exists());
//! # std::fs::remove_dir_all(&parent).ok();
//! # Ok(()) }
//! ```

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;
use workload_auth_core::{Error, ErrorKind, Result, SecretString};

use crate::ca::{IssuedSvid, TrustDomainCa, bundle_map_json};

/// The name of the symlink the node agent swaps.
pub const LINK_NAME: &str = "workload-spiffe-credentials";
/// The prefix of each generation's directory.
pub const CONTENTS_PREFIX: &str = "workload-spiffe-contents-";

/// The SPIFFE filesystem delivery's chain-and-key file.
pub const SPIFFE_CREDENTIAL_BUNDLE_FILE: &str = "credential-bundle.private-key.pem";
/// The suffix of the SPIFFE filesystem delivery's per-trust-domain bundle files.
pub const SPIFFE_TRUST_BUNDLE_SUFFIX: &str = ".spiffe-trust-bundle.pem";

/// Which files a generation holds, as each platform delivers them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layout {
    /// What the GCE/GKE node agent writes: `certificates.pem`, `private_key.pem`, the combined
    /// `x509.credential-bundle.private-key.pem`, `ca_certificates.pem`, `trust_bundles.json`,
    /// `config_status`.
    #[default]
    Gke,
    /// Only the combined `x509.credential-bundle.private-key.pem` (chain, then key) for the SVID,
    /// with `ca_certificates.pem`, `trust_bundles.json` and `config_status`.
    Combined,
    /// SPIFFE filesystem delivery: `credential-bundle.private-key.pem` (PKCS#8 key first, then
    /// the chain without the root) and one `<trust domain>.spiffe-trust-bundle.pem` per trust
    /// domain.
    SpiffeFs,
    /// The platform keeps the key hidden: `certificates.pem` without any key, with
    /// `ca_certificates.pem`, `trust_bundles.json` and `config_status`.
    NoKey,
}

impl Layout {
    /// Every layout.
    pub const ALL: [Self; 4] = [Self::Gke, Self::Combined, Self::SpiffeFs, Self::NoKey];

    /// The name the CLI takes (`--layout`): `gke`, `combined`, `spiffe-fs`, `no-key`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gke => "gke",
            Self::Combined => "combined",
            Self::SpiffeFs => "spiffe-fs",
            Self::NoKey => "no-key",
        }
    }

    /// The layout named `name` (see [`Layout::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The files of one generation. `None` leaves a file out (to test a source without it).
#[derive(Clone)]
pub struct CredentialsContents {
    /// `certificates.pem`: leaf then intermediates.
    pub certificates_pem: Option<String>,
    /// `private_key.pem`.
    pub private_key_pem: Option<SecretString>,
    /// `x509.credential-bundle.private-key.pem`: chain and key in one file.
    pub combined_pem: Option<SecretString>,
    /// `ca_certificates.pem`: roots of the local trust domain.
    pub ca_certificates_pem: Option<String>,
    /// `trust_bundles.json`: the SPIFFE bundle map.
    pub trust_bundles_json: Option<String>,
    /// `config_status`.
    pub config_status: Option<String>,
    /// `credential-bundle.private-key.pem` (SPIFFE filesystem delivery): key, then chain.
    pub spiffe_credential_bundle_pem: Option<SecretString>,
    /// `<trust domain>.spiffe-trust-bundle.pem` files: (trust domain, root certificates PEM).
    pub spiffe_trust_bundles: Vec<(String, String)>,
}

impl CredentialsContents {
    /// What the node agent writes for `svid` issued by `local`, trusting `local` and `federated`.
    pub fn new<'a>(
        svid: &IssuedSvid,
        local: &'a TrustDomainCa,
        federated: impl IntoIterator<Item = &'a TrustDomainCa>,
    ) -> Self {
        let mut domains: Vec<&TrustDomainCa> = vec![local];
        domains.extend(federated);
        let combined = format!("{}{}", svid.chain_pem(), svid.private_key_pem().expose());
        Self {
            certificates_pem: Some(svid.chain_pem().to_owned()),
            private_key_pem: Some(svid.private_key_pem().clone()),
            combined_pem: Some(SecretString::new(combined)),
            ca_certificates_pem: Some(local.root_pem().to_owned()),
            trust_bundles_json: Some(bundle_map_json(domains)),
            config_status: Some(r#"{"partnerMetadataConfigsErrors":{}}"#.to_owned()),
            spiffe_credential_bundle_pem: None,
            spiffe_trust_bundles: Vec::new(),
        }
    }

    /// What a platform delivering `layout` writes for `svid` issued by `local`, trusting `local`
    /// and `federated`.
    pub fn with_layout<'a>(
        layout: Layout,
        svid: &IssuedSvid,
        local: &'a TrustDomainCa,
        federated: impl IntoIterator<Item = &'a TrustDomainCa>,
    ) -> Self {
        let federated: Vec<&TrustDomainCa> = federated.into_iter().collect();
        let mut contents = Self::new(svid, local, federated.iter().copied());
        match layout {
            Layout::Gke => {}
            Layout::Combined => {
                contents.certificates_pem = None;
                contents.private_key_pem = None;
            }
            Layout::NoKey => {
                contents.private_key_pem = None;
                contents.combined_pem = None;
            }
            Layout::SpiffeFs => {
                let key_first = format!("{}{}", svid.private_key_pem().expose(), svid.chain_pem());
                contents = Self {
                    certificates_pem: None,
                    private_key_pem: None,
                    combined_pem: None,
                    ca_certificates_pem: None,
                    trust_bundles_json: None,
                    config_status: None,
                    spiffe_credential_bundle_pem: Some(SecretString::new(key_first)),
                    spiffe_trust_bundles: std::iter::once(local)
                        .chain(federated)
                        .map(|ca| (ca.trust_domain().to_owned(), ca.root_pem().to_owned()))
                        .collect(),
                };
            }
        }
        contents
    }

    /// Every file of the generation: (file name, contents).
    fn all_files(&self) -> Vec<(String, &str)> {
        let mut files: Vec<(String, &str)> = self
            .files()
            .into_iter()
            .filter_map(|(name, content)| Some((name.to_owned(), content?)))
            .collect();
        if let Some(bundle) = &self.spiffe_credential_bundle_pem {
            files.push((SPIFFE_CREDENTIAL_BUNDLE_FILE.to_owned(), bundle.expose()));
        }
        for (td, pem) in &self.spiffe_trust_bundles {
            files.push((format!("{td}{SPIFFE_TRUST_BUNDLE_SUFFIX}"), pem.as_str()));
        }
        files
    }

    fn files(&self) -> [(&'static str, Option<&str>); 6] {
        [
            ("certificates.pem", self.certificates_pem.as_deref()),
            (
                "private_key.pem",
                self.private_key_pem.as_ref().map(|s| s.expose()),
            ),
            (
                "x509.credential-bundle.private-key.pem",
                self.combined_pem.as_ref().map(|s| s.expose()),
            ),
            ("ca_certificates.pem", self.ca_certificates_pem.as_deref()),
            ("trust_bundles.json", self.trust_bundles_json.as_deref()),
            ("config_status", self.config_status.as_deref()),
        ]
    }
}

impl fmt::Debug for CredentialsContents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present: Vec<String> = self.all_files().into_iter().map(|(n, _)| n).collect();
        f.debug_struct("CredentialsContents")
            .field("files", &present)
            .finish()
    }
}

/// Writes generations of credentials under a parent directory.
#[derive(Clone, Debug)]
pub struct CredentialsDirWriter {
    parent: PathBuf,
    kubernetes: bool,
}

fn io_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("credentials writer: {what}"))
        .with_endpoint(path.display().to_string())
        .with_source(e)
}

impl CredentialsDirWriter {
    /// A writer that keeps `parent/workload-spiffe-credentials` (the parent is created if needed).
    pub fn new(parent: impl Into<PathBuf>) -> Self {
        Self {
            parent: parent.into(),
            kubernetes: false,
        }
    }

    /// A writer that keeps `dir` itself as a Kubernetes volume's atomic writer does:
    /// `dir/..<time>/` generations, a `dir/..data` symlink swapped to the newest, and each file
    /// `dir/<name>` a symlink to `..data/<name>`. Readers open [`CredentialsDirWriter::link_path`],
    /// which is `dir`.
    pub fn kubernetes(dir: impl Into<PathBuf>) -> Self {
        Self {
            parent: dir.into(),
            kubernetes: true,
        }
    }

    /// The path readers open: `parent/workload-spiffe-credentials` (the directory itself for a
    /// [`CredentialsDirWriter::kubernetes`] writer).
    pub fn link_path(&self) -> PathBuf {
        if self.kubernetes {
            self.parent.clone()
        } else {
            self.parent.join(LINK_NAME)
        }
    }

    fn swapped_link(&self) -> PathBuf {
        if self.kubernetes {
            self.parent.join("..data")
        } else {
            self.link_path()
        }
    }

    /// The directory the link points at now, if any.
    pub fn current_dir(&self) -> Option<PathBuf> {
        fs::read_link(self.swapped_link())
            .ok()
            .map(|target| self.parent.join(target))
    }

    /// Writes a new generation and swaps the link to it; returns the new directory.
    pub fn write(&self, contents: &CredentialsContents) -> Result<PathBuf> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.parent)
            .map_err(|e| io_error("cannot create the parent directory", &self.parent, e))?;

        let (name, dir) = self.new_generation_dir()?;
        let files = contents.all_files();
        for (file, content) in &files {
            let path = dir.join(file);
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
                .map_err(|e| io_error("cannot create a file", &path, e))?;
            f.write_all(content.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| io_error("cannot write a file", &path, e))?;
            // The umask may have narrowed the mode; the agent's files are world-readable.
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
                .map_err(|e| io_error("cannot set file mode", &path, e))?;
        }

        let old = self.current_dir();
        let link = self.swapped_link();
        swap_symlink(&name, &link)?;
        if self.kubernetes {
            // Each file is a symlink through `..data`; made once and left in place (a file a
            // later generation lacks dangles, as it does on Kubernetes).
            for (file, _) in &files {
                let path = self.parent.join(file);
                if fs::symlink_metadata(&path).is_err() {
                    std::os::unix::fs::symlink(format!("..data/{file}"), &path)
                        .map_err(|e| io_error("cannot create a file symlink", &path, e))?;
                }
            }
        }
        if let Some(old) = old
            && old != dir
        {
            fs::remove_dir_all(&old)
                .map_err(|e| io_error("cannot remove the old directory", &old, e))?;
        }
        Ok(dir)
    }

    fn new_generation_dir(&self) -> Result<(String, PathBuf)> {
        let now = SystemTime::now();
        let prefix = if self.kubernetes {
            ".."
        } else {
            CONTENTS_PREFIX
        };
        let mut name = format!("{prefix}{}", rfc3339(now, false));
        if self.parent.join(&name).exists() {
            // Two generations within one second: keep the names distinct with a fraction.
            name = format!("{prefix}{}", rfc3339(now, true));
        }
        let dir = self.parent.join(&name);
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&dir)
            .map_err(|e| io_error("cannot create the generation directory", &dir, e))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| io_error("cannot set directory mode", &dir, e))?;
        Ok((name, dir))
    }

    /// Writes a generation made by `make` now and then every `interval` on the current tokio
    /// runtime, until the returned handle is dropped. Failures are logged and counted.
    pub fn rotate_every(
        self,
        interval: Duration,
        make: impl Fn() -> Result<CredentialsContents> + Send + Sync + 'static,
    ) -> Result<Rotation> {
        let handle = tokio::runtime::Handle::try_current().map_err(|e| {
            Error::new(ErrorKind::InvalidArgument, "rotation needs a tokio runtime").with_source(e)
        })?;
        let counters = Arc::new(Counters::default());
        let task_counters = counters.clone();
        let writer = self.clone();
        let task = handle.spawn(async move {
            loop {
                let result = make().and_then(|contents| writer.write(&contents));
                match result {
                    Ok(_) => task_counters
                        .written
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                    Err(e) => {
                        tracing::warn!(error = %e, "credentials rotation failed");
                        task_counters
                            .failed
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    }
                };
                tokio::time::sleep(interval).await;
            }
        });
        Ok(Rotation {
            task,
            counters,
            writer: self,
        })
    }
}

/// Points `link` at `target` atomically: a temporary symlink renamed over it.
fn swap_symlink(target: &str, link: &Path) -> Result<()> {
    let mut tmp_name = link.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp_link = PathBuf::from(tmp_name);
    let _ = fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(target, &tmp_link)
        .map_err(|e| io_error("cannot create the temporary symlink", &tmp_link, e))?;
    fs::rename(&tmp_link, link).map_err(|e| io_error("cannot swap the symlink", link, e))
}

#[derive(Debug, Default)]
struct Counters {
    written: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

/// A running timed rotation; dropping it stops the timer.
#[derive(Debug)]
pub struct Rotation {
    task: JoinHandle<()>,
    counters: Arc<Counters>,
    writer: CredentialsDirWriter,
}

impl Rotation {
    /// Generations written so far.
    pub fn written(&self) -> u64 {
        self.counters
            .written
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Failed attempts so far.
    pub fn failed(&self) -> u64 {
        self.counters
            .failed
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The writer.
    pub fn writer(&self) -> &CredentialsDirWriter {
        &self.writer
    }
}

impl Drop for Rotation {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (with nanoseconds when `fraction`), in UTC. Times before the epoch
/// are written as the epoch, times past year 9999 as its last second.
pub(crate) fn rfc3339(t: SystemTime, fraction: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let at = i64::try_from(d.as_secs())
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|at| at.replace_nanosecond(d.subsec_nanos()).ok())
        .unwrap_or_else(|| {
            time::PrimitiveDateTime::MAX
                .assume_utc()
                .replace_nanosecond(0)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        });
    let written = if fraction {
        at.format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
        ))
    } else {
        at.format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
    };
    written.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH, false), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199) + Duration::from_nanos(5);
        assert_eq!(rfc3339(t, false), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(t, true), "2024-02-29T23:59:59.000000005Z");
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 2);
        assert_eq!(rfc3339(far, false), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn writes_like_the_node_agent_and_swaps_generations() {
        let parent = std::env::temp_dir().join(format!(
            "wa-creds-writer-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let ca = TrustDomainCa::new("td.example").unwrap();
        let writer = CredentialsDirWriter::new(&parent);
        let first = writer
            .write(&CredentialsContents::new(
                &ca.issue("spiffe://td.example/a").unwrap(),
                &ca,
                [],
            ))
            .unwrap();
        let name = first.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(CONTENTS_PREFIX), "{name}");
        assert!(
            fs::symlink_metadata(writer.link_path())
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&first), 0o755);
        assert_eq!(mode(&first.join("certificates.pem")), 0o644);
        assert_eq!(mode(&first.join("private_key.pem")), 0o644);

        let second = writer
            .write(&CredentialsContents::new(
                &ca.issue("spiffe://td.example/b").unwrap(),
                &ca,
                [],
            ))
            .unwrap();
        assert_ne!(first, second);
        assert!(!first.exists(), "the old generation is removed");
        assert_eq!(
            fs::canonicalize(writer.link_path()).unwrap(),
            fs::canonicalize(&second).unwrap()
        );
        let leftovers: Vec<_> = fs::read_dir(&parent)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}"); // the link and one directory
        fs::remove_dir_all(&parent).unwrap();
    }
}
