//! `service_account` key files against the emulator: the JWT-bearer grant with RSA (PKCS#8 and
//! PKCS#1) and EC P-256 keys, `kid`, ID tokens, self-signed JWTs (AIP-4111), caching, and the
//! errors of a refused key and of a failing endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use serde_json::json;
use workload_auth_adc::CredentialType;
use workload_auth_core::ErrorKind;
use workload_auth_emulator::{Endpoint, Fault};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_form_gets_a_token_the_emulator_verified() {
    let emu = emulator().await;
    for (file, email, kid, alg) in [
        ("test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID, "RS256"),
        ("test_rsa_pkcs1.pem", SA_EMAIL, RSA_KEY_ID, "RS256"),
        ("test_ec_p256_pkcs8.pem", EC_SA_EMAIL, EC_KEY_ID, "ES256"),
        ("test_ec_p256_sec1.pem", EC_SA_EMAIL, EC_KEY_ID, "ES256"),
    ] {
        let home = TempDir::new("sa");
        let path = home.write_json("sa.json", &service_account_json(&emu, file, email, kid));
        let creds = builder_for(&home, &path).build().unwrap();
        assert_eq!(creds.credential_type(), CredentialType::ServiceAccount);
        assert_eq!(
            creds.project_id().await.unwrap().as_deref(),
            Some("test-project")
        );
        let before = emu.requests(Endpoint::OAuthToken);
        let token = creds.access_token().await.unwrap();
        assert_eq!(emu.requests(Endpoint::OAuthToken), before + 1, "{file}");
        let issued = emu
            .issued_token(token.secret().expose())
            .unwrap_or_else(|| panic!("{file}: the emulator did not issue this token"));
        assert_eq!(issued.scopes, [CLOUD_PLATFORM], "{file}");
        assert!(token.expires_in() > Duration::from_secs(3000));
        // Cached: no second request.
        let again = creds.access_token().await.unwrap();
        assert_eq!(again, token);
        assert_eq!(emu.requests(Endpoint::OAuthToken), before + 1);
        let _ = alg;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_kid_and_algorithm_reach_the_token_endpoint() {
    let emu = emulator().await;
    let home = TempDir::new("sa-scopes");
    let path = home.write_json(
        "sa.json",
        &service_account_json(&emu, "test_ec_p256_pkcs8.pem", EC_SA_EMAIL, EC_KEY_ID),
    );
    let creds = builder_for(&home, &path)
        .with_scopes(["https://www.googleapis.com/auth/devstorage.read_only"])
        .build()
        .unwrap();
    let token = creds.access_token().await.unwrap();
    assert_eq!(
        emu.issued_token(token.secret().expose()).unwrap().scopes,
        ["https://www.googleapis.com/auth/devstorage.read_only"]
    );
    // Another scope set: its own cache and request.
    let scoped = creds
        .access_token_with_scopes(&["https://www.googleapis.com/auth/pubsub", CLOUD_PLATFORM])
        .await
        .unwrap();
    let mut scopes = emu.issued_token(scoped.secret().expose()).unwrap().scopes;
    scopes.sort();
    assert_eq!(
        scopes,
        [CLOUD_PLATFORM, "https://www.googleapis.com/auth/pubsub"]
    );
    assert_eq!(emu.requests(Endpoint::OAuthToken), 2);
    let again = creds
        .access_token_with_scopes(&[CLOUD_PLATFORM, "https://www.googleapis.com/auth/pubsub"])
        .await
        .unwrap();
    assert_eq!(again, scoped, "same set in another order: same cache");
    assert_eq!(emu.requests(Endpoint::OAuthToken), 2);

    // A wrong kid is refused by the emulator: the header really carries it.
    let mut wrong_kid =
        service_account_json(&emu, "test_ec_p256_pkcs8.pem", EC_SA_EMAIL, "other-kid");
    wrong_kid["project_id"] = json!("p");
    let path = home.write_json("wrong-kid.json", &wrong_kid);
    let err = builder_for(&home, &path)
        .build()
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_come_from_the_jwt_bearer_grant_and_are_cached_per_audience() {
    let emu = emulator().await;
    let home = TempDir::new("sa-id");
    let path = home.write_json(
        "sa.json",
        &service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
    );
    let creds = builder_for(&home, &path).build().unwrap();
    let a = creds.id_token("https://a.example.com").await.unwrap();
    let claims = verified_claims(&emu, a.secret().expose());
    assert_eq!(claims["aud"], "https://a.example.com");
    assert_eq!(claims["email"], SA_EMAIL);
    assert_eq!(claims["iss"], "https://accounts.google.com");
    let b = creds.id_token("https://b.example.com").await.unwrap();
    assert_eq!(
        verified_claims(&emu, b.secret().expose())["aud"],
        "https://b.example.com"
    );
    assert_eq!(creds.id_token("https://a.example.com").await.unwrap(), a);
    assert_eq!(emu.requests(Endpoint::OAuthToken), 2);
    let err = creds.id_token("  ").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_jwts_need_no_network_and_iam_accepts_them() {
    let emu = emulator().await;
    let home = TempDir::new("sa-jwt");
    let path = home.write_json(
        "sa.json",
        &service_account_json(&emu, "test_rsa_pkcs1.pem", SA_EMAIL, RSA_KEY_ID),
    );
    let creds = builder_for(&home, &path)
        .with_self_signed_jwt(true)
        .build()
        .unwrap();
    let token = creds.access_token().await.unwrap();
    assert_eq!(
        emu.total_requests(),
        0,
        "a self-signed JWT needs no request"
    );
    let jwt = token.secret().expose();
    let claims = claims(jwt);
    assert_eq!(claims["iss"], SA_EMAIL);
    assert_eq!(claims["sub"], SA_EMAIL);
    assert_eq!(claims["scope"], CLOUD_PLATFORM);
    assert!(claims.get("aud").is_none(), "scope xor aud");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    assert_eq!(header(jwt)["kid"], RSA_KEY_ID);

    let for_api = creds
        .self_signed_jwt("https://iamcredentials.googleapis.com/")
        .await
        .unwrap();
    let api_claims = common::claims(for_api.secret().expose());
    assert_eq!(api_claims["aud"], "https://iamcredentials.googleapis.com/");
    assert!(api_claims.get("scope").is_none(), "scope xor aud");

    // Used as a bearer token, IAM (the emulator) accepts it: here, to impersonate.
    let imp = home.write_json(
        "imp.json",
        &json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": impersonation_url(&emu, TARGET_SA),
            "source_credentials": service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
        }),
    );
    let impersonated = builder_for(&home, &imp)
        .with_self_signed_jwt(true)
        .build()
        .unwrap();
    let target = impersonated.access_token().await.unwrap();
    assert!(emu.issued_token(target.secret().expose()).is_some());
    assert_eq!(emu.requests(Endpoint::OAuthToken), 0);
    assert_eq!(emu.requests(Endpoint::IamGenerateAccessToken), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_universes_always_self_sign() {
    let emu = emulator().await;
    let home = TempDir::new("sa-universe");
    let mut sa = service_account_json(&emu, "test_ec_p256_pkcs8.pem", EC_SA_EMAIL, EC_KEY_ID);
    sa["universe_domain"] = json!("example-universe.test");
    let path = home.write_json("sa.json", &sa);
    let creds = builder_for(&home, &path).build().unwrap();
    assert_eq!(
        creds.universe_domain().await.unwrap(),
        "example-universe.test"
    );
    let token = creds.access_token().await.unwrap();
    assert_eq!(header(token.secret().expose())["alg"], "ES256");
    assert_eq!(emu.total_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_server_does_not_know_is_a_permanent_refusal() {
    let emu = emulator().await;
    let home = TempDir::new("sa-refused");
    let path = home.write_json(
        "sa.json",
        &service_account_json(&emu, "test_rsa_other_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
    );
    let creds = builder_for(&home, &path).build().unwrap();
    let err = creds.access_token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(!err.is_transient());
    assert_eq!(err.status(), Some(400));
    assert!(err.message().contains("invalid_grant"), "{err}");
    assert!(err.hint().unwrap().contains("key"), "{err}");
    assert!(err.endpoint().unwrap().ends_with("/token"));
    assert!(!err.to_string().contains("PRIVATE KEY"));
    // Not retried: one request.
    assert_eq!(emu.requests(Endpoint::OAuthToken), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_transient_and_retried() {
    let emu = emulator().await;
    let home = TempDir::new("sa-5xx");
    let path = home.write_json(
        "sa.json",
        &service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
    );
    let creds = builder_for(&home, &path).build().unwrap();
    emu.inject(Endpoint::OAuthToken, Fault::Status(503), Some(1));
    emu.inject(Endpoint::OAuthToken, Fault::Status(429), Some(1));
    let token = creds.access_token().await.unwrap();
    assert!(emu.issued_token(token.secret().expose()).is_some());
    assert_eq!(emu.requests(Endpoint::OAuthToken), 3);

    // Always failing: a transient error after the retries (3 attempts in these tests).
    let path = home.write_json(
        "sa2.json",
        &service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
    );
    let creds = builder_for(&home, &path).build().unwrap();
    emu.inject(Endpoint::OAuthToken, Fault::Status(500), None);
    let err = creds.id_token("https://x.example").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.status(), Some(500));
    assert_eq!(emu.requests(Endpoint::OAuthToken), 6);
    emu.clear_faults();

    // A malformed answer is a malformed-response error naming the endpoint.
    let path = home.write_json(
        "sa3.json",
        &service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
    );
    let creds = builder_for(&home, &path).build().unwrap();
    emu.inject(
        Endpoint::OAuthToken,
        Fault::Malformed("{\"token\": 1}".into()),
        Some(1),
    );
    let err = creds.access_token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedResponse, "{err}");
    assert!(err.endpoint().unwrap().contains("/token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_calls_work_without_a_runtime() {
    let emu = emulator().await;
    let home = TempDir::new("sa-blocking");
    let path = home.write_json(
        "sa.json",
        &service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
    );
    let creds = builder_for(&home, &path).build().unwrap();
    let (token, id) = tokio::task::spawn_blocking(move || {
        (
            creds.access_token_blocking().unwrap(),
            creds.id_token_blocking("https://aud.example").unwrap(),
        )
    })
    .await
    .unwrap();
    assert!(token.expires_at() > SystemTime::now());
    assert_eq!(
        verified_claims(&emu, id.secret().expose())["aud"],
        "https://aud.example"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_refused_not_followed() {
    let emu = emulator().await;
    let home = TempDir::new("sa-redirect");
    let path = home.write_json(
        "sa.json",
        &service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
    );
    let creds = builder_for(&home, &path).build().unwrap();
    // A redirect to the emulator's own token endpoint would succeed if it were followed.
    emu.inject(
        Endpoint::OAuthToken,
        Fault::Redirect(format!("{}/token", emu.url())),
        Some(1),
    );
    let err = creds.access_token().await.unwrap_err();
    assert_eq!(err.status(), Some(302), "{err}");
    assert!(err.message().contains("redirect"), "{err}");
    assert!(!err.is_transient());
    assert_eq!(
        emu.requests(Endpoint::OAuthToken),
        1,
        "not followed, not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_fetch() {
    let emu = emulator().await;
    emu.inject(
        Endpoint::OAuthToken,
        Fault::Delay(Duration::from_millis(200)),
        Some(1),
    );
    let home = TempDir::new("sa-single-flight");
    let path = home.write_json(
        "sa.json",
        &service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
    );
    let creds = builder_for(&home, &path).build().unwrap();
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let creds = creds.clone();
            tokio::spawn(async move { creds.access_token().await.unwrap() })
        })
        .collect();
    let mut tokens = Vec::new();
    for call in calls {
        tokens.push(call.await.unwrap());
    }
    assert!(tokens.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(emu.requests(Endpoint::OAuthToken), 1);
}
