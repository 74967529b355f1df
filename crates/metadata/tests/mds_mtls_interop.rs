//! The metadata server over mTLS with peers nobody here wrote: curl and Python's `ssl` as clients
//! of the emulator (with the files it writes, verifying both of its names), and our client
//! against a Python `ssl` server that requires a client certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::start;
use workload_auth_core::{ErrorKind, RetryPolicy};
use workload_auth_emulator::EmulatorConfig;
use workload_auth_emulator::mds_mtls::{CLIENT_CERT_LIFETIME, MdsMtlsCa};
use workload_auth_metadata::{MdsMtlsMode, MetadataClient};

const METADATA_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254));

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wa-mds-interop-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn curl_speaks_mtls_to_the_emulator_with_the_written_files() {
    let emu = start(EmulatorConfig::default()).await;
    let dir = temp_dir("curl");
    emu.enable_mds_mtls(&dir).unwrap();
    let port = emu.addr().port();
    let curl = |with_cert: bool| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--fail", "--max-time", "10", "--noproxy", "*"])
            .arg("--cacert")
            .arg(dir.join("root.crt"))
            .args([
                "--resolve",
                &format!("metadata.google.internal:{port}:127.0.0.1"),
                "-H",
                "Metadata-Flavor: Google",
            ]);
        if with_cert {
            cmd.arg("-E").arg(dir.join("client.key"));
        }
        cmd.arg(format!(
            "https://metadata.google.internal:{port}/computeMetadata/v1/project/project-id"
        ));
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let out = curl(true).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        emu.config().project_id
    );
    assert_eq!(emu.mds_mtls_requests(), 1);

    // Without the client certificate the handshake is refused and nothing is served.
    let out = curl(false).await.unwrap();
    assert!(!out.status.success());
    assert_eq!(emu.mds_mtls_requests(), 1);
    assert_eq!(emu.plain_http_requests(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

const PY_CLIENT: &str = r#"
import socket, ssl, sys
port, root, client, name = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=root)
ctx.load_cert_chain(client)
with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as s:
    with ctx.wrap_socket(s, server_hostname=name) as t:
        t.sendall(b"GET /computeMetadata/v1/project/project-id HTTP/1.1\r\n"
                  b"Host: metadata.google.internal\r\nMetadata-Flavor: Google\r\n"
                  b"Connection: close\r\n\r\n")
        data = b""
        while True:
            chunk = t.recv(4096)
            if not chunk:
                break
            data += chunk
head, _, body = data.partition(b"\r\n\r\n")
print(head.split(b"\r\n")[0].decode())
print(body.decode())
"#;

fn python_client(port: u16, dir: &Path, name: &str) -> std::process::Output {
    Command::new("python3")
        .args(["-c", PY_CLIENT, &port.to_string()])
        .arg(dir.join("root.crt"))
        .arg(dir.join("client.key"))
        .arg(name)
        .output()
        .unwrap()
}

#[tokio::test]
async fn python_ssl_verifies_both_names_of_the_emulator() {
    let emu = start(EmulatorConfig::default()).await;
    let dir = temp_dir("pyclient");
    emu.enable_mds_mtls(&dir).unwrap();
    let port = emu.addr().port();
    for name in ["metadata.google.internal", "169.254.169.254"] {
        let d = dir.clone();
        let name_owned = name.to_owned();
        let out = tokio::task::spawn_blocking(move || python_client(port, &d, &name_owned))
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("HTTP/1.1 200"), "{name}: {stdout}");
        assert!(
            stdout.contains(&emu.config().project_id),
            "{name}: {stdout}"
        );
    }
    // Any other name fails Python's verification: the certificate is for those two only.
    let d = dir.clone();
    let out = tokio::task::spawn_blocking(move || python_client(port, &d, "localhost"))
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CERTIFICATE_VERIFY_FAILED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(emu.mds_mtls_requests(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

const PY_SERVER: &str = r#"
import socket, ssl, sys, threading
cert, key, ca = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_verify_locations(ca)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print(srv.getsockname()[1], flush=True)

def handle(conn):
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
    except Exception as e:
        print("handshake failed:", type(e).__name__, flush=True)
        conn.close()
        return
    subject = dict(x[0] for x in tls.getpeercert()["subject"])
    f = tls.makefile("rb")
    while True:
        line = f.readline()
        if not line:
            break
        path = line.split()[1].decode()
        while f.readline() not in (b"\r\n", b"\n", b""):
            pass
        if path.startswith("/computeMetadata/v1/project/project-id"):
            status, body = "200 OK", b"py-project"
        elif path == "/":
            status, body = "200 OK", b"computeMetadata/\n"
        else:
            status, body = "404 Not Found", b"not found"
        head = (f"HTTP/1.1 {status}\r\nMetadata-Flavor: Google\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        tls.sendall(head.encode() + body)
        print("served", path, "to", subject.get("commonName", "?"), flush=True)
    tls.close()

while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"#;

/// A Python `ssl` server presenting a certificate for `dns`/`ips` from `ca` and requiring a
/// client certificate from `ca`; killed on drop.
struct PyServer {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl PyServer {
    fn start(ca: &MdsMtlsCa, dir: &Path, dns: &[&str], ips: &[IpAddr]) -> Self {
        let (cert, key) = ca.issue_server(dns, ips).unwrap();
        std::fs::write(dir.join("server.crt"), cert).unwrap();
        std::fs::write(dir.join("server.key"), key.expose()).unwrap();
        let mut child = Command::new("python3")
            .args(["-u", "-c", PY_SERVER])
            .arg(dir.join("server.crt"))
            .arg(dir.join("server.key"))
            .arg(dir.join("root.crt"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let port = first.trim().parse().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(std::result::Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, port, lines }
    }

    fn next_line(&self) -> String {
        self.lines.recv_timeout(Duration::from_secs(10)).unwrap()
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn our_client(port: u16, mode: MdsMtlsMode, dir: &Path) -> MetadataClient {
    MetadataClient::builder()
        .host(format!("127.0.0.1:{port}"))
        .mtls_mode(mode)
        .mtls_dir(dir)
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn our_client_against_a_python_ssl_server_requiring_a_client_certificate() {
    let dir = temp_dir("pyserver");
    let ca = MdsMtlsCa::new().unwrap();
    ca.write_dir(&dir, &ca.issue_client(CLIENT_CERT_LIFETIME).unwrap())
        .unwrap();

    let server = PyServer::start(&ca, &dir, &["metadata.google.internal"], &[METADATA_IP]);
    // default mode: the ping (verified as 169.254.169.254), then data (as the DNS name).
    let client = our_client(server.port, MdsMtlsMode::Default, &dir);
    assert_eq!(client.project_id().await.unwrap(), "py-project");
    assert!(client.mds_transport().await.is_mtls());
    assert_eq!(
        server.next_line(),
        "served / to workload-auth emulator MDS client"
    );
    assert_eq!(
        server.next_line(),
        "served /computeMetadata/v1/project/project-id to workload-auth emulator MDS client"
    );
    let strict = our_client(server.port, MdsMtlsMode::Strict, &dir);
    assert_eq!(strict.project_id().await.unwrap(), "py-project");
    drop(server);

    // A server certificate for other names is refused, whatever address it answers on.
    let server = PyServer::start(
        &ca,
        &dir,
        &["localhost"],
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
    );
    let err = our_client(server.port, MdsMtlsMode::Strict, &dir)
        .project_id()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
    assert!(server.next_line().starts_with("handshake failed"));
    drop(server);

    // Without the IP name, the ping fails verification and default mode falls back.
    let server = PyServer::start(&ca, &dir, &["metadata.google.internal"], &[]);
    let client = our_client(server.port, MdsMtlsMode::Default, &dir);
    let transport = client.mds_transport().await;
    assert!(!transport.is_mtls(), "{transport}");
    assert!(transport.reason().contains("ping"), "{transport}");
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}
