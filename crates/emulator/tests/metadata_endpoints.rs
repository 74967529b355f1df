//! Every metadata endpoint, over a real socket with a real HTTP client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use serde_json::Value;
use workload_auth_core::SecretString;
use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint, WorkloadCertificates};

use common::{client, get, get_text};

const V1: &str = "/computeMetadata/v1/";

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::default()).await.unwrap()
}

#[tokio::test]
async fn root_answers_without_the_flavor_header() {
    let emu = emulator().await;
    let response = client().get(emu.url()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["metadata-flavor"], "Google");
    assert_eq!(headers["server"], "Metadata Server for VM");
    assert_eq!(headers["content-type"], "application/text");
    assert_eq!(response.text().await.unwrap(), "computeMetadata/\n");
    assert_eq!(emu.requests(Endpoint::Root), 1);
}

#[tokio::test]
async fn metadata_paths_require_the_flavor_header_in_any_case() {
    let emu = emulator().await;
    let http = client();
    let url = format!("{}{V1}project/project-id", emu.url());

    let refused = http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.headers()["metadata-flavor"], "Google");
    assert!(refused.text().await.unwrap().contains("Metadata-Flavor"));

    let wrong = http.get(&url).header("Metadata-Flavor", "Amazon");
    assert_eq!(wrong.send().await.unwrap().status(), 403);

    for (name, value) in [("metadata-flavor", "google"), ("METADATA-FLAVOR", "GOOGLE")] {
        let ok = http.get(&url).header(name, value).send().await.unwrap();
        assert_eq!(ok.status(), 200, "{name}: {value}");
        assert_eq!(ok.text().await.unwrap(), "emulated-project");
    }

    let proxied = http
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .header("X-Forwarded-For", "10.0.0.1");
    assert_eq!(proxied.send().await.unwrap().status(), 403);
    assert_eq!(
        emu.requests(Endpoint::ProjectId),
        5,
        "refused requests count too"
    );
}

#[tokio::test]
async fn token_is_json_with_the_configured_lifetime() {
    let emu = Emulator::start(EmulatorConfig {
        token_lifetime: Duration::from_secs(1234),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let http = client();
    let response = get(
        &http,
        &emu.url(),
        &format!("{V1}instance/service-accounts/default/token"),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["metadata-flavor"], "Google");
    let json: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(json["expires_in"], 1234);
    assert_eq!(json["token_type"], "Bearer");
    let token = json["access_token"].as_str().unwrap();
    assert!(token.starts_with("ya29.emulated-"), "{token}");
    let issued = emu
        .issued_token(token)
        .expect("the emulator remembers its tokens");
    assert_eq!(
        issued.scopes,
        ["https://www.googleapis.com/auth/cloud-platform"]
    );
    assert_eq!(emu.requests(Endpoint::Token), 1);
}

#[tokio::test]
async fn token_takes_scopes_and_the_account_email() {
    let emu = emulator().await;
    let http = client();
    let email = emu.config().email;
    let (status, body) = get_text(
        &http,
        &emu.url(),
        &format!("{V1}instance/service-accounts/{email}/token?scopes=scope-a,scope-b"),
    )
    .await;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_str(&body).unwrap();
    let issued = emu
        .issued_token(json["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(issued.scopes, ["scope-a", "scope-b"]);
    let recorded = emu.recent_requests().pop().unwrap();
    assert_eq!(recorded.endpoint, Endpoint::Token);
    assert_eq!(recorded.query_param("scopes"), Some("scope-a,scope-b"));

    let (status, _) = get_text(
        &http,
        &emu.url(),
        &format!("{V1}instance/service-accounts/someone-else@x.iam.gserviceaccount.com/token"),
    )
    .await;
    assert_eq!(status, 404);

    // google-auth POSTs here when it asks for certificate-bound tokens.
    let posted = http
        .post(format!(
            "{}{V1}instance/service-accounts/default/token",
            emu.url()
        ))
        .header("Metadata-Flavor", "Google")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    assert_eq!(emu.requests(Endpoint::Token), 3);
}

/// Verifies an RS256 JWT against the JWKS served by the emulator and returns its claims.
async fn verify_with_jwks(emu: &Emulator, jwt: &str) -> Value {
    let (status, jwks) = get_text(&client(), &emu.url(), "/oauth2/v3/certs").await;
    assert_eq!(status, 200);
    let jwks: Value = serde_json::from_str(&jwks).unwrap();
    let mut parts = jwt.split('.');
    let (header, claims, signature) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    assert!(parts.next().is_none());
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the JWT's kid is in the JWKS");
    assert_eq!(key["kty"], "RSA");
    let public = RsaPublicKeyComponents {
        n: URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap(),
        e: URL_SAFE_NO_PAD.decode(key["e"].as_str().unwrap()).unwrap(),
    };
    let signed = &jwt[..jwt.rfind('.').unwrap()];
    public
        .verify(
            &RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &URL_SAFE_NO_PAD.decode(signature).unwrap(),
        )
        .expect("signature verifies with the JWKS key");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap()
}

#[tokio::test]
async fn identity_is_a_signed_jwt_for_the_audience() {
    let emu = emulator().await;
    let http = client();
    let base = format!("{V1}instance/service-accounts/default/identity");

    let (status, _) = get_text(&http, &emu.url(), &base).await;
    assert_eq!(status, 400, "audience is required");
    let (status, _) = get_text(&http, &emu.url(), &format!("{base}?audience=")).await;
    assert_eq!(status, 400, "audience must not be empty");

    let response = get(
        &http,
        &emu.url(),
        &format!("{base}?audience=https%3A%2F%2Fsvc.example.com"),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/text");
    let jwt = response.text().await.unwrap();
    let claims = verify_with_jwks(&emu, &jwt).await;
    let config = emu.config();
    assert_eq!(claims["aud"], "https://svc.example.com");
    assert_eq!(claims["iss"], "https://accounts.google.com");
    assert_eq!(claims["sub"], config.unique_id.as_str());
    assert_eq!(claims["azp"], config.unique_id.as_str());
    assert!(
        claims.get("email").is_none(),
        "standard format has no email"
    );
    let iat = claims["iat"].as_u64().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(iat.abs_diff(now) < 60);
    assert_eq!(claims["exp"].as_u64().unwrap() - iat, 3600);
    assert_eq!(emu.requests(Endpoint::Identity), 3);
    assert_eq!(emu.requests(Endpoint::Jwks), 1);
}

#[tokio::test]
async fn identity_full_format_adds_email_and_instance_claims() {
    let emu = emulator().await;
    let http = client();
    let base = format!("{V1}instance/service-accounts/default/identity?audience=aud");
    let (_, jwt) = get_text(&http, &emu.url(), &format!("{base}&format=full")).await;
    let claims = verify_with_jwks(&emu, &jwt).await;
    assert_eq!(claims["email"], emu.config().email.as_str());
    assert_eq!(claims["email_verified"], true);
    let gce = &claims["google"]["compute_engine"];
    assert_eq!(gce["project_id"], "emulated-project");
    assert_eq!(gce["project_number"], 123_456_789_012u64);
    assert!(gce.get("license_id").is_none());

    let (_, jwt) = get_text(
        &http,
        &emu.url(),
        &format!("{base}&format=full&licenses=TRUE"),
    )
    .await;
    let claims = verify_with_jwks(&emu, &jwt).await;
    assert!(claims["google"]["compute_engine"]["license_id"].is_array());

    for bad in ["&format=compact", "&licenses=maybe"] {
        let (status, _) = get_text(&http, &emu.url(), &format!("{base}{bad}")).await;
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test]
async fn pem_certs_hold_the_same_key_for_google_auth() {
    let emu = emulator().await;
    let (status, body) = get_text(&client(), &emu.url(), "/oauth2/v1/certs").await;
    assert_eq!(status, 200);
    let certs: Value = serde_json::from_str(&body).unwrap();
    let pem = certs[emu.id_token_key_id()].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN RSA PUBLIC KEY-----\n"));
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(der, emu.id_token_public_key_der());
    assert_eq!(emu.requests(Endpoint::PemCerts), 1);
}

#[tokio::test]
async fn service_account_values_and_directories() {
    let emu = emulator().await;
    let http = client();
    let url = emu.url();
    let email = emu.config().email;
    let sa = format!("{V1}instance/service-accounts/default");

    assert_eq!(
        get_text(&http, &url, &format!("{sa}/email")).await,
        (200, email.clone())
    );
    assert_eq!(
        get_text(&http, &url, &format!("{sa}/scopes")).await,
        (
            200,
            "https://www.googleapis.com/auth/cloud-platform\n".to_owned()
        )
    );
    assert_eq!(
        get_text(&http, &url, &format!("{sa}/aliases")).await,
        (200, "default\n".to_owned())
    );
    assert_eq!(
        get_text(&http, &url, &format!("{sa}/")).await,
        (200, "aliases\nemail\nidentity\nscopes\ntoken\n".to_owned())
    );

    // google-auth reads this before every refresh and needs `email`.
    for path in [
        format!("{sa}/?recursive=true"),
        format!("{sa}?recursive=true"),
    ] {
        let response = get(&http, &url, &path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let json: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(json["email"], email.as_str());
        assert_eq!(json["aliases"], serde_json::json!(["default"]));
        assert_eq!(
            json["scopes"],
            serde_json::json!(["https://www.googleapis.com/auth/cloud-platform"])
        );
    }

    // A directory named without its slash redirects, like the real server.
    let response = get(&http, &url, &sa).await;
    assert_eq!(response.status(), 301);
    assert_eq!(response.headers()["location"], format!("{sa}/"));

    let (status, listing) = get_text(&http, &url, &format!("{V1}instance/service-accounts/")).await;
    assert_eq!(status, 200);
    assert_eq!(listing, format!("default/\n{email}/\n"));
    let (_, all) = get_text(
        &http,
        &url,
        &format!("{V1}instance/service-accounts/?recursive=true"),
    )
    .await;
    let all: Value = serde_json::from_str(&all).unwrap();
    assert_eq!(all["default"]["email"], email.as_str());
    assert_eq!(all[email.as_str()]["email"], email.as_str());

    assert_eq!(emu.requests(Endpoint::Email), 1);
    assert_eq!(emu.requests(Endpoint::Scopes), 1);
    assert_eq!(emu.requests(Endpoint::ServiceAccount), 5);
    assert_eq!(emu.requests(Endpoint::ServiceAccounts), 2);
}

#[tokio::test]
async fn project_instance_and_directory_listings() {
    let emu = Emulator::start(EmulatorConfig {
        project_id: "proj-x".into(),
        numeric_project_id: 42,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let http = client();
    let url = emu.url();
    let cases = [
        ("project/project-id", "proj-x"),
        ("project/numeric-project-id", "42"),
        ("project/", "numeric-project-id\nproject-id\n"),
        ("instance/zone", "projects/42/zones/us-central1-a"),
        ("instance/name", "emulated-instance"),
        (
            "instance/hostname",
            "emulated-instance.us-central1-a.c.proj-x.internal",
        ),
        ("", "instance/\nproject/\nuniverse/\n"),
    ];
    for (path, expected) in cases {
        let response = get(&http, &url, &format!("{V1}{path}")).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "application/text");
        assert_eq!(response.text().await.unwrap(), expected, "{path}");
    }
    let (status, text) = get_text(&http, &url, &format!("{V1}?recursive=true")).await;
    assert_eq!(status, 200);
    let tree: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(tree["project"]["projectId"], "proj-x");
    assert_eq!(tree["project"]["numericProjectId"], 42);
    assert_eq!(
        tree["instance"]["serviceAccounts"]["default"]["email"],
        emu.config().email.as_str()
    );
    let response = get(&http, &url, "/computeMetadata/v1").await;
    assert_eq!(response.status(), 301);
    assert_eq!(response.headers()["location"], V1);

    assert_eq!(emu.requests(Endpoint::ProjectId), 1);
    assert_eq!(emu.requests(Endpoint::NumericProjectId), 1);
    assert_eq!(emu.requests(Endpoint::Instance), 3);
    assert_eq!(emu.requests(Endpoint::Directory), 4);
}

#[tokio::test]
async fn universe_domain_answers_404_until_configured_under_both_names() {
    let emu = emulator().await;
    let http = client();
    for name in ["universe-domain", "universe_domain"] {
        let (status, _) = get_text(&http, &emu.url(), &format!("{V1}universe/{name}")).await;
        assert_eq!(status, 404, "{name}");
    }
    emu.update_config(|c| c.universe_domain = Some("example-universe.test".into()));
    for name in ["universe-domain", "universe_domain"] {
        let response = get(&http, &emu.url(), &format!("{V1}universe/{name}")).await;
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(response.headers()["content-type"], "application/text");
        assert_eq!(response.text().await.unwrap(), "example-universe.test");
    }
    assert_eq!(emu.requests(Endpoint::UniverseDomain), 4);
}

#[tokio::test]
async fn workload_certificates_are_off_until_material_is_configured() {
    let emu = emulator().await;
    let http = client();
    let base = format!("{V1}instance/gce-workload-certificates/");
    for leaf in ["workload-identities", "trust-anchors", "config-status"] {
        let (status, body) = get_text(&http, &emu.url(), &format!("{base}{leaf}")).await;
        assert_eq!(
            (status, body.as_str()),
            (404, "workload certificate feature not enabled"),
            "{leaf}"
        );
    }

    let certs = WorkloadCertificates::from_pem(
        "spiffe://pool.global.42.workload.id.goog/ns/ns1/sa/sa1",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        &SecretString::from("-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n"),
        [(
            "pool.global.42.workload.id.goog",
            "-----BEGIN CERTIFICATE-----\nCCCC\n-----END CERTIFICATE-----\n",
        )],
    );
    assert!(
        !format!("{certs:?}").contains("BBBB"),
        "the key never prints"
    );
    emu.update_config(|c| c.workload_certificates = Some(certs));

    let response = get(&http, &emu.url(), &format!("{base}workload-identities")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let ids: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(ids["status"], "OK");
    let creds =
        &ids["workloadCredentials"]["spiffe://pool.global.42.workload.id.goog/ns/ns1/sa/sa1"];
    assert!(creds["certificatePem"].as_str().unwrap().contains("AAAA"));
    assert!(creds["privateKeyPem"].as_str().unwrap().contains("BBBB"));

    let (_, anchors) = get_text(&http, &emu.url(), &format!("{base}trust-anchors")).await;
    let anchors: Value = serde_json::from_str(&anchors).unwrap();
    assert!(
        anchors["trustAnchors"]["pool.global.42.workload.id.goog"]["trustAnchorsPem"]
            .as_str()
            .unwrap()
            .contains("CCCC")
    );
    let (_, status) = get_text(&http, &emu.url(), &format!("{base}config-status")).await;
    assert_eq!(status, r#"{"partnerMetadataConfigsErrors":{}}"#);
    let (_, listing) = get_text(&http, &emu.url(), &base).await;
    assert_eq!(
        listing,
        "config-status\ntrust-anchors\nworkload-identities\n"
    );

    assert_eq!(emu.requests(Endpoint::WorkloadIdentities), 2);
    assert_eq!(emu.requests(Endpoint::TrustAnchors), 2);
    assert_eq!(emu.requests(Endpoint::ConfigStatus), 2);
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let emu = emulator().await;
    let http = client();
    for path in [
        "/nope",
        "/computeMetadata/v2/",
        "/computeMetadata/v1/instance/nope",
        "/computeMetadata/v1/project/project-id/",
        "/computeMetadata/v1/instance//id",
    ] {
        let response = get(&http, &emu.url(), path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(response.headers()["metadata-flavor"], "Google", "{path}");
    }
    assert_eq!(emu.requests(Endpoint::Other), 4);
    assert_eq!(emu.requests(Endpoint::ProjectId), 1);

    let deleted = http
        .delete(format!("{}{V1}project/project-id", emu.url()))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 405);
    assert_eq!(deleted.headers()["allow"], "GET, HEAD");

    let head = http
        .head(format!("{}{V1}project/project-id", emu.url()))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "16");
    assert_eq!(head.text().await.unwrap(), "");
}

#[tokio::test]
async fn recorded_requests_redact_credentials() {
    let emu = emulator().await;
    client()
        .get(format!("{}{V1}project/project-id", emu.url()))
        .header("Metadata-Flavor", "Google")
        .header("Authorization", "Bearer ya29.secret")
        .send()
        .await
        .unwrap();
    let recorded = emu.recent_requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].header("authorization"), Some("[redacted]"));
    assert_eq!(recorded[0].header("Metadata-Flavor"), Some("Google"));
    assert!(!format!("{recorded:?}").contains("ya29.secret"));
    emu.reset_counters();
    assert_eq!(emu.total_requests(), 0);
    assert!(emu.recent_requests().is_empty());
}
