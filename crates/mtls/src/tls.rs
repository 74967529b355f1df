//! rustls integration: SPIFFE certificate verifiers, a certificate resolver backed by the rotating
//! SVID, and `ClientConfig` / `ServerConfig` builders (ring provider, TLS 1.3 unless asked).
//!
//! # Session resumption is off
//!
//! A resumed TLS session skips certificate verification entirely: the peer's identity, its
//! certificate's expiry and the authorizer are not checked again, and a ticket issued before a
//! policy change or a trust-bundle rotation would still be honoured. So the configs built here
//! neither store sessions nor send tickets (client: `Resumption::disabled()`; server:
//! `NoServerSessionStorage` and zero TLS 1.3 tickets), like spiffe-rustls. Every handshake is a
//! full one and runs [`SpiffeVerifier`] against the current bundles and policy.
//!
//! What makes repeat handshakes with a known peer cheaper instead is a [`VerifiedChainCache`]
//! ([`MtlsConfig::with_chain_cache`]): it skips parsing and path validation of a chain seen before,
//! but re-checks its validity period and the bundles' generation on every use, always runs the
//! authorizer, and leaves the handshake's own signatures to be checked as usual. A chain enters it
//! only once its peer was allowed and its handshake signature (CertificateVerify) verified.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use workload_auth_core::{Error, ErrorKind, Result};

use crate::authorize::Authorizer;
use crate::cert::Purpose;
use crate::chain_cache::VerifiedChainCache;
use crate::error::CredentialError;
use crate::spiffe_id::SpiffeId;
use crate::store::SvidStore;
use crate::verify::{SpiffeVerifier, spiffe_id_of};

/// Verifies the server we connect to: a SPIFFE X509-SVID with `serverAuth` allowed, then the
/// authorizer. The server name is ignored (no DNS-name check).
#[derive(Clone, Debug)]
pub struct SpiffeServerCertVerifier {
    verifier: SpiffeVerifier,
}

impl SpiffeServerCertVerifier {
    /// Wraps `verifier`.
    pub fn new(verifier: SpiffeVerifier) -> Self {
        Self { verifier }
    }
}

// Deliberately parallel to the `ClientCertVerifier` impl below: rustls has one trait per side,
// each with its own signature methods; both forward to the one `SpiffeVerifier`, which holds the
// logic, so only these few forwarding lines repeat.
impl ServerCertVerifier for SpiffeServerCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier
            .verify_parts(end_entity, intermediates, Purpose::ServerAuth, now)
            .map_err(|e| e.into_rustls())?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier.algorithms().supported_schemes()
    }
}

/// Verifies the clients that connect to us: a certificate is required, must be a SPIFFE X509-SVID
/// with `clientAuth` allowed, and must pass the authorizer.
#[derive(Clone, Debug)]
pub struct SpiffeClientCertVerifier {
    verifier: SpiffeVerifier,
}

impl SpiffeClientCertVerifier {
    /// Wraps `verifier`.
    pub fn new(verifier: SpiffeVerifier) -> Self {
        Self { verifier }
    }
}

// Deliberately parallel to the `ServerCertVerifier` impl above (one rustls trait per side); the
// signature methods forward to the same `SpiffeVerifier`.
impl ClientCertVerifier for SpiffeClientCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Roots of several trust domains may be trusted; SVID holders have one certificate anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verifier
            .verify_parts(end_entity, intermediates, Purpose::ClientAuth, now)
            .map_err(|e| e.into_rustls())?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier.algorithms().supported_schemes()
    }
}

/// Presents the store's current SVID, so a handshake that starts after a rotation uses the new
/// certificate and key at once.
#[derive(Clone, Debug)]
pub struct SvidResolver {
    store: SvidStore,
}

impl SvidResolver {
    /// A resolver over `store`.
    pub fn new(store: SvidStore) -> Self {
        Self { store }
    }

    /// The current chain and key; `None` when the platform keeps the key hidden (the config
    /// builders and the connector refuse that case first, with a typed error).
    fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.store.with_current(|m| {
            let svid = m.svid();
            svid.has_private_key().then(|| svid.certified_key().clone())
        })
    }
}

impl ResolvesClientCert for SvidResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for SvidResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// Which TLS versions to speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsVersions {
    /// TLS 1.3 only (the default).
    #[default]
    Tls13Only,
    /// TLS 1.3, and TLS 1.2 for peers that cannot do better.
    Tls12AndTls13,
}

impl TlsVersions {
    fn versions(self) -> &'static [&'static SupportedProtocolVersion] {
        static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
        static TLS12_AND_13: &[&SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        match self {
            Self::Tls13Only => TLS13_ONLY,
            Self::Tls12AndTls13 => TLS12_AND_13,
        }
    }
}

/// Builds rustls configs for mutual TLS with SPIFFE identities.
///
/// ```
/// # fn demo(store: workload_auth_mtls::SvidStore) -> workload_auth_core::Result<()> {
/// use workload_auth_mtls::{Authorizer, MtlsConfig, TrustDomain};
/// let mtls = MtlsConfig::new(store, Authorizer::member_of(TrustDomain::new("example.org")?));
/// let server = mtls.server_config()?; // client certificates required
/// let client = mtls.client_config()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MtlsConfig {
    store: SvidStore,
    authorizer: Authorizer,
    versions: TlsVersions,
    alpn: Vec<Vec<u8>>,
    cache: Option<VerifiedChainCache>,
}

impl MtlsConfig {
    /// Configs presenting the SVID of `store` and accepting peers that verify against its trust
    /// bundles and that `authorizer` allows.
    pub fn new(store: SvidStore, authorizer: Authorizer) -> Self {
        Self {
            store,
            authorizer,
            versions: TlsVersions::Tls13Only,
            alpn: Vec::new(),
            cache: None,
        }
    }

    /// Which TLS versions to allow (TLS 1.3 only by default).
    #[must_use]
    pub fn with_versions(mut self, versions: TlsVersions) -> Self {
        self.versions = versions;
        self
    }

    /// ALPN protocols to offer (client) or accept (server), in preference order.
    #[must_use]
    pub fn with_alpn(mut self, protocols: impl IntoIterator<Item = Vec<u8>>) -> Self {
        self.alpn = protocols.into_iter().collect();
        self
    }

    /// Remembers peer chains that verified, so repeat handshakes with known peers skip path
    /// validation (see [`VerifiedChainCache`] for what is still checked every time). Configs
    /// built from this `MtlsConfig` share `cache`.
    #[must_use]
    pub fn with_chain_cache(mut self, cache: VerifiedChainCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The verifier (verification + authorization) the configs use, e.g. to time it alone.
    pub fn verifier(&self) -> SpiffeVerifier {
        let verifier = SpiffeVerifier::new(self.store.clone(), self.authorizer.clone());
        match &self.cache {
            Some(cache) => verifier.with_cache(cache.clone()),
            None => verifier,
        }
    }

    /// Fails with [`CredentialError::PrivateKeyHidden`] (naming where the material came from)
    /// when the current SVID has no private key, so a handshake is refused before it starts
    /// rather than failing inside rustls for a reason the peer cannot explain.
    pub fn check_private_key(&self) -> Result<()> {
        check_private_key(&self.store)
    }

    pub(crate) fn store(&self) -> &SvidStore {
        &self.store
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A client config: presents the current SVID, verifies the server as a SPIFFE peer.
    ///
    /// Fails with [`CredentialError::PrivateKeyHidden`] when the SVID has no private key.
    pub fn client_config(&self) -> Result<ClientConfig> {
        self.check_private_key()?;
        let mut config = ClientConfig::builder_with_provider(Self::provider())
            .with_protocol_versions(self.versions.versions())
            .map_err(config_error)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerCertVerifier::new(
                self.verifier(),
            )))
            .with_client_cert_resolver(Arc::new(SvidResolver::new(self.store.clone())));
        config.resumption = Resumption::disabled();
        config.alpn_protocols = self.alpn.clone();
        Ok(config)
    }

    /// A server config: presents the current SVID, requires and verifies a client SVID.
    ///
    /// Fails with [`CredentialError::PrivateKeyHidden`] when the SVID has no private key.
    pub fn server_config(&self) -> Result<ServerConfig> {
        self.check_private_key()?;
        let mut config = ServerConfig::builder_with_provider(Self::provider())
            .with_protocol_versions(self.versions.versions())
            .map_err(config_error)?
            .with_client_cert_verifier(Arc::new(SpiffeClientCertVerifier::new(self.verifier())))
            .with_cert_resolver(Arc::new(SvidResolver::new(self.store.clone())));
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.alpn_protocols = self.alpn.clone();
        Ok(config)
    }
}

/// [`CredentialError::PrivateKeyHidden`] at the material's origin when `store`'s SVID has no key.
pub(crate) fn check_private_key(store: &SvidStore) -> Result<()> {
    store.with_current(|m| {
        if m.svid().has_private_key() {
            return Ok(());
        }
        Err(CredentialError::PrivateKeyHidden
            .at(m.origin().to_owned())
            .with_hint(format!(
                "the platform delivered the certificate of {} without its private key; use it \
                 for certificate-bound tokens, or run where the key is delivered to make mTLS \
                 connections",
                m.svid().spiffe_id()
            )))
    })
}

fn config_error(e: rustls::Error) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        "cannot build the TLS configuration",
    )
    .with_source(e)
}

/// The SPIFFE ID of the peer of a completed handshake (client or server side), read from the
/// certificate the verifiers of this crate accepted.
pub fn peer_spiffe_id(conn: &CommonState) -> Option<SpiffeId> {
    conn.peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(spiffe_id_of)
}

impl fmt::Display for TlsVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tls13Only => "TLS 1.3",
            Self::Tls12AndTls13 => "TLS 1.2 and 1.3",
        })
    }
}
