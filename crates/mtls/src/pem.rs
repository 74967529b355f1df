//! PEM reading with typed errors (rustls-pki-types does the decoding).

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::CredentialError;

fn pem_error(e: pem::Error) -> CredentialError {
    match e {
        pem::Error::NoItemsFound => {
            CredentialError::Pem("no PEM section of the expected kind".into())
        }
        pem::Error::MissingSectionEnd { .. } => {
            CredentialError::Pem("a PEM section is truncated (no END line)".into())
        }
        pem::Error::IllegalSectionStart { .. } => {
            CredentialError::Pem("a PEM section has a malformed BEGIN line".into())
        }
        pem::Error::Base64Decode(detail) => {
            CredentialError::Pem(format!("a PEM section is not valid base64 ({detail})"))
        }
        other => CredentialError::Pem(other.to_string()),
    }
}

/// Every `CERTIFICATE` section, in order; other sections (keys) are skipped. None at all is an error.
pub(crate) fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CredentialError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(CredentialError::NoCertificates);
    }
    Ok(certs)
}

/// The first private key: PKCS#8 `PRIVATE KEY`, SEC1 `EC PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`.
pub(crate) fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, CredentialError> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(CredentialError::NoPrivateKey),
        Err(e) => Err(pem_error(e)),
    }
}

/// How many private key sections (of any of the kinds [`private_key`] reads) `pem` holds.
pub(crate) fn count_private_keys(pem: &[u8]) -> Result<usize, CredentialError> {
    let mut keys = 0usize;
    for section in <(pem::SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem) {
        // The bytes may be a key: zeroed when dropped.
        let (kind, der) = section.map_err(pem_error)?;
        drop(zeroize::Zeroizing::new(der));
        if matches!(
            kind,
            pem::SectionKind::PrivateKey
                | pem::SectionKind::EcPrivateKey
                | pem::SectionKind::RsaPrivateKey
        ) {
            keys = keys.saturating_add(1);
        }
    }
    Ok(keys)
}
