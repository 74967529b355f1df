//! Criterion benchmarks of workload-auth; see BENCHMARKS.md. Helpers shared by the benches.

use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Runs `op` `iters` times on each of `threads` threads started together; returns the wall time
/// divided by the thread count, i.e. the time per operation of the whole machine. Equal figures for
/// one and for several threads mean perfect scaling (the threads never wait on each other).
pub fn parallel<F: Fn() + Sync>(threads: usize, iters: u64, op: &F) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..iters {
                    op();
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed() / u32::try_from(threads).unwrap_or(u32::MAX).max(1)
    })
}
