//! Faults a test can inject into the answers of one endpoint.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::endpoint::Endpoint;

/// A way for the emulator to misbehave on one request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status and a short text body (the `Metadata-Flavor` header is kept).
    Status(u16),
    /// Wait, then answer normally.
    Delay(Duration),
    /// Close the connection with a TCP reset, without answering.
    Reset,
    /// Send the headers with the full `Content-Length`, then half the body, then close.
    Truncate,
    /// Answer 200 with this body (and the normal `Content-Type`) instead of the real one.
    Malformed(String),
    /// Answer normally but without the `Metadata-Flavor` response header.
    MissingFlavor,
    /// Answer normally with `Metadata-Flavor: NotGoogle`.
    WrongFlavor,
    /// Answer 302 with this `Location`.
    Redirect(String),
    /// Answer 200 (with the normal `Content-Type`) with a body of this many bytes.
    Oversize(usize),
    /// Answer normally, but say the token lives only this long: a successful JSON answer's
    /// `expires_in` is replaced by this many whole seconds.
    ShortLifetime(Duration),
}

/// A seeded random mix of faults for a set of endpoints (see [`crate::Emulator::inject_mix`]):
/// each request to one of them draws one choice, with probability proportional to its weight.
/// `None` is a normal answer.
///
/// ```
/// use std::time::Duration;
/// use workload_auth_emulator::{Fault, FaultMix};
/// let mix = FaultMix::new(42)
///     .with(None, 4)
///     .with(Some(Fault::Status(503)), 1)
///     .with(Some(Fault::Delay(Duration::from_secs(2))), 1);
/// assert_eq!(mix.choices().len(), 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultMix {
    seed: u64,
    choices: Vec<(Option<Fault>, u32)>,
}

impl FaultMix {
    /// An empty mix (every answer normal) drawing from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            choices: Vec::new(),
        }
    }

    /// Adds a choice with a relative weight.
    pub fn with(mut self, fault: Option<Fault>, weight: u32) -> Self {
        self.choices.push((fault, weight));
        self
    }

    /// The choices and their weights, in the order they were added.
    pub fn choices(&self) -> &[(Option<Fault>, u32)] {
        &self.choices
    }
}

#[derive(Debug)]
struct MixState {
    endpoints: Vec<Endpoint>,
    mix: FaultMix,
    total: u64,
    rng: fastrand::Rng,
    counts: Vec<u64>,
}

/// Faults waiting to be applied, per endpoint, in the order they were injected.
#[derive(Debug, Default)]
pub(crate) struct FaultTable {
    armed: Mutex<HashMap<Endpoint, VecDeque<Armed>>>,
    mix: Mutex<Option<MixState>>,
}

#[derive(Debug)]
struct Armed {
    fault: Fault,
    /// Requests left to fault; `None` = until cleared.
    remaining: Option<u64>,
}

impl FaultTable {
    /// Queues `fault` for the next `times` requests to `endpoint` (`None`: every request until
    /// cleared). Faults queued on one endpoint apply one after the other.
    pub(crate) fn inject(&self, endpoint: Endpoint, fault: Fault, times: Option<u64>) {
        if times == Some(0) {
            return;
        }
        self.lock().entry(endpoint).or_default().push_back(Armed {
            fault,
            remaining: times,
        });
    }

    /// Applies `mix` to every request to `endpoints` that no counted fault claims, until cleared.
    pub(crate) fn set_mix(&self, endpoints: &[Endpoint], mix: FaultMix) {
        let total = mix.choices.iter().map(|(_, w)| u64::from(*w)).sum();
        *self.lock_mix() = Some(MixState {
            endpoints: endpoints.to_vec(),
            total,
            rng: fastrand::Rng::with_seed(mix.seed),
            counts: vec![0; mix.choices.len()],
            mix,
        });
    }

    /// How often each choice of the current mix was drawn, in the order of the mix.
    pub(crate) fn mix_counts(&self) -> Vec<(Option<Fault>, u64)> {
        match &*self.lock_mix() {
            Some(state) => state
                .mix
                .choices
                .iter()
                .zip(&state.counts)
                .map(|((fault, _), n)| (fault.clone(), *n))
                .collect(),
            None => Vec::new(),
        }
    }

    /// The fault the next request to `endpoint` suffers, if any; consumes one use of it.
    pub(crate) fn take(&self, endpoint: Endpoint) -> Option<Fault> {
        if let Some(fault) = self.take_armed(endpoint) {
            return Some(fault);
        }
        let mut mix = self.lock_mix();
        let state = mix.as_mut()?;
        if state.total == 0 || !state.endpoints.contains(&endpoint) {
            return None;
        }
        let mut draw = state.rng.u64(0..state.total);
        for (i, (fault, weight)) in state.mix.choices.iter().enumerate() {
            if draw < u64::from(*weight) {
                state.counts[i] += 1;
                return fault.clone();
            }
            draw -= u64::from(*weight);
        }
        None
    }

    fn take_armed(&self, endpoint: Endpoint) -> Option<Fault> {
        let mut armed = self.lock();
        let queue = armed.get_mut(&endpoint)?;
        let front = queue.front_mut()?;
        let fault = front.fault.clone();
        if let Some(remaining) = &mut front.remaining {
            *remaining -= 1;
            if *remaining == 0 {
                queue.pop_front();
            }
        }
        Some(fault)
    }

    pub(crate) fn clear(&self, endpoint: Option<Endpoint>) {
        match endpoint {
            Some(endpoint) => {
                self.lock().remove(&endpoint);
            }
            None => {
                self.lock().clear();
                *self.lock_mix() = None;
            }
        }
    }

    fn lock_mix(&self) -> std::sync::MutexGuard<'_, Option<MixState>> {
        self.mix.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Endpoint, VecDeque<Armed>>> {
        // The table holds no invariant a panicking holder could break.
        self.armed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_apply_in_order_then_stop() {
        let t = FaultTable::default();
        t.inject(Endpoint::Token, Fault::Status(503), Some(2));
        t.inject(Endpoint::Token, Fault::Reset, Some(1));
        t.inject(Endpoint::Token, Fault::Status(0), Some(0));
        assert_eq!(t.take(Endpoint::Email), None);
        assert_eq!(t.take(Endpoint::Token), Some(Fault::Status(503)));
        assert_eq!(t.take(Endpoint::Token), Some(Fault::Status(503)));
        assert_eq!(t.take(Endpoint::Token), Some(Fault::Reset));
        assert_eq!(t.take(Endpoint::Token), None);
    }

    #[test]
    fn a_mix_is_seeded_weighted_counted_and_cleared() {
        let draw = |seed| {
            let t = FaultTable::default();
            t.set_mix(
                &[Endpoint::Token],
                FaultMix::new(seed)
                    .with(None, 3)
                    .with(Some(Fault::Status(503)), 1)
                    .with(Some(Fault::Reset), 0),
            );
            let seq: Vec<_> = (0..400).map(|_| t.take(Endpoint::Token)).collect();
            assert_eq!(t.take(Endpoint::Email), None);
            let counts = t.mix_counts();
            t.clear(None);
            assert_eq!(t.take(Endpoint::Token), None);
            (seq, counts)
        };
        let (a, counts) = draw(7);
        assert_eq!(a, draw(7).0);
        assert_ne!(a, draw(8).0);
        assert_eq!(counts[0].1 + counts[1].1, 400);
        assert_eq!(counts[2].1, 0);
        assert!((60..140).contains(&counts[1].1), "{counts:?}");
    }

    #[test]
    fn unbounded_faults_last_until_cleared() {
        let t = FaultTable::default();
        t.inject(Endpoint::Root, Fault::MissingFlavor, None);
        for _ in 0..5 {
            assert_eq!(t.take(Endpoint::Root), Some(Fault::MissingFlavor));
        }
        t.clear(Some(Endpoint::Root));
        assert_eq!(t.take(Endpoint::Root), None);
    }
}
