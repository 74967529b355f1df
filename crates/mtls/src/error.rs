//! Why a peer was refused: one variant per reason, so callers and tests can match on it.

use std::time::SystemTime;

use workload_auth_core::{Error, ErrorKind};

use crate::spiffe_id::{SpiffeId, SpiffeIdError};

/// Which certificate of the peer's chain a problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainPosition {
    /// The peer's own certificate (the X509-SVID).
    Leaf,
    /// A certificate between the leaf and the trust bundle's root.
    Intermediate,
}

impl std::fmt::Display for ChainPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Leaf => "leaf",
            Self::Intermediate => "intermediate",
        })
    }
}

/// The reason a peer's certificate chain or identity was refused.
///
/// Every refusal names exactly one reason. Converts into [`workload_auth_core::Error`] with
/// [`ErrorKind::Verification`]; [`VerificationError::find`] gets it back out of such an error (or
/// out of an `io::Error` from a TLS stream).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerificationError {
    /// The peer presented no certificate.
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// A certificate is not valid DER X.509.
    #[error("{position} certificate is malformed: {detail}")]
    Malformed {
        /// Which certificate.
        position: ChainPosition,
        /// What the parser said.
        detail: String,
    },
    /// The leaf has no URI subject alternative name (it may have DNS or other names only).
    #[error("leaf certificate has no URI SAN, so it carries no SPIFFE ID")]
    NoUriSan,
    /// The leaf has more than one URI SAN; an X509-SVID has exactly one.
    #[error("leaf certificate has {0} URI SANs; an X509-SVID has exactly one")]
    MultipleUriSans(usize),
    /// The URI SAN is not a `spiffe://` URI.
    #[error("URI SAN {uri:?} is not a SPIFFE ID")]
    NotSpiffeUri {
        /// The URI found.
        uri: String,
    },
    /// The URI SAN starts with `spiffe://` but is not a valid SPIFFE ID.
    #[error("URI SAN {uri:?} is not a valid SPIFFE ID: {reason}")]
    InvalidSpiffeId {
        /// The URI found.
        uri: String,
        /// What is wrong with it.
        reason: SpiffeIdError,
    },
    /// The SPIFFE ID names a trust domain but no workload (empty path).
    #[error("SPIFFE ID {0} has an empty path; an X509-SVID names a workload")]
    EmptyPath(SpiffeId),
    /// The leaf is a CA certificate (`CA:TRUE`).
    #[error("leaf certificate is a CA (basicConstraints CA:TRUE)")]
    LeafIsCa,
    /// The leaf's key usage lacks `digitalSignature` (or the extension is missing).
    #[error("leaf certificate key usage lacks digitalSignature")]
    MissingDigitalSignature,
    /// The leaf may sign certificates or CRLs.
    #[error("leaf certificate key usage includes {0}, which a leaf must not have")]
    ForbiddenKeyUsage(&'static str),
    /// An extended key usage extension is present but does not allow this role.
    #[error("{position} certificate extended key usage does not include {needed}")]
    WrongExtendedKeyUsage {
        /// Which certificate.
        position: ChainPosition,
        /// `serverAuth` or `clientAuth`.
        needed: &'static str,
    },
    /// An intermediate certificate of the chain may not sign certificates: its key usage lacks
    /// `keyCertSign` (or it has no key usage extension), which the SPIFFE X509-SVID specification
    /// requires of every signing certificate.
    #[error(
        "intermediate certificate key usage lacks keyCertSign, which the SPIFFE X509-SVID \
         specification requires of a certificate that signs others"
    )]
    IntermediateCannotSign,
    /// No trust bundle is configured for the peer's trust domain.
    #[error("no trust bundle for trust domain {0}")]
    UnknownTrustDomain(String),
    /// A certificate of the chain expired.
    #[error("{position} certificate expired")]
    Expired {
        /// Which certificate.
        position: ChainPosition,
        /// Its notAfter, when known.
        not_after: Option<SystemTime>,
    },
    /// A certificate of the chain is not valid yet.
    #[error("{position} certificate is not valid yet")]
    NotYetValid {
        /// Which certificate.
        position: ChainPosition,
        /// Its notBefore, when known.
        not_before: Option<SystemTime>,
    },
    /// No path leads from the leaf through the peer's intermediates to a root of the bundle of the
    /// leaf's trust domain (no known issuer, or an issuer's signature does not verify).
    #[error("certificate chain does not lead to a root of trust domain {0}")]
    UntrustedChain(String),
    /// RFC 5280 path validation failed for another reason.
    #[error("certificate path validation failed: {0}")]
    PathValidation(String),
    /// The peer's identity was verified but the authorizer does not allow it.
    #[error("peer {id} is not authorized by policy {policy}")]
    Unauthorized {
        /// The verified peer.
        id: SpiffeId,
        /// The policy that refused it.
        policy: String,
    },
}

impl VerificationError {
    /// Finds the verification reason inside an error chain: a [`workload_auth_core::Error`], an
    /// `io::Error` from a TLS stream, a `rustls::Error`, or the reason itself.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Self> {
        let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = current {
            if let Some(v) = e.downcast_ref::<Self>() {
                return Some(v);
            }
            if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) =
                e.downcast_ref::<rustls::Error>()
                && let Some(v) = other.0.downcast_ref::<Self>()
            {
                return Some(v);
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && let Some(inner) = io.get_ref()
                && let Some(v) = Self::find(inner)
            {
                return Some(v);
            }
            current = e.source();
        }
        None
    }

    /// This reason as the rustls error a certificate verifier returns.
    pub fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            std::sync::Arc::new(self),
        )))
    }
}

impl From<VerificationError> for Error {
    fn from(e: VerificationError) -> Self {
        Error::new(ErrorKind::Verification, "we refused the peer").with_source(e)
    }
}

/// Why X.509 credentials (an SVID, a key, trust bundles) could not be loaded.
///
/// Converts into [`workload_auth_core::Error`] with [`ErrorKind::InvalidCredentials`] via
/// [`CredentialError::at`], which names the file or endpoint; [`CredentialError::find`] gets the
/// reason back out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// PEM text is truncated, garbled or has no section of the expected kind.
    #[error("bad PEM: {0}")]
    Pem(String),
    /// No certificate was found.
    #[error("no certificate found")]
    NoCertificates,
    /// No private key was found.
    #[error("no private key found")]
    NoPrivateKey,
    /// The private key is not a usable ECDSA, Ed25519 or RSA key.
    #[error("unsupported or malformed private key: {0}")]
    UnsupportedPrivateKey(String),
    /// The private key does not belong to the leaf certificate.
    #[error("private key does not match the leaf certificate")]
    KeyMismatch,
    /// A certificate is not valid DER X.509.
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    /// The leaf certificate is not a usable X509-SVID.
    #[error("leaf certificate is not an X509-SVID: {0}")]
    InvalidSvid(VerificationError),
    /// The bundle map is not valid JSON of the expected shape.
    #[error("trust bundle map is malformed: {0}")]
    BundleJson(String),
    /// Neither `ca_certificates.pem` nor `trust_bundles.json` gave any root.
    #[error("no trust bundles: no peer could be verified")]
    NoTrustBundles,
    /// The bundle map names the same trust domain twice.
    #[error("trust bundle map names trust domain {0} more than once")]
    DuplicateTrustDomain(String),
    /// A trust domain name in the bundle map is invalid.
    #[error("trust bundle map has an invalid trust domain {name:?}: {reason}")]
    InvalidTrustDomain {
        /// The name found.
        name: String,
        /// What is wrong with it.
        reason: SpiffeIdError,
    },
    /// An `x5c` entry is not valid base64.
    #[error("trust bundle for {0} has an x5c entry that is not valid base64")]
    BadBase64(String),
    /// An `x509-svid` key does not have exactly one `x5c` certificate.
    #[error(
        "trust bundle for {trust_domain} has an x509-svid key with {count} x5c certificates; exactly one is required"
    )]
    X5cCount {
        /// The trust domain.
        trust_domain: String,
        /// How many were found.
        count: usize,
    },
    /// A `gce-workload-certificates` body is not of the expected shape.
    #[error("metadata server workload certificates are malformed: {0}")]
    MetadataJson(String),
    /// The SPIFFE ID a credential is filed under is not the one in its certificate.
    #[error("credential filed under {claimed} holds a certificate for {certificate}")]
    IdMismatch {
        /// The ID the credential was filed under.
        claimed: String,
        /// The ID in the certificate.
        certificate: String,
    },
    /// The platform keeps the workload's private key hidden (the credentials hold a certificate
    /// but no key): the certificate can still be presented for token binding or inspected, but
    /// no TLS handshake can be made with it.
    #[error(
        "the platform keeps this workload's private key hidden (no private key was delivered): \
         its certificate can be used for token binding and inspection, but not for a TLS handshake"
    )]
    PrivateKeyHidden,
    /// A file meant to hold one private key holds several (which one signs is ambiguous).
    #[error("found {0} private keys where exactly one is expected")]
    MultiplePrivateKeys(usize),
    /// The private key is of another algorithm than the leaf certificate's public key.
    #[error("the private key is {key} but the leaf certificate holds an {certificate} public key")]
    KeyTypeMismatch {
        /// The key's algorithm (`ECDSA`, `Ed25519`, `RSA`).
        key: &'static str,
        /// The certificate's public key algorithm.
        certificate: &'static str,
    },
    /// A trust bundle file named for one trust domain holds a root that names another.
    #[error(
        "trust bundle file for {file_domain} holds a root certificate of trust domain \
         {certificate_domain}"
    )]
    TrustDomainMismatch {
        /// The trust domain the file is named for.
        file_domain: String,
        /// The trust domain in the root's SPIFFE ID (URI SAN).
        certificate_domain: String,
    },
    /// A root certificate cannot be used as a trust anchor.
    #[error("trust bundle for {trust_domain} has an unusable root: {detail}")]
    BadRoot {
        /// The trust domain.
        trust_domain: String,
        /// What was wrong.
        detail: String,
    },
}

impl CredentialError {
    /// This reason as a workspace error naming `place` (a file path or an endpoint).
    pub fn at(self, place: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidCredentials, "unusable X.509 credentials")
            .with_endpoint(place)
            .with_source(self)
    }

    /// Finds the credential reason inside an error chain.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Self> {
        let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = current {
            if let Some(v) = e.downcast_ref::<Self>() {
                return Some(v);
            }
            current = e.source();
        }
        None
    }
}
