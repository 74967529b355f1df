//! Everything the server's connections share.

use std::sync::Arc;

use arc_swap::ArcSwap;
use workload_auth_core::Result;

use crate::config::EmulatorConfig;
use crate::endpoint::Counters;
use crate::fault::FaultTable;
use crate::record::RequestLog;
use crate::signing::IdTokenSigner;
use crate::tokens::TokenRegistry;

#[derive(Debug)]
pub(crate) struct State {
    config: ArcSwap<EmulatorConfig>,
    pub(crate) counters: Counters,
    pub(crate) faults: FaultTable,
    pub(crate) signer: IdTokenSigner,
    pub(crate) tokens: TokenRegistry,
    pub(crate) log: RequestLog,
    pub(crate) downscope: crate::identity::downscope::DownscopeRegistry,
    pub(crate) mds_mtls: crate::mds_mtls::MdsMtlsState,
}

impl State {
    pub(crate) fn new(config: EmulatorConfig) -> Result<Self> {
        Ok(Self {
            config: ArcSwap::from_pointee(config),
            counters: Counters::default(),
            faults: FaultTable::default(),
            signer: IdTokenSigner::new()?,
            tokens: TokenRegistry::default(),
            log: RequestLog::default(),
            downscope: Default::default(),
            mds_mtls: Default::default(),
        })
    }

    /// The current configuration (a snapshot: later updates do not change it).
    pub(crate) fn config(&self) -> Arc<EmulatorConfig> {
        self.config.load_full()
    }

    pub(crate) fn update_config(&self, update: impl FnOnce(&mut EmulatorConfig)) {
        let mut config = EmulatorConfig::clone(&self.config.load());
        update(&mut config);
        self.config.store(Arc::new(config));
    }
}
