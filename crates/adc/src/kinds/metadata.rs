//! The attached service account, through the metadata server.

use workload_auth_core::{AccessToken, IdToken, Result};
use workload_auth_metadata::MetadataClient;

#[derive(Debug)]
pub(crate) struct MetadataSource {
    pub(crate) client: MetadataClient,
}

impl MetadataSource {
    pub(crate) fn details(&self) -> Vec<(String, String)> {
        vec![(
            "metadata_server".to_owned(),
            self.client.host().base_url().to_string(),
        )]
    }

    /// A token for `scopes`; none asks for the VM's own scopes.
    pub(crate) async fn access_token(&self, scopes: &[String]) -> Result<AccessToken> {
        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        self.client.access_token(&scopes).await
    }

    /// An ID token in the `full` format (with the `email` claim).
    pub(crate) async fn id_token(&self, audience: &str) -> Result<IdToken> {
        self.client.id_token(audience, true, false).await
    }
}
