//! "Bad input and attacks" of issue 4: each case over a real loopback handshake where that is
//! possible (an attacker's client presents the bad chain to our server), each asserting the typed
//! reason our side gives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use rustls_pki_types::UnixTime;
use workload_auth_emulator::ca::{CaOptions, Eku, IssuedSvid, KeyUsage, TrustDomainCa};
use workload_auth_mtls::*;

const SERVER: &str = "spiffe://prod.example/ns/backend/sa/api";
const CLIENT: &str = "spiffe://prod.example/ns/frontend/sa/web";

struct World {
    ca: TrustDomainCa,
    server: MtlsConfig,
}

fn world() -> World {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let server = MtlsConfig::new(store(&ca.issue(SERVER).unwrap(), &[&ca]), Authorizer::any());
    World { ca, server }
}

/// Presents `svid` (chain and key) to a server trusting `w.ca`; returns the server's reason.
async fn refused(w: &World, svid: &IssuedSvid) -> VerificationError {
    let client = raw_client_config(chain_of(svid), key_of(svid), bundles(&[&w.ca]));
    let err = server_verdict(&w.server, client).await.unwrap_err();
    assert_eq!(
        err.kind(),
        workload_auth_core::ErrorKind::Verification,
        "{err}"
    );
    reason(&err)
}

#[tokio::test]
async fn wrong_trust_domain() {
    let w = world();
    let other = TrustDomainCa::new("other.example").unwrap();
    let svid = other.issue("spiffe://other.example/ns/a/sa/b").unwrap();
    assert_eq!(
        refused(&w, &svid).await,
        VerificationError::UnknownTrustDomain("other.example".into())
    );
}

#[tokio::test]
async fn right_trust_domain_but_chain_to_another_root() {
    let w = world();
    // Same trust domain name, different CA keys: the chain leads to a root we do not trust.
    let impostor = TrustDomainCa::new("prod.example").unwrap();
    let svid = impostor.issue(CLIENT).unwrap();
    assert_eq!(
        refused(&w, &svid).await,
        VerificationError::UntrustedChain("prod.example".into())
    );
}

#[tokio::test]
async fn two_uri_sans() {
    let w = world();
    let svid =
        w.ca.svid(CLIENT)
            .extra_uri("spiffe://prod.example/ns/admin/sa/root")
            .issue()
            .unwrap();
    assert_eq!(
        refused(&w, &svid).await,
        VerificationError::MultipleUriSans(2)
    );
}

#[tokio::test]
async fn no_san_at_all() {
    let w = world();
    let svid = w.ca.svid(CLIENT).uris(&[]).issue().unwrap();
    assert_eq!(refused(&w, &svid).await, VerificationError::NoUriSan);
}

#[tokio::test]
async fn dns_only_san() {
    let w = world();
    let svid =
        w.ca.svid(CLIENT)
            .uris(&[])
            .dns_name("web.prod.example")
            .issue()
            .unwrap();
    assert_eq!(refused(&w, &svid).await, VerificationError::NoUriSan);
}

#[tokio::test]
async fn non_spiffe_uri() {
    let w = world();
    let svid =
        w.ca.svid(CLIENT)
            .uris(&["https://prod.example/ns/frontend/sa/web"])
            .issue()
            .unwrap();
    assert_eq!(
        refused(&w, &svid).await,
        VerificationError::NotSpiffeUri {
            uri: "https://prod.example/ns/frontend/sa/web".into()
        }
    );
}

#[tokio::test]
async fn invalid_spiffe_id_and_empty_path() {
    let w = world();
    let svid =
        w.ca.svid(CLIENT)
            .uris(&["spiffe://prod.example/ns/../sa/web"])
            .issue()
            .unwrap();
    assert!(matches!(
        refused(&w, &svid).await,
        VerificationError::InvalidSpiffeId {
            reason: SpiffeIdError::DotSegment,
            ..
        }
    ));
    let svid = w.ca.svid("spiffe://prod.example").issue().unwrap();
    assert_eq!(
        refused(&w, &svid).await,
        VerificationError::EmptyPath(id("spiffe://prod.example"))
    );
}

#[tokio::test]
async fn ca_leaf() {
    let w = world();
    let svid = w.ca.svid(CLIENT).ca().issue().unwrap();
    assert_eq!(refused(&w, &svid).await, VerificationError::LeafIsCa);
}

#[tokio::test]
async fn leaf_key_usage_rules() {
    let w = world();
    let svid =
        w.ca.svid(CLIENT)
            .key_usages(&[KeyUsage::DigitalSignature, KeyUsage::KeyCertSign])
            .issue()
            .unwrap();
    assert_eq!(
        refused(&w, &svid).await,
        VerificationError::ForbiddenKeyUsage("keyCertSign")
    );
    let svid =
        w.ca.svid(CLIENT)
            .key_usages(&[KeyUsage::DigitalSignature, KeyUsage::CrlSign])
            .issue()
            .unwrap();
    assert_eq!(
        refused(&w, &svid).await,
        VerificationError::ForbiddenKeyUsage("cRLSign")
    );
    let svid =
        w.ca.svid(CLIENT)
            .key_usages(&[KeyUsage::KeyEncipherment])
            .issue()
            .unwrap();
    assert_eq!(
        refused(&w, &svid).await,
        VerificationError::MissingDigitalSignature
    );
}

#[tokio::test]
async fn expired_leaf() {
    let w = world();
    let svid = w.ca.svid(CLIENT).expired().issue().unwrap();
    assert!(matches!(
        refused(&w, &svid).await,
        VerificationError::Expired {
            position: ChainPosition::Leaf,
            ..
        }
    ));
}

#[tokio::test]
async fn not_yet_valid_leaf() {
    let w = world();
    let svid = w.ca.svid(CLIENT).not_yet_valid().issue().unwrap();
    assert!(matches!(
        refused(&w, &svid).await,
        VerificationError::NotYetValid {
            position: ChainPosition::Leaf,
            ..
        }
    ));
}

#[tokio::test]
async fn expired_and_not_yet_valid_intermediate() {
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    for (validity, expired) in [
        ((now - 3 * day, now - day), true),
        ((now + day, now + 3 * day), false),
    ] {
        let ca = TrustDomainCa::with_options(
            "prod.example",
            CaOptions {
                intermediate_validity: validity,
                ..CaOptions::default()
            },
        )
        .unwrap();
        // The server's own SVID comes from a healthy CA of another domain; it trusts both.
        let srv_ca = TrustDomainCa::new("srv.example").unwrap();
        let server = MtlsConfig::new(
            store(
                &srv_ca.issue("spiffe://srv.example/s").unwrap(),
                &[&ca, &srv_ca],
            ),
            Authorizer::any(),
        );
        let svid = ca.issue(CLIENT).unwrap();
        let client = raw_client_config(chain_of(&svid), key_of(&svid), bundles(&[&srv_ca]));
        let err = server_verdict(&server, client).await.unwrap_err();
        let got = reason(&err);
        if expired {
            assert!(
                matches!(
                    got,
                    VerificationError::Expired {
                        position: ChainPosition::Intermediate,
                        ..
                    }
                ),
                "{got:?}"
            );
        } else {
            assert!(
                matches!(
                    got,
                    VerificationError::NotYetValid {
                        position: ChainPosition::Intermediate,
                        ..
                    }
                ),
                "{got:?}"
            );
        }
    }
}

#[tokio::test]
async fn wrong_eku() {
    let w = world();
    // A client certificate that may only be a server.
    let svid =
        w.ca.svid(CLIENT)
            .extended_key_usages(&[Eku::ServerAuth])
            .issue()
            .unwrap();
    assert_eq!(
        refused(&w, &svid).await,
        VerificationError::WrongExtendedKeyUsage {
            position: ChainPosition::Leaf,
            needed: "clientAuth"
        }
    );
    let svid =
        w.ca.svid(CLIENT)
            .extended_key_usages(&[Eku::CodeSigning])
            .issue()
            .unwrap();
    assert!(matches!(
        refused(&w, &svid).await,
        VerificationError::WrongExtendedKeyUsage { .. }
    ));
    // No EKU extension at all is allowed by the X509-SVID spec.
    let svid = w.ca.svid(CLIENT).extended_key_usages(&[]).issue().unwrap();
    let client = raw_client_config(chain_of(&svid), key_of(&svid), bundles(&[&w.ca]));
    assert_eq!(server_verdict(&w.server, client).await.unwrap(), id(CLIENT));
}

#[tokio::test]
async fn server_with_client_only_eku_is_refused_by_our_client() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let bad_server = ca
        .svid(SERVER)
        .extended_key_usages(&[Eku::ClientAuth])
        .issue()
        .unwrap();
    let server = MtlsConfig::new(store(&bad_server, &[&ca]), Authorizer::any());
    let client = MtlsConfig::new(store(&ca.issue(CLIENT).unwrap(), &[&ca]), Authorizer::any());
    let (addr, _v) = echo_server(&server, 1).await;
    let err = MtlsConnector::from_config(&client)
        .unwrap()
        .connect(addr)
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        VerificationError::WrongExtendedKeyUsage {
            position: ChainPosition::Leaf,
            needed: "serverAuth"
        }
    );
}

#[tokio::test]
async fn peer_presenting_no_certificate() {
    let w = world();
    let client = no_cert_client_config(bundles(&[&w.ca]));
    let err = server_verdict(&w.server, client).await.unwrap_err();
    assert_eq!(reason(&err), VerificationError::NoCertificate);
}

#[tokio::test]
async fn prefix_policy_needs_a_slash_boundary() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let server = MtlsConfig::new(
        store(&ca.issue(SERVER).unwrap(), &[&ca]),
        Authorizer::path_prefix(id("spiffe://prod.example/ns/front")),
    );
    let svid = ca.issue(CLIENT).unwrap(); // .../ns/frontend/... starts with "/ns/front" as text
    let client = raw_client_config(chain_of(&svid), key_of(&svid), bundles(&[&ca]));
    let err = server_verdict(&server, client).await.unwrap_err();
    assert!(matches!(
        reason(&err),
        VerificationError::Unauthorized { .. }
    ));
}

#[test]
fn mismatched_key_and_certificate() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let a = ca.issue(CLIENT).unwrap();
    let b = ca.issue(CLIENT).unwrap();
    let err = X509Svid::from_der(chain_of(&a), key_of(&b)).unwrap_err();
    assert_eq!(err, CredentialError::KeyMismatch);
    let err = X509Svid::from_pem(
        a.chain_pem().as_bytes(),
        b.private_key_pem().expose().as_bytes(),
    )
    .unwrap_err();
    assert_eq!(err, CredentialError::KeyMismatch);
}

#[test]
fn truncated_or_garbage_pem() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let svid = ca.issue(CLIENT).unwrap();
    let key = svid.private_key_pem().expose().as_bytes().to_vec();
    let chain = svid.chain_pem().as_bytes();
    // Cut off before the END line.
    let cut = &chain[..chain.len() / 3];
    assert!(matches!(
        X509Svid::from_pem(cut, &key),
        Err(CredentialError::Pem(_))
    ));
    // Garbage.
    assert!(matches!(
        X509Svid::from_pem(b"hello, I am not PEM", &key),
        Err(CredentialError::NoCertificates)
    ));
    // Base64 body that is not base64.
    let bad = b"-----BEGIN CERTIFICATE-----\n!!!!not base64!!!!\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        X509Svid::from_pem(bad, &key),
        Err(CredentialError::Pem(_))
    ));
    // Valid base64 that is not a certificate.
    let not_der = b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        X509Svid::from_pem(not_der, &key),
        Err(CredentialError::MalformedCertificate(_))
    ));
    // A truncated key.
    let cut_key = &key[..key.len() / 2];
    assert!(matches!(
        X509Svid::from_pem(chain, cut_key),
        Err(CredentialError::Pem(_))
    ));
    assert!(matches!(
        X509Svid::from_pem(chain, b"no key here"),
        Err(CredentialError::NoPrivateKey)
    ));
    // Truncated DER inside a well-formed PEM armour, presented by a peer.
    let mut leaf = svid.leaf_der().to_vec();
    leaf.truncate(leaf.len() - 10);
    let chain = vec![rustls_pki_types::CertificateDer::from(leaf)];
    let err = verify_x509_svid(
        &chain,
        &bundles(&[&ca]),
        Purpose::ClientAuth,
        UnixTime::now(),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        VerificationError::Malformed {
            position: ChainPosition::Leaf,
            ..
        }
    ));
}

#[test]
fn bundle_map_with_duplicate_domains_or_bad_base64() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let entry = ca.bundle_json(1).to_string();
    let dup = format!(r#"{{"trust_domains":{{"prod.example":{entry},"prod.example":{entry}}}}}"#);
    assert_eq!(
        TrustBundleSet::from_bundle_map_json(dup.as_bytes()).unwrap_err(),
        CredentialError::DuplicateTrustDomain("prod.example".into())
    );
    // The same domain spelled once bare and once as a SPIFFE ID is still a duplicate.
    let dup2 = format!(
        r#"{{"trust_domains":{{"prod.example":{entry},"spiffe://prod.example":{entry}}}}}"#
    );
    assert_eq!(
        TrustBundleSet::from_bundle_map_json(dup2.as_bytes()).unwrap_err(),
        CredentialError::DuplicateTrustDomain("prod.example".into())
    );
    let bad = r#"{"trust_domains":{"prod.example":{"keys":[{"kty":"EC","use":"x509-svid","x5c":["%%%not-base64%%%"]}]}}}"#;
    assert_eq!(
        TrustBundleSet::from_bundle_map_json(bad.as_bytes()).unwrap_err(),
        CredentialError::BadBase64("prod.example".into())
    );
    let two = format!(
        r#"{{"trust_domains":{{"prod.example":{{"keys":[{{"use":"x509-svid","x5c":["{b}","{b}"]}}]}}}}}}"#,
        b = "AAAA"
    );
    assert!(matches!(
        TrustBundleSet::from_bundle_map_json(two.as_bytes()).unwrap_err(),
        CredentialError::X5cCount { count: 2, .. }
    ));
    let not_cert =
        r#"{"trust_domains":{"prod.example":{"keys":[{"use":"x509-svid","x5c":["aGVsbG8="]}]}}}"#;
    assert!(matches!(
        TrustBundleSet::from_bundle_map_json(not_cert.as_bytes()).unwrap_err(),
        CredentialError::BadRoot { .. }
    ));
    assert!(matches!(
        TrustBundleSet::from_bundle_map_json(b"{\"trust_domains\": [").unwrap_err(),
        CredentialError::BundleJson(_)
    ));
    assert!(matches!(
        TrustBundleSet::from_bundle_map_json(br#"{"trust_domains":{"Bad.Domain":{"keys":[]}}}"#)
            .unwrap_err(),
        CredentialError::InvalidTrustDomain { .. }
    ));
}

#[test]
fn bundle_map_reads_only_x509_svid_keys() {
    let a = TrustDomainCa::new("a.example").unwrap();
    let b = TrustDomainCa::new("b.example").unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&workload_auth_emulator::ca::bundle_map_json([&a, &b])).unwrap();
    // A JWT-SVID key (no x5c) must be skipped, not refused.
    json["trust_domains"]["a.example"]["keys"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"kty":"EC","use":"jwt-svid","kid":"k1","crv":"P-256","x":"AA","y":"AA"}));
    let set = TrustBundleSet::from_bundle_map_json(json.to_string().as_bytes()).unwrap();
    assert_eq!(set.len(), 2);
    let bundle = set.for_domain(&td("a.example")).unwrap();
    assert_eq!(bundle.roots().len(), 1);
    assert_eq!(bundle.roots()[0].as_ref(), a.root_der());
    assert_eq!(bundle.sequence(), Some(1));
}

#[tokio::test]
async fn finding_10_an_intermediate_without_key_cert_sign_is_refused_with_the_reason() {
    // A CA whose intermediate may sign (it has digitalSignature) but lacks keyCertSign, which
    // the SPIFFE X509-SVID specification requires of every signing certificate.
    let ca = TrustDomainCa::with_options(
        "prod.example",
        CaOptions {
            intermediate_key_usages: vec![KeyUsage::DigitalSignature, KeyUsage::CrlSign],
            ..CaOptions::default()
        },
    )
    .unwrap();
    let srv_ca = TrustDomainCa::new("srv.example").unwrap();
    let server = MtlsConfig::new(
        store(
            &srv_ca.issue("spiffe://srv.example/s").unwrap(),
            &[&ca, &srv_ca],
        ),
        Authorizer::any(),
    );
    let svid = ca.issue(CLIENT).unwrap();
    let client = raw_client_config(chain_of(&svid), key_of(&svid), bundles(&[&srv_ca]));
    let err = server_verdict(&server, client).await.unwrap_err();
    assert_eq!(
        reason(&err),
        VerificationError::IntermediateCannotSign,
        "{err}"
    );
    assert!(err.to_string().contains("keyCertSign") || format!("{err:?}").contains("keyCertSign"));

    // Standalone verification gives the same reason; the same chain from a CA whose
    // intermediate has keyCertSign verifies.
    let chain = chain_of(&svid);
    let verifier = SpiffeVerifier::with_bundles(bundles(&[&ca]), Authorizer::any());
    let got = verifier
        .verify(&chain, Purpose::ClientAuth, UnixTime::now())
        .unwrap_err();
    assert_eq!(got, VerificationError::IntermediateCannotSign);
    assert!(got.to_string().contains("keyCertSign"), "{got}");
    let good = TrustDomainCa::new("prod.example").unwrap();
    let verifier = SpiffeVerifier::with_bundles(bundles(&[&good]), Authorizer::any());
    verifier
        .verify(
            &chain_of(&good.issue(CLIENT).unwrap()),
            Purpose::ClientAuth,
            UnixTime::now(),
        )
        .unwrap();
}
