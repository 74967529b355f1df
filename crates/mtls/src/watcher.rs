//! Rotation: a background task that notices new credentials and swaps them in.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use workload_auth_core::{Error, ErrorKind, Result, RetryPolicy};

use crate::error::CredentialError;
use crate::source::SvidSource;
use crate::store::{SvidStore, X509Material};

/// How often the [`Watcher`] looks.
#[derive(Clone, Copy, Debug)]
pub struct WatchOptions {
    /// How often to run the source's cheap change check (a few `stat` calls). Default 1 s.
    pub poll_interval: Duration,
    /// Re-read the source at least this often even when nothing seems to have changed. Default
    /// 5 minutes (the node agent refreshes every 10).
    pub max_reload_interval: Duration,
    /// After a failed reload, wait at least this long before the next try, doubling up to
    /// `max_reload_interval`. Default 1 s.
    pub retry_backoff: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            max_reload_interval: Duration::from_secs(300),
            retry_backoff: Duration::from_secs(1),
        }
    }
}

impl WatchOptions {
    /// The delays before the next try after consecutive failed reloads: `retry_backoff`, then
    /// doubling, never more than `max_reload_interval` (a full reload is due by then anyway).
    /// No jitter: the change check every `poll_interval` already retries at once when the
    /// files change again, which is what a rotation in progress looks like.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            // Unused: the watcher keeps trying for as long as it runs.
            max_attempts: u32::MAX,
            initial_backoff: self.retry_backoff,
            max_backoff: self.max_reload_interval,
            multiplier: 2.0,
            jitter: 0.0,
        }
    }
}

/// Keeps an [`SvidStore`] up to date with an [`SvidSource`].
///
/// The task belongs to this handle: dropping the `Watcher` stops it. A failed reload keeps the
/// last good material and is recorded in [`SvidStore::status`].
pub struct Watcher {
    task: JoinHandle<()>,
    store: SvidStore,
    source: Arc<dyn SvidSource>,
}

impl Watcher {
    /// Starts watching `source` on the current tokio runtime, updating `store`.
    ///
    /// Fails (rather than panicking) when called outside a tokio runtime.
    pub fn spawn(
        store: SvidStore,
        source: Arc<dyn SvidSource>,
        options: WatchOptions,
    ) -> Result<Self> {
        let handle = tokio::runtime::Handle::try_current().map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                "watching credentials needs a tokio runtime",
            )
            .with_source(e)
        })?;
        // Taken now, so a change made right after `spawn` returns is seen as a change.
        let marker = source.change_marker();
        let task = handle.spawn(run(store.clone(), source.clone(), options, marker));
        Ok(Self {
            task,
            store,
            source,
        })
    }

    /// The store being kept up to date.
    pub fn store(&self) -> &SvidStore {
        &self.store
    }

    /// Loads the source now and swaps the result in (or records the failure and returns it).
    pub async fn reload_now(&self) -> Result<()> {
        reload(&self.store, self.source.as_ref()).await
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("source", &self.source.describe())
            .field("generation", &self.store.generation())
            .finish()
    }
}

async fn reload(store: &SvidStore, source: &dyn SvidSource) -> Result<()> {
    match source.load().await.and_then(|m| keeps_the_key(store, m)) {
        Ok(material) => {
            tracing::info!(
                spiffe_id = %material.svid().spiffe_id(),
                origin = material.origin(),
                "X.509 credentials reloaded"
            );
            store.replace(material);
            Ok(())
        }
        Err(e) => {
            store.record_failure(e.clone());
            Err(e)
        }
    }
}

/// A generation without the private key after one with it is treated as broken (a key file not
/// written yet, or lost), not as the platform starting to hide the key: swapping it in would turn
/// every handshake into an error while the last good key still works. Material that never had a
/// key rotates as usual.
fn keeps_the_key(store: &SvidStore, material: X509Material) -> Result<X509Material> {
    let had_key = store.with_current(|m| m.svid().has_private_key());
    if had_key && !material.svid().has_private_key() {
        return Err(CredentialError::PrivateKeyHidden
            .at(material.origin().to_owned())
            .with_hint(
                "the new credentials have a certificate but no private key; the last ones with \
                 a key stay in use",
            ));
    }
    Ok(material)
}

async fn run(
    store: SvidStore,
    source: Arc<dyn SvidSource>,
    options: WatchOptions,
    mut marker: Option<crate::source::ChangeMarker>,
) {
    let poll = options.poll_interval.max(Duration::from_millis(10));
    let mut next_full = after(options.max_reload_interval);
    let retry = options.retry_policy();
    let mut failures: u32 = 0;
    let mut retry_at: Option<Instant> = None;
    loop {
        tokio::time::sleep(poll).await;
        let now = Instant::now();
        let current = source.change_marker();
        // A failed load is retried after a backoff, or at once if the source changes again.
        let due = current != marker || now >= next_full || retry_at.is_some_and(|at| now >= at);
        if !due {
            continue;
        }
        marker = current;
        match reload(&store, source.as_ref()).await {
            Ok(()) => {
                retry_at = None;
                failures = 0;
            }
            Err(_) => {
                retry_at = Some(after(retry.backoff(failures)));
                failures = failures.saturating_add(1);
            }
        }
        next_full = after(options.max_reload_interval);
    }
}

/// `delay` from now; a caller's `Duration::MAX` means "not in this process's lifetime", not an
/// overflow panic.
fn after(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_reloads_back_off_by_doubling_up_to_the_reload_interval() {
        let delays = |o: WatchOptions| -> Vec<Duration> {
            let p = o.retry_policy();
            (0..12).map(|n| p.backoff(n)).collect()
        };
        let secs = |v: &[u64]| {
            v.iter()
                .map(|s| Duration::from_secs(*s))
                .collect::<Vec<_>>()
        };
        // The defaults: 1 s doubling, capped at the 5-minute full reload.
        assert_eq!(
            delays(WatchOptions::default()),
            secs(&[1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300])
        );
        let o = WatchOptions {
            retry_backoff: Duration::from_millis(250),
            max_reload_interval: Duration::from_secs(1),
            ..WatchOptions::default()
        };
        let ms: Vec<u128> = delays(o).iter().map(Duration::as_millis).collect();
        assert_eq!(
            ms,
            [
                250, 500, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000
            ]
        );
        let p = WatchOptions {
            retry_backoff: Duration::MAX,
            max_reload_interval: Duration::MAX,
            ..WatchOptions::default()
        }
        .retry_policy();
        assert!(p.backoff(u32::MAX) >= Duration::from_secs(u64::MAX / 2));
        assert!(after(p.backoff(3)) > Instant::now());
    }

    #[test]
    fn finding_3_huge_intervals_do_not_overflow() {
        let now = Instant::now();
        assert!(after(Duration::MAX) > now + Duration::from_secs(365 * 24 * 3600));
        let soon = after(Duration::from_secs(1));
        assert!(soon > now && soon <= Instant::now() + Duration::from_secs(1));
    }
}
