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
        ErrorKind::Setup => ("SetupError", "setup"),
        _ => ("WorkloadAuthError", "other"),
    }
}

fn build(py: Python<'_>, e: &Error) -> PyResult<PyErr> {
    let (mut class, kind) = class_of(e.kind());
    // A reason with an exception of its own (a subclass of its kind's).
    if let Some(workload_auth::mtls::CredentialError::PrivateKeyHidden) =
        workload_auth::mtls::CredentialError::find(e)
    {
        class = "PrivateKeyHiddenError";
    }
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

/// A `DeadlineExceededError` (a transient `TransportError` and a `TimeoutError`): the call's
/// `timeout` passed before it finished.
pub(crate) fn deadline_exceeded(py: Python<'_>, limit: std::time::Duration) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let class = py
            .import("workload_auth._errors")?
            .getattr("DeadlineExceededError")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("kind", "transport")?;
        kwargs.set_item("transient", true)?;
        let message = format!(
            "the deadline of {:.3} s passed before the call finished",
            limit.as_secs_f64()
        );
        Ok(PyErr::from_value(class.call((message,), Some(&kwargs))?))
    };
    make().unwrap_or_else(|import_failure| import_failure)
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

/// A Python `repr()` of a string: single-quoted, with `\\`, `'` and control characters escaped
/// (Rust's `{:?}` would write double quotes, and `Some(...)` for an `Option`).
pub(crate) fn py_repr(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// [`py_repr`] of an optional string: `None` when absent.
pub(crate) fn py_repr_opt(text: Option<&str>) -> String {
    text.map_or_else(|| "None".to_owned(), py_repr)
}
