//! Each thread's copy of the cache entries it read last, so that a hit which hands out an owned
//! token (`TokenCache::get_cloned`, `TokenCache::get_derived`) needs no shared write of its own.
//!
//! A hit through `arc-swap` writes the thread's debt slot on load and again when the guard drops
//! (two atomic read-modify-writes): on this project's 2-core VM that is 18 ns, more than the owned
//! token's own reference-count increment and decrement together (12 ns). Here a thread keeps a
//! strong reference to the entry it last read from each of up to [`SLOTS`] caches, tagged with the
//! entry's stamp, and a hit compares that stamp with the cache's current one (a plain load): equal
//! means the kept entry is the cache's current entry, and it is read with no atomic write at all.
//! Anything else (another stamp, a slot taken by another cache, the thread-local being torn down,
//! a re-entrant call) falls back to the `arc-swap` load, which refills the slot.
//!
//! Stamps come from one process-wide counter, so no two entries of any two caches ever share one:
//! a cache dropped and another allocated at the same address cannot match a stale slot.
//!
//! The cost: a thread keeps a reference to the last entry it read from a cache until it reads
//! that cache again (or another one mapped to the same slot) or exits. A token replaced by a
//! refresh or forgotten by `invalidate` is never returned again (its stamp is gone), but its bytes
//! are zeroed only when that reference goes too. `invalidate` and dropping a cache release the
//! calling thread's reference at once.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many caches a thread keeps an entry of. A program reads a handful of token caches (its
/// default credentials, maybe an ID token or a second scope set): four slots hold them without
/// making the lookup more than one multiply and one compare.
const SLOTS: usize = 4;

/// The next unused stamp. It only grows; at one publication per nanosecond it would wrap after
/// 584 years.
static NEXT_STAMP: AtomicU64 = AtomicU64::new(1);

/// A stamp no entry has had before, for an entry about to be published.
pub(super) fn next_stamp() -> u64 {
    NEXT_STAMP.fetch_add(1, Ordering::Relaxed)
}

type Kept = Arc<dyn Any + Send + Sync>;

struct Slot {
    /// The address of the cache's shared state, to release the slot when that cache asks.
    cache: usize,
    stamp: u64,
    entry: Option<Kept>,
}

const EMPTY: Slot = Slot {
    cache: 0,
    stamp: 0,
    entry: None,
};

thread_local! {
    static RECENT: RefCell<[Slot; SLOTS]> = const { RefCell::new([EMPTY; SLOTS]) };
}

/// The slot of the cache at address `cache`: the top bits of a Fibonacci hash, so that caches
/// allocated next to each other land in different slots.
#[inline(always)]
fn index(cache: usize) -> usize {
    let hash = (cache as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // Two bits for four slots.
    (hash >> 62) as usize
}

/// Runs `read` on this thread's kept entry of the cache at `cache` if its stamp is `stamp`, that
/// is, if it is still the cache's current entry. `None` when it is not kept (or `read` says so).
#[inline(always)]
pub(super) fn read<E: Any, R>(
    cache: usize,
    stamp: u64,
    read: impl FnOnce(&E) -> Option<R>,
) -> Option<R> {
    RECENT
        .try_with(|slots| {
            let slots = slots.try_borrow().ok()?;
            let slot = &slots[index(cache)];
            if slot.stamp != stamp {
                return None;
            }
            read(slot.entry.as_deref()?.downcast_ref::<E>()?)
        })
        .ok()
        .flatten()
}

/// Keeps `entry`, whose stamp is `stamp`, as this thread's entry of the cache at `cache`.
pub(super) fn keep(cache: usize, stamp: u64, entry: Kept) {
    replace(
        cache,
        |_| true,
        Slot {
            cache,
            stamp,
            entry: Some(entry),
        },
    );
}

/// Releases this thread's entry of the cache at `cache`, if it keeps one.
pub(super) fn release(cache: usize) {
    replace(cache, |slot| slot.cache == cache, EMPTY);
}

fn replace(cache: usize, applies: impl FnOnce(&Slot) -> bool, with: Slot) {
    let _ = RECENT.try_with(|slots| {
        let Ok(mut slots) = slots.try_borrow_mut() else {
            return;
        };
        let slot = &mut slots[index(cache)];
        if applies(slot) {
            let old = std::mem::replace(slot, with);
            // The old entry may hold the last reference to a token: let its `Drop` run after the
            // borrow ends, so nothing it does can find the slots borrowed.
            drop(slots);
            drop(old);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_entry_is_read_only_under_its_own_stamp_and_type() {
        let cache = 0x1000;
        let stamp = next_stamp();
        keep(cache, stamp, Arc::new(7u32));
        assert_eq!(read::<u32, _>(cache, stamp, |v| Some(*v)), Some(7));
        assert_eq!(read::<u32, _>(cache, next_stamp(), |v| Some(*v)), None);
        assert_eq!(read::<u64, _>(cache, stamp, |v| Some(*v)), None);
        release(cache);
        assert_eq!(read::<u32, _>(cache, stamp, |v| Some(*v)), None);
    }

    #[test]
    fn releasing_another_cache_keeps_the_slot() {
        let cache = 0x2000;
        let stamp = next_stamp();
        keep(cache, stamp, Arc::new(1u8));
        // Find another address mapped to the same slot.
        let other = (1..)
            .map(|i| cache + i * 64)
            .find(|a| index(*a) == index(cache))
            .unwrap_or(cache);
        assert_ne!(other, cache);
        release(other);
        assert_eq!(read::<u8, _>(cache, stamp, |v| Some(*v)), Some(1));
    }

    #[test]
    fn the_entry_is_dropped_when_replaced_and_reads_inside_a_read_fall_back() {
        let cache = 0x3000;
        let first = Arc::new(String::from("first"));
        let stamp = next_stamp();
        keep(cache, stamp, Arc::clone(&first) as Kept);
        assert_eq!(Arc::strong_count(&first), 2);
        // A read inside a read finds the slots borrowed only for writing: reads nest.
        let nested = read::<String, _>(cache, stamp, |_| {
            read::<String, _>(cache, stamp, |v| Some(v.len()))
        });
        assert_eq!(nested, Some(5));
        // Keeping from inside a read cannot borrow the slots: it is skipped, not a panic.
        read::<String, _>(cache, stamp, |_| {
            keep(cache, next_stamp(), Arc::new(String::new()));
            Some(())
        });
        assert_eq!(
            read::<String, _>(cache, stamp, |v| Some(v.clone())).as_deref(),
            Some("first")
        );
        keep(cache, next_stamp(), Arc::new(String::from("second")));
        assert_eq!(Arc::strong_count(&first), 1);
    }

    #[test]
    fn stamps_are_never_reused() {
        let a = next_stamp();
        let b = next_stamp();
        assert!(b > a && a > 0);
    }
}
