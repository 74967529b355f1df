//! Compiles the C programs of `tests/c/` against the checked-in header and the library this
//! package just built, and runs each under valgrind (no leak, no memory error) against real peers:
//! the emulator started here, credentials directories written here, a Rust mTLS server.
//!
//! Needs `cc`, `c++`, `pkg-config`, `cmake` and `valgrind` (scripts/test.sh installs them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::credentials_writer::{
    CredentialsContents, CredentialsDirWriter, Layout,
};
use workload_auth_emulator::{
    Emulator, EmulatorConfig, Endpoint, Fault, IdentityConfig, OAuthClient, RefreshTokenGrant,
};
use workload_auth_mtls::{
    Authorizer, CredentialsDir, MtlsAcceptor, MtlsConfig, SpiffeId, SvidStore,
};

const TRUST_DOMAIN: &str = "c-tests.example";
const SERVER_ID: &str = "spiffe://c-tests.example/ns/prod/sa/server";
const CLIENT_ID: &str = "spiffe://c-tests.example/ns/prod/sa/client";
const PEER_ID: &str = "spiffe://c-tests.example/ns/batch/sa/peer";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The directory with the libraries cargo built for this test run (`libworkload_auth_c.so` and
/// `.a`): next to the test binary (`target/<profile>/deps`) or one level up.
fn built_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    for dir in [deps.clone(), deps.parent().unwrap().to_path_buf()] {
        if dir.join("libworkload_auth_c.so").exists() && dir.join("libworkload_auth_c.a").exists() {
            return dir;
        }
    }
    panic!(
        "libworkload_auth_c.so/.a not found next to {}; cargo builds them with this test",
        exe.display()
    );
}

/// A directory holding the libraries of `built` under the names install.sh gives them (and C
/// programs link with): `libworkload_auth.so`, its SONAME `libworkload_auth.so.MAJOR`, and
/// `libworkload_auth.a`, as links to cargo's `libworkload_auth_c.*`.
fn installed_names(built: &Path) -> PathBuf {
    let dir = built.join("wa-c-lib");
    std::fs::create_dir_all(&dir).unwrap();
    let soname = format!("libworkload_auth.so.{}", env!("CARGO_PKG_VERSION_MAJOR"));
    for (name, target) in [
        ("libworkload_auth.so", "libworkload_auth_c.so"),
        (soname.as_str(), "libworkload_auth_c.so"),
        ("libworkload_auth.a", "libworkload_auth_c.a"),
    ] {
        let link = dir.join(name);
        // Tests run in parallel: another one may have made it already.
        match std::os::unix::fs::symlink(built.join(target), &link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("cannot link {}: {e}", link.display()),
        }
    }
    dir
}

/// The libraries of this test run under their installed names, see [`installed_names`].
fn library_dir() -> PathBuf {
    installed_names(&built_dir())
}

fn require_tool(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{tool}` is needed to build and check the C programs: install it (scripts/test.sh does: \
         apt-get install gcc g++ pkg-config cmake valgrind)"
    );
}

/// Builds the C programs once per test process; returns the directory holding them.
fn programs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        for tool in ["cc", "c++", "pkg-config", "valgrind"] {
            require_tool(tool);
        }
        let root = workspace_root();
        let lib = library_dir();
        // Next to the library, inside the target directory: rebuilt on every run, never litter.
        let out = lib.parent().unwrap().join("wa-c-tests");
        std::fs::create_dir_all(&out).unwrap();
        for name in [
            "token",
            "identity",
            "mtls",
            "bad_input",
            "trust_boundary",
            "bound",
            "downscoped",
        ] {
            let status = Command::new("cc")
                .args([
                    "-std=c11",
                    "-D_DEFAULT_SOURCE",
                    "-g",
                    "-Wall",
                    "-Wextra",
                    "-Werror",
                ])
                .arg("-I")
                .arg(root.join("include"))
                .arg(root.join(format!("tests/c/{name}.c")))
                .arg("-o")
                .arg(out.join(name))
                .arg(format!("-L{}", lib.display()))
                .arg(format!("-Wl,-rpath,{}", lib.display()))
                .args(["-lworkload_auth", "-pthread"])
                .status()
                .unwrap();
            assert!(status.success(), "cc failed on tests/c/{name}.c");
        }
        out
    })
}

/// Runs `program args` under valgrind with only `env` (plus PATH) in its environment; returns
/// its output after checking it succeeded with no leak and no memory error.
fn run_checked(program: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let root = workspace_root();
    run_valgrind(
        program,
        args,
        env,
        &[
            root.join("tests/c/valgrind.supp"),
            // The file installed for users of the library.
            root.join("bindings/c/valgrind.supp"),
        ],
    )
}

/// [`run_checked`] with the given suppression files only.
fn run_valgrind(
    program: &Path,
    args: &[&str],
    env: &[(&str, String)],
    suppressions: &[PathBuf],
) -> Output {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new("valgrind")
        .args([
            "--quiet",
            "--leak-check=full",
            // The Rust runtime's threads and statics are still reachable at exit, by design;
            // only memory nobody can reach any more is a leak.
            "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect",
            "--error-exitcode=99",
            // Deep enough to reach the TLS layer from a socket write (suppressions name it).
            "--num-callers=40",
        ])
        .args(
            suppressions
                .iter()
                .map(|file| format!("--suppressions={}", file.display())),
        )
        .arg(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        // ADC must see nothing of this machine: an empty home, no gcloud configuration.
        .env("HOME", home.path())
        .env("CLOUDSDK_CONFIG", home.path().join("gcloud"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        Some(99) => panic!(
            "valgrind found leaks or memory errors in {} {args:?}:\n{stderr}",
            program.display()
        ),
        _ => panic!(
            "{} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
            program.display(),
            output.status
        ),
    }
    output
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn c_program_gets_tokens_from_the_emulator() {
    let emu = Emulator::start_in_thread(EmulatorConfig {
        project_id: "c-test-project".into(),
        ..EmulatorConfig::default()
    })
    .unwrap();
    let out = run_checked(
        &programs().join("token"),
        &["metadata"],
        &[
            ("GCE_METADATA_HOST", emu.host()),
            ("WA_TEST_PROJECT", "c-test-project".into()),
        ],
    );
    assert_eq!(stdout_of(&out), "metadata: ok\n");
    // Default scopes, one other scope set, and one after invalidation: 1601 token calls, three
    // requests. Every other call was served from the cache.
    assert_eq!(emu.requests(Endpoint::Token), 3);
    assert_eq!(emu.requests(Endpoint::Identity), 1);
}

#[test]
fn c_program_gets_bound_tokens_only_with_their_certificate() {
    use base64::Engine as _;
    let fingerprint = |der: &[u8]| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(ring::digest::digest(&ring::digest::SHA256, der))
    };
    let emu = Emulator::start_in_thread(EmulatorConfig::default()).unwrap();
    let td = "agents.global.org-77.system.id.goog";
    let ca = TrustDomainCa::new(td).unwrap();
    let id = format!("spiffe://{td}/ns/c/sa/agent");
    let (first, second) = (ca.issue(&id).unwrap(), ca.issue(&id).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(path("cert.pem"), first.chain_pem()).unwrap();
    std::fs::write(path("key.pem"), first.private_key_pem().expose()).unwrap();
    std::fs::write(path("next-cert.pem"), second.chain_pem()).unwrap();
    std::fs::write(path("next-key.pem"), second.private_key_pem().expose()).unwrap();
    std::fs::write(
        path("certificate_config.json"),
        format!(
            r#"{{"cert_configs":{{"workload":{{"cert_path":{:?},"key_path":{:?}}}}}}}"#,
            path("cert.pem"),
            path("key.pem")
        ),
    )
    .unwrap();
    let (fp1, fp2) = (
        fingerprint(first.leaf_der()),
        fingerprint(second.leaf_der()),
    );
    let out = run_checked(
        &programs().join("bound"),
        &[],
        &[
            ("GCE_METADATA_HOST", emu.host()),
            (
                "GOOGLE_API_CERTIFICATE_CONFIG",
                path("certificate_config.json"),
            ),
            ("WA_TEST_FINGERPRINT", fp1.clone()),
            ("WA_TEST_ROTATED_FINGERPRINT", fp2.clone()),
            ("WA_TEST_CERT", path("cert.pem")),
            ("WA_TEST_KEY", path("key.pem")),
            ("WA_TEST_ROTATED_CERT", path("next-cert.pem")),
            ("WA_TEST_ROTATED_KEY", path("next-key.pem")),
        ],
    );
    let text = stdout_of(&out);
    assert!(text.ends_with("bound: ok\n"), "{text}");
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap()
            .to_owned()
    };
    // The emulator issued each token bound to the certificate the C program got with it.
    let issued = emu.issued_token(&value("token=")).unwrap();
    assert_eq!(issued.bound_fingerprint, Some(fp1));
    let issued = emu.issued_token(&value("rotated=")).unwrap();
    assert_eq!(issued.bound_fingerprint, Some(fp2));
    assert_eq!(emu.requests(Endpoint::Token), 2);
}

#[test]
fn c_program_chooses_strict_mds_mtls_and_sends_no_plain_http() {
    let emu = Emulator::start_in_thread(EmulatorConfig::default()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("mds");
    emu.enable_mds_mtls(&dir).unwrap();
    let out = run_checked(
        &programs().join("token"),
        &["mds-mtls"],
        &[
            ("GCE_METADATA_HOST", emu.host()),
            ("WA_TEST_MDS_DIR", dir.display().to_string()),
        ],
    );
    assert_eq!(stdout_of(&out), "mds-mtls: ok\n");
    assert!(
        emu.mds_mtls_requests() >= 2,
        "token and explain's project id"
    );
    assert_eq!(emu.plain_http_requests(), 0);
}

#[test]
fn c_program_uses_a_credentials_file() {
    let emu = Emulator::start_in_thread(EmulatorConfig {
        identity: IdentityConfig {
            oauth_clients: vec![OAuthClient::new("c-client", "c-secret")],
            refresh_tokens: vec![RefreshTokenGrant::new("1//c-refresh", "c-client")],
            ..IdentityConfig::default()
        },
        ..EmulatorConfig::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("user.json");
    let json = serde_json::json!({
        "type": "authorized_user",
        "client_id": "c-client",
        "client_secret": "c-secret",
        "refresh_token": "1//c-refresh",
        "quota_project_id": "c-quota-project",
        "token_uri": format!("{}/token", emu.url()),
    });
    std::fs::write(&file, json.to_string()).unwrap();
    let out = run_checked(
        &programs().join("token"),
        &["file"],
        &[("WA_TEST_CREDENTIALS_FILE", file.display().to_string())],
    );
    assert_eq!(stdout_of(&out), "file: ok\n");
    assert_eq!(emu.requests(Endpoint::OAuthToken), 1);
}

/// Runs `program args` natively (no valgrind): for timing checks.
fn run_plain(program: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(program)
        .args(args)
        .env_clear()
        .env("HOME", home.path())
        .env("CLOUDSDK_CONFIG", home.path().join("gcloud"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} {args:?} failed ({}):\n{}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn c_program_token_calls_honour_deadlines() {
    let delay = Duration::from_millis(4000);
    // Natively the deadline holds within 50 ms; under valgrind (memory checks, one thread at a
    // time) within 2 s, still well before the slow answer would have come.
    for (slack_ms, valgrind) in [(50, false), (2000, true)] {
        let emu = Emulator::start_in_thread(EmulatorConfig::default()).unwrap();
        emu.inject(Endpoint::Token, Fault::Delay(delay), Some(1));
        emu.inject(Endpoint::Identity, Fault::Delay(delay), Some(1));
        let env = [
            ("GCE_METADATA_HOST", emu.host()),
            ("WA_TEST_DELAY_MS", delay.as_millis().to_string()),
            ("WA_TEST_SLACK_MS", slack_ms.to_string()),
        ];
        let program = programs().join("token");
        let out = if valgrind {
            run_checked(&program, &["deadline"], &env)
        } else {
            run_plain(&program, &["deadline"], &env)
        };
        assert_eq!(stdout_of(&out), "deadline: ok\n");
        // The slow answers were asked for: the deadline ran out on real requests.
        assert!(emu.requests(Endpoint::Token) >= 1);
        assert_eq!(emu.requests(Endpoint::Identity), 1);
    }
}

/// A C file that calls `call;` as a statement, ignoring its result.
fn compile_ignoring(call: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("ignore.c");
    std::fs::write(
        &source,
        format!(
            "#include \"workload_auth.h\"\nint main(void) {{\n    wa_credentials *c = 0;\n    \
             {call};\n    wa_credentials_free(c);\n    return 0;\n}}\n"
        ),
    )
    .unwrap();
    Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-c"])
        .args(extra)
        .arg("-I")
        .arg(workspace_root().join("include"))
        .arg(&source)
        .arg("-o")
        .arg(dir.path().join("ignore.o"))
        .output()
        .unwrap()
}

#[test]
fn ignoring_a_wa_result_is_a_compiler_warning() {
    require_tool("cc");
    let ignored = compile_ignoring("wa_credentials_new_default(&c)", &[]);
    assert!(!ignored.status.success(), "an ignored wa_result compiled");
    let stderr = String::from_utf8_lossy(&ignored.stderr);
    assert!(
        stderr.contains("unused-result") || stderr.contains("warn_unused_result"),
        "{stderr}"
    );
    // Checked: no warning. Opted out with -DWA_MUST_USE=: no warning.
    let checked = compile_ignoring("if (wa_credentials_new_default(&c) != WA_OK) return 1", &[]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let opted_out = compile_ignoring("wa_credentials_new_default(&c)", &["-DWA_MUST_USE="]);
    assert!(
        opted_out.status.success(),
        "{}",
        String::from_utf8_lossy(&opted_out.stderr)
    );
    // Calls that cannot fail are not marked.
    let infallible = compile_ignoring("wa_last_error_message(0, 0)", &[]);
    assert!(
        infallible.status.success(),
        "{}",
        String::from_utf8_lossy(&infallible.stderr)
    );
}

#[test]
fn c_program_sees_a_transient_error_when_the_metadata_server_is_down() {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = run_checked(
        &programs().join("token"),
        &["unreachable"],
        &[("GCE_METADATA_HOST", closed.to_string())],
    );
    assert_eq!(stdout_of(&out), "unreachable: ok\n");
}

/// What the emulator's check endpoint says a downscoped token carries: status and JSON body
/// (plain HTTP/1.1 over a socket: the harness needs no HTTP client for one GET).
fn carried_boundary(emu: &Emulator, token: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(emu.addr()).unwrap();
    write!(
        stream,
        "GET /emulator/v1/downscoped-boundary HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer \
         {token}\r\nConnection: close\r\n\r\n",
        emu.host()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, serde_json::from_str(body).unwrap_or_default())
}

#[test]
fn c_program_mints_downscoped_tokens_and_reads_the_regional_boundary() {
    let emu = Emulator::start_in_thread(EmulatorConfig::default()).unwrap();
    let out = run_checked(
        &programs().join("downscoped"),
        &[],
        &[
            ("GCE_METADATA_HOST", emu.host()),
            ("WA_TEST_EMULATOR_URL", emu.url()),
            ("GOOGLE_AUTH_TRUST_BOUNDARY_ENABLED", "true".into()),
            (
                "WORKLOAD_AUTH_IAM_CREDENTIALS_ENDPOINT",
                format!("{}/v1/", emu.url()),
            ),
        ],
    );
    let stdout = stdout_of(&out);
    let lines: Vec<(&str, &str)> = stdout
        .lines()
        .map(|line| line.split_once(' ').unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(
        kinds,
        [
            "server-side",
            "server-side",
            "server-side",
            "client-side",
            "client-side",
            "client-side",
            "x-allowed-locations"
        ],
        "{stdout}"
    );
    for (kind, token) in &lines[..6] {
        let (status, body) = carried_boundary(&emu, token);
        assert_eq!(status, 200, "{kind}: {body}");
        assert_eq!(body["kind"], *kind, "{body}");
        let rule = &body["accessBoundary"]["accessBoundaryRules"][0];
        assert_eq!(
            rule["availableResource"],
            "//storage.googleapis.com/projects/_/buckets/c-bucket"
        );
        assert_eq!(
            rule["availablePermissions"],
            serde_json::json!(["inRole:roles/storage.objectViewer"])
        );
        assert!(
            rule["availabilityCondition"]["expression"]
                .as_str()
                .unwrap()
                .contains("projects/_/buckets/c-bucket/objects/c-"),
            "{body}"
        );
    }
    // The emulator's answer for its service account, sent as is.
    assert_eq!(lines[6].1, "0xA30");
    // One exchange per kind (server-side cached; client-side minted from one intermediary),
    // one boundary lookup for all the header calls; bad boundaries sent nothing.
    assert_eq!(emu.requests(Endpoint::StsToken), 2);
    assert_eq!(emu.requests(Endpoint::AllowedLocations), 1);
}

/// Credentials directories for the server, the client and a third peer of one trust domain,
/// plus DER chains of the peer and of a workload of a CA nobody trusts.
struct Fixtures {
    _dir: tempfile::TempDir,
    server_dir: PathBuf,
    client_dir: PathBuf,
    peer_chain: PathBuf,
    foreign_chain: PathBuf,
}

fn fixtures() -> Fixtures {
    let dir = tempfile::tempdir().unwrap();
    let ca = TrustDomainCa::new(TRUST_DOMAIN).unwrap();
    let write = |name: &str, id: &str| {
        let writer = CredentialsDirWriter::new(dir.path().join(name));
        writer
            .write(&CredentialsContents::new(&ca.issue(id).unwrap(), &ca, []))
            .unwrap();
        writer.link_path()
    };
    let chain = |name: &str, ca: &TrustDomainCa, id: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        let svid = ca.issue(id).unwrap();
        let ders = svid.chain_der();
        assert_eq!(ders.len(), 2, "leaf and intermediate");
        std::fs::write(path.join("leaf.der"), &ders[0]).unwrap();
        std::fs::write(path.join("intermediate.der"), &ders[1]).unwrap();
        path
    };
    let stranger = TrustDomainCa::new(TRUST_DOMAIN).unwrap();
    Fixtures {
        server_dir: write("server", SERVER_ID),
        client_dir: write("client", CLIENT_ID),
        peer_chain: chain("peer", &ca, PEER_ID),
        foreign_chain: chain("foreign", &stranger, PEER_ID),
        _dir: dir,
    }
}

fn identity_env(f: &Fixtures) -> Vec<(&'static str, String)> {
    vec![
        ("WA_TEST_TRUST_DOMAIN", TRUST_DOMAIN.into()),
        ("WA_TEST_SERVER_DIR", f.server_dir.display().to_string()),
        ("WA_TEST_SERVER_ID", SERVER_ID.into()),
        ("WA_TEST_CLIENT_DIR", f.client_dir.display().to_string()),
        ("WA_TEST_CLIENT_ID", CLIENT_ID.into()),
    ]
}

#[test]
fn c_program_loads_an_identity_and_verifies_peer_chains() {
    let f = fixtures();
    let mut env = identity_env(&f);
    env.extend([
        (
            "WA_TEST_CREDENTIALS_DIR",
            f.client_dir.display().to_string(),
        ),
        ("WA_TEST_SPIFFE_ID", CLIENT_ID.into()),
        ("WA_TEST_PEER_DIR", f.peer_chain.display().to_string()),
        ("WA_TEST_PEER_ID", PEER_ID.into()),
        ("WA_TEST_FOREIGN_DIR", f.foreign_chain.display().to_string()),
    ]);
    // The client's identity in each credentials layout, under the layout's name.
    let layouts = f._dir.path().join("layouts");
    let ca = TrustDomainCa::new(TRUST_DOMAIN).unwrap();
    let svid = ca.issue(CLIENT_ID).unwrap();
    for layout in Layout::ALL {
        let writer = CredentialsDirWriter::new(layouts.join(format!("{layout}-parent")));
        writer
            .write(&CredentialsContents::with_layout(layout, &svid, &ca, []))
            .unwrap();
        std::os::unix::fs::symlink(writer.link_path(), layouts.join(layout.name())).unwrap();
    }
    env.push(("WA_TEST_LAYOUTS_DIR", layouts.display().to_string()));
    // A Workload API agent serving the client's directory, on its own runtime.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let socket = f._dir.path().join("agent.sock");
    let agent = runtime
        .block_on(
            workload_auth_workload_api::WorkloadApiServer::builder(std::sync::Arc::new(
                workload_auth_mtls::CredentialsDir::new(&f.client_dir),
            ))
            .socket(&socket)
            .bind(),
        )
        .unwrap();
    runtime.spawn(agent.serve_until(std::future::pending()));
    let address = format!("unix://{}", socket.display());
    env.extend([
        ("WA_TEST_AGENT", address.clone()),
        ("SPIFFE_ENDPOINT_SOCKET", address),
    ]);
    let out = run_checked(&programs().join("identity"), &[], &env);
    assert_eq!(stdout_of(&out), "identity: ok\n");
}

#[test]
fn two_c_programs_ends_complete_mtls_and_refuse_by_policy() {
    let f = fixtures();
    let out = run_checked(&programs().join("mtls"), &["local"], &identity_env(&f));
    assert_eq!(stdout_of(&out), "mtls local: ok\n");
}

#[test]
fn finding_5_c_td_policy_with_a_path_is_refused_not_widened() {
    let f = fixtures();
    let out = run_checked(&programs().join("mtls"), &["finding-5"], &identity_env(&f));
    assert_eq!(stdout_of(&out), "mtls finding-5: ok\n");
}

#[test]
fn finding_9_c_impossible_sizes_are_invalid_arguments() {
    let f = fixtures();
    let out = run_checked(&programs().join("mtls"), &["finding-9"], &identity_env(&f));
    assert_eq!(stdout_of(&out), "mtls finding-9: ok\n");
}

/// An mTLS server written with the Rust library (tokio): answers `<peer> said: <message>`.
async fn rust_echo_server(server_dir: &Path) -> (SocketAddr, tokio::task::JoinHandle<SpiffeId>) {
    let store = SvidStore::new(CredentialsDir::new(server_dir).load_blocking().unwrap());
    let allow = Authorizer::exact(SpiffeId::parse(CLIENT_ID).unwrap());
    let acceptor = MtlsAcceptor::from_config(&MtlsConfig::new(store, allow)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut stream, peer) = acceptor.accept(tcp).await.unwrap();
        let mut message = Vec::new();
        stream.read_to_end(&mut message).await.unwrap();
        let reply = format!("{peer} said: {}", String::from_utf8_lossy(&message));
        stream.write_all(reply.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        peer
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn c_client_talks_to_a_rust_server() {
    let f = fixtures();
    let (addr, server) = rust_echo_server(&f.server_dir).await;
    let program = programs().join("mtls");
    let env = identity_env(&f);
    let port = addr.port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_checked(&program, &["remote", port.as_str()], &env)
    })
    .await
    .unwrap();
    assert_eq!(stdout_of(&out), "mtls remote: ok\n");
    assert_eq!(server.await.unwrap().as_str(), CLIENT_ID);
}

#[test]
fn finding_1_c_program_refuses_hostile_files_and_other_types() {
    let emu = Emulator::start_in_thread(EmulatorConfig {
        identity: IdentityConfig {
            oauth_clients: vec![OAuthClient::new("c-client", "c-secret")],
            refresh_tokens: vec![RefreshTokenGrant::new("1//c-refresh", "c-client")],
            ..IdentityConfig::default()
        },
        ..EmulatorConfig::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("id_ed25519");
    std::fs::write(&secret, "not-a-real-private-key").unwrap();
    let hostile = dir.path().join("hostile.json");
    let json = serde_json::json!({
        "type": "external_account",
        "audience": "//iam.googleapis.com/x",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://attacker.example/v1/token",
        "credential_source": {
            "url": format!("{}/computeMetadata/v1/instance/service-accounts/default/token", emu.url()),
            "headers": {"Metadata-Flavor": "Google"},
        },
    });
    std::fs::write(&hostile, json.to_string()).unwrap();
    let out = run_checked(
        &programs().join("trust_boundary"),
        &[],
        &[
            ("WA_TEST_EMULATOR_URL", emu.url()),
            ("WA_TEST_SECRET_FILE", secret.display().to_string()),
            ("WA_TEST_HOSTILE_FILE", hostile.display().to_string()),
            ("GCE_METADATA_HOST", emu.host()),
            ("WORKLOAD_AUTH_ALLOWED_ENDPOINTS", "sts.corp.example".into()),
        ],
    );
    assert_eq!(stdout_of(&out), "trust boundary: ok\n");
    // The one token the program asked for with the right type; nothing else reached the
    // emulator (not the metadata token the hostile file names, not the metadata server).
    assert_eq!(emu.requests(Endpoint::OAuthToken), 1);
    assert_eq!(emu.total_requests(), 1);
}

#[test]
fn c_program_survives_bad_input() {
    let out = run_checked(&programs().join("bad_input"), &[], &[]);
    assert_eq!(stdout_of(&out), "bad input: ok\n");
}

#[test]
fn the_header_compiles_as_cpp17_and_links_statically() {
    require_tool("c++");
    let root = workspace_root();
    let lib = library_dir();
    let out = tempfile::tempdir().unwrap();
    let binary = out.path().join("header_check");
    let status = Command::new("c++")
        .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("tests/c/header_check.cpp"))
        .arg("-o")
        .arg(&binary)
        .arg(lib.join("libworkload_auth.a"))
        .args(["-lpthread", "-ldl", "-lm"])
        .status()
        .unwrap();
    assert!(status.success(), "c++ failed on tests/c/header_check.cpp");
    let run = Command::new(&binary).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stdout).starts_with("c++: ok"));
}

#[test]
fn cpp_program_uses_the_cpp_header() {
    require_tool("c++");
    let root = workspace_root();
    let lib = library_dir();
    let out = tempfile::tempdir().unwrap();
    let binary = out.path().join("cpp_api");
    let status = Command::new("c++")
        .args([
            "-std=c++17",
            "-g",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
        ])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("tests/c/cpp_api.cpp"))
        .arg("-o")
        .arg(&binary)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lworkload_auth", "-pthread"])
        .status()
        .unwrap();
    assert!(status.success(), "c++ failed on tests/c/cpp_api.cpp");
    let emu = Emulator::start_in_thread(EmulatorConfig {
        project_id: "cpp-project".into(),
        ..EmulatorConfig::default()
    })
    .unwrap();
    let delay = Duration::from_millis(1500);
    emu.inject(Endpoint::Token, Fault::Delay(delay), Some(1));
    let run = run_checked(
        &binary,
        &[],
        &[
            ("GCE_METADATA_HOST", emu.host()),
            ("WA_TEST_PROJECT", "cpp-project".into()),
            ("WA_TEST_DELAY_MS", delay.as_millis().to_string()),
        ],
    );
    assert_eq!(stdout_of(&run), "c++ api: ok\n");
    assert_eq!(emu.requests(Endpoint::Identity), 1);
}

/// The optimised library (the `dist` profile: release code, stripped), as installed: its mTLS
/// path reports no error under valgrind with only the suppression file installed with it. In
/// optimised builds ring's AES-GCM assembly makes memcheck report uninitialised values the debug
/// build does not show. Builds the dist library once (cargo keeps it up to date afterwards).
#[test]
fn release_build_mtls_is_clean_under_valgrind_with_the_installed_suppressions() {
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "workload-auth-c", "--profile", "dist"])
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(status.success(), "cargo build --profile dist failed");
    // target/<profile>/deps/<test> -> target/dist
    let exe = std::env::current_exe().unwrap();
    let lib = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("dist");
    assert!(
        lib.join("libworkload_auth_c.so").is_file(),
        "{}",
        lib.display()
    );
    let lib = installed_names(&lib);
    let out = tempfile::tempdir().unwrap();
    let binary = out.path().join("mtls");
    let status = Command::new("cc")
        .args([
            "-std=c11",
            "-D_DEFAULT_SOURCE",
            "-g",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
        ])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("tests/c/mtls.c"))
        .arg("-o")
        .arg(&binary)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lworkload_auth", "-pthread"])
        .status()
        .unwrap();
    assert!(status.success(), "cc failed on tests/c/mtls.c");
    let f = fixtures();
    let run = run_valgrind(
        &binary,
        &["local"],
        &identity_env(&f),
        &[root.join("bindings/c/valgrind.supp")],
    );
    assert_eq!(stdout_of(&run), "mtls local: ok\n");
}

#[test]
fn install_script_help_prints_usage() {
    let out = Command::new("bash")
        .arg(workspace_root().join("bindings/c/install.sh"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.starts_with("Usage: "), "{help}");
    for option in [
        "--prefix",
        "--libdir",
        "--profile",
        "--no-build",
        "--artifacts",
        "ldconfig",
    ] {
        assert!(
            help.contains(option),
            "--help does not mention {option}:\n{help}"
        );
    }
    // Usage, not the script's own lines.
    assert!(!help.contains("set -e") && !help.contains("esac"), "{help}");
}

#[test]
fn install_script_and_pkg_config_file_work() {
    require_tool("pkg-config");
    require_tool("cc");
    let root = workspace_root();
    let prefix = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(root.join("bindings/c/install.sh"))
        .arg("--prefix")
        .arg(prefix.path())
        .arg("--artifacts")
        .arg(built_dir())
        .arg("--no-build")
        .status()
        .unwrap();
    assert!(status.success(), "install.sh failed");
    // The real file, named by version; the SONAME link; the link the linker uses.
    let libdir = prefix.path().join("lib");
    let version = env!("CARGO_PKG_VERSION");
    let soname = format!("libworkload_auth.so.{}", env!("CARGO_PKG_VERSION_MAJOR"));
    let real = format!("libworkload_auth.so.{version}");
    assert!(libdir.join(&real).symlink_metadata().unwrap().is_file());
    assert_eq!(
        std::fs::read_link(libdir.join(&soname)).unwrap(),
        Path::new(&real)
    );
    assert_eq!(
        std::fs::read_link(libdir.join("libworkload_auth.so")).unwrap(),
        Path::new(&soname)
    );
    assert!(prefix.path().join("include/workload_auth.h").is_file());
    assert!(
        prefix
            .path()
            .join("share/workload_auth/valgrind.supp")
            .is_file()
    );
    let dynamic = Command::new("readelf")
        .arg("-d")
        .arg(libdir.join(&real))
        .output()
        .unwrap();
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    assert!(
        dynamic.contains(&format!("Library soname: [{soname}]")),
        "{dynamic}"
    );
    let pc_dir = prefix.path().join("lib/pkgconfig");
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "workload_auth"])
        .env("PKG_CONFIG_PATH", &pc_dir)
        .output()
        .unwrap();
    assert!(
        flags.status.success(),
        "{}",
        String::from_utf8_lossy(&flags.stderr)
    );
    let flags = String::from_utf8(flags.stdout).unwrap();
    assert!(flags.contains("-lworkload_auth"), "{flags}");
    assert!(flags.contains("-Wl,-rpath,"), "{flags}");
    let binary = prefix.path().join("bad_input");
    let status = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg(format!("-I{}", root.join("tests/c").display()))
        .arg(root.join("tests/c/bad_input.c"))
        .arg("-o")
        .arg(&binary)
        .args(flags.split_whitespace())
        .arg("-pthread")
        .status()
        .unwrap();
    assert!(status.success(), "cc with pkg-config flags failed");
    // No LD_LIBRARY_PATH: the pkg-config flags gave the program the library's directory.
    let run = Command::new(&binary)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let needed = Command::new("readelf")
        .arg("-d")
        .arg(&binary)
        .output()
        .unwrap();
    let needed = String::from_utf8_lossy(&needed.stdout);
    assert!(
        needed.contains(&format!("Shared library: [{soname}]")),
        "{needed}"
    );
    let version = Command::new("pkg-config")
        .args(["--modversion", "workload_auth"])
        .env("PKG_CONFIG_PATH", &pc_dir)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        env!("CARGO_PKG_VERSION")
    );
}

/// The CMake package install.sh writes: a user's project (`tests/c/cmake`) finds the library with
/// `find_package(workload_auth 0.1)`, links the shared and the static target, and its program
/// runs without `LD_LIBRARY_PATH`; a version the library cannot satisfy is refused.
#[test]
fn cmake_projects_find_the_installed_library() {
    require_tool("cmake");
    let root = workspace_root();
    let prefix = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(root.join("bindings/c/install.sh"))
        .arg("--prefix")
        .arg(prefix.path())
        .arg("--artifacts")
        .arg(built_dir())
        .arg("--no-build")
        .status()
        .unwrap();
    assert!(status.success(), "install.sh failed");
    let configure = |build: &Path, version: &str| {
        Command::new("cmake")
            .arg("-S")
            .arg(root.join("tests/c/cmake"))
            .arg("-B")
            .arg(build)
            .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.path().display()))
            .arg(format!("-DWA_FIND_VERSION={version}"))
            .output()
            .unwrap()
    };
    let build = tempfile::tempdir().unwrap();
    let out = configure(build.path(), "0.1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("cmake")
        .arg("--build")
        .arg(build.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for program in ["bad_input_shared", "bad_input_static"] {
        let run = Command::new(build.path().join(program))
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_eq!(stdout_of(&run), "bad input: ok\n");
    }
    // 0.x: another minor version is another ABI.
    let other = tempfile::tempdir().unwrap();
    let out = configure(other.path(), "0.2");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("workload_auth"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
