//! `authorized_user`, `external_account_authorized_user` and `impersonated_service_account`
//! against the emulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use serde_json::json;
use workload_auth_adc::{CredentialType, QuotaProjectSource};
use workload_auth_core::ErrorKind;
use workload_auth_emulator::{Emulator, Endpoint, Fault, RefreshTokenGrant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_user_refreshes_and_sends_the_quota_project() {
    let emu = emulator().await;
    let home = TempDir::new("user");
    let path = home.write_json(
        ".config/gcloud/application_default_credentials.json",
        &authorized_user_json(&emu),
    );
    let creds = builder(&home, &[]).build().unwrap();
    assert_eq!(creds.credential_type(), CredentialType::AuthorizedUser);
    assert_eq!(creds.quota_project_id(), Some("user-quota-project"));
    let headers = creds.request_headers().await.unwrap();
    assert_eq!(headers.user_project(), Some("user-quota-project"));
    let token = headers
        .authorization()
        .expose()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned();
    let issued = emu.issued_token(&token).unwrap();
    assert!(
        issued.scopes.contains(&CLOUD_PLATFORM.to_owned()),
        "the grant's own scopes"
    );
    let explanation = creds.explain().await;
    assert_eq!(
        explanation.quota_project_source,
        Some(QuotaProjectSource::CredentialsFile)
    );
    assert_eq!(
        explanation.credential_source.as_deref(),
        Some(path.display().to_string().as_str())
    );

    // Narrowing scopes sends `scope`; a scope the grant lacks is refused.
    let narrow = creds
        .access_token_with_scopes(&["https://www.googleapis.com/auth/userinfo.email"])
        .await
        .unwrap();
    assert_eq!(
        emu.issued_token(narrow.secret().expose()).unwrap().scopes,
        ["https://www.googleapis.com/auth/userinfo.email"]
    );
    let err = creds
        .access_token_with_scopes(&["https://www.googleapis.com/auth/bigquery"])
        .await
        .unwrap_err();
    assert!(err.message().contains("invalid_scope"), "{err}");

    // GOOGLE_CLOUD_QUOTA_PROJECT beats the file; the builder beats both.
    let creds = builder(&home, &[("GOOGLE_CLOUD_QUOTA_PROJECT", "env-quota".into())])
        .build()
        .unwrap();
    assert_eq!(creds.quota_project_id(), Some("env-quota"));
    let creds = builder(&home, &[("GOOGLE_CLOUD_QUOTA_PROJECT", "env-quota".into())])
        .with_quota_project("builder-quota")
        .build()
        .unwrap();
    assert_eq!(creds.quota_project_id(), Some("builder-quota"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_says_log_in_again() {
    let emu = emulator().await;
    let home = TempDir::new("user-revoked");
    let mut user = authorized_user_json(&emu);
    user["refresh_token"] = json!("1//revoked-long-ago");
    let path = home.write_json("user.json", &user);
    let creds = builder_for(&home, &path).build().unwrap();
    let err = creds.access_token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(!err.is_transient());
    assert!(
        err.to_string()
            .contains("gcloud auth application-default login"),
        "{err}"
    );
    assert!(
        !err.to_string().contains("revoked-long-ago"),
        "no secret in errors: {err}"
    );
    assert_eq!(
        emu.requests(Endpoint::OAuthToken),
        1,
        "permanent: not retried"
    );
    // Remembered for the cooldown: a caller in a loop does not hammer the endpoint.
    let _ = creds.access_token().await.unwrap_err();
    assert_eq!(emu.requests(Endpoint::OAuthToken), 1);

    // A wrong client secret is a refusal too.
    let mut user = authorized_user_json(&emu);
    user["client_secret"] = json!("wrong-secret");
    let path = home.write_json("user2.json", &user);
    let err = builder_for(&home, &path)
        .build()
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.message().contains("invalid_client"), "{err}");
    assert!(!err.to_string().contains("wrong-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_credentials_retry_429_and_cannot_mint_id_tokens() {
    let emu = emulator().await;
    let home = TempDir::new("user-429");
    let path = home.write_json("user.json", &authorized_user_json(&emu));
    let creds = builder_for(&home, &path).build().unwrap();
    emu.inject(Endpoint::OAuthToken, Fault::Status(429), Some(2));
    creds.access_token().await.unwrap();
    assert_eq!(emu.requests(Endpoint::OAuthToken), 3);
    let err = creds.id_token("https://svc.example").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.hint().unwrap().contains("impersonate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_authorized_user_uses_basic_auth_and_follows_rotation() {
    let emu = emulator().await;
    emu.update_config(|c| {
        for g in &mut c.identity.refresh_tokens {
            if g.refresh_token.expose() == WF_REFRESH_TOKEN {
                g.rotate = true;
            }
        }
    });
    let home = TempDir::new("eaau");
    let path = home.write_json("wf-user.json", &external_authorized_user_json(&emu));
    let creds = builder_for(&home, &path)
        .with_cache_config(workload_auth_core::CacheConfig {
            // Every call refreshes, so rotation is exercised twice.
            refresh_early: Duration::from_secs(10_000),
            ..fast_cache()
        })
        .build()
        .unwrap();
    assert_eq!(
        creds.credential_type(),
        CredentialType::ExternalAccountAuthorizedUser
    );
    assert_eq!(creds.quota_project_id(), Some("wf-quota-project"));
    let first = creds.access_token().await.unwrap();
    assert!(emu.issued_token(first.secret().expose()).is_some());
    // The emulator rotated the refresh token; the old one no longer works, so a second
    // refresh only succeeds if the rotated token was kept.
    creds.invalidate();
    let second = creds.access_token().await.unwrap();
    assert_ne!(first, second);
    assert_eq!(emu.requests(Endpoint::StsOAuthToken), 2);
    let basic = emu
        .recent_requests()
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::StsOAuthToken)
        .all(|r| r.header("authorization").is_some());
    assert!(basic, "client authentication is sent");

    // Wrong client secret: a refusal.
    let mut bad = external_authorized_user_json(&emu);
    bad["client_secret"] = json!("nope");
    let path = home.write_json("bad.json", &bad);
    let err = builder_for(&home, &path)
        .build()
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");

    // Missing refresh fields is an error at load time naming them.
    let mut missing = external_authorized_user_json(&emu);
    missing.as_object_mut().unwrap().remove("client_secret");
    missing.as_object_mut().unwrap().remove("token_url");
    let path = home.write_json("missing.json", &missing);
    let err = builder_for(&home, &path).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
    assert!(
        err.message().contains("`token_url`") && err.message().contains("`client_secret`"),
        "{err}"
    );
}

fn impersonated_json(
    emu: &Emulator,
    source: serde_json::Value,
    delegates: &[&str],
) -> serde_json::Value {
    json!({
        "type": "impersonated_service_account",
        "delegates": delegates.iter().map(|d| format!("projects/-/serviceAccounts/{d}")).collect::<Vec<_>>(),
        "service_account_impersonation_url": impersonation_url(emu, TARGET_SA),
        "source_credentials": source,
        "quota_project_id": "imp-quota",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_works_from_each_source_type() {
    let emu = emulator().await;
    let home = TempDir::new("imp");
    let sources = [
        (
            "authorized_user",
            authorized_user_json(&emu),
            Endpoint::OAuthToken,
        ),
        (
            "service_account",
            service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
            Endpoint::OAuthToken,
        ),
        (
            "external_account_authorized_user",
            external_authorized_user_json(&emu),
            Endpoint::StsOAuthToken,
        ),
    ];
    for (name, source, source_endpoint) in sources {
        emu.reset_counters();
        let path = home.write_json(
            &format!("{name}.json"),
            &impersonated_json(&emu, source, &[]),
        );
        let creds = builder_for(&home, &path).build().unwrap();
        assert_eq!(
            creds.credential_type(),
            CredentialType::ImpersonatedServiceAccount
        );
        assert_eq!(creds.quota_project_id(), Some("imp-quota"));
        assert_eq!(
            creds.project_id().await.unwrap(),
            None,
            "google-auth gives none"
        );
        let token = creds.access_token().await.unwrap();
        let issued = emu.issued_token(token.secret().expose()).unwrap();
        assert_eq!(issued.scopes, [CLOUD_PLATFORM], "{name}");
        let remaining = token
            .expires_at()
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(remaining > Duration::from_secs(3500) && remaining <= Duration::from_secs(3600));
        assert_eq!(emu.requests(source_endpoint), 1, "{name}: one source token");
        assert_eq!(emu.requests(Endpoint::IamGenerateAccessToken), 1, "{name}");

        // ID tokens through generateIdToken reuse the cached source token.
        let id = creds.id_token("https://svc.example").await.unwrap();
        let claims = verified_claims(&emu, id.secret().expose());
        assert_eq!(claims["aud"], "https://svc.example");
        assert_eq!(claims["email"], TARGET_SA, "{name}");
        assert_eq!(
            emu.requests(source_endpoint),
            1,
            "{name}: source token cached"
        );
        assert_eq!(emu.requests(Endpoint::IamGenerateIdToken), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegates_lifetime_and_refusals() {
    let emu = emulator().await;
    let home = TempDir::new("imp-delegates");
    let path = home.write_json(
        "imp.json",
        &impersonated_json(&emu, authorized_user_json(&emu), &[DELEGATE_SA]),
    );
    let creds = builder_for(&home, &path)
        .with_token_lifetime(Duration::from_secs(900))
        .build()
        .unwrap();
    let token = creds.access_token().await.unwrap();
    let remaining = token
        .expires_at()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(
        remaining <= Duration::from_secs(900) && remaining > Duration::from_secs(800),
        "{remaining:?}"
    );
    let explanation = creds.explain().await;
    assert!(
        explanation
            .details
            .iter()
            .any(|d| d.name == "delegates" && d.value.contains(DELEGATE_SA))
    );

    // An unknown delegate is refused by IAM (404 NOT_FOUND).
    let path = home.write_json(
        "imp-bad-delegate.json",
        &impersonated_json(
            &emu,
            authorized_user_json(&emu),
            &["nobody@x.iam.gserviceaccount.com"],
        ),
    );
    let err = builder_for(&home, &path)
        .build()
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    assert!(err.message().contains("NOT_FOUND"), "{err}");

    // A lifetime over IAM's maximum is refused with IAM's message.
    let path = home.write_json(
        "imp-long.json",
        &impersonated_json(&emu, authorized_user_json(&emu), &[]),
    );
    let err = builder_for(&home, &path)
        .with_token_lifetime(Duration::from_secs(7200))
        .build()
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert!(err.message().contains("lifetime"), "{err}");

    // The source's token is refused by IAM when it lacks an IAM scope.
    emu.update_config(|c| {
        c.identity.refresh_tokens.push(RefreshTokenGrant {
            scopes: vec!["https://www.googleapis.com/auth/userinfo.email".into()],
            ..RefreshTokenGrant::new("1//email-only", CLIENT_ID)
        });
    });
    let mut source = authorized_user_json(&emu);
    source["refresh_token"] = json!("1//email-only");
    let path = home.write_json("imp-scope.json", &impersonated_json(&emu, source, &[]));
    let err = builder_for(&home, &path)
        .build()
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(
        err.hint().unwrap().contains("serviceAccountTokenCreator"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_sources_and_bad_urls_are_load_errors() {
    let emu = emulator().await;
    let home = TempDir::new("imp-bad");
    let mut file = impersonated_json(&emu, json!({"type": "external_account"}), &[]);
    let path = home.write_json("ext.json", &file);
    let err = builder_for(&home, &path).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
    assert!(err.message().contains("\"external_account\""), "{err}");
    assert!(
        err.message().contains("authorized_user, service_account"),
        "{err}"
    );

    file["source_credentials"] = authorized_user_json(&emu);
    file["service_account_impersonation_url"] =
        json!("http://evil.example/v1/projects/-/serviceAccounts/x@y.com:generateAccessToken");
    let path = home.write_json("evil.json", &file);
    let err = builder_for(&home, &path).build().unwrap_err();
    assert!(
        err.message().contains("service_account_impersonation_url"),
        "{err}"
    );

    file["service_account_impersonation_url"] = json!(format!("{}/v1/nothing-here", emu.url()));
    let path = home.write_json("no-target.json", &file);
    let err = builder_for(&home, &path).build().unwrap_err();
    assert!(
        err.message().contains("does not name a service account"),
        "{err}"
    );
    assert_eq!(
        emu.total_requests(),
        0,
        "nothing was sent for a refused file"
    );
}
