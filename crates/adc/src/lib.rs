//! Application Default Credentials (ADC) for workload-auth: find the credentials of this
//! environment the way Google's client libraries do, and get access tokens and ID tokens from
//! them, cached.
//!
//! The search, in order:
//!
//! 1. `GOOGLE_APPLICATION_CREDENTIALS` — the path of a credentials file. Set but missing or
//!    unreadable is an error naming the variable and the path (never a silent fallback); empty
//!    counts as unset.
//! 2. gcloud's file — `$CLOUDSDK_CONFIG/application_default_credentials.json`, else
//!    `~/.config/gcloud/...` (`%APPDATA%\gcloud\...` on Windows), as
//!    `gcloud auth application-default login` writes it. Missing: next step; present but unusable:
//!    an error.
//! 3. The metadata server, when this is Google Cloud (or `GCE_METADATA_HOST` names one). Off
//!    Google Cloud this is decided in milliseconds, and the error lists every place looked at.
//!
//! Credential files may be `service_account` (RSA or EC P-256 keys; the JWT-bearer grant or
//! self-signed JWTs), `authorized_user`, `impersonated_service_account`, `external_account`
//! (workload/workforce identity federation with `file`, `url`, `executable`, `aws` and
//! `certificate` sources, STS exchange, optional impersonation) and
//! `external_account_authorized_user`.
//!
//! ```no_run
//! use workload_auth_adc::Builder;
//!
//! # async fn run() -> workload_auth_core::Result<()> {
//! let credentials = Builder::new().build()?;
//! let token = credentials.access_token().await?;          // cached, refreshed early
//! let id_token = credentials.id_token("https://my-service.run.app").await?;
//! println!("{}", credentials.explain().await);             // why these credentials
//! # let _ = (token, id_token); Ok(()) }
//! ```
//!
//! Beyond finding credentials: [`downscoped`] tokens limited by a credential access boundary
//! (server-side, or minted locally client-side); regional access boundaries
//! (`x-allowed-locations` in [`Credentials::request_headers`], opt-in, looked up in the
//! background, see [`RegionalState`]); and, for workload identity federation with scopes, the
//! project id from Cloud Resource Manager.
//!
//! Security: a credential is only ever sent to Google's token endpoints over `https://` (`sts`,
//! `oauth2`, `iamcredentials` of `googleapis.com` and their `mtls.`, regional and Private Service
//! Connect forms) or to this machine (tests and the emulator); a credentials file naming any
//! other token, STS or impersonation URL is refused when it is loaded, before any request,
//! unless the caller allowed the host ([`Builder::with_allowed_endpoints`], or
//! [`ALLOWED_ENDPOINTS_ENV`] — `WORKLOAD_AUTH_ALLOWED_ENDPOINTS=token.corp.example,*.corp.example`
//! — for private deployments). The AWS source reads only the EC2 instance metadata service.
//! Executables named by a file run only when `GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1`.
//! Secrets never appear in `Debug`, `Display` or error messages.
//!
//! # Credential files from untrusted sources
//!
//! A credentials file is configuration that acts: an `external_account` file makes the library
//! read local files, fetch URLs and (when allowed) run programs, and send what they return to
//! the file's token URL. The endpoint rules above keep that inside Google and this machine; on
//! top of them, load a file someone else gave you with the loader for the type you expect —
//! [`Credentials::from_service_account_json`], [`Credentials::from_authorized_user_json`],
//! [`Credentials::from_impersonated_service_account_json`],
//! [`Credentials::from_external_account_json`],
//! [`Credentials::from_external_account_authorized_user_json`] (and their `_file` twins) — or
//! restrict the generic search with [`Builder::with_allowed_types`]. A file of another type is
//! refused before anything in it is used.
//!
//! What this crate deliberately does not do: run gcloud, support API keys, GDCH service accounts, App
//! Engine's first-generation runtime, or interactive (workforce) executables.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent_identity;
mod builder;
mod certificate_config;
mod client_certificate;
mod credential_client;
mod credentials;
pub mod downscoped;
mod env;
mod explain;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod kinds;
mod project_lookup;
mod proxy;
mod regional;
pub mod signing;
mod time;
mod url_policy;

pub use agent_identity::{Bound, BoundAccessToken, BoundCertificate, BoundIdToken};
pub use builder::{Builder, GCLOUD_CREDENTIALS_FILE};
pub use client_certificate::{ClientCertificate, USE_CLIENT_CERTIFICATE_ENV};
pub use credentials::{Credentials, RequestHeaders};
pub use env::{
    ALLOW_EXECUTABLES_ENV, ALLOWED_ENDPOINTS_ENV, CERTIFICATE_CONFIG_ENV, CLOUDSDK_CONFIG_ENV,
    CREDENTIALS_ENV, EnvSource, LEGACY_PROJECT_ENV, PROJECT_ENV, QUOTA_PROJECT_ENV,
};
pub use explain::{
    Detail, Explanation, Outcome, ProjectIdSource, QuotaProjectSource, Step, TokenBinding,
};
pub use kinds::{CredentialType, DEFAULT_UNIVERSE_DOMAIN};
pub use regional::{
    ALLOWED_LOCATIONS_HEADER, IAM_CREDENTIALS_ENDPOINT_ENV, REGIONAL_ACCESS_BOUNDARY_ENV,
    RegionalState, TRUST_BOUNDARY_ENV,
};
/// The reqwest this crate is built on, whose `Client` [`Builder::with_http_client`] takes.
pub use reqwest;
pub use rustls_pki_types::CertificateDer;
pub use workload_auth_metadata::{BindingForm, DetectionInput};
