//! A local emulator of the GCE metadata server, for tests and local development.
//!
//! It answers like the real server at `http://metadata.google.internal` — faithfully enough that
//! the reference client library (google-auth for Python) accepts it — but on a loopback port, with
//! an identity you choose, ID tokens signed by a key anyone can verify (`/oauth2/v3/certs`), and
//! faults you inject per endpoint: status codes, delays, resets, truncated, malformed or oversized
//! bodies, missing or wrong `Metadata-Flavor` headers, redirects. Every request is counted per
//! endpoint so a test can assert how many arrived.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> workload_auth_core::Result<()> {
//! use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint, Fault};
//!
//! let emu = Emulator::start(EmulatorConfig {
//!     project_id: "my-project".into(),
//!     ..EmulatorConfig::default()
//! })
//! .await?;
//! // Clients find it with GCE_METADATA_HOST=emu.host() (google-auth also wants GCE_METADATA_IP).
//! emu.inject(Endpoint::Token, Fault::Status(503), Some(1)); // the next token request fails
//! assert_eq!(emu.requests(Endpoint::Token), 0);
//! emu.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! What it deliberately does not do: it never listens anywhere but where it is told (loopback by
//! default) and never talks to Google; its signing key is public, so nothing it issues is worth
//! anything outside tests; it does not enforce scopes or IAM policy; and it speaks HTTP/1.1 only,
//! with `Content-Length` request bodies (chunked uploads get 501).
//!
//! [`Emulator::enable_mds_mtls`] also serves the metadata endpoints over mutual TLS on the same
//! port, as Shielded VMs do ([`mds_mtls`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod binding;
pub mod ca;
mod config;
pub mod credentials_writer;
mod endpoint;
mod fault;
mod http_server;
mod identity;
pub mod mds_mtls;
mod metadata;
mod record;
mod router;
mod server;
mod signing;
mod state;
mod tokens;

pub use binding::PROTECTED_RESOURCE_PATH;
pub use config::{EmulatorConfig, Limits, WorkloadCertificates};
pub use endpoint::Endpoint;
pub use fault::{Fault, FaultMix};
pub use identity::{
    AllowedLocations, AwsConfig, IdentityConfig, MTLS_CLIENT_CERT_HEADER, MtlsListener,
    OAuthClient, PublicKey, RefreshTokenGrant, ServiceAccountKey, StsConfig,
};
pub use record::RecordedRequest;
pub use server::{Emulator, serve};
pub use tokens::IssuedToken;
