//! Behaviour of `TokenCache` under concurrency, failures and a controllable clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::Barrier;
use workload_auth_core::{
    AccessToken, CacheConfig, Clock, Error, ErrorKind, ManualClock, RetryPolicy, TokenCache,
};

/// What the fake upstream does on each call, in order; the last entry repeats.
#[derive(Clone)]
enum Step {
    Ok(&'static str, u64),
    Transient,
    Permanent,
}

struct Upstream {
    calls: AtomicU32,
    steps: std::sync::Mutex<Vec<Step>>,
    delay: Duration,
    clock: ManualClock,
}

impl Upstream {
    fn new(clock: &ManualClock, delay: Duration, steps: Vec<Step>) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicU32::new(0),
            steps: std::sync::Mutex::new(steps),
            delay,
            clock: clock.clone(),
        })
    }

    fn set(&self, steps: Vec<Step>) {
        *self.steps.lock().unwrap() = steps;
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    async fn fetch(self: Arc<Self>) -> workload_auth_core::Result<AccessToken> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) as usize;
        tokio::time::sleep(self.delay).await;
        let step = {
            let steps = self.steps.lock().unwrap();
            steps[n.min(steps.len() - 1)].clone()
        };
        match step {
            Step::Ok(token, lifetime) => Ok(AccessToken::new(
                token.into(),
                "Bearer",
                self.clock.now_system() + Duration::from_secs(lifetime),
            )),
            Step::Transient => Err(Error::http_status(503, "test upstream", "unavailable")),
            Step::Permanent => Err(Error::http_status(403, "test upstream", "forbidden")),
        }
    }
}

fn config() -> CacheConfig {
    CacheConfig {
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        // Late refresh only, so the tests below can name the refresh window; the spread of the
        // default configuration has tests of its own.
        ..CacheConfig::metadata_server()
    }
}

fn cache(upstream: &Arc<Upstream>, clock: &ManualClock) -> TokenCache<AccessToken, ManualClock> {
    let up = Arc::clone(upstream);
    TokenCache::with_options(move || Arc::clone(&up).fetch(), config(), clock.clone())
}

fn secret(t: &AccessToken) -> String {
    t.secret().expose().to_owned()
}

async fn hammer(
    cache: &TokenCache<AccessToken, ManualClock>,
    callers: usize,
) -> Vec<workload_auth_core::Result<String>> {
    let barrier = Arc::new(Barrier::new(callers));
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let cache = cache.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                cache.get().await.map(|t| secret(&t))
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_callers_on_a_missing_token_cause_one_fetch() {
    let clock = ManualClock::new();
    let up = Upstream::new(
        &clock,
        Duration::from_millis(50),
        vec![Step::Ok("t1", 3600)],
    );
    let cache = cache(&up, &clock);
    let results = hammer(&cache, 1000).await;
    assert!(results.iter().all(|r| r.as_deref().unwrap() == "t1"));
    assert_eq!(up.calls(), 1);
    assert_eq!(cache.fetch_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_callers_on_a_stale_token_get_it_at_once_and_cause_one_fetch() {
    let clock = ManualClock::new();
    let up = Upstream::new(
        &clock,
        Duration::from_millis(200),
        vec![Step::Ok("old", 3600), Step::Ok("new", 3600)],
    );
    let cache = cache(&up, &clock);
    assert_eq!(secret(&cache.get().await.unwrap()), "old");
    // 224 s left: past the refresh point (240 s before expiry, minus up to 15 s of jitter).
    clock.advance(Duration::from_secs(3600 - 224));
    let started = std::time::Instant::now();
    let results = hammer(&cache, 1000).await;
    // Nobody waited for the 200 ms fetch: the stale-but-valid token was served.
    assert!(started.elapsed() < Duration::from_millis(200));
    assert!(results.iter().all(|r| r.as_deref().unwrap() == "old"));
    // The background refresh lands; exactly one fetch happened for all of them.
    for _ in 0..100 {
        if cache.get_cached().map(|t| secret(&t)).as_deref() == Some("new") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(secret(&cache.get().await.unwrap()), "new");
    assert_eq!(up.calls(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_starts_within_the_jittered_window_only() {
    let clock = ManualClock::new();
    let up = Upstream::new(&clock, Duration::ZERO, vec![Step::Ok("t", 3600)]);
    let cache = cache(&up, &clock);
    cache.get().await.unwrap();
    // More than 240 s left: no refresh whatever the jitter.
    clock.advance(Duration::from_secs(3600 - 241));
    for _ in 0..10 {
        cache.get_cached().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(up.calls(), 1);
    let due = cache.refresh_in().unwrap();
    assert!(due <= Duration::from_secs(16), "{due:?}");
}

#[test]
fn jitter_spreads_refresh_points_between_225_and_240_seconds_before_expiry() {
    let clock = ManualClock::new();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let up = Upstream::new(&clock, Duration::ZERO, vec![Step::Ok("t", 3600)]);
        let cache = cache(&up, &clock);
        cache.get_blocking().unwrap();
        let refresh_in = cache.refresh_in().unwrap();
        let before_expiry = Duration::from_secs(3600) - refresh_in;
        assert!(
            before_expiry >= Duration::from_secs(225) && before_expiry <= Duration::from_secs(240),
            "{before_expiry:?}"
        );
        seen.insert(refresh_in.as_millis());
    }
    assert!(seen.len() > 10, "refresh points are not jittered: {seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transient_failure_keeps_the_valid_token_and_backs_off() {
    let clock = ManualClock::new();
    let up = Upstream::new(&clock, Duration::ZERO, vec![Step::Ok("good", 3600)]);
    let cache = cache(&up, &clock);
    cache.get().await.unwrap();
    up.set(vec![Step::Ok("good", 3600), Step::Transient]);
    clock.advance(Duration::from_secs(3600 - 200));
    // Triggers the background refresh, which fails.
    assert_eq!(secret(&cache.get().await.unwrap()), "good");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(up.calls(), 2);
    assert_eq!(cache.last_error().unwrap().status(), Some(503));
    // Within the backoff, hits do not fetch again.
    for _ in 0..100 {
        assert_eq!(secret(&cache.get().await.unwrap()), "good");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(up.calls(), 2);
    // After the backoff, one more attempt.
    clock.advance(Duration::from_secs(1));
    assert_eq!(secret(&cache.get().await.unwrap()), "good");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(up.calls(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_never_returned() {
    let clock = ManualClock::new();
    let up = Upstream::new(
        &clock,
        Duration::ZERO,
        vec![Step::Ok("first", 3600), Step::Transient],
    );
    let cache = cache(&up, &clock);
    cache.get().await.unwrap();
    // Past expiry (and past the 10 s margin), with every refresh failing.
    clock.advance(Duration::from_secs(3600 - 9));
    assert!(cache.get_cached().is_none());
    let err = cache.get().await.unwrap_err();
    assert!(err.is_transient());
    assert_eq!(err.status(), Some(503));
    // The waiting fetch used the retry policy: 5 attempts.
    assert_eq!(up.calls(), 1 + 5);
    clock.advance(Duration::from_secs(3600));
    assert!(cache.get_cached().is_none());
    assert!(cache.remaining().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_failure_is_reported_and_not_retried_in_a_loop() {
    let clock = ManualClock::new();
    let up = Upstream::new(&clock, Duration::ZERO, vec![Step::Permanent]);
    let cache = cache(&up, &clock);
    let err = cache.get().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(up.calls(), 1);
    // A caller retrying in a loop gets the remembered error without new requests.
    for _ in 0..1000 {
        assert_eq!(cache.get().await.unwrap_err().status(), Some(403));
    }
    assert_eq!(up.calls(), 1);
    // After the cooldown, one new attempt.
    clock.advance(Duration::from_secs(6));
    up.set(vec![Step::Permanent, Step::Ok("fixed", 3600)]);
    assert_eq!(secret(&cache.get().await.unwrap()), "fixed");
    assert_eq!(up.calls(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_failures_without_a_token_are_retried_then_succeed() {
    let clock = ManualClock::new();
    let up = Upstream::new(
        &clock,
        Duration::ZERO,
        vec![Step::Transient, Step::Transient, Step::Ok("third", 3600)],
    );
    let cache = cache(&up, &clock);
    assert_eq!(secret(&cache.get().await.unwrap()), "third");
    assert_eq!(up.calls(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_that_is_already_expired_is_an_error_not_a_loop() {
    let clock = ManualClock::new();
    let up = Upstream::new(&clock, Duration::ZERO, vec![Step::Ok("dead", 0)]);
    let cache = cache(&up, &clock);
    let err = cache.get().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedResponse);
    assert!(!err.to_string().contains("dead"));
    assert_eq!(up.calls(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn short_lived_tokens_are_refreshed_at_half_life() {
    let clock = ManualClock::new();
    let up = Upstream::new(&clock, Duration::ZERO, vec![Step::Ok("short", 100)]);
    let cache = cache(&up, &clock);
    cache.get().await.unwrap();
    let refresh_in = cache.refresh_in().unwrap();
    assert!(refresh_in >= Duration::from_secs(50) && refresh_in <= Duration::from_secs(75));
    assert_eq!(cache.remaining(), Some(Duration::from_secs(90)));
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A cache whose fetch never finishes, and a flag that tells when that fetch's future was dropped.
fn hanging_cache() -> (TokenCache<AccessToken>, Arc<AtomicBool>, Arc<AtomicBool>) {
    let (started, dropped) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (s, d) = (Arc::clone(&started), Arc::clone(&dropped));
    let cache = TokenCache::new(move || {
        let guard = SetOnDrop(Arc::clone(&d));
        let started = Arc::clone(&s);
        async move {
            let _guard = guard;
            started.store(true, Ordering::SeqCst);
            std::future::pending::<workload_auth_core::Result<AccessToken>>().await
        }
    });
    (cache, started, dropped)
}

fn wait_for(flag: &AtomicBool) -> bool {
    for _ in 0..400 {
        if flag.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn building_and_fetching_need_no_runtime() {
    // A plain thread, no tokio anywhere in sight.
    let clock = ManualClock::new();
    let up = Upstream::new(
        &clock,
        Duration::from_millis(5),
        vec![Step::Ok("plain", 3600)],
    );
    let cache = cache(&up, &clock);
    assert_eq!(secret(&cache.get_blocking().unwrap()), "plain");
    assert_eq!(secret(&cache.get_blocking().unwrap()), "plain");
    assert_eq!(up.calls(), 1);
}

#[test]
fn a_fetch_outlives_a_cancelled_caller_but_not_its_cache() {
    let (cache, started, dropped) = hanging_cache();
    // A caller on its own runtime gives up after 30 ms; the fetch it started goes on for others.
    let c = cache.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let r = tokio::time::timeout(Duration::from_millis(30), c.get()).await;
            assert!(r.is_err(), "the fetch cannot have finished");
        });
    })
    .join()
    .unwrap();
    assert!(started.load(Ordering::SeqCst));
    assert!(
        !dropped.load(Ordering::SeqCst),
        "the fetch stopped with its caller"
    );
    // Dropping the last clone of the cache stops the fetch.
    drop(cache);
    assert!(wait_for(&dropped), "the fetch outlived its cache");
}

/// A cache with the default (spread) configuration and the given upstream.
fn spread_cache(
    upstream: &Arc<Upstream>,
    clock: &ManualClock,
    config: CacheConfig,
) -> TokenCache<AccessToken, ManualClock> {
    let up = Arc::clone(upstream);
    TokenCache::with_options(move || Arc::clone(&up).fetch(), config, clock.clone())
}

#[test]
fn the_default_spreads_first_refreshes_over_most_of_the_lifetime() {
    let clock = ManualClock::new();
    let mut refresh_in = Vec::new();
    for _ in 0..200 {
        let up = Upstream::new(&clock, Duration::ZERO, vec![Step::Ok("t", 3600)]);
        let cache = spread_cache(&up, &clock, config_with_default_spread());
        cache.get_blocking().unwrap();
        refresh_in.push(cache.refresh_in().unwrap().as_secs());
    }
    refresh_in.sort_unstable();
    // Never earlier than 10% of the way to the late refresh point, never later than it.
    assert!(refresh_in[0] >= 336 - 1, "{refresh_in:?}");
    assert!(refresh_in[199] <= 3600 - 225, "{refresh_in:?}");
    // Spread over most of that range, not bunched at the late point.
    assert!(
        refresh_in[20] < 1000 && refresh_in[180] > 2500,
        "{refresh_in:?}"
    );
}

fn config_with_default_spread() -> CacheConfig {
    CacheConfig {
        retry: config().retry,
        ..CacheConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_spread_first_refresh_the_next_ones_are_late() {
    let clock = ManualClock::new();
    let up = Upstream::new(&clock, Duration::ZERO, vec![Step::Ok("t", 3600)]);
    let cache = spread_cache(&up, &clock, config_with_default_spread());
    cache.get().await.unwrap();
    let first = cache.refresh_in().unwrap();
    clock.advance(first);
    cache.get().await.unwrap();
    for _ in 0..100 {
        if up.calls() == 2 && cache.refresh_in().unwrap() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(up.calls(), 2);
    let second = cache.refresh_in().unwrap();
    assert!(
        second >= Duration::from_secs(3600 - 240) && second <= Duration::from_secs(3600 - 225),
        "{second:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transient_failure_without_a_token_is_remembered_for_the_backoff() {
    let clock = ManualClock::new();
    let up = Upstream::new(&clock, Duration::ZERO, vec![Step::Transient]);
    let cache = cache(&up, &clock);
    assert_eq!(cache.get().await.unwrap_err().status(), Some(503));
    // The waiting fetch retried per the retry policy.
    assert_eq!(up.calls(), 5);
    // A caller in a loop gets the remembered error, no new request, until the backoff (0.5-1 s) ends.
    for _ in 0..1000 {
        assert_eq!(cache.get().await.unwrap_err().status(), Some(503));
    }
    assert_eq!(up.calls(), 5);
    clock.advance(Duration::from_secs(1));
    up.set(vec![Step::Ok("back", 3600)]);
    assert_eq!(secret(&cache.get().await.unwrap()), "back");
    assert_eq!(up.calls(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_refreshes_back_off_exponentially_up_to_the_cap() {
    let clock = ManualClock::new();
    let up = Upstream::new(&clock, Duration::ZERO, vec![Step::Ok("good", 3600)]);
    let cache = cache(&up, &clock);
    cache.get().await.unwrap();
    up.set(vec![Step::Ok("good", 3600), Step::Transient]);
    clock.advance(Duration::from_secs(3600 - 220));
    let mut delays = Vec::new();
    for n in 0..8u32 {
        cache.get().await.unwrap();
        for _ in 0..200 {
            if up.calls() == 2 + n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(up.calls(), 2 + n);
        // Let the failed refresh publish its retry time.
        for _ in 0..200 {
            if cache.refresh_in().unwrap() > Duration::ZERO {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let delay = cache.refresh_in().unwrap();
        delays.push(delay.as_secs_f64());
        clock.advance(delay);
    }
    // 1 s doubling to the 60 s cap, each drawn from [d/2, d].
    for (n, d) in delays.iter().enumerate() {
        let cap = (2f64.powi(n as i32)).min(60.0);
        assert!(*d >= cap / 2.0 - 1e-6 && *d <= cap + 1e-6, "{delays:?}");
    }
    // The valid token was served throughout.
    assert_eq!(secret(&cache.get_cached().unwrap()), "good");
}

/// A clock standing a few seconds before the end of monotonic time.
#[derive(Clone, Debug)]
struct EndOfTime(ManualClock);

impl Clock for EndOfTime {
    fn now_mono(&self) -> u64 {
        u64::MAX - 5_000_000_000 + (self.0.now_mono() - 1_000_000_000)
    }
    fn resolution(&self) -> Duration {
        Duration::from_millis(10)
    }
    fn now_system(&self) -> std::time::SystemTime {
        self.0.now_system()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn finding_3_a_token_expiring_absurdly_far_away_neither_panics_nor_wraps_the_cache() {
    let clock = ManualClock::new();
    // The latest instant the platform can represent (about 292 billion years away on Linux).
    let mut far = clock.now_system();
    let mut step = Duration::from_secs(u64::MAX / 2);
    while step >= Duration::from_secs(1) {
        if let Some(t) = far.checked_add(step) {
            far = t;
        } else {
            step /= 2;
        }
    }
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let cache = TokenCache::with_options(
        move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok(AccessToken::new("forever".into(), "Bearer", far)) }
        },
        config_with_default_spread(),
        clock.clone(),
    );
    assert_eq!(secret(&cache.get().await.unwrap()), "forever");
    // Usable and not due for refresh: nothing wrapped around to "expired" or "due now".
    assert!(cache.remaining().unwrap() > Duration::from_secs(100 * 365 * 86_400));
    assert!(cache.refresh_in().unwrap() > Duration::from_secs(10 * 365 * 86_400));
    clock.advance(Duration::from_secs(10 * 365 * 86_400));
    for _ in 0..100 {
        assert_eq!(secret(&cache.get_cached().unwrap()), "forever");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn finding_3_deadlines_saturate_at_the_end_of_the_monotonic_clock() {
    let manual = ManualClock::new();
    let clock = EndOfTime(manual.clone());
    let up = Upstream::new(&manual, Duration::ZERO, vec![Step::Ok("late", 3600)]);
    let fetch_up = Arc::clone(&up);
    let cache = TokenCache::with_options(move || Arc::clone(&fetch_up).fetch(), config(), clock);
    // `now + 3600 s` does not fit in the clock: the deadline saturates instead of wrapping to the
    // past (which would make the token look expired) or panicking.
    assert_eq!(secret(&cache.get().await.unwrap()), "late");
    assert!(cache.remaining().is_some());
    assert!(cache.get_cached().is_some());
    // Only five seconds of the clock remain, so the saturated deadline is inside the refresh window:
    // one background refresh may start (and races the assertion), but never a loop of them.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!((1..=2).contains(&up.calls()), "{} fetches", up.calls());
}

#[tokio::test(flavor = "multi_thread")]
async fn finding_3_absurd_configuration_values_do_not_panic() {
    let clock = ManualClock::new();
    let up = Upstream::new(
        &clock,
        Duration::ZERO,
        vec![Step::Ok("t", 3600), Step::Transient],
    );
    let huge = RetryPolicy {
        max_attempts: u32::MAX,
        initial_backoff: Duration::MAX,
        max_backoff: Duration::MAX,
        multiplier: f64::INFINITY,
        jitter: f64::NAN,
    };
    let config = CacheConfig {
        refresh_early: Duration::MAX,
        refresh_jitter: Duration::MAX,
        refresh_spread: f64::NAN,
        expiry_margin: Duration::MAX,
        retry: huge,
        failure_backoff: huge,
        failure_cooldown: Duration::MAX,
    };
    let fetch_up = Arc::clone(&up);
    let cache =
        TokenCache::with_options(move || Arc::clone(&fetch_up).fetch(), config, clock.clone());
    assert_eq!(secret(&cache.get().await.unwrap()), "t");
    // The margin is capped at a quarter of the lifetime.
    assert_eq!(cache.remaining(), Some(Duration::from_secs(2700)));
    clock.advance(Duration::from_secs(2699));
    assert_eq!(secret(&cache.get_cached().unwrap()), "t");
    tokio::time::sleep(Duration::from_millis(20)).await;
    clock.advance(Duration::from_secs(2));
    assert!(cache.get_cached().is_none());
    // The fetch fails and its retry is scheduled "never" (capped, not wrapped into a hot loop):
    // the caller waits until it gives up.
    let waited = tokio::time::timeout(Duration::from_millis(100), cache.get()).await;
    assert!(waited.is_err() || waited.unwrap().is_err());
    assert!(up.calls() <= 3, "{}", up.calls());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_lived_token_is_refreshed_in_the_background_while_still_usable() {
    let clock = ManualClock::new();
    let up = Upstream::new(
        &clock,
        Duration::ZERO,
        vec![Step::Ok("a", 12), Step::Ok("b", 12)],
    );
    let cache = cache(&up, &clock);
    cache.get().await.unwrap();
    // Margin 3 s (a quarter), refresh 6 s before expiry plus at most 1.5 s of jitter.
    assert_eq!(cache.remaining(), Some(Duration::from_secs(9)));
    let refresh_in = cache.refresh_in().unwrap();
    assert!(refresh_in >= Duration::from_secs(6) && refresh_in <= Duration::from_millis(7500));
    clock.advance(refresh_in);
    // Still served at once, and refreshed behind the caller's back.
    assert_eq!(secret(&cache.get_cached().unwrap()), "a");
    for _ in 0..100 {
        if up.calls() == 2 && cache.get_cached().is_some_and(|t| secret(&t) == "b") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(secret(&cache.get_cached().unwrap()), "b");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_derived_value_is_made_once_per_token_and_goes_with_it() {
    let clock = ManualClock::new();
    let up = Upstream::new(
        &clock,
        Duration::ZERO,
        vec![Step::Ok("first", 3600), Step::Ok("second", 3600)],
    );
    let cache = cache(&up, &clock);
    let made = AtomicU32::new(0);
    let header = |t: &AccessToken| {
        made.fetch_add(1, Ordering::SeqCst);
        Ok(format!("Bearer {}", t.secret().expose()))
    };
    let first = cache.get().await.unwrap().derived(header).unwrap();
    assert_eq!(*first, "Bearer first");
    for _ in 0..10 {
        let again = cache.get_cached().unwrap().derived(header).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
    }
    assert_eq!(made.load(Ordering::SeqCst), 1);
    // A failing `make` keeps nothing; a value of another type is made anew each time.
    let failed = cache
        .get_cached()
        .unwrap()
        .derived::<u8>(|_| Err(Error::new(ErrorKind::MalformedResponse, "not a header")));
    assert_eq!(failed.unwrap_err().kind(), ErrorKind::MalformedResponse);
    let other = cache.get_cached().unwrap().derived(|_| Ok(7u8)).unwrap();
    assert_eq!(*other, 7);
    assert!(Arc::ptr_eq(
        &first,
        &cache.get_cached().unwrap().derived(header).unwrap()
    ));
    // A new token (after an invalidation) gets its own value, made from it.
    cache.invalidate();
    assert!(cache.get_cached().is_none());
    let second = cache.get().await.unwrap().derived(header).unwrap();
    assert_eq!(*second, "Bearer second");
    assert_eq!(made.load(Ordering::SeqCst), 2);
    // Past the token's deadline there is no token, so nothing derived from it is handed out.
    clock.advance(Duration::from_secs(3600 - 9));
    assert!(cache.get_cached().is_none());
}

/// `get_cloned` and `get_derived` read the thread's own copy of the current entry: they must
/// follow every change of the cache as `get_cached` does, on the thread that kept a copy and on
/// others.
#[tokio::test(flavor = "multi_thread")]
async fn owned_reads_follow_refreshes_invalidations_and_expiry_on_every_thread() {
    let clock = ManualClock::new();
    let up = Upstream::new(
        &clock,
        Duration::ZERO,
        vec![
            Step::Ok("first", 3600),
            Step::Ok("second", 3600),
            Step::Ok("third", 3600),
            Step::Ok("fourth", 3600),
        ],
    );
    let cache = cache(&up, &clock);
    assert!(cache.get_cloned().is_none());
    cache.get().await.unwrap();
    // Twice: the first read keeps the entry, the second reads the kept copy.
    for _ in 0..2 {
        assert_eq!(secret(&cache.get_cloned().unwrap()), "first");
    }
    // Another thread keeps its own copy, and sees the invalidation made here.
    let other = cache.clone();
    let seen = std::thread::spawn(move || other.get_cloned().map(|t| secret(&t)))
        .join()
        .unwrap();
    assert_eq!(seen.as_deref(), Some("first"));
    cache.invalidate();
    assert!(cache.get_cloned().is_none());
    let after = {
        let other = cache.clone();
        std::thread::spawn(move || other.get_cloned().map(|t| secret(&t)))
            .join()
            .unwrap()
    };
    assert_eq!(after, None);
    // The next token replaces the kept copy, here and on a thread that read the old one.
    cache.get().await.unwrap();
    assert_eq!(secret(&cache.get_cloned().unwrap()), "second");
    let reader = cache.clone();
    let (to_reader, reader_gets) = std::sync::mpsc::channel::<()>();
    let (from_reader, main_gets) = std::sync::mpsc::channel::<Option<String>>();
    let thread = std::thread::spawn(move || {
        while reader_gets.recv().is_ok() {
            let read = reader.get_cloned().map(|t| secret(&t));
            if from_reader.send(read).is_err() {
                break;
            }
        }
    });
    let read = || {
        to_reader.send(()).unwrap();
        main_gets.recv().unwrap()
    };
    assert_eq!(read().as_deref(), Some("second"));
    // The reader thread keeps its copy of "second"; an invalidation here hides it there.
    cache.invalidate();
    assert_eq!(read(), None);
    cache.get().await.unwrap();
    assert_eq!(read().as_deref(), Some("third"));
    // A refresh in the background (past the refresh point) publishes "fourth".
    let refresh_in = cache.refresh_in().unwrap();
    clock.advance(refresh_in);
    for _ in 0..200 {
        if cache.get_cached().is_some_and(|t| secret(&t) == "fourth") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(read().as_deref(), Some("fourth"));
    // Past the token's deadline the kept copy is not handed out, on either thread.
    clock.advance(Duration::from_secs(3600));
    assert!(cache.get_cloned().is_none());
    assert_eq!(read(), None);
    drop(to_reader);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_derived_value_is_read_owned_once_made_and_not_after_the_token_goes() {
    let clock = ManualClock::new();
    let up = Upstream::new(
        &clock,
        Duration::ZERO,
        vec![Step::Ok("first", 3600), Step::Ok("second", 3600)],
    );
    let cache = cache(&up, &clock);
    cache.get().await.unwrap();
    // Nothing made yet: `get_derived` does not make it.
    assert!(cache.get_derived::<String>().is_none());
    let made = cache
        .get_cached()
        .unwrap()
        .derived(|t| Ok(format!("Bearer {}", t.secret().expose())))
        .unwrap();
    for _ in 0..2 {
        let read = cache.get_derived::<String>().unwrap();
        assert!(Arc::ptr_eq(&made, &read));
    }
    // Another type than the one kept is not handed out.
    assert!(cache.get_derived::<u8>().is_none());
    cache.invalidate();
    assert!(cache.get_derived::<String>().is_none());
    cache.get().await.unwrap();
    assert!(cache.get_derived::<String>().is_none());
}

/// A token the cache no longer holds is kept alive only by the threads that read it last, and
/// `invalidate` or dropping the cache lets go of the calling thread's reference at once, so the
/// secret is zeroed (its last clone dropped) without waiting for this thread to read again.
#[test]
fn the_calling_threads_copy_goes_with_invalidate_and_with_the_cache() {
    struct Probe(Arc<()>, std::time::SystemTime);
    impl Clone for Probe {
        fn clone(&self) -> Self {
            Self(Arc::clone(&self.0), self.1)
        }
    }
    impl workload_auth_core::Expiring for Probe {
        fn expires_at(&self) -> std::time::SystemTime {
            self.1
        }
    }
    let alive = Arc::new(());
    let made = Arc::clone(&alive);
    let cache = TokenCache::new(move || {
        let probe = Probe(
            Arc::clone(&made),
            std::time::SystemTime::now() + Duration::from_secs(3600),
        );
        async move { Ok(probe) }
    });
    // Ours and the fetch function's, plus one per probe alive.
    let counts = |expected: usize| Arc::strong_count(&alive) == 2 + expected;
    cache.get_blocking().unwrap();
    // The cache's entry holds one reference.
    assert!(counts(1), "{}", Arc::strong_count(&alive));
    drop(cache.get_cloned().unwrap());
    // The entry, plus nothing: the thread keeps the entry, not another token.
    assert!(counts(1), "{}", Arc::strong_count(&alive));
    cache.invalidate();
    assert!(counts(0), "{}", Arc::strong_count(&alive));
    cache.get_blocking().unwrap();
    drop(cache.get_cloned().unwrap());
    assert!(counts(1));
    drop(cache);
    // Only ours is left: the cache's fetch function, its entry and this thread's copy are gone.
    assert_eq!(Arc::strong_count(&alive), 1);
}
