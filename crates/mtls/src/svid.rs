//! An X509-SVID: a workload's certificate chain and the private key that goes with it.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::cert;
use crate::error::{ChainPosition, CredentialError};
use crate::spiffe_id::SpiffeId;

/// A workload's X509-SVID: leaf certificate first, then intermediates (no root), and its key.
///
/// Construction checks that the leaf carries exactly one SPIFFE ID and that the private key belongs
/// to the leaf, so a torn pair from a racing rotation is never accepted. The key is held ready for
/// signing by the ring provider; `Debug` never shows it.
#[derive(Clone)]
pub struct X509Svid {
    id: SpiffeId,
    not_before: SystemTime,
    not_after: SystemTime,
    key_der: Arc<PrivateKeyDer<'static>>,
    certified: Arc<CertifiedKey>,
}

impl X509Svid {
    /// An SVID from DER certificates (leaf first) and a DER private key (PKCS#8, SEC1 or PKCS#1).
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, CredentialError> {
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
        let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| CredentialError::UnsupportedPrivateKey(e.to_string()))?;
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
            key_der: Arc::new(key),
            certified: Arc::new(certified),
        })
    }

    /// An SVID from PEM: `certificates` holds the chain (leaf first), `private_key` the key.
    pub fn from_pem(certificates: &[u8], private_key: &[u8]) -> Result<Self, CredentialError> {
        let chain = crate::pem::certificates(certificates)?;
        let key = crate::pem::private_key(private_key)?;
        Self::from_der(chain, key)
    }

    /// An SVID from one PEM text holding both the chain and the key (any order), such as
    /// `x509.credential-bundle.private-key.pem`.
    pub fn from_combined_pem(pem: &[u8]) -> Result<Self, CredentialError> {
        Self::from_pem(pem, pem)
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
    pub fn private_key(&self) -> &PrivateKeyDer<'static> {
        &self.key_der
    }

    /// The chain and key ready for rustls.
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
            .field("private_key", &"[redacted]")
            .finish()
    }
}
