//! The attached service account, through the metadata server.

use workload_auth_core::{AccessToken, IdToken, Result};
use workload_auth_metadata::MetadataClient;

use crate::agent_identity::{
    BoundAccessToken, BoundCertificate, BoundIdToken, CertificateFiles, bound_only_error,
};

/// The metadata server's attached service account as a credential kind (tokens, ID tokens,
/// bound tokens); the mTLS crate's `MetadataSource` is another thing, a source of SVIDs.
#[derive(Debug)]
pub(crate) struct MetadataServer {
    pub(crate) client: MetadataClient,
    /// The Agent Identity certificate tokens are bound to, when there is one (decided when the
    /// credentials were built; read again for every token).
    pub(crate) binding: Option<CertificateFiles>,
}

impl MetadataServer {
    pub(crate) fn details(&self) -> Vec<(String, String)> {
        vec![(
            "metadata_server".to_owned(),
            self.client.host().base_url().to_string(),
        )]
    }

    /// A token for `scopes`; none asks for the VM's own scopes. Refused when tokens are bound:
    /// a bound token goes out only with its certificate ([`Self::bound_access_token`]).
    pub(crate) async fn access_token(&self, scopes: &[String]) -> Result<AccessToken> {
        if let Some(files) = &self.binding {
            return Err(bound_only_error(files));
        }
        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        self.client.access_token(&scopes).await
    }

    /// A token for `scopes` bound to `certificate`, returned with it.
    pub(crate) async fn bound_access_token(
        &self,
        certificate: BoundCertificate,
        scopes: &[String],
    ) -> Result<BoundAccessToken> {
        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let binding = certificate.binding()?;
        let token = self.client.bound_access_token(&scopes, &binding).await?;
        Ok(BoundAccessToken::new(token, certificate))
    }

    /// An ID token in the `full` format (with the `email` claim). Refused when tokens are bound.
    pub(crate) async fn id_token(&self, audience: &str) -> Result<IdToken> {
        if let Some(files) = &self.binding {
            return Err(bound_only_error(files));
        }
        self.client.id_token(audience, true, false).await
    }

    /// An ID token bound to `certificate`, returned with it.
    pub(crate) async fn bound_id_token(
        &self,
        certificate: BoundCertificate,
        audience: &str,
    ) -> Result<BoundIdToken> {
        let binding = certificate.binding()?;
        let token = self
            .client
            .bound_id_token(audience, true, false, &binding)
            .await?;
        Ok(BoundIdToken::new(token, certificate))
    }
}
