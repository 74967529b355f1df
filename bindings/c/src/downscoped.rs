//! `wa_downscoped`: credential access boundaries (downscoped tokens) for C, and the regional
//! access boundary header of `wa_credentials`.

use std::ffi::c_char;

use workload_auth::{AccessBoundary, ClientSideDownscoper, DownscopedCredentials};
use workload_auth::{AccessToken, Error, ErrorKind};

use crate::args::{Out, OutPtr, handle, opt_str_arg, str_arg};
use crate::credentials::{unix_seconds, wa_credentials};
use crate::error::{boundary, boundary_void, wa_result};

/// Longest access boundary JSON accepted (ten rules with long conditions fit in a few KiB).
const MAX_BOUNDARY_JSON: usize = 64 * 1024;

/// Downscoped credentials: tokens limited to a credential access boundary, made from source
/// credentials either by the Security Token Service per token (server-side) or locally from an
/// intermediary token and its session key (client-side). Thread-safe.
#[derive(Debug)]
pub struct wa_downscoped {
    inner: Downscoped,
}

#[derive(Debug)]
enum Downscoped {
    ServerSide(DownscopedCredentials),
    ClientSide {
        downscoper: ClientSideDownscoper,
        boundary: workload_auth::adc::downscoped::PreparedBoundary,
    },
}

impl Downscoped {
    fn token(&self) -> workload_auth::Result<AccessToken> {
        match self {
            Self::ServerSide(credentials) => credentials.access_token_blocking(),
            Self::ClientSide {
                downscoper,
                boundary,
            } => downscoper.token_blocking(boundary),
        }
    }
}

/// Downscoped credentials from `source` (which stays usable and must still be freed), limited
/// to the credential access boundary `boundary_json`: `{"accessBoundary":
/// {"accessBoundaryRules": [...]}}` (or the inner object), 1 to 10 rules, each with an
/// `availableResource`, `availablePermissions` of the form `inRole:ROLE`, and optionally an
/// `availabilityCondition` (`expression`, `title`, `description`). A bad boundary is
/// `WA_ERR_INVALID_ARGUMENT`, and the message names the rule and the field.
///
/// `client_side`: false for one Security Token Service exchange per token (the service checks
/// the boundary at once); true to fetch one intermediary token and session key and mint each
/// token locally, without a network call (conditions must then be of the CEL forms the library
/// compiles: `startsWith`, `endsWith`, `==` on `resource.name|type|service`, `&&`, `||`).
///
/// `sts_endpoint_or_null`: the Security Token Service's token URL, or NULL for
/// `https://sts.{universe}/v1/token` of the source. Makes no request; release the handle with
/// `wa_downscoped_free`.
///
/// # Safety
///
/// `source` must be NULL or a live handle; `boundary_json` NULL or a NUL-terminated string;
/// `sts_endpoint_or_null` NULL or a NUL-terminated string; `out` NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_downscoped_new(
    source: *const wa_credentials,
    boundary_json: *const c_char,
    sts_endpoint_or_null: *const c_char,
    client_side: bool,
    out: *mut *mut wa_downscoped,
) -> wa_result {
    boundary("wa_downscoped_new", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, source, json, sts) = unsafe {
            (
                OutPtr::ptr(out, "out")?,
                handle(source, "source")?,
                str_arg(boundary_json, "boundary_json")?,
                opt_str_arg(sts_endpoint_or_null, "sts_endpoint_or_null")?,
            )
        };
        if json.len() > MAX_BOUNDARY_JSON {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("`boundary_json` is longer than {MAX_BOUNDARY_JSON} bytes"),
            )
            .into());
        }
        let access_boundary = AccessBoundary::from_json(json.as_bytes())?;
        let mut builder = DownscopedCredentials::builder(source.credentials().clone());
        if let Some(url) = sts {
            builder = builder.with_sts_endpoint(url);
        }
        let inner = if client_side {
            let downscoper = builder.build_client_side()?;
            let boundary = downscoper.prepare(&access_boundary)?;
            Downscoped::ClientSide {
                downscoper,
                boundary,
            }
        } else {
            Downscoped::ServerSide(builder.build(access_boundary)?)
        };
        out.set_boxed(wa_downscoped { inner });
        Ok(())
    })
}

/// A downscoped access token (free it with `wa_string_free`; never log it) and, when
/// `out_expires_unix` is not NULL, its expiry in seconds since the Unix epoch. Server-side: from
/// the cache when it holds a fresh one, else one exchange. Client-side: minted locally; blocks
/// only when the intermediary token must be fetched (first use, or under 30 minutes left).
///
/// # Safety
///
/// `d` must be NULL or a live handle; `out_token` NULL or writable; `out_expires_unix` NULL or
/// writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_downscoped_access_token(
    d: *const wa_downscoped,
    out_token: *mut *mut c_char,
    out_expires_unix: *mut i64,
) -> wa_result {
    boundary("wa_downscoped_access_token", || {
        // SAFETY: forwarded contracts of each argument.
        let (out_token, out_expires, d) = unsafe {
            (
                OutPtr::ptr(out_token, "out_token")?,
                Out::optional(out_expires_unix, "out_expires_unix")?,
                handle(d, "d")?,
            )
        };
        let token = d.inner.token()?;
        out_token.set_string(token.secret().expose())?;
        if let Some(out) = out_expires {
            out.set(unix_seconds(token.expires_at()));
        }
        Ok(())
    })
}

/// Releases downscoped credentials. `NULL` is a no-op.
///
/// # Safety
///
/// `d` must be NULL or a handle from `wa_downscoped_new` not yet freed, and no other thread may
/// be using it. Freeing twice is undefined behaviour.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_downscoped_free(d: *mut wa_downscoped) {
    boundary_void(|| {
        if !d.is_null() {
            // SAFETY: the caller passes a pointer from `Box::into_raw` of this library, once.
            drop(unsafe { Box::from_raw(d) });
        }
    });
}

/// The `x-allowed-locations` header value for a request to `url_or_null` (NULL: any Google
/// API), or `*out_value = NULL` when none is to be sent. Free it with `wa_string_free`.
///
/// Only with regional access boundaries enabled (`GOOGLE_AUTH_TRUST_BOUNDARY_ENABLED=true`):
/// the boundary is looked up in the background and never waited for, so the first calls (and
/// any while the lookup fails) give NULL; requests to regional endpoints
/// (`*.rep.googleapis.com`) and to the IAM and STS hosts never carry it. Fetches the access
/// token first if none is cached (the lookup uses it).
///
/// # Safety
///
/// `c` must be NULL or a live handle; `url_or_null` NULL or a NUL-terminated string;
/// `out_value` NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_credentials_allowed_locations(
    c: *const wa_credentials,
    url_or_null: *const c_char,
    out_value: *mut *mut c_char,
) -> wa_result {
    boundary("wa_credentials_allowed_locations", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, c, url) = unsafe {
            (
                OutPtr::ptr(out_value, "out_value")?,
                handle(c, "c")?,
                opt_str_arg(url_or_null, "url_or_null")?,
            )
        };
        let credentials = c.credentials();
        let headers = match url {
            None => credentials.request_headers_blocking()?,
            Some(url) => {
                let credentials = credentials.clone();
                let url = url.to_owned();
                workload_auth::core::runtime::block_on(async move {
                    credentials.request_headers_for(&url).await
                })??
            }
        };
        match headers.allowed_locations() {
            Some(value) => out.set_string(value),
            None => Ok(()),
        }
    })
}
