//! Library errors as the typed exceptions of `workload_auth._errors`.

use std::cell::RefCell;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use workload_auth::{Error, ErrorKind};

/// The exception class of each error kind, and the `kind` attribute it carries.
fn class_of(kind: ErrorKind) -> (&'static str, &'static str) {
    match kind {
        ErrorKind::CredentialsNotFound => ("CredentialsNotFoundError", "credentials_not_found"),
        ErrorKind::InvalidCredentials => ("InvalidCredentialsError", "invalid_credentials"),
        ErrorKind::InvalidArgument => ("InvalidArgumentError", "invalid_argument"),
        ErrorKind::Io => ("IoError", "io"),
        ErrorKind::Transport => ("TransportError", "transport"),
        ErrorKind::Http => ("HttpError", "http"),
        ErrorKind::MalformedResponse => ("MalformedResponseError", "malformed_response"),
        ErrorKind::Rejected => ("RejectedError", "rejected"),
        ErrorKind::NotOnGoogleCloud => ("NotOnGoogleCloudError", "not_on_google_cloud"),
        ErrorKind::Verification => ("VerificationError", "verification"),
        _ => ("WorkloadAuthError", "other"),
    }
}

fn build(py: Python<'_>, e: &Error) -> PyResult<PyErr> {
    let (class, kind) = class_of(e.kind());
    let class = py.import("workload_auth._errors")?.getattr(class)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("kind", kind)?;
    kwargs.set_item("transient", e.is_transient())?;
    kwargs.set_item("status", e.status())?;
    kwargs.set_item("endpoint", e.endpoint())?;
    kwargs.set_item("hint", e.hint())?;
    let instance = class.call((e.to_string(),), Some(&kwargs))?;
    Ok(PyErr::from_value(instance))
}

/// The Python exception for `e`. An exception raised by a user's authorization predicate during
/// the operation becomes its `__cause__`.
pub(crate) fn to_py(py: Python<'_>, e: &Error) -> PyErr {
    let err = build(py, e).unwrap_or_else(|import_failure| import_failure);
    if let Some(cause) = take_predicate_error() {
        err.set_cause(py, Some(cause));
    }
    err
}

/// Converts a library result, raising the typed exception on error.
pub(crate) trait IntoPy<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for Result<T, Error> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, &e))
    }
}

/// An `InvalidArgumentError` with `message`.
pub(crate) fn invalid_argument(py: Python<'_>, message: impl Into<String>) -> PyErr {
    to_py(py, &Error::new(ErrorKind::InvalidArgument, message))
}

thread_local! {
    /// The exception a user predicate raised on this thread, until the failed handshake that
    /// called it reports it. Handshakes run on the thread that asked for them.
    static PREDICATE_ERROR: RefCell<Option<PyErr>> = const { RefCell::new(None) };
}

pub(crate) fn stash_predicate_error(e: PyErr) {
    let _ = PREDICATE_ERROR.try_with(|slot| *slot.borrow_mut() = Some(e));
}

pub(crate) fn take_predicate_error() -> Option<PyErr> {
    PREDICATE_ERROR
        .try_with(|slot| slot.borrow_mut().take())
        .ok()
        .flatten()
}
