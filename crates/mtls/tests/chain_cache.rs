//! The verified-chain cache: repeat handshakes hit it, and a hit never lets through what a full
//! verification would refuse (policy change, bundle change, expiry, any other chain).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use common::*;
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workload_auth_emulator::ca::{CaOptions, Eku, TrustDomainCa};
use workload_auth_mtls::*;

const SERVER: &str = "spiffe://prod.example/ns/backend/sa/api";
const CLIENT: &str = "spiffe://prod.example/ns/frontend/sa/web";

fn at(t: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(t.duration_since(SystemTime::UNIX_EPOCH).unwrap())
}

fn now() -> UnixTime {
    UnixTime::now()
}

fn hits(cache: &VerifiedChainCache) -> u64 {
    cache.stats().hits
}

#[tokio::test]
async fn repeat_handshakes_over_loopback_hit_the_cache_on_both_sides() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let server_cache = VerifiedChainCache::new(64);
    let client_cache = VerifiedChainCache::new(64);
    let server = MtlsConfig::new(
        store(&ca.issue(SERVER).unwrap(), &[&ca]),
        Authorizer::exact(id(CLIENT)),
    )
    .with_chain_cache(server_cache.clone());
    let client = MtlsConfig::new(
        store(&ca.issue(CLIENT).unwrap(), &[&ca]),
        Authorizer::exact(id(SERVER)),
    )
    .with_chain_cache(client_cache.clone());
    let (addr, mut verdicts) = echo_server(&server, 3).await;
    let connector = MtlsConnector::from_config(&client).unwrap();
    for round in 0..3u64 {
        let (mut stream, server_id) = connector.connect(addr).await.unwrap();
        assert_eq!(server_id, id(SERVER));
        stream.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(verdicts.recv().await.unwrap().unwrap(), id(CLIENT));
        // The first handshake verifies in full; the later ones are answered by the cache.
        assert_eq!(hits(&client_cache), round, "client side, round {round}");
        assert_eq!(hits(&server_cache), round, "server side, round {round}");
    }
    assert_eq!(client_cache.len(), 1);
    assert_eq!(server_cache.len(), 1);
}

#[test]
fn a_hit_is_refused_by_a_changed_policy() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let peer = ca.issue(CLIENT).unwrap();
    let chain = chain_of(&peer);
    let cache = VerifiedChainCache::new(16);

    // A policy that changes its mind, e.g. a deny list updated at run time.
    let denied = Arc::new(AtomicBool::new(false));
    let flag = denied.clone();
    let dynamic = Authorizer::predicate("not on the deny list", move |_| {
        !flag.load(Ordering::SeqCst)
    });
    let own = store(&ca.issue(SERVER).unwrap(), &[&ca]);
    let verifier = SpiffeVerifier::new(own.clone(), dynamic).with_cache(cache.clone());
    assert_eq!(
        verifier.verify(&chain, Purpose::ClientAuth, now()).unwrap(),
        id(CLIENT)
    );
    verifier.confirm_key_possession(&chain[0]);
    assert!(verifier.verify(&chain, Purpose::ClientAuth, now()).is_ok());
    assert_eq!(hits(&cache), 1);
    denied.store(true, Ordering::SeqCst);
    let err = verifier
        .verify(&chain, Purpose::ClientAuth, now())
        .unwrap_err();
    assert!(
        matches!(&err, VerificationError::Unauthorized { id: who, .. } if *who == id(CLIENT)),
        "{err}"
    );
    assert_eq!(hits(&cache), 2, "the refusal came from a cache hit");

    // A verifier with another policy sharing the cache refuses the cached peer too.
    let other = SpiffeVerifier::new(
        own,
        Authorizer::exact(id("spiffe://prod.example/ns/frontend/sa/other")),
    )
    .with_cache(cache.clone());
    let err = other
        .verify(&chain, Purpose::ClientAuth, now())
        .unwrap_err();
    assert!(
        matches!(err, VerificationError::Unauthorized { .. }),
        "{err}"
    );
    assert_eq!(hits(&cache), 3);
}

#[test]
fn a_hit_is_refused_once_the_bundles_change() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let rotated_ca = TrustDomainCa::new("prod.example").unwrap();
    let peer = ca.issue(CLIENT).unwrap();
    let chain = chain_of(&peer);
    let own = ca.issue(SERVER).unwrap();
    let store = store(&own, &[&ca]);
    let cache = VerifiedChainCache::new(16);
    let verifier = SpiffeVerifier::new(store.clone(), Authorizer::any()).with_cache(cache.clone());

    verifier.verify(&chain, Purpose::ClientAuth, now()).unwrap();
    verifier.confirm_key_possession(&chain[0]);
    verifier.verify(&chain, Purpose::ClientAuth, now()).unwrap();
    assert_eq!(hits(&cache), 1);

    // The trust domain's root is replaced: the cached chain no longer leads to a trusted root.
    store.replace(material(&own, &[&rotated_ca]));
    let err = verifier
        .verify(&chain, Purpose::ClientAuth, now())
        .unwrap_err();
    assert_eq!(
        err,
        VerificationError::UntrustedChain("prod.example".into()),
        "{err}"
    );
    assert_eq!(hits(&cache), 1, "a stale entry is never a hit");

    // The bundle of the peer's domain is gone altogether.
    let other_ca = TrustDomainCa::new("other.example").unwrap();
    store.replace(material(&own, &[&other_ca]));
    assert_eq!(
        verifier
            .verify(&chain, Purpose::ClientAuth, now())
            .unwrap_err(),
        VerificationError::UnknownTrustDomain("prod.example".into())
    );

    // Back to the old root: verified afresh (a miss), then cached again.
    store.replace(material(&own, &[&ca]));
    verifier.verify(&chain, Purpose::ClientAuth, now()).unwrap();
    verifier.confirm_key_possession(&chain[0]);
    assert_eq!(hits(&cache), 1);
    verifier.verify(&chain, Purpose::ClientAuth, now()).unwrap();
    assert_eq!(hits(&cache), 2);

    // Fixed bundles: a set that was changed after the chain was cached is a new generation.
    let mut set = bundles(&[&ca]);
    let fixed =
        SpiffeVerifier::with_bundles(set.clone(), Authorizer::any()).with_cache(cache.clone());
    fixed.verify(&chain, Purpose::ClientAuth, now()).unwrap();
    let before = set.generation();
    set.add(bundle(&other_ca)).unwrap();
    assert_ne!(set.generation(), before);
}

#[test]
fn a_hit_is_refused_outside_the_validity_of_any_certificate_of_the_chain() {
    let hour = Duration::from_secs(3600);
    let t0 = SystemTime::now();
    // The intermediate expires in two hours, the leaf in a day.
    let ca = TrustDomainCa::with_options(
        "prod.example",
        CaOptions {
            intermediate_validity: (t0 - hour, t0 + 2 * hour),
            ..CaOptions::default()
        },
    )
    .unwrap();
    let peer = ca.issue(CLIENT).unwrap();
    let chain = chain_of(&peer);
    let cache = VerifiedChainCache::new(16);
    let verifier =
        SpiffeVerifier::with_bundles(bundles(&[&ca]), Authorizer::any()).with_cache(cache.clone());

    verifier
        .verify(&chain, Purpose::ClientAuth, at(t0))
        .unwrap();
    verifier.confirm_key_possession(&chain[0]);
    verifier
        .verify(&chain, Purpose::ClientAuth, at(t0 + hour))
        .unwrap();
    assert_eq!(hits(&cache), 1);

    let err = verifier
        .verify(&chain, Purpose::ClientAuth, at(t0 + 3 * hour))
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerificationError::Expired {
                position: ChainPosition::Intermediate,
                ..
            }
        ),
        "{err}"
    );
    let err = verifier
        .verify(&chain, Purpose::ClientAuth, at(peer.not_after() + hour))
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerificationError::Expired {
                position: ChainPosition::Leaf,
                ..
            }
        ),
        "{err}"
    );
    let err = verifier
        .verify(&chain, Purpose::ClientAuth, at(peer.not_before() - hour))
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerificationError::NotYetValid {
                position: ChainPosition::Leaf,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(hits(&cache), 1, "no hit outside the window");
    // Still good inside it.
    verifier
        .verify(&chain, Purpose::ClientAuth, at(t0))
        .unwrap();
    assert_eq!(hits(&cache), 2);
}

#[test]
fn the_cache_never_lets_a_different_chain_through() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    // A CA with the same trust domain name that the bundle does not hold.
    let rogue = TrustDomainCa::new("prod.example").unwrap();
    let peer = ca.issue(CLIENT).unwrap();
    let chain = chain_of(&peer);
    let cache = VerifiedChainCache::new(16);
    let verifier =
        SpiffeVerifier::with_bundles(bundles(&[&ca]), Authorizer::any()).with_cache(cache.clone());
    verifier.verify(&chain, Purpose::ClientAuth, now()).unwrap();
    verifier.confirm_key_possession(&chain[0]);
    verifier.verify(&chain, Purpose::ClientAuth, now()).unwrap();
    assert_eq!(hits(&cache), 1);

    // The same leaf with one byte of its signature changed.
    let mut tampered = chain.clone();
    let mut leaf = tampered[0].to_vec();
    let last = leaf.len() - 1;
    leaf[last] ^= 0x01;
    tampered[0] = CertificateDer::from(leaf);
    assert!(
        verifier
            .verify(&tampered, Purpose::ClientAuth, now())
            .is_err()
    );

    // The same SPIFFE ID from a CA the bundle does not hold.
    let forged = chain_of(&rogue.issue(CLIENT).unwrap());
    assert_eq!(
        verifier
            .verify(&forged, Purpose::ClientAuth, now())
            .unwrap_err(),
        VerificationError::UntrustedChain("prod.example".into())
    );
    // The cached leaf with the rogue intermediate instead of its own.
    let swapped = vec![chain[0].clone(), forged[1].clone()];
    assert_eq!(
        verifier
            .verify(&swapped, Purpose::ClientAuth, now())
            .unwrap_err(),
        VerificationError::UntrustedChain("prod.example".into())
    );
    // The cached leaf without its intermediate.
    assert_eq!(
        verifier
            .verify(&chain[..1], Purpose::ClientAuth, now())
            .unwrap_err(),
        VerificationError::UntrustedChain("prod.example".into())
    );
    assert_eq!(hits(&cache), 1, "none of these was a hit");

    // The cached chain with an extra certificate appended is verified afresh, not a hit.
    let mut longer = chain.clone();
    longer.push(CertificateDer::from(ca.intermediate_der().to_vec()));
    verifier
        .verify(&longer, Purpose::ClientAuth, now())
        .unwrap();
    assert_eq!(hits(&cache), 1);

    // A chain cached for one purpose is no hit for the other.
    let server_only = chain_of(
        &ca.svid(SERVER)
            .extended_key_usages(&[Eku::ServerAuth])
            .issue()
            .unwrap(),
    );
    verifier
        .verify(&server_only, Purpose::ServerAuth, now())
        .unwrap();
    verifier.confirm_key_possession(&server_only[0]);
    assert_eq!(
        verifier
            .verify(&server_only, Purpose::ClientAuth, now())
            .unwrap_err(),
        VerificationError::WrongExtendedKeyUsage {
            position: ChainPosition::Leaf,
            needed: "clientAuth"
        }
    );
    assert_eq!(hits(&cache), 1);
}

#[tokio::test]
async fn a_cached_chain_without_its_key_cannot_complete_a_handshake() {
    // An attacker who saw a peer's certificate chain presents it with a key of its own: the chain
    // is in the server's cache, but the CertificateVerify signature does not match its leaf.
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let cache = VerifiedChainCache::new(16);
    let server = MtlsConfig::new(
        store(&ca.issue(SERVER).unwrap(), &[&ca]),
        Authorizer::exact(id(CLIENT)),
    )
    .with_chain_cache(cache.clone());
    let victim = ca.issue(CLIENT).unwrap();
    let honest = raw_client_config(chain_of(&victim), key_of(&victim), bundles(&[&ca]));
    assert_eq!(server_verdict(&server, honest).await.unwrap(), id(CLIENT));
    assert_eq!(cache.len(), 1);

    let attacker_key = key_of(&ca.issue("spiffe://prod.example/ns/x/sa/attacker").unwrap());
    let forged = raw_client_config_unchecked(chain_of(&victim), attacker_key, bundles(&[&ca]));
    let err = server_verdict(&server, forged).await.unwrap_err();
    assert_eq!(
        cache.stats().hits,
        1,
        "the chain was a hit; the signature still failed"
    );
    assert!(
        err.to_string().to_lowercase().contains("signature"),
        "{err}"
    );
}

#[tokio::test]
async fn finding_6_a_peer_without_the_key_leaves_no_entry() {
    // A peer that replays a chain it saw (valid, trusted, allowed) but signs with another key
    // fails CertificateVerify; its chain must not enter the cache.
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let cache = VerifiedChainCache::new(16);
    let server = MtlsConfig::new(
        store(&ca.issue(SERVER).unwrap(), &[&ca]),
        Authorizer::exact(id(CLIENT)),
    )
    .with_chain_cache(cache.clone());
    let victim = ca.issue(CLIENT).unwrap();
    let attacker_key = key_of(&ca.issue("spiffe://prod.example/ns/x/sa/attacker").unwrap());
    for _ in 0..3 {
        let forged = raw_client_config_unchecked(
            chain_of(&victim),
            attacker_key.clone_key(),
            bundles(&[&ca]),
        );
        let err = server_verdict(&server, forged).await.unwrap_err();
        assert!(
            err.to_string().to_lowercase().contains("signature"),
            "{err}"
        );
        assert_eq!(cache.len(), 0, "a keyless peer made an entry");
        assert_eq!(cache.stats().hits, 0);
    }
    // The real holder of the chain: verified in full (no hit), then cached.
    let honest = raw_client_config(chain_of(&victim), key_of(&victim), bundles(&[&ca]));
    assert_eq!(server_verdict(&server, honest).await.unwrap(), id(CLIENT));
    assert_eq!(cache.stats().hits, 0);
    assert_eq!(cache.len(), 1);
    assert_eq!(
        cache.stats().staged,
        0,
        "the keyless attempts' staging was consumed"
    );
}

#[tokio::test]
async fn finding_6_a_refused_peer_leaves_no_entry() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let cache = VerifiedChainCache::new(16);
    let server = MtlsConfig::new(
        store(&ca.issue(SERVER).unwrap(), &[&ca]),
        Authorizer::exact(id(CLIENT)),
    )
    .with_chain_cache(cache.clone());
    let other = ca
        .issue("spiffe://prod.example/ns/frontend/sa/other")
        .unwrap();
    for _ in 0..2 {
        let client = raw_client_config(chain_of(&other), key_of(&other), bundles(&[&ca]));
        let err = server_verdict(&server, client).await.unwrap_err();
        assert!(
            matches!(reason(&err), VerificationError::Unauthorized { .. }),
            "{err}"
        );
        let stats = cache.stats();
        assert_eq!(
            (stats.entries, stats.staged, stats.hits),
            (0, 0, 0),
            "{stats:?}"
        );
    }
    // And a standalone verification (nothing proves the key) stages but caches nothing.
    let verifier = server.verifier();
    let chain = chain_of(&ca.issue(CLIENT).unwrap());
    verifier.verify(&chain, Purpose::ClientAuth, now()).unwrap();
    verifier.verify(&chain, Purpose::ClientAuth, now()).unwrap();
    assert_eq!(cache.stats().hits, 0);
    assert!(cache.is_empty());
}

/// Like `raw_client_config`, but without rustls' check that the key matches the certificate.
fn raw_client_config_unchecked(
    chain: Vec<CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
    server_trust: TrustBundleSet,
) -> rustls::ClientConfig {
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
    let certified = Arc::new(rustls::sign::CertifiedKey::new(chain, signer));
    let verifier = SpiffeServerCertVerifier::new(SpiffeVerifier::with_bundles(
        server_trust,
        Authorizer::any(),
    ));
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(Fixed(certified)))
}

#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Fixed {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
