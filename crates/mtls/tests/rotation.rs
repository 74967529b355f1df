//! Rotation: the watcher notices new generations of the credentials directory and swaps them in;
//! new handshakes present the new certificate, open connections keep working, and a bad generation
//! leaves the last good material in place.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::credentials_writer::{CredentialsContents, CredentialsDirWriter};
use workload_auth_mtls::*;

const SERVER: &str = "spiffe://prod.example/ns/backend/sa/api";
const CLIENT: &str = "spiffe://prod.example/ns/frontend/sa/web";

fn fast() -> WatchOptions {
    WatchOptions {
        poll_interval: Duration::from_millis(20),
        max_reload_interval: Duration::from_secs(600),
        retry_backoff: Duration::from_millis(20),
    }
}

async fn wait_for_generation(store: &SvidStore, at_least: u64) {
    let mut rx = store.subscribe();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|g| *g >= at_least))
        .await
        .expect("the watcher did not pick up the new generation in time")
        .unwrap();
}

async fn echo_once(stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin), msg: &[u8]) {
    stream.write_all(msg).await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, msg);
}

fn peer_leaf<IO>(stream: &tokio_rustls::client::TlsStream<IO>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_mid_run() {
    let tmp = TempDir::new("rotate");
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let writer = CredentialsDirWriter::new(tmp.path());
    let first = ca.issue(SERVER).unwrap();
    writer
        .write(&CredentialsContents::new(&first, &ca, []))
        .unwrap();

    let dir = CredentialsDir::new(writer.link_path());
    let server_store = SvidStore::new(dir.load_blocking().unwrap());
    let watcher = Watcher::spawn(server_store.clone(), Arc::new(dir), fast()).unwrap();
    let server = MtlsConfig::new(server_store.clone(), Authorizer::exact(id(CLIENT)));
    let client = MtlsConfig::new(
        store(&ca.issue(CLIENT).unwrap(), &[&ca]),
        Authorizer::exact(id(SERVER)),
    );
    let (addr, mut verdicts) = echo_server(&server, 3).await;
    let connector = MtlsConnector::from_config(&client).unwrap();

    let (mut open, _) = connector.connect(addr).await.unwrap();
    echo_once(&mut open, b"before").await;
    assert_eq!(peer_leaf(&open), first.leaf_der());
    verdicts.recv().await.unwrap().unwrap();

    // The node agent rotates.
    let second = ca.issue(SERVER).unwrap();
    writer
        .write(&CredentialsContents::new(&second, &ca, []))
        .unwrap();
    wait_for_generation(&server_store, 1).await;

    // The next handshake presents the new certificate...
    let (mut fresh, peer) = connector.connect(addr).await.unwrap();
    assert_eq!(peer, id(SERVER));
    assert_eq!(peer_leaf(&fresh), second.leaf_der());
    echo_once(&mut fresh, b"after").await;
    // ...and the connection opened before the rotation keeps working.
    echo_once(&mut open, b"still here").await;
    assert_eq!(server_store.status().failures, 0);
    assert_eq!(server_store.status().reloads, 1);
    drop(watcher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_generation_keeps_the_last_good_material() {
    let tmp = TempDir::new("badgen");
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let writer = CredentialsDirWriter::new(tmp.path());
    let good = ca.issue(SERVER).unwrap();
    writer
        .write(&CredentialsContents::new(&good, &ca, []))
        .unwrap();
    let dir = CredentialsDir::new(writer.link_path()).with_retries(1, Duration::ZERO);
    let store = SvidStore::new(dir.load_blocking().unwrap());
    let _watcher = Watcher::spawn(store.clone(), Arc::new(dir), fast()).unwrap();

    let mut broken = CredentialsContents::new(&ca.issue(SERVER).unwrap(), &ca, []);
    broken.certificates_pem = Some("-----BEGIN CERTIFICATE-----\nAAAA".into());
    writer.write(&broken).unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while store.status().failures == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let status = store.status();
    let why = status.last_error.unwrap();
    assert!(
        matches!(CredentialError::find(&why), Some(CredentialError::Pem(_))),
        "{why}"
    );
    assert!(
        why.endpoint().unwrap().ends_with("certificates.pem"),
        "{why}"
    );
    assert_eq!(store.current().svid().leaf().as_ref(), good.leaf_der());
    assert_eq!(store.generation(), 0);

    // Handshakes keep working with the last good material.
    let server = MtlsConfig::new(store.clone(), Authorizer::any());
    let client = MtlsConfig::new(
        common::store(&ca.issue(CLIENT).unwrap(), &[&ca]),
        Authorizer::any(),
    );
    let (addr, _v) = echo_server(&server, 1).await;
    let (s, _) = MtlsConnector::from_config(&client)
        .unwrap()
        .connect(addr)
        .await
        .unwrap();
    assert_eq!(peer_leaf(&s), good.leaf_der());

    // A good generation afterwards is picked up and clears the error.
    let next = ca.issue(SERVER).unwrap();
    writer
        .write(&CredentialsContents::new(&next, &ca, []))
        .unwrap();
    wait_for_generation(&store, 1).await;
    assert_eq!(store.current().svid().leaf().as_ref(), next.leaf_der());
    assert!(store.status().last_error.is_none());
}

#[tokio::test]
async fn periodic_reread_without_any_visible_change() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let source = Arc::new(MemorySource::new(material(
        &ca.issue(SERVER).unwrap(),
        &[&ca],
    )));
    let store = SvidStore::new(source.get());
    // A source with no cheap change check is only re-read on the timer.
    #[derive(Debug)]
    struct NoMarker(Arc<MemorySource>);
    impl SvidSource for NoMarker {
        fn load(&self) -> LoadFuture<'_> {
            self.0.load()
        }
        fn describe(&self) -> String {
            "no marker".into()
        }
    }
    let options = WatchOptions {
        poll_interval: Duration::from_millis(10),
        max_reload_interval: Duration::from_millis(100),
        retry_backoff: Duration::from_millis(10),
    };
    let _w = Watcher::spawn(store.clone(), Arc::new(NoMarker(source.clone())), options).unwrap();
    let next = ca.issue(SERVER).unwrap();
    source.set(material(&next, &[&ca]));
    wait_for_generation(&store, 1).await;
    assert_eq!(store.current().svid().leaf().as_ref(), next.leaf_der());
}

#[tokio::test]
async fn dropping_the_watcher_stops_it() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let source = Arc::new(MemorySource::new(material(
        &ca.issue(SERVER).unwrap(),
        &[&ca],
    )));
    let store = SvidStore::new(source.get());
    let watcher = Watcher::spawn(store.clone(), source.clone(), fast()).unwrap();
    source.set(material(&ca.issue(SERVER).unwrap(), &[&ca]));
    wait_for_generation(&store, 1).await;
    drop(watcher);
    tokio::time::sleep(Duration::from_millis(50)).await;
    source.set(material(&ca.issue(SERVER).unwrap(), &[&ca]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.generation(), 1, "a dropped watcher must not reload");
    // The task released its clone of the source.
    assert_eq!(Arc::strong_count(&source), 1);
}

#[test]
fn watching_outside_a_runtime_is_an_error_not_a_panic() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let source = Arc::new(MemorySource::new(material(
        &ca.issue(SERVER).unwrap(),
        &[&ca],
    )));
    let store = SvidStore::new(source.get());
    let err = Watcher::spawn(store, source, WatchOptions::default()).unwrap_err();
    assert_eq!(err.kind(), workload_auth_core::ErrorKind::InvalidArgument);
}

/// The emulator rotates on a timer while a client keeps connecting: no handshake fails, and more
/// than one server certificate is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_rotation_with_no_failed_handshake() {
    let tmp = TempDir::new("timed");
    let ca = Arc::new(TrustDomainCa::new("prod.example").unwrap());
    let writer = CredentialsDirWriter::new(tmp.path());
    writer
        .write(&CredentialsContents::new(
            &ca.issue(SERVER).unwrap(),
            &ca,
            [],
        ))
        .unwrap();
    let dir = CredentialsDir::new(writer.link_path());
    let server_store = SvidStore::new(dir.load_blocking().unwrap());
    let _watcher = Watcher::spawn(server_store.clone(), Arc::new(dir), fast()).unwrap();
    let rotation = {
        let ca = ca.clone();
        writer
            .clone()
            .rotate_every(Duration::from_millis(150), move || {
                Ok(CredentialsContents::new(&ca.issue(SERVER)?, &ca, []))
            })
            .unwrap()
    };
    let server = MtlsConfig::new(server_store.clone(), Authorizer::exact(id(CLIENT)));
    let client = MtlsConfig::new(
        store(&ca.issue(CLIENT).unwrap(), &[&ca]),
        Authorizer::exact(id(SERVER)),
    );
    let (addr, _v) = echo_server(&server, 40).await;
    let connector = MtlsConnector::from_config(&client).unwrap();
    let mut leaves = std::collections::HashSet::new();
    for i in 0..40 {
        let (mut s, peer) = connector.connect(addr).await.unwrap();
        assert_eq!(peer, id(SERVER));
        echo_once(&mut s, format!("msg {i}").as_bytes()).await;
        leaves.insert(peer_leaf(&s));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(rotation.written() >= 3, "{}", rotation.written());
    assert_eq!(rotation.failed(), 0);
    assert!(
        leaves.len() >= 2,
        "saw {} server certificates",
        leaves.len()
    );
    assert_eq!(server_store.status().failures, 0);
}
