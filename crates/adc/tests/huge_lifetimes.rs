//! Issue 8, finding 3: token endpoints (OAuth, STS, IAM) that answer with a lifetime or expiry
//! too large for time arithmetic get a typed error naming the field, never a panic; a quoted
//! integer `expires_in` is accepted, as google-auth accepts it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::json;
use workload_auth_core::{Error, ErrorKind};
use workload_auth_emulator::{Emulator, Endpoint, Fault};

/// `expires_in` values no token can have, and what the error says about each.
const BAD_EXPIRES_IN: [(&str, &str); 7] = [
    ("1e300", "out of range"),
    ("18446744073709551615", "out of range"),
    ("\"18446744073709551615\"", "out of range"),
    ("315360001", "out of range"),
    ("-1", "negative"),
    ("\"-1\"", "not a whole number"),
    ("\"1e300\"", "not a whole number"),
];

fn jwt_with_exp(exp: &str) -> String {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.c2ln",
        e.encode(r#"{"alg":"RS256"}"#),
        e.encode(format!(r#"{{"aud":"a","exp":{exp}}}"#))
    )
}

/// Loads `file` afresh (no cached token) and asks for an access token while `endpoint`
/// answers `body`.
async fn token_with_answer(
    emu: &Emulator,
    home: &TempDir,
    file: &Path,
    endpoint: Endpoint,
    body: String,
) -> workload_auth_core::Result<workload_auth_core::AccessToken> {
    emu.clear_faults();
    emu.inject(endpoint, Fault::Malformed(body), None);
    builder_for(home, file)
        .build()
        .unwrap()
        .access_token()
        .await
}

fn assert_typed(err: &Error, field: &str, needle: &str) {
    assert_eq!(err.kind(), ErrorKind::MalformedResponse, "{err}");
    assert!(
        err.message().contains(field) && err.message().contains(needle),
        "{field} {needle}: {err}"
    );
    assert!(!err.to_string().contains("ya29"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_3_oauth_and_sts_answers_with_huge_expires_in_are_typed_errors() {
    let emu = emulator().await;
    let home = TempDir::new("huge-oauth");
    let user = home.write_json("user.json", &authorized_user_json(&emu));
    let external = home.write_json(
        "external.json",
        &json!({
            "type": "external_account",
            "audience": WORKLOAD_AUDIENCE,
            "subject_token_type": "urn:ietf:params:oauth:token-type:saml2",
            "token_url": format!("{}/v1/token", emu.url()),
            "credential_source": {"file": home.write("saml.txt", SAML_TOKEN)},
        }),
    );
    let workforce = home.write_json("workforce.json", &external_authorized_user_json(&emu));
    for (file, endpoint) in [
        (&user, Endpoint::OAuthToken),
        (&external, Endpoint::StsToken),
        (&workforce, Endpoint::StsOAuthToken),
    ] {
        for (expires_in, needle) in BAD_EXPIRES_IN {
            let body = format!(r#"{{"access_token":"ya29.x","expires_in":{expires_in}}}"#);
            let err = token_with_answer(&emu, &home, file, endpoint, body)
                .await
                .unwrap_err();
            assert_typed(&err, "`expires_in`", needle);
        }
        // A quoted integer is a lifetime (some OAuth servers send one; google-auth accepts it).
        let body = r#"{"access_token":"ya29.x","expires_in":"3600"}"#.to_owned();
        let token = token_with_answer(&emu, &home, file, endpoint, body)
            .await
            .unwrap();
        assert_eq!(token.secret().expose(), "ya29.x", "the injected answer");
        let left = token.expires_in();
        assert!(
            left > Duration::from_secs(3590) && left <= Duration::from_secs(3600),
            "{left:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_3_iam_and_id_token_answers_with_huge_expiries_are_typed_errors() {
    let emu = emulator().await;
    let home = TempDir::new("huge-iam");
    let impersonated = home.write_json(
        "imp.json",
        &json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": impersonation_url(&emu, TARGET_SA),
            "source_credentials": authorized_user_json(&emu),
        }),
    );
    for expire_time in ["99999-12-31T23:59:59Z", "1e300", "18446744073709551615"] {
        let body = format!(r#"{{"accessToken":"ya29.x","expireTime":"{expire_time}"}}"#);
        let err = token_with_answer(
            &emu,
            &home,
            &impersonated,
            Endpoint::IamGenerateAccessToken,
            body,
        )
        .await
        .unwrap_err();
        assert_typed(&err, "`expireTime`", "");
    }

    // The other way round: a lifetime no Duration holds, asked of the emulator's IAM, is a 400
    // from it, not a panic that drops the connection.
    emu.clear_faults();
    let err = builder_for(&home, &impersonated)
        .with_token_lifetime(Duration::MAX)
        .build()
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.message().contains("lifetime"), "{err}");

    // ID tokens: through IAM generateIdToken, and through the JWT-bearer grant.
    let sa = home.write_json(
        "sa.json",
        &service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
    );
    for (file, endpoint, field) in [
        (&impersonated, Endpoint::IamGenerateIdToken, "token"),
        (&sa, Endpoint::OAuthToken, "id_token"),
    ] {
        for (exp, needle) in [
            ("1e300", "out of range"),
            ("18446744073709551615", "out of range"),
            ("-1", "negative"),
            ("\"3600\"", "not a number"),
        ] {
            emu.clear_faults();
            let body = json!({ field: jwt_with_exp(exp) }).to_string();
            emu.inject(endpoint, Fault::Malformed(body), None);
            let creds = builder_for(&home, file).build().unwrap();
            let err = creds.id_token("https://a.example").await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedResponse, "{exp}: {err}");
            assert!(
                err.message().contains("`exp`") && err.message().contains(needle),
                "{exp}: {err}"
            );
        }
    }
}
