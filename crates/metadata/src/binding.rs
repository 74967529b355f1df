//! Certificate-bound tokens (Agent Identity, AIP-4119): how a token request names the workload
//! certificate the metadata server should bind the token to.
//!
//! Which certificate, and whether to bind at all, is the caller's decision (ADC reads the
//! workload certificate and its trust domain); this module only carries the binding on the wire.

use std::fmt;

use workload_auth_core::{Error, ErrorKind, Result};

/// How a token request carries its certificate binding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BindingForm {
    /// `POST` to the token (or identity) path, the parameters still in the query, with the JSON
    /// body `{"certificate_chain": "<PEM certificates>"}`: what google-auth 2.61 and later send,
    /// and the default. The server computes the fingerprint itself.
    #[default]
    CertificateChain,
    /// `GET` with `?bindCertificateFingerprint=FP` (base64url SHA-256 of the leaf's DER): the
    /// older form, for metadata servers that do not take the POST yet.
    FingerprintQuery,
}

/// The certificate a token is to be bound to: its chain as PEM (certificates only, never a key)
/// and the leaf's fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificateBinding {
    chain_pem: String,
    fingerprint: String,
}

// By hand, like adc's `BoundCertificate`, on purpose: the fingerprint identifies the
// certificate; the chain is noise in a log.
impl fmt::Debug for CertificateBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateBinding")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The largest certificate chain sent (64 KiB): a leaf and a few intermediates are a few KiB.
const MAX_CHAIN_PEM_BYTES: usize = 64 * 1024;

impl CertificateBinding {
    /// A binding to the certificates in `chain_pem` (leaf first), whose leaf has `fingerprint`
    /// (base64url without padding of the SHA-256 of its DER).
    ///
    /// Refuses a chain holding anything but `CERTIFICATE` blocks (a private key must never be
    /// sent), and a fingerprint that is not 43 base64url characters.
    pub fn new(chain_pem: impl Into<String>, fingerprint: impl Into<String>) -> Result<Self> {
        let chain_pem = chain_pem.into();
        let fingerprint = fingerprint.into();
        let invalid = |why: &str| Error::new(ErrorKind::InvalidArgument, why.to_owned());
        if chain_pem.len() > MAX_CHAIN_PEM_BYTES {
            return Err(invalid("the certificate chain to bind to is over 64 KiB"));
        }
        let mut certificates = 0usize;
        for line in chain_pem.lines() {
            if let Some(label) = line.trim().strip_prefix("-----BEGIN ") {
                if label != "CERTIFICATE-----" {
                    return Err(invalid(
                        "the certificate chain to bind to holds a PEM block that is not a \
                         certificate",
                    ));
                }
                certificates = certificates.saturating_add(1);
            }
        }
        if certificates == 0 {
            return Err(invalid(
                "the certificate chain to bind to holds no certificate",
            ));
        }
        let well_formed = fingerprint.len() == 43
            && fingerprint
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(invalid(
                "the certificate fingerprint is not 43 base64url characters (SHA-256, unpadded)",
            ));
        }
        Ok(Self {
            chain_pem,
            fingerprint,
        })
    }

    /// The chain as PEM, certificates only.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The leaf's fingerprint: base64url, unpadded, of the SHA-256 of its DER.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The JSON body of the POST form.
    pub(crate) fn post_body(&self) -> Vec<u8> {
        serde_json::json!({ "certificate_chain": self.chain_pem })
            .to_string()
            .into_bytes()
    }
}

/// The query parameter of the older form.
pub(crate) const FINGERPRINT_PARAM: &str = "bindCertificateFingerprint";

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const FP: &str = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU";

    #[test]
    fn accepts_certificates_and_a_fingerprint_only() {
        let b = CertificateBinding::new(PEM, FP).unwrap();
        assert_eq!(b.fingerprint(), FP);
        let body: serde_json::Value = serde_json::from_slice(&b.post_body()).unwrap();
        assert_eq!(body["certificate_chain"], PEM);
        assert!(format!("{b:?}").contains(FP) && !format!("{b:?}").contains("MIIB"));
        let with_key =
            format!("{PEM}-----BEGIN PRIVATE KEY-----\nsekrit\n-----END PRIVATE KEY-----\n");
        let err = CertificateBinding::new(with_key, FP).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(!err.to_string().contains("sekrit"));
        assert!(CertificateBinding::new("", FP).is_err());
        for bad in ["", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", &FP[1..]] {
            assert!(CertificateBinding::new(PEM, bad).is_err(), "{bad}");
        }
    }
}
