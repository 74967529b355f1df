//! The workload certificate for mutual TLS to Google APIs ("X.509 to Google APIs"): whether to
//! use one, and which, from `certificate_config.json`.
//!
//! `GOOGLE_API_USE_CLIENT_CERTIFICATE=true` requires one, `false` turns it off, and unset means
//! "use it if a workload certificate is configured". The configuration is
//! `GOOGLE_API_CERTIFICATE_CONFIG`, else gcloud's `certificate_config.json`, holding
//! `{"cert_configs":{"workload":{"cert_path","key_path"}}}`. Certificates rotate: load again at
//! least every ten minutes (what [`ClientCertificate::RELOAD_INTERVAL`] says), and use TLS 1.3.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use workload_auth_core::{Error, ErrorKind, Result};

use crate::certificate_config::{WorkloadCertificate, default_config_path, load_workload};
use crate::env::{CERTIFICATE_CONFIG_ENV, EnvSource};

/// `GOOGLE_API_USE_CLIENT_CERTIFICATE`.
pub const USE_CLIENT_CERTIFICATE_ENV: &str = "GOOGLE_API_USE_CLIENT_CERTIFICATE";

/// A workload certificate chain and its private key, for mutual TLS to Google APIs.
pub struct ClientCertificate {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    config: PathBuf,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("certificates", &self.chain.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// How often a long-lived client should load the certificate again.
    pub const RELOAD_INTERVAL: Duration = Duration::from_secs(600);

    /// Loads the workload certificate `env` asks for: `Ok(None)` when client certificates are
    /// off (or, with `GOOGLE_API_USE_CLIENT_CERTIFICATE` unset, when none is configured).
    pub fn from_env(env: &EnvSource) -> Result<Option<Self>> {
        let wanted = match env.nonempty(USE_CLIENT_CERTIFICATE_ENV) {
            None => None,
            Some(v) if v.trim().eq_ignore_ascii_case("true") => Some(true),
            Some(v) if v.trim().eq_ignore_ascii_case("false") => Some(false),
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("{USE_CLIENT_CERTIFICATE_ENV} must be \"true\" or \"false\""),
                ));
            }
        };
        if wanted == Some(false) {
            return Ok(None);
        }
        let config = default_config_path(env);
        let configured = match &config {
            Ok(path) => path.is_file(),
            Err(_) => false,
        };
        match (wanted, config) {
            (None, _) if !configured => Ok(None),
            (_, Ok(path)) if configured => Self::from_config(&path).map(Some),
            (_, Ok(path)) => Err(Error::new(
                ErrorKind::CredentialsNotFound,
                format!(
                    "{USE_CLIENT_CERTIFICATE_ENV}=true, but there is no certificate configuration"
                ),
            )
            .with_endpoint(path.display().to_string())
            .with_hint(format!(
                "set {CERTIFICATE_CONFIG_ENV} to the path of certificate_config.json"
            ))),
            (_, Err(why)) => Err(Error::new(
                ErrorKind::CredentialsNotFound,
                format!("{USE_CLIENT_CERTIFICATE_ENV}=true, but {why}"),
            )),
        }
    }

    /// Loads the workload certificate named by the `certificate_config.json` at `path`.
    pub fn from_config(path: &Path) -> Result<Self> {
        let WorkloadCertificate { chain, key, .. } = load_workload(path)?;
        Ok(Self {
            chain,
            key,
            config: path.to_owned(),
        })
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The private key.
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The `certificate_config.json` it came from.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// A rustls client configuration (ring provider, TLS 1.3 only) presenting this certificate
    /// and trusting `roots` (the platform's when empty).
    pub fn rustls_config(
        &self,
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<rustls::ClientConfig> {
        mtls_client_config(roots, self.chain.clone(), self.key.clone_key())
    }
}

/// A rustls client configuration (ring provider, TLS 1.3 only) presenting `chain` and `key` and
/// trusting `roots` (the platform's when empty): what [`ClientCertificate::rustls_config`] and
/// the bound certificate's `rustls_config` both give.
pub(crate) fn mtls_client_config(
    roots: impl IntoIterator<Item = CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ClientConfig> {
    let roots: Vec<_> = roots.into_iter().collect();
    let roots = if roots.is_empty() {
        crate::credential_client::TlsRoots::default()
    } else {
        crate::credential_client::TlsRoots::only(roots)
    };
    crate::credential_client::client_config(&roots, Some((chain, key)))
}
