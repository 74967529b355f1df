//! Shared building blocks of workload-auth.
//!
//! - [`SecretString`]: tokens and keys that never print themselves and are zeroed on drop.
//! - [`AccessToken`] and [`IdToken`] with their expiry.
//! - [`Error`]: one error type that says what failed, where, whether retrying can help
//!   ([`Error::is_transient`]) and what the user can do.
//! - [`RetryPolicy`]: capped exponential backoff with jitter.
//! - [`TokenCache`]: a lock-free token cache with single-flight, early, jittered background refresh.
//! - [`runtime`]: the library's own small runtime, so callers need none.
//! - [`json`]: reading JSON documents whose errors name the field but never echo a value.
//! - [`fs`]: bounded reads of files from outside (credentials, keys, tokens) that refuse FIFOs,
//!   devices and directories.
//! - [`text`]: untrusted text shortened to one line for error messages.
//! - `http_client` (feature `http-client`): the reqwest client the credential crates share
//!   (no redirects, bounded zeroed bodies, transport errors that never quote the request).
//!
//! ```
//! use workload_auth_core::{Error, ErrorKind};
//! let e = Error::http_status(503, "metadata server: token", "token request failed");
//! assert!(e.is_transient());
//! assert_eq!(e.kind(), ErrorKind::Http);
//! ```
//!
//! Apart from [`fs`] and the body reader of `http_client`, this crate does no I/O of its own:
//! fetching tokens is the job of the credential crates, which build their HTTP client with
//! `http_client`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cache;
pub mod clock;
pub mod error;
pub mod fs;
#[cfg(feature = "http-client")]
pub mod http_client;
pub mod json;
pub mod retry;
pub mod runtime;
pub mod secret;
pub mod text;
pub mod token;

pub use cache::{CacheConfig, Cached, FetchFuture, RefreshRng, RefreshSchedule, TokenCache};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, ErrorKind, Result, Retry, status_is_transient};
pub use retry::RetryPolicy;
pub use secret::SecretString;
pub use token::{AccessToken, Expiring, IdToken, expiry_after, unix_time};
