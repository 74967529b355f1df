//! Regional access boundaries against the emulator: off unless enabled; looked up in the
//! background with the credential's own token, on the path of its kind; `x-allowed-locations`
//! once known; never delaying a request (even when the lookup hangs); failing open on bad
//! answers; `0x0` and skipped hosts, universes and accounts send nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{SAML_TOKEN, TARGET_SA, TempDir, WORKFORCE_AUDIENCE, WORKLOAD_AUDIENCE};
use serde_json::{Value, json};
use workload_auth_adc::{Builder, Credentials, RegionalState};
use workload_auth_emulator::{AllowedLocations, Emulator, Endpoint, Fault};

const ENABLED: (&str, &str) = ("GOOGLE_AUTH_TRUST_BOUNDARY_ENABLED", "true");

fn enabled(emu: &Emulator, builder: Builder) -> Builder {
    builder.with_iam_credentials_endpoint(format!("{}/v1/", emu.url()))
}

fn metadata_credentials(emu: &Emulator, home: &TempDir, extra: &[(&str, &str)]) -> Credentials {
    let mut vars = vec![("GCE_METADATA_HOST", emu.host())];
    vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    enabled(emu, common::builder(home, &vars)).build().unwrap()
}

/// Calls `request_headers` until `done` holds for the credentials' state (or 5 s pass).
async fn settle(credentials: &Credentials, done: impl Fn(&RegionalState) -> bool) -> RegionalState {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        credentials.request_headers().await.unwrap();
        let state = credentials.regional_access_boundary();
        if done(&state) || Instant::now() > deadline {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn is_settled(state: &RegionalState) -> bool {
    !matches!(state, RegionalState::Pending)
}

fn lookup_path(emu: &Emulator) -> String {
    emu.recent_requests()
        .into_iter()
        .find(|r| r.endpoint == Endpoint::AllowedLocations)
        .map(|r| r.path)
        .unwrap_or_default()
}

#[tokio::test]
async fn off_by_default_no_lookup_and_no_header() {
    let emu = common::emulator().await;
    let home = TempDir::new("rab-off");
    let credentials = common::builder(&home, &[("GCE_METADATA_HOST", emu.host())])
        .with_iam_credentials_endpoint(format!("{}/v1/", emu.url()))
        .build()
        .unwrap();
    for _ in 0..3 {
        let headers = credentials.request_headers().await.unwrap();
        assert_eq!(headers.allowed_locations(), None);
        assert!(
            headers
                .iter()
                .all(|(name, _)| name != "x-allowed-locations")
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        credentials.regional_access_boundary(),
        RegionalState::Disabled
    );
    assert_eq!(emu.requests(Endpoint::AllowedLocations), 0);
    // The builder option wins over the environment either way.
    let off = common::builder(
        &home,
        &[("GCE_METADATA_HOST", emu.host()), (ENABLED.0, "1".into())],
    )
    .with_regional_access_boundary(false)
    .build()
    .unwrap();
    off.request_headers().await.unwrap();
    assert_eq!(off.regional_access_boundary(), RegionalState::Disabled);
    emu.shutdown().await;
}

#[tokio::test]
async fn metadata_account_gets_the_header_after_one_background_lookup() {
    for opt_in in [
        ENABLED,
        (
            "GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED",
            "1",
        ),
    ] {
        let emu = common::emulator().await;
        let home = TempDir::new("rab-metadata");
        let credentials = metadata_credentials(&emu, &home, &[opt_in]);
        let state = settle(&credentials, is_settled).await;
        assert_eq!(
            state,
            RegionalState::Restricted {
                encoded: "0xA30".into(),
                locations: vec!["us-central1".into(), "us-east1".into()],
            }
        );
        let headers = credentials.request_headers().await.unwrap();
        assert_eq!(headers.allowed_locations(), Some("0xA30"));
        assert!(
            headers
                .iter()
                .any(|h| h == ("x-allowed-locations", "0xA30"))
        );
        // Looked up with the credential's own token, on the service-account path.
        let lookup = emu
            .recent_requests()
            .into_iter()
            .find(|r| r.endpoint == Endpoint::AllowedLocations)
            .unwrap();
        assert_eq!(
            lookup.path,
            format!(
                "/v1/projects/-/serviceAccounts/{}/allowedLocations",
                emu.config().email
            )
        );
        // The emulator answers only bearer tokens it issued (and redacts them in its log).
        assert!(lookup.header("authorization").is_some());
        // Cached: many requests, one lookup.
        for _ in 0..20 {
            credentials.request_headers().await.unwrap();
        }
        assert_eq!(emu.requests(Endpoint::AllowedLocations), 1);
        // Regional endpoints and the IAM/STS hosts go without it.
        for (url, expected) in [
            ("https://storage.googleapis.com/b/o", Some("0xA30")),
            ("https://storage.us-central1.rep.googleapis.com/b/o", None),
            (
                "https://pubsub.europe-west1.rep.sandbox.googleapis.com/",
                None,
            ),
            ("https://iamcredentials.googleapis.com/v1/x", None),
            ("https://sts.googleapis.com/v1/token", None),
        ] {
            let headers = credentials.request_headers_for(url).await.unwrap();
            assert_eq!(headers.allowed_locations(), expected, "{url}");
        }
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn a_hanging_lookup_never_delays_requests() {
    let emu = common::emulator().await;
    emu.inject(
        Endpoint::AllowedLocations,
        Fault::Delay(Duration::from_secs(30)),
        None,
    );
    let home = TempDir::new("rab-hang");
    let credentials = metadata_credentials(&emu, &home, &[ENABLED]);
    credentials.access_token().await.unwrap(); // the token itself is not what is measured
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let start = Instant::now();
        let headers = credentials.request_headers().await.unwrap();
        slowest = slowest.max(start.elapsed());
        assert_eq!(headers.allowed_locations(), None, "fail open while pending");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        slowest < Duration::from_millis(100),
        "slowest request_headers: {slowest:?}"
    );
    assert_eq!(
        credentials.regional_access_boundary(),
        RegionalState::Pending
    );
    assert_eq!(
        emu.requests(Endpoint::AllowedLocations),
        1,
        "one lookup in flight, not one per request"
    );
    // Token requests are not held up either.
    let start = Instant::now();
    credentials.invalidate();
    credentials.access_token().await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    drop(credentials);
    emu.shutdown().await;
}

#[tokio::test]
async fn malformed_and_failed_answers_fail_open() {
    let emu = common::emulator().await;
    let home = TempDir::new("rab-malformed");
    let faults = [
        Fault::Malformed("not json".into()),
        Fault::Malformed(r#"{"locations":["us-east1"]}"#.into()),
        Fault::Malformed(r#"{"encodedLocations":12}"#.into()),
        Fault::Malformed(r#"{"encodedLocations":""}"#.into()),
        Fault::Malformed(r#"{"encodedLocations":"0xA30\r\nx-evil: 1"}"#.into()),
        Fault::Malformed(format!(r#"{{"encodedLocations":"{}"}}"#, "A".repeat(5000))),
        Fault::Malformed(r#"{"encodedLocations":"0x1","locations":"us"}"#.into()),
        Fault::Truncate,
        Fault::Status(500),
        Fault::Status(403),
        Fault::Reset,
    ];
    for fault in faults {
        let shown = format!("{fault:?}");
        emu.inject(Endpoint::AllowedLocations, fault, Some(1));
        let credentials = metadata_credentials(&emu, &home, &[ENABLED]);
        let state = settle(&credentials, is_settled).await;
        assert!(
            matches!(state, RegionalState::Failing(_)),
            "{shown}: {state:?}"
        );
        let headers = credentials.request_headers().await.unwrap();
        assert_eq!(headers.allowed_locations(), None, "{shown}");
        assert!(!format!("{state:?}").contains("ya29"), "{state:?}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn no_restriction_sends_no_header() {
    let emu = common::emulator().await;
    emu.update_config(|c| {
        c.identity.allowed_locations = AllowedLocations {
            locations: vec![],
            encoded_locations: "0x0".into(),
        }
    });
    let home = TempDir::new("rab-unrestricted");
    let credentials = metadata_credentials(&emu, &home, &[ENABLED]);
    let state = settle(&credentials, is_settled).await;
    assert_eq!(state, RegionalState::Unrestricted);
    assert_eq!(
        credentials
            .request_headers()
            .await
            .unwrap()
            .allowed_locations(),
        None
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn skipped_for_foreign_accounts_and_other_universes() {
    let emu = common::emulator().await;
    let home = TempDir::new("rab-skip");
    emu.update_config(|c| c.email = "someone@example.com".into());
    let credentials = metadata_credentials(&emu, &home, &[ENABLED]);
    let state = settle(&credentials, is_settled).await;
    assert!(
        matches!(state, RegionalState::NotApplicable(ref why) if why.contains("gserviceaccount")),
        "{state:?}"
    );
    emu.update_config(|c| {
        c.email = "sa@p.iam.gserviceaccount.com".into();
        c.universe_domain = Some("example-universe.test".into());
    });
    let credentials = metadata_credentials(&emu, &home, &[ENABLED]);
    let state = settle(&credentials, is_settled).await;
    assert!(
        matches!(state, RegionalState::NotApplicable(ref why) if why.contains("universe")),
        "{state:?}"
    );
    assert_eq!(emu.requests(Endpoint::AllowedLocations), 0);
    // User credentials have no boundary at all.
    let file = home.write_json("user.json", &common::authorized_user_json(&emu));
    let user = enabled(
        &emu,
        common::builder(
            &home,
            &[
                ("GOOGLE_APPLICATION_CREDENTIALS", file.display().to_string()),
                (ENABLED.0, ENABLED.1.into()),
            ],
        ),
    )
    .build()
    .unwrap();
    assert_eq!(user.regional_access_boundary(), RegionalState::Disabled);
    emu.shutdown().await;
}

#[tokio::test]
async fn each_credential_kind_looks_up_its_own_path() {
    let emu = common::emulator().await;
    let home = TempDir::new("rab-paths");
    let saml = home.write("saml.txt", SAML_TOKEN);
    let external = |audience: &str| -> Value {
        json!({
            "type": "external_account",
            "audience": audience,
            "subject_token_type": "urn:ietf:params:oauth:token-type:saml2",
            "token_url": format!("{}/v1/token", emu.url()),
            "credential_source": {"file": saml.display().to_string()},
        })
    };
    let mut workforce = external(WORKFORCE_AUDIENCE);
    workforce["workforce_pool_user_project"] = json!("wf-user-project");
    let mut impersonated = external(WORKLOAD_AUDIENCE);
    impersonated["service_account_impersonation_url"] =
        json!(common::impersonation_url(&emu, TARGET_SA));
    let cases = [
        (
            common::service_account_json(
                &emu,
                "test_rsa_pkcs8.pem",
                common::SA_EMAIL,
                common::RSA_KEY_ID,
            ),
            format!("/v1/projects/-/serviceAccounts/{}/allowedLocations", common::SA_EMAIL),
        ),
        (
            external(WORKLOAD_AUDIENCE),
            "/v1/projects/123456789012/locations/global/workloadIdentityPools/test-pool/allowedLocations"
                .to_owned(),
        ),
        (
            workforce,
            "/v1/locations/global/workforcePools/test-wf-pool/allowedLocations".to_owned(),
        ),
        (
            impersonated,
            format!("/v1/projects/-/serviceAccounts/{TARGET_SA}/allowedLocations"),
        ),
    ];
    for (i, (file, path)) in cases.into_iter().enumerate() {
        emu.reset_counters();
        let file = home.write_json(&format!("cred-{i}.json"), &file);
        let credentials = enabled(
            &emu,
            common::builder(
                &home,
                &[
                    ("GOOGLE_APPLICATION_CREDENTIALS", file.display().to_string()),
                    (ENABLED.0, ENABLED.1.into()),
                ],
            ),
        )
        .build()
        .unwrap();
        let state = settle(&credentials, is_settled).await;
        assert!(
            matches!(state, RegionalState::Restricted { .. }),
            "{path}: {state:?}"
        );
        assert_eq!(lookup_path(&emu), path);
    }
    emu.shutdown().await;
}

/// With a client certificate (X.509 workload identity federation), the lookup goes over mutual
/// TLS, with the same certificate, as it must to `iamcredentials.mtls.googleapis.com` (the
/// host itself is pinned in the unit tests; here the emulator's mTLS listener stands in for it
/// and refuses any connection without a certificate it trusts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_credentials_look_up_over_mutual_tls() {
    use workload_auth_adc::CertificateDer;
    use workload_auth_emulator::ca::TrustDomainCa;

    let emu = common::emulator().await;
    let home = TempDir::new("rab-mtls");
    let ca = TrustDomainCa::new("workload.example").unwrap();
    let svid = ca
        .issue("spiffe://workload.example/ns/default/sa/app")
        .unwrap();
    let cert = home.write("certs/workload.pem", svid.chain_pem());
    let key = home.write("certs/workload.key", svid.private_key_pem().expose());
    let trust_chain = home.write("certs/chain.pem", ca.intermediate_pem());
    let config = home.write_json(
        "certificate_config.json",
        &json!({"version": 1, "cert_configs": {"workload": {"cert_path": cert, "key_path": key}}}),
    );
    let listener = emu.start_mtls(&[ca.root_der().to_vec()]).await.unwrap();
    let file = json!({
        "type": "external_account",
        "audience": WORKLOAD_AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:mtls",
        "token_url": format!("{}/v1/token", listener.url()),
        "credential_source": {"certificate": {
            "use_default_certificate_config": true, "trust_chain_path": trust_chain,
        }},
    });
    let path = home.write_json("x509.json", &file);
    let vars = [
        (
            "GOOGLE_API_CERTIFICATE_CONFIG",
            config.display().to_string(),
        ),
        ("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string()),
        (ENABLED.0, ENABLED.1.to_owned()),
    ];
    let credentials = common::builder(&home, &vars)
        .with_tls_root_certificates([CertificateDer::from(listener.server_root_der().to_vec())])
        .with_iam_credentials_endpoint(format!("{}/v1/", listener.url()))
        .build()
        .unwrap();
    let state = settle(&credentials, is_settled).await;
    assert!(
        matches!(&state, RegionalState::Restricted { encoded, .. } if encoded == "0xA30"),
        "{state:?}"
    );
    let lookup = emu
        .recent_requests()
        .into_iter()
        .find(|r| r.endpoint == Endpoint::AllowedLocations)
        .unwrap();
    assert_eq!(
        lookup.path,
        "/v1/projects/123456789012/locations/global/workloadIdentityPools/test-pool/allowedLocations"
    );
    // The emulator's mTLS listener attaches the certificate the connection presented.
    assert!(
        lookup
            .header("x-emulator-mtls-client-certificate")
            .is_some(),
        "the lookup did not present the client certificate"
    );
    emu.shutdown().await;
}
