//! The current X.509 material, swapped atomically when it rotates.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use workload_auth_core::Error;

use crate::bundle::TrustBundleSet;
use crate::credentials_reader::CredentialLayout;
use crate::svid::X509Svid;

/// One consistent set of credentials: the workload's SVID, the trust bundles to verify peers with,
/// and diagnostics from where they were loaded. (`Debug` is derived: the SVID's own `Debug`
/// never shows the key.)
#[derive(Clone, Debug)]
pub struct X509Material {
    svid: X509Svid,
    bundles: Arc<TrustBundleSet>,
    config_status: Option<String>,
    origin: String,
    warnings: Vec<String>,
    layout: Option<CredentialLayout>,
}

impl X509Material {
    /// Material given by the caller.
    pub fn new(svid: X509Svid, bundles: TrustBundleSet) -> Self {
        Self {
            svid,
            bundles: Arc::new(bundles),
            config_status: None,
            origin: "in-memory".into(),
            warnings: Vec::new(),
            layout: None,
        }
    }

    /// Records where the material came from (a directory, an endpoint), for messages.
    #[must_use]
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = origin.into();
        self
    }

    /// Attaches the provider's configuration status (`config_status`) as a diagnostic.
    #[must_use]
    pub fn with_config_status(mut self, status: Option<String>) -> Self {
        self.config_status = status;
        self
    }

    /// Attaches warnings about how the material was stored (see [`X509Material::warnings`]).
    #[must_use]
    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }

    /// Records which files the material was read from (see [`X509Material::layout`]).
    #[must_use]
    pub fn with_layout(mut self, layout: CredentialLayout) -> Self {
        self.layout = Some(layout);
        self
    }

    /// The layout of the directory the material was read from, when it came from one
    /// ([`CredentialsDir`](crate::CredentialsDir)); `None` for material from elsewhere.
    pub fn layout(&self) -> Option<CredentialLayout> {
        self.layout
    }

    /// Problems that do not stop the material from working but that an operator should fix,
    /// one sentence each, e.g. a private key file that group or others may read (found by
    /// [`CredentialsDir`](crate::CredentialsDir)). Tools show them (`workload-auth mtls` prints
    /// them on standard error); they never contain key material.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The workload's own SVID.
    pub fn svid(&self) -> &X509Svid {
        &self.svid
    }

    /// The trust bundles peers are verified against.
    pub fn bundles(&self) -> &TrustBundleSet {
        &self.bundles
    }

    /// The provider's configuration status text (`config_status`), when it reported one. It lists
    /// configuration errors the node agent met; it does not by itself make the material unusable.
    pub fn config_status(&self) -> Option<&str> {
        self.config_status.as_deref()
    }

    /// Where the material came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// How reloading has gone: what a health check or a test looks at.
#[derive(Clone, Debug, Default)]
pub struct ReloadStatus {
    /// Successful loads swapped in since the store was created (the first load not counted).
    pub reloads: u64,
    /// Failed reload attempts since the store was created.
    pub failures: u64,
    /// The error of the most recent failed attempt, cleared by the next success.
    pub last_error: Option<Error>,
    /// When material was last swapped in.
    pub last_success: Option<SystemTime>,
}

/// The current [`X509Material`], shared by the TLS configs built from it.
///
/// Reads are lock-free (`arc-swap`); a reload replaces the whole set at once, so a handshake sees
/// either the old SVID, key and bundles or the new ones, never a mix. Cloning shares the store.
#[derive(Clone)]
pub struct SvidStore {
    inner: Arc<Inner>,
}

struct Inner {
    current: ArcSwap<X509Material>,
    status: Mutex<ReloadStatus>,
    generation: watch::Sender<u64>,
}

impl SvidStore {
    /// A store holding `material`.
    pub fn new(material: X509Material) -> Self {
        Self {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(material),
                status: Mutex::new(ReloadStatus::default()),
                generation: watch::Sender::new(0),
            }),
        }
    }

    /// The current material.
    pub fn current(&self) -> Arc<X509Material> {
        self.inner.current.load_full()
    }

    /// Calls `f` with the current material without touching its reference count.
    pub fn with_current<R>(&self, f: impl FnOnce(&X509Material) -> R) -> R {
        f(&self.inner.current.load())
    }

    /// Swaps in new material; handshakes that start afterwards use it.
    pub fn replace(&self, material: X509Material) {
        self.inner.current.store(Arc::new(material));
        {
            let mut status = self.lock_status();
            status.reloads += 1;
            status.last_error = None;
            status.last_success = Some(SystemTime::now());
        }
        self.inner.generation.send_modify(|g| *g += 1);
    }

    /// Records a failed reload; the current material stays in place.
    pub fn record_failure(&self, error: Error) {
        tracing::warn!(%error, "reloading X.509 credentials failed; keeping the last good set");
        let mut status = self.lock_status();
        status.failures += 1;
        status.last_error = Some(error);
    }

    /// How reloading has gone so far.
    pub fn status(&self) -> ReloadStatus {
        self.lock_status().clone()
    }

    /// How many times material has been swapped in (0 for the initial material).
    pub fn generation(&self) -> u64 {
        *self.inner.generation.borrow()
    }

    /// A receiver that sees [`SvidStore::generation`] change on every swap.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, ReloadStatus> {
        self.inner
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for SvidStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidStore")
            .field("current", &self.inner.current.load())
            .field("generation", &self.generation())
            .finish()
    }
}
