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
}

/// Faults waiting to be applied, per endpoint, in the order they were injected.
#[derive(Debug, Default)]
pub(crate) struct FaultTable {
    armed: Mutex<HashMap<Endpoint, VecDeque<Armed>>>,
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

    /// The fault the next request to `endpoint` suffers, if any; consumes one use of it.
    pub(crate) fn take(&self, endpoint: Endpoint) -> Option<Fault> {
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
            None => self.lock().clear(),
        }
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
