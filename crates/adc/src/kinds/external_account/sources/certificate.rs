//! The certificate credential source (X.509 workload identity federation): the workload's
//! certificate and key, named by `certificate_config.json`, authenticate the STS exchange over
//! mutual TLS (TLS 1.3), and the subject token is the certificate chain as a JSON array of
//! base64 DER certificates, leaf first.
//!
//! The files are read again for every exchange, so a certificate rotated on disk is picked up
//! by the next token refresh.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use workload_auth_core::fs::{MAX_PEM_FILE_BYTES, read_bounded};
use workload_auth_core::json::{Fields, JsonObject, parse_object};
use workload_auth_core::{Error, ErrorKind, Result, SecretString};
use zeroize::Zeroizing;

use super::Subject;
use crate::env::{CERTIFICATE_CONFIG_ENV, EnvSource};
use crate::http::{Http, TlsRoots};

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
            timeout: crate::http::DEFAULT_TIMEOUT,
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
        let (cert_path, key_path) = read_config(config_path)?;
        let cert_pem = read_limited(&cert_path, "the workload certificate")?;
        let chain = certificates(&cert_pem, &cert_path)?;
        let key_pem = read_limited(&key_path, "the workload private key")?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
            Error::new(
                ErrorKind::InvalidCredentials,
                "the file holds no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
            )
            .with_endpoint(key_path.display().to_string())
        })?;
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

/// `GOOGLE_API_CERTIFICATE_CONFIG`, else gcloud's `certificate_config.json`.
pub(crate) fn default_config_path(env: &EnvSource) -> std::result::Result<PathBuf, String> {
    if let Some(path) = env.nonempty(CERTIFICATE_CONFIG_ENV) {
        return Ok(PathBuf::from(path));
    }
    env.gcloud_config_dir()
        .map(|dir| dir.join("certificate_config.json"))
        .ok_or_else(|| {
            format!("{CERTIFICATE_CONFIG_ENV} is not set and the home directory is unknown")
        })
}

/// Reads `what` (a certificate, key or configuration file) through the bounded reader.
pub(crate) fn read_limited(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    read_bounded(path, MAX_PEM_FILE_BYTES, &format!("{what} file"))
}

/// The `certificate_config.json` at `path`, parsed, and the name its errors give it.
fn parse_config(path: &Path) -> Result<(JsonObject, String)> {
    let place = path.display().to_string();
    let content = read_limited(path, "the certificate configuration")?;
    let map = parse_object(
        &content,
        &place,
        ErrorKind::InvalidCredentials,
        "the certificate configuration",
    )?;
    Ok((map, place))
}

/// `cert_configs.workload.{cert_path,key_path}` of `certificate_config.json`, both required
/// (a client certificate for mutual TLS needs its key).
pub(crate) fn read_config(path: &Path) -> Result<(PathBuf, PathBuf)> {
    let (map, place) = parse_config(path)?;
    let fields = Fields::of_file(&map, &place);
    let workload = fields.object("cert_configs")?.object("workload")?;
    Ok((
        PathBuf::from(workload.str("cert_path")?),
        PathBuf::from(workload.str("key_path")?),
    ))
}

/// `cert_configs.workload.cert_path` (and `key_path`, when given) of a
/// `certificate_config.json`; `None` when it has no workload entry (a certificate only needs to
/// be read, not used for a handshake, to bind tokens to it).
pub(crate) fn read_workload_paths(path: &Path) -> Result<Option<(PathBuf, Option<PathBuf>)>> {
    let (map, place) = parse_config(path)?;
    let fields = Fields::of_file(&map, &place);
    let Some(workload) = fields
        .opt_object("cert_configs")?
        .map(|configs| configs.opt_object("workload"))
        .transpose()?
        .flatten()
    else {
        return Ok(None);
    };
    Ok(Some((
        PathBuf::from(workload.str("cert_path")?),
        workload.opt_nonempty_str("key_path")?.map(PathBuf::from),
    )))
}

pub(crate) fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let place = path.display().to_string();
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| {
            Error::new(
                ErrorKind::InvalidCredentials,
                "the PEM certificates are malformed",
            )
            .with_endpoint(place.clone())
        })?;
    if certs.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidCredentials,
            "the file holds no PEM certificate",
        )
        .with_endpoint(place));
    }
    Ok(certs)
}
