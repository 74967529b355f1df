//! Verifying a peer's X509-SVID chain: SPIFFE rules first, then RFC 5280 path validation against
//! the bundle of the peer's own trust domain, then the authorizer.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::DigitallySignedStruct;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use crate::authorize::Authorizer;
use crate::bundle::TrustBundleSet;
use crate::cert::{self, Purpose};
use crate::chain_cache::{Verified, VerifiedChainCache};
use crate::error::{ChainPosition, VerificationError};
use crate::spiffe_id::SpiffeId;
use crate::store::SvidStore;

/// The signature algorithms of the ring provider, used for path validation and handshake signatures.
pub(crate) fn ring_algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// Verifies a peer's chain (leaf first, then intermediates) as an X509-SVID and returns its SPIFFE
/// ID. Does not authorize: see [`Authorizer`] or [`SpiffeVerifier`].
///
/// In order: exactly one URI SAN holding a SPIFFE ID with a non-empty path; the leaf is not a CA,
/// has `digitalSignature` and neither `keyCertSign` nor `cRLSign`; an EKU extension, when present,
/// includes `purpose`; the leaf is within its validity period; a bundle exists for the ID's trust
/// domain; an RFC 5280 path leads from the leaf through the given intermediates to one of that
/// bundle's roots at `now` (rustls-webpki, with the bundle's roots as the only trust anchors and no
/// DNS-name check); and every intermediate has `keyCertSign`.
pub fn verify_x509_svid(
    chain: &[CertificateDer<'_>],
    bundles: &TrustBundleSet,
    purpose: Purpose,
    now: UnixTime,
) -> Result<SpiffeId, VerificationError> {
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or(VerificationError::NoCertificate)?;
    verify_with(
        leaf,
        intermediates,
        bundles,
        purpose,
        now,
        &ring_algorithms(),
    )
    .map(|(id, _)| id)
}

/// Verifies as [`verify_x509_svid`] does; also returns the leaf's validity period in seconds.
fn verify_with(
    leaf_der: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    bundles: &TrustBundleSet,
    purpose: Purpose,
    now: UnixTime,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<(SpiffeId, (i64, i64)), VerificationError> {
    let leaf = cert::parse(leaf_der, ChainPosition::Leaf)?;
    let id = cert::spiffe_id(&leaf)?;
    cert::check_leaf_usage(&leaf, purpose)?;

    let (not_before, not_after) = cert::validity(&leaf);
    let now_time = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs());
    if now_time > not_after {
        return Err(VerificationError::Expired {
            position: ChainPosition::Leaf,
            not_after: Some(not_after),
        });
    }
    if now_time < not_before {
        return Err(VerificationError::NotYetValid {
            position: ChainPosition::Leaf,
            not_before: Some(not_before),
        });
    }

    let bundle = bundles
        .for_id(&id)
        .filter(|b| !b.anchors().is_empty())
        .ok_or_else(|| VerificationError::UnknownTrustDomain(id.trust_domain_name().to_owned()))?;

    let ee = EndEntityCert::try_from(leaf_der).map_err(|e| VerificationError::Malformed {
        position: ChainPosition::Leaf,
        detail: format!("{e:?}"),
    })?;
    let usage = match purpose {
        Purpose::ServerAuth => KeyUsage::server_auth(),
        Purpose::ClientAuth => KeyUsage::client_auth(),
    };
    ee.verify_for_usage(
        algorithms.all,
        bundle.anchors(),
        intermediates,
        now,
        usage,
        None,
        None,
    )
    .map_err(|e| path_error(e, &id, purpose))?;
    // After path validation, so a chain that leads nowhere is reported as untrusted first.
    for der in intermediates {
        cert::check_intermediate_usage(der)?;
    }
    Ok((id, cert::validity_secs(&leaf)))
}

/// The window in which every certificate of a verified chain is valid: the latest notBefore and
/// the earliest notAfter. `None` when an intermediate does not parse (then nothing is cached).
fn chain_window(leaf: (i64, i64), intermediates: &[CertificateDer<'_>]) -> Option<(i64, i64)> {
    let mut window = leaf;
    for der in intermediates {
        let parsed = cert::parse(der, ChainPosition::Intermediate).ok()?;
        let (not_before, not_after) = cert::validity_secs(&parsed);
        window = (window.0.max(not_before), window.1.min(not_after));
    }
    Some(window)
}

/// Maps a webpki error to a reason. The leaf's own validity, CA flag and EKU were checked before,
/// so time and EKU errors here are about an intermediate.
fn path_error(e: webpki::Error, id: &SpiffeId, purpose: Purpose) -> VerificationError {
    use webpki::Error as W;
    #[allow(deprecated)]
    match e {
        W::CertExpired { not_after, .. } => VerificationError::Expired {
            position: ChainPosition::Intermediate,
            not_after: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(not_after.as_secs())),
        },
        W::CertNotValidYet { not_before, .. } => VerificationError::NotYetValid {
            position: ChainPosition::Intermediate,
            not_before: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(not_before.as_secs())),
        },
        // An issuer whose name matches but whose key did not sign the certificate is, for the
        // peer, the same failure as an unknown issuer: no path to one of the domain's roots.
        W::UnknownIssuer | W::InvalidSignatureForPublicKey | W::SignatureAlgorithmMismatch => {
            VerificationError::UntrustedChain(id.trust_domain_name().to_owned())
        }
        W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) => {
            VerificationError::WrongExtendedKeyUsage {
                position: ChainPosition::Intermediate,
                needed: purpose.name(),
            }
        }
        W::CaUsedAsEndEntity => VerificationError::LeafIsCa,
        other => VerificationError::PathValidation(format!("{other:?}")),
    }
}

#[derive(Clone)]
enum Bundles {
    Store(SvidStore),
    Fixed(Arc<TrustBundleSet>),
}

/// Verification plus authorization of a peer: what the rustls verifiers of this crate run on each
/// handshake, usable (and timeable) on its own.
///
/// Trust bundles come from an [`SvidStore`] (so they rotate with the credentials) or a fixed set.
#[derive(Clone)]
pub struct SpiffeVerifier {
    bundles: Bundles,
    authorizer: Authorizer,
    algorithms: WebPkiSupportedAlgorithms,
    cache: Option<VerifiedChainCache>,
}

impl SpiffeVerifier {
    /// A verifier reading the current trust bundles of `store` on every call.
    pub fn new(store: SvidStore, authorizer: Authorizer) -> Self {
        Self {
            bundles: Bundles::Store(store),
            authorizer,
            algorithms: ring_algorithms(),
            cache: None,
        }
    }

    /// A verifier with a fixed set of trust bundles.
    pub fn with_bundles(bundles: TrustBundleSet, authorizer: Authorizer) -> Self {
        Self {
            bundles: Bundles::Fixed(Arc::new(bundles)),
            authorizer,
            algorithms: ring_algorithms(),
            cache: None,
        }
    }

    /// Remembers chains that verified in `cache`, so a repeat handshake with a known peer skips
    /// parsing and path validation. The exact chain bytes, the purpose, the trust bundles'
    /// generation and the validity period are checked on every use; the authorizer always runs.
    /// A chain that verified and was authorized is only staged until its peer proves it holds the
    /// leaf's key ([`SpiffeVerifier::confirm_key_possession`], which the handshake signature
    /// checks below call). See [`VerifiedChainCache`].
    #[must_use]
    pub fn with_cache(mut self, cache: VerifiedChainCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The verified-chain cache, when one was given.
    pub fn cache(&self) -> Option<&VerifiedChainCache> {
        self.cache.as_ref()
    }

    /// The authorizer applied after verification.
    pub fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    /// The signature algorithms used (the ring provider's).
    pub fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.algorithms
    }

    /// Verifies `chain` for `purpose` at `now`, then authorizes the SPIFFE ID it carries.
    ///
    /// With a cache, a chain verified here is staged, not yet cached: see
    /// [`SpiffeVerifier::confirm_key_possession`].
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        purpose: Purpose,
        now: UnixTime,
    ) -> Result<SpiffeId, VerificationError> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or(VerificationError::NoCertificate)?;
        self.verify_parts(leaf, intermediates, purpose, now)
    }

    /// [`SpiffeVerifier::verify`] with the leaf and the intermediates apart, as rustls hands them.
    pub fn verify_parts(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        purpose: Purpose,
        now: UnixTime,
    ) -> Result<SpiffeId, VerificationError> {
        let (id, fresh) = match &self.bundles {
            Bundles::Store(store) => store.with_current(|m| {
                self.verify_against(leaf, intermediates, m.bundles(), purpose, now)
            })?,
            Bundles::Fixed(set) => self.verify_against(leaf, intermediates, set, purpose, now)?,
        };
        self.authorizer.authorize(&id)?;
        // Only an allowed peer is staged, and only its handshake signature makes it an entry.
        if let (Some(cache), Some(fresh)) = (&self.cache, fresh) {
            cache.stage(
                leaf,
                intermediates,
                Verified {
                    id: &id,
                    purpose,
                    bundles_generation: fresh.bundles_generation,
                    not_before: fresh.not_before,
                    not_after: fresh.not_after,
                },
            );
        }
        Ok(id)
    }

    /// Tells the cache that the peer presenting `leaf` has just proved it holds the leaf's private
    /// key (a signature by that key over data the peer could not have chosen, like a TLS
    /// CertificateVerify), so the chains with this leaf that [`SpiffeVerifier::verify`] staged
    /// become cache entries. Without a cache, does nothing.
    ///
    /// The TLS verifiers of this crate call it through
    /// [`SpiffeVerifier::verify_tls13_signature`]; call it yourself only after such a proof from
    /// your own protocol. Calling it wrongly cannot let a peer through (a hit still runs the
    /// authorizer, and a handshake still checks the signature), but lets a keyless peer take
    /// room in the cache.
    pub fn confirm_key_possession(&self, leaf: &CertificateDer<'_>) {
        if let Some(cache) = &self.cache {
            cache.commit(leaf);
        }
    }

    /// Checks a TLS 1.3 handshake signature (CertificateVerify) by the key of `cert` and, when it
    /// holds, [confirms](SpiffeVerifier::confirm_key_possession) that the peer holds that key.
    pub fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let valid = rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)?;
        self.confirm_key_possession(cert);
        Ok(valid)
    }

    // Deliberately parallel to `verify_tls13_signature` above: rustls asks for each TLS version
    // by its own method and checks the signature by its own function.

    /// Checks a TLS 1.2 handshake signature by the key of `cert` and, when it holds,
    /// [confirms](SpiffeVerifier::confirm_key_possession) that the peer holds that key.
    pub fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let valid = rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)?;
        self.confirm_key_possession(cert);
        Ok(valid)
    }

    /// Verifies against `bundles` (or answers from the cache); a chain verified afresh comes back
    /// with what the cache needs to stage it.
    fn verify_against(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        bundles: &TrustBundleSet,
        purpose: Purpose,
        now: UnixTime,
    ) -> Result<(SpiffeId, Option<Fresh>), VerificationError> {
        let algorithms = &self.algorithms;
        let Some(cache) = &self.cache else {
            return verify_with(leaf, intermediates, bundles, purpose, now, algorithms)
                .map(|(id, _)| (id, None));
        };
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let generation = bundles.generation();
        if let Some(id) = cache.get(leaf, intermediates, purpose, generation, now_secs) {
            return Ok((id, None));
        }
        let (id, leaf_window) =
            verify_with(leaf, intermediates, bundles, purpose, now, algorithms)?;
        let fresh = chain_window(leaf_window, intermediates).map(|(not_before, not_after)| Fresh {
            bundles_generation: generation,
            not_before,
            not_after,
        });
        Ok((id, fresh))
    }
}

/// What a chain verified afresh needs to be staged in the cache.
struct Fresh {
    bundles_generation: u64,
    not_before: i64,
    not_after: i64,
}

impl fmt::Debug for SpiffeVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bundles = match &self.bundles {
            Bundles::Store(_) => "rotating",
            Bundles::Fixed(_) => "fixed",
        };
        f.debug_struct("SpiffeVerifier")
            .field("bundles", &bundles)
            .field("authorizer", &self.authorizer)
            .field("cache", &self.cache)
            .finish()
    }
}

/// The SPIFFE ID in a leaf certificate that has already been verified (e.g. the peer certificate
/// of a completed handshake). `None` if it carries no single valid SPIFFE ID.
pub fn spiffe_id_of(leaf: &CertificateDer<'_>) -> Option<SpiffeId> {
    let parsed = cert::parse(leaf, ChainPosition::Leaf).ok()?;
    cert::spiffe_id(&parsed).ok()
}
