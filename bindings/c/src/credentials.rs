//! `wa_credentials`: Application Default Credentials, access tokens and ID tokens.

use std::ffi::c_char;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, UNIX_EPOCH};

use workload_auth::core::runtime;
use workload_auth::{
    AccessToken, CredentialType, Credentials, CredentialsBuilder, Error, ErrorKind, MdsMtlsMode,
};

use crate::args::{Out, OutPtr, handle, opt_str_arg, str_arg};
use crate::error::{boundary, boundary_value, boundary_void, wa_result};

/// Credentials found by Application Default Credentials (or given explicitly), with their token
/// caches. Thread-safe: one handle may be used from many threads at once.
#[derive(Debug)]
pub struct wa_credentials {
    inner: Credentials,
}

impl wa_credentials {
    /// A handle for Rust code that links this crate's rlib and calls the C entry points
    /// directly (the `ffi` bench); C programs get handles from `wa_credentials_new_*`.
    pub fn new(inner: Credentials) -> Self {
        Self { inner }
    }

    pub(crate) fn credentials(&self) -> &Credentials {
        &self.inner
    }
}

fn new_credentials(
    builder: CredentialsBuilder,
    out: OutPtr<'_, wa_credentials>,
) -> Result<(), crate::error::Failure> {
    let inner = builder.build()?;
    out.set_boxed(wa_credentials { inner });
    Ok(())
}

/// Like [`new_credentials`] for a credentials file named by the caller: a file that does not exist
/// is `WA_ERR_IO` (the library calls it "not found" because ADC's search treats it so, but here
/// the caller named one file and reading it failed).
fn new_credentials_from_file(
    builder: CredentialsBuilder,
    out: OutPtr<'_, wa_credentials>,
) -> Result<(), crate::error::Failure> {
    match builder.build() {
        Ok(inner) => {
            out.set_boxed(wa_credentials { inner });
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::CredentialsNotFound => {
            Err(crate::error::Failure::Coded(wa_result::WA_ERR_IO, e))
        }
        Err(e) => Err(e.into()),
    }
}

/// Application Default Credentials from the environment: `GOOGLE_APPLICATION_CREDENTIALS`,
/// gcloud's credentials file, then the metadata server (`GCE_METADATA_HOST` overrides its
/// address). Off Google Cloud with nothing configured this fails within milliseconds with
/// `WA_ERR_CREDENTIALS_NOT_FOUND`, and the message lists every place looked at.
///
/// Makes no token request. Release the handle with `wa_credentials_free`.
///
/// # Safety
///
/// `out` must be NULL or point to a writable `wa_credentials *`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_default(out: *mut *mut wa_credentials) -> wa_result {
    boundary("wa_credentials_new_default", || {
        // SAFETY: forwarded contract of `out`.
        let out = unsafe { OutPtr::ptr(out, "out") }?;
        new_credentials(CredentialsBuilder::new(), out)
    })
}

/// Application Default Credentials, like `wa_credentials_new_default`, reaching the metadata
/// server over the transport `mode` names: `"none"` (plain HTTP), `"default"` (mTLS when
/// `root.crt` and `client.key` exist, plain HTTP otherwise or after one failed mTLS ping) or
/// `"strict"` (mTLS only: plain HTTP is never sent). NULL reads `GCE_METADATA_MTLS_MODE`.
/// `dir` is the directory holding `root.crt` and `client.key`; NULL reads
/// `WORKLOAD_AUTH_MDS_MTLS_DIR`, else `/run/google-mds-mtls`. The transport chosen and why
/// appear in `wa_credentials_explain_json` (`metadata_transport`, `metadata_mtls_mode`,
/// `metadata_transport_reason`).
///
/// An unknown mode is `WA_ERR_INVALID_ARGUMENT`; in strict mode, a missing, half-written or
/// expired file, a directory in its place or a non-EC key is `WA_ERR_INVALID_CREDENTIALS`,
/// and the message names the file.
///
/// # Safety
///
/// `mode` and `dir` must be NULL or NUL-terminated strings; `out` as in
/// `wa_credentials_new_default`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_default_mds_mtls(
    mode: *const c_char,
    dir: *const c_char,
    out: *mut *mut wa_credentials,
) -> wa_result {
    boundary("wa_credentials_new_default_mds_mtls", || {
        // SAFETY: forwarded contracts.
        let out = unsafe { OutPtr::ptr(out, "out") }?;
        // SAFETY: forwarded contracts.
        let (mode, dir) = unsafe { (opt_str_arg(mode, "mode")?, opt_str_arg(dir, "dir")?) };
        let mut builder = CredentialsBuilder::new();
        if let Some(mode) = mode {
            builder = builder.with_metadata_mtls_mode(mode.parse::<MdsMtlsMode>()?);
        }
        if let Some(dir) = dir {
            builder = builder.with_metadata_mtls_dir(dir);
        }
        new_credentials(builder, out)
    })
}

/// Credentials from the credentials file at `path` (any `type` ADC knows), instead of searching.
/// A file that does not exist or cannot be read is `WA_ERR_IO`; one that is not a credentials
/// file is `WA_ERR_INVALID_CREDENTIALS`.
/// For a file from a source you do not control, use a typed loader
/// (`wa_credentials_new_from_service_account_file` and the like) or
/// `wa_credentials_new_from_file_typed`: an `external_account` file makes the library read files,
/// fetch URLs and run programs it names.
///
/// # Safety
///
/// `path` must be NULL or a NUL-terminated string; `out` as in `wa_credentials_new_default`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_from_file(
    path: *const c_char,
    out: *mut *mut wa_credentials,
) -> wa_result {
    boundary("wa_credentials_new_from_file", || {
        // SAFETY: forwarded contracts.
        let out = unsafe { OutPtr::ptr(out, "out") }?;
        // SAFETY: forwarded contract.
        let path = unsafe { str_arg(path, "path") }?;
        new_credentials_from_file(CredentialsBuilder::new().with_credentials_file(path), out)
    })
}

/// Credentials from the JSON text of a credentials file, instead of searching.
///
/// # Safety
///
/// `json` must be NULL or a NUL-terminated string; `out` as in `wa_credentials_new_default`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_from_json(
    json: *const c_char,
    out: *mut *mut wa_credentials,
) -> wa_result {
    boundary("wa_credentials_new_from_json", || {
        // SAFETY: forwarded contracts.
        let out = unsafe { OutPtr::ptr(out, "out") }?;
        // SAFETY: forwarded contract.
        let json = unsafe { str_arg(json, "json") }?;
        new_credentials(CredentialsBuilder::new().with_json(json), out)
    })
}

/// Parses a comma-separated list of credential type names (`"service_account,authorized_user"`).
fn parse_types(list: &str) -> Result<Vec<CredentialType>, crate::error::Failure> {
    let mut types = Vec::new();
    for name in list.split(',') {
        types.push(name.parse::<CredentialType>()?);
    }
    Ok(types)
}

// The constructors from here on (`*_typed`, `*_json`, `*_file` of each credential type) are
// deliberately alike: one exported function per C entry point, because a C ABI has no generics
// and cbindgen writes the header from each signature and doc comment. What they share (argument
// checks, the out-parameter epilogue) is already in `boundary`, `OutPtr` and `new_credentials`;
// what is left differs in the type accepted and the name errors give.

/// Application Default Credentials, like `wa_credentials_new_default`, accepting only the
/// credential types in `allowed_types`, a comma-separated list of names as `wa_credentials_type`
/// returns them (`"service_account,metadata_server"`). A credentials file of another type is
/// refused (`WA_ERR_INVALID_CREDENTIALS`) before anything in it is used, and the metadata server
/// is only used when `metadata_server` is listed. An unknown name is `WA_ERR_INVALID_ARGUMENT`.
///
/// # Safety
///
/// `allowed_types` must be NULL or a NUL-terminated string; `out` as in
/// `wa_credentials_new_default`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_default_typed(
    allowed_types: *const c_char,
    out: *mut *mut wa_credentials,
) -> wa_result {
    boundary("wa_credentials_new_default_typed", || {
        // SAFETY: forwarded contracts.
        let out = unsafe { OutPtr::ptr(out, "out") }?;
        // SAFETY: forwarded contract.
        let types = unsafe { str_arg(allowed_types, "allowed_types") }?;
        let types = parse_types(types)?;
        new_credentials(CredentialsBuilder::new().with_allowed_types(types), out)
    })
}

/// Credentials from the credentials file at `path`, which must be of one of the types in
/// `allowed_types` (as in `wa_credentials_new_default_typed`). Use this, or a typed loader such
/// as `wa_credentials_new_from_service_account_file`, for a file from a source you do not
/// control.
///
/// # Safety
///
/// `path` and `allowed_types` must be NULL or NUL-terminated strings; `out` as in
/// `wa_credentials_new_default`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_from_file_typed(
    path: *const c_char,
    allowed_types: *const c_char,
    out: *mut *mut wa_credentials,
) -> wa_result {
    boundary("wa_credentials_new_from_file_typed", || {
        // SAFETY: forwarded contracts.
        let out = unsafe { OutPtr::ptr(out, "out") }?;
        // SAFETY: forwarded contracts.
        let (path, types) = unsafe {
            (
                str_arg(path, "path")?,
                str_arg(allowed_types, "allowed_types")?,
            )
        };
        let builder = CredentialsBuilder::new()
            .with_credentials_file(path)
            .with_allowed_types(parse_types(types)?);
        new_credentials_from_file(builder, out)
    })
}

/// Credentials from the JSON text of a credentials file, which must be of one of the types in
/// `allowed_types` (as in `wa_credentials_new_default_typed`).
///
/// # Safety
///
/// `json` and `allowed_types` must be NULL or NUL-terminated strings; `out` as in
/// `wa_credentials_new_default`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_from_json_typed(
    json: *const c_char,
    allowed_types: *const c_char,
    out: *mut *mut wa_credentials,
) -> wa_result {
    boundary("wa_credentials_new_from_json_typed", || {
        // SAFETY: forwarded contracts.
        let out = unsafe { OutPtr::ptr(out, "out") }?;
        // SAFETY: forwarded contracts.
        let (json, types) = unsafe {
            (
                str_arg(json, "json")?,
                str_arg(allowed_types, "allowed_types")?,
            )
        };
        let builder = CredentialsBuilder::new()
            .with_json(json)
            .with_allowed_types(parse_types(types)?);
        new_credentials(builder, out)
    })
}

/// Credentials from the JSON text of a service-account key (`"type": "service_account"`); any other type is
/// refused with `WA_ERR_INVALID_CREDENTIALS` before anything in it is used.
///
/// # Safety
///
/// `json` must be NULL or a NUL-terminated string; `out` as in `wa_credentials_new_default`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_from_service_account_json(
    json: *const c_char,
    out: *mut *mut wa_credentials,
) -> wa_result {
    boundary("wa_credentials_new_from_service_account_json", || {
        // SAFETY: forwarded contracts.
        let out = unsafe { OutPtr::ptr(out, "out") }?;
        // SAFETY: forwarded contract.
        let json = unsafe { str_arg(json, "json") }?;
        let builder = CredentialsBuilder::new()
            .with_json(json)
            .with_allowed_types([CredentialType::ServiceAccount]);
        new_credentials(builder, out)
    })
}

/// Credentials from the credentials file at `path`, which must be a service-account key
/// (`"type": "service_account"`); any other type is refused with `WA_ERR_INVALID_CREDENTIALS`.
///
/// # Safety
///
/// `path` must be NULL or a NUL-terminated string; `out` as in `wa_credentials_new_default`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_from_service_account_file(
    path: *const c_char,
    out: *mut *mut wa_credentials,
) -> wa_result {
    boundary("wa_credentials_new_from_service_account_file", || {
        // SAFETY: forwarded contracts.
        let out = unsafe { OutPtr::ptr(out, "out") }?;
        // SAFETY: forwarded contract.
        let path = unsafe { str_arg(path, "path") }?;
        let builder = CredentialsBuilder::new()
            .with_credentials_file(path)
            .with_allowed_types([CredentialType::ServiceAccount]);
        new_credentials_from_file(builder, out)
    })
}

/// Credentials from the JSON text of a user's refresh token (as gcloud writes it) (`"type": "authorized_user"`); any other type is
/// refused with `WA_ERR_INVALID_CREDENTIALS` before anything in it is used.
///
/// # Safety
///
/// `json` must be NULL or a NUL-terminated string; `out` as in `wa_credentials_new_default`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_from_authorized_user_json(
    json: *const c_char,
    out: *mut *mut wa_credentials,
) -> wa_result {
    boundary("wa_credentials_new_from_authorized_user_json", || {
        // SAFETY: forwarded contracts.
        let out = unsafe { OutPtr::ptr(out, "out") }?;
        // SAFETY: forwarded contract.
        let json = unsafe { str_arg(json, "json") }?;
        let builder = CredentialsBuilder::new()
            .with_json(json)
            .with_allowed_types([CredentialType::AuthorizedUser]);
        new_credentials(builder, out)
    })
}

/// Credentials from the credentials file at `path`, which must be a user's refresh token (as gcloud writes it)
/// (`"type": "authorized_user"`); any other type is refused with `WA_ERR_INVALID_CREDENTIALS`.
///
/// # Safety
///
/// `path` must be NULL or a NUL-terminated string; `out` as in `wa_credentials_new_default`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_from_authorized_user_file(
    path: *const c_char,
    out: *mut *mut wa_credentials,
) -> wa_result {
    boundary("wa_credentials_new_from_authorized_user_file", || {
        // SAFETY: forwarded contracts.
        let out = unsafe { OutPtr::ptr(out, "out") }?;
        // SAFETY: forwarded contract.
        let path = unsafe { str_arg(path, "path") }?;
        let builder = CredentialsBuilder::new()
            .with_credentials_file(path)
            .with_allowed_types([CredentialType::AuthorizedUser]);
        new_credentials_from_file(builder, out)
    })
}

/// Credentials from the JSON text of service-account impersonation (`"type": "impersonated_service_account"`); any other type is
/// refused with `WA_ERR_INVALID_CREDENTIALS` before anything in it is used.
///
/// # Safety
///
/// `json` must be NULL or a NUL-terminated string; `out` as in `wa_credentials_new_default`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_from_impersonated_service_account_json(
    json: *const c_char,
    out: *mut *mut wa_credentials,
) -> wa_result {
    boundary(
        "wa_credentials_new_from_impersonated_service_account_json",
        || {
            // SAFETY: forwarded contracts.
            let out = unsafe { OutPtr::ptr(out, "out") }?;
            // SAFETY: forwarded contract.
            let json = unsafe { str_arg(json, "json") }?;
            let builder = CredentialsBuilder::new()
                .with_json(json)
                .with_allowed_types([CredentialType::ImpersonatedServiceAccount]);
            new_credentials(builder, out)
        },
    )
}

/// Credentials from the credentials file at `path`, which must be service-account impersonation
/// (`"type": "impersonated_service_account"`); any other type is refused with `WA_ERR_INVALID_CREDENTIALS`.
///
/// # Safety
///
/// `path` must be NULL or a NUL-terminated string; `out` as in `wa_credentials_new_default`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_from_impersonated_service_account_file(
    path: *const c_char,
    out: *mut *mut wa_credentials,
) -> wa_result {
    boundary(
        "wa_credentials_new_from_impersonated_service_account_file",
        || {
            // SAFETY: forwarded contracts.
            let out = unsafe { OutPtr::ptr(out, "out") }?;
            // SAFETY: forwarded contract.
            let path = unsafe { str_arg(path, "path") }?;
            let builder = CredentialsBuilder::new()
                .with_credentials_file(path)
                .with_allowed_types([CredentialType::ImpersonatedServiceAccount]);
            new_credentials_from_file(builder, out)
        },
    )
}

/// Credentials from the JSON text of workload or workforce identity federation (`"type": "external_account"`); any other type is
/// refused with `WA_ERR_INVALID_CREDENTIALS` before anything in it is used.
///
/// # Safety
///
/// `json` must be NULL or a NUL-terminated string; `out` as in `wa_credentials_new_default`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_from_external_account_json(
    json: *const c_char,
    out: *mut *mut wa_credentials,
) -> wa_result {
    boundary("wa_credentials_new_from_external_account_json", || {
        // SAFETY: forwarded contracts.
        let out = unsafe { OutPtr::ptr(out, "out") }?;
        // SAFETY: forwarded contract.
        let json = unsafe { str_arg(json, "json") }?;
        let builder = CredentialsBuilder::new()
            .with_json(json)
            .with_allowed_types([CredentialType::ExternalAccount]);
        new_credentials(builder, out)
    })
}

/// Credentials from the credentials file at `path`, which must be workload or workforce identity federation
/// (`"type": "external_account"`); any other type is refused with `WA_ERR_INVALID_CREDENTIALS`.
///
/// # Safety
///
/// `path` must be NULL or a NUL-terminated string; `out` as in `wa_credentials_new_default`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_from_external_account_file(
    path: *const c_char,
    out: *mut *mut wa_credentials,
) -> wa_result {
    boundary("wa_credentials_new_from_external_account_file", || {
        // SAFETY: forwarded contracts.
        let out = unsafe { OutPtr::ptr(out, "out") }?;
        // SAFETY: forwarded contract.
        let path = unsafe { str_arg(path, "path") }?;
        let builder = CredentialsBuilder::new()
            .with_credentials_file(path)
            .with_allowed_types([CredentialType::ExternalAccount]);
        new_credentials_from_file(builder, out)
    })
}

/// Credentials from the JSON text of a workforce identity federation user's refresh token (`"type": "external_account_authorized_user"`); any other type is
/// refused with `WA_ERR_INVALID_CREDENTIALS` before anything in it is used.
///
/// # Safety
///
/// `json` must be NULL or a NUL-terminated string; `out` as in `wa_credentials_new_default`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_from_external_account_authorized_user_json(
    json: *const c_char,
    out: *mut *mut wa_credentials,
) -> wa_result {
    boundary(
        "wa_credentials_new_from_external_account_authorized_user_json",
        || {
            // SAFETY: forwarded contracts.
            let out = unsafe { OutPtr::ptr(out, "out") }?;
            // SAFETY: forwarded contract.
            let json = unsafe { str_arg(json, "json") }?;
            let builder = CredentialsBuilder::new()
                .with_json(json)
                .with_allowed_types([CredentialType::ExternalAccountAuthorizedUser]);
            new_credentials(builder, out)
        },
    )
}

/// Credentials from the credentials file at `path`, which must be a workforce identity federation user's refresh token
/// (`"type": "external_account_authorized_user"`); any other type is refused with `WA_ERR_INVALID_CREDENTIALS`.
///
/// # Safety
///
/// `path` must be NULL or a NUL-terminated string; `out` as in `wa_credentials_new_default`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_new_from_external_account_authorized_user_file(
    path: *const c_char,
    out: *mut *mut wa_credentials,
) -> wa_result {
    boundary(
        "wa_credentials_new_from_external_account_authorized_user_file",
        || {
            // SAFETY: forwarded contracts.
            let out = unsafe { OutPtr::ptr(out, "out") }?;
            // SAFETY: forwarded contract.
            let path = unsafe { str_arg(path, "path") }?;
            let builder = CredentialsBuilder::new()
                .with_credentials_file(path)
                .with_allowed_types([CredentialType::ExternalAccountAuthorizedUser]);
            new_credentials_from_file(builder, out)
        },
    )
}

/// Releases credentials (stopping their background refreshes). `NULL` is a no-op.
///
/// # Safety
///
/// `c` must be NULL or a handle from `wa_credentials_new_*` not yet freed, and no other thread
/// may be using it. Freeing twice is undefined behaviour.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_free(c: *mut wa_credentials) {
    boundary_void(|| {
        if !c.is_null() {
            // SAFETY: the caller passes a pointer from `Box::into_raw` of this library, once.
            drop(unsafe { Box::from_raw(c) });
        }
    });
}

pub(crate) fn unix_seconds(t: std::time::SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// An access token: from the cache when it holds a fresh one (no lock, no request), otherwise
/// fetched (blocking the calling thread; concurrent callers share one fetch).
///
/// `scopes_or_null`: NULL for the credentials' default scopes, or scopes separated by commas or
/// spaces (each scope set has its own cache). On success `*out_token` is the token (free it with
/// `wa_string_free`; never log it) and, when `out_expires_unix` is not NULL, `*out_expires_unix`
/// its expiry in seconds since the Unix epoch.
///
/// # Safety
///
/// `c` must be NULL or a live handle; `scopes_or_null` NULL or a NUL-terminated string;
/// `out_token` NULL or writable; `out_expires_unix` NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_access_token(
    c: *const wa_credentials,
    scopes_or_null: *const c_char,
    out_token: *mut *mut c_char,
    out_expires_unix: *mut i64,
) -> wa_result {
    boundary("wa_credentials_access_token", || {
        // SAFETY: forwarded contracts of each argument.
        let (out_token, out_expires, c, scopes) = unsafe {
            (
                OutPtr::ptr(out_token, "out_token")?,
                Out::optional(out_expires_unix, "out_expires_unix")?,
                handle(c, "c")?,
                opt_str_arg(scopes_or_null, "scopes_or_null")?,
            )
        };
        let publish = move |token: &AccessToken| -> Result<(), crate::error::Failure> {
            out_token.set_string(token.secret().expose())?;
            if let Some(out) = out_expires {
                out.set(unix_seconds(token.expires_at()));
            }
            Ok(())
        };
        match scopes {
            // The default scopes: lend the cached token, copy it once into the C string.
            None => publish(&*c.inner.access_token_cached_blocking()?),
            Some(_) => {
                let scopes = parse_scopes(scopes)?.unwrap_or_default();
                let credentials = c.inner.clone();
                let token = runtime::block_on(async move {
                    let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
                    credentials.access_token_with_scopes(&refs).await
                })??;
                publish(&token)
            }
        }
    })
}

/// Splits a scope list (commas or whitespace); `None` for NULL (the default scopes).
fn parse_scopes(list: Option<&str>) -> Result<Option<Vec<String>>, crate::error::Failure> {
    let Some(list) = list else {
        return Ok(None);
    };
    let scopes: Vec<String> = list
        .split([',', ' ', '\t', '\n'])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "`scopes_or_null` names no scope; pass NULL for the default scopes",
        )
        .into());
    }
    Ok(Some(scopes))
}

/// The deadline of a `*_timeout` call: 0 is refused (it could only ever fail, which is almost
/// certainly a unit or initialisation mistake of the caller).
fn deadline(timeout_ms: u32) -> Result<Duration, crate::error::Failure> {
    if timeout_ms == 0 {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "`timeout_ms` is 0; give the time the call may take, in milliseconds",
        )
        .into());
    }
    Ok(Duration::from_millis(u64::from(timeout_ms)))
}

/// Runs `fetch` on the library's runtime and waits for it at most `limit`, counted from the call
/// (the calling thread waits on a channel with that timeout, so even a slow first use of the
/// runtime counts against the deadline). On expiry the wait is abandoned with a transient
/// `Transport` error; a fetch shared with other callers through the cache goes on for them and
/// fills the cache for the next call.
fn within<T: Send + 'static>(
    limit: Duration,
    what: &'static str,
    fetch: impl std::future::Future<Output = workload_auth::Result<T>> + Send + 'static,
) -> Result<T, crate::error::Failure> {
    let runtime = runtime::handle()?;
    // A cached value is ready on the first poll: take it on the caller's thread, so "at once"
    // does not wait for a runtime worker to be scheduled (which can take longer than a short
    // deadline on a busy machine). Polled inside the runtime's context, so a miss that starts
    // a fetch (spawns, timers, sockets) works; the noop waker is replaced when the task polls
    // it again below.
    let mut fetch = Box::pin(fetch);
    {
        let _context = runtime.enter();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if let std::task::Poll::Ready(result) = fetch.as_mut().poll(&mut cx) {
            return Ok(result?);
        }
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let task = runtime.spawn(async move {
        // The receiver is gone only when the caller stopped waiting.
        let _ = tx.send(fetch.await);
    });
    match rx.recv_timeout(limit) {
        Ok(result) => Ok(result?),
        Err(RecvTimeoutError::Timeout) => {
            task.abort();
            Err(Error::new(
                ErrorKind::Transport,
                format!("{what} did not arrive within {} ms", limit.as_millis()),
            )
            .into())
        }
        Err(RecvTimeoutError::Disconnected) => Err(Error::new(
            ErrorKind::Io,
            "the workload-auth runtime stopped before the operation finished",
        )
        .into()),
    }
}

/// `wa_credentials_access_token` with a deadline: returns within `timeout_ms` milliseconds
/// (give or take the scheduler), with `WA_ERR_TRANSPORT` (transient) when no token arrived by
/// then. A cached token is returned at once. `timeout_ms == 0` is `WA_ERR_INVALID_ARGUMENT`.
///
/// # Safety
///
/// As `wa_credentials_access_token`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_access_token_timeout(
    c: *const wa_credentials,
    scopes_or_null: *const c_char,
    timeout_ms: u32,
    out_token: *mut *mut c_char,
    out_expires_unix: *mut i64,
) -> wa_result {
    boundary("wa_credentials_access_token_timeout", || {
        // SAFETY: forwarded contracts of each argument.
        let (out_token, out_expires, c, scopes) = unsafe {
            (
                OutPtr::ptr(out_token, "out_token")?,
                Out::optional(out_expires_unix, "out_expires_unix")?,
                handle(c, "c")?,
                opt_str_arg(scopes_or_null, "scopes_or_null")?,
            )
        };
        let limit = deadline(timeout_ms)?;
        let scopes = parse_scopes(scopes)?;
        let credentials = c.inner.clone();
        let token = within(limit, "the access token", async move {
            match scopes {
                None => credentials.access_token().await,
                Some(scopes) => {
                    let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
                    credentials.access_token_with_scopes(&refs).await
                }
            }
        })?;
        out_token.set_string(token.secret().expose())?;
        if let Some(out) = out_expires {
            out.set(unix_seconds(token.expires_at()));
        }
        Ok(())
    })
}

/// `wa_credentials_id_token` with a deadline, as in `wa_credentials_access_token_timeout`.
///
/// # Safety
///
/// As `wa_credentials_id_token`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_id_token_timeout(
    c: *const wa_credentials,
    audience: *const c_char,
    timeout_ms: u32,
    out_token: *mut *mut c_char,
) -> wa_result {
    boundary("wa_credentials_id_token_timeout", || {
        // SAFETY: forwarded contracts of each argument.
        let (out_token, c, audience) = unsafe {
            (
                OutPtr::ptr(out_token, "out_token")?,
                handle(c, "c")?,
                str_arg(audience, "audience")?,
            )
        };
        let limit = deadline(timeout_ms)?;
        let credentials = c.inner.clone();
        let audience = audience.to_owned();
        let token = within(limit, "the ID token", async move {
            credentials.id_token(&audience).await
        })?;
        out_token.set_string(token.secret().expose())
    })
}

/// An OpenID Connect ID token whose `aud` is `audience` (cached per audience). Free it with
/// `wa_string_free`.
///
/// # Safety
///
/// `c` must be NULL or a live handle; `audience` NULL or a NUL-terminated string; `out_token`
/// NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_id_token(
    c: *const wa_credentials,
    audience: *const c_char,
    out_token: *mut *mut c_char,
) -> wa_result {
    boundary("wa_credentials_id_token", || {
        // SAFETY: forwarded contracts of each argument.
        let (out_token, c, audience) = unsafe {
            (
                OutPtr::ptr(out_token, "out_token")?,
                handle(c, "c")?,
                str_arg(audience, "audience")?,
            )
        };
        let token = c.inner.id_token_blocking(audience)?;
        out_token.set_string(token.secret().expose())
    })
}

/// The value of the `Authorization` header for a Google API request (`Bearer <token>`), from
/// the same cache as `wa_credentials_access_token`. Free it with `wa_string_free`.
///
/// # Safety
///
/// `c` must be NULL or a live handle; `out_value` NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_authorization_header(
    c: *const wa_credentials,
    out_value: *mut *mut c_char,
) -> wa_result {
    boundary("wa_credentials_authorization_header", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, c) = unsafe { (OutPtr::ptr(out_value, "out_value")?, handle(c, "c")?) };
        let token = c.inner.access_token_cached_blocking()?;
        out.set_string(token.authorization_header().expose())
    })
}

/// The quota project (`x-goog-user-project` header value), or `*out_project = NULL` when there
/// is none. Free it with `wa_string_free`.
///
/// # Safety
///
/// `c` must be NULL or a live handle; `out_project` NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_quota_project_id(
    c: *const wa_credentials,
    out_project: *mut *mut c_char,
) -> wa_result {
    boundary("wa_credentials_quota_project_id", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, c) = unsafe { (OutPtr::ptr(out_project, "out_project")?, handle(c, "c")?) };
        match c.inner.quota_project_id() {
            Some(project) => out.set_string(project),
            None => Ok(()),
        }
    })
}

/// The project id (environment, credentials file, or the metadata server), or
/// `*out_project = NULL` when nothing knows it. May block on the metadata server the first time.
/// Free it with `wa_string_free`.
///
/// # Safety
///
/// `c` must be NULL or a live handle; `out_project` NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_project_id(
    c: *const wa_credentials,
    out_project: *mut *mut c_char,
) -> wa_result {
    boundary("wa_credentials_project_id", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, c) = unsafe { (OutPtr::ptr(out_project, "out_project")?, handle(c, "c")?) };
        let credentials = c.inner.clone();
        match runtime::block_on(async move { credentials.project_id().await })?? {
            Some(project) => out.set_string(&project),
            None => Ok(()),
        }
    })
}

/// Why these credentials: every place ADC looked and what it found, the credential type, where
/// the project id and quota project come from; as one JSON object (what
/// `workload-auth explain --json` prints). Free it with `wa_string_free`.
///
/// # Safety
///
/// `c` must be NULL or a live handle; `out_json` NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_explain_json(
    c: *const wa_credentials,
    out_json: *mut *mut c_char,
) -> wa_result {
    boundary("wa_credentials_explain_json", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, c) = unsafe { (OutPtr::ptr(out_json, "out_json")?, handle(c, "c")?) };
        let explanation = c.inner.explain_blocking();
        let json = serde_json::to_string(&explanation).map_err(|e| {
            Error::new(ErrorKind::InvalidArgument, "cannot encode the explanation").with_source(e)
        })?;
        out.set_string(&json)
    })
}

/// The credential type: `"metadata_server"`, `"service_account"`, `"authorized_user"`,
/// `"impersonated_service_account"`, `"external_account"` or
/// `"external_account_authorized_user"`; `NULL` when `c` is NULL. Static: do not free.
///
/// # Safety
///
/// `c` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_type(c: *const wa_credentials) -> *const c_char {
    boundary_value(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        let Ok(c) = (unsafe { handle(c, "c") }) else {
            return std::ptr::null();
        };
        match c.inner.credential_type().as_str() {
            "metadata_server" => c"metadata_server".as_ptr(),
            "service_account" => c"service_account".as_ptr(),
            "authorized_user" => c"authorized_user".as_ptr(),
            "impersonated_service_account" => c"impersonated_service_account".as_ptr(),
            "external_account" => c"external_account".as_ptr(),
            "external_account_authorized_user" => c"external_account_authorized_user".as_ptr(),
            _ => c"unknown".as_ptr(),
        }
    })
}

/// Forgets every cached token (say, after an API answered 401): the next call fetches anew.
///
/// # Safety
///
/// `c` must be NULL or a live handle.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_invalidate(c: *const wa_credentials) -> wa_result {
    boundary("wa_credentials_invalidate", || {
        // SAFETY: forwarded contract.
        let c = unsafe { handle(c, "c") }?;
        c.inner.invalidate();
        Ok(())
    })
}

/// Whether these credentials' tokens are bound to an Agent Identity workload certificate
/// (AIP-4119). Then `wa_credentials_access_token`, `wa_credentials_authorization_header` and
/// `wa_credentials_id_token` fail with `WA_ERR_INVALID_ARGUMENT` rather than hand out a token
/// without its certificate: use `wa_credentials_bound_access_token`.
///
/// # Safety
///
/// `c` must be NULL or a live handle; `out_bound` NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_is_bound(
    c: *const wa_credentials,
    out_bound: *mut bool,
) -> wa_result {
    boundary("wa_credentials_is_bound", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, c) = unsafe { (Out::new(out_bound, "out_bound")?, handle(c, "c")?) };
        out.set(c.inner.is_bound());
        Ok(())
    })
}

/// An access token bound to the Agent Identity workload certificate, returned only together with
/// that certificate: `*out_token` (the token; never log it), `*out_certificate_chain` (the chain
/// it is bound to, PEM certificates leaf first, no key) and `*out_fingerprint` (the leaf's
/// SHA-256, base64url without padding). Present exactly that certificate over mutual TLS with
/// the token. Free the three strings with `wa_string_free`. `out_expires_unix` may be NULL.
///
/// The certificate file is read on every call; after a rotation the next call returns a new
/// token bound to the new certificate. Nothing is written unless the call succeeds.
///
/// # Safety
///
/// `c` must be NULL or a live handle; `out_token`, `out_certificate_chain` and `out_fingerprint`
/// NULL or writable; `out_expires_unix` NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_bound_access_token(
    c: *const wa_credentials,
    out_token: *mut *mut c_char,
    out_certificate_chain: *mut *mut c_char,
    out_fingerprint: *mut *mut c_char,
    out_expires_unix: *mut i64,
) -> wa_result {
    boundary("wa_credentials_bound_access_token", || {
        // SAFETY: forwarded contracts of each argument.
        let (out_token, out_chain, out_fingerprint, out_expires, c) = unsafe {
            (
                OutPtr::ptr(out_token, "out_token")?,
                OutPtr::ptr(out_certificate_chain, "out_certificate_chain")?,
                OutPtr::ptr(out_fingerprint, "out_fingerprint")?,
                Out::optional(out_expires_unix, "out_expires_unix")?,
                handle(c, "c")?,
            )
        };
        let bound = c.inner.bound_access_token_blocking()?;
        let token = bound.token().secret().expose();
        if token.contains('\0') {
            // Checked before anything is written, so the three outputs go out together or not at all.
            return Err(Error::new(
                ErrorKind::MalformedResponse,
                "the token contains a NUL byte and cannot be returned as a C string",
            )
            .into());
        }
        out_chain.set_string(bound.certificate().chain_pem())?;
        out_fingerprint.set_string(bound.fingerprint())?;
        out_token.set_string(token)?;
        if let Some(out) = out_expires {
            out.set(unix_seconds(bound.token().expires_at()));
        }
        Ok(())
    })
}
