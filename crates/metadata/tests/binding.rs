//! Certificate-bound token requests against the emulator: the POST with the certificate chain
//! (default) and the older fingerprint query, for access and ID tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint};
use workload_auth_metadata::{BindingForm, CertificateBinding, MetadataClient};

const TD: &str = "agents.global.org-5.system.id.goog";

fn fingerprint(der: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, der))
}

fn last(emu: &Emulator, endpoint: Endpoint) -> workload_auth_emulator::RecordedRequest {
    emu.recent_requests()
        .into_iter()
        .rev()
        .find(|r| r.endpoint == endpoint)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_forms_bind_access_and_id_tokens() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let svid = TrustDomainCa::new(TD)
        .unwrap()
        .issue(&format!("spiffe://{TD}/ns/a/sa/b"))
        .unwrap();
    let fp = fingerprint(svid.leaf_der());
    let binding = CertificateBinding::new(svid.chain_pem(), fp.clone()).unwrap();

    let client = MetadataClient::builder().host(emu.host()).build().unwrap();
    assert_eq!(client.binding_form(), BindingForm::CertificateChain);
    let token = client
        .bound_access_token(&["scope-a"], &binding)
        .await
        .unwrap();
    let request = last(&emu, Endpoint::Token);
    assert_eq!(request.method, "POST");
    assert_eq!(request.query_param("scopes"), Some("scope-a"));
    assert_eq!(
        request.binding,
        Some((fp.clone(), "certificate_chain".into()))
    );
    assert_eq!(
        emu.issued_token(token.secret().expose())
            .unwrap()
            .bound_fingerprint,
        Some(fp.clone())
    );
    let id = client
        .bound_id_token("https://aud.example", true, false, &binding)
        .await
        .unwrap();
    let payload = id.secret().expose().split('.').nth(1).unwrap().to_owned();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["cnf"]["x5t#S256"], serde_json::json!(fp));
    assert_eq!(last(&emu, Endpoint::Identity).method, "POST");

    // Unbound requests stay GETs without a binding.
    let plain = client.access_token(&[]).await.unwrap();
    assert_eq!(last(&emu, Endpoint::Token).method, "GET");
    assert_eq!(
        emu.issued_token(plain.secret().expose())
            .unwrap()
            .bound_fingerprint,
        None
    );

    let legacy = MetadataClient::builder()
        .host(emu.host())
        .binding_form(BindingForm::FingerprintQuery)
        .build()
        .unwrap();
    legacy.bound_access_token(&[], &binding).await.unwrap();
    let request = last(&emu, Endpoint::Token);
    assert_eq!(request.method, "GET");
    assert_eq!(
        request.query_param("bindCertificateFingerprint"),
        Some(fp.as_str())
    );
    legacy
        .bound_id_token("https://aud.example", false, false, &binding)
        .await
        .unwrap();
    assert_eq!(
        last(&emu, Endpoint::Identity).binding,
        Some((fp, "fingerprint_query".into()))
    );

    // A chain with a key in it is refused before anything is sent.
    let with_key = format!("{}{}", svid.chain_pem(), svid.private_key_pem().expose());
    assert!(CertificateBinding::new(with_key, fingerprint(svid.leaf_der())).is_err());
}
