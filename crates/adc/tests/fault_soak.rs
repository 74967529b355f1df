//! Token fault soak (issue 8, section 3): eight concurrent readers on three credentials —
//! metadata server, service-account key (OAuth JWT-bearer) and `external_account` (STS) — while
//! the emulator answers their token endpoints with a seeded random mix of 503, 429, connection
//! resets, 2-second stalls, truncated and malformed bodies, and good answers with short lifetimes;
//! then a total outage longer than a token's lifetime; then no faults.
//!
//! Asserted: no expired (or never-issued) token is ever returned; nothing panics; a caller whose
//! token is still valid is never held up by a failing refresh; upstream requests per token lifetime
//! stay bounded (one refresh flight per credential, not one per reader); every credential serves
//! tokens again within the failure-backoff cap once the faults stop.
//!
//! Short by default (about 20 s). `WORKLOAD_AUTH_SOAK=long` runs the random mix for 5 minutes;
//! `WORKLOAD_AUTH_SOAK_SEED=N` picks another fault sequence. Both stop by themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use serde_json::json;
use workload_auth_adc::Credentials;
use workload_auth_core::{CacheConfig, RetryPolicy};
use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint, Fault, FaultMix};

const SAML_TYPE: &str = "urn:ietf:params:oauth:token-type:saml2";
const LIFETIME: Duration = Duration::from_secs(4);
/// Credentials of each kind (each with its own token cache), so a short run sees many refreshes.
const INSTANCES: usize = 4;
const STALL: Duration = Duration::from_secs(2);
const BACKOFF_CAP: Duration = Duration::from_secs(1);
const READERS: usize = 8;
/// Every reader stops after this many calls, whatever the clock says.
const MAX_CALLS_PER_READER: u64 = 2_000_000;

fn long() -> bool {
    std::env::var("WORKLOAD_AUTH_SOAK").is_ok_and(|v| v == "long")
}

fn seed() -> u64 {
    std::env::var("WORKLOAD_AUTH_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x50a6)
}

/// Failure backoff capped at one second, so recovery is quick to observe.
fn soak_cache() -> CacheConfig {
    CacheConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        },
        failure_backoff: RetryPolicy {
            max_attempts: u32::MAX,
            initial_backoff: Duration::from_millis(100),
            max_backoff: BACKOFF_CAP,
            multiplier: 2.0,
            jitter: 0.5,
        },
        failure_cooldown: Duration::from_millis(200),
        ..CacheConfig::default()
    }
}

fn mix() -> FaultMix {
    FaultMix::new(seed())
        .with(None, 8)
        .with(Some(Fault::Status(503)), 1)
        .with(Some(Fault::Status(429)), 1)
        .with(Some(Fault::Reset), 1)
        .with(Some(Fault::Delay(STALL)), 1)
        .with(Some(Fault::Truncate), 1)
        .with(
            Some(Fault::Malformed(r#"{"access_token": "ya29.cut"#.into())),
            1,
        )
        .with(
            Some(Fault::Malformed(
                r#"{"token_type": "Bearer", "expires_in": 3599}"#.into(),
            )),
            1,
        )
        .with(
            Some(Fault::Malformed(
                r#"{"access_token": "ya29.huge", "token_type": "Bearer", "expires_in": 1e300}"#
                    .into(),
            )),
            1,
        )
        .with(Some(Fault::ShortLifetime(Duration::from_secs(2))), 2)
}

const TOKEN_ENDPOINTS: [Endpoint; 3] = [Endpoint::Token, Endpoint::OAuthToken, Endpoint::StsToken];

struct Soak {
    emu: Emulator,
    _home: TempDir,
    creds: Vec<(&'static str, Credentials)>,
}

async fn setup() -> Soak {
    let emu = Emulator::start(EmulatorConfig {
        token_lifetime: LIFETIME,
        ..emulator_config()
    })
    .await
    .unwrap();
    let home = TempDir::new("soak");
    let key = home.write_json(
        "sa.json",
        &service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
    );
    let saml = home.write("saml.txt", SAML_TOKEN);
    let ext_file = home.write_json(
        "ext.json",
        &json!({
            "type": "external_account",
            "audience": WORKLOAD_AUDIENCE,
            "subject_token_type": SAML_TYPE,
            "token_url": format!("{}/v1/token", emu.url()),
            "credential_source": {"file": saml},
            "universe_domain": "googleapis.com",
        }),
    );
    let mut creds = Vec::new();
    for _ in 0..INSTANCES {
        let mds = builder(&home, &[])
            .with_metadata_host(emu.host())
            .with_cache_config(soak_cache())
            .build()
            .unwrap();
        let sa = builder_for(&home, &key)
            .with_cache_config(soak_cache())
            .build()
            .unwrap();
        let ext = builder_for(&home, &ext_file)
            .with_cache_config(soak_cache())
            .build()
            .unwrap();
        creds.extend([
            ("metadata", mds),
            ("service_account", sa),
            ("external_account", ext),
        ]);
    }
    Soak {
        emu,
        _home: home,
        creds,
    }
}

#[derive(Default, Debug)]
struct Tally {
    calls: u64,
    tokens: u64,
    /// Tokens already expired when returned.
    expired: u64,
    /// Tokens the emulator never issued (say, parsed out of a damaged body).
    unknown: u64,
    errors: BTreeMap<String, u64>,
    /// Calls made while this reader's previous token from the same credential was still valid
    /// for longer than the cache's margin: none of them may wait on a refresh, or fail.
    valid_calls: u64,
    valid_failures: u64,
    valid_latencies: Vec<Duration>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.calls += other.calls;
        self.tokens += other.tokens;
        self.expired += other.expired;
        self.unknown += other.unknown;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.valid_calls += other.valid_calls;
        self.valid_failures += other.valid_failures;
        self.valid_latencies.extend(other.valid_latencies);
    }
}

/// One reader: calls every credential in turn until `until`.
async fn reader(
    creds: Vec<Credentials>,
    issued: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    until: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut last: Vec<Option<SystemTime>> = vec![None; creds.len()];
    while Instant::now() < until && tally.calls < MAX_CALLS_PER_READER {
        for (i, cred) in creds.iter().enumerate() {
            // The cache keeps at most a quarter of a token's lifetime (1 s here) as its margin:
            // with more than that left, the cache certainly holds a usable token.
            let valid = last[i].is_some_and(|exp| {
                exp.duration_since(SystemTime::now())
                    .is_ok_and(|left| left > LIFETIME / 4 + Duration::from_millis(500))
            });
            let started = Instant::now();
            let result = cred.access_token().await;
            let latency = started.elapsed();
            tally.calls += 1;
            if valid {
                tally.valid_calls += 1;
                tally.valid_latencies.push(latency);
            }
            match result {
                Ok(token) => {
                    tally.tokens += 1;
                    if token.expires_at() <= SystemTime::now() {
                        tally.expired += 1;
                    }
                    if !issued(token.secret().expose()) {
                        tally.unknown += 1;
                    }
                    last[i] = Some(token.expires_at());
                }
                Err(error) => {
                    if valid {
                        tally.valid_failures += 1;
                    }
                    *tally
                        .errors
                        .entry(format!("{:?}", error.kind()))
                        .or_default() += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tally
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_fault_soak() {
    // Panics anywhere count, including in the library's own runtime threads, where a panicking
    // fetch would otherwise surface only as an error.
    static PANICS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        default_hook(info);
    }));
    let soak = setup().await;
    let emu = Arc::new(soak.emu);
    let mix_for = if long() {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(12)
    };
    // Longer than a token's lifetime: every cached token expires during it.
    let outage_for = LIFETIME + Duration::from_secs(1);
    for (_, cred) in &soak.creds {
        cred.access_token().await.unwrap();
    }
    emu.reset_counters();
    emu.inject_mix(&TOKEN_ENDPOINTS, mix());
    let started = Instant::now();
    let creds: Vec<Credentials> = soak.creds.iter().map(|(_, c)| c.clone()).collect();
    let lookup = Arc::clone(&emu);
    let issued: Arc<dyn Fn(&str) -> bool + Send + Sync> =
        Arc::new(move |t: &str| lookup.issued_token(t).is_some());
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            tokio::spawn(reader(
                creds.clone(),
                Arc::clone(&issued),
                started + mix_for,
            ))
        })
        .collect();
    let mut tally = Tally::default();
    for r in readers {
        // A panic in any reader (or in the library under it) fails here.
        tally.merge(r.await.expect("a reader panicked"));
    }
    let mix_elapsed = started.elapsed();
    let requests: Vec<(Endpoint, u64)> = TOKEN_ENDPOINTS
        .iter()
        .map(|&e| (e, emu.requests(e)))
        .collect();
    let faults = emu.mix_counts();

    // A total outage, longer than a token's lifetime, then no faults at all.
    emu.clear_faults();
    for &endpoint in &TOKEN_ENDPOINTS {
        emu.inject(endpoint, Fault::Status(503), None);
    }
    let outage_started = Instant::now();
    let mut outage_errors = 0u64;
    while outage_started.elapsed() < outage_for {
        for (_, cred) in &soak.creds {
            match cred.access_token().await {
                Ok(token) => assert!(token.expires_at() > SystemTime::now()),
                Err(_) => outage_errors += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    emu.clear_faults();
    let cleared = Instant::now();
    let mut recovery = Vec::new();
    for (name, cred) in &soak.creds {
        let token = loop {
            match cred.access_token().await {
                Ok(token) => break token,
                Err(_) if cleared.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(error) => panic!("{name} did not recover: {error}"),
            }
        };
        assert!(token.expires_at() > SystemTime::now());
        recovery.push((*name, cleared.elapsed()));
    }

    let mut latencies = std::mem::take(&mut tally.valid_latencies);
    latencies.sort_unstable();
    // Token lifetimes per cache: each endpoint serves INSTANCES caches.
    let windows = mix_elapsed.as_secs_f64() / LIFETIME.as_secs_f64() * INSTANCES as f64;
    println!(
        "token fault soak: seed {}, {mix_elapsed:.1?} of random faults, {READERS} readers, {} credentials",
        seed(),
        soak.creds.len()
    );
    println!("faults drawn per kind: {faults:?}");
    println!(
        "calls {}, tokens served {}, errors {:?}, expired returned {}, unknown returned {}",
        tally.calls, tally.tokens, tally.errors, tally.expired, tally.unknown
    );
    println!(
        "calls while a valid token existed: {} (failed {}), latency p50 {:?} p99 {:?} max {:?}",
        tally.valid_calls,
        tally.valid_failures,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    for (endpoint, n) in &requests {
        println!(
            "upstream {endpoint:?}: {n} requests, {:.1} per token lifetime per cache",
            *n as f64 / windows
        );
    }
    let slowest = recovery.iter().map(|(_, t)| *t).max().unwrap_or_default();
    println!(
        "outage: {outage_errors} errors returned; every credential served again {slowest:?} after the faults stopped (backoff cap {BACKOFF_CAP:?})"
    );

    let panics = PANICS.load(std::sync::atomic::Ordering::SeqCst);
    println!("panics: {panics}");
    assert_eq!(panics, 0, "something panicked");
    assert!(tally.tokens > 0 && tally.calls > 1000, "{tally:?}");
    assert_eq!(tally.expired, 0, "an expired token was returned");
    assert_eq!(
        tally.unknown, 0,
        "a token the emulator never issued was returned"
    );
    assert_eq!(
        tally.valid_failures, 0,
        "a caller with a valid token got an error"
    );
    // A cache hit takes microseconds; a caller that waited on the refresh would take at least a
    // retry delay, and a stalled one two seconds. The bound leaves room for a loaded CI machine.
    let worst = latencies.last().copied().unwrap_or_default();
    assert!(
        worst < Duration::from_millis(500),
        "a valid-token call took {worst:?}"
    );
    assert!(tally.valid_calls > 100, "{tally:?}");
    // Every fault kind was exercised.
    assert!(faults.iter().all(|(_, n)| *n > 0), "{faults:?}");
    // One refresh flight per cache, paced by backoff: a cache whose every request failed would
    // send at most 3 quick attempts plus one per backoff step (>= 50, 100, 200, 400 ms, then
    // >= 500 ms) in a lifetime of 4 s, 14. Eight readers must not multiply that.
    for (endpoint, n) in &requests {
        let per_window = *n as f64 / windows;
        assert!(
            per_window <= 14.0,
            "{endpoint:?}: {per_window} requests per lifetime"
        );
    }
    assert!(outage_errors > 0);
    for (name, took) in &recovery {
        assert!(
            *took <= BACKOFF_CAP + Duration::from_millis(500),
            "{name} took {took:?} to recover"
        );
    }
}
