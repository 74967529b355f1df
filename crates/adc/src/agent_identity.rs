//! Agent Identity certificate-bound tokens (AIP-4119): when the workload certificate's SPIFFE
//! trust domain is an agent-identity one, tokens are bound to that certificate, and a bound token
//! is worth nothing without it.
//!
//! The certificate is the one `certificate_config.json` names (`GOOGLE_API_CERTIFICATE_CONFIG`,
//! else gcloud's), else the GKE / Cloud Run mount `/var/run/secrets/workload-spiffe-credentials/`
//! (`certificates.pem`, or the combined `x509.credential-bundle.private-key.pem`). Binding is on
//! unless `GOOGLE_API_ENABLE_RUNTIME_BOUND_TOKEN=false` (or, when that is unset or empty, the
//! older `GOOGLE_API_PREVENT_AGENT_TOKEN_SHARING_FOR_GCP_SERVICES=false`), or
//! `GOOGLE_API_USE_CLIENT_CERTIFICATE=false` turns client certificates off altogether.
//!
//! Which certificate a source uses is decided when the credentials are built; the files are read
//! again for every bound token, so a rotated certificate gets a new token bound to it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use workload_auth_core::{AccessToken, Error, ErrorKind, Expiring, IdToken, Result};
use workload_auth_metadata::CertificateBinding;

use crate::certificate_config::{
    certificates, default_config_path, private_key, read_limited, read_workload_paths,
};
use crate::client_certificate::USE_CLIENT_CERTIFICATE_ENV;
use crate::env::EnvSource;

/// `GOOGLE_API_ENABLE_RUNTIME_BOUND_TOKEN`: `false` asks for unbound tokens.
pub const ENABLE_RUNTIME_BOUND_TOKEN_ENV: &str = "GOOGLE_API_ENABLE_RUNTIME_BOUND_TOKEN";
/// `GOOGLE_API_PREVENT_AGENT_TOKEN_SHARING_FOR_GCP_SERVICES`: the older opt-out, read only when
/// [`ENABLE_RUNTIME_BOUND_TOKEN_ENV`] is unset or empty.
pub const PREVENT_AGENT_TOKEN_SHARING_ENV: &str =
    "GOOGLE_API_PREVENT_AGENT_TOKEN_SHARING_FOR_GCP_SERVICES";
/// Where GKE and Cloud Run mount the workload's SPIFFE credentials.
pub const SPIFFE_CREDENTIALS_DIR: &str = "/var/run/secrets/workload-spiffe-credentials";
/// `WORKLOAD_AUTH_SPIFFE_CREDENTIALS_DIR`: another directory to look in instead of
/// [`SPIFFE_CREDENTIALS_DIR`] (tests, the emulator, unusual mounts).
pub const SPIFFE_CREDENTIALS_DIR_ENV: &str = "WORKLOAD_AUTH_SPIFFE_CREDENTIALS_DIR";

const CERTIFICATES_PEM: &str = "certificates.pem";
const PRIVATE_KEY_PEM: &str = "private_key.pem";
const COMBINED_PEM: &str = "x509.credential-bundle.private-key.pem";

/// Whether `trust_domain` is an Agent Identity one: `agents.global.org-<digits>.system.id.goog`,
/// `agents.global.proj-<digits>.system.id.goog`, or the same under `agents-nonprod.`.
pub fn is_agent_trust_domain(trust_domain: &str) -> bool {
    let Some(rest) = trust_domain
        .strip_prefix("agents.global.")
        .or_else(|| trust_domain.strip_prefix("agents-nonprod.global."))
    else {
        return false;
    };
    let Some(number) = rest.strip_suffix(".system.id.goog") else {
        return false;
    };
    let digits = number
        .strip_prefix("org-")
        .or_else(|| number.strip_prefix("proj-"));
    digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The fingerprint a token is bound to: base64url, unpadded, of the SHA-256 of `leaf_der`.
pub fn certificate_fingerprint(leaf_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, leaf_der))
}

/// Whether the environment turns binding off, and by which variable.
pub(crate) fn opted_out(env: &EnvSource) -> Option<&'static str> {
    let is_false = |v: String| v.trim().eq_ignore_ascii_case("false");
    if env
        .nonempty(USE_CLIENT_CERTIFICATE_ENV)
        .is_some_and(is_false)
    {
        return Some(USE_CLIENT_CERTIFICATE_ENV);
    }
    match env.nonempty(ENABLE_RUNTIME_BOUND_TOKEN_ENV) {
        Some(v) => is_false(v).then_some(ENABLE_RUNTIME_BOUND_TOKEN_ENV),
        None => env
            .nonempty(PREVENT_AGENT_TOKEN_SHARING_ENV)
            .is_some_and(is_false)
            .then_some(PREVENT_AGENT_TOKEN_SHARING_ENV),
    }
}

/// Where the workload certificate is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CertificateFiles {
    /// The PEM file holding the chain (leaf first).
    pub(crate) cert: PathBuf,
    /// The private key's PEM file, when there is one (it may be `cert` itself).
    pub(crate) key: Option<PathBuf>,
    /// Where the paths came from, for `explain`.
    pub(crate) origin: String,
}

impl CertificateFiles {
    /// The workload certificate `env` points at: `Ok(None)` when binding is turned off or there
    /// is no certificate. A configuration that exists but is broken is an error naming it.
    pub(crate) fn find(env: &EnvSource) -> Result<Option<Self>> {
        if opted_out(env).is_some() {
            return Ok(None);
        }
        let explicit = env.nonempty(crate::env::CERTIFICATE_CONFIG_ENV).is_some();
        if let Ok(config) = default_config_path(env)
            && (explicit || config.exists())
        {
            // A configuration without a workload certificate (say, only gcloud's `keychain`
            // entry) binds nothing, as in google-auth; a broken one is an error naming it.
            return Ok(read_workload_paths(&config)?.map(|(cert, key)| Self {
                cert,
                key,
                origin: format!("certificate configuration {}", config.display()),
            }));
        }
        let dir = env
            .nonempty(SPIFFE_CREDENTIALS_DIR_ENV)
            .map_or_else(|| PathBuf::from(SPIFFE_CREDENTIALS_DIR), PathBuf::from);
        let origin = format!("SPIFFE credentials directory {}", dir.display());
        let (certs, combined) = (dir.join(CERTIFICATES_PEM), dir.join(COMBINED_PEM));
        if certs.exists() {
            let key = dir.join(PRIVATE_KEY_PEM);
            return Ok(Some(Self {
                cert: certs,
                key: key.exists().then_some(key),
                origin,
            }));
        }
        if combined.exists() {
            return Ok(Some(Self {
                key: Some(combined.clone()),
                cert: combined,
                origin,
            }));
        }
        Ok(None)
    }

    /// Reads the certificate (and key) now, checking that the certificate is valid today and
    /// that the key belongs to it. `Ok(None)`: not an Agent Identity certificate.
    pub(crate) fn load(&self) -> Result<Option<BoundCertificate>> {
        let pem = read_limited(&self.cert, "the workload certificate")?;
        let chain = certificates(&pem, &self.cert)?;
        let leaf = parse_leaf(&chain[0], &self.cert)?;
        if !leaf
            .trust_domain
            .as_deref()
            .is_some_and(is_agent_trust_domain)
        {
            return Ok(None);
        }
        let now = SystemTime::now();
        if leaf.not_after <= now {
            return Err(Error::new(
                ErrorKind::InvalidCredentials,
                "the workload certificate has expired, so no token can be bound to it",
            )
            .with_endpoint(self.cert.display().to_string())
            .with_hint("the certificate should be rotated before it expires; check the agent that writes it"));
        }
        let key = match &self.key {
            Some(path) => Some(Arc::new(load_key(path, &chain)?)),
            None => None,
        };
        Ok(Some(BoundCertificate {
            fingerprint: certificate_fingerprint(chain[0].as_ref()),
            chain_pem: pem_certificates(&chain),
            spiffe_id: leaf.spiffe_id.unwrap_or_default(),
            chain: Arc::from(chain),
            key,
            path: self.cert.clone(),
            not_after: leaf.not_after,
        }))
    }
}

/// The fingerprint of `chain`'s leaf when it is an Agent Identity certificate.
pub(crate) fn agent_fingerprint(
    chain: &[CertificateDer<'_>],
    path: &Path,
) -> Result<Option<String>> {
    let Some(leaf) = chain.first() else {
        return Ok(None);
    };
    let parsed = parse_leaf(leaf, path)?;
    Ok(parsed
        .trust_domain
        .as_deref()
        .is_some_and(is_agent_trust_domain)
        .then(|| certificate_fingerprint(leaf.as_ref())))
}

struct Leaf {
    spiffe_id: Option<String>,
    trust_domain: Option<String>,
    not_after: SystemTime,
}

fn parse_leaf(der: &CertificateDer<'_>, path: &Path) -> Result<Leaf> {
    use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};
    let bad = |why: &str| {
        Error::new(ErrorKind::InvalidCredentials, why.to_owned())
            .with_endpoint(path.display().to_string())
    };
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|_| bad("the workload certificate is not a valid X.509 certificate"))?;
    let spiffe_id = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|name| match name {
                GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some((*uri).to_owned()),
                _ => None,
            })
        });
    let trust_domain = spiffe_id.as_deref().and_then(|id| {
        let rest = id.strip_prefix("spiffe://")?;
        Some(rest.split('/').next().unwrap_or(rest).to_ascii_lowercase())
    });
    let seconds = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
    let not_after = SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .ok_or_else(|| bad("the workload certificate's expiry is out of range"))?;
    Ok(Leaf {
        spiffe_id,
        trust_domain,
        not_after,
    })
}

/// Loads the private key at `path` and checks it belongs to the leaf of `chain`.
fn load_key(path: &Path, chain: &[CertificateDer<'static>]) -> Result<PrivateKeyDer<'static>> {
    let place = path.display().to_string();
    let key = private_key(path)?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain.to_vec(), key.clone_key(), &provider).map_err(
        |e| {
            let why = match e {
                rustls::Error::InconsistentKeys(_) => {
                    "the private key does not belong to the workload certificate".to_owned()
                }
                _ => "the private key is of a type that cannot be used with the workload \
                      certificate (expected an ECDSA P-256/P-384, RSA or Ed25519 key)"
                    .to_owned(),
            };
            Error::new(ErrorKind::InvalidCredentials, why).with_endpoint(place.clone())
        },
    )?;
    Ok(key)
}

/// The chain as PEM, certificates only (a combined file's key never leaves it).
fn pem_certificates(chain: &[CertificateDer<'_>]) -> String {
    let mut out = String::new();
    for cert in chain {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = STANDARD.encode(cert.as_ref());
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// An Agent Identity workload certificate, loaded: what tokens are bound to and what the
/// transport must present with them.
#[derive(Clone)]
pub struct BoundCertificate {
    chain: Arc<[CertificateDer<'static>]>,
    chain_pem: String,
    fingerprint: String,
    spiffe_id: String,
    key: Option<Arc<PrivateKeyDer<'static>>>,
    path: PathBuf,
    not_after: SystemTime,
}

// Written by hand, like `CertificateBinding`'s in the metadata crate, on purpose: a derived
// `Debug` would print the private key and the whole chain; this prints what identifies it.
impl fmt::Debug for BoundCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundCertificate")
            .field("fingerprint", &self.fingerprint)
            .field("spiffe_id", &self.spiffe_id)
            .field("path", &self.path)
            .field("has_key", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl BoundCertificate {
    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The chain as PEM (certificates only).
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// SHA-256 of the leaf's DER, base64url without padding.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The leaf's SPIFFE ID.
    pub fn spiffe_id(&self) -> &str {
        &self.spiffe_id
    }

    /// The file the chain was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When the leaf expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The private key, when one sits next to the certificate; a transport needs it to present
    /// the certificate.
    pub fn private_key(&self) -> Option<&PrivateKeyDer<'static>> {
        self.key.as_deref()
    }

    /// The private key as PEM (`PRIVATE KEY`, `EC PRIVATE KEY` or `RSA PRIVATE KEY`), for a
    /// transport outside Rust (Python's `ssl`, a C TLS library) that must present this
    /// certificate. A secret: never log it.
    pub fn private_key_pem(&self) -> Option<workload_auth_core::SecretString> {
        let key = self.key.as_deref()?;
        let label = match key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        let b64 = zeroize::Zeroizing::new(STANDARD.encode(key.secret_der()));
        let mut pem = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {label}-----\n"));
        Some(workload_auth_core::SecretString::new(pem))
    }

    /// A rustls client configuration (ring, TLS 1.3) presenting this certificate and trusting
    /// `roots` (the platform's when empty): the only channel a bound token is good for.
    pub fn rustls_config(
        &self,
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<rustls::ClientConfig> {
        let key = self.key.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidCredentials,
                "there is no private key next to the workload certificate, so it cannot be \
                 presented over mutual TLS",
            )
            .with_endpoint(self.path.display().to_string())
        })?;
        crate::client_certificate::mtls_client_config(roots, self.chain.to_vec(), key.clone_key())
    }

    /// The binding the metadata server takes.
    pub(crate) fn binding(&self) -> Result<CertificateBinding> {
        CertificateBinding::new(self.chain_pem.clone(), self.fingerprint.clone())
    }
}

/// A certificate-bound token together with the certificate it is bound to. There is no way to
/// get the token out without the certificate in hand: a server accepts it only over mutual TLS
/// presenting exactly this certificate.
#[derive(Clone)]
pub struct Bound<T> {
    token: T,
    certificate: BoundCertificate,
}

/// A certificate-bound access token and its certificate.
pub type BoundAccessToken = Bound<AccessToken>;
/// A certificate-bound ID token and its certificate.
pub type BoundIdToken = Bound<IdToken>;

impl<T: fmt::Debug> fmt::Debug for Bound<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bound")
            .field("token", &self.token)
            .field("fingerprint", &self.certificate.fingerprint)
            .finish()
    }
}

impl<T> Bound<T> {
    pub(crate) fn new(token: T, certificate: BoundCertificate) -> Self {
        Self { token, certificate }
    }

    /// The token.
    pub fn token(&self) -> &T {
        &self.token
    }

    /// The certificate the token is bound to; present it (and only it) with the token.
    pub fn certificate(&self) -> &BoundCertificate {
        &self.certificate
    }

    /// The chain the token is bound to, leaf first.
    pub fn certificate_chain(&self) -> &[CertificateDer<'static>] {
        self.certificate.chain()
    }

    /// The fingerprint of the leaf (base64url SHA-256 of its DER), as the token's binding names
    /// it.
    pub fn fingerprint(&self) -> &str {
        self.certificate.fingerprint()
    }
}

impl<T: Expiring> Expiring for Bound<T> {
    fn expires_at(&self) -> SystemTime {
        // The token is useless once the certificate it is bound to has expired.
        self.token.expires_at().min(self.certificate.not_after)
    }
}

/// The error for a plain token asked of credentials whose tokens are bound.
pub(crate) fn bound_only_error(files: &CertificateFiles) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        "these credentials get Agent Identity tokens bound to the workload certificate, which \
         are only accepted together with it; a bound token is never handed out without its \
         certificate",
    )
    .with_endpoint(files.cert.display().to_string())
    .with_hint(format!(
        "use bound_access_token(), which returns the token with the certificate to present over \
         mutual TLS, or set {ENABLE_RUNTIME_BOUND_TOKEN_ENV}=false for unbound tokens"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_trust_domains() {
        for td in [
            "agents.global.org-123.system.id.goog",
            "agents.global.proj-9.system.id.goog",
            "agents-nonprod.global.org-42.system.id.goog",
            "agents-nonprod.global.proj-42.system.id.goog",
        ] {
            assert!(is_agent_trust_domain(td), "{td}");
        }
        for td in [
            "example.org",
            "agents.global.org-.system.id.goog",
            "agents.global.org-12a.system.id.goog",
            "agents.global.folder-1.system.id.goog",
            "agents.eu.org-1.system.id.goog",
            "x.agents.global.org-1.system.id.goog",
            "agents.global.org-1.system.id.goog.evil",
            "my-pool.global.123.workload.id.goog",
        ] {
            assert!(!is_agent_trust_domain(td), "{td}");
        }
    }

    #[test]
    fn fingerprints_are_base64url_sha256() {
        // SHA-256 of the empty string.
        assert_eq!(
            certificate_fingerprint(b""),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }

    #[test]
    fn opt_outs_follow_google_auth() {
        let env = |vars: &[(&str, &str)]| EnvSource::from_vars(vars.iter().copied());
        assert_eq!(opted_out(&env(&[])), None);
        assert_eq!(
            opted_out(&env(&[(ENABLE_RUNTIME_BOUND_TOKEN_ENV, "FALSE")])),
            Some(ENABLE_RUNTIME_BOUND_TOKEN_ENV)
        );
        assert_eq!(
            opted_out(&env(&[(PREVENT_AGENT_TOKEN_SHARING_ENV, "false")])),
            Some(PREVENT_AGENT_TOKEN_SHARING_ENV)
        );
        // The newer variable wins when set; an empty one defers to the older.
        assert_eq!(
            opted_out(&env(&[
                (ENABLE_RUNTIME_BOUND_TOKEN_ENV, "true"),
                (PREVENT_AGENT_TOKEN_SHARING_ENV, "false")
            ])),
            None
        );
        assert_eq!(
            opted_out(&env(&[
                (ENABLE_RUNTIME_BOUND_TOKEN_ENV, ""),
                (PREVENT_AGENT_TOKEN_SHARING_ENV, "false")
            ])),
            Some(PREVENT_AGENT_TOKEN_SHARING_ENV)
        );
        assert_eq!(
            opted_out(&env(&[(USE_CLIENT_CERTIFICATE_ENV, "false")])),
            Some(USE_CLIENT_CERTIFICATE_ENV)
        );
    }
}
