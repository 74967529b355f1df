//! Proof with clients nobody here wrote: rust-spiffe's `spiffe-rustls` builds its TLS client from
//! an `X509Source` fed by our agent and completes mutual TLS with our server (the acceptor
//! `workload-auth mtls serve` runs, reading its own credentials directory), before and after the
//! client's directory rotates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use workload_auth_emulator::credentials_writer::{CredentialsContents, CredentialsDirWriter};
use workload_auth_mtls::{
    Authorizer, CredentialsDir, MtlsAcceptor, MtlsConfig, SpiffeId, SvidStore, WatchOptions,
    Watcher,
};

const SERVER_ID: &str = "spiffe://example.org/ns/prod/sa/backend";

#[tokio::test]
async fn spiffe_rustls_client_with_material_from_our_agent_handshakes_with_our_server() {
    let world = World::new();
    let client_first = world.rotate(); // the client workload's directory, served by our agent
    let agent = Agent::start(world.builder()).await;

    // The server workload: its own directory, our acceptor, clients of example.org allowed.
    let server_dir = CredentialsDirWriter::new(world.tmp.path().join("server-creds"));
    server_dir
        .write(&CredentialsContents::new(
            &world.local.issue(SERVER_ID).unwrap(),
            &world.local,
            [&world.federated],
        ))
        .unwrap();
    let dir = CredentialsDir::new(server_dir.link_path());
    let store = SvidStore::new(dir.load_blocking().unwrap());
    let _watcher = Watcher::spawn(store.clone(), Arc::new(dir), WatchOptions::default()).unwrap();
    let acceptor = MtlsAcceptor::from_config(&MtlsConfig::new(
        store,
        Authorizer::exact(SpiffeId::parse(ID).unwrap()),
    ))
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (peers_tx, mut peers) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let peers_tx = peers_tx.clone();
            tokio::spawn(async move {
                let (mut tls, peer) = acceptor.accept(tcp).await.unwrap();
                let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
                let mut buf = [0u8; 4];
                tls.read_exact(&mut buf).await.unwrap();
                tls.write_all(&buf).await.unwrap();
                tls.shutdown().await.ok();
                peers_tx.send((peer.to_string(), leaf)).unwrap();
            });
        }
    });

    // The client: rust-spiffe's X509Source on our agent, spiffe-rustls' client config.
    let source = spiffe::X509Source::builder()
        .endpoint(format!("unix://{}", agent.path.display()))
        .build()
        .await
        .unwrap();
    let config = spiffe_rustls::mtls_client(source.clone())
        .authorize(spiffe_rustls::authorizer::exact([SERVER_ID]).unwrap())
        .build()
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = || {
        let connector = connector.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from("example.org").unwrap();
            let mut tls = connector.connect(name, tcp).await.expect("mTLS handshake");
            tls.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
        }
    };

    handshake().await;
    let (peer, leaf) = peers.recv().await.unwrap();
    assert_eq!(peer, ID);
    assert_eq!(leaf, client_first.leaf_der());

    // The client's directory rotates; our agent pushes it; spiffe-rustls presents the new SVID.
    let mut updates = source.updated();
    let client_second = world.rotate();
    tokio::time::timeout(Duration::from_secs(10), updates.changed())
        .await
        .unwrap()
        .unwrap();
    handshake().await;
    let (peer, leaf) = peers.recv().await.unwrap();
    assert_eq!(peer, ID);
    assert_eq!(leaf, client_second.leaf_der());
    source.shutdown().await;
}
