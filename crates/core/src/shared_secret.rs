//! [`SharedSecret`]: a secret string shared by clones, zeroed when the last clone drops.
//!
//! This is the one module of the crate with `unsafe` code, and it is one cast. A cached access
//! token is read on every request, so its secret must sit one pointer away from the cache entry
//! (an `Arc<str>` fat pointer: address and length inline) and a clone must be one reference-count
//! increment. `Arc<str>` is both, but frees its bytes without zeroing them, and std offers no
//! "was this the last reference?" for an unsized value except the value's own `Drop`. So the bytes
//! live in an `Arc<ZeroizingStr>`, a `str` whose `Drop` zeroes it, which `Arc` runs exactly once,
//! after the last clone is gone, whichever thread drops it. The safe alternatives each cost more
//! on the hot path (measured in `benches/benches/token_cache.rs`, BENCHMARKS.md "Token cache"):
//! an `Arc` around an owned string is one more dependent load per read, and an `Arc<str>` beside a
//! second `Arc` whose drop zeroes it is two atomic operations per clone and per drop.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroize;

use crate::secret::SecretString;

/// The bytes of a [`SharedSecret`]: a `str` that zeroes itself when dropped.
#[repr(transparent)]
struct ZeroizingStr(str);

impl Drop for ZeroizingStr {
    fn drop(&mut self) {
        self.0.zeroize();
        #[cfg(test)]
        tests::record_drop(self);
    }
}

/// A secret string (an access token) shared by every clone: cloning is one atomic
/// reference-count increment, never an allocation or a copy of the secret, and the bytes are
/// zeroed when the last clone is dropped.
///
/// `Debug` and `Display` print `[redacted]`; the only way to read the secret is
/// [`SharedSecret::expose`], which makes every use visible in review.
#[derive(Clone)]
pub struct SharedSecret(Arc<ZeroizingStr>);

impl SharedSecret {
    /// Moves `secret` into a shared buffer (one copy; `secret`'s own bytes are zeroed as it drops).
    pub fn new(secret: SecretString) -> Self {
        let shared: Arc<str> = Arc::from(secret.expose());
        let raw = Arc::into_raw(shared) as *const ZeroizingStr;
        // SAFETY: `ZeroizingStr` is `repr(transparent)` over `str`, so an `ArcInner<str>` and an
        // `ArcInner<ZeroizingStr>` of the same length have the same layout and the pointer keeps
        // its length; `raw` comes from `Arc::into_raw` and is turned back into an `Arc` exactly
        // once. std converts `Arc<OsStr>` into `Arc<Path>` the same way.
        #[allow(unsafe_code)]
        let shared = unsafe { Arc::from_raw(raw) };
        Self(shared)
    }

    /// The secret itself. Do not log it.
    #[inline]
    pub fn expose(&self) -> &str {
        &self.0.0
    }

    /// Length in bytes (safe to log).
    #[inline]
    pub fn len(&self) -> usize {
        self.0.0.len()
    }

    /// Whether the secret is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.0.is_empty()
    }

    /// Whether `a` and `b` are clones of one secret (one buffer), not merely equal.
    #[inline]
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl From<SecretString> for SharedSecret {
    fn from(secret: SecretString) -> Self {
        Self::new(secret)
    }
}

impl From<&str> for SharedSecret {
    fn from(secret: &str) -> Self {
        Self::new(SecretString::from(secret))
    }
}

impl PartialEq for SharedSecret {
    fn eq(&self, other: &Self) -> bool {
        Self::ptr_eq(self, other) || self.expose() == other.expose()
    }
}

impl Eq for SharedSecret {}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret([redacted])")
    }
}

impl fmt::Display for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Every `ZeroizingStr` dropped by this crate's tests: its address, and whether every byte
    /// was zero once its `Drop` had run.
    static DROPPED: Mutex<Vec<(usize, bool)>> = Mutex::new(Vec::new());

    pub(super) fn record_drop(bytes: &ZeroizingStr) {
        let zeroed = bytes.0.bytes().all(|b| b == 0);
        let mut dropped = DROPPED.lock().unwrap_or_else(|p| p.into_inner());
        dropped.push((bytes.0.as_ptr() as usize, zeroed));
    }

    /// Drops of the buffer at `address`, and whether each found it zeroed.
    fn drops_at(address: usize) -> Vec<bool> {
        let dropped = DROPPED.lock().unwrap_or_else(|p| p.into_inner());
        dropped
            .iter()
            .filter(|(a, _)| *a == address)
            .map(|(_, zeroed)| *zeroed)
            .collect()
    }

    fn address(secret: &SharedSecret) -> usize {
        secret.expose().as_ptr() as usize
    }

    #[test]
    fn reads_the_secret_and_never_prints_it() {
        let s = SharedSecret::from("ya29.shared-secret");
        assert_eq!(s.expose(), "ya29.shared-secret");
        assert_eq!(s.len(), 18);
        assert!(!s.is_empty());
        assert!(SharedSecret::from("").is_empty());
        assert_eq!(format!("{s}"), "[redacted]");
        assert!(!format!("{s:?}").contains("ya29"));
        assert!(!format!("{:?}", Some(&s)).contains("secret"));
    }

    #[test]
    fn clones_share_one_buffer_and_equal_values_are_equal() {
        let s = SharedSecret::from("ya29.one");
        let clone = s.clone();
        assert!(SharedSecret::ptr_eq(&s, &clone));
        assert_eq!(s.expose().as_ptr(), clone.expose().as_ptr());
        let other = SharedSecret::from("ya29.one");
        assert!(!SharedSecret::ptr_eq(&s, &other));
        assert_eq!(s, other);
        assert_ne!(s, SharedSecret::from("ya29.two"));
    }

    #[test]
    fn the_bytes_are_zeroed_once_when_the_last_clone_drops() {
        let s = SharedSecret::from("ya29.zeroed-when-the-last-clone-drops");
        let at = address(&s);
        // Earlier secrets may have lived at this address; count only drops from now on.
        let before = drops_at(at).len();
        let clone = s.clone();
        drop(s);
        assert_eq!(drops_at(at).len(), before, "dropped while a clone held it");
        assert_eq!(clone.expose(), "ya29.zeroed-when-the-last-clone-drops");
        drop(clone);
        assert_eq!(drops_at(at).get(before), Some(&true));
    }

    #[test]
    fn clones_dropped_on_many_threads_at_once_still_zero_the_bytes() {
        for round in 0..50 {
            let s = SharedSecret::from(format!("ya29.race-{round}").as_str());
            let at = address(&s);
            let before = drops_at(at).len();
            let barrier = Arc::new(std::sync::Barrier::new(4));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let clone = s.clone();
                    let barrier = Arc::clone(&barrier);
                    std::thread::spawn(move || {
                        barrier.wait();
                        drop(clone);
                    })
                })
                .collect();
            drop(s);
            for thread in threads {
                thread.join().unwrap();
            }
            // Freed memory may be reused by another secret afterwards: the first drop recorded
            // at this address since `s` was made is this one.
            assert_eq!(drops_at(at).get(before), Some(&true), "round {round}");
        }
    }
}
