//! The `workload-auth` command as a user runs it: a real emulator process, real token commands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_workload-auth");

/// `workload-auth emulator` on a free loopback port; killed on drop.
struct EmulatorProcess {
    child: Child,
    host: String,
}

impl EmulatorProcess {
    fn start() -> Self {
        let mut child = Command::new(BIN)
            .args([
                "emulator",
                "--listen",
                "127.0.0.1:0",
                "--project",
                "cli-project",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let host = line.trim().strip_prefix("listening on ").map(str::to_owned);
        let host = host.expect("the emulator's first line is `listening on ADDR`");
        Self { child, host }
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the command with a clean environment: an empty home and only the variables given.
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

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn token_id_token_and_explain_against_the_emulator_process() {
    let emu = EmulatorProcess::start();
    let env = [("GCE_METADATA_HOST", emu.host.as_str())];

    let out = run(&["token", "--json"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(json["access_token"].as_str().unwrap().starts_with("ya29."));
    assert_eq!(json["token_type"], "Bearer");
    let expires_in = json["expires_in"].as_u64().unwrap();
    assert!((3500..=3600).contains(&expires_in), "{expires_in}");
    assert_eq!(json["source"], "metadata_server");

    let out = run(&["token"], &env);
    assert!(out.status.success());
    assert!(stdout(&out).trim().starts_with("ya29."));

    let out = run(
        &[
            "token",
            "--scopes",
            "https://www.googleapis.com/auth/userinfo.email,openid",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let out = run(
        &[
            "id-token",
            "--audience",
            "https://svc.example.run.app",
            "--json",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["id_token"].as_str().unwrap().split('.').count(), 3);

    let out = run(&["explain", "--json"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["credential_type"], "metadata_server");
    assert_eq!(json["project_id"], "cli-project");

    let out = run(&["explain"], &env);
    assert!(
        stdout(&out).contains("project id: cli-project"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn nothing_configured_fails_with_one_line_that_says_what_to_do() {
    let out = run(&["token"], &[("NO_GCE_CHECK", "true")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("workload-auth: "), "{err}");
    assert!(err.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{err}");
    assert!(
        err.contains("gcloud auth application-default login"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());

    let out = run(&["explain"], &[("NO_GCE_CHECK", "true")]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("GOOGLE_APPLICATION_CREDENTIALS"));
}

#[test]
fn a_missing_credentials_file_is_an_error_naming_it() {
    let out = run(
        &["token"],
        &[("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("/nonexistent/key.json"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn bad_arguments_are_refused() {
    let out = run(
        &["id-token", "--audience", " "],
        &[("NO_GCE_CHECK", "true")],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--audience"));
    let out = run(&["emulator", "--listen", "not-an-address"], &[]);
    assert!(!out.status.success());
}

#[test]
fn the_demo_runs_the_whole_story() {
    let out = run(&["demo"], &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("metadata server"), "{text}");
    assert!(text.contains("0 new token request(s)"), "{text}");
    assert!(text.contains("intruder -> backend: refused"), "{text}");
    assert!(text.contains("0 failed"), "{text}");
    assert!(
        text.contains("frontend (identity from the agent) -> backend: verified"),
        "{text}"
    );
    assert!(text.contains("demo complete"), "{text}");
}

#[test]
fn token_downscope_server_and_client_side_against_the_emulator_process() {
    let emu = EmulatorProcess::start();
    let env = [("GCE_METADATA_HOST", emu.host.as_str())];
    let dir = tempfile::tempdir().unwrap();
    let rule = serde_json::json!({
        "availableResource": "//storage.googleapis.com/projects/_/buckets/b",
        "availablePermissions": ["inRole:roles/storage.objectViewer"],
        "availabilityCondition": {
            "expression": "resource.name.startsWith('projects/_/buckets/b/objects/a/')"
        },
    });
    let file = dir.path().join("boundary.json");
    std::fs::write(
        &file,
        serde_json::json!({"accessBoundary": {"accessBoundaryRules": [rule]}}).to_string(),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let sts = format!("http://{}/v1/token", emu.host);

    let plain = run(&["token"], &env);
    let plain = stdout(&plain).trim().to_owned();
    let out = run(
        &[
            "token",
            "--downscope",
            file,
            "--sts-endpoint",
            &sts,
            "--json",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let server_side = json["access_token"].as_str().unwrap();
    assert!(server_side.starts_with("ya29.emulated-"), "{server_side}");
    assert_ne!(server_side, plain);

    let out = run(
        &[
            "token",
            "--downscope",
            file,
            "--client-side",
            "--sts-endpoint",
            &sts,
        ],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let client_side = stdout(&out).trim().to_owned();
    let (intermediary, sealed) = client_side.rsplit_once('.').unwrap();
    assert!(intermediary.starts_with("ya29.emulated-"), "{client_side}");
    assert!(sealed.len() > 40, "{client_side}");

    // A boundary with too many rules is refused before anything is sent, in one line.
    let eleven = dir.path().join("eleven.json");
    std::fs::write(
        &eleven,
        serde_json::json!({"accessBoundaryRules": vec![rule; 11]}).to_string(),
    )
    .unwrap();
    let out = run(
        &[
            "token",
            "--downscope",
            eleven.to_str().unwrap(),
            "--sts-endpoint",
            &sts,
        ],
        &env,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("at most 10"), "{err}");

    // explain shows the regional access boundary state (off unless enabled).
    let out = run(&["explain"], &env);
    assert!(
        stdout(&out).contains("regional access boundary: disabled"),
        "{}",
        stdout(&out)
    );
    let out = run(&["explain", "--json"], &env);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["regional_access_boundary"], "disabled");
}
