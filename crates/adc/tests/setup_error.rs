//! A host whose trust store holds no certificate cannot make an HTTPS client for a credential:
//! that is a local set-up failure ([`ErrorKind::Setup`]), which retrying does not cure and which
//! is not the caller's bad argument.
//!
//! The platform's roots are loaded once per process, so the check runs in a child process of
//! this test, with `SSL_CERT_FILE` and `SSL_CERT_DIR` naming an empty file and directory (the
//! platform verifier then finds no root at all). The token endpoint is a closed loopback port:
//! should the client be built after all, the request fails there with a transport error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::process::Command;

use common::*;
use serde_json::json;
use workload_auth_core::ErrorKind;

const CHILD_ENV: &str = "WORKLOAD_AUTH_TEST_SETUP_CHILD";
const TEST_NAME: &str = "an_empty_platform_trust_store_is_a_setup_error";

#[test]
fn an_empty_platform_trust_store_is_a_setup_error() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return in_child();
    }
    let dir = TempDir::new("setup");
    let empty_file = dir.write("empty.pem", "");
    let empty_dir = dir.path().join("certs");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env("SSL_CERT_FILE", &empty_file)
        .env("SSL_CERT_DIR", &empty_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("child: setup error seen"),
        "{stdout}\n{stderr}"
    );
}

fn in_child() {
    let home = TempDir::new("setup-home");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let file = home.write(
        "user.json",
        &json!({
            "type": "authorized_user",
            "client_id": "id.apps.googleusercontent.com",
            "client_secret": "secret",
            "refresh_token": "refresh",
            "token_uri": format!("https://127.0.0.1:{port}/token"),
        })
        .to_string(),
    );
    let error = match builder_for(&home, &file).build() {
        Err(e) => e,
        Ok(creds) => creds.access_token_blocking().unwrap_err(),
    };
    assert_eq!(error.kind(), ErrorKind::Setup, "{error}");
    assert!(!error.is_transient(), "{error}");
    assert!(
        error.to_string().contains("platform's TLS roots"),
        "{error}"
    );
    println!("child: setup error seen");
}
