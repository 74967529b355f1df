//! An X509-SVID: a workload's certificate chain and the private key that goes with it.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use rustls::SignatureAlgorithm;
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::cert;
use crate::error::{ChainPosition, CredentialError};
use crate::spiffe_id::SpiffeId;

/// A workload's X509-SVID: leaf certificate first, then intermediates (no root), and its key.
///
/// Construction checks that the leaf carries exactly one SPIFFE ID and that the private key belongs
/// to the leaf, so a torn pair from a racing rotation is never accepted. The key is held ready for
/// signing by the ring provider; `Debug` never shows it.
///
/// Some platforms keep the key hidden and deliver the certificate alone
/// ([`X509Svid::certificate_only`]): such an SVID names the workload and can be presented for
/// token binding, but [`X509Svid::has_private_key`] is false and the TLS configs of this crate
/// refuse it with [`CredentialError::PrivateKeyHidden`].
#[derive(Clone)]
pub struct X509Svid {
    id: SpiffeId,
    not_before: SystemTime,
    not_after: SystemTime,
    key_der: Option<Arc<PrivateKeyDer<'static>>>,
    certified: Arc<CertifiedKey>,
}

/// What [`X509Svid::private_key`] returns for an SVID whose key is hidden: no bytes, which no
/// parser accepts as a key, so a caller that did not check fails closed.
static NO_KEY: LazyLock<PrivateKeyDer<'static>> =
    LazyLock::new(|| PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(Vec::new())));

/// The stand-in signing key of a certificate-only SVID: it offers no signature scheme, so even a
/// rustls config built around the crate's checks cannot sign a handshake with it.
#[derive(Debug)]
struct HiddenKey(SignatureAlgorithm);

impl SigningKey for HiddenKey {
    fn choose_scheme(&self, _offered: &[rustls::SignatureScheme]) -> Option<Box<dyn Signer>> {
        None
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.0
    }
}

fn signature_algorithm(name: Option<&str>) -> SignatureAlgorithm {
    match name {
        Some("ECDSA") => SignatureAlgorithm::ECDSA,
        Some("Ed25519") => SignatureAlgorithm::ED25519,
        Some("RSA") => SignatureAlgorithm::RSA,
        _ => SignatureAlgorithm::Anonymous,
    }
}

/// Parses the chain (leaf first) and returns the leaf's SPIFFE ID, validity and key algorithm.
fn parse_chain(
    chain: &[CertificateDer<'static>],
) -> Result<(SpiffeId, SystemTime, SystemTime, Option<&'static str>), CredentialError> {
    let leaf_der = chain.first().ok_or(CredentialError::NoCertificates)?;
    let leaf = cert::parse(leaf_der, ChainPosition::Leaf)
        .map_err(|e| CredentialError::MalformedCertificate(e.to_string()))?;
    for (i, der) in chain.iter().enumerate().skip(1) {
        cert::parse(der, ChainPosition::Intermediate).map_err(|e| {
            CredentialError::MalformedCertificate(format!("certificate #{}: {e}", i + 1))
        })?;
    }
    let id = cert::spiffe_id(&leaf).map_err(CredentialError::InvalidSvid)?;
    let (not_before, not_after) = cert::validity(&leaf);
    Ok((id, not_before, not_after, cert::key_algorithm(&leaf)))
}

fn key_algorithm_name(algorithm: SignatureAlgorithm) -> &'static str {
    match algorithm {
        SignatureAlgorithm::ECDSA => "ECDSA",
        SignatureAlgorithm::ED25519 => "Ed25519",
        SignatureAlgorithm::RSA => "RSA",
        _ => "of another algorithm",
    }
}

impl X509Svid {
    /// An SVID from DER certificates (leaf first) and a DER private key (PKCS#8, SEC1 or PKCS#1).
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, CredentialError> {
        let (id, not_before, not_after, cert_algorithm) = parse_chain(&chain)?;
        let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| CredentialError::UnsupportedPrivateKey(e.to_string()))?;
        // Named before comparing keys, so "an RSA key for an ECDSA certificate" is not reported
        // as a mere mismatch (which also looks like a rotation race and is retried).
        let key_algorithm = key_algorithm_name(signing_key.algorithm());
        if let Some(certificate) = cert_algorithm
            && certificate != key_algorithm
        {
            return Err(CredentialError::KeyTypeMismatch {
                key: key_algorithm,
                certificate,
            });
        }
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(CredentialError::KeyMismatch);
            }
            Err(e) => return Err(CredentialError::UnsupportedPrivateKey(e.to_string())),
        }
        Ok(Self {
            id,
            not_before,
            not_after,
            key_der: Some(Arc::new(key)),
            certified: Arc::new(certified),
        })
    }

    /// An SVID without its private key, for platforms that keep the key hidden: the chain (leaf
    /// first) is checked as in [`X509Svid::from_der`], and can be presented for token binding or
    /// inspected, but not used in a handshake.
    pub fn certificate_only(chain: Vec<CertificateDer<'static>>) -> Result<Self, CredentialError> {
        let (id, not_before, not_after, cert_algorithm) = parse_chain(&chain)?;
        let hidden = HiddenKey(signature_algorithm(cert_algorithm));
        Ok(Self {
            id,
            not_before,
            not_after,
            key_der: None,
            certified: Arc::new(CertifiedKey::new(chain, Arc::new(hidden))),
        })
    }

    /// A certificate-only SVID from PEM (see [`X509Svid::certificate_only`]).
    pub fn certificate_only_pem(certificates: &[u8]) -> Result<Self, CredentialError> {
        Self::certificate_only(crate::pem::certificates(certificates)?)
    }

    /// An SVID from PEM: `certificates` holds the chain (leaf first), `private_key` the key.
    pub fn from_pem(certificates: &[u8], private_key: &[u8]) -> Result<Self, CredentialError> {
        let chain = crate::pem::certificates(certificates)?;
        let key = crate::pem::private_key(private_key)?;
        Self::from_der(chain, key)
    }

    /// An SVID from one PEM text holding both the chain and exactly one key, such as
    /// `x509.credential-bundle.private-key.pem` (GKE, google-auth) or the SPIFFE filesystem
    /// delivery's `credential-bundle.private-key.pem`. The key may come first (as the SPIFFE draft
    /// writes it) or last (as GKE does); a second key, or none, is an error rather than a guess.
    pub fn from_combined_pem(pem: &[u8]) -> Result<Self, CredentialError> {
        match crate::pem::count_private_keys(pem)? {
            0 => Err(CredentialError::NoPrivateKey),
            1 => Self::from_pem(pem, pem),
            n => Err(CredentialError::MultiplePrivateKeys(n)),
        }
    }

    /// The workload's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.id
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.certified.cert
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // `from_der` refuses an empty chain.
        &self.certified.cert[0]
    }

    /// The leaf's notBefore.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// The leaf's notAfter.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The private key, DER. It is a secret: do not log it.
    ///
    /// Empty (no bytes, which nothing accepts as a key) when the platform keeps the key hidden;
    /// [`X509Svid::try_private_key`] says so with an `Option`.
    pub fn private_key(&self) -> &PrivateKeyDer<'static> {
        self.key_der.as_deref().unwrap_or(&NO_KEY)
    }

    /// The private key, or `None` when the platform keeps it hidden.
    pub fn try_private_key(&self) -> Option<&PrivateKeyDer<'static>> {
        self.key_der.as_deref()
    }

    /// Whether the key was delivered, so the SVID can sign a TLS handshake.
    pub fn has_private_key(&self) -> bool {
        self.key_der.is_some()
    }

    /// The chain and key ready for rustls. For a certificate-only SVID the key offers no
    /// signature scheme, so a handshake using it fails; check [`X509Svid::has_private_key`].
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified
    }
}

impl fmt::Debug for X509Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Svid")
            .field("spiffe_id", &self.id.as_str())
            .field("chain_len", &self.certified.cert.len())
            .field("not_after", &self.not_after)
            .field(
                "private_key",
                &if self.has_private_key() {
                    "[redacted]"
                } else {
                    "[hidden by the platform]"
                },
            )
            .finish()
    }
}
