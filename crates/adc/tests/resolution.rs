//! The Application Default Credentials search: its order, what each step does with a missing or
//! bad file, the metadata server, the fast failure off Google Cloud, project id / quota project /
//! universe domain precedence, and `explain`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use workload_auth_adc::{
    Builder, CredentialType, DetectionInput, EnvSource, Outcome, ProjectIdSource,
};
use workload_auth_core::ErrorKind;
use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint};

const GCLOUD_FILE: &str = ".config/gcloud/application_default_credentials.json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_variable_comes_first_and_never_falls_back() {
    let emu = emulator().await;
    let home = TempDir::new("order");
    home.write_json(GCLOUD_FILE, &authorized_user_json(&emu));
    let sa = home.write_json(
        "sa.json",
        &service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
    );

    let creds = builder(
        &home,
        &[("GOOGLE_APPLICATION_CREDENTIALS", sa.display().to_string())],
    )
    .build()
    .unwrap();
    assert_eq!(creds.credential_type(), CredentialType::ServiceAccount);
    let steps = creds.explain().await.steps;
    assert_eq!(steps[0].outcome, Outcome::Chosen);
    assert_eq!(steps[1].outcome, Outcome::NotTried);
    assert_eq!(steps[2].outcome, Outcome::NotTried);

    // Set but missing: an error naming the variable and the path, even with gcloud's file there.
    let missing = home.path().join("no-such-key.json");
    let builder_missing = builder(
        &home,
        &[(
            "GOOGLE_APPLICATION_CREDENTIALS",
            missing.display().to_string(),
        )],
    );
    let err = builder_missing.clone().build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CredentialsNotFound, "{err}");
    assert!(
        err.message().contains("GOOGLE_APPLICATION_CREDENTIALS"),
        "{err}"
    );
    assert!(err.to_string().contains("no-such-key.json"), "{err}");
    assert!(err.hint().unwrap().contains("unset"), "{err}");
    let explanation = builder_missing.explain().await;
    assert_eq!(explanation.credential_type, None);
    assert_eq!(explanation.steps[0].outcome, Outcome::Failed);
    assert!(explanation.error.unwrap().contains("no-such-key.json"));

    // A directory is not a credentials file.
    let err = builder(
        &home,
        &[(
            "GOOGLE_APPLICATION_CREDENTIALS",
            home.path().display().to_string(),
        )],
    )
    .build()
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert!(err.message().contains("directory"), "{err}");

    // Empty counts as unset: gcloud's file is used.
    let creds = builder(&home, &[("GOOGLE_APPLICATION_CREDENTIALS", String::new())])
        .build()
        .unwrap();
    assert_eq!(creds.credential_type(), CredentialType::AuthorizedUser);
    assert_eq!(creds.explain().await.steps[0].detail, "not set");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_file_missing_means_next_step_and_bad_means_error() {
    let emu = Emulator::start(EmulatorConfig {
        project_id: "metadata-project".into(),
        universe_domain: Some("metadata-universe.test".into()),
        ..emulator_config()
    })
    .await
    .unwrap();
    let home = TempDir::new("gcloud");
    let metadata = [("GCE_METADATA_HOST", emu.host())];

    // Missing: the metadata server (named by GCE_METADATA_HOST) is used.
    let creds = builder(&home, &metadata).build().unwrap();
    assert_eq!(creds.credential_type(), CredentialType::MetadataServer);
    assert_eq!(
        creds.project_id().await.unwrap().as_deref(),
        Some("metadata-project")
    );
    assert_eq!(
        creds.universe_domain().await.unwrap(),
        "metadata-universe.test"
    );
    let token = creds.access_token().await.unwrap();
    assert!(emu.issued_token(token.secret().expose()).is_some());
    let id = creds.id_token("https://svc.example").await.unwrap();
    let claims = verified_claims(&emu, id.secret().expose());
    assert_eq!(claims["email"], emu.config().email, "format=full");
    let explanation = creds.explain().await;
    assert_eq!(
        explanation.project_id_source,
        Some(ProjectIdSource::MetadataServer)
    );
    assert_eq!(explanation.steps[1].outcome, Outcome::NotFound);
    assert!(
        explanation.steps[2].detail.contains("GCE_METADATA_HOST"),
        "{explanation}"
    );

    // Present but invalid: an error naming the file; no fall back to the metadata server.
    let path = home.write(GCLOUD_FILE, "{\"type\": \"authorized_user\", ");
    let before = emu.total_requests();
    let err = builder(&home, &metadata).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert_eq!(err.endpoint(), Some(path.display().to_string().as_str()));
    assert_eq!(emu.total_requests(), before);

    // CLOUDSDK_CONFIG moves gcloud's directory.
    let other = TempDir::new("cloudsdk");
    other.write_json(
        "application_default_credentials.json",
        &authorized_user_json(&emu),
    );
    let creds = builder(
        &home,
        &[
            ("CLOUDSDK_CONFIG", other.path().display().to_string()),
            ("GCE_METADATA_HOST", emu.host()),
        ],
    )
    .build()
    .unwrap();
    assert_eq!(creds.credential_type(), CredentialType::AuthorizedUser);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_google_cloud_with_nothing_configured_fails_in_milliseconds() {
    let home = TempDir::new("nothing");
    // A loopback port nobody listens on stands in for the metadata IP: refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let env = EnvSource::from_vars([("HOME", home.path().display().to_string())]);
    let lookup = env.clone();
    let detection = DetectionInput::with_env(move |name| lookup.var(name))
        .with_dmi_product_name_path(home.path().join("product_name"))
        .with_probe_addr(format!("127.0.0.1:{port}").parse().unwrap());
    let started = Instant::now();
    let err = Builder::new()
        .with_env(env)
        .with_detection(detection)
        .build()
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(250), "took {elapsed:?}");
    assert_eq!(err.kind(), ErrorKind::CredentialsNotFound);
    let text = err.to_string();
    for place in [
        "GOOGLE_APPLICATION_CREDENTIALS",
        "application_default_credentials.json",
        "GCE_METADATA_HOST",
        "NO_GCE_CHECK",
        "product_name",
        "probe",
    ] {
        assert!(text.contains(place), "{place} missing from: {text}");
    }
    assert!(
        err.hint()
            .unwrap()
            .contains("gcloud auth application-default login")
    );

    // With the builder's own detection over the given environment, NO_GCE_CHECK decides.
    let started = Instant::now();
    let err = Builder::new()
        .with_env(EnvSource::from_vars([("NO_GCE_CHECK", "true")]).with_home(home.path()))
        .build()
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(250));
    assert!(
        err.to_string().contains("NO_GCE_CHECK: set to true"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_id_precedence() {
    let emu = emulator().await;
    let home = TempDir::new("project");
    let sa = home.write_json(
        "sa.json",
        &service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
    );
    let gac = ("GOOGLE_APPLICATION_CREDENTIALS", sa.display().to_string());
    let project = |vars: &[(&str, String)]| {
        let creds = builder(&home, vars).build().unwrap();
        async move {
            let e = creds.explain().await;
            (e.project_id, e.project_id_source)
        }
    };
    assert_eq!(
        project(std::slice::from_ref(&gac)).await,
        (
            Some("test-project".into()),
            Some(ProjectIdSource::CredentialsFile)
        )
    );
    assert_eq!(
        project(&[gac.clone(), ("GCLOUD_PROJECT", "legacy".into())]).await,
        (
            Some("legacy".into()),
            Some(ProjectIdSource::GcloudProjectEnv)
        )
    );
    assert_eq!(
        project(&[
            gac.clone(),
            ("GCLOUD_PROJECT", "legacy".into()),
            ("GOOGLE_CLOUD_PROJECT", "env-project".into())
        ])
        .await,
        (
            Some("env-project".into()),
            Some(ProjectIdSource::GoogleCloudProjectEnv)
        )
    );

    // gcloud's file: the project of gcloud's active configuration.
    home.write_json(GCLOUD_FILE, &authorized_user_json(&emu));
    assert_eq!(project(&[]).await, (None, None));
    home.write(
        ".config/gcloud/configurations/config_default",
        "[core]\naccount = someone@example.com\nproject = gcloud-project\n",
    );
    assert_eq!(
        project(&[]).await,
        (
            Some("gcloud-project".into()),
            Some(ProjectIdSource::GcloudConfig)
        )
    );
    // ...but not for a file named by GOOGLE_APPLICATION_CREDENTIALS.
    let user = home.write_json("user.json", &authorized_user_json(&emu));
    assert_eq!(
        project(&[("GOOGLE_APPLICATION_CREDENTIALS", user.display().to_string())]).await,
        (None, None)
    );
    // The metadata server is not asked when the environment decides.
    let creds = builder(
        &TempDir::new("project-md"),
        &[
            ("GCE_METADATA_HOST", emu.host()),
            ("GOOGLE_CLOUD_PROJECT", "env-project".into()),
        ],
    )
    .build()
    .unwrap();
    assert_eq!(
        creds.project_id().await.unwrap().as_deref(),
        Some("env-project")
    );
    assert_eq!(emu.requests(Endpoint::ProjectId), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_credentials_skip_the_search() {
    let emu = emulator().await;
    let home = TempDir::new("explicit");
    let json = serde_json::to_string(&authorized_user_json(&emu)).unwrap();
    let creds = builder(
        &home,
        &[("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent".into())],
    )
    .with_json(json.as_str())
    .build()
    .unwrap();
    assert_eq!(creds.credential_type(), CredentialType::AuthorizedUser);
    assert_eq!(creds.explain().await.steps.len(), 1);
    let debug = format!("{:?}", builder(&home, &[]).with_json(json.as_str()));
    assert!(!debug.contains(CLIENT_SECRET), "{debug}");

    let file = home.write_json(
        "sa.json",
        &service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
    );
    let creds = builder(&home, &[])
        .with_credentials_file(&file)
        .build()
        .unwrap();
    assert_eq!(creds.credential_type(), CredentialType::ServiceAccount);
    let err = builder(&home, &[])
        .with_credentials_file(home.path().join("gone.json"))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CredentialsNotFound);
    assert!(err.endpoint().unwrap().ends_with("gone.json"));

    // An explicit metadata host: no detection at all.
    let creds = builder(&home, &[])
        .with_metadata_host(emu.host())
        .build()
        .unwrap();
    assert_eq!(creds.credential_type(), CredentialType::MetadataServer);
    creds.access_token().await.unwrap();
    assert_eq!(
        creds.universe_domain().await.unwrap(),
        "googleapis.com",
        "404 means the default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_reads_well_and_serializes() {
    let emu = emulator().await;
    let home = TempDir::new("explain");
    let mut user = authorized_user_json(&emu);
    user["account"] = json!("someone@example.com");
    home.write_json(GCLOUD_FILE, &user);
    let explanation = builder(&home, &[("GOOGLE_CLOUD_PROJECT", "p-1".into())])
        .explain()
        .await;
    let text = explanation.to_string();
    assert!(
        text.starts_with("Application Default Credentials\n"),
        "{text}"
    );
    assert!(
        text.contains("1. GOOGLE_APPLICATION_CREDENTIALS: not found — not set"),
        "{text}"
    );
    assert!(text.contains("2. gcloud credentials file ("), "{text}");
    assert!(text.contains("credential type: authorized_user"), "{text}");
    assert!(text.contains("account: someone@example.com"), "{text}");
    assert!(
        text.contains("project id: p-1 (from GOOGLE_CLOUD_PROJECT)"),
        "{text}"
    );
    assert!(
        text.contains("quota project: user-quota-project (from the credentials file)"),
        "{text}"
    );
    assert!(text.contains("universe domain: googleapis.com"), "{text}");
    assert!(!text.contains(CLIENT_SECRET) && !text.contains(REFRESH_TOKEN));

    let value = serde_json::to_value(&explanation).unwrap();
    assert_eq!(value["credential_type"], "authorized_user");
    assert_eq!(value["project_id_source"], "google_cloud_project_env");
    assert_eq!(value["quota_project_source"], "credentials_file");
    assert_eq!(value["steps"][0]["outcome"], "not_found");
    assert_eq!(value["steps"][1]["outcome"], "chosen");
    assert_eq!(value["steps"][2]["outcome"], "not_tried");
    assert!(value["error"].is_null());
    assert!(!value.to_string().contains(REFRESH_TOKEN));

    // Blocking, from a thread without a runtime.
    let home_path = home.path().to_owned();
    let blocking = std::thread::spawn(move || {
        Builder::new()
            .with_env(EnvSource::from_vars::<&str, &str>([]).with_home(home_path))
            .with_detection(no_cloud())
            .explain_blocking()
    })
    .join()
    .unwrap();
    assert_eq!(
        blocking.credential_type,
        Some(CredentialType::AuthorizedUser)
    );
}
