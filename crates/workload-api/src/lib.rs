//! The SPIFFE Workload API, both ways.
//!
//! - [`WorkloadApiServer`]: a SPIFFE agent on a Unix socket serving a workload's X.509 material
//!   (from any `mtls` [`SvidSource`](workload_auth_mtls::SvidSource): the node agent's
//!   credentials directory, the metadata server) to every SPIFFE client — go-spiffe, rust-spiffe,
//!   py-spiffe, Envoy — which cannot read Google's files themselves.
//! - [`WorkloadApiSource`]: the reverse — a SPIFFE agent (SPIRE) as one more SVID source, so a
//!   workload on SPIRE uses this library unchanged.
//! - [`Endpoint`]: `SPIFFE_ENDPOINT_SOCKET` addresses.
//!
//! The protocol is `workload.proto` of the SPIFFE project, compiled at build time with `protox`
//! (no system `protoc` needed); the generated messages and client are in [`proto`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod authority;
mod client;
mod der;
mod endpoint;
mod render;
mod server;

pub use client::{WorkloadApiOptions, WorkloadApiSource, connect_client, request};
pub use endpoint::{Endpoint, SPIFFE_ENDPOINT_SOCKET};
pub use server::{
    DEFAULT_MAX_STREAMS, NO_IDENTITY_MESSAGE, SECURITY_HEADER, WorkloadApiServer,
    WorkloadApiServerBuilder,
};

/// Messages, client and server generated from `workload.proto`.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod proto {
    tonic::include_proto!("_");

    impl std::fmt::Debug for X509svid {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("X509svid")
                .field("spiffe_id", &self.spiffe_id)
                .field("x509_svid_len", &self.x509_svid.len())
                .field("x509_svid_key", &"[redacted]")
                .field("bundle_len", &self.bundle.len())
                .field("hint", &self.hint)
                .finish()
        }
    }
}
