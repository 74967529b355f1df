//! Mutual TLS over blocking sockets (`workload_auth::blocking`), against the async (tokio-rustls)
//! side of the library and against itself: echo, full duplex from two threads, large transfers,
//! clean and unclean closes, and refusals by either side.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

use workload_auth::blocking::{MtlsClient, MtlsServer, MtlsStream};
use workload_auth::mtls::Authorizer;
use workload_auth::mtls::VerificationError;
use workload_auth::{ErrorKind, WorkloadIdentity};
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::credentials_writer::{CredentialsContents, CredentialsDirWriter};

const SERVER: &str = "spiffe://blocking.test/ns/prod/sa/server";
const CLIENT: &str = "spiffe://blocking.test/ns/prod/sa/client";

struct Identities {
    _dir: tempfile::TempDir,
    server: WorkloadIdentity,
    client: WorkloadIdentity,
}

fn identities() -> Identities {
    let dir = tempfile::tempdir().unwrap();
    let ca = TrustDomainCa::new("blocking.test").unwrap();
    let load = |name: &str, id: &str| {
        let writer = CredentialsDirWriter::new(dir.path().join(name));
        writer
            .write(&CredentialsContents::new(&ca.issue(id).unwrap(), &ca, []))
            .unwrap();
        WorkloadIdentity::from_directory(Some(&writer.link_path())).unwrap()
    };
    Identities {
        server: load("server", SERVER),
        client: load("client", CLIENT),
        _dir: dir,
    }
}

/// A server thread that accepts one connection and echoes until the client closes.
fn echo_server(server: MtlsServer) -> (u16, thread::JoinHandle<workload_auth::Result<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let stream = server.accept(tcp)?;
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            stream.write_all(&buf[..n])?;
        }
        stream.close()?;
        Ok(stream.peer_spiffe_id().to_string())
    });
    (port, handle)
}

fn read_exactly(stream: &MtlsStream, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = stream.read(&mut out[got..]).unwrap();
        assert!(n > 0, "the peer closed after {got} of {len} bytes");
        got += n;
    }
    out
}

#[test]
fn echo_and_full_duplex_between_blocking_ends() {
    let ids = identities();
    let server =
        MtlsServer::new(&ids.server, Authorizer::from_policies([CLIENT]).unwrap()).unwrap();
    let client = MtlsClient::new(
        &ids.client,
        Authorizer::from_policies(["td:blocking.test"]).unwrap(),
    )
    .unwrap();
    let (port, server_thread) = echo_server(server);

    let stream = Arc::new(client.connect_addr(("127.0.0.1", port)).unwrap());
    assert_eq!(stream.peer_spiffe_id().as_str(), SERVER);
    stream.write_all(b"ping").unwrap();
    assert_eq!(read_exactly(&stream, 4), b"ping");

    // One thread reads the echoes while this one writes 1 MiB: neither may block the other.
    let sent: Vec<u8> = (0..1024 * 1024).map(|i| (i * 7 + 3) as u8).collect();
    let reader = {
        let stream = Arc::clone(&stream);
        let len = sent.len();
        thread::spawn(move || read_exactly(&stream, len))
    };
    for chunk in sent.chunks(10_000) {
        stream.write_all(chunk).unwrap();
    }
    assert!(reader.join().unwrap() == sent, "echoed bytes differ");

    stream.close().unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(stream.read(&mut byte).unwrap(), 0, "clean close after ours");
    assert_eq!(server_thread.join().unwrap().unwrap(), CLIENT);
}

#[test]
fn a_server_refused_by_the_client_policy_fails_the_connect() {
    let ids = identities();
    let server = MtlsServer::new(&ids.server, Authorizer::from_policies(["any"]).unwrap()).unwrap();
    let client = MtlsClient::new(
        &ids.client,
        Authorizer::from_policies(["spiffe://blocking.test/ns/prod/sa/other"]).unwrap(),
    )
    .unwrap();
    let (port, server_thread) = echo_server(server);
    let err = client.connect_addr(("127.0.0.1", port)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Verification, "{err}");
    assert!(matches!(
        VerificationError::find(&err),
        Some(VerificationError::Unauthorized { .. })
    ));
    assert!(server_thread.join().unwrap().is_err());
}

#[test]
fn a_client_refused_by_the_server_policy_learns_it_on_read() {
    let ids = identities();
    let server = MtlsServer::new(
        &ids.server,
        Authorizer::from_policies(["prefix:spiffe://blocking.test/ns/admin"]).unwrap(),
    )
    .unwrap();
    let client = MtlsClient::new(&ids.client, Authorizer::from_policies(["any"]).unwrap()).unwrap();
    let (port, server_thread) = echo_server(server);
    let stream = client.connect_addr(("127.0.0.1", port)).unwrap();
    let server_err = server_thread.join().unwrap().unwrap_err();
    assert_eq!(server_err.kind(), ErrorKind::Verification, "{server_err}");
    assert!(server_err.to_string().contains(CLIENT), "{server_err}");
    let mut byte = [0u8; 1];
    let err = stream.read(&mut byte).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
}

#[test]
fn a_close_without_close_notify_is_an_error_not_an_end() {
    let ids = identities();
    let server = MtlsServer::new(&ids.server, Authorizer::from_policies(["any"]).unwrap()).unwrap();
    let client = MtlsClient::new(&ids.client, Authorizer::from_policies(["any"]).unwrap()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server_thread = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let stream = server.accept(tcp).unwrap();
        stream.write_all(b"partial").unwrap();
        // Dropped without close(): the TCP connection ends with no close_notify.
    });
    let stream = client
        .connect(TcpStream::connect(("127.0.0.1", port)).unwrap())
        .unwrap();
    server_thread.join().unwrap();
    assert_eq!(read_exactly(&stream, 7), b"partial");
    let mut byte = [0u8; 1];
    let err = stream.read(&mut byte).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
    assert!(err.to_string().contains("close_notify"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocking_client_talks_to_the_async_acceptor() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ids = identities();
    let acceptor = ids
        .server
        .acceptor(Authorizer::from_policies([CLIENT]).unwrap())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut stream, peer) = acceptor.accept(tcp).await.unwrap();
        let mut message = Vec::new();
        stream.read_to_end(&mut message).await.unwrap();
        stream.write_all(&message).await.unwrap();
        stream.shutdown().await.unwrap();
        peer.to_string()
    });
    let client =
        MtlsClient::new(&ids.client, Authorizer::from_policies([SERVER]).unwrap()).unwrap();
    let echoed = tokio::task::spawn_blocking(move || {
        let stream = client.connect_addr(("127.0.0.1", port)).unwrap();
        stream.write_all(b"from a blocking client").unwrap();
        stream.close().unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        all
    })
    .await
    .unwrap();
    assert_eq!(echoed, b"from a blocking client");
    assert_eq!(server.await.unwrap(), CLIENT);
}

#[test]
fn policies_must_be_valid_and_not_empty() {
    let none: [&str; 0] = [];
    assert_eq!(
        Authorizer::from_policies(none).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    for bad in ["td:", "prefix:http://x", "spiffe://", "not a policy"] {
        let err = Authorizer::from_policies([bad]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}");
        assert!(err.to_string().contains(bad), "{err}");
    }
}
