//! Malformed credential files: each is a typed error naming the file and what is wrong, found
//! when the file is loaded, with no secret in it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};
use workload_auth_core::ErrorKind;

const SECRET_MARKERS: [&str; 4] = ["BEGIN PRIVATE KEY", CLIENT_SECRET, REFRESH_TOKEN, "MII"];

fn set(mut value: Value, path: &[&str], new: Value) -> Value {
    let mut target = &mut value;
    for (i, key) in path.iter().enumerate() {
        if i + 1 == path.len() {
            if new.is_null() {
                target.as_object_mut().unwrap().remove(*key);
            } else {
                target[*key] = new.clone();
            }
        } else {
            target = &mut target[*key];
        }
    }
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_file_is_a_clear_load_error() {
    let emu = emulator().await;
    let home = TempDir::new("bad");
    let sa = service_account_json(&emu, "test_rsa_pkcs8.pem", SA_EMAIL, RSA_KEY_ID);
    let user = authorized_user_json(&emu);
    let ext = json!({
        "type": "external_account",
        "audience": WORKLOAD_AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{}/v1/token", emu.url()),
        "credential_source": {"file": "/var/run/token"},
    });
    let imp = json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": impersonation_url(&emu, TARGET_SA),
        "source_credentials": user.clone(),
    });
    let cert = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ\n-----END CERTIFICATE-----\n";

    let cases: Vec<(&str, Result<Value, &str>, ErrorKind, &str)> = vec![
        (
            "empty file",
            Err(""),
            ErrorKind::InvalidCredentials,
            "not valid JSON",
        ),
        (
            "truncated",
            Err("{\"type\": \"service_"),
            ErrorKind::InvalidCredentials,
            "ends early",
        ),
        (
            "array",
            Ok(json!([1, 2])),
            ErrorKind::InvalidCredentials,
            "an array",
        ),
        (
            "no type",
            Ok(set(sa.clone(), &["type"], Value::Null)),
            ErrorKind::InvalidCredentials,
            "no `type` field",
        ),
        (
            "numeric type",
            Ok(set(sa.clone(), &["type"], json!(7))),
            ErrorKind::InvalidCredentials,
            "a number",
        ),
        (
            "unknown type",
            Ok(set(sa.clone(), &["type"], json!("gdch_service_account"))),
            ErrorKind::InvalidCredentials,
            "\"gdch_service_account\", which is not supported; supported types are service_account, authorized_user",
        ),
        (
            "sa without email",
            Ok(set(sa.clone(), &["client_email"], Value::Null)),
            ErrorKind::InvalidCredentials,
            "`client_email` field is missing",
        ),
        (
            "sa without token_uri",
            Ok(set(sa.clone(), &["token_uri"], Value::Null)),
            ErrorKind::InvalidCredentials,
            "`token_uri` field is missing",
        ),
        (
            "sa key not a key",
            Ok(set(sa.clone(), &["private_key"], json!("hello"))),
            ErrorKind::InvalidCredentials,
            "not PEM",
        ),
        (
            "sa key is a certificate",
            Ok(set(sa.clone(), &["private_key"], json!(cert))),
            ErrorKind::InvalidCredentials,
            "not a private key",
        ),
        (
            "sa key wrong type",
            Ok(set(sa.clone(), &["private_key"], json!(["x"]))),
            ErrorKind::InvalidCredentials,
            "`private_key` field is an array",
        ),
        (
            "sa key empty",
            Ok(set(sa.clone(), &["private_key"], json!(""))),
            ErrorKind::InvalidCredentials,
            "`private_key` field is empty",
        ),
        (
            "user without refresh token",
            Ok(set(user.clone(), &["refresh_token"], Value::Null)),
            ErrorKind::InvalidCredentials,
            "`refresh_token` field is missing",
        ),
        (
            "user secret wrong type",
            Ok(set(user.clone(), &["client_secret"], json!(12))),
            ErrorKind::InvalidCredentials,
            "`client_secret` field is a number",
        ),
        (
            "ext without audience",
            Ok(set(ext.clone(), &["audience"], Value::Null)),
            ErrorKind::InvalidCredentials,
            "`audience` field is missing",
        ),
        (
            "ext without source",
            Ok(set(ext.clone(), &["credential_source"], Value::Null)),
            ErrorKind::InvalidCredentials,
            "`credential_source` field is missing",
        ),
        (
            "ext source not object",
            Ok(set(ext.clone(), &["credential_source"], json!("file"))),
            ErrorKind::InvalidCredentials,
            "a string, expected an object",
        ),
        (
            "ext file and url",
            Ok(set(
                ext.clone(),
                &["credential_source", "url"],
                json!("http://127.0.0.1/x"),
            )),
            ErrorKind::InvalidCredentials,
            "mutually exclusive",
        ),
        (
            "ext empty source",
            Ok(set(ext.clone(), &["credential_source"], json!({}))),
            ErrorKind::InvalidCredentials,
            "has none of",
        ),
        (
            "ext bad format",
            Ok(set(
                ext.clone(),
                &["credential_source", "format"],
                json!({"type": "xml"}),
            )),
            ErrorKind::InvalidCredentials,
            "\"xml\"",
        ),
        (
            "ext json without field",
            Ok(set(
                ext.clone(),
                &["credential_source", "format"],
                json!({"type": "json"}),
            )),
            ErrorKind::InvalidCredentials,
            "subject_token_field_name",
        ),
        (
            "ext environment_id",
            Ok(set(
                ext.clone(),
                &["credential_source", "environment_id"],
                json!("aws1"),
            )),
            ErrorKind::InvalidCredentials,
            "only valid for AWS",
        ),
        (
            "ext bad command",
            Ok(set(
                ext.clone(),
                &["credential_source"],
                json!({"executable": {"command": "/bin/tool 'unclosed"}}),
            )),
            ErrorKind::InvalidCredentials,
            "unterminated quote",
        ),
        (
            "ext aws without verification url",
            Ok(set(
                set(
                    ext.clone(),
                    &["subject_token_type"],
                    json!("urn:ietf:params:aws:token-type:aws4_request"),
                ),
                &["credential_source"],
                json!({"environment_id": "aws1"}),
            )),
            ErrorKind::InvalidCredentials,
            "regional_cred_verification_url",
        ),
        (
            "ext certificate without config",
            Ok(set(
                ext.clone(),
                &["credential_source"],
                json!({"certificate": {}}),
            )),
            ErrorKind::InvalidCredentials,
            "use_default_certificate_config",
        ),
        (
            "ext lifetime not a number",
            Ok(set(
                ext.clone(),
                &["service_account_impersonation"],
                json!({"token_lifetime_seconds": "long"}),
            )),
            ErrorKind::InvalidCredentials,
            "token_lifetime_seconds",
        ),
        (
            "imp without source",
            Ok(set(imp.clone(), &["source_credentials"], Value::Null)),
            ErrorKind::InvalidCredentials,
            "`source_credentials` field is missing",
        ),
        (
            "imp bad delegates",
            Ok(set(imp.clone(), &["delegates"], json!([1]))),
            ErrorKind::InvalidCredentials,
            "item 0 of the `delegates` field",
        ),
        (
            "imp source missing field",
            Ok(set(
                imp.clone(),
                &["source_credentials", "client_id"],
                Value::Null,
            )),
            ErrorKind::InvalidCredentials,
            "`source_credentials.client_id` field is missing",
        ),
        (
            "imp url relative",
            Ok(set(
                imp.clone(),
                &["service_account_impersonation_url"],
                json!("/v1/x:generateAccessToken"),
            )),
            ErrorKind::InvalidCredentials,
            "not a valid URL",
        ),
    ];
    for (name, content, kind, needle) in cases {
        let text = match content {
            Ok(value) => serde_json::to_string(&value).unwrap(),
            Err(raw) => raw.to_owned(),
        };
        let path = home.write("bad.json", &text);
        let err = builder_for(&home, &path).build().unwrap_err();
        assert_eq!(err.kind(), kind, "{name}: {err}");
        assert!(!err.is_transient(), "{name}");
        let shown = err.to_string();
        assert!(
            shown.contains(needle),
            "{name}: expected {needle:?} in {shown}"
        );
        assert_eq!(
            err.endpoint(),
            Some(path.display().to_string().as_str()),
            "{name}: the error names the file"
        );
        for secret in SECRET_MARKERS {
            assert!(
                !shown.contains(secret),
                "{name}: secret {secret:?} in {shown}"
            );
            assert!(
                !format!("{err:?}").contains(secret),
                "{name}: secret in Debug"
            );
        }
    }
    assert_eq!(emu.total_requests(), 0, "no request for any malformed file");
}
