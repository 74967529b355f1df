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
        Self::start_with(&["--project", "cli-project"])
    }

    fn start_with(extra: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["emulator", "--listen", "127.0.0.1:0"])
            .args(extra)
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

/// Every subcommand with bad arguments, run in a network namespace of its own with only
/// loopback up, where `GCE_METADATA_HOST` is a listener that counts connections: each must fail
/// on its arguments (exit code, first line of stderr) without connecting anywhere.
#[test]
fn bad_arguments_are_refused_before_any_connection() {
    let cases: &[(&[&str], i32, &str)] = &[
        (&["token", "--scopes", ""], 1, "--scopes has an empty scope"),
        (
            &["token", "--scopes", "a,,b"],
            1,
            "--scopes has an empty scope",
        ),
        (&["token", "--scopes", "a b"], 1, "contains whitespace"),
        (&["token", "--timeout", "0"], 2, "a timeout of 0"),
        (&["token", "--timeout", "soon"], 2, "not a duration"),
        (&["token", "--format", "yaml"], 2, "--format"),
        (
            &["token", "--json", "--format", "raw"],
            2,
            "cannot be used with",
        ),
        (&["id-token", "--audience", " "], 1, "--audience is empty"),
        (
            &[
                "id-token",
                "--audience",
                "https://a.example",
                "--timeout",
                "0ms",
            ],
            2,
            "a timeout of 0",
        ),
        (&["id-token"], 2, "--audience"),
        (&["explain", "--bogus"], 2, "--bogus"),
        (
            &["emulator", "--listen", "not-an-address"],
            2,
            "not an address",
        ),
        (
            &["mtls", "connect", "no-port", "--allow", "any"],
            1,
            "not an address",
        ),
        (
            &["mtls", "connect", "127.0.0.1:1", "--allow", "bogus:x"],
            1,
            "--allow: invalid argument: invalid authorization policy",
        ),
        (
            &["mtls", "serve", "--listen", "nowhere", "--allow", "any"],
            2,
            "not an address",
        ),
        (&["no-such-command"], 2, "no-such-command"),
    ];
    let script = r#"
import json, os, socket, subprocess, sys
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
listener.setblocking(False)
host = "127.0.0.1:%d" % listener.getsockname()[1]
results = []
for args in json.loads(sys.argv[2]):
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ["WA_TEST_HOME"],
           "GCE_METADATA_HOST": host, "GCE_METADATA_IP": host}
    p = subprocess.run([sys.argv[1]] + args, env=env, capture_output=True, text=True, timeout=60)
    results.append({"code": p.returncode, "stderr": p.stderr, "stdout": p.stdout})
accepted = 0
while True:
    try:
        listener.accept()[0].close()
        accepted += 1
    except BlockingIOError:
        break
print(json.dumps({"accepted": accepted, "results": results}))
"#;
    let home = tempfile::tempdir().unwrap();
    let args: Vec<&[&str]> = cases.iter().map(|(a, _, _)| *a).collect();
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", "ip link set lo up && exec \"$@\"", "x"])
        .args(["python3", "-c", script, BIN])
        .arg(serde_json::to_string(&args).unwrap())
        .env("WA_TEST_HOME", home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for ((args, code, needle), result) in cases.iter().zip(report["results"].as_array().unwrap()) {
        let err = result["stderr"].as_str().unwrap();
        assert_eq!(result["code"], *code, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
        assert_eq!(result["stdout"], "", "{args:?}");
        if *code == 1 {
            assert!(err.starts_with("workload-auth: "), "{args:?}: {err}");
        }
    }
    assert_eq!(report["accepted"], 0, "a connection was made: {report}");
}

#[test]
fn token_formats_and_timeout() {
    let emu = EmulatorProcess::start();
    let env = [("GCE_METADATA_HOST", emu.host.as_str())];
    let raw = run(&["token", "--timeout", "10s"], &env);
    assert!(raw.status.success(), "{}", stderr(&raw));
    let token = stdout(&raw).trim().to_owned();
    assert!(token.starts_with("ya29."), "{token}");
    let header = run(&["token", "--format", "header"], &env);
    assert!(header.status.success(), "{}", stderr(&header));
    assert!(stdout(&header).starts_with("Authorization: Bearer ya29."));
    assert_eq!(stdout(&header).lines().count(), 1);
    for json in [&["token", "--format", "json"][..], &["token", "--json"][..]] {
        let out = run(json, &env);
        let value: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert!(value["access_token"].as_str().unwrap().starts_with("ya29."));
    }
    // A server that accepts and never answers: --timeout ends the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = silent.local_addr().unwrap().to_string();
    let start = std::time::Instant::now();
    let out = run(
        &["token", "--timeout", "700ms"],
        &[("GCE_METADATA_HOST", &host)],
    );
    let took = start.elapsed();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("700 ms"), "{}", stderr(&out));
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}

#[test]
fn errors_have_a_short_first_line_and_details_with_verbose() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = port.local_addr().unwrap().to_string();
    let out = run(&["emulator", "--listen", &addr], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let first = err.lines().next().unwrap();
    assert!(first.starts_with("workload-auth: "), "{err}");
    // The advice is given once.
    assert_eq!(err.matches("another address").count(), 1, "{err}");
    assert!(err.contains("--listen"), "{err}");
    let verbose = run(&["--verbose", "emulator", "--listen", &addr], &[]);
    let verbose = stderr(&verbose);
    assert!(verbose.lines().count() > 1, "{verbose}");
    assert!(verbose.contains("caused by"), "{verbose}");
    assert_eq!(verbose.lines().next().unwrap(), first);
}

#[test]
fn emulator_config_file_sets_the_project_and_faults() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("emulator.toml");
    std::fs::write(
        &toml,
        "project = \"from-file\"\ntoken_lifetime_secs = 600\n\n\
         [[faults]]\nendpoint = \"token\"\nstatus = 503\ntimes = 1\n",
    )
    .unwrap();
    let emu = EmulatorProcess::start_with(&["--config", toml.to_str().unwrap()]);
    let env = [("GCE_METADATA_HOST", emu.host.as_str())];
    // The one 503 is retried by the library; the token then has the file's lifetime.
    let out = run(&["token", "--json"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let expires_in = json["expires_in"].as_u64().unwrap();
    assert!((500..=600).contains(&expires_in), "{expires_in}");
    let out = run(&["explain", "--json"], &env);
    assert!(stdout(&out).contains("from-file"), "{}", stdout(&out));

    // JSON works too; unknown keys, wrong types and bad faults are refused before listening.
    let json = dir.path().join("emulator.json");
    for (text, needle) in [
        (r#"{"project": "p", "projekt": "typo"}"#, "projekt"),
        (r#"{"project_number": "twelve"}"#, "expected u64"),
        (
            r#"{"faults": [{"endpoint": "nowhere", "status": 500}]}"#,
            "nowhere",
        ),
        (
            r#"{"faults": [{"endpoint": "token", "status": 500, "reset": true}]}"#,
            "exactly one",
        ),
        (
            r#"{"faults": [{"endpoint": "token", "status": 42}]}"#,
            "not an HTTP status",
        ),
    ] {
        std::fs::write(&json, text).unwrap();
        let out = run(
            &[
                "emulator",
                "--listen",
                "127.0.0.1:0",
                "--config",
                json.to_str().unwrap(),
            ],
            &[],
        );
        assert!(!out.status.success(), "{text}");
        assert!(stdout(&out).is_empty(), "{text}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.starts_with("workload-auth: --config"), "{err}");
        let verbose = run(
            &[
                "-v",
                "emulator",
                "--listen",
                "127.0.0.1:0",
                "--config",
                json.to_str().unwrap(),
            ],
            &[],
        );
        assert!(
            stderr(&verbose).contains(needle),
            "{text}: {}",
            stderr(&verbose)
        );
    }
    let out = run(&["emulator", "--config", "/nonexistent/emulator.toml"], &[]);
    assert!(
        stderr(&out).contains("/nonexistent/emulator.toml"),
        "{}",
        stderr(&out)
    );
}

/// A raw HTTP/1.1 GET with `headers`; returns the whole answer.
fn http_get(host: &str, path: &str, headers: &str) -> String {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(host).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn emulator_shows_recorded_requests_redacted() {
    let emu = EmulatorProcess::start();
    let out = run(&["token"], &[("GCE_METADATA_HOST", emu.host.as_str())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let _ = http_get(
        &emu.host,
        "/computeMetadata/v1/project/project-id",
        "Metadata-Flavor: Google\r\nAuthorization: Bearer very-secret-value\r\n",
    );
    let answer = http_get(&emu.host, "/emulator/requests", "");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains("very-secret-value"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    let requests = json["requests"].as_array().unwrap();
    assert!(requests.iter().any(|r| r["endpoint"] == "Token"), "{json}");
    let last = requests.last().unwrap();
    assert_eq!(last["path"], "/computeMetadata/v1/project/project-id");
    assert!(
        last["headers"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["authorization", "[redacted]"])),
        "{last}"
    );
    // The view itself is not recorded, and it is read-only.
    assert!(!body.contains("/emulator/requests"), "{body}");
    let answer = http_get(&emu.host, "/emulator/requests", "");
    assert!(!answer.contains("\"/emulator/requests\""), "{answer}");
}

#[test]
fn emulator_writes_and_rotates_a_workload_identity_directory() {
    let dir = tempfile::tempdir().unwrap();
    let id = "spiffe://dev.test/ns/local/sa/app";
    let mut child = Command::new(BIN)
        .args(["emulator", "--listen", "127.0.0.1:0", "--workload-identity"])
        .arg(dir.path())
        .args([
            "--trust-domain",
            "dev.test",
            "--spiffe-id",
            id,
            "--rotate-every",
            "1s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout_pipe = child.stdout.take().unwrap();
    // Killed even when an assertion fails.
    let child = EmulatorProcess {
        child,
        host: String::new(),
    };
    let mut lines = BufReader::new(stdout_pipe).lines();
    let first = lines.next().unwrap().unwrap();
    let host = first.strip_prefix("listening on ").unwrap().to_owned();
    let written = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.starts_with("workload credentials"))
        .unwrap();
    let link = dir.path().join("workload-spiffe-credentials");
    assert!(
        written.contains(id) && written.contains(link.to_str().unwrap()),
        "{written}"
    );
    let cert = std::fs::read_to_string(link.join("certificates.pem")).unwrap();
    let ca = std::fs::read_to_string(link.join("ca_certificates.pem")).unwrap();
    // The metadata server's workload certificate endpoints come from the same CA.
    let answer = http_get(
        &host,
        "/computeMetadata/v1/instance/gce-workload-certificates/trust-anchors",
        "Metadata-Flavor: Google\r\n",
    );
    let ca_line = ca.lines().nth(1).unwrap();
    assert!(
        answer.contains("dev.test") && answer.contains(ca_line),
        "{answer}"
    );
    // Rotated within a few intervals: a new certificate, the same CA.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = std::fs::read_to_string(link.join("certificates.pem")).unwrap_or_default();
        if !now.is_empty() && now != cert {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never rotated");
    }
    assert_eq!(
        std::fs::read_to_string(link.join("ca_certificates.pem")).unwrap(),
        ca
    );
    drop(child);

    // A SPIFFE ID outside the trust domain is refused before anything starts.
    let out = run(
        &[
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--workload-identity",
            dir.path().to_str().unwrap(),
            "--trust-domain",
            "dev.test",
            "--spiffe-id",
            "spiffe://other.test/x",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("not in --trust-domain"),
        "{}",
        stderr(&out)
    );
}

/// `--layout` writes each layout the platforms deliver; a name it does not know is refused.
#[test]
fn emulator_writes_each_credential_layout() {
    let present = |dir: &std::path::Path, name: &str| dir.join(name).exists();
    for (layout, want, absent) in [
        (
            "combined",
            &[
                "x509.credential-bundle.private-key.pem",
                "ca_certificates.pem",
            ][..],
            &["certificates.pem", "private_key.pem"][..],
        ),
        (
            "spiffe-fs",
            &[
                "credential-bundle.private-key.pem",
                "dev.test.spiffe-trust-bundle.pem",
            ][..],
            &["certificates.pem", "private_key.pem", "ca_certificates.pem"][..],
        ),
        (
            "no-key",
            &["certificates.pem", "ca_certificates.pem"][..],
            &["private_key.pem", "x509.credential-bundle.private-key.pem"][..],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .args(["emulator", "--listen", "127.0.0.1:0", "--workload-identity"])
            .arg(dir.path())
            .args(["--trust-domain", "dev.test", "--spiffe-id"])
            .args(["spiffe://dev.test/ns/local/sa/app", "--layout", layout])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout_pipe = child.stdout.take().unwrap();
        let _child = EmulatorProcess {
            child,
            host: String::new(),
        };
        let written = BufReader::new(stdout_pipe)
            .lines()
            .map(Result::unwrap)
            .find(|l| l.starts_with("workload credentials"))
            .unwrap();
        assert!(
            written.ends_with(&format!("(layout {layout})")),
            "{written}"
        );
        let link = dir.path().join("workload-spiffe-credentials");
        for name in want {
            assert!(present(&link, name), "{layout}: {name} missing");
        }
        for name in absent {
            assert!(!present(&link, name), "{layout}: {name} written");
        }
    }
    let out = run(
        &[
            "emulator",
            "--workload-identity",
            "/nonexistent",
            "--trust-domain",
            "dev.test",
            "--spiffe-id",
            "spiffe://dev.test/x",
            "--layout",
            "pkcs12",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("gke, combined, spiffe-fs, no-key"),
        "{}",
        stderr(&out)
    );
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
    // Section 5: every layout is found; the hidden key names the workload but does not handshake.
    for layout in ["gke", "combined", "spiffe-fs"] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(layout) && l.contains(": verified spiffe://")),
            "{layout}: {text}"
        );
    }
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("no-key")
            && l.contains("from certificates.pem: no handshake: the platform keeps")),
        "{text}"
    );
    assert!(
        text.contains("token binding: bound to certificate"),
        "{text}"
    );
    assert!(
        text.contains("with its own certificate: HTTP 200; with another agent's: HTTP 401"),
        "{text}"
    );
    assert!(
        text.contains("requests carry x-allowed-locations: 0xA30"),
        "{text}"
    );
    assert!(
        text.contains("the emulator reads server-side token, //storage.googleapis.com/"),
        "{text}"
    );
    assert!(
        text.contains("(1 exchange(s) for 10001 tokens); the emulator reads client-side token"),
        "{text}"
    );
    assert!(text.contains("project demo-federated-project"), "{text}");
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

#[test]
fn emulator_config_file_sets_oauth_clients_and_refresh_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("emulator.toml");
    std::fs::write(
        &toml,
        "id_token_lifetime_secs = 300\nimpersonable = [\"target@p.iam.gserviceaccount.com\"]\n\n\
         [[oauth_clients]]\nclient_id = \"dev-client\"\nclient_secret = \"dev-secret\"\n\n\
         [[refresh_tokens]]\nrefresh_token = \"1//dev-refresh\"\nclient_id = \"dev-client\"\n\
         scopes = [\"https://www.googleapis.com/auth/cloud-platform\"]\n\n\
         [[projects]]\nnumber = 424242\nproject_id = \"federated-project\"\n",
    )
    .unwrap();
    let emu = EmulatorProcess::start_with(&["--config", toml.to_str().unwrap()]);
    let user = |secret: &str| {
        let path = dir.path().join(format!("user-{secret}.json"));
        let json = serde_json::json!({
            "type": "authorized_user",
            "client_id": "dev-client",
            "client_secret": secret,
            "refresh_token": "1//dev-refresh",
            "token_uri": format!("http://{}/token", emu.host),
        });
        std::fs::write(&path, json.to_string()).unwrap();
        path.display().to_string()
    };
    let good = user("dev-secret");
    let out = run(
        &["token", "--format", "json"],
        &[("GOOGLE_APPLICATION_CREDENTIALS", &good)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(json["access_token"].as_str().unwrap().starts_with("ya29."));
    // The wrong secret is refused by the emulator, as Google refuses it.
    let bad = user("wrong-secret");
    let out = run(&["token"], &[("GOOGLE_APPLICATION_CREDENTIALS", &bad)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("invalid_client"), "{}", stderr(&out));

    // Mistakes in the accounts are refused before listening, naming the entry, not the secret.
    let json = dir.path().join("bad.json");
    for (text, needle) in [
        (
            r#"{"refresh_tokens": [{"refresh_token": "hunter2", "client_id": "nobody"}]}"#,
            "refresh_tokens[0]: client_id `nobody` is not one of oauth_clients",
        ),
        (
            r#"{"oauth_clients": [{"client_id": "c", "client_secret": "hunter2", "secret": 1}]}"#,
            "unknown field `secret`",
        ),
        (
            r#"{"oauth_clients": [{"client_id": "c", "client_secret": 7}]}"#,
            "expected a string",
        ),
        (r#"{"token_lifetime_secs": 0}"#, "token_lifetime_secs = 0"),
        (
            r#"{"projects": [{"number": "x", "project_id": "p"}]}"#,
            "expected u64",
        ),
        (r#"{"impersonable": ["not-an-email"]}"#, "impersonable[0]"),
    ] {
        std::fs::write(&json, text).unwrap();
        let args = [
            "-v",
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--config",
            json.to_str().unwrap(),
        ];
        let out = run(&args, &[]);
        assert!(!out.status.success(), "{text}");
        assert!(stdout(&out).is_empty(), "{text}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains(needle), "{text}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    let out = run(
        &[
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--token-lifetime",
            "0",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--token-lifetime 0"),
        "{}",
        stderr(&out)
    );
}

/// A loopback listener that counts the connections made to it and closes each at once.
fn counting_listener() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, count)
}

#[test]
fn proxy_variables_apply_to_token_endpoints_and_never_to_the_metadata_server() {
    use std::sync::atomic::Ordering;
    let emu = EmulatorProcess::start();
    let (proxy, connections) = counting_listener();
    let proxy_url = format!("http://{proxy}");
    let proxies = [
        ("HTTP_PROXY", proxy_url.as_str()),
        ("http_proxy", proxy_url.as_str()),
        ("HTTPS_PROXY", proxy_url.as_str()),
        ("https_proxy", proxy_url.as_str()),
        ("ALL_PROXY", proxy_url.as_str()),
    ];
    let mut env = proxies.to_vec();
    env.push(("GCE_METADATA_HOST", emu.host.as_str()));
    for args in [
        &["token"][..],
        &["id-token", "--audience", "https://x.example"][..],
    ] {
        let out = run(args, &env);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "metadata went direct"
    );

    // A token endpoint (here the emulator's plain-HTTP one) goes through the proxy, which
    // closes the connection: the error names the proxy and the variable.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("user.json");
    let json = serde_json::json!({
        "type": "authorized_user", "client_id": "c", "client_secret": "s",
        "refresh_token": "r", "token_uri": format!("http://{}/token", emu.host),
    });
    std::fs::write(&file, json.to_string()).unwrap();
    let file = file.display().to_string();
    let mut env = proxies.to_vec();
    env.push(("GOOGLE_APPLICATION_CREDENTIALS", file.as_str()));
    let out = run(&["-v", "token", "--timeout", "5s"], &env);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("proxy http://{proxy} (HTTP_PROXY)")),
        "{err}"
    );
    assert!(connections.load(Ordering::SeqCst) >= 1);
    // NO_PROXY lets it through directly (the emulator then refuses the unknown client).
    env.push(("NO_PROXY", "127.0.0.1"));
    let before = connections.load(Ordering::SeqCst);
    let out = run(&["token", "--timeout", "5s"], &env);
    assert!(stderr(&out).contains("invalid_client"), "{}", stderr(&out));
    assert_eq!(connections.load(Ordering::SeqCst), before);
}
