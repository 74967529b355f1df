//! Application Default Credentials on the metadata server over mTLS: the mode and directory come
//! from the environment (or the builder), tokens arrive over mTLS only in `strict`, and
//! `explain` (text and JSON) says which transport was chosen and why.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TempDir, builder, emulator};
use workload_auth_adc::CredentialType;
use workload_auth_core::ErrorKind;
use workload_auth_metadata::MdsMtlsMode;

fn detail<'a>(explanation: &'a workload_auth_adc::Explanation, name: &str) -> &'a str {
    &explanation
        .details
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no {name} in {explanation}"))
        .value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_from_the_environment_gets_tokens_over_mtls_and_explains_it() {
    let emu = emulator().await;
    let home = TempDir::new("mds-mtls");
    let dir = home.path().join("mds");
    emu.enable_mds_mtls(&dir).unwrap();
    let creds = builder(
        &home,
        &[
            ("GCE_METADATA_HOST", emu.host()),
            ("GCE_METADATA_MTLS_MODE", "STRICT".to_owned()),
            ("WORKLOAD_AUTH_MDS_MTLS_DIR", dir.display().to_string()),
        ],
    )
    .build()
    .unwrap();
    assert_eq!(creds.credential_type(), CredentialType::MetadataServer);
    creds.access_token().await.unwrap();
    let explanation = creds.explain().await;
    assert_eq!(detail(&explanation, "metadata_transport"), "mtls");
    assert_eq!(detail(&explanation, "metadata_mtls_mode"), "strict");
    assert_eq!(
        detail(&explanation, "metadata_server"),
        format!(
            "https://metadata.google.internal:{}/computeMetadata/v1/",
            emu.addr().port()
        )
    );
    assert!(detail(&explanation, "metadata_transport_reason").contains("never plain HTTP"));
    let text = explanation.to_string();
    assert!(text.contains("metadata_transport"), "{text}");
    let json = serde_json::to_value(&explanation).unwrap();
    assert!(
        json.to_string().contains("\"metadata_transport\""),
        "{json}"
    );
    assert_eq!(emu.plain_http_requests(), 0);
    assert!(emu.mds_mtls_requests() >= 2, "token and project id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_option_beats_the_environment_and_default_mode_falls_back_visibly() {
    let emu = emulator().await;
    let home = TempDir::new("mds-mtls-default");
    let empty = home.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let creds = builder(
        &home,
        &[
            ("GCE_METADATA_HOST", emu.host()),
            ("GCE_METADATA_MTLS_MODE", "strict".to_owned()),
        ],
    )
    .with_metadata_mtls_mode(MdsMtlsMode::Default)
    .with_metadata_mtls_dir(&empty)
    .build()
    .unwrap();
    creds.access_token().await.unwrap();
    let explanation = creds.explain().await;
    assert_eq!(detail(&explanation, "metadata_transport"), "http");
    assert_eq!(detail(&explanation, "metadata_mtls_mode"), "default");
    assert!(detail(&explanation, "metadata_transport_reason").contains("does not exist"));
    assert_eq!(emu.mds_mtls_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_mode_or_missing_files_in_strict_fail_the_build_naming_the_cause() {
    let emu = emulator().await;
    let home = TempDir::new("mds-mtls-bad");
    let err = builder(
        &home,
        &[
            ("GCE_METADATA_HOST", emu.host()),
            ("GCE_METADATA_MTLS_MODE", "yes".to_owned()),
        ],
    )
    .build()
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("GCE_METADATA_MTLS_MODE"), "{err}");

    let missing = home.path().join("nothing-here");
    let err = builder(
        &home,
        &[
            ("GCE_METADATA_HOST", emu.host()),
            ("GCE_METADATA_MTLS_MODE", "strict".to_owned()),
            ("WORKLOAD_AUTH_MDS_MTLS_DIR", missing.display().to_string()),
        ],
    )
    .build()
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert!(err.to_string().contains("root.crt"), "{err}");
    assert_eq!(emu.total_requests(), 0);
}
