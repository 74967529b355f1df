//! Capped exponential backoff with jitter, and a loop that retries only transient errors.

use std::future::Future;
use std::time::Duration;

use crate::error::Result;

/// How often and how patiently to retry transient failures.
///
/// The defaults follow google-auth's metadata-server client (5 attempts, doubling from a base delay,
/// with jitter) but start at 100 ms instead of 1 s, because callers wait on the first fetch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first included. 1 means no retry.
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_backoff: Duration,
    /// Upper bound of any one delay.
    pub max_backoff: Duration,
    /// Growth factor between delays.
    pub multiplier: f64,
    /// Fraction of each delay that is randomized (0.0 to 1.0): the delay is drawn from
    /// `[d * (1 - jitter), d]`, so processes that failed together do not retry together.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The delay after failed attempt number `attempt` (0-based), jittered and capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.backoff_scaled(attempt, fastrand::f64())
    }

    /// [`RetryPolicy::backoff`] with the random draw given (`unit` in `[0, 1)`), so that a seeded
    /// caller (the token cache's [`crate::cache::RefreshSchedule`]) is repeatable. Never panics,
    /// whatever the policy's numbers: an out-of-range delay is capped at `max_backoff`.
    pub(crate) fn backoff_scaled(&self, attempt: u32, unit: f64) -> Duration {
        let exp = self
            .multiplier
            .max(1.0)
            .powi(i32::try_from(attempt.min(64)).unwrap_or(64));
        let base = (self.initial_backoff.as_secs_f64() * exp).min(self.max_backoff.as_secs_f64());
        // NaN would make every delay zero: a hot loop.
        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        let factor = 1.0 - jitter * unit.clamp(0.0, 1.0);
        // `try_`: a `Duration::MAX` cap rounds up past what a Duration holds as f64.
        Duration::try_from_secs_f64((base * factor).max(0.0)).unwrap_or(self.max_backoff)
    }

    /// Runs `op` until it succeeds, fails permanently, or the attempts are used up; sleeps between
    /// attempts. Needs a tokio runtime with time enabled.
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e) if e.is_transient() && attempt + 1 < self.max_attempts => {
                    tracing::debug!(error = %e, attempt, "transient failure, retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorKind};
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
            jitter: 0.2,
            ..RetryPolicy::default()
        };
        for _ in 0..100 {
            let d0 = p.backoff(0);
            assert!(d0 <= Duration::from_millis(100) && d0 >= Duration::from_millis(80));
            let d2 = p.backoff(2);
            assert!(d2 <= Duration::from_millis(400) && d2 >= Duration::from_millis(320));
            assert!(p.backoff(10) <= Duration::from_millis(700));
            assert!(p.backoff(u32::MAX) <= Duration::from_millis(700));
        }
        let distinct: std::collections::HashSet<_> = (0..20).map(|_| p.backoff(1)).collect();
        assert!(distinct.len() > 1, "no jitter");
    }

    #[test]
    fn finding_3_extreme_policies_do_not_panic() {
        let p = RetryPolicy {
            initial_backoff: Duration::MAX,
            max_backoff: Duration::MAX,
            multiplier: 1e300,
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert!(p.backoff(0) >= Duration::from_secs(u64::MAX / 2));
        assert_eq!(p.backoff(64), Duration::MAX);
        let p = RetryPolicy {
            multiplier: f64::NAN,
            jitter: f64::NAN,
            ..p
        };
        let _ = p.backoff(3);
    }

    #[tokio::test]
    async fn run_retries_transient_but_not_permanent() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        let calls = AtomicU32::new(0);
        let r: Result<()> = p
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::http_status(503, "e", "down"))
            })
            .await;
        assert_eq!(r.unwrap_err().status(), Some(503));
        assert_eq!(calls.load(Ordering::SeqCst), 5);

        calls.store(0, Ordering::SeqCst);
        let r: Result<()> = p
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::new(ErrorKind::Rejected, "no"))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        calls.store(0, Ordering::SeqCst);
        let r = p
            .run(|| async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(Error::new(ErrorKind::Transport, "reset"))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(r.unwrap(), 7);
    }
}
