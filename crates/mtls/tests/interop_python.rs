//! Interop with Python's `ssl` module (OpenSSL underneath, its own verification and API), both
//! directions, client certificates required, emulator-issued SVIDs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_mtls::*;

const SERVER: &str = "spiffe://prod.example/ns/backend/sa/api";
const CLIENT: &str = "spiffe://prod.example/ns/frontend/sa/web";

const PY_SERVER: &str = r#"
import socket, ssl, sys
chain, key, root = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(certfile=chain, keyfile=key)
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

const PY_CLIENT: &str = r#"
import socket, ssl, sys
port, chain, key, root = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.check_hostname = False  # SPIFFE peers are named by URI SAN, not DNS
ctx.load_verify_locations(cafile=root)
ctx.load_cert_chain(certfile=chain, keyfile=key)
with socket.create_connection(("127.0.0.1", port)) as sock:
    with ctx.wrap_socket(sock) as tls:
        uris = [v for k, v in tls.getpeercert().get("subjectAltName", ()) if k == "URI"]
        tls.sendall(b"hi from python")
        print(uris[0], tls.recv(200).decode(), flush=True)
"#;

fn python() -> Command {
    let mut c = Command::new("python3");
    c.kill_on_drop(true);
    c
}

#[tokio::test]
async fn our_client_against_a_python_server() {
    let tmp = TempDir::new("py-server");
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let srv = ca.issue(SERVER).unwrap();
    let chain = write(tmp.path(), "chain.pem", srv.chain_pem());
    let key = write(tmp.path(), "key.pem", srv.private_key_pem().expose());
    let root = write(tmp.path(), "root.pem", ca.root_pem());
    let mut child = python()
        .arg("-c")
        .arg(PY_SERVER)
        .args([&chain, &key, &root])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let client = MtlsConfig::new(
        store(&ca.issue(CLIENT).unwrap(), &[&ca]),
        Authorizer::exact(id(SERVER)),
    );
    let (mut s, peer) = MtlsConnector::from_config(&client)
        .unwrap()
        .connect(("127.0.0.1", port))
        .await
        .unwrap();
    assert_eq!(peer, id(SERVER));
    s.write_all(b"hello").await.unwrap();
    // Python closes without close_notify; read what arrives before the end.
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n @ 1..) = s.read(&mut buf).await {
        reply.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        String::from_utf8_lossy(&reply),
        format!("python saw {CLIENT} saying hello")
    );
    let verdict = lines.next_line().await.unwrap().unwrap();
    assert_eq!(verdict, format!("ok {CLIENT}"));
}

#[tokio::test]
async fn python_client_against_our_server() {
    let tmp = TempDir::new("py-client");
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let cli = ca.issue(CLIENT).unwrap();
    let chain = write(tmp.path(), "chain.pem", cli.chain_pem());
    let key = write(tmp.path(), "key.pem", cli.private_key_pem().expose());
    let root = write(tmp.path(), "root.pem", ca.root_pem());
    let server = MtlsConfig::new(
        store(&ca.issue(SERVER).unwrap(), &[&ca]),
        Authorizer::path_prefix(id("spiffe://prod.example/ns/frontend")),
    );
    let acceptor = MtlsAcceptor::from_config(&server).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut s, peer) = acceptor.accept(tcp).await?;
        let mut buf = vec![0u8; 14];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(format!("you are {peer}").as_bytes())
            .await
            .unwrap();
        s.shutdown().await.unwrap();
        Ok::<_, workload_auth_core::Error>(peer)
    });
    let out = python()
        .arg("-c")
        .arg(PY_CLIENT)
        .arg(port.to_string())
        .args([&chain, &key, &root])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{SERVER} you are {CLIENT}")
    );
    assert_eq!(task.await.unwrap().unwrap(), id(CLIENT));
}

#[tokio::test]
async fn python_client_from_an_impostor_ca_is_refused() {
    let tmp = TempDir::new("py-impostor");
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let impostor = TrustDomainCa::new("prod.example").unwrap();
    let cli = impostor.issue(CLIENT).unwrap();
    let chain = write(tmp.path(), "chain.pem", cli.chain_pem());
    let key = write(tmp.path(), "key.pem", cli.private_key_pem().expose());
    let root = write(tmp.path(), "root.pem", ca.root_pem());
    let server = MtlsConfig::new(store(&ca.issue(SERVER).unwrap(), &[&ca]), Authorizer::any());
    let acceptor = MtlsAcceptor::from_config(&server).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.map(|(_, peer)| peer)
    });
    let out = python()
        .arg("-c")
        .arg(PY_CLIENT)
        .arg(port.to_string())
        .args([&chain, &key, &root])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success(), "python should see the refusal");
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(
        reason(&err),
        VerificationError::UntrustedChain("prod.example".into())
    );
}
