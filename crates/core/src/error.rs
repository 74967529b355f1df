//! One error type for the whole workspace, which says whether retrying can help.

use std::fmt;
use std::sync::Arc;

/// What went wrong, coarsely enough to match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No credentials were found in any of the places Application Default Credentials looks.
    CredentialsNotFound,
    /// A credential or configuration file (or value) is malformed or unusable.
    InvalidCredentials,
    /// The caller passed an invalid argument (bad scope, audience, URL, NULL, ...).
    InvalidArgument,
    /// Reading a local file or directory failed.
    Io,
    /// The network failed: connection refused or reset, timeout, DNS.
    Transport,
    /// A server answered with an HTTP error status that is not a refusal of the credentials.
    Http,
    /// A server answered, but not in the expected format (bad JSON, missing field, wrong header).
    MalformedResponse,
    /// A server refused the credentials (401, 403, `invalid_grant`): the user must act.
    Rejected,
    /// The process is not running on Google Cloud (no metadata server).
    NotOnGoogleCloud,
    /// A certificate, key or peer identity failed verification.
    Verification,
    /// Something this process needs could not be set up locally, whatever the arguments: the
    /// HTTP client or TLS configuration cannot be built, the platform's trust roots cannot be
    /// loaded, the library's runtime cannot start. Fixing it means fixing the host (its
    /// certificate store, thread or file-descriptor limits), not the call.
    Setup,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::CredentialsNotFound => "credentials not found",
            Self::InvalidCredentials => "invalid credentials",
            Self::InvalidArgument => "invalid argument",
            Self::Io => "I/O error",
            Self::Transport => "transport error",
            Self::Http => "HTTP error",
            Self::MalformedResponse => "malformed response",
            Self::Rejected => "credentials rejected",
            Self::NotOnGoogleCloud => "not on Google Cloud",
            Self::Verification => "verification failed",
            Self::Setup => "local set-up failed",
        }
    }
}

/// Whether repeating the same operation later may succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Retry {
    /// A passing fault: connection errors, timeouts, 408, 429 and 5xx.
    Transient,
    /// Repeating will fail again until something is changed (bad file, 400/401/403, revoked grant).
    Permanent,
}

/// The error type of every workload-auth crate.
///
/// `Display` gives one line a person can act on: what failed, where, and (when known) what to do.
/// No error ever contains a secret: constructors take messages, never tokens or keys.
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: ErrorKind,
    retry: Retry,
    message: String,
    status: Option<u16>,
    endpoint: Option<String>,
    hint: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// A new error; whether it is transient is derived from `kind` (transport errors are, others are
    /// not) and can be changed with [`Error::with_retry`].
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let retry = match kind {
            ErrorKind::Transport => Retry::Transient,
            _ => Retry::Permanent,
        };
        Self {
            inner: Arc::new(Inner {
                kind,
                retry,
                message: message.into(),
                status: None,
                endpoint: None,
                hint: None,
                source: None,
            }),
        }
    }

    /// An error for an HTTP status answered by `endpoint`. 408, 429 and 5xx are transient;
    /// 401 and 403 are [`ErrorKind::Rejected`]; other statuses are permanent [`ErrorKind::Http`].
    pub fn http_status(
        status: u16,
        endpoint: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let kind = match status {
            401 | 403 => ErrorKind::Rejected,
            _ => ErrorKind::Http,
        };
        Self::new(kind, message)
            .with_status(status)
            .with_endpoint(endpoint)
            .with_retry(if status_is_transient(status) {
                Retry::Transient
            } else {
                Retry::Permanent
            })
    }

    fn inner_mut(&mut self) -> &mut Inner {
        // Builders run before the error is shared, so this never clones in practice.
        if Arc::get_mut(&mut self.inner).is_none() {
            let old = &self.inner;
            self.inner = Arc::new(Inner {
                kind: old.kind,
                retry: old.retry,
                message: old.message.clone(),
                status: old.status,
                endpoint: old.endpoint.clone(),
                hint: old.hint.clone(),
                source: None,
            });
        }
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner,
            None => unreachable!("a freshly created Arc is unique"),
        }
    }

    /// Sets whether retrying can help.
    #[must_use]
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.inner_mut().retry = retry;
        self
    }

    /// Records the HTTP status the server answered.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.inner_mut().status = Some(status);
        self
    }

    /// Names the endpoint, file or place the error is about (never with secrets in it).
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.inner_mut().endpoint = Some(endpoint.into());
        self
    }

    /// What the user can do about it.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.inner_mut().hint = Some(hint.into());
        self
    }

    /// The underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.inner_mut().source = Some(Box::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Whether retrying may help.
    pub fn retry(&self) -> Retry {
        self.inner.retry
    }

    /// Shorthand for `retry() == Retry::Transient`.
    pub fn is_transient(&self) -> bool {
        self.inner.retry == Retry::Transient
    }

    /// The HTTP status, when a server answered.
    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }

    /// The endpoint, file or place the error is about.
    pub fn endpoint(&self) -> Option<&str> {
        self.inner.endpoint.as_deref()
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<&str> {
        self.inner.hint.as_deref()
    }

    /// The message without endpoint or hint.
    pub fn message(&self) -> &str {
        &self.inner.message
    }
}

/// Whether an HTTP status is worth retrying: 408, 429 and every 5xx.
pub fn status_is_transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        write!(f, "{}: {}", inner.kind.as_str(), inner.message)?;
        if let Some(status) = inner.status {
            write!(f, " (HTTP {status})")?;
        }
        if let Some(endpoint) = &inner.endpoint {
            write!(f, " [{endpoint}]")?;
        }
        if let Some(source) = &inner.source {
            write!(f, ": {source}")?;
        }
        if let Some(hint) = &inner.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

// By hand: the fields behind the `Box` read as the error's own, and the source is shown by its
// message (its own `Debug` could print another crate's internals).
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Error")
            .field("kind", &inner.kind)
            .field("retry", &inner.retry)
            .field("message", &inner.message)
            .field("status", &inner.status)
            .field("endpoint", &inner.endpoint)
            .field("hint", &inner.hint)
            .field("source", &inner.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

/// Result alias used across the workspace.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_like_google_auth() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(Error::http_status(s, "x", "m").is_transient(), "{s}");
        }
        for s in [400, 401, 403, 404] {
            assert!(!Error::http_status(s, "x", "m").is_transient(), "{s}");
        }
        assert_eq!(
            Error::http_status(403, "x", "m").kind(),
            ErrorKind::Rejected
        );
        assert_eq!(Error::http_status(404, "x", "m").kind(), ErrorKind::Http);
    }

    #[test]
    fn display_is_one_actionable_line() {
        let e = Error::http_status(503, "metadata: token", "token fetch failed")
            .with_hint("retry later");
        let text = e.to_string();
        assert_eq!(
            text,
            "HTTP error: token fetch failed (HTTP 503) [metadata: token]; retry later"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn builders_work_on_a_shared_error() {
        let a = Error::new(ErrorKind::Io, "read failed");
        let b = a.clone().with_hint("check permissions");
        assert_eq!(a.hint(), None);
        assert_eq!(b.hint(), Some("check permissions"));
        assert!(Error::new(ErrorKind::Transport, "reset").is_transient());
    }
}
