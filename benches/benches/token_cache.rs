//! Token cache hit path against the baselines named in BENCHMARKS.md, all in one run; and the
//! token paths of `Credentials` (async and blocking) beside two peers' cache hits, gcp_auth's
//! `TokenProvider::token` and google-cloud-auth's `Credentials::headers`, each peer holding a
//! token from the emulator on loopback.
//!
//! `cargo bench -p workload-auth-benches --bench token_cache`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::hint::black_box;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use workload_auth_adc::{Builder, Credentials, DetectionInput, EnvSource};
use workload_auth_benches::parallel;
use workload_auth_core::{AccessToken, Expiring, TokenCache};
use workload_auth_emulator::{Emulator, EmulatorConfig, IdentityConfig, ServiceAccountKey};
use workload_auth_metadata::MetadataClient;

fn token() -> AccessToken {
    AccessToken::new(
        "ya29.a0AfB_byC-benchmark-token-of-a-realistic-length-0123456789abcdefghijklmnopqrstuvwxyz"
            .into(),
        "Bearer",
        SystemTime::now() + Duration::from_secs(3600),
    )
}

/// A token that owns its strings, as google-cloud-rust's cache holds it.
#[derive(Clone)]
struct OwnedToken {
    token: String,
    token_type: String,
    expires_at: SystemTime,
}

fn cache_hit(c: &mut Criterion) {
    let cache = TokenCache::new(|| async { Ok(token()) });
    cache.get_blocking().unwrap();
    let rwlock = RwLock::new(Arc::new(token()));
    // google-cloud-rust's cached token owns its strings, so its clone copies them; ours is
    // shared (an `Arc`), so the baseline keeps a token of that shape.
    let owned = OwnedToken {
        token: token().secret().expose().to_owned(),
        token_type: "Bearer".to_owned(),
        expires_at: SystemTime::now() + Duration::from_secs(3600),
    };
    let (watch_tx, watch_rx) = tokio::sync::watch::channel(Some(owned));
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
        black_box((t.token.len(), t.token_type.len(), t.expires_at));
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

/// The shape `AccessToken` had before it became one pointer: its fields inline (the secret as a
/// fat pointer, the token type, the expiry: 48 bytes), a clone one reference-count increment.
/// (Zeroing the secret on the last drop is left out: it runs once per token, not per clone.)
#[derive(Clone)]
struct InlineToken {
    secret: Arc<str>,
    token_type: Option<Arc<str>>,
    expires_at: SystemTime,
}

impl Expiring for InlineToken {
    fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

/// An owned token from a warm cache (what `access_token()` does), three ways in one run: the
/// `arc-swap` load and a clone, the thread's own copy of the current entry (`get_cloned`), and
/// the same for a 48-byte token whose fields sit inline.
fn token_layouts(c: &mut Criterion) {
    let ours = TokenCache::new(|| async { Ok(token()) });
    let inline = TokenCache::new(|| async {
        let t = token();
        Ok(InlineToken {
            secret: Arc::from(t.secret().expose()),
            token_type: None,
            expires_at: t.expires_at(),
        })
    });
    ours.get_blocking().unwrap();
    inline.get_blocking().unwrap();
    let mut g = c.benchmark_group("token_layout");
    g.bench_function("lent hit + read length: AccessToken", |b| {
        b.iter(|| black_box(ours.get_cached().unwrap().secret().len()))
    });
    g.bench_function("owned: get_cached + clone (arc-swap load)", |b| {
        b.iter(|| {
            let token = AccessToken::clone(&ours.get_cached().unwrap());
            black_box((token.secret().len(), token.token_type().len()))
        })
    });
    g.bench_function("owned: get_cloned (thread's copy), AccessToken", |b| {
        b.iter(|| {
            let token = ours.get_cloned().unwrap();
            black_box((token.secret().len(), token.token_type().len()))
        })
    });
    g.bench_function(
        "owned: get_cloned (thread's copy), 48-byte inline token",
        |b| {
            b.iter(|| {
                let token = inline.get_cloned().unwrap();
                black_box((
                    token.secret.len(),
                    token.token_type.as_deref().unwrap_or("Bearer").len(),
                ))
            })
        },
    );
    g.finish();
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

/// Polls `future` once with a no-op waker, as an executor does for a future that is ready at
/// once (every path below on a warm cache); one that is not is finished on `runtime`. Measures
/// the future itself, not an executor's entry cost.
fn ready<F: Future>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => runtime.block_on(future),
    }
}

const SA_EMAIL: &str = "bench-sa@bench-project.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A service-account key file for gcp_auth whose `token_uri` is the emulator's.
fn gcp_auth_key(emulator: &Emulator, pem: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "bench-project",
        "private_key_id": "bench-key-id",
        "private_key": pem,
        "client_email": SA_EMAIL,
        "client_id": "111111111111111111111",
        "token_uri": format!("{}/token", emulator.url()),
    })
    .to_string()
}

/// `Credentials::access_token().await` and `request_headers()` (and their blocking variants)
/// on a warm cache, beside the peers' cache hits and the baselines, all in one run. Ours and
/// google-cloud-auth's are metadata-server credentials, gcp_auth's a service-account key (it
/// reads the metadata server only at a fixed host); each holds a token from the emulator.
fn token_paths(c: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../crates/adc/tests/keys/test_rsa_pkcs8.pem"),
    )
    .unwrap();
    let emulator = Emulator::start_in_thread(EmulatorConfig {
        identity: IdentityConfig {
            service_accounts: vec![
                ServiceAccountKey::from_private_key_pem(SA_EMAIL, Some("bench-key-id"), &pem)
                    .unwrap(),
            ],
            ..IdentityConfig::default()
        },
        ..EmulatorConfig::default()
    })
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();

    let env = EnvSource::from_vars([("GCE_METADATA_HOST", emulator.host())]);
    let lookup = env.clone();
    let ours: Credentials = Builder::new()
        .with_env(env)
        .with_detection(DetectionInput::with_env(move |name| lookup.var(name)).without_probe())
        .build()
        .unwrap();
    let token = ours.access_token_blocking().unwrap();
    assert!(emulator.issued_token(token.secret().expose()).is_some());

    // gcp_auth sends `"sub": null` without a subject, which the emulator reads as a subject
    // other than the account itself; naming the account keeps the grant a plain one.
    let gcp_auth = gcp_auth::CustomServiceAccount::from_json(&gcp_auth_key(&emulator, &pem))
        .unwrap()
        .with_subject(SA_EMAIL.to_owned());
    let scopes = [SCOPE];
    let peer_token = runtime
        .block_on(gcp_auth::TokenProvider::token(&gcp_auth, &scopes))
        .unwrap();
    assert!(emulator.issued_token(peer_token.as_str()).is_some());

    let google = google_cloud_auth::credentials::mds::Builder::default()
        .with_endpoint(emulator.url())
        .build()
        .unwrap();
    let headers = runtime
        .block_on(google.headers(http::Extensions::new()))
        .unwrap();
    let google_cloud_auth::credentials::CacheableResource::New { data, .. } = headers else {
        panic!("google-cloud-auth returned no headers");
    };
    let bearer = data[http::header::AUTHORIZATION].to_str().unwrap();
    assert!(
        emulator
            .issued_token(bearer.trim_start_matches("Bearer "))
            .is_some()
    );

    let rwlock = RwLock::new(Arc::new(token.clone()));
    let mut g = c.benchmark_group("token_paths");
    g.bench_function("baseline: Instant::now", |b| {
        b.iter(|| black_box(Instant::now()))
    });
    g.bench_function("baseline: RwLock<Arc<Token>> read+clone", |b| {
        b.iter(|| black_box(Arc::clone(&rwlock.read().unwrap()).secret().len()))
    });
    g.bench_function("gcp_auth: TokenProvider::token (hit)", |b| {
        b.iter(|| {
            let t = ready(&runtime, gcp_auth::TokenProvider::token(&gcp_auth, &scopes)).unwrap();
            black_box(t.as_str().len())
        })
    });
    g.bench_function("google-cloud-auth: Credentials::headers (hit)", |b| {
        b.iter(|| black_box(ready(&runtime, google.headers(http::Extensions::new())).unwrap()))
    });
    g.bench_function("ours: access_token_cached (lent)", |b| {
        b.iter(|| {
            black_box(
                ready(&runtime, ours.access_token_cached())
                    .unwrap()
                    .secret()
                    .len(),
            )
        })
    });
    g.bench_function("ours: access_token().await", |b| {
        b.iter(|| black_box(ready(&runtime, ours.access_token()).unwrap()))
    });
    g.bench_function("ours: access_token_blocking", |b| {
        b.iter(|| black_box(ours.access_token_blocking().unwrap()))
    });
    g.bench_function("ours: request_headers().await", |b| {
        b.iter(|| black_box(ready(&runtime, ours.request_headers()).unwrap()))
    });
    g.bench_function("ours: request_headers_blocking", |b| {
        b.iter(|| black_box(ours.request_headers_blocking().unwrap()))
    });
    g.finish();
    drop(_entered);
}

criterion_group!(benches, cache_hit, token_layouts, cold_fetch, token_paths);
criterion_main!(benches);
