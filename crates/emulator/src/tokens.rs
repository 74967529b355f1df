//! Access tokens the emulator hands out, remembered so later requests (and tests) can check them.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use workload_auth_core::SecretString;

/// How many issued tokens are remembered; the oldest are forgotten first.
const REMEMBERED: usize = 4096;

/// What the emulator knows about an access token it issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    /// The scopes the token was requested for (the account's scopes when none were asked).
    pub scopes: Vec<String>,
    /// When the token expires.
    pub expires_at: SystemTime,
    /// The fingerprint (base64url SHA-256 of the leaf's DER) of the certificate the token is
    /// bound to, if it is bound (Agent Identity): it is then accepted only over mutual TLS
    /// presenting that certificate.
    pub bound_fingerprint: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct TokenRegistry {
    issued: Mutex<VecDeque<(SecretString, IssuedToken)>>,
}

impl TokenRegistry {
    /// A new `ya29.emulated-…` token for `scopes`, valid for `lifetime`.
    pub(crate) fn mint(&self, scopes: Vec<String>, lifetime: Duration) -> SecretString {
        self.mint_bound(scopes, lifetime, None)
    }

    /// [`Self::mint`], bound to the certificate whose fingerprint is `bound_fingerprint`.
    pub(crate) fn mint_bound(
        &self,
        scopes: Vec<String>,
        lifetime: Duration,
        bound_fingerprint: Option<String>,
    ) -> SecretString {
        let random: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(40)
            .collect();
        let token = SecretString::new(format!("ya29.emulated-{random}"));
        let info = IssuedToken {
            scopes,
            // A configured `Duration::MAX` means "never expires", not an overflow panic.
            expires_at: SystemTime::now()
                .checked_add(lifetime)
                .unwrap_or(SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799)),
            bound_fingerprint,
        };
        let mut issued = self.lock();
        if issued.len() >= REMEMBERED {
            issued.pop_front();
        }
        issued.push_back((token.clone(), info));
        token
    }

    /// The token's record, if this emulator issued it and it has not expired. A token looked up
    /// moves to the back of the queue, so tokens in use are remembered longest (a source token
    /// exchanged over and over is not forgotten behind the tokens it was exchanged for).
    pub(crate) fn lookup(&self, token: &str) -> Option<IssuedToken> {
        let now = SystemTime::now();
        let mut issued = self.lock();
        let index = issued
            .iter()
            .position(|(t, info)| t.expose() == token && info.expires_at > now)?;
        let entry = issued.remove(index)?;
        let info = entry.1.clone();
        issued.push_back(entry);
        Some(info)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(SecretString, IssuedToken)>> {
        self.issued.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_are_unique_and_remembered_until_expiry() {
        let r = TokenRegistry::default();
        let a = r.mint(vec!["s".into()], Duration::from_secs(60));
        let b = r.mint(vec![], Duration::ZERO);
        assert_ne!(a, b);
        assert!(a.expose().starts_with("ya29.emulated-"));
        assert_eq!(r.lookup(a.expose()).unwrap().scopes, ["s"]);
        assert_eq!(r.lookup(b.expose()), None, "expired");
        assert_eq!(r.lookup("ya29.other"), None);
    }

    #[test]
    fn tokens_in_use_are_remembered_longest() {
        let r = TokenRegistry::default();
        let used = r.mint(vec![], Duration::from_secs(60));
        let idle = r.mint(vec![], Duration::from_secs(60));
        assert!(r.lookup(used.expose()).is_some());
        for _ in 0..REMEMBERED - 1 {
            r.mint(vec![], Duration::from_secs(60));
        }
        assert!(r.lookup(used.expose()).is_some(), "looked up, so kept");
        assert!(
            r.lookup(idle.expose()).is_none(),
            "the oldest idle one went first"
        );
    }
}
