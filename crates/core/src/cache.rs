//! A token cache with a lock-free hit path, single-flight refresh, spread-out background refresh and
//! failure handling that never throws away a token that still works.
//!
//! # How it works
//!
//! The current token lives in an [`ArcSwapOption`]: a hit is one atomic load (no lock, no allocation,
//! no reference-count write on a shared cache line) and one read of [`Clock::now_mono`], which for the
//! [`SystemClock`] is the vDSO's `CLOCK_MONOTONIC_COARSE` — cheaper than `Instant::now()`. A hit
//! that hands out an owned token ([`TokenCache::get_cloned`], [`TokenCache::get_derived`]) reads
//! the calling thread's own copy of the current entry instead, checked against the cache's stamp
//! (the `recent` module), so its only shared writes are the owned value's reference count.
//!
//! Each token carries two deadlines, both monotonic:
//! - `usable_until`: its expiry minus a safety margin (and the clock's resolution). Past it the token is
//!   never returned; callers wait for a new one.
//! - `refresh_at`: normally when less than `refresh_early` (240 s) remains, plus a random jitter of up
//!   to `refresh_jitter`. The first hit past it starts one background fetch and still returns the
//!   current token at once.
//!
//! At most one fetch runs at a time (an atomic flag decides who starts it), on the library's own
//! runtime ([`crate::runtime`]), so callers need no runtime and a caller being cancelled never
//! cancels the fetch others wait for. Waiters are woken through a `watch` channel.
//!
//! # When to refresh, at fleet scale
//!
//! Every scheduling decision (when to refresh a fresh token, when to retry after a failure, how long
//! to remember one) is made by [`RefreshSchedule`], a small state machine over a clock reading and a
//! seedable random source. The cache calls it; so does the fleet simulation in this crate's tests,
//! which runs 10,000 schedules against a model of one shared token endpoint.
//!
//! A fleet of processes started together, all refreshing a fixed time before expiry, refreshes
//! together for ever: per-refresh jitter spreads such a fleet only slowly. So for tokens from a
//! shared endpoint (STS, OAuth, IAM) the first refresh after a token arrives from nowhere (the first
//! token, or the first after failures) is moved earlier by a per-cache random phase of up to
//! `refresh_spread` of the time until the late refresh point. That spreads the fleet at once, for
//! about one extra fetch per process. The metadata server caches tokens itself and returns the same
//! token until 4-5 minutes before expiry, so [`CacheConfig::metadata_server`] turns the spread off.
//!
//! Failures: while a usable token exists, a failed refresh keeps it and schedules the next attempt
//! after `failure_backoff` (capped exponential, jittered: processes that failed together during an
//! outage come back spread over up to the cap, not as one herd). When there is no usable token, the
//! fetch retries transient failures per `retry` while callers wait; if all attempts fail, the error is
//! returned to every waiter and remembered until the same backoff ends (at least `failure_cooldown`
//! for a permanent failure), so a caller in a loop cannot turn it into a hot loop of requests.
//!
//! All deadline arithmetic saturates: a token whose expiry is absurdly far away is simply never
//! refreshed, and no configuration value can make the cache panic or wrap around.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use arc_swap::{ArcSwapOption, Guard};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, ErrorKind, Result};
use crate::retry::RetryPolicy;
use crate::token::Expiring;

mod recent;
mod schedule;

pub use schedule::{Attempt, RefreshRng, RefreshSchedule, Step};

/// The future a cache's fetch function returns.
pub type FetchFuture<T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'static>>;

type FetchFn<T> = Box<dyn Fn() -> FetchFuture<T> + Send + Sync>;

/// When and how a [`TokenCache`] refreshes.
///
/// The default suits tokens from a shared endpoint (STS, OAuth, IAM credentials); use
/// [`CacheConfig::metadata_server`] for tokens from the metadata server.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheConfig {
    /// The late refresh point: refresh when less than this remains. The metadata server caches
    /// tokens until 4-5 minutes before expiry, so refreshing it earlier than that would only fetch
    /// the same token again.
    pub refresh_early: Duration,
    /// Each refresh point is moved later by a random amount up to this (at most half of
    /// `refresh_early`).
    pub refresh_jitter: Duration,
    /// Fraction (0.0 to 1.0) of the time between a token's arrival and its late refresh point over
    /// which the first refresh after the first token (and after any failure) is moved earlier, by a
    /// random phase drawn once per cache. 0.0 turns it off. A fleet of processes started (or
    /// recovered from an outage) together is then spread over the whole token lifetime at once,
    /// for about one extra fetch per process, instead of refreshing together for hours.
    pub refresh_spread: f64,
    /// A token with less than this left is never returned.
    pub expiry_margin: Duration,
    /// Retries of transient failures while callers wait for a token.
    pub retry: RetryPolicy,
    /// Delay before the next fetch after a failed refresh (or a failed fetch with no token): doubles
    /// per consecutive failure up to `max_backoff`, jittered by `jitter`. A large cap with a wide
    /// jitter spreads a fleet's recovery after an outage; `max_attempts` is not used (a cache keeps
    /// trying for as long as it is used).
    pub failure_backoff: RetryPolicy,
    /// The least delay after a permanent failure: how long it is remembered (returned without a new
    /// fetch), and before a background refresh that failed permanently is tried again.
    pub failure_cooldown: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            refresh_early: Duration::from_secs(240),
            refresh_jitter: Duration::from_secs(15),
            refresh_spread: 0.9,
            expiry_margin: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            failure_backoff: RetryPolicy {
                max_attempts: u32::MAX,
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(60),
                multiplier: 2.0,
                jitter: 0.5,
            },
            failure_cooldown: Duration::from_secs(5),
        }
    }
}

impl CacheConfig {
    /// The configuration for tokens from the metadata server: late refresh only
    /// (`refresh_spread` 0). The server caches each token per VM and returns the same one until 4-5
    /// minutes before its expiry, so an earlier refresh would fetch the same token again, and the
    /// load that a synchronized fleet puts on it stays on the VM.
    pub fn metadata_server() -> Self {
        Self::default().with_metadata_server_refresh()
    }

    /// This configuration with the refresh spread turned off, for tokens from the metadata server
    /// (see [`CacheConfig::metadata_server`]).
    pub fn with_metadata_server_refresh(self) -> Self {
        Self {
            refresh_spread: 0.0,
            ..self
        }
    }
}

/// A cached token, borrowed from the cache without copying it.
///
/// Holding it is cheap but it pins the token it points at; keep it for the duration of one request
/// and clone the token (`(*cached).clone()`) to keep it longer.
pub struct Cached<T> {
    guard: Guard<Option<Arc<Entry<T>>>>,
}

impl<T> Cached<T> {
    #[inline]
    fn entry(&self) -> &Entry<T> {
        match self.guard.as_ref() {
            Some(entry) => entry,
            // `Cached` is only built from a guard that was checked to hold an entry.
            None => unreachable!("Cached always holds an entry"),
        }
    }

    /// A value derived from this token (say, its ready request headers), made by `make` on the
    /// first call and kept with the token in the cache, so later calls for the same token share
    /// it without making it again, and it goes when the token goes. A cache keeps one derived
    /// value per token: a value of another type than the kept one is made anew on every call.
    /// When two callers race, both may call `make`; one value is kept.
    pub fn derived<D: Any + Send + Sync>(
        &self,
        make: impl FnOnce(&T) -> Result<D>,
    ) -> Result<Arc<D>> {
        let slot = &self.entry().derived;
        if let Some(kept) = self.entry().kept_derived() {
            return Ok(kept);
        }
        let made = Arc::new(make(&self.entry().value)?);
        let _ = slot.set(Arc::clone(&made) as Arc<dyn Any + Send + Sync>);
        Ok(made)
    }
}

impl<T> Deref for Cached<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.entry().value
    }
}

impl<T: fmt::Debug> fmt::Debug for Cached<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cached").field(&**self).finish()
    }
}

struct Entry<T> {
    value: T,
    usable_until: u64,
    /// See [`Cached::derived`].
    derived: OnceLock<Arc<dyn Any + Send + Sync>>,
}

impl<T> Entry<T> {
    /// The derived value kept with this token, if one of type `D` was made.
    #[inline(always)]
    fn kept_derived<D: Any + Send + Sync>(&self) -> Option<Arc<D>> {
        Arc::clone(self.derived.get()?).downcast::<D>().ok()
    }
}

struct SlowState {
    task: Option<AbortHandle>,
    last_error: Option<Error>,
    schedule: RefreshSchedule,
    rng: RefreshRng,
}

struct Shared<T, C> {
    current: ArcSwapOption<Entry<T>>,
    /// The stamp of the entry in `current` (see the `recent` module), changed after every store
    /// to `current`; both are written under `slow`'s lock only.
    stamp: AtomicU64,
    refresh_at: AtomicU64,
    refreshing: AtomicBool,
    outcome: watch::Sender<Option<Error>>,
    fetch: FetchFn<T>,
    fetches: AtomicU64,
    clock: C,
    slow: Mutex<SlowState>,
}

/// A cache of one token (access token, ID token, ...) in front of a fetch function.
///
/// Cloning is cheap and clones share the token. Building one needs no tokio runtime; fetches run on
/// the library's own runtime. Dropping the last clone stops any fetch in progress.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use workload_auth_core::{AccessToken, TokenCache};
///
/// # fn main() -> workload_auth_core::Result<()> {
/// let cache = TokenCache::new(|| async {
///     // A real fetch calls a token endpoint here.
///     Ok(AccessToken::new(
///         "ya29.example".into(),
///         "Bearer",
///         SystemTime::now() + Duration::from_secs(3600),
///     ))
/// });
/// let token = cache.get_blocking()?;
/// assert_eq!(token.token_type(), "Bearer");
/// // Later calls are served from the cache without a fetch.
/// assert!(cache.get_cached().is_some());
/// assert_eq!(cache.fetch_count(), 1);
/// # Ok(()) }
/// ```
pub struct TokenCache<T, C = SystemClock> {
    shared: Arc<Shared<T, C>>,
}

impl<T, C> Clone for TokenCache<T, C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T, C> fmt::Debug for TokenCache<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("has_token", &self.shared.current.load().is_some())
            .field(
                "refreshing",
                &self.shared.refreshing.load(Ordering::Relaxed),
            )
            .field("fetches", &self.shared.fetches.load(Ordering::Relaxed))
            .finish()
    }
}

impl<T: Expiring> TokenCache<T, SystemClock> {
    /// A cache with the default [`CacheConfig`] and the system clock.
    pub fn new<F, Fut>(fetch: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        Self::with_options(fetch, CacheConfig::default(), SystemClock)
    }
}

impl<T: Expiring, C: Clock> TokenCache<T, C> {
    /// A cache with the given configuration and clock.
    pub fn with_options<F, Fut>(fetch: F, config: CacheConfig, clock: C) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let (outcome, _) = watch::channel(None);
        let mut rng = RefreshRng::new();
        let schedule = RefreshSchedule::new(config, clock.resolution(), &mut rng);
        Self {
            shared: Arc::new(Shared {
                current: ArcSwapOption::empty(),
                stamp: AtomicU64::new(recent::next_stamp()),
                refresh_at: AtomicU64::new(0),
                refreshing: AtomicBool::new(false),
                outcome,
                fetch: Box::new(move || Box::pin(fetch()) as FetchFuture<T>),
                fetches: AtomicU64::new(0),
                clock,
                slow: Mutex::new(SlowState {
                    task: None,
                    last_error: None,
                    schedule,
                    rng,
                }),
            }),
        }
    }

    /// The cached token if it is usable now, without waiting. This is the hot path: no lock, no
    /// allocation, one clock read. When the token is due for refresh it also starts a background
    /// fetch (once) and still returns the current token.
    // Always inlined: called out of line, its answer makes a round trip through memory that the
    // caller reads back wider than it was written (a store-forwarding stall, about 5 ns a hit).
    #[inline(always)]
    pub fn get_cached(&self) -> Option<Cached<T>> {
        let shared = &*self.shared;
        let guard = shared.current.load();
        let now = shared.clock.now_mono();
        let usable_until = guard.as_ref()?.usable_until;
        if now >= usable_until {
            return None;
        }
        if now >= shared.refresh_at.load(Ordering::Relaxed) {
            Shared::start_refresh(&self.shared);
        }
        Some(Cached { guard })
    }

    /// A clone of the cached token if it is usable now, without waiting: what
    /// [`TokenCache::get_cached`] lends, owned. The hit makes no shared write besides the clone's
    /// own (a reference-count increment for a token whose secret is shared): it reads this
    /// thread's copy of the current entry (see below) instead of loading it through `arc-swap`.
    ///
    /// Each thread keeps a reference to the entry it last read from this cache (and from up to
    /// three others), checked against the cache's current entry on every hit. A token replaced by
    /// a refresh or forgotten by [`TokenCache::invalidate`] is never returned again, but another
    /// thread's reference keeps its bytes in memory until that thread reads a token again or
    /// exits; `invalidate` and dropping the cache release the calling thread's reference at once.
    #[inline(always)]
    pub fn get_cloned(&self) -> Option<T>
    where
        T: Clone,
    {
        self.read_recent(&|entry: &Entry<T>| Some(entry.value.clone()))
    }

    /// The value derived from the cached token by [`Cached::derived`], if the token is usable
    /// now and a value of type `D` was made for it; `None` otherwise (then call
    /// [`TokenCache::get_cached`] and [`Cached::derived`] to make it). Read like
    /// [`TokenCache::get_cloned`].
    #[inline(always)]
    pub fn get_derived<D: Any + Send + Sync>(&self) -> Option<Arc<D>> {
        self.read_recent(&|entry: &Entry<T>| entry.kept_derived::<D>())
    }

    /// The address of the shared state, which names this cache in the `recent` slots.
    #[inline(always)]
    fn key(&self) -> usize {
        Arc::as_ptr(&self.shared).cast::<()>() as usize
    }

    /// `read` applied to the current entry if it is usable now: from this thread's kept copy
    /// when that is still current, else through [`TokenCache::get_cached`], keeping the entry.
    #[inline(always)]
    fn read_recent<R>(&self, read: &impl Fn(&Entry<T>) -> Option<R>) -> Option<R> {
        let shared = &*self.shared;
        // The stamp first: the entry read after it is at least as new (see `publish`).
        let stamp = shared.stamp.load(Ordering::Acquire);
        let now = shared.clock.now_mono();
        let hit = recent::read(self.key(), stamp, |entry: &Entry<T>| {
            if now >= entry.usable_until {
                return None;
            }
            read(entry)
        });
        match hit {
            Some(value) => {
                if now >= shared.refresh_at.load(Ordering::Relaxed) {
                    Shared::start_refresh(&self.shared);
                }
                Some(value)
            }
            None => self.read_and_keep(stamp, read),
        }
    }

    #[inline(never)]
    fn read_and_keep<R>(&self, stamp: u64, read: &impl Fn(&Entry<T>) -> Option<R>) -> Option<R> {
        let cached = self.get_cached()?;
        let value = read(cached.entry());
        if let Some(entry) = Guard::into_inner(cached.guard) {
            recent::keep(self.key(), stamp, entry);
        }
        value
    }

    /// A usable token, waiting for a fetch only when there is none.
    pub async fn get(&self) -> Result<Cached<T>> {
        if let Some(token) = self.get_cached() {
            return Ok(token);
        }
        let shared = &self.shared;
        let mut outcome = shared.outcome.subscribe();
        loop {
            if let Some(token) = self.get_cached() {
                return Ok(token);
            }
            if let Some(error) = shared.remembered_failure() {
                return Err(error);
            }
            Shared::start_refresh(shared);
            if outcome.changed().await.is_err() {
                return Err(Error::new(ErrorKind::Io, "the token cache was shut down"));
            }
            let failure = outcome.borrow_and_update().clone();
            if let Some(error) = failure {
                return match self.get_cached() {
                    Some(token) => Ok(token),
                    None => Err(error),
                };
            }
        }
    }

    /// [`TokenCache::get`] for callers without an async runtime: blocks the calling thread.
    pub fn get_blocking(&self) -> Result<Cached<T>> {
        if let Some(token) = self.get_cached() {
            return Ok(token);
        }
        let cache = self.clone();
        crate::runtime::block_on(async move { cache.get().await })?
    }

    /// Forgets the cached token (say, after a server answered 401 to it); the next call fetches.
    /// No call returns it again, on any thread; the calling thread's copy (see
    /// [`TokenCache::get_cloned`]) is released at once, other threads' when they next read.
    pub fn invalidate(&self) {
        let mut slow = self.shared.lock_slow();
        slow.schedule.invalidate();
        self.shared.publish(None);
        self.shared.refresh_at.store(0, Ordering::Release);
        drop(slow);
        recent::release(self.key());
    }

    /// How many fetches the cache has started (retries included).
    pub fn fetch_count(&self) -> u64 {
        self.shared.fetches.load(Ordering::Relaxed)
    }

    /// The error of the last failed fetch, cleared by the next successful one.
    pub fn last_error(&self) -> Option<Error> {
        self.shared.lock_slow().last_error.clone()
    }

    /// How long the cached token stays usable, if there is one.
    pub fn remaining(&self) -> Option<Duration> {
        let now = self.shared.clock.now_mono();
        let guard = self.shared.current.load();
        let entry = guard.as_ref()?;
        entry
            .usable_until
            .checked_sub(now)
            .filter(|n| *n > 0)
            .map(Duration::from_nanos)
    }

    /// How long until the cached token is due for a background refresh (zero when it is due now).
    pub fn refresh_in(&self) -> Option<Duration> {
        self.remaining()?;
        let now = self.shared.clock.now_mono();
        let at = self.shared.refresh_at.load(Ordering::Relaxed);
        Some(Duration::from_nanos(at.saturating_sub(now)))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<T: Expiring, C: Clock> Shared<T, C> {
    /// Makes `entry` the current one. Called with `slow`'s lock held, so that stores to `current`
    /// and `stamp` are never interleaved: a stamp always names the entry stored just before it.
    fn publish(&self, entry: Option<Arc<Entry<T>>>) {
        self.current.store(entry);
        self.stamp.store(recent::next_stamp(), Ordering::Release);
    }

    fn lock_slow(&self) -> MutexGuard<'_, SlowState> {
        // The state stays consistent even if a holder panicked: every write is a single assignment.
        self.slow
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remembered_failure(&self) -> Option<Error> {
        let now = self.clock.now_mono();
        let slow = self.lock_slow();
        if !slow.schedule.is_blocked(now) {
            return None;
        }
        Some(slow.last_error.clone().unwrap_or_else(|| {
            Error::new(ErrorKind::Io, "the last token fetch failed; retrying later")
        }))
    }

    #[cold]
    #[inline(never)]
    fn start_refresh(this: &Arc<Self>) {
        if this.refreshing.load(Ordering::Relaxed)
            || this
                .refreshing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        // Another refresh may have finished between our check and winning the flag.
        if !this.lock_slow().schedule.due(this.clock.now_mono()) {
            this.refreshing.store(false, Ordering::Release);
            return;
        }
        let handle = match crate::runtime::handle() {
            Ok(handle) => handle,
            Err(error) => {
                this.settle(u32::MAX, Err(error));
                return;
            }
        };
        let weak = Arc::downgrade(this);
        let task = handle.spawn(refresh(weak));
        this.lock_slow().task = Some(task.abort_handle());
    }

    fn count_attempt(&self) {
        self.fetches.fetch_add(1, Ordering::Relaxed);
    }

    /// Records attempt number `attempt` of the running fetch. Returns the delay before the next
    /// attempt, or `None` when the fetch is over and its outcome published.
    fn settle(&self, attempt: u32, result: Result<T>) -> Option<Duration> {
        let now = self.clock.now_mono();
        let result = result.and_then(|value| {
            let remaining = value
                .expires_at()
                .duration_since(self.clock.now_system())
                .unwrap_or(Duration::ZERO);
            if remaining.is_zero() {
                Err(Error::new(
                    ErrorKind::MalformedResponse,
                    "the token endpoint returned a token that has already expired",
                ))
            } else {
                Ok((value, remaining))
            }
        });
        let outcome = match &result {
            Ok((_, remaining)) => Attempt::Token {
                remaining: *remaining,
            },
            Err(error) => Attempt::Failed {
                transient: error.is_transient(),
            },
        };
        let mut slow = self.lock_slow();
        let SlowState { schedule, rng, .. } = &mut *slow;
        if let Step::Retry(delay) = schedule.after_attempt(now, attempt, outcome, rng) {
            if let Err(error) = &result {
                tracing::debug!(%error, attempt, retry_in = ?delay, "token fetch failed, retrying");
            }
            return Some(delay);
        }
        let failure = match result {
            Ok((value, _)) => {
                let usable_until = schedule.usable_until().unwrap_or(0);
                self.publish(Some(Arc::new(Entry {
                    value,
                    usable_until,
                    derived: OnceLock::new(),
                })));
                self.refresh_at
                    .store(slow.schedule.refresh_at(), Ordering::Release);
                slow.last_error = None;
                None
            }
            Err(error) => {
                if schedule.has_usable(now) {
                    let retry_in = Duration::from_nanos(schedule.refresh_at().saturating_sub(now));
                    self.refresh_at
                        .store(schedule.refresh_at(), Ordering::Release);
                    tracing::warn!(%error, ?retry_in, "token refresh failed; keeping the current token");
                }
                slow.last_error = Some(error.clone());
                Some(error)
            }
        };
        drop(slow);
        self.refreshing.store(false, Ordering::Release);
        self.outcome.send_replace(failure);
        None
    }
}

impl<T, C> Drop for Shared<T, C> {
    fn drop(&mut self) {
        let slow = match self.slow.get_mut() {
            Ok(slow) => slow,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(task) = slow.task.take() {
            task.abort();
        }
        recent::release(std::ptr::from_ref(self) as usize);
    }
}

/// Reports a refresh that ended without finishing (its future panicked), so waiters are not stranded.
struct FinishOnDrop<T: Expiring, C: Clock> {
    shared: Weak<Shared<T, C>>,
    done: bool,
}

impl<T: Expiring, C: Clock> Drop for FinishOnDrop<T, C> {
    fn drop(&mut self) {
        if !self.done
            && let Some(shared) = self.shared.upgrade()
        {
            shared.settle(
                u32::MAX,
                Err(Error::new(
                    ErrorKind::Io,
                    "the token fetch stopped unexpectedly",
                )),
            );
        }
    }
}

async fn refresh<T: Expiring, C: Clock>(weak: Weak<Shared<T, C>>) {
    let mut finish = FinishOnDrop {
        shared: weak.clone(),
        done: false,
    };
    let mut attempt = 0u32;
    loop {
        let fetch = {
            let Some(shared) = weak.upgrade() else {
                finish.done = true;
                return;
            };
            shared.count_attempt();
            (shared.fetch)()
        };
        let result = fetch.await;
        let Some(shared) = weak.upgrade() else {
            finish.done = true;
            return;
        };
        let next = shared.settle(attempt, result);
        drop(shared);
        match next {
            Some(delay) => {
                tokio::time::sleep(delay).await;
                attempt = attempt.saturating_add(1);
            }
            None => {
                finish.done = true;
                return;
            }
        }
    }
}
