//! A token cache with a lock-free hit path, single-flight refresh, early jittered background refresh and
//! failure handling that never throws away a token that still works.
//!
//! # How it works
//!
//! The current token lives in an [`ArcSwapOption`]: a hit is one atomic load (no lock, no allocation,
//! no reference-count write on a shared cache line) and one read of [`Clock::now_mono`], which for the
//! [`SystemClock`] is the vDSO's `CLOCK_MONOTONIC_COARSE` — cheaper than `Instant::now()`.
//!
//! Each token carries two deadlines, both monotonic:
//! - `usable_until`: its expiry minus a safety margin (and the clock's resolution). Past it the token is
//!   never returned; callers wait for a new one.
//! - `refresh_at`: when less than `refresh_early` (240 s) remains, minus a random jitter of up to
//!   `refresh_jitter`. The first hit past it starts one background fetch and still returns the current
//!   token at once.
//!
//! At most one fetch runs at a time (an atomic flag decides who starts it), on the library's own
//! runtime ([`crate::runtime`]), so callers need no runtime and a caller being cancelled never
//! cancels the fetch others wait for. Waiters are woken through a `watch` channel.
//!
//! Failures: while a usable token exists, a failed refresh keeps it and schedules the next attempt
//! with capped exponential backoff plus jitter (transient) or after `failure_cooldown` (permanent).
//! When there is no usable token, the fetch retries transient failures per [`RetryPolicy`]; a
//! permanent failure is returned to every waiter and remembered for `failure_cooldown`, so a caller
//! in a loop cannot turn it into a hot loop of requests.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use arc_swap::{ArcSwapOption, Guard};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, ErrorKind, Result};
use crate::retry::RetryPolicy;
use crate::token::Expiring;

/// The future a cache's fetch function returns.
pub type FetchFuture<T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'static>>;

type FetchFn<T> = Box<dyn Fn() -> FetchFuture<T> + Send + Sync>;

/// When and how a [`TokenCache`] refreshes.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheConfig {
    /// Refresh when less than this remains. The metadata server caches tokens until 4-5 minutes
    /// before expiry, so refreshing earlier than that would only fetch the same token again.
    pub refresh_early: Duration,
    /// Each token's refresh point is moved later by a random amount up to this, so a fleet of
    /// processes started together does not refresh together.
    pub refresh_jitter: Duration,
    /// A token with less than this left is never returned.
    pub expiry_margin: Duration,
    /// Retries of transient failures while callers wait for a token.
    pub retry: RetryPolicy,
    /// How long a permanent failure is remembered (returned without a new fetch), and the delay before
    /// retrying a background refresh that failed permanently.
    pub failure_cooldown: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            refresh_early: Duration::from_secs(240),
            refresh_jitter: Duration::from_secs(15),
            expiry_margin: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            failure_cooldown: Duration::from_secs(5),
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

impl<T> Deref for Cached<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        match self.guard.as_ref() {
            Some(entry) => &entry.value,
            // `Cached` is only built from a guard that was checked to hold an entry.
            None => unreachable!("Cached always holds an entry"),
        }
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
}

struct SlowState {
    task: Option<AbortHandle>,
    failures: u32,
    last_error: Option<Error>,
    blocked: Option<(Error, u64)>,
}

struct Shared<T, C> {
    current: ArcSwapOption<Entry<T>>,
    refresh_at: AtomicU64,
    refreshing: AtomicBool,
    outcome: watch::Sender<Option<Error>>,
    fetch: FetchFn<T>,
    fetches: AtomicU64,
    clock: C,
    config: CacheConfig,
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
        Self {
            shared: Arc::new(Shared {
                current: ArcSwapOption::empty(),
                refresh_at: AtomicU64::new(0),
                refreshing: AtomicBool::new(false),
                outcome,
                fetch: Box::new(move || Box::pin(fetch()) as FetchFuture<T>),
                fetches: AtomicU64::new(0),
                clock,
                config,
                slow: Mutex::new(SlowState {
                    task: None,
                    failures: 0,
                    last_error: None,
                    blocked: None,
                }),
            }),
        }
    }

    /// The cached token if it is usable now, without waiting. This is the hot path: no lock, no
    /// allocation, one clock read. When the token is due for refresh it also starts a background
    /// fetch (once) and still returns the current token.
    #[inline]
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
    pub fn invalidate(&self) {
        self.shared.current.store(None);
        self.shared.refresh_at.store(0, Ordering::Release);
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
    fn lock_slow(&self) -> MutexGuard<'_, SlowState> {
        // The state stays consistent even if a holder panicked: every write is a single assignment.
        self.slow
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn has_usable(&self) -> bool {
        let now = self.clock.now_mono();
        self.current
            .load()
            .as_ref()
            .is_some_and(|e| now < e.usable_until)
    }

    fn needs_refresh(&self) -> bool {
        let now = self.clock.now_mono();
        !self.has_usable() || now >= self.refresh_at.load(Ordering::Acquire)
    }

    fn remembered_failure(&self) -> Option<Error> {
        let now = self.clock.now_mono();
        let slow = self.lock_slow();
        match &slow.blocked {
            Some((error, until)) if now < *until => Some(error.clone()),
            _ => None,
        }
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
        if !this.needs_refresh() {
            this.refreshing.store(false, Ordering::Release);
            return;
        }
        let handle = match crate::runtime::handle() {
            Ok(handle) => handle,
            Err(error) => {
                this.finish(Err(error));
                return;
            }
        };
        let weak = Arc::downgrade(this);
        let task = handle.spawn(refresh(weak));
        this.lock_slow().task = Some(task.abort_handle());
    }

    fn finish(&self, result: Result<T>) {
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
        let failure = match result {
            Ok((value, remaining)) => {
                let config = &self.config;
                let margin = (config.expiry_margin + self.clock.resolution()).min(remaining / 2);
                let early = config.refresh_early.min(remaining / 2);
                let jitter_max = nanos(config.refresh_jitter.min(early / 2));
                let jitter = if jitter_max == 0 {
                    0
                } else {
                    fastrand::u64(0..=jitter_max)
                };
                let expiry = now.saturating_add(nanos(remaining));
                self.current.store(Some(Arc::new(Entry {
                    value,
                    usable_until: expiry.saturating_sub(nanos(margin)),
                })));
                self.refresh_at.store(
                    expiry.saturating_sub(nanos(early)).saturating_add(jitter),
                    Ordering::Release,
                );
                let mut slow = self.lock_slow();
                slow.failures = 0;
                slow.last_error = None;
                slow.blocked = None;
                None
            }
            Err(error) => {
                let mut slow = self.lock_slow();
                slow.last_error = Some(error.clone());
                if self.has_usable() {
                    let mut delay = self.config.retry.backoff(slow.failures);
                    if !error.is_transient() {
                        delay = delay.max(self.config.failure_cooldown);
                    }
                    slow.failures = slow.failures.saturating_add(1);
                    self.refresh_at
                        .store(now.saturating_add(nanos(delay)), Ordering::Release);
                    tracing::warn!(%error, retry_in = ?delay, "token refresh failed; keeping the current token");
                } else if !error.is_transient() {
                    slow.blocked = Some((
                        error.clone(),
                        now.saturating_add(nanos(self.config.failure_cooldown)),
                    ));
                }
                Some(error)
            }
        };
        self.refreshing.store(false, Ordering::Release);
        self.outcome.send_replace(failure);
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
            shared.finish(Err(Error::new(
                ErrorKind::Io,
                "the token fetch stopped unexpectedly",
            )));
        }
    }
}

async fn refresh<T: Expiring, C: Clock>(weak: Weak<Shared<T, C>>) {
    let mut finish = FinishOnDrop {
        shared: weak.clone(),
        done: false,
    };
    let mut attempt = 0;
    let result = loop {
        let (fetch, max_attempts, policy) = {
            let Some(shared) = weak.upgrade() else {
                finish.done = true;
                return;
            };
            shared.fetches.fetch_add(1, Ordering::Relaxed);
            // With a usable token in hand, one attempt; the next hit past the backoff tries again.
            let max_attempts = if shared.has_usable() {
                1
            } else {
                shared.config.retry.max_attempts
            };
            ((shared.fetch)(), max_attempts, shared.config.retry)
        };
        match fetch.await {
            Err(error) if error.is_transient() && attempt + 1 < max_attempts => {
                tracing::debug!(%error, attempt, "token fetch failed, retrying");
                tokio::time::sleep(policy.backoff(attempt)).await;
                attempt += 1;
            }
            other => break other,
        }
    };
    if let Some(shared) = weak.upgrade() {
        shared.finish(result);
    }
    finish.done = true;
}
