//! `external_account` (workload and workforce identity federation) against the emulator: every
//! credential source, STS client authentication, workforce user projects, impersonation after the
//! exchange, and the refusal of URLs a credential must not be sent to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use workload_auth_adc::{CertificateDer, CredentialType};
use workload_auth_core::ErrorKind;
use workload_auth_emulator::{Emulator, Endpoint, ca::TrustDomainCa};
use workload_auth_metadata::MetadataClient;

const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
const SAML_TYPE: &str = "urn:ietf:params:oauth:token-type:saml2";
const AWS_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
const MTLS_TYPE: &str = "urn:ietf:params:oauth:token-type:mtls";

fn external(emu: &Emulator, subject_token_type: &str, source: Value) -> Value {
    json!({
        "type": "external_account",
        "audience": WORKLOAD_AUDIENCE,
        "subject_token_type": subject_token_type,
        "token_url": format!("{}/v1/token", emu.url()),
        "credential_source": source,
        "quota_project_id": "federated-quota",
        "universe_domain": "googleapis.com",
    })
}

/// An OIDC token signed by the emulator, as an identity provider would issue it.
async fn oidc_token(emu: &Emulator) -> String {
    let client = MetadataClient::builder().host(emu.host()).build().unwrap();
    let token = client
        .id_token(WORKLOAD_AUDIENCE, false, false)
        .await
        .unwrap();
    token.secret().expose().to_owned()
}

async fn token_from(
    home: &TempDir,
    file: &Path,
    vars: &[(&str, String)],
) -> workload_auth_core::Result<String> {
    let mut vars = vars.to_vec();
    vars.push(("GOOGLE_APPLICATION_CREDENTIALS", file.display().to_string()));
    let creds = builder(home, &vars).build()?;
    assert_eq!(creds.credential_type(), CredentialType::ExternalAccount);
    creds
        .access_token()
        .await
        .map(|t| t.secret().expose().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sources_in_text_and_json() {
    let emu = emulator().await;
    let home = TempDir::new("ext-file");
    let jwt = oidc_token(&emu).await;
    let text = home.write("token.txt", &jwt);
    let as_json = home.write_json("token.json", &json!({"id_token": jwt, "other": 1}));

    let path = home.write_json(
        "text.json",
        &external(&emu, JWT_TYPE, json!({"file": text})),
    );
    let token = token_from(&home, &path, &[]).await.unwrap();
    assert_eq!(emu.issued_token(&token).unwrap().scopes, [CLOUD_PLATFORM]);

    let path = home.write_json(
        "json.json",
        &external(
            &emu,
            ID_TOKEN_TYPE,
            json!({"file": as_json, "format": {"type": "json", "subject_token_field_name": "id_token"}}),
        ),
    );
    token_from(&home, &path, &[]).await.unwrap();
    assert_eq!(emu.requests(Endpoint::StsToken), 2);

    // A SAML assertion the STS knows.
    let saml = home.write("saml.txt", SAML_TOKEN);
    let path = home.write_json(
        "saml.json",
        &external(&emu, SAML_TYPE, json!({"file": saml})),
    );
    token_from(&home, &path, &[]).await.unwrap();

    // A token the STS does not accept: refused, permanently.
    let forged = home.write("forged.txt", &format!("{jwt}x"));
    let path = home.write_json(
        "forged.json",
        &external(&emu, JWT_TYPE, json!({"file": forged})),
    );
    let err = token_from(&home, &path, &[]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.message().contains("invalid_grant"), "{err}");
    assert!(
        !err.to_string().contains(&jwt[..40]),
        "no token in the error"
    );

    // A missing subject-token file: an I/O error naming it, at token time.
    let path = home.write_json(
        "missing.json",
        &external(
            &emu,
            JWT_TYPE,
            json!({"file": home.path().join("nope.txt")}),
        ),
    );
    let err = token_from(&home, &path, &[]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.endpoint().unwrap().ends_with("nope.txt"));
    assert!(err.message().contains("does not exist"));

    // A JSON file without the named field.
    let path = home.write_json(
        "nofield.json",
        &external(
            &emu,
            JWT_TYPE,
            json!({"file": as_json, "format": {"type": "json", "subject_token_field_name": "access_token"}}),
        ),
    );
    let err = token_from(&home, &path, &[]).await.unwrap_err();
    assert!(err.message().contains("`access_token`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_sources_send_their_headers() {
    let emu = emulator().await;
    let home = TempDir::new("ext-url");
    let url = format!("{}/external/oidc-token?audience=my-pool", emu.url());
    let path = home.write_json(
        "text.json",
        &external(
            &emu,
            JWT_TYPE,
            json!({"url": url, "headers": {"Metadata": "True"}}),
        ),
    );
    token_from(&home, &path, &[]).await.unwrap();
    let json_url = format!("{url}&format=json");
    let path = home.write_json(
        "json.json",
        &external(
            &emu,
            JWT_TYPE,
            json!({"url": json_url, "headers": {"Metadata": "True"},
                   "format": {"type": "json", "subject_token_field_name": "access_token"}}),
        ),
    );
    token_from(&home, &path, &[]).await.unwrap();
    assert_eq!(emu.requests(Endpoint::SubjectToken), 2);
    assert_eq!(emu.requests(Endpoint::StsToken), 2);

    // Without the header the source answers 400: an error naming the URL.
    let path = home.write_json("nohdr.json", &external(&emu, JWT_TYPE, json!({"url": url})));
    let err = token_from(&home, &path, &[]).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.endpoint().unwrap().contains("/external/oidc-token"));
    assert!(
        !err.endpoint().unwrap().contains("audience="),
        "query left out"
    );
}

fn executable_file(
    emu: &Emulator,
    home: &TempDir,
    script: &str,
    extra: Value,
) -> std::path::PathBuf {
    let script_path = home.write("exe.sh", script);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut exe = json!({"command": format!("{} --flag 'two words'", script_path.display())});
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            exe[k] = v;
        }
    }
    home.write_json(
        "exe.json",
        &external(emu, ID_TOKEN_TYPE, json!({"executable": exe})),
    )
}

fn far_future() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executables_run_only_when_allowed_and_speak_the_protocol() {
    let emu = emulator().await;
    let home = TempDir::new("ext-exe");
    let jwt = oidc_token(&emu).await;
    let seen = home.path().join("seen.txt");
    let script = format!(
        "#!/bin/sh\nprintf '%s|%s|%s|%s|%s' \"$GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE\" \"$GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE\" \"$GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE\" \"$1\" \"$2\" > {seen}\n\
         printf '{{\"version\":1,\"success\":true,\"token_type\":\"urn:ietf:params:oauth:token-type:id_token\",\"id_token\":\"{jwt}\",\"expiration_time\":{exp}}}'\n",
        seen = seen.display(),
        exp = far_future(),
    );
    let path = executable_file(&emu, &home, &script, json!({}));
    let path_var = ("PATH", std::env::var("PATH").unwrap_or_default());

    // Not allowed: nothing runs.
    let err = token_from(&home, &path, std::slice::from_ref(&path_var))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
    assert!(
        err.hint()
            .unwrap()
            .contains("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1"),
        "{err}"
    );
    assert!(!seen.exists());

    let allow = ("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1".to_owned());
    let token = token_from(&home, &path, &[path_var.clone(), allow.clone()])
        .await
        .unwrap();
    assert!(emu.issued_token(&token).is_some());
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        format!("{WORKLOAD_AUDIENCE}|{ID_TOKEN_TYPE}|0|--flag|two words")
    );

    // A failure response: its code and message, as a refusal.
    let script = "#!/bin/sh\nprintf '{\"version\":1,\"success\":false,\"code\":\"401\",\"message\":\"Caller not authorized.\"}'\n";
    let path = executable_file(&emu, &home, script, json!({}));
    let err = token_from(&home, &path, &[path_var.clone(), allow.clone()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.message().contains("Caller not authorized."), "{err}");

    // Garbage output, and a non-zero exit.
    let path = executable_file(&emu, &home, "#!/bin/sh\necho 'Hello, world'\n", json!({}));
    let err = token_from(&home, &path, &[path_var.clone(), allow.clone()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedResponse, "{err}");
    assert!(err.endpoint().unwrap().starts_with("executable "), "{err}");
    let path = executable_file(&emu, &home, "#!/bin/sh\nexit 3\n", json!({}));
    let err = token_from(&home, &path, &[path_var.clone(), allow.clone()])
        .await
        .unwrap_err();
    assert!(err.message().contains("exited with status 3"), "{err}");

    // A program that does not exist.
    let file = home.write_json(
        "noexe.json",
        &external(
            &emu,
            ID_TOKEN_TYPE,
            json!({"executable": {"command": "/nonexistent/bin/tool"}}),
        ),
    );
    let err = token_from(&home, &file, &[path_var, allow])
        .await
        .unwrap_err();
    assert!(err.message().contains("cannot be started"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executable_output_files_are_a_cache_and_hangs_time_out() {
    let emu = emulator().await;
    let home = TempDir::new("ext-exe-cache");
    let jwt = oidc_token(&emu).await;
    let ran = home.path().join("ran.txt");
    let output = home.path().join("cache.json");
    let script = format!(
        "#!/bin/sh\necho run >> {ran}\nprintf '{{\"version\":1,\"success\":true,\"token_type\":\"urn:ietf:params:oauth:token-type:jwt\",\"id_token\":\"{jwt}\",\"expiration_time\":{exp}}}' | tee \"$GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE\"\n",
        ran = ran.display(),
        exp = far_future(),
    );
    let path = executable_file(&emu, &home, &script, json!({"output_file": output}));
    let vars = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1".to_owned()),
    ];
    token_from(&home, &path, &vars).await.unwrap();
    assert_eq!(std::fs::read_to_string(&ran).unwrap().lines().count(), 1);
    assert!(
        output.exists(),
        "the script wrote the output file it was told about"
    );
    // A second credential finds a valid cached response and does not run the program.
    token_from(&home, &path, &vars).await.unwrap();
    assert_eq!(std::fs::read_to_string(&ran).unwrap().lines().count(), 1);
    // An expired cache runs it again.
    std::fs::write(
        &output,
        format!(r#"{{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:jwt","id_token":"{jwt}","expiration_time":1}}"#),
    )
    .unwrap();
    token_from(&home, &path, &vars).await.unwrap();
    assert_eq!(std::fs::read_to_string(&ran).unwrap().lines().count(), 2);

    // A program that hangs is stopped at its timeout (5 s, the minimum).
    let path = executable_file(
        &emu,
        &home,
        "#!/bin/sh\nsleep 60\n",
        json!({"timeout_millis": 5000}),
    );
    let started = Instant::now();
    let err = token_from(&home, &path, &vars).await.unwrap_err();
    assert!(
        err.message().contains("did not finish within 5000 ms"),
        "{err}"
    );
    assert!(!err.is_transient(), "a hang is not retried");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
}

fn aws_file(emu: &Emulator, source: Value) -> Value {
    let mut file = external(emu, AWS_TYPE, source);
    file["credential_source"]["environment_id"] = json!("aws1");
    file["credential_source"]["regional_cred_verification_url"] =
        json!("https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15");
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_signs_get_caller_identity_with_env_or_imdsv2_credentials() {
    let emu = emulator().await;
    let aws = emu.config().identity.aws;
    let home = TempDir::new("ext-aws");

    // Credentials and region from the environment: no metadata request.
    let path = home.write_json("aws-env.json", &aws_file(&emu, json!({})));
    let vars = [
        ("AWS_REGION", aws.region.clone()),
        ("AWS_ACCESS_KEY_ID", aws.access_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY",
            aws.secret_access_key.expose().to_owned(),
        ),
        (
            "AWS_SESSION_TOKEN",
            aws.session_token.as_ref().unwrap().expose().to_owned(),
        ),
    ];
    let token = token_from(&home, &path, &vars).await.unwrap();
    assert!(emu.issued_token(&token).is_some());
    assert_eq!(emu.requests(Endpoint::AwsCredentials), 0);

    // A wrong secret: the emulator's STS checks the signature and refuses.
    let mut wrong = vars.clone();
    wrong[2].1 = "not-the-secret".into();
    let err = token_from(&home, &path, &wrong).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.message().contains("signature"), "{err}");

    // Everything from the IMDSv2 endpoints named in the file.
    let base = emu.url();
    let path = home.write_json(
        "aws-imds.json",
        &aws_file(
            &emu,
            json!({
                "region_url": format!("{base}/latest/meta-data/placement/availability-zone"),
                "url": format!("{base}/latest/meta-data/iam/security-credentials"),
                "imdsv2_session_token_url": format!("{base}/latest/api/token"),
            }),
        ),
    );
    let token = token_from(&home, &path, &[]).await.unwrap();
    assert!(emu.issued_token(&token).is_some());
    assert_eq!(emu.requests(Endpoint::AwsSessionToken), 1);
    assert_eq!(emu.requests(Endpoint::AwsRegion), 1);
    assert_eq!(
        emu.requests(Endpoint::AwsCredentials),
        2,
        "role name, then credentials"
    );

    // Without the IMDSv2 URL the metadata service refuses (it requires sessions).
    let path = home.write_json(
        "aws-v1.json",
        &aws_file(
            &emu,
            json!({
                "region_url": format!("{base}/latest/meta-data/placement/availability-zone"),
                "url": format!("{base}/latest/meta-data/iam/security-credentials"),
            }),
        ),
    );
    let err = token_from(&home, &path, &[]).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");

    // A wrong environment id is a load error.
    let mut bad = aws_file(&emu, json!({}));
    bad["credential_source"]["environment_id"] = json!("aws2");
    let path = home.write_json("aws2.json", &bad);
    let err = token_from(&home, &path, &vars).await.unwrap_err();
    assert!(err.message().contains("aws2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_authenticate_the_exchange_over_mutual_tls() {
    let emu = emulator().await;
    let home = TempDir::new("ext-x509");
    let ca = TrustDomainCa::new("workload.example").unwrap();
    let svid = ca
        .issue("spiffe://workload.example/ns/default/sa/app")
        .unwrap();
    let cert = home.write("certs/workload.pem", svid.chain_pem());
    let key = home.write("certs/workload.key", svid.private_key_pem().expose());
    let trust_chain = home.write("certs/chain.pem", ca.intermediate_pem());
    home.write_json(
        "certificate_config.json",
        &json!({"version": 1, "cert_configs": {"workload": {"cert_path": cert, "key_path": key}}}),
    );
    let listener = emu.start_mtls(&[ca.root_der().to_vec()]).await.unwrap();
    let mut file = external(
        &emu,
        MTLS_TYPE,
        json!({"certificate": {"use_default_certificate_config": true, "trust_chain_path": trust_chain}}),
    );
    file["token_url"] = json!(format!("{}/v1/token", listener.url()));
    let path = home.write_json("x509.json", &file);
    let vars = [
        (
            "GOOGLE_API_CERTIFICATE_CONFIG",
            home.path()
                .join("certificate_config.json")
                .display()
                .to_string(),
        ),
        ("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string()),
    ];
    let root = CertificateDer::from(listener.server_root_der().to_vec());
    let creds = builder(&home, &vars)
        .with_tls_root_certificates([root.clone()])
        .build()
        .unwrap();
    let explanation = creds.explain().await;
    assert!(
        explanation
            .details
            .iter()
            .any(|d| d.value.starts_with("certificate")),
        "{explanation}"
    );
    let token = creds.access_token().await.unwrap();
    assert!(emu.issued_token(token.secret().expose()).is_some());
    assert_eq!(emu.requests(Endpoint::StsToken), 1);

    // The same configuration against the plain-HTTP STS: no client certificate reaches it,
    // and the STS refuses the mtls token type.
    let mut plain = file.clone();
    plain["token_url"] = json!(format!("{}/v1/token", emu.url()));
    let path = home.write_json("x509-plain.json", &plain);
    let err = builder(
        &home,
        &[
            vars[0].clone(),
            ("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string()),
        ],
    )
    .build()
    .unwrap()
    .access_token()
    .await
    .unwrap_err();
    assert!(err.message().contains("client certificate"), "{err}");

    // A certificate from a CA the server does not trust: the handshake fails.
    let other = TrustDomainCa::new("other.example").unwrap();
    let stranger = other.issue("spiffe://other.example/ns/x/sa/y").unwrap();
    home.write("certs/workload.pem", stranger.chain_pem());
    home.write("certs/workload.key", stranger.private_key_pem().expose());
    home.write("certs/chain.pem", other.intermediate_pem());
    let creds = builder(&home, &vars)
        .with_tls_root_certificates([root])
        .build()
        .unwrap();
    let err = creds.access_token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");

    // A configuration naming both ways of finding the certificate is a load error.
    let mut both = file.clone();
    both["credential_source"]["certificate"]["certificate_config_location"] = json!("/x.json");
    let path = home.write_json("x509-both.json", &both);
    let err = builder_for(&home, &path).build().unwrap_err();
    assert!(err.message().contains("set exactly one"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_authentication_and_workforce_user_projects() {
    let emu = emulator().await;
    let home = TempDir::new("ext-wf");
    let saml = home.write("saml.txt", SAML_TOKEN);
    let mut file = external(&emu, SAML_TYPE, json!({"file": saml}));
    file["audience"] = json!(WORKFORCE_AUDIENCE);

    // A workforce pool without client authentication needs options.userProject.
    let path = home.write_json("no-project.json", &file);
    let err = token_from(&home, &path, &[]).await.unwrap_err();
    assert!(err.message().contains("userProject"), "{err}");
    file["workforce_pool_user_project"] = json!("wf-user-project");
    let path = home.write_json("project.json", &file);
    token_from(&home, &path, &[]).await.unwrap();

    // With client authentication (HTTP Basic) the project is not needed.
    let mut with_client = file.clone();
    with_client
        .as_object_mut()
        .unwrap()
        .remove("workforce_pool_user_project");
    with_client["client_id"] = json!(WF_CLIENT_ID);
    with_client["client_secret"] = json!(WF_CLIENT_SECRET);
    let path = home.write_json("client.json", &with_client);
    token_from(&home, &path, &[]).await.unwrap();
    let last = emu
        .recent_requests()
        .into_iter()
        .rfind(|r| r.endpoint == Endpoint::StsToken)
        .unwrap();
    assert_eq!(
        last.header("authorization"),
        Some("[redacted]"),
        "basic auth was sent"
    );
    with_client["client_secret"] = json!("wrong");
    let path = home.write_json("client-wrong.json", &with_client);
    let err = token_from(&home, &path, &[]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(!err.to_string().contains("wrong"), "{err}");

    // A user project on a workload identity pool is refused at load time (as google-auth does).
    let mut workload = external(&emu, SAML_TYPE, json!({"file": saml}));
    workload["workforce_pool_user_project"] = json!("p");
    let path = home.write_json("workload-project.json", &workload);
    let err = builder_for(&home, &path).build().unwrap_err();
    assert!(
        err.message().contains("workforce_pool_user_project"),
        "{err}"
    );

    // An audience the STS does not know.
    let mut unknown = external(&emu, SAML_TYPE, json!({"file": saml}));
    unknown["audience"] = json!(
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/nope/providers/nope"
    );
    let path = home.write_json("unknown.json", &unknown);
    let err = token_from(&home, &path, &[]).await.unwrap_err();
    assert!(err.message().contains("invalid_target"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_after_the_exchange_gives_access_and_id_tokens() {
    let emu = emulator().await;
    let home = TempDir::new("ext-imp");
    let saml = home.write("saml.txt", SAML_TOKEN);
    let mut file = external(&emu, SAML_TYPE, json!({"file": saml}));
    file["service_account_impersonation_url"] = json!(impersonation_url(&emu, TARGET_SA));
    file["service_account_impersonation"] = json!({"token_lifetime_seconds": 1800});
    let path = home.write_json("imp.json", &file);
    let creds = builder_for(&home, &path)
        .with_scopes(["https://www.googleapis.com/auth/devstorage.read_only"])
        .build()
        .unwrap();
    let token = creds.access_token().await.unwrap();
    assert_eq!(
        emu.issued_token(token.secret().expose()).unwrap().scopes,
        ["https://www.googleapis.com/auth/devstorage.read_only"]
    );
    assert!(token.expires_in() <= Duration::from_secs(1800));
    let id = creds.id_token("https://svc.example").await.unwrap();
    assert_eq!(
        verified_claims(&emu, id.secret().expose())["email"],
        TARGET_SA
    );
    assert_eq!(
        emu.requests(Endpoint::StsToken),
        1,
        "one federated token serves both"
    );
    assert_eq!(emu.requests(Endpoint::IamGenerateAccessToken), 1);
    assert_eq!(emu.requests(Endpoint::IamGenerateIdToken), 1);

    // Without impersonation there is no ID token.
    let plain = home.write_json(
        "plain.json",
        &external(&emu, SAML_TYPE, json!({"file": saml})),
    );
    let err = builder_for(&home, &plain)
        .build()
        .unwrap()
        .id_token("https://svc.example")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_never_sent_to_urls_that_are_not_https_or_loopback() {
    let emu = emulator().await;
    let home = TempDir::new("ext-evil");
    let saml = home.write("saml.txt", SAML_TOKEN);
    for (field, value) in [
        ("token_url", "http://evil.example/"),
        ("token_url", "http://10.1.2.3/v1/token"),
        ("token_url", "ftp://evil.example/v1/token"),
        (
            "service_account_impersonation_url",
            "http://evil.example/v1/projects/-/serviceAccounts/a@b.iam.gserviceaccount.com:generateAccessToken",
        ),
    ] {
        let mut file = external(&emu, SAML_TYPE, json!({"file": saml}));
        file[field] = json!(value);
        let path = home.write_json("evil.json", &file);
        let started = Instant::now();
        let err = builder_for(&home, &path).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{value}: {err}");
        assert!(err.message().contains(field), "{err}");
        assert!(err.hint().unwrap().contains("https"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "refused before any request"
        );
    }
    // Same for the other credential types' endpoints.
    let mut user = authorized_user_json(&emu);
    user["token_uri"] = json!("http://evil.example/token");
    let path = home.write_json("user-evil.json", &user);
    assert!(builder_for(&home, &path).build().is_err());
    let mut wf = external_authorized_user_json(&emu);
    wf["token_url"] = json!("http://evil.example/v1/oauth/token");
    let path = home.write_json("wf-evil.json", &wf);
    assert!(builder_for(&home, &path).build().is_err());
    let mut sa = service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID);
    sa["token_uri"] = json!("http://evil.example/token");
    let path = home.write_json("sa-evil.json", &sa);
    assert!(builder_for(&home, &path).build().is_err());
    assert_eq!(emu.total_requests(), 0);
}
