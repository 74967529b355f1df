//! Managed workload identity for mutual TLS: SPIFFE X509-SVIDs as Google Cloud delivers them.
//!
//! A workload on GCE or GKE finds its X.509 credentials in a directory the node agent keeps fresh
//! ([`CredentialsDir`]), or asks the metadata server for them ([`MetadataSource`]). This crate
//! loads them ([`X509Svid`], [`TrustBundleSet`]), keeps them
//! current as they rotate ([`SvidStore`], [`Watcher`]), verifies peers as the X509-SVID spec asks
//! (one SPIFFE ID in one URI SAN, not a CA, path validation against the bundle of the peer's own
//! trust domain — [`verify_x509_svid`]), authorizes them by SPIFFE ID ([`Authorizer`]), and builds
//! rustls configs and tokio-rustls helpers for both ends of a connection ([`MtlsConfig`],
//! [`MtlsConnector`], [`MtlsAcceptor`]). A [`VerifiedChainCache`] lets repeat handshakes with known
//! peers skip path validation while still re-checking expiry, bundles and policy every time.
//!
//! ```no_run
//! use std::sync::Arc;
//! use workload_auth_mtls::*;
//!
//! # async fn run() -> workload_auth_core::Result<()> {
//! let dir = CredentialsDir::default_location();
//! let store = SvidStore::new(dir.load_blocking()?);
//! let _watcher = Watcher::spawn(store.clone(), Arc::new(dir), WatchOptions::default())?;
//!
//! let allow = Authorizer::path_prefix(SpiffeId::parse("spiffe://td.svc.id.goog/ns/prod")?);
//! let mtls = MtlsConfig::new(store, allow);
//! let acceptor = MtlsAcceptor::from_config(&mtls)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await.map_err(|e| {
//!     workload_auth_core::Error::new(workload_auth_core::ErrorKind::Io, "bind").with_source(e)
//! })?;
//! # let (tcp, _) = listener.accept().await.unwrap();
//! let (_stream, peer) = acceptor.accept(tcp).await?;
//! println!("hello {peer}");
//! # Ok(()) }
//! ```
//!
//! Deliberately not here: DNS-name checks (SPIFFE peers are named by SPIFFE ID only), pooling roots
//! across trust domains, TLS session resumption (see [`tls`] for why), OpenSSL, and HTTP of its own
//! (the metadata-server source goes through `workload-auth-metadata`'s client).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod authorize;
mod bundle;
mod cert;
mod chain_cache;
mod credentials_reader;
mod error;
mod metadata_source;
mod pem;
mod source;
mod spiffe_id;
mod store;
mod stream;
mod svid;
pub mod tls;
mod verify;
mod watcher;
mod workload_certificates;

pub use authorize::Authorizer;
pub use bundle::{TrustBundle, TrustBundleSet};
pub use cert::Purpose;
pub use chain_cache::{ChainCacheStats, VerifiedChainCache};
pub use credentials_reader::{
    CA_CERTIFICATES_FILE, CERTIFICATES_FILE, COMBINED_FILE, CONFIG_STATUS_FILE, CredentialLayout,
    CredentialsDir, DEFAULT_CREDENTIALS_DIR, PRIVATE_KEY_FILE, SPIFFE_CREDENTIAL_BUNDLE_FILE,
    SPIFFE_CREDENTIAL_FOLDER_ENV, SPIFFE_TRUST_BUNDLE_SUFFIX, TRUST_BUNDLES_FILE,
};
pub use error::{ChainPosition, CredentialError, VerificationError};
pub use metadata_source::MetadataSource;
pub use source::{ChangeMarker, LoadFuture, MemorySource, SvidSource};
pub use spiffe_id::{MAX_SPIFFE_ID_LEN, SpiffeId, SpiffeIdError, TrustDomain};
pub use store::{ReloadStatus, SvidStore, X509Material};
pub use stream::{MtlsAcceptor, MtlsConnector, handshake_error};
pub use svid::X509Svid;
pub use tls::{
    MtlsConfig, SpiffeClientCertVerifier, SpiffeServerCertVerifier, SvidResolver, TlsVersions,
    peer_spiffe_id,
};
pub use verify::{SpiffeVerifier, spiffe_id_of, verify_x509_svid};
pub use watcher::{WatchOptions, Watcher};

/// The rustls and pki-types items this crate's API takes and returns (TLS configurations,
/// certificates, keys, server names, times), so that a caller can name them without depending on
/// rustls at the same version (`PemObject` reads certificates and keys from PEM). Custom
/// verifiers and resolvers need rustls itself.
pub use rustls::{ClientConfig, ServerConfig};
pub use rustls_pki_types::pem::PemObject;
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
