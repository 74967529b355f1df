//! The C ABI of workload-auth: Google Application Default Credentials tokens and SPIFFE mutual
//! TLS for C and C++ programs, through `include/workload_auth.h` (generated from this crate by
//! cbindgen, checked in).
//!
//! Conventions, in the manner of rustls-ffi:
//!
//! - Opaque handles (`wa_credentials`, `wa_workload_identity`, `wa_verifier`, `wa_mtls_config`,
//!   `wa_mtls_stream`) are made by `*_new`/`*_load`/`wa_mtls_connect`/`wa_mtls_accept` and
//!   released by the matching `*_free`; `*_free(NULL)` is a no-op; freeing twice is undefined.
//! - Every fallible call returns a [`wa_result`] and writes its outputs through pointers, which it
//!   clears (NULL, 0) first. On failure, `wa_last_error_message` has the calling thread's error
//!   text and `wa_last_error_is_transient` whether retrying may help.
//! - Strings handed to C are freed with `wa_string_free` (which zeroes them: they may be tokens).
//! - NULL where a value is required gives `WA_ERR_NULL_POINTER`; a string that is not UTF-8
//!   gives `WA_ERR_INVALID_UTF8`; a panic inside the library is caught at the boundary and gives
//!   `WA_ERR_PANIC`. Nothing unwinds into C.
//! - Handles are thread-safe: any number of threads may use one handle at once.
//!
//! ```c
//! wa_credentials *creds = NULL;
//! char *token = NULL;
//! int64_t expires = 0;
//! if (wa_credentials_new_default(&creds) != WA_OK ||
//!     wa_credentials_access_token(creds, NULL, &token, &expires) != WA_OK) {
//!     char msg[512];
//!     wa_last_error_message(msg, sizeof msg);
//!     fprintf(stderr, "no token: %s\n", msg);
//! }
//! /* ... "Authorization: Bearer <token>" ... */
//! wa_string_free(token);
//! wa_credentials_free(creds);
//! ```
//!
//! Every exported function has the same shape on purpose: `boundary` (no unwinding into C, the
//! error recorded), the `unsafe` block reading each argument under its own SAFETY contract, then
//! the out-parameter written. The shape repeats across the modules because each C entry point
//! needs its own signature and documentation in the header; only the call in the middle differs.
//!
//! What it deliberately does not do: expose Rust types, take ownership of the caller's file
//! descriptors (mTLS streams work on a duplicate), or run callbacks into C.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]
#![allow(non_camel_case_types)]

mod args;
mod credentials;
mod downscoped;
mod error;
mod identity;
mod mtls;

pub use args::{wa_string_free, wa_version};
pub use credentials::*;
pub use downscoped::*;
pub use error::{
    wa_last_error_code, wa_last_error_is_transient, wa_last_error_message, wa_result,
    wa_result_name,
};
pub use identity::*;
pub use mtls::*;
