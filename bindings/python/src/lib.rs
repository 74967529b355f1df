//! The native part of the `workload_auth` Python package (`workload_auth._native`): a thin
//! layer over the Rust crate `workload-auth`. The pure-Python package around it
//! (`python/workload_auth`) re-exports these classes, defines the exceptions, and adds the
//! google-auth adapter; `_native.pyi` documents the API.
//!
//! Every call that may wait (a token fetch, a handshake, a socket read) releases the GIL. Errors
//! become the typed exceptions of `workload_auth._errors`; wrong argument types are `TypeError`;
//! an exception raised by a user's authorization predicate refuses the peer and becomes the
//! `__cause__` of the `VerificationError`. Nothing here panics on user input.
//!
//! Deliberately not here: asyncio integration (use the blocking calls from a thread pool), and
//! any Python object that outlives the handshake inside the TLS machinery other than the user's
//! predicates.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod credentials;
mod downscoped;
mod errors;
mod mtls;

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// How many `os.fork()`s led to this process (bumped in the child by `os.register_at_fork`).
/// Objects remember the generation they were built in; in a child, where the parent's runtime
/// threads, connections and in-flight fetches do not exist, they rebuild on first use. A counter
/// read is cheaper than `getpid()` on every call.
static FORKS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn forks() -> u64 {
    FORKS.load(Ordering::Acquire)
}

/// `os.register_at_fork(after_in_child=...)`.
#[pyfunction]
fn _after_fork_in_child() {
    FORKS.fetch_add(1, Ordering::AcqRel);
}

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    let after_fork = wrap_pyfunction!(_after_fork_in_child, m)?;
    let kwargs = PyDict::new(m.py());
    kwargs.set_item("after_in_child", &after_fork)?;
    m.py()
        .import("os")?
        .getattr("register_at_fork")?
        .call((), Some(&kwargs))?;
    m.add_function(wrap_pyfunction!(credentials::default, m)?)?;
    m.add_class::<credentials::Credentials>()?;
    m.add_class::<credentials::AccessToken>()?;
    m.add_class::<credentials::BoundAccessToken>()?;
    m.add_class::<credentials::Explanation>()?;
    m.add_class::<credentials::ExplanationStep>()?;
    m.add_class::<downscoped::AccessBoundaryRule>()?;
    m.add_class::<downscoped::AccessBoundary>()?;
    m.add_class::<downscoped::DownscopedCredentials>()?;
    m.add_class::<mtls::WorkloadIdentity>()?;
    m.add_class::<mtls::MtlsClient>()?;
    m.add_class::<mtls::MtlsServer>()?;
    m.add_class::<mtls::MtlsStream>()?;
    Ok(())
}
