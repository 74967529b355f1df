//! X.509 material from the metadata server's `instance/gce-workload-certificates/*` endpoints.

use std::fmt;

use workload_auth_core::Result;
use workload_auth_metadata::MetadataClient;

use crate::source::{LoadFuture, SvidSource};
use crate::store::X509Material;
use crate::workload_certificates::{Part, material_from_metadata};

/// Loads the workload's X509-SVID and trust anchors from the metadata server (managed workload
/// identity on Compute Engine), for VMs that read credentials over HTTP rather than from the
/// credentials directory.
///
/// `workload-identities` gives the SVID and key in one response, so a rotation can never tear them
/// apart; `trust-anchors` gives the roots of each trusted domain; `config-status` is attached as a
/// diagnostic when the server gives it. The source has no cheap change check: a
/// [`Watcher`](crate::Watcher) re-reads it every
/// [`max_reload_interval`](crate::WatchOptions::max_reload_interval).
///
/// When the VM has no workload certificates, [`SvidSource::load`] fails with the metadata client's
/// error, whose reason
/// [`WorkloadCertificatesUnavailable::of`](workload_auth_metadata::WorkloadCertificatesUnavailable::of)
/// reads: `NotConfigured` (HTTP 412) or `FeatureDisabled` (HTTP 404).
///
/// ```no_run
/// use std::sync::Arc;
/// use workload_auth_metadata::MetadataClient;
/// use workload_auth_mtls::{MetadataSource, SvidSource, SvidStore, WatchOptions, Watcher};
///
/// # async fn run() -> workload_auth_core::Result<()> {
/// let source = MetadataSource::new(MetadataClient::builder().build()?);
/// let store = SvidStore::new(source.load().await?);
/// let _watcher = Watcher::spawn(store.clone(), Arc::new(source), WatchOptions::default())?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MetadataSource {
    client: MetadataClient,
}

impl MetadataSource {
    /// A source reading through `client` (which names the metadata server to ask).
    pub fn new(client: MetadataClient) -> Self {
        Self { client }
    }

    /// The metadata client used.
    pub fn client(&self) -> &MetadataClient {
        &self.client
    }

    fn endpoint(&self, name: &str) -> String {
        format!(
            "{}instance/gce-workload-certificates/{name}",
            self.client.host().base_url()
        )
    }

    async fn fetch(&self) -> Result<X509Material> {
        let (identities, anchors, status) = tokio::join!(
            self.client.workload_identities(),
            self.client.trust_anchors(),
            self.client.config_status(),
        );
        // The metadata client's errors already name the endpoint and carry the reason a VM has
        // no workload certificates; they are passed on unchanged.
        let identities = identities?;
        let anchors = anchors?;

        let material = material_from_metadata(identities, anchors).map_err(|(part, e)| {
            e.at(match part {
                Part::Identities => self.endpoint("workload-identities"),
                Part::Anchors => self.endpoint("trust-anchors"),
            })
        })?;

        // A diagnostic only: material without it is still usable.
        let status = status.ok().map(|v| v.to_string());
        Ok(material
            .with_origin(format!(
                "metadata server {}",
                self.client.host().authority()
            ))
            .with_config_status(status))
    }
}

impl SvidSource for MetadataSource {
    fn load(&self) -> LoadFuture<'_> {
        Box::pin(self.fetch())
    }

    fn describe(&self) -> String {
        format!(
            "workload certificates from the metadata server at {}",
            self.client.host().authority()
        )
    }
}

impl fmt::Debug for MetadataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataSource")
            .field("host", &self.client.host().authority())
            .finish()
    }
}

impl From<MetadataSource> for std::sync::Arc<dyn SvidSource> {
    fn from(source: MetadataSource) -> Self {
        std::sync::Arc::new(source)
    }
}
