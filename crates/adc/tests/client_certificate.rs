//! The workload certificate for mutual TLS to Google APIs: when it is used, where it comes from,
//! and that its rustls configuration completes a mutual TLS handshake with the emulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;
use workload_auth_adc::{CertificateDer, ClientCertificate, EnvSource};
use workload_auth_core::ErrorKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_certificate_is_found_and_completes_a_handshake() {
    let emu = emulator().await;
    let home = TempDir::new("client-cert");
    let client = x509_client("api.example");
    let cert = home.write("cert.pem", &client.chain_pem);
    let key = home.write("key.pem", &client.key_pem);
    let gcloud = home.path().join(".config/gcloud");
    let env = EnvSource::from_vars::<&str, &str>([]).with_home(home.path());

    // Nothing configured and the variable unset: no client certificate.
    assert!(ClientCertificate::from_env(&env).unwrap().is_none());
    // Required but missing: an error naming the expected place.
    let err = ClientCertificate::from_env(
        &env.clone()
            .with_var("GOOGLE_API_USE_CLIENT_CERTIFICATE", "true"),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CredentialsNotFound, "{err}");
    assert!(err.endpoint().unwrap().ends_with("certificate_config.json"));
    let err = ClientCertificate::from_env(
        &env.clone()
            .with_var("GOOGLE_API_USE_CLIENT_CERTIFICATE", "yes"),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);

    // gcloud's certificate_config.json: used when the variable is unset, not when it is false.
    home.write_json(
        ".config/gcloud/certificate_config.json",
        &json!({"version": 1, "cert_configs": {"workload": {"cert_path": cert, "key_path": key}}}),
    );
    let found = ClientCertificate::from_env(&env).unwrap().unwrap();
    assert_eq!(found.config_path(), gcloud.join("certificate_config.json"));
    assert_eq!(found.chain().len(), 1);
    assert!(!format!("{found:?}").contains("PRIVATE"));
    assert!(
        ClientCertificate::from_env(
            &env.clone()
                .with_var("GOOGLE_API_USE_CLIENT_CERTIFICATE", "false")
        )
        .unwrap()
        .is_none()
    );

    // Its rustls configuration authenticates to a server that requires a client certificate.
    let listener = emu
        .start_mtls(std::slice::from_ref(&client.root_der))
        .await
        .unwrap();
    let config = found
        .rustls_config([CertificateDer::from(listener.server_root_der().to_vec())])
        .unwrap();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap();
    let response = http
        .get(format!("{}/", listener.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // A broken configuration names the file.
    let bad = home.write("bad-config.json", "{\"cert_configs\": {}}");
    let err = ClientCertificate::from_env(
        &env.with_var("GOOGLE_API_CERTIFICATE_CONFIG", bad.display().to_string()),
    )
    .unwrap_err();
    assert!(
        err.message()
            .contains("`cert_configs.workload` field is missing"),
        "{err}"
    );
    assert_eq!(err.endpoint(), Some(bad.display().to_string().as_str()));
}
