//! A cache hit allocates nothing: counted with dhat's heap profiler as the global allocator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use workload_auth_core::{AccessToken, TokenCache};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[test]
fn a_cache_hit_makes_no_allocation() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let cache = TokenCache::new(|| async {
        Ok(AccessToken::new(
            "ya29.no-alloc".into(),
            "Bearer",
            SystemTime::now() + Duration::from_secs(3600),
        ))
    });
    cache.get_blocking().unwrap();
    // dhat counts every thread's allocations: let the library runtime's threads finish the fetch's
    // bookkeeping (task teardown, wakeups) before measuring this thread's hits.
    std::thread::sleep(std::time::Duration::from_millis(200));
    // Warm up any lazily allocated per-thread state of the lock-free load.
    for _ in 0..10 {
        assert!(cache.get_cached().is_some());
    }
    let before = dhat::HeapStats::get();
    let mut total = 0;
    for _ in 0..10_000 {
        let token = cache.get_cached().unwrap();
        total += token.secret().len();
    }
    let after = dhat::HeapStats::get();
    assert_eq!(total, 10_000 * "ya29.no-alloc".len());
    assert_eq!(
        after.total_blocks,
        before.total_blocks,
        "cache hits allocated {} blocks",
        after.total_blocks - before.total_blocks
    );
}
