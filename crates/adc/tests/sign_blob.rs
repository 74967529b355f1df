//! `Credentials::sign_blob` against the emulator: metadata-server and impersonated credentials
//! sign through the IAM Credentials `signBlob` endpoint (the signature verifies with the key the
//! emulator publishes), service-account keys sign locally without a request, and credentials that
//! act as no service account, hostile endpoints, oversized messages and failing answers are typed
//! errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;
use workload_auth_core::ErrorKind;
use workload_auth_emulator::{Emulator, Endpoint, Fault};

fn verify_with_the_emulators_key(emu: &Emulator, message: &[u8], signature: &[u8]) {
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        emu.id_token_public_key_der(),
    )
    .verify(message, signature)
    .expect("signBlob's signature verifies with the emulator's published key");
}

fn iam_base(emu: &Emulator) -> String {
    format!("{}/v1/", emu.url())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_server_credentials_sign_through_sign_blob() {
    let emu = emulator().await;
    let home = TempDir::new("sign-mds");
    let creds = builder(&home, &[("GCE_METADATA_HOST", emu.host())])
        .with_iam_credentials_endpoint(iam_base(&emu))
        .build()
        .unwrap();
    let (key_id, signature) = creds.sign_blob(b"a message").await.unwrap();
    assert!(key_id.is_some_and(|k| !k.is_empty()));
    verify_with_the_emulators_key(&emu, b"a message", &signature);
    let wrong = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        emu.id_token_public_key_der(),
    )
    .verify(b"another message", &signature);
    assert!(wrong.is_err());
    let (_, second) = creds.sign_blob(b"another message").await.unwrap();
    verify_with_the_emulators_key(&emu, b"another message", &second);
    assert_eq!(emu.requests(Endpoint::IamSignBlob), 2);
    // The account is asked once, the token comes from the cache.
    assert_eq!(emu.requests(Endpoint::Email), 1);
    assert_eq!(emu.requests(Endpoint::Token), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonated_credentials_sign_as_their_target() {
    let emu = emulator().await;
    let home = TempDir::new("sign-imp");
    let file = home.write_json(
        "imp.json",
        &json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": impersonation_url(&emu, TARGET_SA),
            "source_credentials": authorized_user_json(&emu),
            "quota_project_id": "signing-quota-project",
        }),
    );
    let creds = builder_for(&home, &file).build().unwrap();
    // The endpoint given per call (the builder names none here).
    let (_, signature) = creds
        .sign_blob_with_endpoint(b"signed url", &iam_base(&emu))
        .await
        .unwrap();
    verify_with_the_emulators_key(&emu, b"signed url", &signature);
    assert_eq!(emu.requests(Endpoint::IamSignBlob), 1);
    // The path names the target, and the request is billed to the quota project.
    let sent = emu
        .recent_requests()
        .into_iter()
        .find(|r| r.endpoint == Endpoint::IamSignBlob)
        .unwrap();
    assert_eq!(
        sent.path,
        format!("/v1/projects/-/serviceAccounts/{TARGET_SA}:signBlob")
    );
    let quota = creds.quota_project_id().map(str::to_owned);
    assert_eq!(quota.as_deref(), Some("signing-quota-project"));
    let billed = sent
        .headers
        .iter()
        .find(|(name, _)| name == "x-goog-user-project")
        .map(|(_, value)| value.clone());
    assert_eq!(billed, quota);
    // signBlob carried the impersonated token: one impersonation, one refresh of the source.
    assert_eq!(emu.requests(Endpoint::IamGenerateAccessToken), 1);
    assert_eq!(emu.requests(Endpoint::OAuthToken), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_keys_sign_locally() {
    let emu = emulator().await;
    let home = TempDir::new("sign-key");
    let file = home.write_json(
        "sa.json",
        &service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
    );
    let creds = builder_for(&home, &file)
        .with_iam_credentials_endpoint(iam_base(&emu))
        .build()
        .unwrap();
    let (key_id, signature) = creds.sign_blob(b"local").await.unwrap();
    assert_eq!(key_id.as_deref(), Some(RSA_KEY_ID));
    // RSASSA-PKCS1-v1_5 is deterministic: the same signature as the local signer's.
    assert_eq!(signature, creds.sign_bytes(b"local").unwrap().1);
    assert_eq!(emu.total_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_that_act_as_no_service_account_cannot_sign() {
    let emu = emulator().await;
    let home = TempDir::new("sign-user");
    let file = home.write_json("user.json", &authorized_user_json(&emu));
    let creds = builder_for(&home, &file)
        .with_iam_credentials_endpoint(iam_base(&emu))
        .build()
        .unwrap();
    let err = creds.sign_blob(b"x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("cannot sign"), "{err}");
    assert_eq!(emu.total_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_endpoints_and_oversized_messages_are_refused_before_any_request() {
    let emu = emulator().await;
    let home = TempDir::new("sign-hostile");
    let creds = builder(&home, &[("GCE_METADATA_HOST", emu.host())])
        .build()
        .unwrap();
    for endpoint in [
        "http://iam.example.test/v1/",
        "ftp://127.0.0.1/v1/",
        "not a url",
    ] {
        let err = creds
            .sign_blob_with_endpoint(b"x", endpoint)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{endpoint}");
    }
    assert_eq!(emu.requests(Endpoint::IamSignBlob), 0);
    // The builder's endpoint is checked when the credentials are built.
    let err = builder(&home, &[("GCE_METADATA_HOST", emu.host())])
        .with_iam_credentials_endpoint("http://iam.example.test/v1/")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
    let big = vec![0u8; 64 * 1024 + 1];
    let err = creds
        .sign_blob_with_endpoint(&big, &iam_base(&emu))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(emu.requests(Endpoint::IamSignBlob), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_answers_are_typed_errors() {
    let emu = emulator().await;
    let home = TempDir::new("sign-faults");
    let creds = builder(&home, &[("GCE_METADATA_HOST", emu.host())])
        .with_iam_credentials_endpoint(iam_base(&emu))
        .build()
        .unwrap();
    emu.inject(Endpoint::IamSignBlob, Fault::Status(503), Some(1));
    let err = creds.sign_blob(b"x").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.status(), Some(503));
    emu.inject(Endpoint::IamSignBlob, Fault::Status(403), Some(1));
    let err = creds.sign_blob(b"x").await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("signing as"), "{err}");
    // The emulator recovered: the next signature is good.
    let (_, signature) = creds.sign_blob(b"x").await.unwrap();
    verify_with_the_emulators_key(&emu, b"x", &signature);
}
