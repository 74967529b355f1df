//! `wa_mtls_config` and `wa_mtls_stream`: blocking mutual TLS over a socket the C program
//! connected or accepted.

use std::ffi::{c_char, c_int};
use std::net::TcpStream;
use std::os::fd::{BorrowedFd, OwnedFd};

use workload_auth::blocking::{MtlsClient, MtlsServer, MtlsStream};
use workload_auth::{Error, ErrorKind};

use crate::args::{Out, OutPtr, bytes_arg, bytes_out, handle, str_array};
use crate::error::{Failure, boundary, boundary_void, wa_result};
use crate::identity::{authorizer, wa_workload_identity};

/// Both ends of mutual TLS for one identity and one policy: presents the identity's current
/// certificate (following rotations) and accepts peers the policy allows. Thread-safe; make one
/// and use it for every connection.
#[derive(Debug)]
pub struct wa_mtls_config {
    client: MtlsClient,
    server: MtlsServer,
}

/// An established mutual-TLS connection with a verified, authorized peer. One thread may read
/// while another writes; reads are serialized with reads and writes with writes.
#[derive(Debug)]
pub struct wa_mtls_stream {
    inner: MtlsStream,
}

/// A configuration presenting `identity` and allowing peers any of the `n_policies` policies
/// allows: `"any"` (every peer whose chain verifies against the bundle of its trust domain), a
/// SPIFFE ID (exactly that peer), `"td:TRUST_DOMAIN"` (its members) or `"prefix:SPIFFE_ID"` (that
/// ID and those beneath it on `/` boundaries). At least one policy is required. TLS 1.3 only.
/// Release it with `wa_mtls_config_free`.
///
/// # Safety
///
/// `identity` must be NULL or a live handle; `policies` NULL or `n_policies` string pointers;
/// `out` NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_mtls_config_new(
    identity: *const wa_workload_identity,
    policies: *const *const c_char,
    n_policies: usize,
    out: *mut *mut wa_mtls_config,
) -> wa_result {
    boundary("wa_mtls_config_new", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, identity, policies) = unsafe {
            (
                OutPtr::ptr(out, "out")?,
                handle(identity, "identity")?,
                str_array(policies, n_policies, "policies")?,
            )
        };
        let allow = authorizer(&policies)?;
        let client = MtlsClient::new(&identity.inner, allow.clone())?;
        let server = MtlsServer::new(&identity.inner, allow)?;
        out.set_boxed(wa_mtls_config { client, server });
        Ok(())
    })
}

/// Releases a configuration. `NULL` is a no-op. Streams made with it keep working.
///
/// # Safety
///
/// `config` must be NULL or a handle not yet freed, used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_mtls_config_free(config: *mut wa_mtls_config) {
    boundary_void(|| {
        if !config.is_null() {
            // SAFETY: the caller passes a pointer from `Box::into_raw` of this library, once.
            drop(unsafe { Box::from_raw(config) });
        }
    });
}

/// Duplicates the caller's socket (`dup(2)`), so the caller keeps owning `fd`.
fn own_socket(fd: c_int) -> Result<TcpStream, Failure> {
    let bad_fd = |e: Option<std::io::Error>| {
        let error = Error::new(
            ErrorKind::InvalidArgument,
            format!("`fd` {fd} is not an open, connected socket"),
        );
        match e {
            Some(e) => error.with_source(e),
            None => error,
        }
    };
    if fd < 0 {
        return Err(bad_fd(None).into());
    }
    // SAFETY: `fd` is not -1 and the caller guarantees it is open for the duration of the call;
    // it is only borrowed long enough to duplicate it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let owned: OwnedFd = borrowed.try_clone_to_owned().map_err(|e| bad_fd(Some(e)))?;
    let tcp = TcpStream::from(owned);
    tcp.set_nonblocking(false).map_err(|e| bad_fd(Some(e)))?;
    Ok(tcp)
}

/// Completes the client side of the handshake over `fd`, a socket the caller connected (TCP or
/// any stream socket). The server is verified and authorized when this returns `WA_OK`; with
/// TLS 1.3, a server that refuses *our* certificate says so on the first read
/// (`WA_ERR_REJECTED`).
///
/// Ownership: the stream works on its own duplicate of `fd` (`dup(2)`); the caller still owns
/// `fd` and closes it when it likes — right after this call is fine. The socket is put in
/// blocking mode; timeouts are the socket's own (`SO_RCVTIMEO`/`SO_SNDTIMEO`, set before the
/// call). Release the stream with `wa_mtls_stream_free`.
///
/// # Safety
///
/// `config` must be NULL or a live handle; `fd` an open file descriptor for the duration of the
/// call; `out` NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_mtls_connect(
    config: *const wa_mtls_config,
    fd: c_int,
    out: *mut *mut wa_mtls_stream,
) -> wa_result {
    boundary("wa_mtls_connect", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, config) = unsafe { (OutPtr::ptr(out, "out")?, handle(config, "config")?) };
        let inner = config.client.connect(own_socket(fd)?)?;
        out.set_boxed(wa_mtls_stream { inner });
        Ok(())
    })
}

/// Completes the server side of the handshake over `fd`, a socket the caller accepted. A client
/// whose certificate does not verify or whose SPIFFE ID the policies refuse gives
/// `WA_ERR_VERIFICATION` (the reason is in `wa_last_error_message`). Ownership, blocking mode and
/// timeouts as for `wa_mtls_connect`.
///
/// # Safety
///
/// As `wa_mtls_connect`.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_mtls_accept(
    config: *const wa_mtls_config,
    fd: c_int,
    out: *mut *mut wa_mtls_stream,
) -> wa_result {
    boundary("wa_mtls_accept", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, config) = unsafe { (OutPtr::ptr(out, "out")?, handle(config, "config")?) };
        let inner = config.server.accept(own_socket(fd)?)?;
        out.set_boxed(wa_mtls_stream { inner });
        Ok(())
    })
}

/// Reads up to `len` decrypted bytes into `buf`, blocking until at least one is available, and
/// stores the count in `*out_read`. `*out_read == 0` with `WA_OK` means the peer closed the
/// connection cleanly; a close without TLS `close_notify` is `WA_ERR_TRANSPORT`.
///
/// # Safety
///
/// `stream` must be NULL or a live handle; `buf` NULL or `len` writable bytes; `out_read` NULL or
/// writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_mtls_stream_read(
    stream: *mut wa_mtls_stream,
    buf: *mut u8,
    len: usize,
    out_read: *mut usize,
) -> wa_result {
    boundary("wa_mtls_stream_read", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, stream, buf) = unsafe {
            (
                Out::new(out_read, "out_read")?,
                handle(stream.cast_const(), "stream")?,
                bytes_out(buf, len, "buf")?,
            )
        };
        out.set(stream.inner.read(buf)?);
        Ok(())
    })
}

/// Encrypts and sends all `len` bytes of `buf` (blocking until the socket took them).
///
/// # Safety
///
/// `stream` must be NULL or a live handle; `buf` NULL or `len` readable bytes.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_mtls_stream_write(
    stream: *mut wa_mtls_stream,
    buf: *const u8,
    len: usize,
) -> wa_result {
    boundary("wa_mtls_stream_write", || {
        // SAFETY: forwarded contracts of each argument.
        let (stream, buf) = unsafe {
            (
                handle(stream.cast_const(), "stream")?,
                bytes_arg(buf, len, "buf")?,
            )
        };
        stream.inner.write_all(buf)?;
        Ok(())
    })
}

/// The peer's SPIFFE ID, verified and authorized during the handshake. Free it with
/// `wa_string_free`.
///
/// # Safety
///
/// `stream` must be NULL or a live handle; `out_spiffe_id` NULL or writable.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_mtls_stream_peer_spiffe_id(
    stream: *const wa_mtls_stream,
    out_spiffe_id: *mut *mut c_char,
) -> wa_result {
    boundary("wa_mtls_stream_peer_spiffe_id", || {
        // SAFETY: forwarded contracts of each argument.
        let (out, stream) = unsafe {
            (
                OutPtr::ptr(out_spiffe_id, "out_spiffe_id")?,
                handle(stream, "stream")?,
            )
        };
        out.set_string(stream.inner.peer_spiffe_id().as_str())
    })
}

/// Sends TLS `close_notify` and shuts the connection down for writing, so the peer's reads end
/// cleanly. Reading what the peer still sends remains possible. The stream's socket is closed by
/// `wa_mtls_stream_free`.
///
/// # Safety
///
/// `stream` must be NULL or a live handle.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_mtls_stream_close(stream: *mut wa_mtls_stream) -> wa_result {
    boundary("wa_mtls_stream_close", || {
        // SAFETY: forwarded contract.
        let stream = unsafe { handle(stream.cast_const(), "stream") }?;
        stream.inner.close()?;
        Ok(())
    })
}

/// Releases a stream and closes its socket (without `close_notify`: call
/// `wa_mtls_stream_close` first for a clean close). `NULL` is a no-op.
///
/// # Safety
///
/// `stream` must be NULL or a handle not yet freed, used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_mtls_stream_free(stream: *mut wa_mtls_stream) {
    boundary_void(|| {
        if !stream.is_null() {
            // SAFETY: the caller passes a pointer from `Box::into_raw` of this library, once.
            drop(unsafe { Box::from_raw(stream) });
        }
    });
}
