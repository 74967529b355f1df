//! Parsing the metadata server's `gce-workload-certificates` bodies into [`X509Material`].
//!
//! The HTTP fetch belongs to the metadata client; this is only the format, so a metadata-backed
//! [`SvidSource`](crate::SvidSource) needs no X.509 knowledge of its own.

use std::collections::HashMap;

use serde::Deserialize;

use crate::bundle::{TrustBundle, TrustBundleSet};
use crate::error::CredentialError;
use crate::spiffe_id::TrustDomain;
use crate::store::X509Material;
use crate::svid::X509Svid;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identities {
    #[serde(default)]
    status: Option<String>,
    workload_credentials: HashMap<String, Credential>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credential {
    certificate_pem: String,
    private_key_pem: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Anchors {
    trust_anchors: HashMap<String, Anchor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Anchor {
    trust_anchors_pem: String,
}

impl X509Material {
    /// Material from the bodies of `instance/gce-workload-certificates/workload-identities`
    /// (`{"status":"OK","workloadCredentials":{ID:{"certificatePem","privateKeyPem"}}}`, exactly
    /// one entry, whose key must be the certificate's SPIFFE ID) and `.../trust-anchors`
    /// (`{"trustAnchors":{TD:{"trustAnchorsPem"}}}`).
    pub fn from_metadata_json(
        workload_identities: &[u8],
        trust_anchors: &[u8],
    ) -> Result<Self, CredentialError> {
        let ids: Identities = serde_json::from_slice(workload_identities)
            .map_err(|e| CredentialError::MetadataJson(format!("workload-identities: {e}")))?;
        if let Some(status) = ids.status.as_deref().filter(|s| *s != "OK") {
            return Err(CredentialError::MetadataJson(format!(
                "workload-identities: status is {status:?}"
            )));
        }
        let mut entries = ids.workload_credentials.into_iter();
        let (claimed, credential) = match (entries.next(), entries.next()) {
            (Some(entry), None) => entry,
            (None, _) => {
                return Err(CredentialError::MetadataJson(
                    "workload-identities: no credential".into(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(CredentialError::MetadataJson(
                    "workload-identities: more than one credential".into(),
                ));
            }
        };
        let svid = X509Svid::from_pem(
            credential.certificate_pem.as_bytes(),
            credential.private_key_pem.as_bytes(),
        )?;
        if svid.spiffe_id().as_str() != claimed {
            return Err(CredentialError::IdMismatch {
                claimed,
                certificate: svid.spiffe_id().to_string(),
            });
        }

        let anchors: Anchors = serde_json::from_slice(trust_anchors)
            .map_err(|e| CredentialError::MetadataJson(format!("trust-anchors: {e}")))?;
        let mut bundles = TrustBundleSet::new();
        for (name, anchor) in anchors.trust_anchors {
            let td = TrustDomain::new(&name)
                .map_err(|reason| CredentialError::InvalidTrustDomain { name, reason })?;
            bundles.add(TrustBundle::from_pem(
                td,
                anchor.trust_anchors_pem.as_bytes(),
            )?)?;
        }
        Ok(X509Material::new(svid, bundles).with_origin("metadata server"))
    }
}
