//! X.509 material from the metadata server's `instance/gce-workload-certificates/*` endpoints.

use std::fmt;

use workload_auth_core::Result;
use workload_auth_metadata::MetadataClient;

use crate::bundle::{TrustBundle, TrustBundleSet};
use crate::error::CredentialError;
use crate::source::{LoadFuture, SvidSource};
use crate::spiffe_id::TrustDomain;
use crate::store::X509Material;
use crate::svid::X509Svid;

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

        let identities_endpoint = self.endpoint("workload-identities");
        let svid = X509Svid::from_pem(
            identities.certificate_pem.as_bytes(),
            identities.private_key_pem.expose().as_bytes(),
        )
        .map_err(|e| e.at(identities_endpoint.as_str()))?;
        if svid.spiffe_id().as_str() != identities.spiffe_id {
            return Err(CredentialError::IdMismatch {
                claimed: identities.spiffe_id,
                certificate: svid.spiffe_id().to_string(),
            }
            .at(identities_endpoint));
        }

        let anchors_endpoint = self.endpoint("trust-anchors");
        let mut bundles = TrustBundleSet::new();
        for (name, pem) in anchors {
            let td = TrustDomain::new(&name)
                .map_err(|reason| CredentialError::InvalidTrustDomain { name, reason })
                .map_err(|e| e.at(anchors_endpoint.as_str()))?;
            let bundle = TrustBundle::from_pem(td, pem.as_bytes())
                .map_err(|e| e.at(anchors_endpoint.as_str()))?;
            bundles
                .add(bundle)
                .map_err(|e| e.at(anchors_endpoint.as_str()))?;
        }
        if bundles.is_empty() {
            return Err(CredentialError::NoTrustBundles.at(anchors_endpoint));
        }

        // A diagnostic only: material without it is still usable.
        let status = status.ok().map(|v| v.to_string());
        Ok(X509Material::new(svid, bundles)
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
