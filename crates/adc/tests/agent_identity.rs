//! Agent Identity certificate-bound tokens against the emulator: the binding on the wire (POST
//! with the certificate chain, the older query parameter, STS `bindCertFingerprint`), tokens
//! handed out only with their certificate, rotation, opt-outs, explain, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use base64::Engine as _;
use common::*;
use serde_json::json;
use workload_auth_adc::{BindingForm, BoundAccessToken, CertificateDer, Credentials};
use workload_auth_core::ErrorKind;
use workload_auth_emulator::ca::{IssuedSvid, TrustDomainCa};
use workload_auth_emulator::{Emulator, Endpoint, MtlsListener, PROTECTED_RESOURCE_PATH};

const AGENT_TD: &str = "agents.global.org-1234567890.system.id.goog";
const AGENT_ID: &str = "spiffe://agents.global.org-1234567890.system.id.goog/ns/default/sa/agent";

/// The fingerprint as the binding names it, computed here independently.
fn fingerprint(der: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, der))
}

/// Writes `svid` and a `certificate_config.json` naming it; returns the configuration's path.
fn install(home: &TempDir, svid: &IssuedSvid) -> PathBuf {
    let cert = home.write("certs/cert.pem", svid.chain_pem());
    let key = home.write("certs/key.pem", svid.private_key_pem().expose());
    home.write_json(
        "certificate_config.json",
        &json!({"version": 1, "cert_configs": {"workload": {"cert_path": cert, "key_path": key}}}),
    )
}

fn metadata_creds(emu: &Emulator, home: &TempDir, vars: &[(&str, String)]) -> Credentials {
    builder(home, vars)
        .with_metadata_host(emu.host())
        .build()
        .unwrap()
}

/// GET the emulator's protected resource over mutual TLS presenting `client`, with `token`.
async fn present(
    listener: &MtlsListener,
    client: rustls::ClientConfig,
    token: &str,
) -> (u16, serde_json::Value) {
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(client)
        .build()
        .unwrap();
    let response = http
        .get(format!("{}{PROTECTED_RESOURCE_PATH}", listener.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

fn last_token_request(emu: &Emulator) -> workload_auth_emulator::RecordedRequest {
    emu.recent_requests()
        .into_iter()
        .rev()
        .find(|r| r.endpoint == Endpoint::Token)
        .expect("a token request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_tokens_are_bound_to_the_agent_certificate_and_rotate_with_it() {
    let emu = emulator().await;
    let home = TempDir::new("agent-bound");
    let ca = TrustDomainCa::new(AGENT_TD).unwrap();
    let svid = ca.issue(AGENT_ID).unwrap();
    let config = install(&home, &svid);
    let vars = [(
        "GOOGLE_API_CERTIFICATE_CONFIG",
        config.display().to_string(),
    )];
    let creds = metadata_creds(&emu, &home, &vars);
    assert!(creds.is_bound());

    // A plain token is refused, and nothing is asked of the metadata server for it.
    let err = creds.access_token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("bound_access_token"), "{err}");
    assert!(creds.id_token("https://svc.example").await.is_err());
    assert!(creds.request_headers().await.is_err());
    assert_eq!(emu.requests(Endpoint::Token), 0);

    // The bound token comes with its certificate; the server recorded the same binding.
    let fp = fingerprint(svid.leaf_der());
    let bound: BoundAccessToken = creds.bound_access_token().await.unwrap();
    assert_eq!(bound.fingerprint(), fp);
    assert_eq!(bound.certificate_chain()[0].as_ref(), svid.leaf_der());
    assert_eq!(bound.certificate().spiffe_id(), AGENT_ID);
    assert!(!format!("{bound:?}").contains(bound.token().secret().expose()));
    let issued = emu.issued_token(bound.token().secret().expose()).unwrap();
    assert_eq!(issued.bound_fingerprint.as_deref(), Some(fp.as_str()));
    let request = last_token_request(&emu);
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.binding,
        Some((fp.clone(), "certificate_chain".to_owned()))
    );
    assert_eq!(request.query_param("bindCertificateFingerprint"), None);
    // Cached: a second call asks nothing.
    let again = creds.bound_access_token().await.unwrap();
    assert_eq!(again.token(), bound.token());
    assert_eq!(emu.requests(Endpoint::Token), 1);

    // Over mutual TLS the token is accepted with its certificate, and only with it.
    let stranger_ca = TrustDomainCa::new(AGENT_TD).unwrap();
    let stranger = stranger_ca.issue(AGENT_ID).unwrap();
    let listener = emu
        .start_mtls(&[ca.root_der().to_vec(), stranger_ca.root_der().to_vec()])
        .await
        .unwrap();
    let server_root = CertificateDer::from(listener.server_root_der().to_vec());
    let own = bound
        .certificate()
        .rustls_config([server_root.clone()])
        .unwrap();
    let (status, body) = present(&listener, own, bound.token().secret().expose()).await;
    assert_eq!((status, &body["fingerprint"]), (200, &json!(fp)), "{body}");
    let other_home = TempDir::new("agent-stranger");
    let other = metadata_creds(
        &emu,
        &other_home,
        &[(
            "GOOGLE_API_CERTIFICATE_CONFIG",
            install(&other_home, &stranger).display().to_string(),
        )],
    )
    .bound_certificate()
    .unwrap()
    .unwrap();
    let (status, body) = present(
        &listener,
        other.rustls_config([server_root.clone()]).unwrap(),
        bound.token().secret().expose(),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.to_string().contains("different certificate"), "{body}");
    // Over plain HTTP, even claiming the certificate in the header, it is refused.
    let response = reqwest::Client::builder()
        .tls_backend_preconfigured(
            bound
                .certificate()
                .rustls_config([server_root.clone()])
                .unwrap(),
        )
        .build()
        .unwrap()
        .get(format!("{}{PROTECTED_RESOURCE_PATH}", emu.url()))
        .bearer_auth(bound.token().secret().expose())
        .header(
            workload_auth_emulator::MTLS_CLIENT_CERT_HEADER,
            base64::engine::general_purpose::STANDARD.encode(svid.leaf_der()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    // explain names the certificate by its fingerprint, in text and JSON.
    let explanation = creds.explain().await;
    let text = explanation.to_string();
    assert!(
        text.contains(&format!("token binding: bound to certificate {fp}")),
        "{text}"
    );
    let doc = serde_json::to_value(&explanation).unwrap();
    assert_eq!(doc["token_binding"]["bound"], json!(true));
    assert_eq!(doc["token_binding"]["fingerprint"], json!(fp));
    assert_eq!(doc["token_binding"]["form"], json!("certificate_chain"));

    // Bound ID tokens carry the binding as the confirmation claim.
    let id = creds.bound_id_token("https://svc.example").await.unwrap();
    assert_eq!(id.fingerprint(), fp);
    let claims = claims(id.token().secret().expose());
    assert_eq!(claims["cnf"]["x5t#S256"], json!(fp));

    // Rotation: the next call reads the new certificate and fetches a token bound to it.
    let rotated = ca.issue(AGENT_ID).unwrap();
    install(&home, &rotated);
    let new_fp = fingerprint(rotated.leaf_der());
    assert_ne!(new_fp, fp);
    let fresh = creds.bound_access_token().await.unwrap();
    assert_eq!(fresh.fingerprint(), new_fp);
    assert_ne!(fresh.token(), bound.token());
    assert_eq!(emu.requests(Endpoint::Token), 2);
    assert_eq!(
        emu.issued_token(fresh.token().secret().expose())
            .unwrap()
            .bound_fingerprint,
        Some(new_fp.clone())
    );
    let rotated_tls = fresh.certificate().rustls_config([server_root]).unwrap();
    let (status, _) = present(
        &listener,
        rotated_tls.clone(),
        fresh.token().secret().expose(),
    )
    .await;
    assert_eq!(status, 200);
    // The old token does not go with the new certificate.
    let (status, _) = present(&listener, rotated_tls, bound.token().secret().expose()).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_form_layouts_and_opt_outs() {
    let emu = emulator().await;
    let home = TempDir::new("agent-forms");
    let ca = TrustDomainCa::new(AGENT_TD).unwrap();
    let svid = ca.issue(AGENT_ID).unwrap();
    let config = install(&home, &svid);
    let fp = fingerprint(svid.leaf_der());
    let config_var = (
        "GOOGLE_API_CERTIFICATE_CONFIG",
        config.display().to_string(),
    );

    // The older form: GET with the fingerprint in the query.
    let creds = builder(&home, std::slice::from_ref(&config_var))
        .with_metadata_host(emu.host())
        .with_binding_form(BindingForm::FingerprintQuery)
        .build()
        .unwrap();
    let bound = creds.bound_access_token().await.unwrap();
    let request = last_token_request(&emu);
    assert_eq!(request.method, "GET");
    assert_eq!(
        request.query_param("bindCertificateFingerprint"),
        Some(fp.as_str())
    );
    assert_eq!(
        request.binding,
        Some((fp.clone(), "fingerprint_query".into()))
    );
    assert_eq!(
        emu.issued_token(bound.token().secret().expose())
            .unwrap()
            .bound_fingerprint,
        Some(fp.clone())
    );
    assert!(
        creds
            .explain()
            .await
            .to_string()
            .contains("fingerprint_query")
    );

    // Each opt-out gives ordinary, unbound tokens and sends no binding.
    for opt_out in [
        ("GOOGLE_API_ENABLE_RUNTIME_BOUND_TOKEN", "false"),
        (
            "GOOGLE_API_PREVENT_AGENT_TOKEN_SHARING_FOR_GCP_SERVICES",
            "FALSE",
        ),
        ("GOOGLE_API_USE_CLIENT_CERTIFICATE", "false"),
    ] {
        let creds = metadata_creds(
            &emu,
            &home,
            &[config_var.clone(), (opt_out.0, opt_out.1.to_owned())],
        );
        assert!(!creds.is_bound(), "{opt_out:?}");
        let token = creds.access_token().await.unwrap();
        let issued = emu.issued_token(token.secret().expose()).unwrap();
        assert_eq!(issued.bound_fingerprint, None, "{opt_out:?}");
        assert_eq!(last_token_request(&emu).binding, None);
        assert_eq!(last_token_request(&emu).method, "GET");
        let err = creds.bound_access_token().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(
            creds
                .explain()
                .await
                .to_string()
                .contains("token binding: not bound"),
        );
    }
    // The newer variable set to true overrides the older opt-out.
    let creds = metadata_creds(
        &emu,
        &home,
        &[
            config_var.clone(),
            ("GOOGLE_API_ENABLE_RUNTIME_BOUND_TOKEN", "true".into()),
            (
                "GOOGLE_API_PREVENT_AGENT_TOKEN_SHARING_FOR_GCP_SERVICES",
                "false".into(),
            ),
        ],
    );
    assert!(creds.is_bound());

    // A workload certificate of another trust domain: nothing is bound.
    let plain_ca = TrustDomainCa::new("workload.example").unwrap();
    let plain_home = TempDir::new("agent-plain");
    let plain_config = install(
        &plain_home,
        &plain_ca
            .issue("spiffe://workload.example/ns/default/sa/app")
            .unwrap(),
    );
    let creds = metadata_creds(
        &emu,
        &plain_home,
        &[(
            "GOOGLE_API_CERTIFICATE_CONFIG",
            plain_config.display().to_string(),
        )],
    );
    assert!(!creds.is_bound());
    creds.access_token().await.unwrap();

    // gcloud's configuration with no workload certificate (only a `keychain` entry): unbound.
    let keychain = plain_home.write_json(
        "keychain.json",
        &json!({"cert_configs": {"keychain": {"cert_path": "/nonexistent"}}}),
    );
    let creds = metadata_creds(
        &emu,
        &plain_home,
        &[(
            "GOOGLE_API_CERTIFICATE_CONFIG",
            keychain.display().to_string(),
        )],
    );
    assert!(!creds.is_bound());
    creds.access_token().await.unwrap();

    // The GKE / Cloud Run directory: certificates.pem (+ private_key.pem), or the combined file.
    let dir = TempDir::new("agent-spiffe-dir");
    dir.write("certificates.pem", svid.chain_pem());
    dir.write("private_key.pem", svid.private_key_pem().expose());
    let dir_var = (
        "WORKLOAD_AUTH_SPIFFE_CREDENTIALS_DIR",
        dir.path().display().to_string(),
    );
    let creds = metadata_creds(&emu, &home, std::slice::from_ref(&dir_var));
    let bound = creds.bound_access_token().await.unwrap();
    assert_eq!(bound.fingerprint(), fp);
    assert!(bound.certificate().private_key().is_some());
    let combined = TempDir::new("agent-combined");
    combined.write(
        "x509.credential-bundle.private-key.pem",
        &format!("{}{}", svid.chain_pem(), svid.private_key_pem().expose()),
    );
    let creds = metadata_creds(
        &emu,
        &home,
        &[(
            "WORKLOAD_AUTH_SPIFFE_CREDENTIALS_DIR",
            combined.path().display().to_string(),
        )],
    );
    let bound = creds.bound_access_token().await.unwrap();
    assert_eq!(bound.fingerprint(), fp);
    // The key never travels: the chain sent holds certificates only.
    assert!(!bound.certificate().chain_pem().contains("PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_agent_certificates_are_typed_errors_naming_the_file() {
    let emu = emulator().await;
    let home = TempDir::new("agent-bad");
    let ca = TrustDomainCa::new(AGENT_TD).unwrap();
    let build =
        |vars: &[(&str, String)]| builder(&home, vars).with_metadata_host(emu.host()).build();

    // The configuration variable names a directory.
    let err = build(&[(
        "GOOGLE_API_CERTIFICATE_CONFIG",
        home.path().display().to_string(),
    )])
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert_eq!(
        err.endpoint(),
        Some(home.path().display().to_string().as_str())
    );

    // The configuration's cert_path names a directory.
    std::fs::create_dir_all(home.path().join("certdir")).unwrap();
    let key = home.write(
        "k.pem",
        ca.issue(AGENT_ID).unwrap().private_key_pem().expose(),
    );
    let config = home.write_json(
        "dir-config.json",
        &json!({"cert_configs": {"workload": {"cert_path": home.path().join("certdir"), "key_path": key}}}),
    );
    let err = build(&[(
        "GOOGLE_API_CERTIFICATE_CONFIG",
        config.display().to_string(),
    )])
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert!(err.endpoint().unwrap().ends_with("certdir"), "{err}");

    // An expired agent certificate.
    let expired = ca.svid(AGENT_ID).expired().issue().unwrap();
    let config = install(&home, &expired);
    let err = build(&[(
        "GOOGLE_API_CERTIFICATE_CONFIG",
        config.display().to_string(),
    )])
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
    assert!(err.endpoint().unwrap().ends_with("cert.pem"), "{err}");

    // A key of the wrong type, and a key of the right type that is someone else's.
    let svid = ca.issue(AGENT_ID).unwrap();
    let config = install(&home, &svid);
    let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    home.write("certs/key.pem", &ed25519.serialize_pem());
    let vars = [(
        "GOOGLE_API_CERTIFICATE_CONFIG",
        config.display().to_string(),
    )];
    let err = build(&vars).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert!(err.endpoint().unwrap().ends_with("key.pem"), "{err}");
    let other = ca.issue(AGENT_ID).unwrap();
    home.write("certs/key.pem", other.private_key_pem().expose());
    let err = build(&vars).unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
    assert!(err.endpoint().unwrap().ends_with("key.pem"), "{err}");

    // A certificate that breaks after the credentials were built: an error, never an unbound
    // token, and no token request.
    install(&home, &svid);
    let creds = build(&vars).unwrap();
    home.write("certs/cert.pem", "not a certificate");
    let err = creds.bound_access_token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert!(err.endpoint().unwrap().ends_with("cert.pem"), "{err}");
    assert!(creds.access_token().await.is_err());
    assert_eq!(emu.requests(Endpoint::Token), 0);
    assert!(creds.explain().await.to_string().contains("cannot be read"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_federation_binds_the_exchange_to_the_agent_certificate() {
    let emu = emulator().await;
    let home = TempDir::new("agent-x509");
    let ca = TrustDomainCa::new(AGENT_TD).unwrap();
    let svid = ca.issue(AGENT_ID).unwrap();
    let config = install(&home, &svid);
    let listener = emu.start_mtls(&[ca.root_der().to_vec()]).await.unwrap();
    let file = json!({
        "type": "external_account",
        "audience": WORKLOAD_AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:mtls",
        "token_url": format!("{}/v1/token", listener.url()),
        "credential_source": {"certificate": {"use_default_certificate_config": true}},
    });
    let path = home.write_json("x509.json", &file);
    let root = CertificateDer::from(listener.server_root_der().to_vec());
    let vars = [
        (
            "GOOGLE_API_CERTIFICATE_CONFIG",
            config.display().to_string(),
        ),
        ("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string()),
    ];
    let creds = builder(&home, &vars)
        .with_tls_root_certificates([root.clone()])
        .build()
        .unwrap();
    assert!(creds.is_bound());
    let err = creds.access_token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(emu.requests(Endpoint::StsToken), 0);
    let bound = creds.bound_access_token().await.unwrap();
    let fp = fingerprint(svid.leaf_der());
    assert_eq!(bound.fingerprint(), fp);
    assert_eq!(
        emu.issued_token(bound.token().secret().expose())
            .unwrap()
            .bound_fingerprint,
        Some(fp.clone())
    );
    let (status, _) = present(
        &listener,
        bound.certificate().rustls_config([root.clone()]).unwrap(),
        bound.token().secret().expose(),
    )
    .await;
    assert_eq!(status, 200);
    let doc = serde_json::to_value(creds.explain().await).unwrap();
    assert_eq!(doc["token_binding"]["form"], json!("sts_options"));

    // The STS binds only to the certificate of the connection: another fingerprint is refused.
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(bound.certificate().rustls_config([root.clone()]).unwrap())
        .build()
        .unwrap();
    let subject = json!([base64::engine::general_purpose::STANDARD.encode(svid.leaf_der())]);
    let exchange = |fingerprint: String| {
        let form = [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
            ),
            ("audience", WORKLOAD_AUDIENCE.to_owned()),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token".to_owned(),
            ),
            ("subject_token", subject.to_string()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:mtls".to_owned(),
            ),
            (
                "options",
                json!({ "bindCertFingerprint": fingerprint }).to_string(),
            ),
        ];
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        http.post(format!("{}/v1/token", listener.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let response = exchange(fingerprint(b"another certificate")).await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("does not match the client certificate"),
        "{text}"
    );
    let response = exchange(fp.clone()).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // Opted out: the exchange carries no binding and the token is an ordinary one.
    let creds = builder(
        &home,
        &[
            vars[0].clone(),
            vars[1].clone(),
            ("GOOGLE_API_ENABLE_RUNTIME_BOUND_TOKEN", "false".into()),
        ],
    )
    .with_tls_root_certificates([root])
    .build()
    .unwrap();
    let token = creds.access_token().await.unwrap();
    assert_eq!(
        emu.issued_token(token.secret().expose())
            .unwrap()
            .bound_fingerprint,
        None
    );
}
