//! Checked conversions of C arguments (pointers, strings, out-parameters) and the strings this
//! library hands back.
//!
//! Every `unsafe` block of the crate that touches a caller's pointer is here or next to a
//! `Box::from_raw` in a `_free` function, each with the contract it relies on.

use std::ffi::{CStr, CString, c_char};

use workload_auth::{Error, ErrorKind};
use zeroize::Zeroize;

use crate::error::{Failure, boundary_void};

/// Refuses an element count whose bytes no object can span (more than `isize::MAX`): such a
/// count is a caller's bug (a negative value cast to `size_t`, say), and building a slice of it
/// would be undefined behaviour rather than an error.
fn check_count<T>(n: usize, name: &'static str) -> Result<(), Failure> {
    let fits = n
        .checked_mul(std::mem::size_of::<T>().max(1))
        .is_some_and(|bytes| isize::try_from(bytes).is_ok());
    if fits {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("the length given for `{name}` ({n}) is larger than any object can be"),
        )
        .into())
    }
}

/// A borrowed handle argument.
///
/// # Safety
///
/// `ptr` must be NULL or point to a live `T` made by this library, not freed during the call.
pub(crate) unsafe fn handle<'a, T>(ptr: *const T, name: &'static str) -> Result<&'a T, Failure> {
    // SAFETY: NULL is rejected by `as_ref`; otherwise the caller guarantees a live `T`.
    unsafe { ptr.as_ref() }.ok_or(Failure::Null(name))
}

/// A required NUL-terminated UTF-8 string argument.
///
/// # Safety
///
/// `ptr` must be NULL or point to a NUL-terminated string valid for the call.
pub(crate) unsafe fn str_arg<'a>(
    ptr: *const c_char,
    name: &'static str,
) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::Null(name));
    }
    // SAFETY: not NULL, and the caller guarantees a NUL-terminated string alive for the call.
    let cstr = unsafe { CStr::from_ptr(ptr) };
    cstr.to_str().map_err(|_| Failure::Utf8(name))
}

/// An optional string argument: NULL gives `None`.
///
/// # Safety
///
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(
    ptr: *const c_char,
    name: &'static str,
) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { str_arg(ptr, name) }.map(Some)
}

/// An array of `n` string arguments (`n == 0` allows a NULL array).
///
/// # Safety
///
/// `ptr` must be NULL or point to `n` pointers, each as in [`str_arg`].
pub(crate) unsafe fn str_array<'a>(
    ptr: *const *const c_char,
    n: usize,
    name: &'static str,
) -> Result<Vec<&'a str>, Failure> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(Failure::Null(name));
    }
    check_count::<*const c_char>(n, name)?;
    // SAFETY: not NULL, and the caller guarantees `n` readable pointers.
    let items = unsafe { std::slice::from_raw_parts(ptr, n) };
    items
        .iter()
        // SAFETY: each element is a string pointer under the same contract.
        .map(|p| unsafe { str_arg(*p, name) })
        .collect()
}

/// An array argument of `n` elements (`n == 0` allows NULL).
///
/// # Safety
///
/// `ptr` must be NULL or point to `n` readable, initialized, aligned `T`s.
pub(crate) unsafe fn slice_arg<'a, T>(
    ptr: *const T,
    n: usize,
    name: &'static str,
) -> Result<&'a [T], Failure> {
    if n == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::Null(name));
    }
    check_count::<T>(n, name)?;
    // SAFETY: not NULL, and the caller guarantees `n` readable elements for the call.
    Ok(unsafe { std::slice::from_raw_parts(ptr, n) })
}

/// A byte-buffer argument of `len` bytes (`len == 0` allows NULL).
///
/// # Safety
///
/// `ptr` must be NULL or point to `len` readable bytes.
pub(crate) unsafe fn bytes_arg<'a>(
    ptr: *const u8,
    len: usize,
    name: &'static str,
) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::Null(name));
    }
    check_count::<u8>(len, name)?;
    // SAFETY: not NULL, and the caller guarantees `len` readable bytes for the call.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A writable byte buffer of `len` bytes (`len == 0` allows NULL).
///
/// # Safety
///
/// `ptr` must be NULL or point to `len` writable bytes not otherwise accessed during the call.
pub(crate) unsafe fn bytes_out<'a>(
    ptr: *mut u8,
    len: usize,
    name: &'static str,
) -> Result<&'a mut [u8], Failure> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(Failure::Null(name));
    }
    check_count::<u8>(len, name)?;
    // SAFETY: not NULL, and the caller guarantees `len` writable, unaliased bytes for the call.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// A required out-parameter, cleared (NULL or zero) before the call does anything else so a
/// failed call never leaves a stale value behind.
pub(crate) struct Out<'a, T>(&'a mut T);

impl<'a, T: Default> Out<'a, T> {
    /// # Safety
    ///
    /// `ptr` must be NULL or point to a writable `T`.
    pub(crate) unsafe fn new(ptr: *mut T, name: &'static str) -> Result<Self, Failure> {
        // SAFETY: NULL is rejected by `as_mut`; otherwise the caller guarantees a writable `T`.
        let slot = unsafe { ptr.as_mut() }.ok_or(Failure::Null(name))?;
        *slot = T::default();
        Ok(Self(slot))
    }

    /// An out-parameter the caller may pass as NULL when it does not want the value.
    ///
    /// # Safety
    ///
    /// As [`Out::new`].
    pub(crate) unsafe fn optional(
        ptr: *mut T,
        name: &'static str,
    ) -> Result<Option<Self>, Failure> {
        if ptr.is_null() {
            return Ok(None);
        }
        // SAFETY: forwarded contract.
        unsafe { Self::new(ptr, name) }.map(Some)
    }

    pub(crate) fn set(self, value: T) {
        *self.0 = value;
    }
}

/// A pointer out-parameter (`T **out`).
pub(crate) type OutPtr<'a, T> = Out<'a, PtrSlot<T>>;

/// `*mut T` with a NULL default, so [`Out`] can clear it.
#[repr(transparent)]
pub(crate) struct PtrSlot<T>(pub(crate) *mut T);

impl<T> Default for PtrSlot<T> {
    fn default() -> Self {
        Self(std::ptr::null_mut())
    }
}

impl<'a, T> Out<'a, PtrSlot<T>> {
    /// # Safety
    ///
    /// `ptr` must be NULL or point to a writable `T *`.
    pub(crate) unsafe fn ptr(ptr: *mut *mut T, name: &'static str) -> Result<Self, Failure> {
        // SAFETY: `PtrSlot<T>` is `repr(transparent)` over `*mut T`; forwarded contract.
        unsafe { Self::new(ptr.cast::<PtrSlot<T>>(), name) }
    }

    /// Hands a new object to the caller, who releases it with the matching `_free`.
    pub(crate) fn set_boxed(self, value: T) {
        self.set(PtrSlot(Box::into_raw(Box::new(value))));
    }
}

impl<'a> Out<'a, PtrSlot<c_char>> {
    /// Hands a copy of `s` to the caller, who releases it with `wa_string_free`.
    pub(crate) fn set_string(self, s: &str) -> Result<(), Failure> {
        let c = CString::new(s).map_err(|_| {
            Error::new(
                ErrorKind::MalformedResponse,
                "the value contains a NUL byte and cannot be returned as a C string",
            )
        })?;
        self.set(PtrSlot(c.into_raw()));
        Ok(())
    }
}

/// Releases a string returned by this library (tokens, SPIFFE IDs, JSON). Its bytes are
/// overwritten with zeros first, since it may be a token. `NULL` is a no-op.
///
/// # Safety
///
/// `s` must be NULL or a string returned by this library and not yet freed. Freeing the same
/// string twice is undefined behaviour.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wa_string_free(s: *mut c_char) {
    boundary_void(|| {
        if s.is_null() {
            return;
        }
        // SAFETY: the caller passes a pointer from `CString::into_raw` of this library, once.
        let owned = unsafe { CString::from_raw(s) };
        let mut bytes = owned.into_bytes_with_nul();
        // The slice impl zeroes in bulk behind an optimization barrier (the `Vec` impl goes byte
        // by byte); the allocation is exactly the string, so nothing is left in spare capacity.
        bytes.as_mut_slice().zeroize();
    });
}

/// The version of this library (`"0.1.0"`). The string is static: do not free it.
#[unsafe(no_mangle)]
pub extern "C" fn wa_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}
