//! Turning the metadata server's `gce-workload-certificates` bodies into [`X509Material`].
//!
//! The bodies are parsed by the metadata crate's parser only ([`WorkloadIdentities::from_json`],
//! [`trust_anchors_from_json`]; also what [`MetadataClient`](workload_auth_metadata::MetadataClient)
//! uses), which refuses duplicate keys, never quotes a value in an error and keeps the private key
//! in a zeroed-on-drop secret. This module only checks and converts what it parsed, so a
//! metadata-backed [`SvidSource`](crate::SvidSource) needs no JSON of its own.

use std::collections::BTreeMap;

use workload_auth_metadata::{WorkloadIdentities, trust_anchors_from_json};

use crate::bundle::{TrustBundle, TrustBundleSet};
use crate::error::CredentialError;
use crate::spiffe_id::TrustDomain;
use crate::store::X509Material;
use crate::svid::X509Svid;

/// Which of the two bodies a conversion error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// `workload-identities`.
    Identities,
    /// `trust-anchors`.
    Anchors,
}

/// Material from parsed `workload-identities` and `trust-anchors` answers: the status, if given,
/// is `OK`; the credential's SPIFFE ID is the certificate's; every trust domain name is valid and
/// there is at least one bundle. Errors say which body they are about.
pub(crate) fn material_from_metadata(
    identities: WorkloadIdentities,
    anchors: BTreeMap<String, String>,
) -> Result<X509Material, (Part, CredentialError)> {
    let at_ids = |e| (Part::Identities, e);
    let at_anchors = |e| (Part::Anchors, e);
    if identities.status.as_deref().is_some_and(|s| s != "OK") {
        // The status is the server's text: named as "not OK" rather than echoed.
        return Err(at_ids(CredentialError::MetadataJson(
            "workload-identities: the status is not \"OK\"".into(),
        )));
    }
    let svid = X509Svid::from_pem(
        identities.certificate_pem.as_bytes(),
        identities.private_key_pem.expose().as_bytes(),
    )
    .map_err(at_ids)?;
    if svid.spiffe_id().as_str() != identities.spiffe_id {
        return Err(at_ids(CredentialError::IdMismatch {
            claimed: identities.spiffe_id,
            certificate: svid.spiffe_id().to_string(),
        }));
    }
    let mut bundles = TrustBundleSet::new();
    for (name, pem) in anchors {
        let td = TrustDomain::new(&name)
            .map_err(|reason| at_anchors(CredentialError::InvalidTrustDomain { name, reason }))?;
        bundles
            .add(TrustBundle::from_pem(td, pem.as_bytes()).map_err(at_anchors)?)
            .map_err(at_anchors)?;
    }
    if bundles.is_empty() {
        return Err(at_anchors(CredentialError::NoTrustBundles));
    }
    Ok(X509Material::new(svid, bundles))
}

impl X509Material {
    /// Material from the bodies of `instance/gce-workload-certificates/workload-identities`
    /// (`{"status":"OK","workloadCredentials":{ID:{"certificatePem","privateKeyPem"}}}`, exactly
    /// one entry, whose key must be the certificate's SPIFFE ID) and `.../trust-anchors`
    /// (`{"trustAnchors":{TD:{"trustAnchorsPem"}}}`, at least one domain), read with the metadata
    /// client's own parser.
    pub fn from_metadata_json(
        workload_identities: &[u8],
        trust_anchors: &[u8],
    ) -> Result<Self, CredentialError> {
        // The parser's messages name the field and the problem, never a value.
        let ids = WorkloadIdentities::from_json(workload_identities).map_err(|e| {
            CredentialError::MetadataJson(format!("workload-identities: {}", e.message()))
        })?;
        let anchors = trust_anchors_from_json(trust_anchors).map_err(|e| {
            CredentialError::MetadataJson(format!("trust-anchors: {}", e.message()))
        })?;
        let material = material_from_metadata(ids, anchors).map_err(|(_, e)| e)?;
        Ok(material.with_origin("metadata server"))
    }
}
