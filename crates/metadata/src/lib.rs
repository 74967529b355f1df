//! The GCE metadata-server client of workload-auth, and detection of Google Cloud.
//!
//! On Compute Engine, GKE, Cloud Run and the other Google Cloud runtimes, the metadata server
//! (`http://metadata.google.internal/computeMetadata/v1/`) hands out the attached service
//! account's access and ID tokens, the project, the universe domain and, with managed workload
//! identity, the workload's X.509 SPIFFE credentials. [`MetadataClient`] reads all of these as
//! typed values; [`detect`] decides cheaply whether there is a metadata server at all.
//!
//! ```no_run
//! use workload_auth_metadata::{MetadataClient, detect_environment};
//!
//! # async fn run() -> workload_auth_core::Result<()> {
//! let detection = detect_environment();
//! if let Some(err) = detection.not_on_google_cloud_error() {
//!     return Err(err); // lists every place that was checked
//! }
//! // Uses GCE_METADATA_HOST when set (e.g. "127.0.0.1:8080" for the emulator).
//! let client = MetadataClient::builder().build()?;
//! let token = client
//!     .access_token(&["https://www.googleapis.com/auth/cloud-platform"])
//!     .await?;
//! let header = token.authorization_header(); // "Bearer ya29..." (a SecretString)
//! let project = client.project_id().await?;
//! let id_token = client.id_token("https://my-service.example.com", true, false).await?;
//! # let _ = (header, project, id_token);
//! # Ok(())
//! # }
//! ```
//!
//! Every response must carry `Metadata-Flavor: Google`; redirects are refused, proxies are never
//! used, bodies over 1 MiB are refused while they stream in, and every malformed answer is an
//! error that names the endpoint and the field, never the token.
//!
//! What this crate deliberately does not do: cache tokens (that is `workload-auth-core`'s
//! `TokenCache`, used by the credential crates), choose between credential types (ADC), verify
//! certificates or ID tokens.
//!
//! # The metadata server over mTLS
//!
//! `GCE_METADATA_MTLS_MODE` (or [`MetadataClientBuilder::mtls_mode`]) = `none` (default) |
//! `default` | `strict` makes the client speak HTTPS with a client certificate to
//! `https://metadata.google.internal/computeMetadata/v1/`, using `root.crt` and `client.key` from
//! `/run/google-mds-mtls` (or `WORKLOAD_AUTH_MDS_MTLS_DIR`, [`MetadataClientBuilder::mtls_dir`]).
//! [`MetadataClient::mds_transport`] says which transport was chosen and why. `strict` never
//! sends plain HTTP; `default` falls back once, logged. An overridden `GCE_METADATA_HOST` must
//! be a loopback address in either mode (the server is still verified as
//! `metadata.google.internal`); google-auth refuses every override in `strict`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod binding;
mod client;
mod detect;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod host;
mod mds_mtls;
mod request;
mod service_account;
mod token;
mod workload;

pub use binding::{BindingForm, CertificateBinding};
pub use client::{DEFAULT_UNIVERSE_DOMAIN, MetadataClient, MetadataClientBuilder};
pub use detect::{
    Check, DEFAULT_PROBE_CONNECT_TIMEOUT, DEFAULT_PROBE_RESPONSE_TIMEOUT, DMI_PRODUCT_NAME_PATH,
    Detection, DetectionInput, METADATA_IP_ADDR, METADATA_IP_ENV, NO_GCE_CHECK_ENV, Rule,
    SERVERLESS_ENV, detect, detect_environment,
};
pub use host::{DEFAULT_METADATA_HOST, METADATA_HOST_ENV, MetadataHost};
pub use mds_mtls::{
    DEFAULT_MDS_MTLS_DIR, MDS_MTLS_CLIENT_FILE, MDS_MTLS_DIR_ENV, MDS_MTLS_MODE_ENV,
    MDS_MTLS_ROOT_FILE, METADATA_IP_NAME, MdsMtlsMode, MdsTransport,
};
pub use request::MAX_BODY_BYTES;
pub use service_account::ServiceAccountInfo;
pub use workload::{WorkloadCertificatesUnavailable, WorkloadIdentities, trust_anchors_from_json};
