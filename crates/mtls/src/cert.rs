//! Reading the SPIFFE-relevant facts out of a certificate with x509-parser.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::error::{ChainPosition, VerificationError};
use crate::spiffe_id::{SpiffeId, SpiffeIdError};

/// Parses one DER certificate, refusing trailing bytes.
pub(crate) fn parse(
    der: &[u8],
    position: ChainPosition,
) -> Result<X509Certificate<'_>, VerificationError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(VerificationError::Malformed {
            position,
            detail: "trailing bytes after the certificate".into(),
        }),
        Err(e) => Err(VerificationError::Malformed {
            position,
            detail: e.to_string(),
        }),
    }
}

fn malformed(e: impl std::fmt::Display) -> VerificationError {
    VerificationError::Malformed {
        position: ChainPosition::Leaf,
        detail: e.to_string(),
    }
}

/// The SPIFFE ID of an X509-SVID: its one URI SAN, which must be a SPIFFE ID with a non-empty path.
pub(crate) fn spiffe_id(leaf: &X509Certificate<'_>) -> Result<SpiffeId, VerificationError> {
    let san = leaf.subject_alternative_name().map_err(malformed)?;
    let mut uris = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let uri = match (uris.next(), uris.next()) {
        (None, _) => return Err(VerificationError::NoUriSan),
        (Some(uri), None) => uri,
        (Some(_), Some(_)) => return Err(VerificationError::MultipleUriSans(2 + uris.count())),
    };
    let id = SpiffeId::parse(uri).map_err(|reason| match reason {
        SpiffeIdError::WrongScheme if !uri.to_ascii_lowercase().starts_with("spiffe://") => {
            VerificationError::NotSpiffeUri { uri: uri.into() }
        }
        reason => VerificationError::InvalidSpiffeId {
            uri: uri.into(),
            reason,
        },
    })?;
    if id.path().is_empty() {
        return Err(VerificationError::EmptyPath(id));
    }
    Ok(id)
}

/// The X509-SVID rules for a leaf other than its name: not a CA, may sign, may not sign
/// certificates or CRLs, and (when an EKU extension is present) may act in the needed role.
pub(crate) fn check_leaf_usage(
    leaf: &X509Certificate<'_>,
    needed: Purpose,
) -> Result<(), VerificationError> {
    if let Some(bc) = leaf.basic_constraints().map_err(malformed)?
        && bc.value.ca
    {
        return Err(VerificationError::LeafIsCa);
    }
    let Some(ku) = leaf.key_usage().map_err(malformed)? else {
        return Err(VerificationError::MissingDigitalSignature);
    };
    if ku.value.key_cert_sign() {
        return Err(VerificationError::ForbiddenKeyUsage("keyCertSign"));
    }
    if ku.value.crl_sign() {
        return Err(VerificationError::ForbiddenKeyUsage("cRLSign"));
    }
    if !ku.value.digital_signature() {
        return Err(VerificationError::MissingDigitalSignature);
    }
    if let Some(eku) = leaf.extended_key_usage().map_err(malformed)? {
        let ok = match needed {
            Purpose::ServerAuth => eku.value.server_auth,
            Purpose::ClientAuth => eku.value.client_auth,
        };
        if !ok {
            return Err(VerificationError::WrongExtendedKeyUsage {
                position: ChainPosition::Leaf,
                needed: needed.name(),
            });
        }
    }
    Ok(())
}

/// The X509-SVID rule for a signing certificate between the leaf and the root: its key usage
/// includes `keyCertSign`. (rustls-webpki checks basicConstraints, not key usage, on issuers.)
pub(crate) fn check_intermediate_usage(der: &[u8]) -> Result<(), VerificationError> {
    let cert = parse(der, ChainPosition::Intermediate)?;
    let usage = cert.key_usage().map_err(|e| VerificationError::Malformed {
        position: ChainPosition::Intermediate,
        detail: e.to_string(),
    })?;
    match usage {
        Some(ku) if ku.value.key_cert_sign() => Ok(()),
        _ => Err(VerificationError::IntermediateCannotSign),
    }
}

/// The validity period of a certificate, seconds since the Unix epoch (notBefore, notAfter).
pub(crate) fn validity_secs(cert: &X509Certificate<'_>) -> (i64, i64) {
    let v = cert.validity();
    (v.not_before.timestamp(), v.not_after.timestamp())
}

/// The validity period of a certificate.
pub(crate) fn validity(cert: &X509Certificate<'_>) -> (SystemTime, SystemTime) {
    let v = cert.validity();
    (
        to_system_time(v.not_before.timestamp()),
        to_system_time(v.not_after.timestamp()),
    )
}

fn to_system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        // Clamped so no later arithmetic on it can overflow (X.509 times end at year 9999 anyway).
        let secs = secs
            .unsigned_abs()
            .min(workload_auth_core::token::MAX_EXPIRY_UNIX_SECONDS);
        UNIX_EPOCH + Duration::from_secs(secs)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// The role the certificate being verified plays in the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The peer is the TLS server (we are the client): `id-kp-serverAuth`.
    ServerAuth,
    /// The peer is the TLS client (we are the server): `id-kp-clientAuth`.
    ClientAuth,
}

impl Purpose {
    /// The EKU name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::ServerAuth => "serverAuth",
            Self::ClientAuth => "clientAuth",
        }
    }
}

/// The algorithm family of a certificate's public key (`ECDSA`, `Ed25519`, `RSA`), as the private
/// key's is named, or `None` for any other.
pub(crate) fn key_algorithm(cert: &X509Certificate<'_>) -> Option<&'static str> {
    use x509_parser::oid_registry::{
        OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
    };
    let oid = &cert.public_key().algorithm.algorithm;
    if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        Some("ECDSA")
    } else if *oid == OID_PKCS1_RSAENCRYPTION {
        Some("RSA")
    } else if *oid == OID_SIG_ED25519 {
        Some("Ed25519")
    } else {
        None
    }
}

/// The trust domains named by the SPIFFE IDs among a certificate's URI SANs. A SPIFFE signing
/// certificate may carry its trust domain's ID (`spiffe://td`); most carry none.
pub(crate) fn uri_trust_domains(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => SpiffeId::parse(uri).ok(),
            _ => None,
        })
        .map(|id| id.trust_domain_name().to_owned())
        .collect()
}
