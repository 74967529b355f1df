//! The certificate credential source (X.509 workload identity federation): the workload's
//! certificate and key, named by `certificate_config.json`, authenticate the STS exchange over
//! mutual TLS (TLS 1.3), and the subject token is the certificate chain as a JSON array of
//! base64 DER certificates, leaf first.
//!
//! The files are read again for every exchange, so a certificate rotated on disk is picked up
//! by the next token refresh.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use workload_auth_core::json::Fields;
use workload_auth_core::{Error, ErrorKind, Result, SecretString};

use super::Subject;
use crate::certificate_config::{
    WorkloadCertificate, certificates, default_config_path, load_workload, read_config,
    read_limited,
};
use crate::credential_client::{Http, TlsRoots};
use crate::env::{CERTIFICATE_CONFIG_ENV, EnvSource};

#[derive(Debug)]
pub(crate) struct CertificateSource {
    /// `certificate_config.json`, resolved when the credentials were loaded (or why it could not
    /// be).
    config: std::result::Result<PathBuf, String>,
    trust_chain: Option<PathBuf>,
    roots: TlsRoots,
    timeout: Duration,
}

impl CertificateSource {
    pub(crate) fn parse(cert: &Fields<'_>, env: &EnvSource) -> Result<Self> {
        let use_default = cert
            .opt_bool("use_default_certificate_config")?
            .unwrap_or(false);
        let location = cert.opt_nonempty_str("certificate_config_location")?;
        let config = match (use_default, location) {
            (true, Some(_)) => {
                return Err(cert.error(
                    "`credential_source.certificate` sets both `certificate_config_location` and \
                     `use_default_certificate_config`; set exactly one",
                ));
            }
            (false, None) => {
                return Err(cert.error(
                    "`credential_source.certificate` needs `certificate_config_location` or \
                     `use_default_certificate_config: true`",
                ));
            }
            (false, Some(path)) => Ok(PathBuf::from(path)),
            (true, None) => default_config_path(env),
        };
        Ok(Self {
            config,
            trust_chain: cert
                .opt_nonempty_str("trust_chain_path")?
                .map(PathBuf::from),
            roots: TlsRoots::default(),
            timeout: crate::credential_client::DEFAULT_TIMEOUT,
        })
    }

    /// Sets the roots and timeout of the mTLS client (from the builder).
    pub(crate) fn with_tls(mut self, roots: TlsRoots, timeout: Duration) -> Self {
        self.roots = roots;
        self.timeout = timeout;
        self
    }

    pub(crate) fn describe(&self) -> String {
        match &self.config {
            Ok(path) => format!("certificate (configuration {})", path.display()),
            Err(why) => format!("certificate (no configuration: {why})"),
        }
    }

    /// Loads the certificate and key, and returns the subject token and the mTLS client.
    pub(crate) fn subject(&self) -> Result<Subject> {
        let config_path = self.config.as_ref().map_err(|why| {
            Error::new(
                ErrorKind::InvalidCredentials,
                format!("the certificate configuration cannot be found: {why}"),
            )
            .with_hint(format!(
                "set {CERTIFICATE_CONFIG_ENV} to the path of certificate_config.json"
            ))
        })?;
        let WorkloadCertificate {
            chain,
            key,
            cert_path,
        } = load_workload(config_path)?;
        let mut token_chain = vec![STANDARD.encode(chain[0].as_ref())];
        if let Some(trust_chain) = &self.trust_chain {
            let pem = read_limited(trust_chain, "the trust chain")?;
            let trust = certificates(&pem, trust_chain)?;
            for (i, cert) in trust.iter().enumerate() {
                let encoded = STANDARD.encode(cert.as_ref());
                if encoded == token_chain[0] {
                    if i == 0 {
                        continue;
                    }
                    return Err(Error::new(
                        ErrorKind::InvalidCredentials,
                        "the leaf certificate appears in the trust chain but not first",
                    )
                    .with_endpoint(trust_chain.display().to_string())
                    .with_hint("the leaf certificate must be at the top of the trust chain file"));
                }
                token_chain.push(encoded);
            }
        }
        let token = serde_json::to_string(&token_chain).map_err(|e| {
            Error::new(
                ErrorKind::InvalidCredentials,
                "cannot encode the certificate chain",
            )
            .with_source(e)
        })?;
        let mtls = Http::new(&self.roots, Some((chain.clone(), key)), self.timeout)
            .prepared()
            .map_err(|e| e.with_endpoint(cert_path.display().to_string()))?;
        Ok(Subject {
            token: SecretString::new(token),
            mtls: Some(mtls),
            chain: Some((chain, cert_path)),
        })
    }

    /// The Agent Identity certificate the exchange's tokens are bound to, when the configured
    /// certificate is one (read now; unreadable files are the exchange's error to report).
    pub(crate) fn binding_files(&self) -> Option<crate::agent_identity::CertificateFiles> {
        let config = self.config.as_ref().ok()?;
        let (cert, key) = read_config(config).ok()?;
        let files = crate::agent_identity::CertificateFiles {
            cert,
            key: Some(key),
            origin: format!("certificate configuration {}", config.display()),
        };
        files.load().ok().flatten().map(|_| files)
    }
}
