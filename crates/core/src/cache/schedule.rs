//! The cache's scheduling decisions — when to refresh a fresh token, when to retry after a
//! failure, how long to remember one — as a pure state machine over monotonic clock readings and a
//! seedable random source, so that a simulation can run exactly what the cache runs.

use std::time::Duration;

#[cfg(doc)]
use super::TokenCache;
use super::{CacheConfig, nanos};
#[cfg(doc)]
use crate::clock::Clock;
#[cfg(doc)]
use crate::error::Error;

/// The random source of a [`RefreshSchedule`]: seeded from the thread's generator in a cache, or from
/// a fixed seed in a simulation, so that one is repeatable.
#[derive(Clone, Debug)]
pub struct RefreshRng(fastrand::Rng);

impl RefreshRng {
    /// A generator seeded from the calling thread's random state.
    pub fn new() -> Self {
        Self(fastrand::Rng::new())
    }

    /// A generator that always draws the same sequence.
    pub fn with_seed(seed: u64) -> Self {
        Self(fastrand::Rng::with_seed(seed))
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.0.f64()
    }

    /// A number in `[0, max]`.
    pub fn up_to(&mut self, max: u64) -> u64 {
        self.0.u64(0..=max)
    }
}

impl Default for RefreshRng {
    fn default() -> Self {
        Self::new()
    }
}

/// What one fetch attempt gave, as far as scheduling is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// A token with this much time left.
    Token {
        /// Time until the token expires, by the wall clock, when it arrived.
        remaining: Duration,
    },
    /// No token.
    Failed {
        /// Whether retrying can help ([`Error::is_transient`]).
        transient: bool,
    },
}

/// What a fetch does after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Try again after this delay, within the same fetch (callers are waiting for a token).
    Retry(Duration),
    /// The fetch is over: publish its outcome.
    Done,
}

/// The scheduling decisions of a [`TokenCache`], as a pure state machine over monotonic clock
/// readings (nanoseconds) and a [`RefreshRng`].
///
/// The cache keeps one per token and mirrors its deadlines into the atomics its lock-free hit path
/// reads. It is public so that a simulation can run the very same decisions at fleet scale without a
/// network or a real clock:
///
/// ```
/// use std::time::Duration;
/// use workload_auth_core::cache::{Attempt, CacheConfig, RefreshRng, RefreshSchedule, Step};
///
/// let mut rng = RefreshRng::with_seed(7);
/// let mut schedule = RefreshSchedule::new(CacheConfig::metadata_server(), Duration::ZERO, &mut rng);
/// let now = 1_000_000_000;
/// assert!(schedule.due(now));
/// let hour = Duration::from_secs(3600);
/// let step = schedule.after_attempt(now, 0, Attempt::Token { remaining: hour }, &mut rng);
/// assert_eq!(step, Step::Done);
/// // Late refresh: 240 s before expiry, plus up to 15 s of jitter.
/// let before_expiry = now + 3_600_000_000_000 - schedule.next_fetch_at();
/// assert!((225_000_000_000..=240_000_000_000).contains(&before_expiry));
/// ```
#[derive(Clone, Debug)]
pub struct RefreshSchedule {
    config: CacheConfig,
    resolution: Duration,
    /// Drawn once, in `[0, 1)`: where in the spread window this cache refreshes.
    phase: f64,
    /// Consecutive failed fetches.
    failures: u32,
    /// The next token's refresh point is to be spread (no token yet, or one came after failures).
    rephase: bool,
    /// 0 when there is no token.
    usable_until: u64,
    refresh_at: u64,
    /// Without a usable token, no fetch before this.
    blocked_until: u64,
}

impl RefreshSchedule {
    /// A schedule with no token yet; its phase is drawn from `rng`. `resolution` is how far the
    /// clock's readings may lag real time ([`Clock::resolution`]).
    pub fn new(config: CacheConfig, resolution: Duration, rng: &mut RefreshRng) -> Self {
        let phase = rng.unit();
        Self {
            config,
            resolution,
            phase,
            failures: 0,
            rephase: true,
            usable_until: 0,
            refresh_at: 0,
            blocked_until: 0,
        }
    }

    /// The configuration the schedule follows.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Whether the current token (if any) may still be returned at `now`.
    pub fn has_usable(&self, now: u64) -> bool {
        now < self.usable_until
    }

    /// Until when the current token may be returned, if there is one.
    pub fn usable_until(&self) -> Option<u64> {
        (self.usable_until > 0).then_some(self.usable_until)
    }

    /// When the current token is due for a background refresh (or the next retry of a failed one).
    pub fn refresh_at(&self) -> u64 {
        self.refresh_at
    }

    /// Consecutive failed fetches so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether, without a usable token, a failure is being remembered at `now` (callers get the last
    /// error instead of a new fetch).
    pub fn is_blocked(&self, now: u64) -> bool {
        !self.has_usable(now) && now < self.blocked_until
    }

    /// Whether a caller at `now` starts a fetch.
    pub fn due(&self, now: u64) -> bool {
        now >= self.next_fetch_at()
    }

    /// The first instant at which a caller starts a fetch: the refresh point while the token is
    /// usable, otherwise as soon as the token stops being usable and no failure is remembered. A
    /// busy process (a call at every instant) fetches exactly then.
    pub fn next_fetch_at(&self) -> u64 {
        if self.refresh_at < self.usable_until {
            self.refresh_at
        } else {
            self.usable_until.max(self.blocked_until)
        }
    }

    /// Records the outcome of attempt number `attempt` (0-based) of a fetch that started when
    /// [`RefreshSchedule::due`] said so, and says what the fetch does next.
    pub fn after_attempt(
        &mut self,
        now: u64,
        attempt: u32,
        outcome: Attempt,
        rng: &mut RefreshRng,
    ) -> Step {
        match outcome {
            Attempt::Token { remaining } if !remaining.is_zero() => {
                self.succeeded(now, remaining, rng);
                Step::Done
            }
            Attempt::Token { .. } => {
                self.failed(now, false, rng);
                Step::Done
            }
            // Quick retries only while callers wait for a first token since the last success:
            // once a fetch has failed, `failure_backoff` paces the next ones (a burst of retries
            // per fetch would restart the backoff, and bunch a fleet's recovery together).
            Attempt::Failed { transient }
                if transient
                    && !self.has_usable(now)
                    && self.failures == 0
                    && attempt.saturating_add(1) < self.config.retry.max_attempts =>
            {
                Step::Retry(self.config.retry.backoff_scaled(attempt, rng.unit()))
            }
            Attempt::Failed { transient } => {
                self.failed(now, transient, rng);
                Step::Done
            }
        }
    }

    /// Forgets the token (a server refused it); the next caller fetches, unless a failure is
    /// remembered. The next token's refresh is spread again.
    pub fn invalidate(&mut self) {
        self.usable_until = 0;
        self.refresh_at = 0;
        self.rephase = true;
    }

    fn succeeded(&mut self, now: u64, remaining: Duration, rng: &mut RefreshRng) {
        let config = &self.config;
        // For short-lived tokens: the margin takes at most a quarter of the lifetime, the early
        // refresh at most half, and the jitter stays within the gap between them, so a background
        // refresh always starts while the token can still be returned.
        let margin = config
            .expiry_margin
            .saturating_add(self.resolution)
            .min(remaining / 4);
        let early = config.refresh_early.min(remaining / 2);
        let expiry = now.saturating_add(nanos(remaining));
        // At least one nanosecond after `now`: 0 means "no token".
        self.usable_until = expiry
            .saturating_sub(nanos(margin))
            .max(now.saturating_add(1));
        let gap = early.saturating_sub(margin) / 2;
        let jitter = rng.up_to(nanos(config.refresh_jitter.min(gap)));
        let mut at = expiry.saturating_sub(nanos(early)).saturating_add(jitter);
        let spread = if config.refresh_spread.is_nan() {
            0.0
        } else {
            config.refresh_spread.clamp(0.0, 1.0)
        };
        if self.rephase && spread > 0.0 {
            // `as` saturates a float that does not fit; the product is at most `at - now` anyway.
            let shift = (at.saturating_sub(now) as f64 * spread * self.phase) as u64;
            at = at.saturating_sub(shift);
        }
        self.refresh_at = at.max(now);
        self.failures = 0;
        self.rephase = false;
        self.blocked_until = 0;
    }

    fn failed(&mut self, now: u64, transient: bool, rng: &mut RefreshRng) {
        let mut delay = self
            .config
            .failure_backoff
            .backoff_scaled(self.failures, rng.unit());
        if !transient {
            delay = delay.max(self.config.failure_cooldown);
        }
        self.failures = self.failures.saturating_add(1);
        let at = now.saturating_add(nanos(delay));
        self.blocked_until = at;
        if self.has_usable(now) {
            self.refresh_at = at;
        }
        self.rephase = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn schedule(config: CacheConfig, seed: u64) -> (RefreshSchedule, RefreshRng) {
        let mut rng = RefreshRng::with_seed(seed);
        (RefreshSchedule::new(config, Duration::ZERO, &mut rng), rng)
    }

    #[test]
    fn every_decision_points_to_the_future() {
        for seed in 0..200 {
            let (mut s, mut rng) = schedule(CacheConfig::default(), seed);
            let mut now = SEC;
            for step in 0..50u32 {
                let outcome = match (seed + u64::from(step)) % 4 {
                    0 => Attempt::Failed { transient: true },
                    1 => Attempt::Failed { transient: false },
                    2 => Attempt::Token {
                        remaining: Duration::from_secs(seed % 7),
                    },
                    _ => Attempt::Token {
                        remaining: Duration::from_secs(3600),
                    },
                };
                match s.after_attempt(now, 0, outcome, &mut rng) {
                    Step::Retry(delay) => now += nanos(delay).max(1),
                    Step::Done => {
                        let next = s.next_fetch_at();
                        assert!(next > now, "seed {seed} step {step}: {next} <= {now}");
                        now = next;
                    }
                }
            }
        }
    }

    #[test]
    fn an_already_expired_token_counts_as_a_permanent_failure() {
        let (mut s, mut rng) = schedule(CacheConfig::default(), 1);
        let step = s.after_attempt(
            SEC,
            0,
            Attempt::Token {
                remaining: Duration::ZERO,
            },
            &mut rng,
        );
        assert_eq!(step, Step::Done);
        assert!(s.usable_until().is_none());
        // Remembered for at least the cooldown.
        assert!(s.is_blocked(SEC + 4 * SEC));
        assert!(!s.is_blocked(SEC + 5 * SEC + 1));
    }

    #[test]
    fn quick_retries_only_before_the_first_failed_fetch() {
        let (mut s, mut rng) = schedule(CacheConfig::default(), 2);
        let failed = Attempt::Failed { transient: true };
        for attempt in 0..4 {
            assert!(matches!(
                s.after_attempt(SEC, attempt, failed, &mut rng),
                Step::Retry(_)
            ));
        }
        assert_eq!(s.after_attempt(SEC, 4, failed, &mut rng), Step::Done);
        assert_eq!(s.failures(), 1);
        // The next fetch, after the backoff, makes one attempt.
        let later = s.next_fetch_at();
        assert_eq!(s.after_attempt(later, 0, failed, &mut rng), Step::Done);
        assert_eq!(s.failures(), 2);
    }

    #[test]
    fn invalidate_spreads_the_next_refresh_again() {
        let config = CacheConfig::default();
        let (mut s, mut rng) = schedule(config, 3);
        let hour = Attempt::Token {
            remaining: Duration::from_secs(3600),
        };
        s.after_attempt(SEC, 0, hour, &mut rng);
        let first = s.refresh_at();
        // The second token is refreshed late.
        s.after_attempt(first, 0, hour, &mut rng);
        let late = s.refresh_at() - first;
        assert!((3360 * SEC..=3375 * SEC).contains(&late), "{late}");
        s.invalidate();
        assert!(s.due(first + 1));
        s.after_attempt(first + 1, 0, hour, &mut rng);
        // Spread by the same phase as the first token (up to the 15 s of per-refresh jitter).
        let again = s.refresh_at() - (first + 1);
        assert!(
            again.abs_diff(first - SEC) <= 15 * SEC,
            "{again} vs {}",
            first - SEC
        );
    }
}
