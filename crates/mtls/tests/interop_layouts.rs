//! Each credential layout against real peers: Python's `ssl` (OpenSSL underneath) reads the very
//! files the emulator's writer laid out (the node agent's pair, a combined file with the key last,
//! the SPIFFE filesystem delivery's key-first file and trust bundle file) while our side loads the
//! same layout through `CredentialsDir`, in both directions; and the `openssl` command reads the
//! same certificate from a directory whose key is hidden.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::credentials_writer::{
    CredentialsContents, CredentialsDirWriter, Layout,
};
use workload_auth_mtls::*;

const TD: &str = "prod.example";
const SERVER: &str = "spiffe://prod.example/ns/backend/sa/api";
const CLIENT: &str = "spiffe://prod.example/ns/frontend/sa/web";
const KEYED: [Layout; 3] = [Layout::Gke, Layout::Combined, Layout::SpiffeFs];

const PY_CLIENT: &str = r#"
import socket, ssl, sys
port, cert, key, root = int(sys.argv[1]), sys.argv[2], sys.argv[3] or None, sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.check_hostname = False  # SPIFFE peers are named by URI SAN, not DNS
ctx.load_verify_locations(cafile=root)
ctx.load_cert_chain(certfile=cert, keyfile=key)
with socket.create_connection(("127.0.0.1", port)) as sock:
    with ctx.wrap_socket(sock) as tls:
        uris = [v for k, v in tls.getpeercert().get("subjectAltName", ()) if k == "URI"]
        tls.sendall(b"hi")
        print(uris[0], tls.recv(200).decode(), flush=True)
"#;

const PY_SERVER: &str = r#"
import socket, ssl, sys
cert, key, root = sys.argv[1], sys.argv[2] or None, sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(certfile=cert, keyfile=key)
ctx.load_verify_locations(cafile=root)
ctx.verify_mode = ssl.CERT_REQUIRED
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
try:
    with ctx.wrap_socket(conn, server_side=True) as tls:
        uris = [v for k, v in tls.getpeercert().get("subjectAltName", ()) if k == "URI"]
        data = tls.recv(100)
        tls.sendall(b"python saw " + uris[0].encode() + b" saying " + data)
        print("ok", uris[0], flush=True)
except ssl.SSLError as e:
    print("refused", e.reason, flush=True)
"#;

/// The files a peer outside this library would be pointed at for `layout` in `dir`:
/// (certificate file, key file if separate, root file).
fn layout_files(layout: Layout, dir: &Path) -> (PathBuf, Option<PathBuf>, PathBuf) {
    match layout {
        Layout::Gke | Layout::NoKey => (
            dir.join(CERTIFICATES_FILE),
            Some(dir.join(PRIVATE_KEY_FILE)),
            dir.join(CA_CERTIFICATES_FILE),
        ),
        Layout::Combined => (
            dir.join(COMBINED_FILE),
            None,
            dir.join(CA_CERTIFICATES_FILE),
        ),
        _ => (
            dir.join(SPIFFE_CREDENTIAL_BUNDLE_FILE),
            None,
            dir.join(format!("{TD}{SPIFFE_TRUST_BUNDLE_SUFFIX}")),
        ),
    }
}

/// Writes `spiffe_id`'s credentials in `layout` under `parent`; returns the directory.
fn write_layout(parent: &Path, layout: Layout, ca: &TrustDomainCa, spiffe_id: &str) -> PathBuf {
    let writer = CredentialsDirWriter::new(parent);
    let svid = ca.issue(spiffe_id).unwrap();
    writer
        .write(&CredentialsContents::with_layout(layout, &svid, ca, []))
        .unwrap();
    writer.link_path()
}

fn load(dir: &Path, layout: Layout) -> SvidStore {
    let m = CredentialsDir::new(dir).load_blocking().unwrap();
    assert_eq!(m.layout().map(|l| l.name()), Some(layout.name()));
    SvidStore::new(m)
}

#[tokio::test]
async fn python_ssl_client_from_each_layout_against_our_server_from_the_same_layout() {
    let ca = TrustDomainCa::new(TD).unwrap();
    for layout in KEYED {
        let tmp = TempDir::new(&format!("py-{layout}"));
        let srv_dir = write_layout(&tmp.path().join("srv"), layout, &ca, SERVER);
        let cli_dir = write_layout(&tmp.path().join("cli"), layout, &ca, CLIENT);
        let server = MtlsConfig::new(load(&srv_dir, layout), Authorizer::exact(id(CLIENT)));
        let acceptor = MtlsAcceptor::from_config(&server).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (mut s, peer) = acceptor.accept(tcp).await?;
            let mut buf = [0u8; 2];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(format!("you are {peer}").as_bytes())
                .await
                .unwrap();
            s.shutdown().await.unwrap();
            Ok::<_, workload_auth_core::Error>(peer)
        });
        let (cert, key, root) = layout_files(layout, &cli_dir);
        let key = key.map(|k| k.display().to_string()).unwrap_or_default();
        let out = Command::new("python3")
            .kill_on_drop(true)
            .arg("-c")
            .arg(PY_CLIENT)
            .arg(port.to_string())
            .arg(&cert)
            .arg(&key)
            .arg(&root)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(20), out)
            .await
            .unwrap()
            .unwrap();
        assert!(
            out.status.success(),
            "{layout}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{SERVER} you are {CLIENT}"),
            "{layout}"
        );
        assert_eq!(task.await.unwrap().unwrap(), id(CLIENT), "{layout}");
    }
}

/// Python's `ssl` loads the whole chain from the layout's certificate file
/// (`load_cert_chain`), the key from the same file when it is combined, whichever comes first.
/// (The `openssl s_server` command cannot: `-cert` reads the first certificate only, and
/// `-cert_chain` over the same file would send the leaf twice.)
#[tokio::test]
async fn our_client_from_each_layout_against_a_python_ssl_server_from_the_same_layout() {
    let ca = TrustDomainCa::new(TD).unwrap();
    for layout in KEYED {
        let tmp = TempDir::new(&format!("pysrv-{layout}"));
        let srv_dir = write_layout(&tmp.path().join("srv"), layout, &ca, SERVER);
        let cli_dir = write_layout(&tmp.path().join("cli"), layout, &ca, CLIENT);
        let (cert, key, root) = layout_files(layout, &srv_dir);
        let key = key.map(|k| k.display().to_string()).unwrap_or_default();
        let mut child = Command::new("python3")
            .kill_on_drop(true)
            .arg("-c")
            .arg(PY_SERVER)
            .arg(&cert)
            .arg(&key)
            .arg(&root)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port: u16 = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap_or_else(|| panic!("{layout}: the python server did not start"))
            .parse()
            .unwrap();

        let client = MtlsConfig::new(load(&cli_dir, layout), Authorizer::exact(id(SERVER)));
        let (mut stream, peer) = MtlsConnector::from_config(&client)
            .unwrap()
            .connect(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("{layout}: {e}"));
        assert_eq!(peer, id(SERVER), "{layout}");
        stream.write_all(b"hello").await.unwrap();
        let expected = format!("python saw {CLIENT} saying hello");
        let mut reply = vec![0u8; expected.len()];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&reply), expected, "{layout}");
        let verdict = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(verdict, format!("ok {CLIENT}"), "{layout}");
    }
}

/// Without its key the certificate is still the workload's: the leaf we load is the one the
/// `openssl` command reads from the same file (compared by the SHA-256 fingerprint that names a
/// certificate a token is bound to), while a handshake is refused before anything is sent.
#[tokio::test]
async fn a_hidden_key_directory_names_the_certificate_openssl_reads_and_refuses_handshakes() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let tmp = TempDir::new("ossl-no-key");
    let dir = write_layout(tmp.path(), Layout::NoKey, &ca, CLIENT);
    let store = load(&dir, Layout::NoKey);
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(dir.join(CERTIFICATES_FILE))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let theirs: String = text
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_ascii_lowercase();
    let digest = ring::digest::digest(&ring::digest::SHA256, store.current().svid().leaf());
    let ours: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(ours, theirs);
    assert_eq!(store.current().svid().spiffe_id(), &id(CLIENT));

    // A listener that would see any connection attempt.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mtls = MtlsConfig::new(store, Authorizer::any());
    let err = MtlsConnector::from_config(&mtls).unwrap_err();
    assert_eq!(
        CredentialError::find(&err),
        Some(&CredentialError::PrivateKeyHidden)
    );
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "nothing dialled {addr}");
}
