//! Token cache hit path against the baselines named in BENCHMARKS.md, all in one run.
//!
//! `cargo bench -p workload-auth-benches --bench token_cache`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use workload_auth_benches::parallel;
use workload_auth_core::{AccessToken, TokenCache};
use workload_auth_emulator::{Emulator, EmulatorConfig};
use workload_auth_metadata::MetadataClient;

fn token() -> AccessToken {
    AccessToken::new(
        "ya29.a0AfB_byC-benchmark-token-of-a-realistic-length-0123456789abcdefghijklmnopqrstuvwxyz"
            .into(),
        "Bearer",
        SystemTime::now() + Duration::from_secs(3600),
    )
}

fn cache_hit(c: &mut Criterion) {
    let cache = TokenCache::new(|| async { Ok(token()) });
    cache.get_blocking().unwrap();
    let rwlock = RwLock::new(Arc::new(token()));
    let (watch_tx, watch_rx) = tokio::sync::watch::channel(Some(token()));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());

    let hit = || {
        let t = cache.get_cached().unwrap();
        black_box(t.secret().len());
    };
    let rw = || {
        let t = Arc::clone(&rwlock.read().unwrap());
        black_box(t.secret().len());
    };
    let watch = || {
        let t = watch_rx.borrow().clone().unwrap();
        black_box(t.secret().len());
    };

    let mut g = c.benchmark_group("token_cache");
    g.bench_function("hit/1 thread", |b| b.iter(hit));
    g.bench_function("baseline: Instant::now", |b| {
        b.iter(|| black_box(Instant::now()))
    });
    g.bench_function("baseline: RwLock<Arc<Token>> read+clone/1 thread", |b| {
        b.iter(rw)
    });
    g.bench_function("baseline: watch borrow+clone/1 thread", |b| b.iter(watch));
    let name = |what: &str| format!("{what}/{threads} threads (time per op, all threads)");
    g.bench_function(name("hit"), |b| {
        b.iter_custom(|iters| parallel(threads, iters, &hit))
    });
    // Shares nothing between threads: how far this machine's cores scale at all.
    g.bench_function(name("baseline: Instant::now"), |b| {
        b.iter_custom(|iters| {
            parallel(threads, iters, &|| {
                black_box(Instant::now());
            })
        })
    });
    g.bench_function(name("baseline: RwLock<Arc<Token>> read+clone"), |b| {
        b.iter_custom(|iters| parallel(threads, iters, &rw))
    });
    g.bench_function(name("baseline: watch borrow+clone"), |b| {
        b.iter_custom(|iters| parallel(threads, iters, &watch))
    });
    g.finish();
    drop(watch_tx);
}

/// A fetch from the emulator's metadata server over loopback, the HTTP connection reused; and the
/// same behind a cache miss (invalidate, then a blocking get: spawn, fetch, store, wake).
fn cold_fetch(c: &mut Criterion) {
    let emulator = Emulator::start_in_thread(EmulatorConfig::default()).unwrap();
    let client = MetadataClient::builder()
        .host(emulator.host())
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fetch_client = client.clone();
    let cache = TokenCache::new(move || {
        let client = fetch_client.clone();
        async move { client.access_token(&[]).await }
    });
    let mut g = c.benchmark_group("token_cache");
    g.bench_function("fetch from emulator (connection reused)", |b| {
        b.iter(|| runtime.block_on(client.access_token(&[])).unwrap())
    });
    g.bench_function(
        "cache miss: invalidate + get_blocking (fetch from emulator)",
        |b| {
            b.iter(|| {
                cache.invalidate();
                black_box(cache.get_blocking().unwrap().secret().len());
            })
        },
    );
    g.finish();
}

criterion_group!(benches, cache_hit, cold_fetch);
criterion_main!(benches);
