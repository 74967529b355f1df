//! `MetadataClient` against the emulator over real loopback sockets: every method, what is sent,
//! connection reuse and retries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use common::{CERT_PEM, KEY_PEM, client, fast_retry, start};
use tokio::net::{TcpListener, TcpStream};
use workload_auth_core::{ErrorKind, RetryPolicy};
use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint, Fault, WorkloadCertificates};
use workload_auth_metadata::{MetadataClient, WorkloadCertificatesUnavailable};

const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

#[tokio::test]
async fn access_token_is_issued_by_the_emulator() {
    let emu = start(EmulatorConfig::default()).await;
    let before = SystemTime::now();
    let token = client(&emu).access_token(&[]).await.unwrap();
    assert!(token.secret().expose().starts_with("ya29.emulated-"));
    assert_eq!(token.token_type(), "Bearer");
    let lifetime = token.expires_at().duration_since(before).unwrap();
    assert!(
        lifetime > Duration::from_secs(3590) && lifetime <= Duration::from_secs(3600),
        "{lifetime:?}"
    );
    let issued = emu.issued_token(token.secret().expose()).unwrap();
    assert_eq!(issued.scopes, [CLOUD_PLATFORM]);
    assert!(!format!("{token:?}").contains("ya29"));
}

#[tokio::test]
async fn scopes_are_passed_through_comma_separated() {
    let emu = start(EmulatorConfig::default()).await;
    let scopes = [
        "https://www.googleapis.com/auth/devstorage.read_only",
        "https://www.googleapis.com/auth/userinfo.email",
    ];
    let token = client(&emu).access_token(&scopes).await.unwrap();
    let request = last_request(&emu, Endpoint::Token);
    assert_eq!(
        request.query_param("scopes"),
        Some(scopes.join(",").as_str())
    );
    assert_eq!(request.header("metadata-flavor"), Some("Google"));
    let issued = emu.issued_token(token.secret().expose()).unwrap();
    assert_eq!(issued.scopes, scopes);
}

#[tokio::test]
async fn a_scope_with_a_comma_is_refused_before_any_request() {
    let emu = start(EmulatorConfig::default()).await;
    let err = client(&emu).access_token(&["a,b"]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(emu.total_requests(), 0);
}

#[tokio::test]
async fn id_token_is_a_verifiable_jwt_for_the_audience() {
    let emu = start(EmulatorConfig::default()).await;
    let audience = "https://service.example.com";
    let token = client(&emu).id_token(audience, true, true).await.unwrap();
    let request = last_request(&emu, Endpoint::Identity);
    assert_eq!(request.query_param("audience"), Some(audience));
    assert_eq!(request.query_param("format"), Some("full"));
    assert_eq!(request.query_param("licenses"), Some("TRUE"));

    let jwt = token.secret().expose();
    let (signed, signature) = jwt.rsplit_once('.').unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        emu.id_token_public_key_der(),
    )
    .verify(signed.as_bytes(), &b64.decode(signature).unwrap())
    .unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(signed.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["aud"], audience);
    assert_eq!(claims["email"], emu.config().email);
    let exp = claims["exp"].as_u64().unwrap();
    assert_eq!(
        token.expires_at(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(exp)
    );

    client(&emu).id_token(audience, false, false).await.unwrap();
    let request = last_request(&emu, Endpoint::Identity);
    assert_eq!(request.query_param("format"), None);
    assert_eq!(request.query_param("licenses"), None);
}

#[tokio::test]
async fn identity_values_come_from_the_emulator_config() {
    let config = EmulatorConfig {
        email: "worker@proj-a.iam.gserviceaccount.com".into(),
        scopes: vec!["s1".into(), "s2".into()],
        project_id: "proj-a".into(),
        numeric_project_id: 42,
        ..EmulatorConfig::default()
    };
    let emu = start(config).await;
    let c = client(&emu);
    assert_eq!(
        c.email().await.unwrap(),
        "worker@proj-a.iam.gserviceaccount.com"
    );
    let info = c.service_account_info().await.unwrap();
    assert_eq!(info.email, "worker@proj-a.iam.gserviceaccount.com");
    assert_eq!(info.scopes, ["s1", "s2"]);
    assert!(info.aliases.contains(&"default".to_owned()), "{info:?}");
    assert_eq!(
        last_request(&emu, Endpoint::ServiceAccount).query_param("recursive"),
        Some("true")
    );
    assert_eq!(c.project_id().await.unwrap(), "proj-a");
    assert_eq!(c.numeric_project_id().await.unwrap(), 42);
    assert_eq!(
        c.get_text("instance/zone").await.unwrap(),
        "projects/42/zones/us-central1-a"
    );
    assert_eq!(
        c.get_text("../../x").await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[tokio::test]
async fn universe_domain_defaults_when_absent_or_empty() {
    let emu = start(EmulatorConfig::default()).await;
    let c = client(&emu);
    assert_eq!(c.universe_domain().await.unwrap(), "googleapis.com");
    emu.update_config(|cfg| cfg.universe_domain = Some("example-universe.test".into()));
    assert_eq!(c.universe_domain().await.unwrap(), "example-universe.test");
    emu.update_config(|cfg| cfg.universe_domain = Some(String::new()));
    assert_eq!(c.universe_domain().await.unwrap(), "googleapis.com");
    emu.inject(Endpoint::UniverseDomain, Fault::Status(403), Some(1));
    let err = c.universe_domain().await.unwrap_err();
    assert_eq!(err.status(), Some(403));
}

#[tokio::test]
async fn workload_certificates_are_read_when_configured() {
    let id = "spiffe://pool.global.42.workload.id.goog/ns/payments/sa/api";
    let certs = WorkloadCertificates::from_pem(
        id,
        CERT_PEM,
        &KEY_PEM.into(),
        [("pool.global.42.workload.id.goog", CERT_PEM)],
    );
    let emu = start(EmulatorConfig {
        workload_certificates: Some(certs),
        ..EmulatorConfig::default()
    })
    .await;
    let c = client(&emu);
    let w = c.workload_identities().await.unwrap();
    assert_eq!(w.spiffe_id, id);
    assert_eq!(w.certificate_pem, CERT_PEM);
    assert_eq!(w.private_key_pem.expose(), KEY_PEM);
    assert_eq!(w.status.as_deref(), Some("OK"));
    assert!(!format!("{w:?}").contains("PRIVATE KEY-----\nMI"));
    let anchors = c.trust_anchors().await.unwrap();
    assert_eq!(anchors.len(), 1);
    assert_eq!(anchors["pool.global.42.workload.id.goog"], CERT_PEM);
    let status = c.config_status().await.unwrap();
    assert_eq!(
        status,
        serde_json::json!({"partnerMetadataConfigsErrors": {}})
    );
}

#[tokio::test]
async fn workload_certificates_feature_off_is_a_typed_error() {
    let emu = start(EmulatorConfig::default()).await;
    let c = client(&emu);
    for err in [
        c.workload_identities().await.unwrap_err(),
        c.trust_anchors().await.map(|_| ()).unwrap_err(),
        c.config_status().await.map(|_| ()).unwrap_err(),
    ] {
        assert_eq!(
            WorkloadCertificatesUnavailable::of(&err),
            Some(WorkloadCertificatesUnavailable::FeatureDisabled),
            "{err}"
        );
        assert_eq!(err.status(), Some(404));
        assert!(err.to_string().contains("not enabled"), "{err}");
        assert!(
            err.endpoint()
                .unwrap()
                .contains("gce-workload-certificates/")
        );
    }
    assert_eq!(
        emu.requests(Endpoint::WorkloadIdentities),
        1,
        "404 is not retried"
    );
}

#[tokio::test]
async fn workload_certificates_not_configured_is_a_typed_error() {
    let emu = start(EmulatorConfig::default()).await;
    emu.inject(Endpoint::WorkloadIdentities, Fault::Status(412), None);
    let err = client(&emu).workload_identities().await.unwrap_err();
    assert_eq!(
        WorkloadCertificatesUnavailable::of(&err),
        Some(WorkloadCertificatesUnavailable::NotConfigured)
    );
    assert!(
        err.to_string()
            .contains("workload certificates not configured on this VM"),
        "{err}"
    );
    assert!(!err.is_transient());
    assert_eq!(emu.requests(Endpoint::WorkloadIdentities), 1);
}

#[tokio::test]
async fn one_connection_serves_many_requests() {
    let emu = start(EmulatorConfig::default()).await;
    let (proxy, connections) = counting_forwarder(emu.addr()).await;
    let c = MetadataClient::builder()
        .host(proxy)
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    for _ in 0..5 {
        c.access_token(&[]).await.unwrap();
        c.project_id().await.unwrap();
    }
    c.clone().email().await.unwrap();
    assert_eq!(emu.total_requests(), 11);
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn transient_503_is_retried_until_success() {
    let emu = start(EmulatorConfig::default()).await;
    emu.inject(Endpoint::Token, Fault::Status(503), Some(2));
    let token = client(&emu).access_token(&[]).await.unwrap();
    assert!(token.secret().expose().starts_with("ya29.emulated-"));
    assert_eq!(emu.requests(Endpoint::Token), 3);
}

#[tokio::test]
async fn transient_429_and_408_are_retried() {
    let emu = start(EmulatorConfig::default()).await;
    emu.inject(Endpoint::ProjectId, Fault::Status(429), Some(1));
    emu.inject(Endpoint::ProjectId, Fault::Status(408), Some(1));
    assert_eq!(client(&emu).project_id().await.unwrap(), "emulated-project");
    assert_eq!(emu.requests(Endpoint::ProjectId), 3);
}

#[tokio::test]
async fn retries_stop_after_the_policy_s_attempts() {
    let emu = start(EmulatorConfig::default()).await;
    emu.inject(Endpoint::Token, Fault::Status(503), None);
    let policy = RetryPolicy {
        max_attempts: 3,
        ..fast_retry()
    };
    let c = MetadataClient::builder()
        .host(emu.host())
        .retry_policy(policy)
        .build()
        .unwrap();
    let err = c.access_token(&[]).await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert!(err.is_transient());
    assert!(
        err.endpoint()
            .unwrap()
            .ends_with("service-accounts/default/token")
    );
    assert_eq!(emu.requests(Endpoint::Token), 3);
}

#[tokio::test]
async fn forbidden_is_not_retried() {
    let emu = start(EmulatorConfig::default()).await;
    emu.inject(Endpoint::Token, Fault::Status(403), None);
    let err = client(&emu).access_token(&[]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.status(), Some(403));
    assert!(!err.is_transient());
    assert_eq!(emu.requests(Endpoint::Token), 1);
}

#[tokio::test]
async fn not_found_is_not_retried() {
    let emu = start(EmulatorConfig::default()).await;
    emu.inject(Endpoint::Email, Fault::Status(404), None);
    let err = client(&emu).email().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Http);
    assert_eq!(err.status(), Some(404));
    assert!(
        err.endpoint()
            .unwrap()
            .ends_with("service-accounts/default/email")
    );
    assert_eq!(emu.requests(Endpoint::Email), 1);
}

#[tokio::test]
async fn a_slow_answer_times_out_as_a_transient_error() {
    let emu = start(EmulatorConfig::default()).await;
    emu.inject(Endpoint::Token, Fault::Delay(Duration::from_secs(2)), None);
    let c = MetadataClient::builder()
        .host(emu.host())
        .timeout(Duration::from_millis(200))
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let err = c.access_token(&[]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport);
    assert!(err.is_transient());
    assert!(err.to_string().contains("200 ms"), "{err}");
}

#[tokio::test]
async fn nothing_listening_is_a_transport_error_with_a_hint() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let c = MetadataClient::builder()
        .host(addr.to_string())
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let err = c.project_id().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport);
    assert!(err.hint().unwrap().contains("GCE_METADATA_HOST"));
    assert!(err.endpoint().unwrap().contains(&addr.to_string()));
}

#[test]
fn the_client_is_built_without_a_runtime_and_used_in_one() {
    let emu = Emulator::start_in_thread(EmulatorConfig::default()).unwrap();
    let c = MetadataClient::builder().host(emu.url()).build().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let project = runtime.block_on(c.project_id()).unwrap();
    assert_eq!(project, "emulated-project");
}

fn last_request(emu: &Emulator, endpoint: Endpoint) -> workload_auth_emulator::RecordedRequest {
    emu.recent_requests()
        .into_iter()
        .rev()
        .find(|r| r.endpoint == endpoint)
        .unwrap()
}

/// A loopback TCP forwarder to `target` that counts the connections it accepts.
async fn counting_forwarder(target: std::net::SocketAddr) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut outbound = TcpStream::connect(target).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (addr.to_string(), count)
}
