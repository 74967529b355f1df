//! A workload's managed identity, kept current as it rotates.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use workload_auth_core::{Result, runtime};
use workload_auth_mtls::{
    Authorizer, CredentialsDir, MtlsAcceptor, MtlsConfig, MtlsConnector, ReloadStatus, SpiffeId,
    SvidSource, SvidStore, VerifiedChainCache, WatchOptions, Watcher, X509Material,
};
#[cfg(feature = "workload-api")]
use workload_auth_workload_api::{Endpoint, WorkloadApiOptions, WorkloadApiSource};

/// The workload's X509-SVID and trust bundles, from the credentials directory the node agent keeps
/// fresh (or from memory), swapped atomically on every rotation.
///
/// Cheap to clone; clones share the material and the watcher, which stops with the last clone.
#[derive(Clone)]
pub struct WorkloadIdentity {
    store: SvidStore,
    watcher: Option<Arc<Watcher>>,
    chain_cache: VerifiedChainCache,
}

impl fmt::Debug for WorkloadIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadIdentity")
            .field("spiffe_id", &self.spiffe_id().as_str())
            .field("watching", &self.watcher.is_some())
            .finish()
    }
}

impl WorkloadIdentity {
    /// Loads the credentials directory (`None`: `/var/run/secrets/workload-spiffe-credentials`) and
    /// watches it for rotations with the default [`WatchOptions`]. Blocks briefly; needs no runtime.
    pub fn from_directory(dir: Option<&Path>) -> Result<Self> {
        Self::from_directory_with(dir, WatchOptions::default())
    }

    /// [`WorkloadIdentity::from_directory`] with explicit watch options.
    pub fn from_directory_with(dir: Option<&Path>, options: WatchOptions) -> Result<Self> {
        let dir = match dir {
            Some(path) => CredentialsDir::new(path),
            None => CredentialsDir::default_location(),
        };
        let store = SvidStore::new(dir.load_blocking()?);
        let source: Arc<dyn SvidSource> = Arc::new(dir);
        Self::watching(store, source, options)
    }

    /// Watches any [`SvidSource`] (for example the metadata server's workload-certificate
    /// endpoints), starting from material already loaded from it.
    pub fn watching(
        store: SvidStore,
        source: Arc<dyn SvidSource>,
        options: WatchOptions,
    ) -> Result<Self> {
        let handle = runtime::handle()?;
        let _entered = handle.enter();
        let watcher = Watcher::spawn(store.clone(), source, options)?;
        Ok(Self {
            store,
            watcher: Some(Arc::new(watcher)),
            chain_cache: VerifiedChainCache::default(),
        })
    }

    /// Takes the identity from a SPIFFE Workload API (a SPIRE agent, or `workload-auth agent`):
    /// `endpoint` is `unix:///path` or `tcp://IP:port`; `None` reads `SPIFFE_ENDPOINT_SOCKET`.
    /// Waits for the first SVID (up to 10 s); afterwards the stream is kept open, reconnecting
    /// with backoff, and each new SVID is swapped in within 100 ms. Needs no runtime. Feature
    /// `workload-api`.
    #[cfg(feature = "workload-api")]
    pub fn from_workload_api(endpoint: Option<&str>) -> Result<Self> {
        Self::from_workload_api_with(endpoint, WorkloadApiOptions::default())
    }

    /// [`WorkloadIdentity::from_workload_api`] with explicit options (hint, backoff, first wait).
    #[cfg(feature = "workload-api")]
    pub fn from_workload_api_with(
        endpoint: Option<&str>,
        options: WorkloadApiOptions,
    ) -> Result<Self> {
        let endpoint = match endpoint {
            Some(address) => Endpoint::parse(address)?,
            None => Endpoint::from_env()?.ok_or_else(|| {
                workload_auth_core::Error::new(
                    workload_auth_core::ErrorKind::CredentialsNotFound,
                    "SPIFFE_ENDPOINT_SOCKET is not set and no Workload API endpoint was given",
                )
            })?,
        };
        let source = runtime::block_on(WorkloadApiSource::connect(endpoint, options))??;
        let store = SvidStore::new(source.load_now()?);
        Self::watching(
            store,
            Arc::new(source),
            WatchOptions {
                // The source's change check is an in-memory counter: polling it often is free.
                poll_interval: std::time::Duration::from_millis(100),
                ..WatchOptions::default()
            },
        )
    }

    /// Fixed material given by the caller: no watching.
    pub fn from_material(material: X509Material) -> Self {
        Self {
            store: SvidStore::new(material),
            watcher: None,
            chain_cache: VerifiedChainCache::default(),
        }
    }

    /// This workload's SPIFFE ID (of the current certificate).
    pub fn spiffe_id(&self) -> SpiffeId {
        self.store.with_current(|m| m.svid().spiffe_id().clone())
    }

    /// Warnings about the current material that an operator should act on, e.g. a private key
    /// file readable by group or others (see
    /// [`X509Material::warnings`](workload_auth_mtls::X509Material::warnings)); empty when all
    /// is well. Shown by `workload-auth mtls` on standard error.
    pub fn warnings(&self) -> Vec<String> {
        self.store.with_current(|m| m.warnings().to_vec())
    }

    /// The store holding the current material; it changes atomically on rotation.
    pub fn store(&self) -> &SvidStore {
        &self.store
    }

    /// How reloading has gone: counts, the last error (a failed reload keeps the last good material).
    pub fn status(&self) -> ReloadStatus {
        self.store.status()
    }

    /// mTLS configuration that presents this identity and accepts peers `authorizer` allows.
    ///
    /// Verified peer chains are remembered (per identity) so a repeat handshake with a known peer
    /// skips path validation; expiry, the trust bundles' generation and `authorizer` are still
    /// checked on every handshake.
    pub fn mtls(&self, authorizer: Authorizer) -> MtlsConfig {
        MtlsConfig::new(self.store.clone(), authorizer).with_chain_cache(self.chain_cache.clone())
    }

    /// A client that connects with this identity to peers `authorizer` allows.
    pub fn connector(&self, authorizer: Authorizer) -> Result<MtlsConnector> {
        MtlsConnector::from_config(&self.mtls(authorizer))
    }

    /// A server side that accepts peers `authorizer` allows (client certificates required).
    pub fn acceptor(&self, authorizer: Authorizer) -> Result<MtlsAcceptor> {
        MtlsAcceptor::from_config(&self.mtls(authorizer))
    }
}
