//! Issue 8, finding 2: every file ADC reads goes through a handle capped at its limit and refuses
//! what is not a regular file. A FIFO without a writer, `/dev/zero`, a directory or an oversize
//! file is a quick, typed error that names the file, never a hang or an unbounded read; an
//! executable that prints without end is stopped as soon as it passes the limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use workload_auth_core::{Error, ErrorKind};
use workload_auth_emulator::Emulator;

const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const MTLS_TYPE: &str = "urn:ietf:params:oauth:token-type:mtls";
/// Each refusal must come this fast: nothing is waited for or read in full.
const QUICK: Duration = Duration::from_secs(3);

fn mkfifo(dir: &TempDir, name: &str) -> PathBuf {
    let path = dir.path().join(name);
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

fn external(emu: &Emulator, subject_token_type: &str, source: Value) -> Value {
    json!({
        "type": "external_account",
        "audience": WORKLOAD_AUDIENCE,
        "subject_token_type": subject_token_type,
        "token_url": format!("{}/v1/token", emu.url()),
        "credential_source": source,
    })
}

/// Runs `f` on its own thread and fails the test (instead of hanging it) if it takes longer
/// than [`QUICK`].
fn quickly<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(QUICK)
        .unwrap_or_else(|_| panic!("{what}: no answer within {QUICK:?}"))
}

/// The error of loading `file` as GOOGLE_APPLICATION_CREDENTIALS.
fn load_error(file: &Path) -> Error {
    let home = TempDir::new("bounded-home");
    let file = file.to_owned();
    quickly("load", move || {
        builder_for(&home, &file).build().unwrap_err()
    })
}

fn assert_refused(err: &Error, path: &Path, message: &str) {
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert_eq!(
        err.endpoint(),
        Some(path.display().to_string().as_str()),
        "{err}"
    );
    assert!(err.message().contains(message), "{message:?} in {err}");
}

/// The access-token error of the credentials file `file`, within [`QUICK`].
async fn token_error(home: &TempDir, file: &Path, vars: &[(&str, String)]) -> Error {
    let mut vars = vars.to_vec();
    vars.push(("GOOGLE_APPLICATION_CREDENTIALS", file.display().to_string()));
    let creds = builder(home, &vars).build().unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(QUICK, creds.access_token())
        .await
        .expect("no answer in time")
        .unwrap_err();
    assert!(started.elapsed() < QUICK);
    err
}

#[test]
fn finding_2_a_fifo_as_google_application_credentials_does_not_hang() {
    let dir = TempDir::new("bounded-fifo");
    let fifo = mkfifo(&dir, "credentials.json");
    let err = load_error(&fifo);
    assert_refused(&err, &fifo, "is a FIFO, not a regular file");
    assert!(
        err.message().contains("GOOGLE_APPLICATION_CREDENTIALS"),
        "{err}"
    );
}

#[test]
fn finding_2_dev_zero_a_directory_and_an_oversize_file_are_refused_as_credentials() {
    let err = load_error(Path::new("/dev/zero"));
    assert_refused(
        &err,
        Path::new("/dev/zero"),
        "is a character device, not a regular file",
    );

    let dir = TempDir::new("bounded-dir");
    let err = load_error(dir.path());
    assert_refused(&err, dir.path(), "is a directory, not a regular file");

    // Valid JSON up to the limit (trailing spaces), one byte over.
    let big = dir.path().join("big.json");
    let mut content = b"{}".to_vec();
    content.resize(1024 * 1024 + 1, b' ');
    std::fs::write(&big, &content).unwrap();
    let err = load_error(&big);
    assert_refused(&err, &big, "is larger than 1048576 bytes");
    content.truncate(1024 * 1024);
    std::fs::write(&big, &content).unwrap();
    let err = load_error(&big);
    assert!(err.message().contains("no `type` field"), "read: {err}");
}

#[test]
fn finding_2_dev_zero_as_gcloud_s_well_known_file_is_refused() {
    let home = TempDir::new("bounded-gcloud");
    let dir = home.path().join(".config/gcloud");
    std::fs::create_dir_all(&dir).unwrap();
    let well_known = dir.join("application_default_credentials.json");
    std::os::unix::fs::symlink("/dev/zero", &well_known).unwrap();
    let err = quickly("load", move || builder(&home, &[]).build().unwrap_err());
    assert_refused(
        &err,
        &well_known,
        "is a character device, not a regular file",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_dev_zero_and_a_fifo_as_the_subject_token_file_are_refused() {
    let emu = emulator().await;
    let home = TempDir::new("bounded-subject");
    let fifo = mkfifo(&home, "token-fifo");
    for (source, message) in [
        (Path::new("/dev/zero"), "is a character device"),
        (fifo.as_path(), "is a FIFO"),
        (home.path(), "is a directory"),
    ] {
        let file = home.write_json(
            "ext.json",
            &external(&emu, JWT_TYPE, json!({"file": source})),
        );
        let err = token_error(&home, &file, &[]).await;
        assert_refused(&err, source, message);
        assert!(err.message().starts_with("the subject-token file"), "{err}");
    }
    assert_eq!(emu.total_requests(), 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_dev_zero_as_the_certificate_config_or_its_files_is_refused() {
    let emu = emulator().await;
    let home = TempDir::new("bounded-x509");
    let fifo = mkfifo(&home, "chain-fifo");
    let ca = workload_auth_emulator::ca::TrustDomainCa::new("workload.example").unwrap();
    let svid = ca
        .issue("spiffe://workload.example/ns/default/sa/app")
        .unwrap();
    let cert = home.write("workload.pem", svid.chain_pem());
    let key = home.write("workload.key", svid.private_key_pem().expose());
    let config = |name: &str, cert: &Path, key: &Path| {
        home.write_json(
            name,
            &json!({"version": 1, "cert_configs": {"workload": {"cert_path": cert, "key_path": key}}}),
        )
    };
    let zero = Path::new("/dev/zero");
    // (certificate_config.json, trust_chain_path, the file refused, what it is)
    let cases = [
        (
            zero.to_owned(),
            None,
            zero.to_owned(),
            "the certificate configuration file",
        ),
        (
            config("c1.json", zero, &key),
            None,
            zero.to_owned(),
            "the workload certificate file",
        ),
        (
            config("c2.json", &cert, zero),
            None,
            zero.to_owned(),
            "the workload private key file",
        ),
        (
            config("c3.json", &cert, &key),
            Some(fifo.clone()),
            fifo.clone(),
            "the trust chain file",
        ),
    ];
    for (config_path, trust_chain, refused, what) in cases {
        let mut source = json!({"certificate_config_location": config_path});
        if let Some(chain) = trust_chain {
            source["trust_chain_path"] = json!(chain);
        }
        let file = home.write_json(
            "x509.json",
            &external(&emu, MTLS_TYPE, json!({"certificate": source})),
        );
        let err = token_error(&home, &file, &[]).await;
        assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
        assert_eq!(err.endpoint(), Some(refused.display().to_string().as_str()));
        assert!(err.message().starts_with(what), "{what}: {err}");
        assert!(err.message().contains("not a regular file"), "{err}");
    }
    assert_eq!(emu.total_requests(), 0, "nothing was sent");
}

fn executable_file(emu: &Emulator, home: &TempDir, script: &str, extra: Value) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let script_path = home.write("exe.sh", script);
    std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut exe = json!({"command": script_path.display().to_string()});
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            exe[k] = v;
        }
    }
    home.write_json(
        "exe.json",
        &external(emu, JWT_TYPE, json!({"executable": exe})),
    )
}

fn executable_vars() -> [(&'static str, String); 2] {
    [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_an_endless_executable_is_stopped_at_the_limit_not_the_timeout() {
    let emu = emulator().await;
    let home = TempDir::new("bounded-yes");
    let pid_file = home.path().join("pid");
    // Prints without end; the timeout is the maximum, two minutes.
    let script = format!(
        "#!/bin/sh\necho $$ > {}\nexec yes '{{\"version\":1}}'\n",
        pid_file.display()
    );
    let file = executable_file(&emu, &home, &script, json!({"timeout_millis": 120000}));
    let err = token_error(&home, &file, &executable_vars()).await;
    assert_eq!(err.kind(), ErrorKind::MalformedResponse, "{err}");
    assert!(
        err.message()
            .contains("the executable's output exceeded 1048576 bytes"),
        "{err}"
    );
    assert!(err.endpoint().unwrap().starts_with("executable "), "{err}");
    // The program is gone, not left blocked on a full pipe.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
    let gone = (0..100).any(|_| {
        let alive =
            std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|stat| !stat.contains(") Z "));
        if alive {
            std::thread::sleep(Duration::from_millis(10));
        }
        !alive
    });
    assert!(gone, "the executable still runs");
    assert_eq!(emu.total_requests(), 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_a_fifo_or_dev_zero_as_the_executable_output_file_is_refused() {
    let emu = emulator().await;
    let home = TempDir::new("bounded-output");
    let fifo = mkfifo(&home, "output-fifo");
    for (output, message) in [
        (fifo.as_path(), "is a FIFO"),
        (Path::new("/dev/zero"), "is a character device"),
    ] {
        // Prints nothing, so the library reads the output file.
        let file = executable_file(
            &emu,
            &home,
            "#!/bin/sh\nexit 0\n",
            json!({"output_file": output}),
        );
        let err = token_error(&home, &file, &executable_vars()).await;
        assert_eq!(
            err.endpoint(),
            Some(output.display().to_string().as_str()),
            "{err}"
        );
        assert!(
            err.message()
                .starts_with("the executable printed nothing and the executable's output file"),
            "{err}"
        );
        assert!(err.message().contains(message), "{err}");
    }
    assert_eq!(emu.total_requests(), 0, "nothing was sent");
}
