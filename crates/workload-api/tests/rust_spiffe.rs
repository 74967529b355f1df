//! Proof with a client nobody here wrote: rust-spiffe's `spiffe` crate (`WorkloadApiClient`,
//! `X509Source`) against our agent, before and after the node agent's directory rotates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use spiffe::{TrustDomain, WorkloadApiClient, X509Source};
use workload_auth_emulator::ca::KeyFormat;
use workload_auth_mtls::X509Svid;

fn address(agent: &Agent) -> String {
    format!("unix://{}", agent.path.display())
}

/// The key rust-spiffe received belongs to the certificate it received.
fn key_matches(svid: &spiffe::X509Svid) {
    let chain = svid
        .cert_chain()
        .iter()
        .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        svid.private_key().as_bytes().to_vec(),
    ));
    X509Svid::from_der(chain, key).expect("the key matches the leaf");
}

#[tokio::test]
async fn rust_spiffe_client_fetches_the_svid_and_bundles_from_our_agent() {
    let world = World::new();
    // A SEC1 key in the directory: rust-spiffe parses the PKCS#8 the agent makes of it.
    let issued = world
        .local
        .svid(ID)
        .key_format(KeyFormat::Sec1)
        .issue()
        .unwrap();
    world.write(&issued);
    let agent = Agent::start(world.builder()).await;

    let client = WorkloadApiClient::connect_to(address(&agent))
        .await
        .unwrap();
    let svid = client.fetch_x509_svid().await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), ID);
    assert_eq!(svid.leaf().as_bytes(), issued.leaf_der());
    assert_eq!(svid.cert_chain().len(), 2);
    key_matches(&svid);

    let bundles = client.fetch_x509_bundles().await.unwrap();
    let local = bundles
        .get(&TrustDomain::new("example.org").unwrap())
        .expect("local bundle");
    assert_eq!(local.authorities().len(), 1);
    assert_eq!(local.authorities()[0].as_bytes(), world.local.root_der());
    let partner = bundles
        .get(&TrustDomain::new("partner.example").unwrap())
        .expect("federated bundle");
    assert_eq!(
        partner.authorities()[0].as_bytes(),
        world.federated.root_der()
    );

    let context = client.fetch_x509_context().await.unwrap();
    assert_eq!(context.bundle_set().len(), 2);
}

#[tokio::test]
async fn rust_spiffe_x509_source_follows_a_symlink_swap_rotation() {
    let world = World::new();
    let first = world.rotate();
    let agent = Agent::start(world.builder()).await;

    let source = X509Source::builder()
        .endpoint(address(&agent))
        .build()
        .await
        .unwrap();
    let svid = source.svid().unwrap();
    assert_eq!(svid.leaf().as_bytes(), first.leaf_der());
    key_matches(&svid);
    let mut updates = source.updated();

    let second = world.rotate();
    tokio::time::timeout(Duration::from_secs(10), updates.changed())
        .await
        .expect("rust-spiffe sees the rotation")
        .unwrap();
    let svid = source.svid().unwrap();
    assert_eq!(svid.leaf().as_bytes(), second.leaf_der());
    assert_ne!(first.leaf_der(), second.leaf_der());
    key_matches(&svid);
    let bundle = source
        .try_bundle_for_trust_domain(&TrustDomain::new("partner.example").unwrap())
        .expect("federated bundle");
    assert_eq!(
        bundle.authorities()[0].as_bytes(),
        world.federated.root_der()
    );
    source.shutdown().await;
}
