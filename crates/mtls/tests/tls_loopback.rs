//! Real mutual TLS over 127.0.0.1 between two endpoints of this crate, with emulator-issued SVIDs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_mtls::*;

const SERVER: &str = "spiffe://prod.example/ns/backend/sa/api";
const CLIENT: &str = "spiffe://prod.example/ns/frontend/sa/web";

#[tokio::test]
async fn authorized_peers_talk_and_learn_each_others_id() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let server = MtlsConfig::new(
        store(&ca.issue(SERVER).unwrap(), &[&ca]),
        Authorizer::exact(id(CLIENT)),
    );
    let client = MtlsConfig::new(
        store(&ca.issue(CLIENT).unwrap(), &[&ca]),
        Authorizer::exact(id(SERVER)),
    );
    let (addr, mut verdicts) = echo_server(&server, 1).await;
    let (mut stream, server_id) = MtlsConnector::from_config(&client)
        .unwrap()
        .connect(addr)
        .await
        .unwrap();
    assert_eq!(server_id, id(SERVER));
    stream.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    assert_eq!(verdicts.recv().await.unwrap().unwrap(), id(CLIENT));
    let (_, conn) = stream.get_ref();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[tokio::test]
async fn server_refuses_a_client_its_policy_does_not_allow() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let server = MtlsConfig::new(
        store(&ca.issue(SERVER).unwrap(), &[&ca]),
        Authorizer::path_prefix(id("spiffe://prod.example/ns/frontend")),
    );
    let intruder = MtlsConfig::new(
        store(
            &ca.issue("spiffe://prod.example/ns/frontendx/sa/web")
                .unwrap(),
            &[&ca],
        ),
        Authorizer::any(),
    );
    let (addr, mut verdicts) = echo_server(&server, 1).await;
    let connector = MtlsConnector::from_config(&intruder).unwrap();
    // TLS 1.3: the client finishes first; the refusal arrives on its first read.
    if let Ok((mut stream, _)) = connector.connect(addr).await {
        let _ = stream.write_all(b"x").await;
        let mut buf = [0u8; 1];
        let read = stream.read(&mut buf).await;
        assert!(matches!(read, Err(_) | Ok(0)), "{read:?}");
    }
    let err = verdicts.recv().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), workload_auth_core::ErrorKind::Verification);
    match reason(&err) {
        VerificationError::Unauthorized { id: who, policy } => {
            assert_eq!(who, id("spiffe://prod.example/ns/frontendx/sa/web"));
            assert_eq!(policy, "prefix:spiffe://prod.example/ns/frontend");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn client_refuses_a_server_its_policy_does_not_allow() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let server = MtlsConfig::new(
        store(
            &ca.issue("spiffe://prod.example/ns/evil/sa/api").unwrap(),
            &[&ca],
        ),
        Authorizer::any(),
    );
    let client = MtlsConfig::new(
        store(&ca.issue(CLIENT).unwrap(), &[&ca]),
        Authorizer::exact(id(SERVER)),
    );
    let (addr, _verdicts) = echo_server(&server, 1).await;
    let err = MtlsConnector::from_config(&client)
        .unwrap()
        .connect(addr)
        .await
        .unwrap_err();
    assert!(
        matches!(reason(&err), VerificationError::Unauthorized { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn peer_from_a_trust_domain_without_a_bundle_is_refused() {
    let ours = TrustDomainCa::new("prod.example").unwrap();
    let theirs = TrustDomainCa::new("other.example").unwrap();
    let server = MtlsConfig::new(
        store(&ours.issue(SERVER).unwrap(), &[&ours]),
        Authorizer::any(),
    );
    let svid = theirs.issue("spiffe://other.example/ns/a/sa/b").unwrap();
    let client = raw_client_config(chain_of(&svid), key_of(&svid), bundles(&[&ours]));
    let err = server_verdict(&server, client).await.unwrap_err();
    assert_eq!(
        reason(&err),
        VerificationError::UnknownTrustDomain("other.example".into())
    );
}

#[tokio::test]
async fn federation_verifies_each_peer_against_its_own_domain() {
    let a = TrustDomainCa::new("a.example").unwrap();
    let b = TrustDomainCa::new("b.example").unwrap();
    let server = MtlsConfig::new(
        store(
            &a.issue("spiffe://a.example/ns/x/sa/server").unwrap(),
            &[&a, &b],
        ),
        Authorizer::member_of_any([td("a.example"), td("b.example")]),
    );
    let client_b = MtlsConfig::new(
        store(
            &b.issue("spiffe://b.example/ns/y/sa/client").unwrap(),
            &[&b, &a],
        ),
        Authorizer::member_of(td("a.example")),
    );
    let (addr, mut verdicts) = echo_server(&server, 2).await;
    let (_stream, server_id) = MtlsConnector::from_config(&client_b)
        .unwrap()
        .connect(addr)
        .await
        .unwrap();
    assert_eq!(server_id, id("spiffe://a.example/ns/x/sa/server"));
    assert_eq!(
        verdicts.recv().await.unwrap().unwrap(),
        id("spiffe://b.example/ns/y/sa/client")
    );

    // A leaf that claims domain b but was signed by domain a's CA: the bundles are not pooled,
    // so a's root cannot vouch for a b identity.
    let forged = a.issue("spiffe://b.example/ns/y/sa/client").unwrap();
    let attacker = raw_client_config(chain_of(&forged), key_of(&forged), bundles(&[&a]));
    let (addr2, mut verdicts2) = echo_server(&server, 1).await;
    let connector = MtlsConnector::new(Arc::new(attacker));
    if let Ok((mut s, _)) = connector.connect(addr2).await {
        let _ = s.write_all(b"x").await;
        let _ = s.read(&mut [0u8; 1]).await;
    }
    let err = verdicts2.recv().await.unwrap().unwrap_err();
    assert_eq!(
        reason(&err),
        VerificationError::UntrustedChain("b.example".into())
    );
}

#[tokio::test]
async fn tls12_only_when_asked() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let server_store = store(&ca.issue(SERVER).unwrap(), &[&ca]);
    let client_store = store(&ca.issue(CLIENT).unwrap(), &[&ca]);
    let server = MtlsConfig::new(server_store.clone(), Authorizer::any())
        .with_versions(TlsVersions::Tls12AndTls13);
    // A client that speaks only TLS 1.2 gets in only when the server allows it.
    let client12 = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(SpiffeServerCertVerifier::new(
        SpiffeVerifier::new(client_store.clone(), Authorizer::any()),
    )))
    .with_client_cert_resolver(Arc::new(SvidResolver::new(client_store.clone())));
    let id12 = server_verdict(&server, client12.clone()).await.unwrap();
    assert_eq!(id12, id(CLIENT));

    let server13 = MtlsConfig::new(server_store, Authorizer::any());
    let err = server_verdict(&server13, client12).await.unwrap_err();
    assert!(VerificationError::find(&err).is_none(), "{err}");
}

#[tokio::test]
async fn every_connection_is_a_full_handshake() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let server = MtlsConfig::new(store(&ca.issue(SERVER).unwrap(), &[&ca]), Authorizer::any());
    let client = MtlsConfig::new(store(&ca.issue(CLIENT).unwrap(), &[&ca]), Authorizer::any());
    let (addr, mut verdicts) = echo_server(&server, 3).await;
    let connector = MtlsConnector::from_config(&client).unwrap();
    for _ in 0..3 {
        let (mut stream, _) = connector.connect(addr).await.unwrap();
        stream.write_all(b"a").await.unwrap();
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).await.unwrap();
        assert_eq!(
            stream.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Full)
        );
        verdicts.recv().await.unwrap().unwrap();
    }
}

/// The configs work with rustls connections driven by hand over an in-memory transport (the way
/// a benchmark drives them), and the verifier can be called alone.
#[test]
fn in_memory_handshake_and_verifier_alone() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let server = MtlsConfig::new(store(&ca.issue(SERVER).unwrap(), &[&ca]), Authorizer::any());
    let client_svid = ca.issue(CLIENT).unwrap();
    let client = MtlsConfig::new(store(&client_svid, &[&ca]), Authorizer::exact(id(SERVER)));
    let mut c = rustls::ClientConnection::new(
        Arc::new(client.client_config().unwrap()),
        "127.0.0.1".try_into().unwrap(),
    )
    .unwrap();
    let mut s = rustls::ServerConnection::new(Arc::new(server.server_config().unwrap())).unwrap();
    let mut buf = Vec::new();
    for _ in 0..10 {
        if !c.is_handshaking() && !s.is_handshaking() {
            break;
        }
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        s.process_new_packets().unwrap();
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets().unwrap();
    }
    assert!(!c.is_handshaking() && !s.is_handshaking());
    assert_eq!(peer_spiffe_id(&s), Some(id(CLIENT)));
    assert_eq!(peer_spiffe_id(&c), Some(id(SERVER)));

    let verifier = server.verifier();
    let now = rustls::pki_types::UnixTime::now();
    assert_eq!(
        verifier
            .verify(&chain_of(&client_svid), Purpose::ClientAuth, now)
            .unwrap(),
        id(CLIENT)
    );
}
