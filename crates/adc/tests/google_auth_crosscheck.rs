//! Cross-check with the reference library: for each kind of credential a real user has — a gcloud
//! user login, a downloaded service-account key, a gcloud impersonation login, workload and
//! workforce identity federation configurations of every source type, a workforce user login,
//! the metadata server — this writes the files into a temporary HOME, then asks both google-auth
//! (`google.auth.default()`, in a child `python3` running `tests/python/adc/crosscheck.py`) and
//! this crate, with the same environment. They must agree on the credential type, project id,
//! quota project and universe domain, and both must obtain a token from the emulator.
//!
//! Needs `python3` on PATH with google-auth 2.63.0 (`pip install -r tests/python/requirements.txt`,
//! which scripts/test.sh does in target/venv); fails, never skips, without it. Set
//! `WORKLOAD_AUTH_PYTHON` to use another interpreter.
//!
//! Where google-auth hard-codes Google's hosts instead of reading the file (user credentials'
//! token endpoint, impersonation files' IAM URL) the script points those at the emulator; and it
//! confines every socket to loopback, so nothing leaves the machine.
//!
//! Not cross-checked: EC (ES256) service-account keys, which google-auth does not load from files
//! (it always uses its RSA signer there); they are tested against the emulator in
//! `service_account.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use workload_auth_adc::{Builder, CertificateDer, CredentialType, DetectionInput, EnvSource};
use workload_auth_emulator::{Emulator, EmulatorConfig};
use workload_auth_metadata::MetadataClient;

const INSTALL_HINT: &str = "pip install -r tests/python/requirements.txt";

struct Case {
    name: &'static str,
    /// Environment variables for both (HOME and CLOUDSDK_CONFIG are added).
    vars: Vec<(String, String)>,
    /// google-auth attributes to point at the emulator (see crosscheck.py).
    overrides: Value,
    expected: CredentialType,
    /// Roots our client trusts (the mTLS listener's), also given to Python as REQUESTS_CA_BUNDLE.
    tls_root: Option<Vec<u8>>,
}

fn var(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

/// google-auth's class for each of our types.
fn python_class(kind: CredentialType) -> &'static [&'static str] {
    match kind {
        CredentialType::MetadataServer => &["google.auth.compute_engine.credentials.Credentials"],
        CredentialType::ServiceAccount => &["google.oauth2.service_account.Credentials"],
        CredentialType::AuthorizedUser => &["google.oauth2.credentials.Credentials"],
        CredentialType::ImpersonatedServiceAccount => {
            &["google.auth.impersonated_credentials.Credentials"]
        }
        CredentialType::ExternalAccount => &[
            "google.auth.identity_pool.Credentials",
            "google.auth.aws.Credentials",
            "google.auth.pluggable.Credentials",
        ],
        CredentialType::ExternalAccountAuthorizedUser => {
            &["google.auth.external_account_authorized_user.Credentials"]
        }
        _ => &[],
    }
}

async fn run_python(home: &Path, case: &Case) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/adc/crosscheck.py");
    let python = std::env::var("WORKLOAD_AUTH_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut command = tokio::process::Command::new(&python);
    command
        .arg(&script)
        .arg(case.overrides.to_string())
        .env_clear()
        .env("HOME", home)
        .env("CLOUDSDK_CONFIG", home.join(".config/gcloud"))
        .envs(case.vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if case.tls_root.is_some() {
        command.env("REQUESTS_CA_BUNDLE", home.join("tls-root.pem"));
    }
    // What finds the interpreter and its packages with HOME moved: PATH, pyenv, virtualenvs.
    for name in [
        "PATH",
        "PYENV_ROOT",
        "PYENV_VERSION",
        "VIRTUAL_ENV",
        "PYTHONPATH",
        "LANG",
    ] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    if let Some(real_home) = std::env::var_os("HOME").map(PathBuf::from) {
        if std::env::var_os("PYENV_ROOT").is_none() {
            command.env("PYENV_ROOT", real_home.join(".pyenv"));
        }
        let user_base =
            std::env::var_os("PYTHONUSERBASE").unwrap_or_else(|| real_home.join(".local").into());
        command.env("PYTHONUSERBASE", user_base);
    }
    let output = match tokio::time::timeout(Duration::from_secs(120), command.output()).await {
        Err(_) => panic!("{}: google-auth did not finish within 120 s", case.name),
        Ok(Err(e)) => panic!(
            "cannot run `{python}` ({e}): the cross-check needs Python 3 with google-auth; {INSTALL_HINT}"
        ),
        Ok(Ok(output)) => output,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        Some(3) => panic!("google-auth is not installed for `{python}`: {INSTALL_HINT}\n{stderr}"),
        _ => panic!(
            "{}: google-auth failed ({}).\nstdout:\n{stdout}\nstderr:\n{stderr}",
            case.name, output.status
        ),
    }
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{}: output is not JSON ({e}): {stdout}\n{stderr}",
            case.name
        )
    })
}

async fn check(emu: &Emulator, home: &TempDir, case: Case) {
    let mut vars = case.vars.clone();
    vars.push(var(
        "CLOUDSDK_CONFIG",
        home.path().join(".config/gcloud").display().to_string(),
    ));
    let env = EnvSource::from_vars(vars).with_home(home.path());
    let lookup = env.clone();
    let mut builder = Builder::new()
        .with_env(env)
        .with_detection(
            DetectionInput::with_env(move |n| lookup.var(n))
                .with_dmi_product_name_path("/nonexistent/workload-auth-test/product_name")
                .without_probe(),
        )
        .with_cache_config(fast_cache());
    if let Some(root) = &case.tls_root {
        builder = builder.with_tls_root_certificates([CertificateDer::from(root.clone())]);
        std::fs::write(home.path().join("tls-root.pem"), certificate_pem(root)).unwrap();
    }
    let ours = builder
        .build()
        .unwrap_or_else(|e| panic!("{}: workload-auth found no credentials: {e}", case.name));
    let theirs = run_python(home.path(), &case).await;
    let name = case.name;

    assert_eq!(ours.credential_type(), case.expected, "{name}");
    let class = theirs["class"].as_str().unwrap();
    assert!(
        python_class(case.expected).contains(&class),
        "{name}: google-auth chose {class}, we chose {}",
        case.expected
    );
    assert_eq!(
        ours.project_id().await.unwrap(),
        theirs["project_id"].as_str().map(str::to_owned),
        "{name}: project id"
    );
    assert_eq!(
        ours.quota_project_id(),
        theirs["quota_project_id"].as_str(),
        "{name}: quota project"
    );
    assert_eq!(
        ours.universe_domain().await.unwrap(),
        theirs["universe_domain"].as_str().unwrap(),
        "{name}: universe domain"
    );
    let their_token = theirs["token"].as_str().unwrap();
    assert!(
        emu.issued_token(their_token).is_some(),
        "{name}: google-auth's token was issued by the emulator"
    );
    let our_token = ours
        .access_token()
        .await
        .unwrap_or_else(|e| panic!("{name}: workload-auth got no token: {e}"));
    assert!(
        emu.issued_token(our_token.secret().expose()).is_some(),
        "{name}: our token was issued by the emulator"
    );
    assert_ne!(our_token.secret().expose(), their_token);
}

fn gcloud_dir(home: &TempDir) -> PathBuf {
    home.path().join(".config/gcloud")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_auth_and_workload_auth_agree_on_every_credential_kind() {
    let emu = Emulator::start(EmulatorConfig {
        project_id: "metadata-project".into(),
        ..emulator_config()
    })
    .await
    .unwrap();
    let jwt = MetadataClient::builder()
        .host(emu.host())
        .build()
        .unwrap()
        .id_token(WORKLOAD_AUDIENCE, false, false)
        .await
        .unwrap()
        .secret()
        .expose()
        .to_owned();
    let token_url = format!("{}/token", emu.url());
    let sts_url = format!("{}/v1/token", emu.url());

    // 1. `gcloud auth application-default login`: a user's refresh token in gcloud's directory.
    {
        let home = TempDir::new("xc-user");
        let mut user = authorized_user_json(&emu);
        user.as_object_mut().unwrap().remove("token_uri");
        std::fs::create_dir_all(gcloud_dir(&home)).unwrap();
        let mut ours = user.clone();
        ours["token_uri"] = json!(token_url);
        // google-auth ignores token_uri; this crate honours it: each reads its own copy.
        home.write_json(".config/gcloud/application_default_credentials.json", &ours);
        check(
            &emu,
            &home,
            Case {
                name: "gcloud user login",
                vars: vec![],
                overrides: json!({"token_uri": token_url}),
                expected: CredentialType::AuthorizedUser,
                tls_root: None,
            },
        )
        .await;
        check(
            &emu,
            &home,
            Case {
                name: "gcloud user login with project and quota from the environment",
                vars: vec![
                    var("GOOGLE_CLOUD_PROJECT", "env-project"),
                    var("GOOGLE_CLOUD_QUOTA_PROJECT", "env-quota"),
                ],
                overrides: json!({"token_uri": token_url}),
                expected: CredentialType::AuthorizedUser,
                tls_root: None,
            },
        )
        .await;
    }

    // 2. A downloaded service-account key, named by GOOGLE_APPLICATION_CREDENTIALS.
    {
        let home = TempDir::new("xc-sa");
        let key = home.write_json(
            "key.json",
            &service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID),
        );
        check(
            &emu,
            &home,
            Case {
                name: "service-account key",
                vars: vec![var(
                    "GOOGLE_APPLICATION_CREDENTIALS",
                    key.display().to_string(),
                )],
                overrides: json!({}),
                expected: CredentialType::ServiceAccount,
                tls_root: None,
            },
        )
        .await;
        check(
            &emu,
            &home,
            Case {
                name: "service-account key with GCLOUD_PROJECT and a quota project",
                vars: vec![
                    var("GOOGLE_APPLICATION_CREDENTIALS", key.display().to_string()),
                    var("GCLOUD_PROJECT", "legacy-project"),
                    var("GOOGLE_CLOUD_QUOTA_PROJECT", "sa-quota"),
                ],
                overrides: json!({}),
                expected: CredentialType::ServiceAccount,
                tls_root: None,
            },
        )
        .await;
    }

    // 3. `gcloud auth application-default login --impersonate-service-account=TARGET`.
    {
        let home = TempDir::new("xc-imp");
        let mut source = authorized_user_json(&emu);
        source.as_object_mut().unwrap().remove("quota_project_id");
        let url = impersonation_url(&emu, TARGET_SA);
        home.write_json(
            ".config/gcloud/application_default_credentials.json",
            &json!({
                "delegates": [],
                "service_account_impersonation_url": url,
                "source_credentials": source,
                "type": "impersonated_service_account",
            }),
        );
        check(
            &emu,
            &home,
            Case {
                name: "gcloud impersonation login",
                vars: vec![],
                overrides: json!({"iam_endpoint_override": url, "source_token_uri": token_url}),
                expected: CredentialType::ImpersonatedServiceAccount,
                tls_root: None,
            },
        )
        .await;
    }

    // 4. Workload identity federation, file source (an OIDC token on disk).
    let federation = |source: Value, subject_token_type: &str| {
        json!({
            "type": "external_account",
            "audience": WORKLOAD_AUDIENCE,
            "subject_token_type": subject_token_type,
            "token_url": sts_url,
            "credential_source": source,
            "universe_domain": "googleapis.com",
        })
    };
    {
        let home = TempDir::new("xc-file");
        let token = home.write("token.jwt", &jwt);
        let config = home.write_json(
            "wif-file.json",
            &federation(
                json!({"file": token}),
                "urn:ietf:params:oauth:token-type:jwt",
            ),
        );
        check(
            &emu,
            &home,
            Case {
                name: "workload identity federation, file source",
                vars: vec![var(
                    "GOOGLE_APPLICATION_CREDENTIALS",
                    config.display().to_string(),
                )],
                overrides: json!({}),
                expected: CredentialType::ExternalAccount,
                tls_root: None,
            },
        )
        .await;
    }

    // 5. URL source, JSON format, with headers (as for Azure).
    {
        let home = TempDir::new("xc-url");
        let mut config = federation(
            json!({
                "url": format!("{}/external/oidc-token?audience=pool&format=json", emu.url()),
                "headers": {"Metadata": "True"},
                "format": {"type": "json", "subject_token_field_name": "access_token"},
            }),
            "urn:ietf:params:oauth:token-type:jwt",
        );
        config["quota_project_id"] = json!("url-quota");
        let config = home.write_json("wif-url.json", &config);
        check(
            &emu,
            &home,
            Case {
                name: "workload identity federation, url source",
                vars: vec![var(
                    "GOOGLE_APPLICATION_CREDENTIALS",
                    config.display().to_string(),
                )],
                overrides: json!({}),
                expected: CredentialType::ExternalAccount,
                tls_root: None,
            },
        )
        .await;
    }

    // 6. Executable source.
    {
        let home = TempDir::new("xc-exe");
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let script = home.write(
            "get-token.sh",
            &format!(
                "#!/bin/sh\nprintf '{{\"version\":1,\"success\":true,\"token_type\":\"urn:ietf:params:oauth:token-type:jwt\",\"id_token\":\"{jwt}\",\"expiration_time\":{exp}}}'\n"
            ),
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let config = home.write_json(
            "wif-exe.json",
            &federation(
                json!({"executable": {"command": script.display().to_string(), "timeout_millis": 10000}}),
                "urn:ietf:params:oauth:token-type:jwt",
            ),
        );
        check(
            &emu,
            &home,
            Case {
                name: "workload identity federation, executable source",
                vars: vec![
                    var(
                        "GOOGLE_APPLICATION_CREDENTIALS",
                        config.display().to_string(),
                    ),
                    var("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1"),
                ],
                overrides: json!({}),
                expected: CredentialType::ExternalAccount,
                tls_root: None,
            },
        )
        .await;
    }

    // 7. AWS source, region and role credentials from the IMDSv2 endpoints in the file.
    {
        let home = TempDir::new("xc-aws");
        let base = emu.url();
        let config = home.write_json(
            "wif-aws.json",
            &federation(
                json!({
                    "environment_id": "aws1",
                    "region_url": format!("{base}/latest/meta-data/placement/availability-zone"),
                    "url": format!("{base}/latest/meta-data/iam/security-credentials"),
                    "imdsv2_session_token_url": format!("{base}/latest/api/token"),
                    "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
                }),
                "urn:ietf:params:aws:token-type:aws4_request",
            ),
        );
        check(
            &emu,
            &home,
            Case {
                name: "workload identity federation, aws source",
                vars: vec![var(
                    "GOOGLE_APPLICATION_CREDENTIALS",
                    config.display().to_string(),
                )],
                overrides: json!({}),
                expected: CredentialType::ExternalAccount,
                tls_root: None,
            },
        )
        .await;
    }

    // 8. Certificate source: X.509 over mutual TLS.
    {
        let home = TempDir::new("xc-x509");
        let client = x509_client("workload.example");
        let cert = home.write("certs/workload.pem", &client.chain_pem);
        let key = home.write("certs/workload.key", &client.key_pem);
        let cert_config = home.write_json(
            "certificate_config.json",
            &json!({"version": 1, "cert_configs": {"workload": {"cert_path": cert, "key_path": key}}}),
        );
        let listener = emu
            .start_mtls(std::slice::from_ref(&client.root_der))
            .await
            .unwrap();
        let mut config = federation(
            json!({"certificate": {"use_default_certificate_config": true}}),
            "urn:ietf:params:oauth:token-type:mtls",
        );
        config["token_url"] = json!(format!("{}/v1/token", listener.url()));
        let config = home.write_json("wif-x509.json", &config);
        check(
            &emu,
            &home,
            Case {
                name: "workload identity federation, certificate source",
                vars: vec![
                    var(
                        "GOOGLE_APPLICATION_CREDENTIALS",
                        config.display().to_string(),
                    ),
                    var(
                        "GOOGLE_API_CERTIFICATE_CONFIG",
                        cert_config.display().to_string(),
                    ),
                ],
                overrides: json!({}),
                expected: CredentialType::ExternalAccount,
                tls_root: Some(listener.server_root_der().to_vec()),
            },
        )
        .await;
    }

    // 9. Federation with service-account impersonation after the exchange.
    {
        let home = TempDir::new("xc-wif-imp");
        let token = home.write("token.jwt", &jwt);
        let mut config = federation(
            json!({"file": token}),
            "urn:ietf:params:oauth:token-type:id_token",
        );
        config["service_account_impersonation_url"] = json!(impersonation_url(&emu, TARGET_SA));
        config["service_account_impersonation"] = json!({"token_lifetime_seconds": 3600});
        let config = home.write_json("wif-imp.json", &config);
        check(
            &emu,
            &home,
            Case {
                name: "workload identity federation with impersonation",
                vars: vec![var(
                    "GOOGLE_APPLICATION_CREDENTIALS",
                    config.display().to_string(),
                )],
                overrides: json!({}),
                expected: CredentialType::ExternalAccount,
                tls_root: None,
            },
        )
        .await;
    }

    // 10. Workforce identity federation with a user project (SAML file).
    {
        let home = TempDir::new("xc-workforce");
        let saml = home.write("saml.txt", SAML_TOKEN);
        let mut config = federation(
            json!({"file": saml}),
            "urn:ietf:params:oauth:token-type:saml2",
        );
        config["audience"] = json!(WORKFORCE_AUDIENCE);
        config["workforce_pool_user_project"] = json!("wf-user-project");
        let config = home.write_json("wf.json", &config);
        check(
            &emu,
            &home,
            Case {
                name: "workforce identity federation",
                vars: vec![var(
                    "GOOGLE_APPLICATION_CREDENTIALS",
                    config.display().to_string(),
                )],
                overrides: json!({}),
                expected: CredentialType::ExternalAccount,
                tls_root: None,
            },
        )
        .await;
    }

    // 11. A workforce user's login (`gcloud auth application-default login --login-config`).
    {
        let home = TempDir::new("xc-eaau");
        home.write_json(
            ".config/gcloud/application_default_credentials.json",
            &external_authorized_user_json(&emu),
        );
        check(
            &emu,
            &home,
            Case {
                name: "workforce user login",
                vars: vec![],
                overrides: json!({}),
                expected: CredentialType::ExternalAccountAuthorizedUser,
                tls_root: None,
            },
        )
        .await;
    }

    // 12. The metadata server.
    {
        let home = TempDir::new("xc-metadata");
        check(
            &emu,
            &home,
            Case {
                name: "metadata server",
                vars: vec![
                    var("GCE_METADATA_HOST", emu.host()),
                    var("GCE_METADATA_IP", emu.host()),
                ],
                overrides: json!({}),
                expected: CredentialType::MetadataServer,
                tls_root: None,
            },
        )
        .await;
    }
}

/// `root` as a PEM certificate, for the file the Python side reads.
fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}
