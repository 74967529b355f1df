//! Credential access boundaries against the emulator's Security Token Service: server-side
//! downscoped tokens, client-side tokens minted locally from an intermediary token and session
//! key (decrypted back by the emulator), and every bad input a typed error naming its field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::TempDir;
use prost::Message as _;
use serde_json::{Value, json};
use workload_auth_adc::Credentials;
use workload_auth_adc::downscoped::{
    AccessBoundary, AccessBoundaryRule, AvailabilityCondition, ClientSideDownscoper,
    DownscopedCredentials,
};
use workload_auth_core::ErrorKind;
use workload_auth_emulator::{Emulator, Endpoint, Fault};

const BUCKET: &str = "//storage.googleapis.com/projects/_/buckets/downscoped-bucket";
const VIEWER: &str = "inRole:roles/storage.objectViewer";

fn source(emu: &Emulator, home: &TempDir) -> Credentials {
    common::builder(home, &[("GCE_METADATA_HOST", emu.host())])
        .build()
        .unwrap()
}

fn boundary() -> AccessBoundary {
    AccessBoundary::new(vec![
        AccessBoundaryRule::new(BUCKET, [VIEWER]).with_condition(AvailabilityCondition {
            expression: "resource.name.startsWith('projects/_/buckets/downscoped-bucket/objects/customer-a/')"
                .into(),
            title: Some("customer-a".into()),
            description: Some("objects of customer A".into()),
        }),
        AccessBoundaryRule::new(
            "//storage.googleapis.com/projects/_/buckets/other",
            ["inRole:roles/storage.objectCreator", VIEWER],
        ),
    ])
    .unwrap()
}

/// A reqwest client with the ring provider (the workspace builds reqwest without a default).
fn client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()
        .unwrap()
}

async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// What the emulator's test endpoint says a downscoped token carries.
async fn carried(emu: &Emulator, token: &str) -> (u16, Value) {
    let response = client()
        .get(format!("{}/emulator/v1/downscoped-boundary", emu.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, json_of(response).await)
}

fn sts_url(emu: &Emulator) -> String {
    format!("{}/v1/token", emu.url())
}

#[tokio::test]
async fn server_side_token_carries_the_boundary_and_is_cached() {
    let emu = common::emulator().await;
    let home = TempDir::new("cab-server");
    let source = source(&emu, &home);
    let credentials = DownscopedCredentials::builder(source.clone())
        .with_sts_endpoint(sts_url(&emu))
        .build(boundary())
        .unwrap();
    let token = credentials.access_token().await.unwrap();
    let source_token = source.access_token().await.unwrap();
    assert_ne!(token.secret(), source_token.secret());
    assert!(token.expires_in() > Duration::from_secs(3000));
    let (status, body) = carried(&emu, token.secret().expose()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kind"], "server-side");
    assert_eq!(
        body["accessBoundary"],
        boundary().to_json()["accessBoundary"]
    );
    // Cached: a second call makes no exchange.
    let again = credentials.access_token().await.unwrap();
    assert_eq!(again.secret(), token.secret());
    assert_eq!(emu.requests(Endpoint::StsToken), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn the_sts_over_https_is_trusted_through_the_given_roots_only() {
    let emu = common::emulator().await;
    let root = emu.enable_tls().unwrap();
    let home = TempDir::new("cab-https");
    let source = source(&emu, &home);
    let https = format!("https://{}/v1/token", emu.host());
    // The platform's roots do not include the emulator's CA: refused at the handshake.
    let untrusted = DownscopedCredentials::builder(source.clone())
        .with_sts_endpoint(&https)
        .build(boundary())
        .unwrap();
    assert!(untrusted.access_token().await.is_err());
    assert_eq!(emu.requests(Endpoint::StsToken), 0);
    let credentials = DownscopedCredentials::builder(source.clone())
        .with_sts_endpoint(&https)
        .with_tls_root_certificates([root.clone()])
        .build(boundary())
        .unwrap();
    let token = credentials.access_token().await.unwrap();
    // The exchange went over HTTPS, which is not mutual TLS.
    assert!(emu.https_requests() > 0);
    assert_eq!(emu.mds_mtls_requests(), 0);
    let (status, body) = carried(&emu, token.secret().expose()).await;
    assert_eq!(
        (status, &body["kind"]),
        (200, &json!("server-side")),
        "{body}"
    );
    let downscoper = ClientSideDownscoper::builder(source)
        .with_sts_endpoint(&https)
        .with_tls_root_certificates([root])
        .build_client_side()
        .unwrap();
    let minted = downscoper
        .token(&downscoper.prepare(&boundary()).unwrap())
        .await
        .unwrap();
    let (status, body) = carried(&emu, minted.secret().expose()).await;
    assert_eq!(
        (status, &body["kind"]),
        (200, &json!("client-side")),
        "{body}"
    );
    assert_eq!(emu.requests(Endpoint::StsToken), 2);
    assert!(emu.https_requests() >= 2, "both exchanges over HTTPS");
    assert_eq!(emu.mds_mtls_requests(), 0, "no client certificate was sent");
    emu.shutdown().await;
}

#[tokio::test]
async fn client_side_tokens_are_minted_locally_and_decrypt_to_the_boundary() {
    for key_bytes in [16, 32] {
        let emu = common::emulator().await;
        emu.update_config(|c| c.identity.sts.session_key_bytes = key_bytes);
        let home = TempDir::new("cab-client");
        let downscoper = ClientSideDownscoper::builder(source(&emu, &home))
            .with_sts_endpoint(sts_url(&emu))
            .build_client_side()
            .unwrap();
        let prepared = downscoper.prepare(&boundary()).unwrap();
        let mut tokens = Vec::new();
        for _ in 0..50 {
            tokens.push(downscoper.token(&prepared).await.unwrap());
        }
        assert_eq!(
            emu.requests(Endpoint::StsToken),
            1,
            "one intermediary exchange"
        );
        assert_eq!(downscoper.exchange_count(), 1);
        let first = tokens[0].secret().expose().to_owned();
        assert!(tokens[1..].iter().all(|t| t.secret().expose() != first));
        let (intermediary, sealed) = first.rsplit_once('.').unwrap();
        assert!(intermediary.starts_with("ya29.emulated-"));
        assert!(!sealed.contains('=') && !sealed.contains('+') && !sealed.contains('/'));
        assert!(tokens[0].expires_in() > Duration::from_secs(3000));
        for token in [&tokens[0], &tokens[49]] {
            let (status, body) = carried(&emu, token.secret().expose()).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["kind"], "client-side");
            assert_eq!(
                body["accessBoundary"],
                json!({"accessBoundaryRules": [
                    {
                        "availableResource": BUCKET,
                        "availablePermissions": [VIEWER],
                        "availabilityCondition": {"expression":
                            "resource.name.startsWith(\"projects/_/buckets/downscoped-bucket/objects/customer-a/\")"},
                    },
                    {
                        "availableResource": "//storage.googleapis.com/projects/_/buckets/other",
                        "availablePermissions": ["inRole:roles/storage.objectCreator", VIEWER],
                    },
                ]})
            );
        }
        // A tampered token does not decrypt.
        let mut tampered = first.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        let (status, _) = carried(&emu, &tampered).await;
        assert_eq!(status, 400);
        emu.shutdown().await;
    }
}

#[test]
fn client_side_tokens_without_a_runtime() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let emu = runtime.block_on(common::emulator());
    let home = TempDir::new("cab-blocking");
    let downscoper = ClientSideDownscoper::builder(source(&emu, &home))
        .with_sts_endpoint(sts_url(&emu))
        .build_client_side()
        .unwrap();
    let prepared = downscoper.prepare(&boundary()).unwrap();
    let token = downscoper.token_blocking(&prepared).unwrap();
    let (status, _) = runtime.block_on(carried(&emu, token.secret().expose()));
    assert_eq!(status, 200);
    runtime.block_on(emu.shutdown());
}

#[tokio::test]
async fn the_emulator_refuses_more_than_ten_rules_with_a_clear_error() {
    let emu = common::emulator().await;
    let home = TempDir::new("cab-eleven");
    let source = source(&emu, &home).access_token().await.unwrap();
    let rule = json!({"availableResource": BUCKET, "availablePermissions": [VIEWER]});
    let options = json!({"accessBoundary": {"accessBoundaryRules": vec![rule; 11]}}).to_string();
    // Twice-encoded, as google-auth for Python sends it.
    let twice: String = url::form_urlencoded::byte_serialize(options.as_bytes()).collect();
    for options in [options.clone(), twice] {
        let response = client()
            .post(sts_url(&emu))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs([
                        (
                            "grant_type",
                            "urn:ietf:params:oauth:grant-type:token-exchange",
                        ),
                        (
                            "subject_token_type",
                            "urn:ietf:params:oauth:token-type:access_token",
                        ),
                        (
                            "requested_token_type",
                            "urn:ietf:params:oauth:token-type:access_token",
                        ),
                        ("subject_token", source.secret().expose()),
                        ("options", options.as_str()),
                    ])
                    .finish(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
        let body = json_of(response).await;
        assert_eq!(body["error"], "invalid_request");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("at most 10"),
            "{body}"
        );
    }
    // And the client never sends them: the boundary itself refuses.
    let e = AccessBoundary::new(vec![AccessBoundaryRule::new(BUCKET, [VIEWER]); 11]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("`accessBoundaryRules`"), "{e}");
    emu.shutdown().await;
}

// Tink's keyset messages, again, to make bad session keys.
#[derive(Clone, PartialEq, prost::Message)]
struct Keyset {
    #[prost(uint32, tag = "1")]
    primary_key_id: u32,
    #[prost(message, repeated, tag = "2")]
    key: Vec<Key>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Key {
    #[prost(message, optional, tag = "1")]
    key_data: Option<KeyData>,
    #[prost(int32, tag = "2")]
    status: i32,
    #[prost(uint32, tag = "3")]
    key_id: u32,
    #[prost(int32, tag = "4")]
    output_prefix_type: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct KeyData {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
    #[prost(int32, tag = "3")]
    key_material_type: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AesGcmKey {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(bytes = "vec", tag = "3")]
    key_value: Vec<u8>,
}

fn session_key(type_url: &str, key_len: usize, status: i32) -> String {
    let keyset = Keyset {
        primary_key_id: 42,
        key: vec![Key {
            key_data: Some(KeyData {
                type_url: type_url.into(),
                value: AesGcmKey {
                    version: 0,
                    key_value: vec![1; key_len],
                }
                .encode_to_vec(),
                key_material_type: 1,
            }),
            status,
            key_id: 42,
            output_prefix_type: 1,
        }],
    };
    base64::engine::general_purpose::STANDARD.encode(keyset.encode_to_vec())
}

#[tokio::test]
async fn bad_session_keys_are_typed_errors_naming_the_field() {
    const AES: &str = "type.googleapis.com/google.crypto.tink.AesGcmKey";
    let cases: Vec<(Value, &str)> = vec![
        (
            json!(session_key(
                "type.googleapis.com/google.crypto.tink.AesSivKey",
                32,
                1
            )),
            "key type",
        ),
        (json!(session_key(AES, 24, 1)), "24 bytes"),
        (json!(session_key(AES, 16, 2)), "not enabled"),
        (json!("not*base64!"), "not standard base64"),
        (json!("CAc="), "no key with the primary key id 7"),
        (
            json!(base64::engine::general_purpose::STANDARD.encode([0xff; 9])),
            "not a Tink keyset",
        ),
        (json!(5), "has no"),
        (Value::Null, "has no"),
    ];
    let emu = common::emulator().await;
    let home = TempDir::new("cab-bad-key");
    let source = source(&emu, &home);
    for (key, needle) in cases {
        let mut answer = json!({
            "access_token": "ya29.intermediary",
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_boundary_intermediary_token",
            "token_type": "Bearer",
            "expires_in": 3599,
        });
        if !key.is_null() {
            answer["access_boundary_session_key"] = key;
        }
        emu.inject(
            Endpoint::StsToken,
            Fault::Malformed(answer.to_string()),
            Some(1),
        );
        let downscoper = ClientSideDownscoper::builder(source.clone())
            .with_sts_endpoint(sts_url(&emu))
            .build_client_side()
            .unwrap();
        let prepared = downscoper.prepare(&boundary()).unwrap();
        let e = downscoper.token(&prepared).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MalformedResponse, "{needle}: {e}");
        assert!(
            e.message().contains("`access_boundary_session_key`"),
            "{needle}: {e}"
        );
        assert!(e.message().contains(needle), "{needle}: {e}");
        assert!(!e.to_string().contains("ya29"), "{e}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn unsupported_conditions_and_refused_endpoints_are_typed_errors() {
    let emu = common::emulator().await;
    let home = TempDir::new("cab-bad-input");
    let source = source(&emu, &home);
    let downscoper = ClientSideDownscoper::builder(source.clone())
        .with_sts_endpoint(sts_url(&emu))
        .build_client_side()
        .unwrap();
    let unsupported = AccessBoundary::new(vec![
        AccessBoundaryRule::new(BUCKET, [VIEWER]),
        AccessBoundaryRule::new(BUCKET, [VIEWER]).with_condition(AvailabilityCondition::new(
            "request.time < timestamp('2030-01-01T00:00:00Z')",
        )),
    ])
    .unwrap();
    let e = downscoper.prepare(&unsupported).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(
        e.message()
            .contains("rule 1: `availabilityCondition.expression`"),
        "{e}"
    );
    assert!(e.hint().unwrap().contains("startsWith"), "{e}");
    assert_eq!(
        emu.requests(Endpoint::StsToken),
        0,
        "refused before any request"
    );
    // Server-side passes any condition through: the service judges it.
    DownscopedCredentials::builder(source.clone())
        .with_sts_endpoint(sts_url(&emu))
        .build(unsupported)
        .unwrap()
        .access_token()
        .await
        .unwrap();
    for bad in [
        "http://sts.example.com/v1/token",
        "ftp://127.0.0.1/",
        "not a url",
    ] {
        let e = ClientSideDownscoper::builder(source.clone())
            .with_sts_endpoint(bad)
            .build_client_side()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidCredentials, "{bad}");
        assert!(e.message().contains("`sts_endpoint`"), "{e}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn sts_refusals_are_reported_not_retried_forever() {
    let emu = common::emulator().await;
    let home = TempDir::new("cab-refused");
    let source = source(&emu, &home);
    emu.inject(Endpoint::StsToken, Fault::Status(403), None);
    let credentials = DownscopedCredentials::builder(source)
        .with_sts_endpoint(sts_url(&emu))
        .build(boundary())
        .unwrap();
    let e = credentials.access_token().await.unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    assert_eq!(emu.requests(Endpoint::StsToken), 1);
    emu.shutdown().await;
}
