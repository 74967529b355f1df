//! `workload-auth` with an Agent Identity workload certificate: `explain` names the certificate
//! tokens are bound to, `token` refuses to print a bound token alone, `token --bound` prints it
//! with its certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use workload_auth_emulator::ca::TrustDomainCa;

const BIN: &str = env!("CARGO_BIN_EXE_workload-auth");
const TD: &str = "agents.global.proj-4242.system.id.goog";

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn explain_and_token_show_the_binding() {
    let mut emulator = Command::new(BIN)
        .args(["emulator", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(emulator.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let host = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();

    let dir = tempfile::tempdir().unwrap();
    let ca = TrustDomainCa::new(TD).unwrap();
    let svid = ca
        .issue(&format!("spiffe://{TD}/ns/default/sa/agent"))
        .unwrap();
    std::fs::write(dir.path().join("cert.pem"), svid.chain_pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), svid.private_key_pem().expose()).unwrap();
    let config = dir.path().join("certificate_config.json");
    std::fs::write(
        &config,
        serde_json::json!({"cert_configs": {"workload": {
            "cert_path": dir.path().join("cert.pem"), "key_path": dir.path().join("key.pem")}}})
        .to_string(),
    )
    .unwrap();
    let fingerprint = workload_auth::adc::agent_identity::certificate_fingerprint(svid.leaf_der());
    let config = config.display().to_string();
    let env = [
        ("GCE_METADATA_HOST", host.as_str()),
        ("GOOGLE_API_CERTIFICATE_CONFIG", config.as_str()),
    ];

    let out = run(&["explain"], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "token binding: bound to certificate {fingerprint}"
        )),
        "{text}"
    );
    let out = run(&["explain", "--json"], &env);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["token_binding"]["bound"], true);
    assert_eq!(json["token_binding"]["fingerprint"], fingerprint.as_str());

    let out = run(&["token"], &env);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no token printed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bound"), "{err}");

    let out = run(&["token", "--bound"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["access_token"].as_str().unwrap().starts_with("ya29."));
    assert_eq!(json["fingerprint"], fingerprint.as_str());
    let chain = json["certificate_chain"].as_str().unwrap();
    assert!(chain.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(!chain.contains("PRIVATE KEY"));

    // Opted out: a plain token, no binding.
    let opted = [
        env[0],
        env[1],
        ("GOOGLE_API_ENABLE_RUNTIME_BOUND_TOKEN", "false"),
    ];
    let out = run(&["token"], &opted);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["explain"], &opted);
    assert!(String::from_utf8_lossy(&out.stdout).contains("token binding: not bound"));
    let _ = emulator.kill();
    let _ = emulator.wait();
}
