//! The one reader of `certificate_config.json` and the PEM files it names, shared by the client
//! certificate for mutual TLS to Google APIs ([`crate::ClientCertificate`]), the certificate
//! source of X.509 workload identity federation, and the Agent Identity binding finder.
//!
//! The configuration is `GOOGLE_API_CERTIFICATE_CONFIG`, else gcloud's
//! `certificate_config.json`, holding `{"cert_configs":{"workload":{"cert_path","key_path"}}}`.
//! Every file is read through the bounded reader: any of them may be anything.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use workload_auth_core::fs::{MAX_PEM_FILE_BYTES, read_bounded};
use workload_auth_core::json::{Fields, JsonObject, parse_object};
use workload_auth_core::{Error, ErrorKind, Result};
use zeroize::Zeroizing;

use crate::env::{CERTIFICATE_CONFIG_ENV, EnvSource};

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

/// The PEM certificates in `pem` (read from `path`, which errors name); at least one.
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

/// The private key in the PEM file at `path`.
pub(crate) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read_limited(path, "the workload private key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        Error::new(
            ErrorKind::InvalidCredentials,
            "the file holds no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
        )
        .with_endpoint(path.display().to_string())
    })
}

/// The workload certificate a `certificate_config.json` names, loaded.
pub(crate) struct WorkloadCertificate {
    /// Leaf first.
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    /// The certificate file, which errors about the chain name.
    pub(crate) cert_path: PathBuf,
}

/// Reads the `certificate_config.json` at `config`, then the certificate chain and the private
/// key it names.
pub(crate) fn load_workload(config: &Path) -> Result<WorkloadCertificate> {
    let (cert_path, key_path) = read_config(config)?;
    let chain = certificates(
        &read_limited(&cert_path, "the workload certificate")?,
        &cert_path,
    )?;
    let key = private_key(&key_path)?;
    Ok(WorkloadCertificate {
        chain,
        key,
        cert_path,
    })
}
