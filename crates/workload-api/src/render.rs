//! X.509 material as Workload API messages.

use std::collections::HashMap;

use prost::bytes::Bytes;
use workload_auth_core::{Error, ErrorKind, Result};
use workload_auth_mtls::{TrustBundle, X509Material};

use crate::proto::{X509BundlesResponse, X509svid, X509svidResponse};

/// The messages of one state, built once and shared by every stream.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Rendered {
    pub(crate) svid: X509svidResponse,
    pub(crate) bundles: X509BundlesResponse,
}

fn concat(bundle: &TrustBundle) -> Bytes {
    let mut out = Vec::new();
    for root in bundle.roots() {
        out.extend_from_slice(root.as_ref());
    }
    Bytes::from(out)
}

/// Builds both messages from `material`: `svids[0]` is the SVID with `hint`; `bundle` holds the
/// CAs of the SVID's own trust domain; `federated_bundles` every other trust domain, keyed by
/// `spiffe://TD`; the bundles message every trust domain.
pub(crate) fn render(material: &X509Material, hint: &str) -> Result<Rendered> {
    let svid = material.svid();
    let local = svid.spiffe_id().trust_domain();
    let own_bundle = material.bundles().for_domain(&local).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidCredentials,
            format!(
                "the trust bundles hold no CA for the SVID's own trust domain {}",
                local.name()
            ),
        )
        .with_endpoint(material.origin().to_owned())
    })?;

    let mut chain = Vec::new();
    for cert in svid.chain() {
        chain.extend_from_slice(cert.as_ref());
    }
    let (_, leaf) = x509_parser::parse_x509_certificate(svid.leaf().as_ref()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidCredentials,
            "the SVID's leaf certificate cannot be parsed",
        )
    })?;
    // A Workload API response carries the key; there is none to hand out when the platform
    // keeps it hidden.
    let private_key = svid.try_private_key().ok_or_else(|| {
        workload_auth_mtls::CredentialError::PrivateKeyHidden.at(material.origin().to_owned())
    })?;
    let key = crate::der::pkcs8_key(private_key, leaf.public_key().raw)?;

    let mut federated = HashMap::new();
    let mut all = HashMap::new();
    for td in material.bundles().trust_domains() {
        let Some(bundle) = material.bundles().for_domain(td) else {
            continue;
        };
        let der = concat(bundle);
        if *td != local {
            federated.insert(td.id_string(), der.clone());
        }
        all.insert(td.id_string(), der);
    }

    Ok(Rendered {
        svid: X509svidResponse {
            svids: vec![X509svid {
                spiffe_id: svid.spiffe_id().as_str().to_owned(),
                x509_svid: Bytes::from(chain),
                x509_svid_key: Bytes::from(key),
                bundle: concat(own_bundle),
                hint: hint.to_owned(),
            }],
            crl: Vec::new(),
            federated_bundles: federated,
        },
        bundles: X509BundlesResponse {
            crl: Vec::new(),
            bundles: all,
        },
    })
}
