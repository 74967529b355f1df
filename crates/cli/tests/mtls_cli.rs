//! `workload-auth mtls serve` and `workload-auth mtls connect` as a user runs them: real processes
//! over 127.0.0.1, with credentials directories laid out by the emulator as the node agent does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::credentials_writer::{
    CredentialsContents, CredentialsDirWriter, Layout,
};

const BIN: &str = env!("CARGO_BIN_EXE_workload-auth");
const TD: &str = "prod.example";
const SERVER: &str = "spiffe://prod.example/ns/backend/sa/api";
const CLIENT: &str = "spiffe://prod.example/ns/frontend/sa/web";
const WAIT: Duration = Duration::from_secs(30);

/// A credentials directory for `id` issued by `ca`, trusting `ca` (and `federated`).
struct Creds {
    _tmp: tempfile::TempDir,
    writer: CredentialsDirWriter,
}

impl Creds {
    fn new(ca: &TrustDomainCa, id: &str, federated: &[&TrustDomainCa]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let writer = CredentialsDirWriter::new(tmp.path());
        let creds = Self { _tmp: tmp, writer };
        creds.rotate(ca, id, federated);
        creds
    }

    fn rotate(&self, ca: &TrustDomainCa, id: &str, federated: &[&TrustDomainCa]) {
        let svid = ca.issue(id).unwrap();
        let dir = self
            .writer
            .write(&CredentialsContents::new(
                &svid,
                ca,
                federated.iter().copied(),
            ))
            .unwrap();
        // The key files readable by their owner only, so no warning line mixes into what the
        // tests read (finding_10_... checks the warning for a 0644 key).
        for name in ["private_key.pem", "x509.credential-bundle.private-key.pem"] {
            set_mode(&dir.join(name), 0o600);
        }
    }

    fn path(&self) -> PathBuf {
        self.writer.link_path()
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Lines of a child's output, read on a thread as they come.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn of(pipe: impl Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; panics with everything seen after [`WAIT`].
    fn wait_for(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; saw {:?}", self.seen),
            }
        }
    }
}

/// `workload-auth mtls serve` on a free loopback port; killed on drop.
struct Server {
    child: Child,
    addr: String,
    stdout: Lines,
    stderr: Lines,
}

impl Server {
    fn start(creds: &Path, allow: &[&str]) -> Self {
        let mut args = vec![
            "mtls".to_owned(),
            "serve".to_owned(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--credentials".to_owned(),
            creds.display().to_string(),
        ];
        for policy in allow {
            args.push("--allow".into());
            args.push((*policy).into());
        }
        let mut child = Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = Lines::of(child.stdout.take().unwrap());
        let stderr = Lines::of(child.stderr.take().unwrap());
        let first = stdout.wait_for("listening on ");
        assert_eq!(stdout.seen.len(), 1, "`listening on` comes first");
        let addr = first.strip_prefix("listening on ").unwrap().to_owned();
        Self {
            child,
            addr,
            stdout,
            stderr,
        }
    }

    fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Connected {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `workload-auth mtls connect ADDR --credentials DIR --allow ...` with `input` on stdin.
fn connect(addr: &str, creds: &Path, allow: &[&str], input: &[u8]) -> Connected {
    let mut cmd = Command::new(BIN);
    cmd.args(["mtls", "connect", addr, "--credentials"])
        .arg(creds);
    for policy in allow {
        cmd.args(["--allow", policy]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // The server may refuse before reading it all; a broken pipe here is the client's business.
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(WAIT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("`mtls connect` did not finish");
        }
    };
    Connected {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn assert_one_line_error(c: &Connected, needle: &str) {
    assert!(
        !c.status.success(),
        "expected a failure; stdout {:?}",
        c.stdout
    );
    assert_eq!(
        c.stderr.lines().count(),
        1,
        "one line on stderr: {:?}",
        c.stderr
    );
    assert!(c.stderr.starts_with("workload-auth: "), "{:?}", c.stderr);
    assert!(
        c.stderr.contains(needle),
        "{needle:?} not in {:?}",
        c.stderr
    );
    assert!(c.stdout.is_empty(), "{:?}", c.stdout);
}

#[test]
fn an_allowed_peer_is_echoed_and_logged() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let server_creds = Creds::new(&ca, SERVER, &[]);
    let client_creds = Creds::new(&ca, CLIENT, &[]);
    let mut server = Server::start(&server_creds.path(), &[&format!("td:{TD}")]);

    // More than one TLS record's worth, so echoing overlaps with sending.
    let input: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let c = connect(&server.addr, &client_creds.path(), &[SERVER], &input);
    assert!(c.status.success(), "stderr: {}", c.stderr);
    assert_eq!(c.stdout.as_bytes(), input.as_slice());
    assert!(c.stderr.is_empty(), "{}", c.stderr);
    let line = server.stdout.wait_for("connected");
    assert_eq!(line, format!("peer {CLIENT} connected"));

    // A second client, allowed by the second of two policies.
    let other = "spiffe://prod.example/ns/batch/sa/report";
    let other_creds = Creds::new(&ca, other, &[]);
    let c = connect(
        &server.addr,
        &other_creds.path(),
        &[&format!("prefix:spiffe://{TD}/ns/backend")],
        b"hi\n",
    );
    assert!(c.status.success(), "stderr: {}", c.stderr);
    assert_eq!(c.stdout, "hi\n");
    server.stdout.wait_for(&format!("peer {other} connected"));

    assert!(
        server.terminate().success(),
        "SIGTERM ends the server cleanly"
    );
}

#[test]
fn repeated_allow_means_any_of_them() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let server_creds = Creds::new(&ca, SERVER, &[]);
    let client_creds = Creds::new(&ca, CLIENT, &[]);
    let mut server = Server::start(
        &server_creds.path(),
        &[
            "spiffe://prod.example/ns/other/sa/x",
            "prefix:spiffe://prod.example/ns/frontend",
        ],
    );
    let c = connect(
        &server.addr,
        &client_creds.path(),
        &["td:elsewhere.example", SERVER],
        b"ping",
    );
    assert!(c.status.success(), "stderr: {}", c.stderr);
    assert_eq!(c.stdout, "ping");
    server.stdout.wait_for(&format!("peer {CLIENT} connected"));
}

#[test]
fn the_server_refuses_a_peer_its_policy_does_not_allow() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let server_creds = Creds::new(&ca, SERVER, &[]);
    let intruder = "spiffe://prod.example/ns/frontendx/sa/web";
    let intruder_creds = Creds::new(&ca, intruder, &[]);
    let mut server = Server::start(
        &server_creds.path(),
        &["prefix:spiffe://prod.example/ns/frontend"],
    );

    let c = connect(
        &server.addr,
        &intruder_creds.path(),
        &[SERVER],
        b"let me in",
    );
    assert_one_line_error(&c, "refused the handshake");
    let line = server.stderr.wait_for("refused a connection");
    assert!(
        line.contains(&format!(
            "peer {intruder} is not authorized by policy prefix:spiffe://prod.example/ns/frontend"
        )),
        "{line}"
    );
    assert!(!server.stdout.seen.iter().any(|l| l.starts_with("peer ")));

    // The server keeps serving.
    let client_creds = Creds::new(&ca, CLIENT, &[]);
    let c = connect(&server.addr, &client_creds.path(), &[SERVER], b"ok");
    assert!(c.status.success(), "stderr: {}", c.stderr);
    assert_eq!(c.stdout, "ok");
}

#[test]
fn the_client_refuses_a_server_its_policy_does_not_allow() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let server_creds = Creds::new(&ca, SERVER, &[]);
    let client_creds = Creds::new(&ca, CLIENT, &[]);
    let server = Server::start(&server_creds.path(), &["any"]);
    let expected = "spiffe://prod.example/ns/backend/sa/billing";
    let c = connect(&server.addr, &client_creds.path(), &[expected], b"secret");
    assert_one_line_error(
        &c,
        &format!("peer {SERVER} is not authorized by policy {expected}"),
    );
}

#[test]
fn a_peer_from_another_trust_domain_is_refused_on_both_sides() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let other = TrustDomainCa::new("other.example").unwrap();
    let server_creds = Creds::new(&ca, SERVER, &[]);
    let stranger_creds = Creds::new(&other, "spiffe://other.example/ns/a/sa/b", &[]);
    let mut server = Server::start(&server_creds.path(), &["any"]);

    // The stranger has no bundle for prod.example, so it refuses the server.
    let c = connect(&server.addr, &stranger_creds.path(), &["any"], b"x");
    assert_one_line_error(&c, "no trust bundle for trust domain prod.example");
    server.stderr.wait_for("refused a connection");

    // A stranger that trusts prod.example (federation) is still refused by the server, which
    // holds no bundle for other.example.
    let federated = Creds::new(&other, "spiffe://other.example/ns/a/sa/b", &[&ca]);
    let c = connect(&server.addr, &federated.path(), &["any"], b"x");
    assert_one_line_error(&c, "refused the handshake");
    let line = server
        .stderr
        .wait_for("no trust bundle for trust domain other.example");
    assert!(line.contains("refused a connection"), "{line}");
}

#[test]
fn the_server_follows_a_rotation_of_its_credentials() {
    let old_ca = TrustDomainCa::new(TD).unwrap();
    let new_ca = TrustDomainCa::new(TD).unwrap();
    let server_creds = Creds::new(&old_ca, SERVER, &[]);
    // The client trusts only the new root, and holds an SVID from it.
    let client_creds = Creds::new(&new_ca, CLIENT, &[]);
    let mut server = Server::start(&server_creds.path(), &[&format!("td:{TD}")]);

    let c = connect(&server.addr, &client_creds.path(), &[SERVER], b"before");
    assert_one_line_error(
        &c,
        "certificate chain does not lead to a root of trust domain",
    );

    server_creds.rotate(&new_ca, SERVER, &[]);
    server.stderr.wait_for("credentials reloaded");
    let c = connect(&server.addr, &client_creds.path(), &[SERVER], b"after");
    assert!(c.status.success(), "stderr: {}", c.stderr);
    assert_eq!(c.stdout, "after");
    server.stdout.wait_for(&format!("peer {CLIENT} connected"));

    // A broken generation (no private key) is reported and the last good credentials stay.
    let svid = new_ca.issue(SERVER).unwrap();
    let mut broken = CredentialsContents::new(&svid, &new_ca, []);
    broken.private_key_pem = None;
    broken.combined_pem = None;
    server_creds.writer.write(&broken).unwrap();
    let line = server
        .stderr
        .wait_for("reloading the credentials failed, keeping the last good ones");
    assert!(line.contains("private"), "{line}");
    let c = connect(&server.addr, &client_creds.path(), &[SERVER], b"still");
    assert!(c.status.success(), "stderr: {}", c.stderr);
    assert_eq!(c.stdout, "still");
}

#[test]
fn bad_arguments_and_missing_credentials_fail_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("workload-spiffe-credentials");
    // A loopback port nobody listens on any more.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let c = connect(&closed, &missing, &["any"], b"");
    assert_one_line_error(&c, "cannot load X.509 credentials from");
    assert!(c.stderr.contains("--credentials"), "{}", c.stderr);

    let ca = TrustDomainCa::new(TD).unwrap();
    let creds = Creds::new(&ca, CLIENT, &[]);
    let c = connect(&closed, &creds.path(), &["td:NOT VALID"], b"");
    assert_one_line_error(
        &c,
        "--allow: invalid argument: invalid authorization policy",
    );

    // Nothing listens there: a connection error naming the address, not a hang.
    let c = connect(&closed, &creds.path(), &["any"], b"");
    assert_one_line_error(&c, &closed);

    let out = Command::new(BIN)
        .args(["mtls", "serve", "--listen", "127.0.0.1:0", "--credentials"])
        .arg(&missing)
        .args(["--allow", "any"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
}

#[test]
fn finding_5_td_policy_with_a_path_is_refused_not_widened() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let server_creds = Creds::new(&ca, SERVER, &[]);
    let client_creds = Creds::new(&ca, CLIENT, &[]);
    let narrow = "td:spiffe://prod.example/ns/admin";

    // `serve` refuses to start rather than allowing all of prod.example.
    let out = Command::new(BIN)
        .args(["mtls", "serve", "--listen", "127.0.0.1:0", "--credentials"])
        .arg(server_creds.path())
        .args(["--allow", narrow])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve started with {narrow}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--allow: invalid argument: invalid authorization policy"),
        "{stderr}"
    );
    assert!(stderr.contains("/ns/admin"), "{stderr}");
    assert!(out.stdout.is_empty(), "no `listening on`");

    // The trust domain written as its SPIFFE ID (no path) still means the whole domain.
    let mut server = Server::start(&server_creds.path(), &["td:spiffe://prod.example"]);
    let c = connect(&server.addr, &client_creds.path(), &[narrow], b"x");
    assert_one_line_error(
        &c,
        "--allow: invalid argument: invalid authorization policy",
    );
    let c = connect(
        &server.addr,
        &client_creds.path(),
        &["td:prod.example"],
        b"ping",
    );
    assert!(c.status.success(), "stderr: {}", c.stderr);
    assert_eq!(c.stdout, "ping");
    server.stdout.wait_for(&format!("peer {CLIENT} connected"));
}

#[test]
fn finding_10_a_key_readable_by_others_is_a_warning_on_stderr() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let server_creds = Creds::new(&ca, SERVER, &[]);
    let client_creds = Creds::new(&ca, CLIENT, &[]);
    let client_dir = client_creds.writer.current_dir().unwrap();
    let key = client_dir.join("private_key.pem");
    let mut server = Server::start(&server_creds.path(), &["any"]);

    set_mode(&key, 0o644);
    let c = connect(&server.addr, &client_creds.path(), &[SERVER], b"ping");
    assert!(c.status.success(), "stderr: {}", c.stderr);
    assert_eq!(c.stdout, "ping", "the warning does not stop the connection");
    let lines: Vec<&str> = c.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", c.stderr);
    assert!(
        lines[0].starts_with("workload-auth: warning: "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(&key.display().to_string()),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("0644"), "{}", lines[0]);
    server.stdout.wait_for(&format!("peer {CLIENT} connected"));

    set_mode(&key, 0o600);
    let c = connect(&server.addr, &client_creds.path(), &[SERVER], b"pong");
    assert!(c.status.success(), "stderr: {}", c.stderr);
    assert_eq!(c.stdout, "pong");
    assert!(c.stderr.is_empty(), "no warning for 0600: {}", c.stderr);
}

/// A credentials directory in `layout`, key files readable by their owner only.
fn layout_creds(layout: Layout, ca: &TrustDomainCa, id: &str) -> Creds {
    let tmp = tempfile::tempdir().unwrap();
    let writer = CredentialsDirWriter::new(tmp.path());
    let svid = ca.issue(id).unwrap();
    let dir = writer
        .write(&CredentialsContents::with_layout(layout, &svid, ca, []))
        .unwrap();
    for name in [
        "private_key.pem",
        "x509.credential-bundle.private-key.pem",
        "credential-bundle.private-key.pem",
    ] {
        if dir.join(name).exists() {
            set_mode(&dir.join(name), 0o600);
        }
    }
    Creds { _tmp: tmp, writer }
}

#[test]
fn each_layout_serves_and_the_server_says_which_it_found() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let client_creds = Creds::new(&ca, CLIENT, &[]);
    for (layout, file) in [
        (Layout::Gke, "certificates.pem"),
        (Layout::Combined, "x509.credential-bundle.private-key.pem"),
        (Layout::SpiffeFs, "credential-bundle.private-key.pem"),
    ] {
        let server_creds = layout_creds(layout, &ca, SERVER);
        let mut server = Server::start(&server_creds.path(), &[CLIENT]);
        let line = server.stdout.wait_for("credentials layout");
        assert!(
            line.starts_with(&format!("credentials layout {layout} ({file}) in ")),
            "{line}"
        );
        let c = connect(&server.addr, &client_creds.path(), &[SERVER], b"hi");
        assert!(c.status.success(), "{layout}: {}", c.stderr);
        assert_eq!(c.stdout, "hi");
    }
}

/// Without `--credentials`, `SPIFFE_CREDENTIAL_FOLDER` names a SPIFFE filesystem delivery
/// directory.
#[test]
fn spiffe_credential_folder_is_where_connect_looks_by_default() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let server_creds = Creds::new(&ca, SERVER, &[]);
    let client_creds = layout_creds(Layout::SpiffeFs, &ca, CLIENT);
    let mut server = Server::start(&server_creds.path(), &[CLIENT]);
    let out = Command::new(BIN)
        .args(["mtls", "connect", &server.addr, "--allow", SERVER])
        .env("SPIFFE_CREDENTIAL_FOLDER", client_creds.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.stdout.wait_for(&format!("peer {CLIENT} connected"));

    // The folder must hold the SPIFFE layout: the node agent's files there are not guessed at.
    let out = Command::new(BIN)
        .args(["mtls", "connect", &server.addr, "--allow", SERVER])
        .env("SPIFFE_CREDENTIAL_FOLDER", server_creds.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("credential-bundle.private-key.pem"),
        "{stderr}"
    );
}

#[test]
fn a_hidden_key_directory_fails_with_one_line_saying_so() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let server_creds = Creds::new(&ca, SERVER, &[]);
    let client_creds = layout_creds(Layout::NoKey, &ca, CLIENT);
    let _server = Server::start(&server_creds.path(), &[CLIENT]);
    let c = connect(&_server.addr, &client_creds.path(), &[SERVER], b"hi");
    assert_one_line_error(&c, "keeps this workload's private key hidden");

    let out = Command::new(BIN)
        .args(["mtls", "serve", "--listen", "127.0.0.1:0", "--allow", "any"])
        .arg("--credentials")
        .arg(client_creds.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("hidden"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
}
