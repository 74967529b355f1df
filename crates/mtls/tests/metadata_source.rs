//! `MetadataSource` against the emulator's metadata server on 127.0.0.1 (an explicit host, never
//! the environment): loading, handshakes, rotation through the watcher, and the typed reasons a VM
//! has no workload certificates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workload_auth_core::{ErrorKind, RetryPolicy};
use workload_auth_emulator::ca::{KeyFormat, TrustDomainCa};
use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint, Fault, WorkloadCertificates};
use workload_auth_metadata::{MetadataClient, WorkloadCertificatesUnavailable};
use workload_auth_mtls::*;

const TD: &str = "pool.global.123.workload.id.goog";
const ME: &str = "spiffe://pool.global.123.workload.id.goog/ns/prod/sa/web";
const PEER: &str = "spiffe://pool.global.123.workload.id.goog/ns/prod/sa/api";

async fn emulator(certs: Option<WorkloadCertificates>) -> Emulator {
    Emulator::start(EmulatorConfig {
        workload_certificates: certs,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap()
}

fn source(emu: &Emulator) -> MetadataSource {
    let client = MetadataClient::builder()
        .host(emu.host())
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    MetadataSource::new(client)
}

fn often() -> WatchOptions {
    WatchOptions {
        poll_interval: Duration::from_millis(20),
        max_reload_interval: Duration::from_millis(100),
        retry_backoff: Duration::from_millis(20),
    }
}

#[tokio::test]
async fn loads_the_svid_and_trust_anchors_and_completes_a_handshake() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let partner = TrustDomainCa::new("partner.example").unwrap();
    let mine = ca.svid(ME).key_format(KeyFormat::Sec1).issue().unwrap();
    let emu = emulator(Some(mine.workload_certificates([&ca, &partner]))).await;
    let source = source(&emu);

    let material = source.load().await.unwrap();
    assert_eq!(material.svid().spiffe_id(), &id(ME));
    assert_eq!(material.svid().leaf().as_ref(), mine.leaf_der());
    let mut domains: Vec<&str> = material
        .bundles()
        .trust_domains()
        .map(|t| t.name())
        .collect();
    domains.sort_unstable();
    assert_eq!(domains, ["partner.example", TD]);
    assert!(
        material
            .config_status()
            .unwrap()
            .contains("partnerMetadataConfigsErrors")
    );
    assert!(
        material.origin().contains(&emu.host()),
        "{}",
        material.origin()
    );
    assert!(source.describe().contains(&emu.host()));
    assert_eq!(emu.requests(Endpoint::WorkloadIdentities), 1);
    assert_eq!(emu.requests(Endpoint::TrustAnchors), 1);

    // The metadata-backed workload serves; a peer from the directory-style store connects.
    let server = MtlsConfig::new(SvidStore::new(material), Authorizer::exact(id(PEER)));
    let (addr, mut verdicts) = echo_server(&server, 1).await;
    let client = MtlsConfig::new(
        store(&ca.issue(PEER).unwrap(), &[&ca]),
        Authorizer::exact(id(ME)),
    );
    let (mut stream, server_id) = MtlsConnector::from_config(&client)
        .unwrap()
        .connect(addr)
        .await
        .unwrap();
    assert_eq!(server_id, id(ME));
    stream.write_all(b"hi").await.unwrap();
    let mut buf = [0u8; 2];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hi");
    assert_eq!(verdicts.recv().await.unwrap().unwrap(), id(PEER));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_picks_up_a_new_svid_from_the_metadata_server() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let first = ca.issue(ME).unwrap();
    let emu = emulator(Some(first.workload_certificates([&ca]))).await;
    let source = source(&emu);
    let svids = SvidStore::new(source.load().await.unwrap());
    let _watcher = Watcher::spawn(svids.clone(), Arc::new(source), often()).unwrap();

    let second = ca.issue(ME).unwrap();
    assert_ne!(first.leaf_der(), second.leaf_der());
    emu.update_config(|c| c.workload_certificates = Some(second.workload_certificates([&ca])));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while svids.current().svid().leaf().as_ref() != second.leaf_der() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watcher did not pick up the new SVID"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // New handshakes present the new certificate.
    let server = MtlsConfig::new(svids.clone(), Authorizer::any());
    let (addr, _verdicts) = echo_server(&server, 1).await;
    let client = MtlsConfig::new(store(&ca.issue(PEER).unwrap(), &[&ca]), Authorizer::any());
    let (stream, _) = MtlsConnector::from_config(&client)
        .unwrap()
        .connect(addr)
        .await
        .unwrap();
    let presented = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    assert_eq!(presented, second.leaf_der());
}

#[tokio::test]
async fn feature_disabled_is_a_typed_404() {
    let emu = emulator(None).await;
    let err = source(&emu).load().await.unwrap_err();
    assert_eq!(
        WorkloadCertificatesUnavailable::of(&err),
        Some(WorkloadCertificatesUnavailable::FeatureDisabled),
        "{err}"
    );
    assert_eq!(err.status(), Some(404));
    assert!(err.to_string().contains("workload-identities"), "{err}");
}

#[tokio::test]
async fn not_configured_is_a_typed_412_and_a_failed_reload_keeps_the_last_good_svid() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let mine = ca.issue(ME).unwrap();
    let emu = emulator(Some(mine.workload_certificates([&ca]))).await;
    let source = source(&emu);
    let store = SvidStore::new(source.load().await.unwrap());
    let watcher = Watcher::spawn(
        store.clone(),
        Arc::new(source.clone()),
        WatchOptions::default(),
    )
    .unwrap();

    emu.inject(Endpoint::WorkloadIdentities, Fault::Status(412), None);
    let err = source.load().await.unwrap_err();
    assert_eq!(
        WorkloadCertificatesUnavailable::of(&err),
        Some(WorkloadCertificatesUnavailable::NotConfigured),
        "{err}"
    );
    assert_eq!(err.status(), Some(412));

    let err = watcher.reload_now().await.unwrap_err();
    assert_eq!(
        WorkloadCertificatesUnavailable::of(&err),
        Some(WorkloadCertificatesUnavailable::NotConfigured)
    );
    let status = store.status();
    assert_eq!(status.failures, 1);
    assert!(status.last_error.is_some());
    assert_eq!(store.current().svid().leaf().as_ref(), mine.leaf_der());

    emu.clear_faults();
    watcher.reload_now().await.unwrap();
    assert!(store.status().last_error.is_none());
}

#[tokio::test]
async fn a_key_of_another_certificate_or_a_mislabelled_id_is_refused_with_the_reason() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let mine = ca.issue(ME).unwrap();
    let other = ca.issue(PEER).unwrap();

    // The key belongs to another certificate.
    let torn = WorkloadCertificates::from_pem(
        ME,
        mine.chain_pem(),
        other.private_key_pem(),
        [(TD, ca.root_pem())],
    );
    let emu = emulator(Some(torn)).await;
    let err = source(&emu).load().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
    assert_eq!(
        CredentialError::find(&err),
        Some(&CredentialError::KeyMismatch)
    );
    assert!(err.to_string().contains("workload-identities"), "{err}");
    assert!(!err.to_string().contains("PRIVATE KEY"), "{err}");

    // Filed under one SPIFFE ID, holding a certificate for another.
    let mislabelled = WorkloadCertificates::from_pem(
        PEER,
        mine.chain_pem(),
        mine.private_key_pem(),
        [(TD, ca.root_pem())],
    );
    emu.update_config(|c| c.workload_certificates = Some(mislabelled));
    let err = source(&emu).load().await.unwrap_err();
    assert!(
        matches!(
            CredentialError::find(&err),
            Some(CredentialError::IdMismatch { claimed, certificate })
                if claimed == PEER && certificate == ME
        ),
        "{err}"
    );

    // Trust anchors that are not certificates.
    let mut bad_anchors = mine.workload_certificates([&ca]);
    bad_anchors.trust_anchors = serde_json::json!({
        "trustAnchors": {TD: {"trustAnchorsPem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}}
    })
    .to_string();
    emu.update_config(|c| c.workload_certificates = Some(bad_anchors));
    let err = source(&emu).load().await.unwrap_err();
    assert!(err.to_string().contains("trust-anchors"), "{err}");
    assert!(CredentialError::find(&err).is_some(), "{err}");
}

/// The key's base64 body (the PEM lines between the armour), which no error may contain.
fn key_body(svid: &workload_auth_emulator::ca::IssuedSvid) -> String {
    svid.private_key_pem()
        .expose()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("")
        .chars()
        .take(40)
        .collect()
}

fn full_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{e} {e:?}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(" | {s} {s:?}"));
        source = s.source();
    }
    text
}

#[tokio::test]
async fn finding_7_one_parser_refuses_duplicate_keys_and_never_quotes_the_key() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let mine = ca.issue(ME).unwrap();
    let planted = ca.issue(ME).unwrap();
    let good = mine.workload_certificates([&ca]);
    let credential = |svid: &workload_auth_emulator::ca::IssuedSvid| {
        let body = svid.workload_certificates([&ca]);
        let v: serde_json::Value = serde_json::from_str(body.workload_identities.expose()).unwrap();
        v["workloadCredentials"][ME].to_string()
    };
    let (a, b) = (credential(&mine), credential(&planted));
    let duplicate_credential =
        format!(r#"{{"status":"OK","workloadCredentials":{{"{ME}":{a},"{ME}":{b}}}}}"#);
    let duplicate_key_field = {
        let key: serde_json::Value = serde_json::from_str(&b).unwrap();
        let second = serde_json::to_string(&key["privateKeyPem"]).unwrap();
        let inner = a.trim_end_matches('}');
        format!(
            r#"{{"status":"OK","workloadCredentials":{{"{ME}":{inner},"privateKeyPem":{second}}}}}}}"#
        )
    };
    // A key where an object is expected: serde's derive would have quoted it in the error.
    let key_as_map = {
        let key: serde_json::Value = serde_json::from_str(&a).unwrap();
        format!(
            r#"{{"status":"OK","workloadCredentials":{}}}"#,
            serde_json::to_string(&key["privateKeyPem"]).unwrap()
        )
    };
    let secrets = [key_body(&mine), key_body(&planted)];
    for (body, needle) in [
        (duplicate_credential, "duplicate key"),
        (duplicate_key_field, "duplicate key"),
        (key_as_map, "is a string, expected an object"),
    ] {
        // Straight from bytes...
        let err = X509Material::from_metadata_json(body.as_bytes(), good.trust_anchors.as_bytes())
            .unwrap_err();
        let text = full_text(&err);
        assert!(text.contains(needle), "{text}");
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "the key is in {text}");
        }
        // ...and from the metadata server over a socket: the same parser, the same answer.
        let emu = emulator(Some(WorkloadCertificates {
            workload_identities: body.clone().into(),
            ..good.clone()
        }))
        .await;
        let err = source(&emu).load().await.unwrap_err();
        let text = full_text(&err);
        assert_eq!(err.kind(), ErrorKind::MalformedResponse, "{text}");
        assert!(text.contains(needle), "{text}");
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "the key is in {text}");
        }
        emu.shutdown().await;
    }
    // A status other than OK is refused by both readers, without echoing it.
    let failed = good
        .workload_identities
        .expose()
        .replace("\"OK\"", "\"PENDING\"");
    let err = X509Material::from_metadata_json(failed.as_bytes(), good.trust_anchors.as_bytes())
        .unwrap_err();
    assert!(!err.to_string().contains("PENDING"), "{err}");
    let emu = emulator(Some(WorkloadCertificates {
        workload_identities: failed.into(),
        ..good.clone()
    }))
    .await;
    let err = source(&emu).load().await.unwrap_err();
    assert!(
        full_text(&err).contains("not \"OK\""),
        "{}",
        full_text(&err)
    );
    emu.shutdown().await;
    // The untouched bodies still load both ways.
    assert!(
        X509Material::from_metadata_json(
            good.workload_identities.expose().as_bytes(),
            good.trust_anchors.as_bytes()
        )
        .is_ok()
    );
}
