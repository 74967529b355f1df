//! The metadata server over mutual TLS, against the emulator serving it on loopback: strict mode
//! never sends plain HTTP, default mode falls back once and says so, the server is verified by
//! its fixed names, rotation is picked up, and every bad file is a typed error naming it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use common::{fast_retry, start};
use workload_auth_core::{ErrorKind, RetryPolicy};
use workload_auth_emulator::mds_mtls::{CLIENT_CERT_LIFETIME, MdsMtlsCa};
use workload_auth_emulator::{Emulator, EmulatorConfig};
use workload_auth_metadata::{MdsMtlsMode, MetadataClient};

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wa-mds-mtls-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn client(emu: &Emulator, mode: MdsMtlsMode, dir: &Path) -> MetadataClient {
    MetadataClient::builder()
        .host(emu.host())
        .mtls_mode(mode)
        .mtls_dir(dir)
        .retry_policy(fast_retry())
        .build()
        .unwrap()
}

async fn mtls_emulator(tag: &str) -> (Emulator, MdsMtlsCa, PathBuf) {
    let emu = start(EmulatorConfig::default()).await;
    let dir = temp_dir(tag);
    let ca = emu.enable_mds_mtls(&dir).unwrap();
    (emu, ca, dir)
}

/// `dir` gets the emulator's root but a client certificate from another CA, which the emulator's
/// handshake refuses.
fn foreign_client_cert(dir: &Path, emulator_ca: &MdsMtlsCa) {
    let other = MdsMtlsCa::new().unwrap();
    let client = other.issue_client(CLIENT_CERT_LIFETIME).unwrap();
    other.write_dir(dir, &client).unwrap();
    std::fs::write(dir.join("root.crt"), emulator_ca.root_pem()).unwrap();
}

#[tokio::test]
async fn strict_mode_gets_tokens_and_values_over_mtls_only() {
    let (emu, _ca, dir) = mtls_emulator("strict").await;
    let client = client(&emu, MdsMtlsMode::Strict, &dir);
    let token = client.access_token(&[]).await.unwrap();
    assert!(!token.secret().expose().is_empty());
    assert_eq!(client.project_id().await.unwrap(), emu.config().project_id);
    assert_eq!(emu.plain_http_requests(), 0);
    assert_eq!(emu.mds_mtls_requests(), 2);
    let transport = client.mds_transport().await;
    assert!(transport.is_mtls(), "{transport}");
    assert_eq!(transport.mode(), MdsMtlsMode::Strict);
    assert!(transport.to_string().contains("strict"), "{transport}");
    let seen = emu.mds_mtls_client_certs();
    assert!(!seen.is_empty());
    let pem = std::fs::read_to_string(dir.join("client.key")).unwrap();
    assert!(pem.contains("BEGIN EC PRIVATE KEY") && pem.contains("BEGIN CERTIFICATE"));
}

#[tokio::test]
async fn strict_mode_sends_no_plain_http_after_an_mtls_failure() {
    let (emu, ca, dir) = mtls_emulator("strict-fail").await;
    foreign_client_cert(&dir, &ca);
    let client = client(&emu, MdsMtlsMode::Strict, &dir);
    let err = client.access_token(&[]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
    assert!(
        err.endpoint()
            .unwrap()
            .starts_with("https://metadata.google.internal:"),
        "{err}"
    );
    assert!(client.project_id().await.is_err());
    assert!(client.mds_transport().await.is_mtls());
    assert_eq!(
        emu.plain_http_requests(),
        0,
        "plain HTTP reached the emulator"
    );
    assert_eq!(emu.mds_mtls_requests(), 0);

    // The server certificate is verified against root.crt only: another CA's root fails too.
    let (emu2, _ca2, dir2) = mtls_emulator("strict-root").await;
    std::fs::write(dir2.join("root.crt"), MdsMtlsCa::new().unwrap().root_pem()).unwrap();
    let err = client_no_retry(&emu2, MdsMtlsMode::Strict, &dir2)
        .access_token(&[])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
    assert_eq!(emu2.plain_http_requests(), 0);
}

fn client_no_retry(emu: &Emulator, mode: MdsMtlsMode, dir: &Path) -> MetadataClient {
    MetadataClient::builder()
        .host(emu.host())
        .mtls_mode(mode)
        .mtls_dir(dir)
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn default_mode_uses_mtls_when_the_ping_succeeds() {
    let (emu, _ca, dir) = mtls_emulator("default").await;
    let client = client(&emu, MdsMtlsMode::Default, &dir);
    client.access_token(&[]).await.unwrap();
    let transport = client.mds_transport().await;
    assert!(transport.is_mtls(), "{transport}");
    assert!(transport.reason().contains("ping"), "{transport}");
    assert_eq!(emu.plain_http_requests(), 0);
    // The ping (to the IP name) and the token request.
    assert_eq!(emu.mds_mtls_requests(), 2);
}

#[tokio::test]
async fn default_mode_falls_back_once_and_says_why() {
    let (emu, ca, dir) = mtls_emulator("fallback").await;
    foreign_client_cert(&dir, &ca);
    let client = client(&emu, MdsMtlsMode::Default, &dir);
    client.access_token(&[]).await.unwrap();
    let transport = client.mds_transport().await;
    assert!(!transport.is_mtls(), "{transport}");
    assert!(transport.reason().contains("fell back"), "{transport}");
    assert!(transport.reason().contains("ping"), "{transport}");
    client.project_id().await.unwrap();
    assert_eq!(emu.plain_http_requests(), 2);
    assert_eq!(emu.mds_mtls_requests(), 0);
    // Decided once: repairing the files does not switch this client back.
    let good = ca.issue_client(CLIENT_CERT_LIFETIME).unwrap();
    ca.write_dir(&dir, &good).unwrap();
    client.project_id().await.unwrap();
    assert_eq!(emu.mds_mtls_requests(), 0);
    assert!(!client.mds_transport().await.is_mtls());
}

#[tokio::test]
async fn default_mode_without_files_is_plain_http_and_names_the_missing_file() {
    let emu = start(EmulatorConfig::default()).await;
    let dir = temp_dir("nofiles");
    let client = client(&emu, MdsMtlsMode::Default, &dir);
    client.access_token(&[]).await.unwrap();
    let transport = client.mds_transport().await;
    assert!(!transport.is_mtls());
    assert!(transport.reason().contains("root.crt"), "{transport}");
    assert!(transport.reason().contains("does not exist"), "{transport}");
    assert_eq!(emu.plain_http_requests(), 1);
}

#[tokio::test]
async fn none_mode_is_plain_http_even_with_files() {
    let (emu, _ca, dir) = mtls_emulator("none").await;
    let client = client(&emu, MdsMtlsMode::None, &dir);
    client.access_token(&[]).await.unwrap();
    assert!(!client.mds_transport().await.is_mtls());
    assert_eq!(emu.mds_mtls_requests(), 0);
    assert_eq!(emu.plain_http_requests(), 1);
}

#[tokio::test]
async fn a_rotated_client_certificate_is_used_without_a_restart() {
    let (emu, ca, dir) = mtls_emulator("rotate").await;
    let client = client(&emu, MdsMtlsMode::Strict, &dir);
    client.project_id().await.unwrap();
    let first = emu.mds_mtls_client_certs().last().cloned().unwrap();

    let rotated = ca.issue_client(CLIENT_CERT_LIFETIME).unwrap();
    ca.write_dir(&dir, &rotated).unwrap();
    client.project_id().await.unwrap();
    let last = emu.mds_mtls_client_certs().last().cloned().unwrap();
    assert_ne!(first, last);
    assert_eq!(last, rotated.cert_der());

    // A half-written rotation keeps the previous certificate rather than failing requests.
    let pem = rotated.combined_pem();
    std::fs::write(
        dir.join("client.key"),
        &pem.expose().as_bytes()[..pem.len() / 2],
    )
    .unwrap();
    client.project_id().await.unwrap();
    assert_eq!(emu.plain_http_requests(), 0);
}

/// Builds a strict client for `dir` and returns its error text, checking the kind and the file.
fn strict_error(dir: &Path, file: &str) -> String {
    let err = MetadataClient::builder()
        .host("127.0.0.1:1")
        .mtls_mode(MdsMtlsMode::Strict)
        .mtls_dir(dir)
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{text}");
    let path = dir.join(file).display().to_string();
    assert_eq!(err.endpoint(), Some(path.as_str()), "{text}");
    assert!(text.contains(&path), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    text
}

#[test]
fn bad_files_are_typed_errors_naming_the_file() {
    let ca = MdsMtlsCa::new().unwrap();
    let good = ca.issue_client(CLIENT_CERT_LIFETIME).unwrap();

    // Missing.
    let dir = temp_dir("missing");
    assert!(strict_error(&dir, "root.crt").contains("does not exist"));
    std::fs::write(dir.join("root.crt"), ca.root_pem()).unwrap();
    assert!(strict_error(&dir, "client.key").contains("does not exist"));

    // Half-written: the key without its certificate, then a cut-off PEM section.
    let pem = good.combined_pem();
    let key_only = good.key_pem().expose().to_owned();
    std::fs::write(dir.join("client.key"), &key_only).unwrap();
    assert!(strict_error(&dir, "client.key").contains("no certificate"));
    let cut = &pem.expose()[..key_only.len() + 100];
    std::fs::write(dir.join("client.key"), cut).unwrap();
    assert!(strict_error(&dir, "client.key").contains("half-written"));
    std::fs::write(dir.join("client.key"), &pem.expose()[..40]).unwrap();
    assert!(strict_error(&dir, "client.key").contains("half-written"));
    std::fs::write(dir.join("root.crt"), &ca.root_pem()[..60]).unwrap();
    assert!(strict_error(&dir, "root.crt").contains("half-written"));
    std::fs::write(dir.join("root.crt"), ca.root_pem()).unwrap();

    // A directory where the file should be.
    std::fs::remove_file(dir.join("client.key")).unwrap();
    std::fs::create_dir(dir.join("client.key")).unwrap();
    assert!(strict_error(&dir, "client.key").contains("directory"));
    std::fs::remove_dir(dir.join("client.key")).unwrap();

    // Expired.
    let now = SystemTime::now();
    let expired = ca
        .issue_client_valid(
            now - Duration::from_secs(3 * 86400),
            now - Duration::from_secs(3600),
        )
        .unwrap();
    ca.write_dir(&dir, &expired).unwrap();
    assert!(strict_error(&dir, "client.key").contains("expired"));

    // A key of the wrong type.
    let ed = ca.issue_client_ed25519().unwrap();
    ca.write_dir(&dir, &ed).unwrap();
    let text = strict_error(&dir, "client.key");
    assert!(text.contains("EC key"), "{text}");

    // A key that does not belong to the certificate.
    let other = ca.issue_client(CLIENT_CERT_LIFETIME).unwrap();
    std::fs::write(
        dir.join("client.key"),
        format!("{}{}", other.key_pem().expose(), good.cert_pem()),
    )
    .unwrap();
    assert!(strict_error(&dir, "client.key").contains("does not belong"));

    // The good pair builds.
    ca.write_dir(&dir, &good).unwrap();
    MetadataClient::builder()
        .host("127.0.0.1:1")
        .mtls_mode(MdsMtlsMode::Strict)
        .mtls_dir(&dir)
        .build()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn default_mode_reports_unusable_files_and_uses_http() {
    let ca = MdsMtlsCa::new().unwrap();
    let dir = temp_dir("default-bad");
    std::fs::write(dir.join("root.crt"), ca.root_pem()).unwrap();
    std::fs::create_dir(dir.join("client.key")).unwrap();
    let client = MetadataClient::builder()
        .host("127.0.0.1:1")
        .mtls_mode(MdsMtlsMode::Default)
        .mtls_dir(&dir)
        .build()
        .unwrap();
    let transport = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(client.mds_transport());
    assert!(!transport.is_mtls());
    assert!(transport.reason().contains("client.key"), "{transport}");
    assert!(transport.reason().contains("directory"), "{transport}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn strict_mode_refuses_a_non_loopback_host_override() {
    let ca = MdsMtlsCa::new().unwrap();
    let dir = temp_dir("host");
    ca.write_dir(&dir, &ca.issue_client(CLIENT_CERT_LIFETIME).unwrap())
        .unwrap();
    for host in [
        "10.1.2.3:8080",
        "metadata.example.com",
        "169.254.169.254:8080",
    ] {
        let err = MetadataClient::builder()
            .host(host)
            .mtls_mode(MdsMtlsMode::Strict)
            .mtls_dir(&dir)
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{host}: {err}");
        assert!(err.to_string().contains("loopback"), "{err}");
    }
    for host in [
        "127.0.0.1:9",
        "localhost:9",
        "[::1]:9",
        "metadata.google.internal",
    ] {
        MetadataClient::builder()
            .host(host)
            .mtls_mode(MdsMtlsMode::Strict)
            .mtls_dir(&dir)
            .build()
            .unwrap_or_else(|e| panic!("{host}: {e}"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn modes_parse_lower_cased_and_anything_else_is_an_error() {
    for (text, mode) in [
        ("none", MdsMtlsMode::None),
        ("Default", MdsMtlsMode::Default),
        (" STRICT ", MdsMtlsMode::Strict),
    ] {
        assert_eq!(
            MdsMtlsMode::parse(text, "GCE_METADATA_MTLS_MODE").unwrap(),
            mode
        );
    }
    assert_eq!(
        MdsMtlsMode::from_env_value(None).unwrap(),
        MdsMtlsMode::None
    );
    assert_eq!(
        MdsMtlsMode::from_env_value(Some("")).unwrap(),
        MdsMtlsMode::None
    );
    for bad in ["true", "on", "strict2", "mtls"] {
        let err = MdsMtlsMode::from_env_value(Some(bad)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert_eq!(err.endpoint(), Some("GCE_METADATA_MTLS_MODE"));
    }
}

#[tokio::test]
async fn strict_detection_probes_over_mtls_and_never_plain_http() {
    use workload_auth_metadata::{DetectionInput, detect};
    let (emu, ca, dir) = mtls_emulator("detect").await;
    let input = |dir: &Path| {
        DetectionInput::with_env_vars([
            ("GCE_METADATA_MTLS_MODE", "strict".to_owned()),
            ("WORKLOAD_AUTH_MDS_MTLS_DIR", dir.display().to_string()),
        ])
        .with_dmi_product_name_path("/nonexistent/workload-auth/product_name")
        .with_probe_addr(emu.addr())
        .with_probe_response_timeout(Duration::from_secs(5))
    };
    let probe = input(&dir);
    let found = tokio::task::spawn_blocking(move || detect(&probe))
        .await
        .unwrap();
    assert!(found.is_on_google_cloud(), "{found}");
    assert!(found.explain().contains("over mTLS"), "{found}");
    assert_eq!(emu.mds_mtls_requests(), 1);

    // A client certificate the server refuses: not a metadata server, and still no plain HTTP.
    let other = temp_dir("detect-foreign");
    foreign_client_cert(&other, &ca);
    let probe = input(&other);
    let refused = tokio::task::spawn_blocking(move || detect(&probe))
        .await
        .unwrap();
    assert!(!refused.is_on_google_cloud(), "{refused}");
    assert_eq!(emu.plain_http_requests(), 0);
}
