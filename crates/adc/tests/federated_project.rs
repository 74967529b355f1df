//! The project id of workload identity federation, from Cloud Resource Manager (the emulator's
//! `GET /v1/projects/NUMBER`), only where google-auth asks: scopes set and neither
//! `GOOGLE_CLOUD_PROJECT` nor `GCLOUD_PROJECT`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{CLOUD_PLATFORM, SAML_TOKEN, TempDir, WORKFORCE_AUDIENCE, WORKLOAD_AUDIENCE};
use serde_json::{Value, json};
use workload_auth_adc::{Builder, ProjectIdSource};
use workload_auth_core::ErrorKind;
use workload_auth_emulator::{Emulator, Endpoint, Fault};

fn external(emu: &Emulator, home: &TempDir, audience: &str) -> Value {
    let saml = home.write("saml.txt", SAML_TOKEN);
    json!({
        "type": "external_account",
        "audience": audience,
        "subject_token_type": "urn:ietf:params:oauth:token-type:saml2",
        "token_url": format!("{}/v1/token", emu.url()),
        "credential_source": {"file": saml.display().to_string()},
        "quota_project_id": "federated-quota",
    })
}

fn builder(emu: &Emulator, home: &TempDir, file: &Value, vars: &[(&str, &str)]) -> Builder {
    let path = home.write_json("external.json", file);
    let mut all = vec![("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string())];
    all.extend(vars.iter().map(|(k, v)| (*k, (*v).to_owned())));
    common::builder(home, &all).with_resource_manager_endpoint(format!("{}/v1", emu.url()))
}

async fn emulator() -> Emulator {
    let emu = common::emulator().await;
    emu.update_config(|c| {
        c.identity.projects = vec![
            ("123456789012".into(), "federated-project".into()),
            ("555".into(), "workforce-billing".into()),
        ]
    });
    emu
}

#[tokio::test]
async fn with_scopes_the_project_comes_from_resource_manager_once() {
    let emu = emulator().await;
    let home = TempDir::new("crm-lookup");
    let file = external(&emu, &home, WORKLOAD_AUDIENCE);
    let credentials = builder(&emu, &home, &file, &[])
        .with_scopes([CLOUD_PLATFORM])
        .build()
        .unwrap();
    assert_eq!(
        credentials.project_id().await.unwrap().as_deref(),
        Some("federated-project")
    );
    assert_eq!(
        credentials.project_id().await.unwrap().as_deref(),
        Some("federated-project")
    );
    assert_eq!(emu.requests(Endpoint::ResourceManagerProject), 1, "cached");
    let lookup = emu
        .recent_requests()
        .into_iter()
        .find(|r| r.endpoint == Endpoint::ResourceManagerProject)
        .unwrap();
    assert_eq!(lookup.path, "/v1/projects/123456789012");
    assert_eq!(
        lookup.header("x-goog-user-project"),
        Some("federated-quota")
    );
    assert!(lookup.header("authorization").is_some());
    let explanation = credentials.explain().await;
    assert_eq!(explanation.project_id.as_deref(), Some("federated-project"));
    assert_eq!(
        explanation.project_id_source,
        Some(ProjectIdSource::ResourceManager)
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn not_asked_without_scopes_or_with_a_project_variable() {
    let emu = emulator().await;
    let home = TempDir::new("crm-skip");
    let file = external(&emu, &home, WORKLOAD_AUDIENCE);
    let no_scopes = builder(&emu, &home, &file, &[]).build().unwrap();
    assert_eq!(no_scopes.project_id().await.unwrap(), None);
    for var in ["GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"] {
        let credentials = builder(&emu, &home, &file, &[(var, "from-env")])
            .with_scopes([CLOUD_PLATFORM])
            .build()
            .unwrap();
        assert_eq!(
            credentials.project_id().await.unwrap().as_deref(),
            Some("from-env")
        );
    }
    assert_eq!(emu.requests(Endpoint::ResourceManagerProject), 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn workforce_pools_use_their_numeric_user_project() {
    let emu = emulator().await;
    let home = TempDir::new("crm-workforce");
    let mut file = external(&emu, &home, WORKFORCE_AUDIENCE);
    file["workforce_pool_user_project"] = json!("555");
    let credentials = builder(&emu, &home, &file, &[])
        .with_scopes([CLOUD_PLATFORM])
        .build()
        .unwrap();
    assert_eq!(
        credentials.project_id().await.unwrap().as_deref(),
        Some("workforce-billing")
    );
    // A project id (not a number) as user project is not looked up.
    file["workforce_pool_user_project"] = json!("wf-user-project");
    let credentials = builder(&emu, &home, &file, &[])
        .with_scopes([CLOUD_PLATFORM])
        .build()
        .unwrap();
    assert_eq!(credentials.project_id().await.unwrap(), None);
    assert_eq!(emu.requests(Endpoint::ResourceManagerProject), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn failures_are_typed_errors_and_not_cached() {
    let emu = emulator().await;
    let home = TempDir::new("crm-fail");
    let file = external(&emu, &home, WORKLOAD_AUDIENCE);
    let credentials = builder(&emu, &home, &file, &[])
        .with_scopes([CLOUD_PLATFORM])
        .build()
        .unwrap();
    emu.inject(
        Endpoint::ResourceManagerProject,
        Fault::Malformed(r#"{"projectId":"bad/../id"}"#.into()),
        Some(1),
    );
    let e = credentials.project_id().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MalformedResponse, "{e}");
    assert!(e.message().contains("`projectId`"), "{e}");
    emu.inject(
        Endpoint::ResourceManagerProject,
        Fault::Status(403),
        Some(1),
    );
    let e = credentials.project_id().await.unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    // The next call asks again and succeeds.
    assert_eq!(
        credentials.project_id().await.unwrap().as_deref(),
        Some("federated-project")
    );
    // An unknown project number is the server's 403, reported as such.
    emu.update_config(|c| {
        c.identity.projects.clear();
        c.numeric_project_id = 1;
    });
    let other = builder(&emu, &home, &file, &[])
        .with_scopes([CLOUD_PLATFORM])
        .build()
        .unwrap();
    let e = other.project_id().await.unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    let explanation = other.explain().await;
    assert_eq!(explanation.project_id, None);
    assert!(
        explanation
            .project_id_steps
            .iter()
            .any(|s| s.name.contains("Cloud Resource Manager")),
        "{explanation:?}"
    );
    emu.shutdown().await;
}
