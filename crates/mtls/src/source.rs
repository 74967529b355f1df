//! Where X.509 material comes from: the seam between loading and rotating.
//!
//! This crate provides [`CredentialsDir`](crate::CredentialsDir) (the node agent's directory),
//! [`MetadataSource`](crate::MetadataSource) (the metadata server's `gce-workload-certificates`
//! endpoints, through the metadata crate's client) and [`MemorySource`] (material held by the
//! caller).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use workload_auth_core::Result;

use crate::store::X509Material;

/// The future returned by [`SvidSource::load`].
pub type LoadFuture<'a> = Pin<Box<dyn Future<Output = Result<X509Material>> + Send + 'a>>;

/// A cheap fingerprint of a source's state: when it changes, new material may be available.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChangeMarker(pub u64);

/// Something that loads a complete, consistent [`X509Material`].
pub trait SvidSource: Send + Sync + fmt::Debug + 'static {
    /// Loads the material. Implementations check that the key matches the certificate and return a
    /// typed error (never partial material) when they cannot.
    fn load(&self) -> LoadFuture<'_>;

    /// A cheap check for change, run often by the [`Watcher`](crate::Watcher) (a few `stat`
    /// calls at most). `None` means the source has no cheap check and is only re-read periodically.
    fn change_marker(&self) -> Option<ChangeMarker> {
        None
    }

    /// Where the material comes from, for messages.
    fn describe(&self) -> String;
}

/// Material held in memory and replaced by the caller with [`MemorySource::set`].
#[derive(Debug)]
pub struct MemorySource {
    state: Mutex<(u64, X509Material)>,
}

impl MemorySource {
    /// A source that returns `material` until [`MemorySource::set`] changes it.
    pub fn new(material: X509Material) -> Self {
        Self {
            state: Mutex::new((0, material)),
        }
    }

    /// Replaces the material; a watcher picks it up on its next check.
    pub fn set(&self, material: X509Material) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 += 1;
        state.1 = material;
    }

    /// The material currently held.
    pub fn get(&self) -> X509Material {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }
}

impl SvidSource for MemorySource {
    fn load(&self) -> LoadFuture<'_> {
        let material = self.get();
        Box::pin(async move { Ok(material) })
    }

    fn change_marker(&self) -> Option<ChangeMarker> {
        Some(ChangeMarker(
            self.state.lock().unwrap_or_else(PoisonError::into_inner).0,
        ))
    }

    fn describe(&self) -> String {
        "in-memory material".into()
    }
}
