//! `wa_result`, the calling thread's last error, and the panic boundary every entry point runs in.

use std::cell::RefCell;
use std::ffi::{c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};

use workload_auth::{Error, ErrorKind};

/// The result of every fallible call: `WA_OK`, or what kind of failure it was.
///
/// On failure, `wa_last_error_message` gives the text of the error (what failed, where, and what
/// to do) and `wa_last_error_is_transient` whether retrying later may help.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum wa_result {
    /// Success.
    WA_OK = 0,
    /// No credentials in any of the places Application Default Credentials looks.
    WA_ERR_CREDENTIALS_NOT_FOUND = 1,
    /// A credentials file or X.509 material is malformed or unusable.
    WA_ERR_INVALID_CREDENTIALS = 2,
    /// An argument is invalid (empty audience, bad scope, bad policy, bad file descriptor...).
    WA_ERR_INVALID_ARGUMENT = 3,
    /// Reading a local file or directory failed.
    WA_ERR_IO = 4,
    /// The network failed: refused, reset, timed out, closed early.
    WA_ERR_TRANSPORT = 5,
    /// A server answered with an HTTP error status.
    WA_ERR_HTTP = 6,
    /// A server answered in an unexpected format.
    WA_ERR_MALFORMED_RESPONSE = 7,
    /// A server or TLS peer refused our credentials.
    WA_ERR_REJECTED = 8,
    /// Not running on Google Cloud (no metadata server).
    WA_ERR_NOT_ON_GOOGLE_CLOUD = 9,
    /// A peer's certificate or identity failed verification or authorization.
    WA_ERR_VERIFICATION = 10,
    /// The platform keeps the workload's private key hidden (its credentials directory holds a
    /// certificate but no key): the identity loads and names the workload, but no TLS
    /// configuration or handshake can be made with it.
    WA_ERR_PRIVATE_KEY_HIDDEN = 11,
    /// Something the library needs could not be set up on this host, whatever the arguments:
    /// its HTTP client or TLS configuration, the platform's trust roots, its runtime's threads.
    WA_ERR_SETUP = 12,
    /// A required pointer argument was NULL.
    WA_ERR_NULL_POINTER = 100,
    /// A string argument was not valid UTF-8.
    WA_ERR_INVALID_UTF8 = 101,
    /// A bug inside the library was caught at the boundary (please report it).
    WA_ERR_PANIC = 102,
    /// A kind of failure this version of the header does not know.
    WA_ERR_OTHER = 103,
}

impl wa_result {
    fn from_kind(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::CredentialsNotFound => Self::WA_ERR_CREDENTIALS_NOT_FOUND,
            ErrorKind::InvalidCredentials => Self::WA_ERR_INVALID_CREDENTIALS,
            ErrorKind::InvalidArgument => Self::WA_ERR_INVALID_ARGUMENT,
            ErrorKind::Io => Self::WA_ERR_IO,
            ErrorKind::Transport => Self::WA_ERR_TRANSPORT,
            ErrorKind::Http => Self::WA_ERR_HTTP,
            ErrorKind::MalformedResponse => Self::WA_ERR_MALFORMED_RESPONSE,
            ErrorKind::Rejected => Self::WA_ERR_REJECTED,
            ErrorKind::NotOnGoogleCloud => Self::WA_ERR_NOT_ON_GOOGLE_CLOUD,
            ErrorKind::Verification => Self::WA_ERR_VERIFICATION,
            ErrorKind::Setup => Self::WA_ERR_SETUP,
            _ => Self::WA_ERR_OTHER,
        }
    }

    /// The code of a library error: its kind's, except for the reasons that have a code of
    /// their own.
    fn of_error(e: &Error) -> Self {
        use workload_auth::mtls::CredentialError;
        match CredentialError::find(e) {
            Some(CredentialError::PrivateKeyHidden) => Self::WA_ERR_PRIVATE_KEY_HIDDEN,
            _ => Self::from_kind(e.kind()),
        }
    }

    fn name(self) -> &'static std::ffi::CStr {
        match self {
            Self::WA_OK => c"WA_OK",
            Self::WA_ERR_CREDENTIALS_NOT_FOUND => c"WA_ERR_CREDENTIALS_NOT_FOUND",
            Self::WA_ERR_INVALID_CREDENTIALS => c"WA_ERR_INVALID_CREDENTIALS",
            Self::WA_ERR_INVALID_ARGUMENT => c"WA_ERR_INVALID_ARGUMENT",
            Self::WA_ERR_IO => c"WA_ERR_IO",
            Self::WA_ERR_TRANSPORT => c"WA_ERR_TRANSPORT",
            Self::WA_ERR_HTTP => c"WA_ERR_HTTP",
            Self::WA_ERR_MALFORMED_RESPONSE => c"WA_ERR_MALFORMED_RESPONSE",
            Self::WA_ERR_REJECTED => c"WA_ERR_REJECTED",
            Self::WA_ERR_NOT_ON_GOOGLE_CLOUD => c"WA_ERR_NOT_ON_GOOGLE_CLOUD",
            Self::WA_ERR_VERIFICATION => c"WA_ERR_VERIFICATION",
            Self::WA_ERR_PRIVATE_KEY_HIDDEN => c"WA_ERR_PRIVATE_KEY_HIDDEN",
            Self::WA_ERR_SETUP => c"WA_ERR_SETUP",
            Self::WA_ERR_NULL_POINTER => c"WA_ERR_NULL_POINTER",
            Self::WA_ERR_INVALID_UTF8 => c"WA_ERR_INVALID_UTF8",
            Self::WA_ERR_PANIC => c"WA_ERR_PANIC",
            Self::WA_ERR_OTHER => c"WA_ERR_OTHER",
        }
    }

    const ALL: [Self; 17] = [
        Self::WA_OK,
        Self::WA_ERR_CREDENTIALS_NOT_FOUND,
        Self::WA_ERR_INVALID_CREDENTIALS,
        Self::WA_ERR_INVALID_ARGUMENT,
        Self::WA_ERR_IO,
        Self::WA_ERR_TRANSPORT,
        Self::WA_ERR_HTTP,
        Self::WA_ERR_MALFORMED_RESPONSE,
        Self::WA_ERR_REJECTED,
        Self::WA_ERR_NOT_ON_GOOGLE_CLOUD,
        Self::WA_ERR_VERIFICATION,
        Self::WA_ERR_PRIVATE_KEY_HIDDEN,
        Self::WA_ERR_SETUP,
        Self::WA_ERR_NULL_POINTER,
        Self::WA_ERR_INVALID_UTF8,
        Self::WA_ERR_PANIC,
        Self::WA_ERR_OTHER,
    ];
}

/// Why a call failed: a library error, or a bad argument caught at the boundary.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A NULL pointer where one was required; names the parameter.
    Null(&'static str),
    /// A string that is not UTF-8; names the parameter.
    Utf8(&'static str),
    /// An error of the library.
    Library(Error),
    /// An error of the library reported with a code other than its kind's (a credentials file
    /// named explicitly that does not exist is `WA_ERR_IO`, as the header promises).
    Coded(wa_result, Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::Library(e)
    }
}

struct LastError {
    code: wa_result,
    message: String,
    transient: bool,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<LastError>> = const { RefCell::new(None) };
}

fn record(code: wa_result, message: String, transient: bool) -> wa_result {
    // `try_with`: during thread teardown the slot may be gone; the code is still returned.
    let _ = LAST_ERROR.try_with(|slot| {
        *slot.borrow_mut() = Some(LastError {
            code,
            message,
            transient,
        });
    });
    code
}

impl Failure {
    fn record(self, function: &str) -> wa_result {
        match self {
            Self::Null(param) => record(
                wa_result::WA_ERR_NULL_POINTER,
                format!("{function}: `{param}` is NULL"),
                false,
            ),
            Self::Utf8(param) => record(
                wa_result::WA_ERR_INVALID_UTF8,
                format!("{function}: `{param}` is not valid UTF-8"),
                false,
            ),
            Self::Library(e) => record(
                wa_result::of_error(&e),
                format!("{function}: {e}"),
                e.is_transient(),
            ),
            Self::Coded(code, e) => record(code, format!("{function}: {e}"), e.is_transient()),
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic")
}

/// Runs the body of an entry point: a panic becomes `WA_ERR_PANIC`, a failure is recorded as the
/// thread's last error. Nothing unwinds into C.
pub(crate) fn boundary(function: &str, body: impl FnOnce() -> Result<(), Failure>) -> wa_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => wa_result::WA_OK,
        Ok(Err(failure)) => failure.record(function),
        Err(payload) => record(
            wa_result::WA_ERR_PANIC,
            format!(
                "{function}: internal error (a bug in workload-auth, please report it): {}",
                panic_message(payload.as_ref())
            ),
            false,
        ),
    }
}

/// The boundary for functions that return nothing (`_free`): a panic is swallowed.
pub(crate) fn boundary_void(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}

/// The boundary for functions that return a value and cannot fail: a panic gives `fallback`.
pub(crate) fn boundary_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// Copies the calling thread's last error message into `buf` (at most `len` bytes, always
/// NUL-terminated when `len > 0`, cut at a UTF-8 character boundary when too long).
///
/// Returns the buffer size that holds the whole message including its NUL, so
/// `n = wa_last_error_message(NULL, 0); buf = malloc(n); wa_last_error_message(buf, n);` gets all
/// of it; returns 0 when this thread has had no error. Successful calls do not clear the last
/// error (like `errno`). The message never contains a token or key.
///
/// # Safety
///
/// `buf` must be NULL or point to at least `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_last_error_message(buf: *mut c_char, len: usize) -> usize {
    boundary_value(0, || {
        LAST_ERROR
            .try_with(|slot| {
                let slot = slot.borrow();
                let Some(last) = slot.as_ref() else {
                    if !buf.is_null() && len > 0 {
                        // SAFETY: the caller gives `len >= 1` writable bytes at `buf`.
                        unsafe { *buf = 0 };
                    }
                    return 0;
                };
                let message = last.message.as_bytes();
                if !buf.is_null() && len > 0 {
                    let mut n = message.len().min(len - 1);
                    while n > 0 && !last.message.is_char_boundary(n) {
                        n -= 1;
                    }
                    // SAFETY: `n + 1 <= len` bytes are written, within the caller's buffer, from
                    // a source that does not overlap it (the message is owned by this library).
                    unsafe {
                        std::ptr::copy_nonoverlapping(message.as_ptr(), buf.cast::<u8>(), n);
                        *buf.add(n) = 0;
                    }
                }
                message.len() + 1
            })
            .unwrap_or(0)
    })
}

/// The code of the calling thread's last failure (`WA_OK` when it has had none).
#[unsafe(no_mangle)]
pub extern "C" fn wa_last_error_code() -> wa_result {
    boundary_value(wa_result::WA_ERR_PANIC, || {
        LAST_ERROR
            .try_with(|slot| slot.borrow().as_ref().map_or(wa_result::WA_OK, |l| l.code))
            .unwrap_or(wa_result::WA_OK)
    })
}

/// Whether retrying the calling thread's last failed operation later may succeed (a connection
/// error, a timeout, HTTP 408/429/5xx); false for failures only a change can fix.
#[unsafe(no_mangle)]
pub extern "C" fn wa_last_error_is_transient() -> bool {
    boundary_value(false, || {
        LAST_ERROR
            .try_with(|slot| slot.borrow().as_ref().is_some_and(|l| l.transient))
            .unwrap_or(false)
    })
}

/// The name of a result code (`"WA_OK"`, `"WA_ERR_TRANSPORT"`...), or `"WA_ERR_UNKNOWN"` for a
/// value that is not one. The string is static: do not free it.
#[unsafe(no_mangle)]
pub extern "C" fn wa_result_name(result: c_int) -> *const c_char {
    boundary_value(c"WA_ERR_UNKNOWN".as_ptr(), || {
        wa_result::ALL
            .iter()
            .find(|r| **r as c_int == result)
            .map_or(c"WA_ERR_UNKNOWN", |r| r.name())
            .as_ptr()
    })
}
