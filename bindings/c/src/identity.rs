//! `wa_workload_identity` (the workload's X509-SVID, kept current as it rotates) and
//! `wa_verifier` (SPIFFE verification of a peer's chain for programs with their own TLS stack).

use std::ffi::{c_char, c_int};
use std::path::Path;

use workload_auth::mtls::{CertificateDer, UnixTime};
use workload_auth::mtls::{Purpose, SpiffeVerifier};
use workload_auth::{Error, ErrorKind, WorkloadIdentity};

use crate::args::{OutPtr, bytes_arg, handle, opt_str_arg, slice_arg, str_array};
use crate::error::{Failure, boundary, boundary_void, wa_result};

/// The peer is a TLS server (we are the client): its certificate must allow `serverAuth`.
pub const WA_PEER_IS_SERVER: u32 = 1;
/// The peer is a TLS client (we are the server): its certificate must allow `clientAuth`.
pub const WA_PEER_IS_CLIENT: u32 = 2;

/// The workload's managed identity: its X509-SVID and trust bundles, reloaded from the
/// credentials directory as the node agent rotates them. Thread-safe.
#[derive(Debug)]
pub struct wa_workload_identity {
    pub(crate) inner: WorkloadIdentity,
}

/// Loads the credentials directory `dir_or_null` and watches it for rotations until the handle
/// is freed. Release it with `wa_workload_identity_free`.
///
/// NULL means the SPIFFE filesystem delivery directory `SPIFFE_CREDENTIAL_FOLDER` names when it
/// is set, else the standard `/var/run/secrets/workload-spiffe-credentials`. The directory's
/// layout is detected (`wa_workload_identity_layout` says which); a directory whose private key
/// the platform keeps hidden loads, and `wa_mtls_config_new` then fails with
/// `WA_ERR_PRIVATE_KEY_HIDDEN`.
///
/// # Safety
///
/// `dir_or_null` must be NULL or a NUL-terminated string; `out` NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_workload_identity_load(
    dir_or_null: *const c_char,
    out: *mut *mut wa_workload_identity,
) -> wa_result {
    boundary("wa_workload_identity_load", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, dir) = unsafe {
            (
                OutPtr::ptr(out, "out")?,
                opt_str_arg(dir_or_null, "dir_or_null")?,
            )
        };
        let inner = WorkloadIdentity::from_directory(dir.map(Path::new))?;
        out.set_boxed(wa_workload_identity { inner });
        Ok(())
    })
}

/// Takes the workload's identity from a SPIFFE Workload API (a SPIRE agent, or
/// `workload-auth agent`): `endpoint_or_null` is `unix:///path` or `tcp://IP:port`; NULL reads
/// `SPIFFE_ENDPOINT_SOCKET`. Waits up to 10 s for the first SVID; then keeps the stream open,
/// reconnecting with backoff and keeping the last good SVID, until the handle is freed. Release
/// it with `wa_workload_identity_free`.
///
/// # Safety
///
/// `endpoint_or_null` must be NULL or a NUL-terminated string; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_workload_identity_from_workload_api(
    endpoint_or_null: *const c_char,
    out: *mut *mut wa_workload_identity,
) -> wa_result {
    boundary("wa_workload_identity_from_workload_api", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, endpoint) = unsafe {
            (
                OutPtr::ptr(out, "out")?,
                opt_str_arg(endpoint_or_null, "endpoint_or_null")?,
            )
        };
        let inner = WorkloadIdentity::from_workload_api(endpoint)?;
        out.set_boxed(wa_workload_identity { inner });
        Ok(())
    })
}

/// The workload's SPIFFE ID (of the current certificate). Free it with `wa_string_free`.
///
/// # Safety
///
/// `identity` must be NULL or a live handle; `out_spiffe_id` NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_workload_identity_spiffe_id(
    identity: *const wa_workload_identity,
    out_spiffe_id: *mut *mut c_char,
) -> wa_result {
    boundary("wa_workload_identity_spiffe_id", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, identity) = unsafe {
            (
                OutPtr::ptr(out_spiffe_id, "out_spiffe_id")?,
                handle(identity, "identity")?,
            )
        };
        out.set_string(identity.inner.spiffe_id().as_str())
    })
}

/// Which files the identity's current certificate was read from, as a static string: `"gke"`
/// (`certificates.pem` and `private_key.pem`), `"combined"`
/// (`x509.credential-bundle.private-key.pem`), `"spiffe-fs"` (SPIFFE filesystem delivery) or
/// `"no-key"` (the platform keeps the key hidden). NULL for an identity from the Workload API, or
/// a NULL handle. Do not free it.
///
/// # Safety
///
/// `identity` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_workload_identity_layout(
    identity: *const wa_workload_identity,
) -> *const c_char {
    crate::error::boundary_value(std::ptr::null(), || {
        // SAFETY: the caller passes NULL or a live handle.
        let Ok(identity) = (unsafe { handle(identity, "identity") }) else {
            return std::ptr::null();
        };
        let name: &'static std::ffi::CStr = match identity.inner.layout().map(|l| l.name()) {
            Some("gke") => c"gke",
            Some("combined") => c"combined",
            Some("spiffe-fs") => c"spiffe-fs",
            Some("no-key") => c"no-key",
            _ => return std::ptr::null(),
        };
        name.as_ptr()
    })
}

/// 1 when the identity's current certificate came with its private key (handshakes can be
/// made), 0 when the platform keeps the key hidden or `identity` is NULL.
///
/// # Safety
///
/// `identity` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_workload_identity_has_private_key(
    identity: *const wa_workload_identity,
) -> c_int {
    crate::error::boundary_value(0, || {
        // SAFETY: the caller passes NULL or a live handle.
        match unsafe { handle(identity, "identity") } {
            Ok(identity) => c_int::from(identity.inner.has_private_key()),
            Err(_) => 0,
        }
    })
}

/// Releases an identity and stops watching its directory. `NULL` is a no-op. Configurations and
/// verifiers made from it keep working (they share the material).
///
/// # Safety
///
/// `identity` must be NULL or a handle not yet freed, used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_workload_identity_free(identity: *mut wa_workload_identity) {
    boundary_void(|| {
        if !identity.is_null() {
            // SAFETY: the caller passes a pointer from `Box::into_raw` of this library, once.
            drop(unsafe { Box::from_raw(identity) });
        }
    });
}

/// Verification and authorization of a peer's certificate chain, for a program whose TLS stack
/// (OpenSSL, BoringSSL, ...) does the handshake: X509-SVID checks, path validation against the
/// trust bundle of the peer's own trust domain (rotating with the identity), then the policies.
/// Thread-safe.
#[derive(Debug)]
pub struct wa_verifier {
    inner: SpiffeVerifier,
    purpose: Purpose,
}

/// Parses `policies` (see `wa_mtls_config_new`) into one authorizer.
pub(crate) fn authorizer(policies: &[&str]) -> Result<workload_auth::mtls::Authorizer, Failure> {
    Ok(workload_auth::mtls::Authorizer::from_policies(policies)?)
}

/// A verifier of peers playing `peer_role` (`WA_PEER_IS_SERVER` or `WA_PEER_IS_CLIENT`), trusting
/// the bundles of `identity` and allowing a peer any of the `n_policies` policies allows. A
/// policy is `"any"`, a SPIFFE ID (exact), `"td:TRUST_DOMAIN"` or `"prefix:SPIFFE_ID"` (path
/// prefix on `/` boundaries). Release it with `wa_verifier_free`.
///
/// # Safety
///
/// `identity` must be NULL or a live handle; `policies` NULL or `n_policies` string pointers;
/// `out` NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_verifier_new(
    identity: *const wa_workload_identity,
    peer_role: u32,
    policies: *const *const c_char,
    n_policies: usize,
    out: *mut *mut wa_verifier,
) -> wa_result {
    boundary("wa_verifier_new", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, identity, policies) = unsafe {
            (
                OutPtr::ptr(out, "out")?,
                handle(identity, "identity")?,
                str_array(policies, n_policies, "policies")?,
            )
        };
        let purpose = match peer_role {
            WA_PEER_IS_SERVER => Purpose::ServerAuth,
            WA_PEER_IS_CLIENT => Purpose::ClientAuth,
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "peer_role {other} is neither WA_PEER_IS_SERVER ({WA_PEER_IS_SERVER}) \
                         nor WA_PEER_IS_CLIENT ({WA_PEER_IS_CLIENT})"
                    ),
                )
                .into());
            }
        };
        // No verified-chain cache: a chain enters one only once its peer proved it holds the
        // leaf's key, which the caller's TLS stack checks after this verifier has run.
        let inner = SpiffeVerifier::new(identity.inner.store().clone(), authorizer(&policies)?);
        out.set_boxed(wa_verifier { inner, purpose });
        Ok(())
    })
}

/// Verifies the peer's chain — `n` DER certificates, the leaf first, then the intermediates the
/// peer sent, certificate `i` at `ders[i]` of `lens[i]` bytes — and authorizes its SPIFFE ID.
///
/// On success `*out_spiffe_id` is the peer's SPIFFE ID (free it with `wa_string_free`). A
/// refused peer gives `WA_ERR_VERIFICATION` and the reason in `wa_last_error_message` (expired,
/// unknown trust domain, not authorized by policy ...). The chain is only read during the call.
///
/// # Safety
///
/// `v` must be NULL or a live handle; `ders` and `lens` NULL or arrays of `n` entries, each
/// `ders[i]` pointing to `lens[i]` readable bytes; `out_spiffe_id` NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_verifier_verify(
    v: *const wa_verifier,
    ders: *const *const u8,
    lens: *const usize,
    n: usize,
    out_spiffe_id: *mut *mut c_char,
) -> wa_result {
    boundary("wa_verifier_verify", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, v) = unsafe {
            (
                OutPtr::ptr(out_spiffe_id, "out_spiffe_id")?,
                handle(v, "v")?,
            )
        };
        if n == 0 {
            return Err(Error::from(workload_auth::mtls::VerificationError::NoCertificate).into());
        }
        // SAFETY: the caller gives `n` pointers at `ders` and `n` lengths at `lens`.
        let (ders, lens) = unsafe { (slice_arg(ders, n, "ders")?, slice_arg(lens, n, "lens")?) };
        let mut chain = Vec::with_capacity(n);
        for (der, len) in ders.iter().zip(lens) {
            // SAFETY: the caller gives `lens[i]` readable bytes at `ders[i]`.
            let bytes = unsafe { bytes_arg(*der, *len, "ders[i]") }?;
            chain.push(CertificateDer::from(bytes));
        }
        let id = v
            .inner
            .verify(&chain, v.purpose, UnixTime::now())
            .map_err(Error::from)?;
        out.set_string(id.as_str())
    })
}

/// Releases a verifier. `NULL` is a no-op.
///
/// # Safety
///
/// `v` must be NULL or a handle not yet freed, used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_verifier_free(v: *mut wa_verifier) {
    boundary_void(|| {
        if !v.is_null() {
            // SAFETY: the caller passes a pointer from `Box::into_raw` of this library, once.
            drop(unsafe { Box::from_raw(v) });
        }
    });
}
