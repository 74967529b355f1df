//! Issue 8, finding 3: a metadata server (or something answering as one) that sends an
//! `expires_in` or a JWT `exp` too large for time arithmetic gets a typed error, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use common::{client, start};
use workload_auth_core::ErrorKind;
use workload_auth_emulator::{EmulatorConfig, Endpoint, Fault};

fn jwt(payload: &str) -> String {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.c2ln",
        e.encode(r#"{"alg":"RS256"}"#),
        e.encode(payload)
    )
}

#[tokio::test]
async fn finding_3_huge_expires_in_from_the_metadata_server_is_a_typed_error() {
    let emu = start(EmulatorConfig::default()).await;
    for (expires_in, needle) in [
        ("1e300", "out of range"),
        ("18446744073709551615", "out of range"),
        ("315360001", "out of range"),
        ("-1", "negative"),
        // google-auth's compute-engine credentials do not accept a string here either.
        ("\"3600\"", "is a string"),
    ] {
        emu.clear_faults();
        let body = format!(r#"{{"access_token":"ya29.x","expires_in":{expires_in}}}"#);
        emu.inject(Endpoint::Token, Fault::Malformed(body), None);
        let err = client(&emu).access_token(&[]).await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::MalformedResponse,
            "{expires_in}: {err}"
        );
        assert!(
            err.message().contains("`expires_in` field") && err.message().contains(needle),
            "{expires_in}: {err}"
        );
        assert!(!err.to_string().contains("ya29"), "{err}");
    }
    // The longest lifetime still accepted works end to end.
    emu.clear_faults();
    let body = r#"{"access_token":"ya29.x","expires_in":315360000}"#.to_owned();
    emu.inject(Endpoint::Token, Fault::Malformed(body), None);
    let token = client(&emu).access_token(&[]).await.unwrap();
    assert!(token.expires_in().as_secs() > 315_359_000);
}

#[tokio::test]
async fn finding_3_huge_jwt_exp_from_the_identity_endpoint_is_a_typed_error() {
    let emu = start(EmulatorConfig::default()).await;
    for (exp, needle) in [
        ("1e300", "out of range"),
        ("18446744073709551615", "out of range"),
        ("253402300800", "out of range"),
        ("-1", "negative"),
        ("\"4000000000\"", "not a number"),
    ] {
        emu.clear_faults();
        let body = jwt(&format!(r#"{{"aud":"a","exp":{exp}}}"#));
        emu.inject(Endpoint::Identity, Fault::Malformed(body), None);
        let err = client(&emu)
            .id_token("https://a.example", false, false)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MalformedResponse, "{exp}: {err}");
        assert!(err.message().contains(needle), "{exp}: {err}");
        assert!(err.endpoint().unwrap().contains("/identity"), "{err}");
    }
    assert_eq!(emu.requests(Endpoint::Identity), 5, "no retries");
}
