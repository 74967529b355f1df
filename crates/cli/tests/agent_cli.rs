//! `workload-auth agent`: arguments checked before anything is touched; serves on a 0600 socket;
//! SIGTERM stops it cleanly and removes the socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::credentials_writer::{CredentialsContents, CredentialsDirWriter};

const BIN: &str = env!("CARGO_BIN_EXE_workload-auth");

#[test]
fn agent_refuses_bad_arguments_before_touching_the_filesystem() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path().join("not-yet");
    let socket = format!("unix://{}/agent.sock", parent.display());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--socket".into(), "tcp://127.0.0.1:8081".into()],
            "unix",
        ),
        (
            vec!["--socket".into(), "unix://relative/agent.sock".into()],
            "absolute",
        ),
        (
            vec![
                "--socket".into(),
                socket.clone(),
                "--poll-interval".into(),
                "1ms".into(),
            ],
            "10ms",
        ),
        (
            vec![
                "--socket".into(),
                socket.clone(),
                "--max-streams".into(),
                "0".into(),
            ],
            "max-streams",
        ),
    ];
    for (args, expect) in cases {
        let out = Command::new(BIN).arg("agent").args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert!(!parent.exists(), "{args:?} touched the filesystem");
    }
}

#[test]
fn agent_serves_on_a_0600_socket_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = TrustDomainCa::new("example.org").unwrap();
    let writer = CredentialsDirWriter::new(tmp.path().join("creds"));
    writer
        .write(&CredentialsContents::new(
            &ca.issue("spiffe://example.org/w").unwrap(),
            &ca,
            [],
        ))
        .unwrap();
    let socket = tmp.path().join("run").join("agent.sock");
    let mut child = Command::new(BIN)
        .args([
            "agent",
            "--socket",
            &format!("unix://{}", socket.display()),
            "--credentials",
            &writer.link_path().display().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("agent serving unix://"), "{first}");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the agent ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "the socket is removed on shutdown");
}
