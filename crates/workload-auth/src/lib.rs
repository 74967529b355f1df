//! workload-auth: a workload proves who it is — to Google APIs with OAuth tokens found through
//! Application Default Credentials, and to other workloads over mutual TLS with its managed
//! workload identity (a SPIFFE X.509 certificate).
//!
//! This is the crate a Rust program depends on; it gathers the focused crates behind one door:
//!
//! - [`Credentials`] (built by [`CredentialsBuilder`] or [`default_credentials`]): access tokens,
//!   ID tokens, request headers and an [`Explanation`] of why these credentials were chosen. Tokens
//!   are cached lock-free and refreshed in the background before they expire.
//! - [`WorkloadIdentity`]: the workload's X509-SVID and trust bundles, kept current as they rotate,
//!   ready to make [`mtls`] clients and servers that authorize peers by SPIFFE ID ([`blocking`] has
//!   them over plain blocking sockets, for programs without an async runtime).
//!
//! Agent Identity: when the workload certificate belongs to an agent-identity trust domain,
//! tokens are bound to it ([`Credentials::is_bound`]); they come only from
//! [`Credentials::bound_access_token`], together with the certificate to present over mutual TLS
//! ([`BoundAccessToken`]), and a plain [`Credentials::access_token`] is refused.
//!
//! Every operation is async first, with a `_blocking` twin for callers without a runtime; building
//! needs no runtime at all (the library runs its own small one for background work).
//!
//! ```no_run
//! # async fn run() -> workload_auth::Result<()> {
//! use workload_auth::mtls::{Authorizer, SpiffeId};
//! use workload_auth::{WorkloadIdentity, default_credentials};
//!
//! // To Google APIs.
//! let credentials = default_credentials()?;
//! let token = credentials.access_token().await?;
//! println!("{} token, {:?} left", credentials.credential_type(), token.expires_in());
//!
//! // To another workload.
//! let identity = WorkloadIdentity::from_directory(None)?; // /var/run/secrets/workload-spiffe-credentials
//! let backend = SpiffeId::parse("spiffe://my-pool.global.123.workload.id.goog/ns/prod/sa/backend")?;
//! let connector = identity.connector(Authorizer::exact(backend))?;
//! let (stream, peer) = connector.connect("10.0.0.7:8443").await?;
//! # let _ = (stream, peer); Ok(()) }
//! ```
//!
//! Tests and local runs point it at the emulator (crate `workload-auth-emulator`, or the
//! `workload-auth emulator` command) instead of Google:
//!
//! ```
//! use workload_auth::{CredentialsBuilder, EnvSource};
//! use workload_auth_emulator::{Emulator, EmulatorConfig};
//!
//! let emulator = Emulator::start_in_thread(EmulatorConfig::default())?;
//! let home = tempfile::tempdir()?; // no gcloud credentials of the machine's user
//! let env = EnvSource::from_vars([("GCE_METADATA_HOST", emulator.host())]).with_home(home.path());
//! let credentials = CredentialsBuilder::new().with_env(env).build()?;
//! let token = credentials.access_token_blocking()?; // or `.access_token().await`
//! assert!(token.expires_in().as_secs() > 60);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! More examples that run anywhere (they start the built-in emulator) are in `examples/`.
//!
//! What it deliberately does not do: call any Google API for you, speak HTTP beyond what tokens
//! need, or use OpenSSL.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod blocking;
mod identity;

pub use identity::WorkloadIdentity;
pub use workload_auth_adc::downscoped::{
    AccessBoundary, AccessBoundaryRule, AvailabilityCondition, ClientSideDownscoper,
    DownscopedCredentials,
};
pub use workload_auth_adc::{
    BindingForm, BoundAccessToken, BoundCertificate, BoundIdToken, Builder as CredentialsBuilder,
    CredentialType, Credentials, EnvSource, Explanation, RegionalState, RequestHeaders,
    TokenBinding,
};
pub use workload_auth_core::{
    AccessToken, CacheConfig, Error, ErrorKind, IdToken, Result, Retry, RetryPolicy, SecretString,
};
pub use workload_auth_metadata::{MdsMtlsMode, MdsTransport};

/// Application Default Credentials, every credential type and its explanation.
pub mod adc {
    pub use workload_auth_adc::*;
}

/// The GCE metadata-server client and on-Google-Cloud detection.
pub mod metadata {
    pub use workload_auth_metadata::*;
}

/// SPIFFE IDs, trust bundles, verification, authorizers and rustls configurations.
pub mod mtls {
    pub use workload_auth_mtls::*;
}

/// The SPIFFE Workload API: an agent serving this workload's X.509 material to SPIFFE clients
/// (feature `workload-api`).
#[cfg(feature = "workload-api")]
pub mod workload_api {
    pub use workload_auth_workload_api::*;
}

/// Shared building blocks: errors, tokens, secrets, the retry policy, the token cache, clocks and
/// the library's runtime.
///
/// The plumbing the credential crates share (JSON field readers, bounded file reads, the HTTP
/// client) is theirs, not part of this API: depend on `workload-auth-core` itself to use it.
pub mod core {
    pub use workload_auth_core::{
        AccessToken, CacheConfig, Cached, Clock, Error, ErrorKind, Expiring, FetchFuture, IdToken,
        ManualClock, RefreshRng, RefreshSchedule, Result, Retry, RetryPolicy, SecretString,
        SystemClock, TokenCache, cache, clock, error, expiry_after, retry, runtime, secret,
        status_is_transient, token, unix_time,
    };
}

/// Application Default Credentials from the process environment, with the default scopes.
///
/// Same as `CredentialsBuilder::new().build()`. Off Google Cloud with nothing configured this fails
/// within milliseconds, and the error lists every place that was looked at.
pub fn default_credentials() -> Result<Credentials> {
    CredentialsBuilder::new().build()
}
