//! The `gce-workload-certificates` bodies, as the emulator's metadata server serves them over a
//! loopback socket, parse into material that completes a handshake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workload_auth_emulator::ca::{KeyFormat, TrustDomainCa};
use workload_auth_emulator::{Emulator, EmulatorConfig};
use workload_auth_mtls::*;

const ME: &str = "spiffe://pool.global.123.workload.id.goog/ns/prod/sa/web";

/// One GET with the metadata flavor header; returns the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> Vec<u8> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /computeMetadata/v1/{path} HTTP/1.1\r\nHost: metadata.google.internal\r\n\
         Metadata-Flavor: Google\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tcp.read_to_end(&mut resp).await.unwrap();
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    resp[split + 4..].to_vec()
}

#[tokio::test]
async fn metadata_server_bodies_become_material() {
    let ca = TrustDomainCa::new("pool.global.123.workload.id.goog").unwrap();
    let fed = TrustDomainCa::new("partner.example").unwrap();
    let svid = ca.svid(ME).key_format(KeyFormat::Sec1).issue().unwrap();
    let emu = Emulator::start(EmulatorConfig {
        workload_certificates: Some(svid.workload_certificates([&ca, &fed])),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let ids = get(
        emu.addr(),
        "instance/gce-workload-certificates/workload-identities",
    )
    .await;
    let anchors = get(
        emu.addr(),
        "instance/gce-workload-certificates/trust-anchors",
    )
    .await;
    emu.shutdown().await;

    let material = X509Material::from_metadata_json(&ids, &anchors).unwrap();
    assert_eq!(material.svid().spiffe_id(), &id(ME));
    assert_eq!(material.bundles().len(), 2);
    assert!(
        material
            .bundles()
            .for_domain(&td("partner.example"))
            .is_some()
    );

    // And it works for a handshake against a peer of the federated domain.
    let peer = fed.issue("spiffe://partner.example/ns/x/sa/y").unwrap();
    let server = MtlsConfig::new(
        SvidStore::new(material),
        Authorizer::member_of(td("partner.example")),
    );
    let client = raw_client_config(chain_of(&peer), key_of(&peer), bundles(&[&ca]));
    assert_eq!(
        server_verdict(&server, client).await.unwrap(),
        id("spiffe://partner.example/ns/x/sa/y")
    );
}

#[test]
fn malformed_metadata_bodies_are_typed_errors() {
    let ca = TrustDomainCa::new("td.example").unwrap();
    let svid = ca.issue("spiffe://td.example/a").unwrap();
    let good = svid.workload_certificates([&ca]);
    let anchors = good.trust_anchors.as_bytes();
    let ids = good.workload_identities.expose().to_owned();

    let err = X509Material::from_metadata_json(b"{", anchors).unwrap_err();
    assert!(matches!(err, CredentialError::MetadataJson(_)));
    let filed_wrong = ids.replace("spiffe://td.example/a", "spiffe://td.example/b");
    assert!(matches!(
        X509Material::from_metadata_json(filed_wrong.as_bytes(), anchors).unwrap_err(),
        CredentialError::IdMismatch { .. }
    ));
    let failed = ids.replace("\"OK\"", "\"ERROR\"");
    assert!(matches!(
        X509Material::from_metadata_json(failed.as_bytes(), anchors).unwrap_err(),
        CredentialError::MetadataJson(_)
    ));
    let empty = br#"{"workloadCredentials":{}}"#;
    assert!(matches!(
        X509Material::from_metadata_json(empty, anchors).unwrap_err(),
        CredentialError::MetadataJson(_)
    ));
    // `status` may be absent.
    let v: serde_json::Value = serde_json::from_str(&ids).unwrap();
    let no_status = serde_json::json!({"workloadCredentials": v["workloadCredentials"]});
    assert!(X509Material::from_metadata_json(no_status.to_string().as_bytes(), anchors).is_ok());
}
