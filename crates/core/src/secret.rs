//! A string that never prints itself, and [`wipe`], which zeroes secret bytes at memset speed.

use std::fmt;

/// A secret string: access tokens, refresh tokens, private keys, client secrets.
///
/// `Debug` and `Display` print `[redacted]`; the bytes are zeroed when the value is dropped. The only
/// way to read the secret is [`SecretString::expose`], which makes every use visible in review.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps `value`, taking ownership so no unzeroed copy is left behind by this call.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself. Do not log it.
    #[inline]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes (safe to log).
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        drop(wiped(std::mem::take(&mut self.0).into_bytes()));
    }
}

/// Zeroes `buf` with one `memset`, in a way the compiler may not remove.
///
/// A plain `buf.fill(0)` right before the buffer is freed is a dead store the optimizer may
/// drop. Here the filled slice is then handed to [`zeroize::optimization_barrier`] (an empty
/// `asm!` block given the slice's address, which the compiler must assume reads the memory
/// behind it; `std::hint::black_box` on targets without stable `asm!`), and a
/// compiler fence keeps later code (the deallocation) from being moved before the stores. So the
/// zeroes are written in full before `buf` is released.
///
/// What it does not do, and neither does a per-byte volatile loop: clear copies the program made
/// earlier (a `Vec` outgrown and reallocated, a value moved), registers, or memory swapped out.
/// Callers size buffers up front for that reason ([`crate::fs::read_bounded`] grows by hand).
///
/// The `zeroize` crate's `Zeroize` for `Vec<u8>`, `String` and `[u8; N]` writes one volatile
/// byte at a time (its slice impl is bulk): an 8 KiB buffer took about 1.2 µs, and dropping a
/// token was a sizeable part of minting a client-side downscoped one. This costs a `memset`.
pub fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    zeroize::optimization_barrier(buf);
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// `bytes` with its whole allocation zeroed, length and spare capacity alike, without
/// reallocating (the returned `Vec` is `bytes`, at its full capacity): what dropping a
/// [`SecretString`] leaves behind.
fn wiped(mut bytes: Vec<u8>) -> Vec<u8> {
    // Spare capacity may hold bytes of an earlier, longer value (a `truncate`, a `clear`).
    bytes.resize(bytes.capacity(), 0);
    wipe(&mut bytes);
    bytes
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let s = SecretString::from("ya29.very-secret");
        assert_eq!(format!("{s}"), "[redacted]");
        assert!(!format!("{s:?}").contains("ya29"));
        assert!(!format!("{:?}", Some(&s)).contains("secret"));
        assert_eq!(s.expose(), "ya29.very-secret");
        assert_eq!(s.len(), 16);
    }

    #[test]
    fn wipe_zeroes_every_byte() {
        for len in [0, 1, 15, 16, 17, 300, 8192] {
            let mut buf: Vec<u8> = (0..len).map(|i| (i % 251 + 1) as u8).collect();
            wipe(&mut buf);
            assert_eq!(buf.len(), len);
            assert!(buf.iter().all(|&b| b == 0), "{len}");
        }
    }

    #[test]
    fn a_dropped_secret_string_leaves_its_whole_allocation_zeroed() {
        // A token that was longer once: the bytes past its length still hold the old tail.
        let mut value = String::with_capacity(64);
        value.push_str("ya29.a-much-longer-secret-than-what-is-kept");
        value.truncate(9);
        let (pointer, capacity) = (value.as_ptr(), value.capacity());
        let bytes = wiped(value.into_bytes());
        assert_eq!(bytes.as_ptr(), pointer, "the same allocation, not a copy");
        assert_eq!(bytes.len(), capacity);
        assert!(bytes.iter().all(|&b| b == 0), "{bytes:?}");
    }

    #[test]
    fn deserializes_from_a_json_string() {
        let s: SecretString = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(s.expose(), "abc");
        assert!(serde_json::from_str::<SecretString>("12").is_err());
    }
}
