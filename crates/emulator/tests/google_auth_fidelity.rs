//! Fidelity against the reference client: google-auth (Python, from PyPI) must accept the emulator
//! as a metadata server. Runs `google_auth_fidelity.py` in a child process pointed at an emulator
//! started here, then checks both what the library saw and what reached the emulator.
//!
//! Needs `python3` with `pip install google-auth requests`; fails (never skips) without them.
//! Set `WORKLOAD_AUTH_PYTHON` to use another interpreter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;
use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint};

const AUDIENCE: &str = "https://service.example.com";
const SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/devstorage.read_only",
];
const INSTALL_HINT: &str = "pip install google-auth requests";

/// An empty directory for HOME and CLOUDSDK_CONFIG, removed on drop.
struct EmptyDir(PathBuf);

impl EmptyDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "workload-auth-fidelity-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for EmptyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the script against `emu` with a clean environment and returns its JSON output.
async fn run_google_auth(emu: &Emulator) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/google_auth_fidelity.py");
    let python = std::env::var("WORKLOAD_AUTH_PYTHON").unwrap_or_else(|_| "python3".into());
    let home = EmptyDir::new();
    let mut command = tokio::process::Command::new(&python);
    command
        .arg(&script)
        .arg(AUDIENCE)
        .arg(SCOPES.join(","))
        .env_clear()
        .env("HOME", &home.0)
        .env("CLOUDSDK_CONFIG", &home.0)
        .env("GCE_METADATA_HOST", emu.host())
        .env("GCE_METADATA_IP", emu.host())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // Keep what finds the interpreter and its packages, even with HOME moved: pyenv, virtualenvs,
    // and `pip install --user` packages under the real home.
    let real_home = std::env::var_os("HOME").map(PathBuf::from);
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
    if let Some(home) = &real_home {
        if std::env::var_os("PYENV_ROOT").is_none() {
            command.env("PYENV_ROOT", home.join(".pyenv"));
        }
        let user_base =
            std::env::var_os("PYTHONUSERBASE").unwrap_or_else(|| home.join(".local").into());
        command.env("PYTHONUSERBASE", user_base);
    }

    let child = command.output();
    let output = match tokio::time::timeout(Duration::from_secs(120), child).await {
        Err(_) => panic!("google-auth fidelity script did not finish within 120 s"),
        Ok(Err(e)) => panic!(
            "cannot run `{python}` ({e}): the fidelity test needs Python 3 with google-auth; \
             install them with `{INSTALL_HINT}`"
        ),
        Ok(Ok(output)) => output,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        Some(3) => panic!("google-auth is not installed for `{python}`: {INSTALL_HINT}\n{stdout}"),
        _ => panic!(
            "google-auth fidelity script failed ({}).\nstdout:\n{stdout}\nstderr:\n{stderr}",
            output.status
        ),
    }
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("script output is not JSON ({e}): {stdout}\nstderr:\n{stderr}"))
}

fn assert_issued(emu: &Emulator, token: &Value, scopes: &[&str]) {
    let token = token.as_str().expect("a token string");
    let issued = emu
        .issued_token(token)
        .expect("google-auth holds a token this emulator issued");
    assert_eq!(issued.scopes, scopes);
}

/// Every metadata request carried the flavor header; the requests google-auth makes arrived.
fn assert_requests_arrived(emu: &Emulator) {
    assert!(
        emu.requests(Endpoint::Root) >= 2,
        "ping and is_on_gce probe /"
    );
    assert!(
        emu.requests(Endpoint::ServiceAccount) >= 2,
        "service-account info"
    );
    assert!(
        emu.requests(Endpoint::Token) >= 3,
        "three credentials refreshed"
    );
    assert_eq!(emu.requests(Endpoint::Identity), 1);
    assert_eq!(emu.requests(Endpoint::PemCerts), 1);
    assert!(emu.requests(Endpoint::ProjectId) >= 2);
    assert!(emu.requests(Endpoint::UniverseDomain) >= 1);
    assert_eq!(emu.requests(Endpoint::Other), 0, "no request went astray");

    let recent = emu.recent_requests();
    for r in recent
        .iter()
        .filter(|r| r.path.starts_with("/computeMetadata/"))
    {
        assert!(
            r.header("metadata-flavor")
                .is_some_and(|v| v.eq_ignore_ascii_case("google")),
            "{} without Metadata-Flavor",
            r.path
        );
    }
    let identity = recent
        .iter()
        .find(|r| r.endpoint == Endpoint::Identity)
        .unwrap();
    assert_eq!(identity.query_param("audience"), Some(AUDIENCE));
    assert_eq!(identity.query_param("format"), Some("full"));
    let scoped = SCOPES.join(",");
    assert!(
        recent
            .iter()
            .any(|r| r.endpoint == Endpoint::Token && r.query_param("scopes") == Some(&scoped)),
        "the scoped token request carried ?scopes="
    );
}

#[tokio::test]
async fn google_auth_accepts_the_default_emulator() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let config = emu.config();
    let out = run_google_auth(&emu).await;

    assert_eq!(out["ping"], true, "{out}");
    assert_eq!(out["is_on_gce"], true, "{out}");

    assert_issued(
        &emu,
        &out["token"],
        &["https://www.googleapis.com/auth/cloud-platform"],
    );
    assert_eq!(out["token_valid"], true);
    let left = out["token_seconds_left"].as_f64().unwrap();
    assert!((3500.0..=3599.5).contains(&left), "{left}");
    assert_eq!(out["service_account_email"], config.email.as_str());
    assert_eq!(out["universe_domain"], "googleapis.com");
    assert_issued(&emu, &out["scoped_token"], &SCOPES);

    let claims = &out["id_token_claims"];
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["email"], config.email.as_str());
    assert_eq!(claims["sub"], config.unique_id.as_str());
    assert_eq!(out["id_token_issuer_is_google"], true);
    assert_eq!(out["id_token_valid"], true);
    assert_eq!(out["id_token_service_account_email"], config.email.as_str());

    assert_eq!(
        out["default_type"],
        "google.auth.compute_engine.credentials.Credentials"
    );
    assert_eq!(out["default_project_id"], "emulated-project");
    assert_eq!(out["project_id"], "emulated-project");
    assert_eq!(out["metadata_universe_domain"], "googleapis.com");
    assert_eq!(out["default_token_valid"], true);

    assert_requests_arrived(&emu);
}

#[tokio::test]
async fn google_auth_reads_a_configured_identity_and_universe() {
    let emu = Emulator::start(EmulatorConfig {
        email: "fidelity@other-project.iam.gserviceaccount.com".into(),
        project_id: "other-project".into(),
        universe_domain: Some("example-universe.test".into()),
        token_lifetime: Duration::from_secs(1800),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let out = run_google_auth(&emu).await;

    assert_eq!(
        out["service_account_email"],
        "fidelity@other-project.iam.gserviceaccount.com"
    );
    assert_eq!(out["universe_domain"], "example-universe.test");
    assert_eq!(out["metadata_universe_domain"], "example-universe.test");
    assert_eq!(out["default_project_id"], "other-project");
    let left = out["token_seconds_left"].as_f64().unwrap();
    assert!((1700.0..=1800.5).contains(&left), "{left}");
    assert_eq!(
        out["id_token_claims"]["email"],
        "fidelity@other-project.iam.gserviceaccount.com"
    );
    assert_requests_arrived(&emu);
}
