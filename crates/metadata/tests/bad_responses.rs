//! Every way the metadata server (or something pretending to be it) can answer badly: each is a
//! typed error that names the endpoint, never a panic, and never shows the token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};

use common::{client, start};
use workload_auth_core::{Error, ErrorKind, RetryPolicy};
use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint, Fault, WorkloadCertificates};
use workload_auth_metadata::{MAX_BODY_BYTES, MetadataClient};

const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
const LEAK: &str = "ya29.LEAKED-secret-token";

/// Checks what every bad answer must satisfy, and returns the error's text.
fn assert_typed(err: &Error, kind: ErrorKind, path: &str) -> String {
    let text = err.to_string();
    let debug = format!("{err:?}");
    assert_eq!(err.kind(), kind, "{text}");
    assert!(err.endpoint().unwrap().ends_with(path), "{text}");
    assert!(text.contains(path), "{text}");
    for shown in [&text, &debug] {
        assert!(!shown.contains("LEAKED"), "token text in error: {shown}");
        assert!(
            !shown.contains("ya29.emulated"),
            "token text in error: {shown}"
        );
    }
    assert!(!text.contains('\n'), "{text}");
    text
}

async fn token_error(emu: &Emulator, fault: Fault) -> Error {
    emu.inject(Endpoint::Token, fault, None);
    client(emu).access_token(&[]).await.unwrap_err()
}

async fn malformed_token(body: &str) -> (String, u64) {
    let emu = start(EmulatorConfig::default()).await;
    let err = token_error(&emu, Fault::Malformed(body.to_owned())).await;
    let text = assert_typed(&err, ErrorKind::MalformedResponse, TOKEN_PATH);
    assert!(!err.is_transient());
    (text, emu.requests(Endpoint::Token))
}

#[tokio::test]
async fn token_body_that_is_not_json() {
    let (text, requests) = malformed_token(&format!("{LEAK} is not JSON")).await;
    assert!(text.contains("not valid JSON"), "{text}");
    assert_eq!(requests, 1, "a malformed answer is not retried");
}

#[tokio::test]
async fn token_body_that_is_cut_json() {
    let (text, _) = malformed_token(&format!(r#"{{"access_token":"{LEAK}","expires_in":35"#)).await;
    assert!(text.contains("ends early"), "{text}");
}

#[tokio::test]
async fn token_body_missing_expires_in() {
    let (text, _) = malformed_token(&format!(
        r#"{{"access_token":"{LEAK}","token_type":"Bearer"}}"#
    ))
    .await;
    assert!(text.contains("`expires_in` field is missing"), "{text}");
}

#[tokio::test]
async fn token_body_missing_access_token() {
    let (text, _) = malformed_token(r#"{"expires_in":3599,"token_type":"Bearer"}"#).await;
    assert!(text.contains("`access_token` field is missing"), "{text}");
}

#[tokio::test]
async fn token_body_with_a_wrongly_typed_expires_in() {
    let (text, _) = malformed_token(&format!(
        r#"{{"access_token":"{LEAK}","expires_in":"3599"}}"#
    ))
    .await;
    assert!(text.contains("`expires_in` field is a string"), "{text}");
}

#[tokio::test]
async fn token_body_with_a_wrongly_typed_access_token() {
    let (text, _) =
        malformed_token(r#"{"access_token":{"v":"ya29.LEAKED"},"expires_in":3599}"#).await;
    assert!(text.contains("`access_token` field is an object"), "{text}");
}

#[tokio::test]
async fn token_body_with_zero_expires_in() {
    let (text, _) =
        malformed_token(&format!(r#"{{"access_token":"{LEAK}","expires_in":0}}"#)).await;
    assert!(text.contains("`expires_in` field is zero"), "{text}");
}

#[tokio::test]
async fn token_body_with_negative_expires_in() {
    let (text, _) =
        malformed_token(&format!(r#"{{"access_token":"{LEAK}","expires_in":-60}}"#)).await;
    assert!(text.contains("`expires_in` field is negative"), "{text}");
}

#[tokio::test]
async fn token_body_over_one_mebibyte() {
    let emu = start(EmulatorConfig::default()).await;
    let err = token_error(&emu, Fault::Oversize(MAX_BODY_BYTES + 1)).await;
    let text = assert_typed(&err, ErrorKind::MalformedResponse, TOKEN_PATH);
    assert!(text.contains("larger than 1048576 bytes"), "{text}");
    assert_eq!(emu.requests(Endpoint::Token), 1);
}

#[tokio::test]
async fn body_of_exactly_one_mebibyte_is_read() {
    // The limit is inclusive: the body is read in full and only then found not to be JSON.
    let emu = start(EmulatorConfig::default()).await;
    let err = token_error(&emu, Fault::Oversize(MAX_BODY_BYTES)).await;
    let text = assert_typed(&err, ErrorKind::MalformedResponse, TOKEN_PATH);
    assert!(!text.contains("larger than"), "{text}");
}

#[tokio::test]
async fn chunked_body_over_one_mebibyte_is_cut_off_while_streaming() {
    // The emulator always sends Content-Length; this peer streams an endless chunked body with a
    // valid Metadata-Flavor, so only the streaming limit can stop the read.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = [0u8; 4096];
        let _ = conn.read(&mut head).unwrap();
        conn.write_all(
            b"HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0usize;
        // Stops when the client hangs up; never more than 32 MiB.
        while sent < 32 * MAX_BODY_BYTES {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if conn.write_all(&framed).is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let c = MetadataClient::builder()
        .host(addr.to_string())
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let err = c.access_token(&[]).await.unwrap_err();
    let text = assert_typed(&err, ErrorKind::MalformedResponse, TOKEN_PATH);
    assert!(text.contains("larger than"), "{text}");
    drop(c);
    // Joined off the runtime: the client's connection task must run to close the socket.
    let sent = tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
    assert!(
        sent < 32 * MAX_BODY_BYTES,
        "the client kept reading ({sent} bytes)"
    );
}

#[tokio::test]
async fn response_without_metadata_flavor() {
    let emu = start(EmulatorConfig::default()).await;
    let err = token_error(&emu, Fault::MissingFlavor).await;
    let text = assert_typed(&err, ErrorKind::MalformedResponse, TOKEN_PATH);
    assert!(text.contains("no Metadata-Flavor header"), "{text}");
    assert_eq!(emu.requests(Endpoint::Token), 1);
}

#[tokio::test]
async fn response_with_the_wrong_metadata_flavor() {
    let emu = start(EmulatorConfig::default()).await;
    let err = token_error(&emu, Fault::WrongFlavor).await;
    let text = assert_typed(&err, ErrorKind::MalformedResponse, TOKEN_PATH);
    assert!(text.contains("NotGoogle"), "{text}");
}

#[tokio::test]
async fn redirect_is_refused_not_followed() {
    let emu = start(EmulatorConfig::default()).await;
    let target = format!("{}/computeMetadata/v1/project/project-id", emu.url());
    let err = token_error(&emu, Fault::Redirect(target)).await;
    let text = assert_typed(&err, ErrorKind::Http, TOKEN_PATH);
    assert_eq!(err.status(), Some(302));
    assert!(text.contains("redirect"), "{text}");
    assert!(!err.is_transient());
    assert_eq!(emu.requests(Endpoint::Token), 1);
    assert_eq!(
        emu.requests(Endpoint::ProjectId),
        0,
        "the redirect was followed"
    );
}

#[tokio::test]
async fn truncated_body_is_a_transient_transport_error() {
    let emu = start(EmulatorConfig::default()).await;
    emu.inject(Endpoint::Token, Fault::Truncate, None);
    let c = MetadataClient::builder()
        .host(emu.host())
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let err = c.access_token(&[]).await.unwrap_err();
    let text = assert_typed(&err, ErrorKind::Transport, TOKEN_PATH);
    assert!(err.is_transient(), "{text}");

    // Transient, so the default client retries it away.
    emu.clear_faults();
    emu.inject(Endpoint::Token, Fault::Truncate, Some(1));
    client(&emu).access_token(&[]).await.unwrap();
}

#[tokio::test]
async fn connection_reset_is_a_transient_transport_error() {
    let emu = start(EmulatorConfig::default()).await;
    emu.inject(Endpoint::Token, Fault::Reset, None);
    let c = MetadataClient::builder()
        .host(emu.host())
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let err = c.access_token(&[]).await.unwrap_err();
    let text = assert_typed(&err, ErrorKind::Transport, TOKEN_PATH);
    assert!(err.is_transient(), "{text}");
    assert_eq!(emu.requests(Endpoint::Token), 1);

    emu.clear_faults();
    emu.inject(Endpoint::Token, Fault::Reset, Some(2));
    client(&emu).access_token(&[]).await.unwrap();
    assert_eq!(emu.requests(Endpoint::Token), 4);
}

#[tokio::test]
async fn id_token_that_is_not_a_jwt() {
    let emu = start(EmulatorConfig::default()).await;
    emu.inject(Endpoint::Identity, Fault::Malformed(LEAK.to_owned()), None);
    let err = client(&emu)
        .id_token("aud", false, false)
        .await
        .unwrap_err();
    let text = assert_typed(
        &err,
        ErrorKind::MalformedResponse,
        "/instance/service-accounts/default/identity",
    );
    assert!(text.contains("not a valid JWT"), "{text}");
}

#[tokio::test]
async fn service_account_listing_without_email() {
    let emu = start(EmulatorConfig::default()).await;
    emu.inject(
        Endpoint::ServiceAccount,
        Fault::Malformed(r#"{"aliases":["default"],"scopes":[]}"#.to_owned()),
        None,
    );
    let err = client(&emu).service_account_info().await.unwrap_err();
    let text = assert_typed(
        &err,
        ErrorKind::MalformedResponse,
        "/instance/service-accounts/default/",
    );
    assert!(text.contains("`email` field is missing"), "{text}");
}

#[tokio::test]
async fn project_number_that_is_not_a_number() {
    let emu = start(EmulatorConfig::default()).await;
    emu.inject(
        Endpoint::NumericProjectId,
        Fault::Malformed("twelve".to_owned()),
        None,
    );
    let err = client(&emu).numeric_project_id().await.unwrap_err();
    let text = assert_typed(
        &err,
        ErrorKind::MalformedResponse,
        "/project/numeric-project-id",
    );
    assert!(text.contains("not a decimal number"), "{text}");
}

#[tokio::test]
async fn workload_identities_with_two_entries() {
    let entry = |id: &str| {
        format!(
            r#""{id}":{{"certificatePem":"{}","privateKeyPem":"{}"}}"#,
            common::CERT_PEM.replace('\n', "\\n"),
            "-----BEGIN PRIVATE KEY-----\\nLEAKED\\n-----END PRIVATE KEY-----\\n"
        )
    };
    let body = format!(
        r#"{{"status":"OK","workloadCredentials":{{{},{}}}}}"#,
        entry("spiffe://td/ns/a/sa/a"),
        entry("spiffe://td/ns/b/sa/b")
    );
    let emu = start(EmulatorConfig {
        workload_certificates: Some(WorkloadCertificates {
            workload_identities: body.into(),
            trust_anchors: r#"{"trustAnchors":{"td":{"trustAnchorsPem":5}}}"#.to_owned(),
            config_status: "[]".to_owned(),
        }),
        ..EmulatorConfig::default()
    })
    .await;
    let c = client(&emu);
    let err = c.workload_identities().await.unwrap_err();
    let text = assert_typed(
        &err,
        ErrorKind::MalformedResponse,
        "/gce-workload-certificates/workload-identities",
    );
    assert!(
        text.contains("has 2 entries, expected exactly one"),
        "{text}"
    );

    let err = c.trust_anchors().await.unwrap_err();
    let text = assert_typed(
        &err,
        ErrorKind::MalformedResponse,
        "/gce-workload-certificates/trust-anchors",
    );
    assert!(
        text.contains("trustAnchorsPem` field is a number"),
        "{text}"
    );

    let err = c.config_status().await.unwrap_err();
    let text = assert_typed(
        &err,
        ErrorKind::MalformedResponse,
        "/gce-workload-certificates/config-status",
    );
    assert!(text.contains("expected a JSON object"), "{text}");
}
