//! Clocks: a cheap monotonic clock for the cache's hot path, and a manual one for tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// A source of time for [`crate::TokenCache`].
///
/// `now_mono` is read on every cache hit, so it must be cheap. It may be coarse: the cache subtracts
/// [`Clock::resolution`] from every deadline, so a coarse reading can only make a token look older.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time in nanoseconds since an arbitrary origin.
    fn now_mono(&self) -> u64;
    /// The largest amount by which `now_mono` may lag real time.
    fn resolution(&self) -> Duration;
    /// Wall-clock time, used to turn an absolute expiry into a monotonic deadline.
    fn now_system(&self) -> SystemTime;
}

/// The real clock. On Linux `now_mono` reads `CLOCK_MONOTONIC_COARSE` through the vDSO, which costs
/// a fraction of `Instant::now()` (no TSC read) and has tick resolution (1-10 ms), far finer than the
/// minutes of margin a token cache works with.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

#[cfg(target_os = "linux")]
impl Clock for SystemClock {
    #[inline]
    fn now_mono(&self) -> u64 {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    }

    fn resolution(&self) -> Duration {
        let res = rustix::time::clock_getres(rustix::time::ClockId::MonotonicCoarse);
        // Assume the coarsest tick Linux has (HZ=100) if the kernel reports nothing useful.
        let nanos = (res.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(res.tv_nsec as u64);
        Duration::from_nanos(nanos.clamp(1, 1_000_000_000)).max(Duration::from_millis(10))
    }

    fn now_system(&self) -> SystemTime {
        SystemTime::now()
    }
}

#[cfg(not(target_os = "linux"))]
impl Clock for SystemClock {
    #[inline]
    fn now_mono(&self) -> u64 {
        use std::sync::OnceLock;
        use std::time::Instant;
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        let origin = ORIGIN.get_or_init(Instant::now);
        u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now_system(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to, for tests of expiry and refresh.
#[derive(Clone, Debug)]
pub struct ManualClock {
    mono: Arc<AtomicU64>,
    origin: SystemTime,
}

impl ManualClock {
    /// A clock standing at the current wall-clock time.
    pub fn new() -> Self {
        Self {
            mono: Arc::new(AtomicU64::new(1_000_000_000)),
            origin: SystemTime::now(),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.mono.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now_mono(&self) -> u64 {
        self.mono.load(Ordering::SeqCst)
    }

    fn resolution(&self) -> Duration {
        Duration::ZERO
    }

    fn now_system(&self) -> SystemTime {
        self.origin + Duration::from_nanos(self.now_mono() - 1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_monotonic_and_close_to_instant() {
        let c = SystemClock;
        let a = c.now_mono();
        std::thread::sleep(Duration::from_millis(30));
        let b = c.now_mono();
        assert!(b > a);
        let elapsed = Duration::from_nanos(b - a);
        assert!(
            elapsed + c.resolution() >= Duration::from_millis(30),
            "{elapsed:?}"
        );
    }

    #[test]
    fn manual_clock_moves_both_readings() {
        let c = ManualClock::new();
        let (m, s) = (c.now_mono(), c.now_system());
        c.advance(Duration::from_secs(90));
        assert_eq!(c.now_mono() - m, 90_000_000_000);
        assert_eq!(
            c.now_system().duration_since(s).unwrap(),
            Duration::from_secs(90)
        );
    }
}
