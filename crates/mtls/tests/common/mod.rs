//! Shared test helpers: emulator-issued SVIDs, temp directories, loopback handshakes.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use workload_auth_emulator::ca::{IssuedSvid, TrustDomainCa};
use workload_auth_mtls::*;

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "wa-mtls-{tag}-{}-{}",
            std::process::id(),
            fastrand_u64()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish()
}

pub fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

pub fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).unwrap()
}

pub fn chain_of(svid: &IssuedSvid) -> Vec<CertificateDer<'static>> {
    svid.chain_der()
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect()
}

pub fn key_of(svid: &IssuedSvid) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(svid.pkcs8_der().to_vec()))
}

pub fn bundle(ca: &TrustDomainCa) -> TrustBundle {
    TrustBundle::new(
        td(ca.trust_domain()),
        vec![CertificateDer::from(ca.root_der().to_vec())],
    )
    .unwrap()
}

pub fn bundles(cas: &[&TrustDomainCa]) -> TrustBundleSet {
    let mut set = TrustBundleSet::new();
    for ca in cas {
        set.add(bundle(ca)).unwrap();
    }
    set
}

/// Material for `svid`, trusting the given CAs.
pub fn material(svid: &IssuedSvid, trusted: &[&TrustDomainCa]) -> X509Material {
    let x = X509Svid::from_der(chain_of(svid), key_of(svid)).unwrap();
    X509Material::new(x, bundles(trusted))
}

pub fn store(svid: &IssuedSvid, trusted: &[&TrustDomainCa]) -> SvidStore {
    SvidStore::new(material(svid, trusted))
}

/// An echo server on 127.0.0.1 accepting `n` connections; each result (peer or error) is sent back.
pub async fn echo_server(
    config: &MtlsConfig,
    n: usize,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<workload_auth_core::Result<SpiffeId>>,
) {
    let acceptor = MtlsAcceptor::from_config(config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for _ in 0..n {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok((mut stream, peer)) => {
                        let _ = tx.send(Ok(peer));
                        let mut buf = [0u8; 1024];
                        loop {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if stream.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// A client config presenting an arbitrary (possibly invalid) chain, verifying the server as a
/// SPIFFE peer that `server_trust` vouches for. This is the "attacker's client".
pub fn raw_client_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    server_trust: TrustBundleSet,
) -> rustls::ClientConfig {
    let verifier = SpiffeServerCertVerifier::new(SpiffeVerifier::with_bundles(
        server_trust,
        Authorizer::any(),
    ));
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)
        .unwrap()
}

/// A client config presenting no certificate at all.
pub fn no_cert_client_config(server_trust: TrustBundleSet) -> rustls::ClientConfig {
    let verifier = SpiffeServerCertVerifier::new(SpiffeVerifier::with_bundles(
        server_trust,
        Authorizer::any(),
    ));
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth()
}

/// Connects with `client` to a fresh server built from `server`; returns the server's verdict.
pub async fn server_verdict(
    server: &MtlsConfig,
    client: rustls::ClientConfig,
) -> workload_auth_core::Result<SpiffeId> {
    let (addr, mut rx) = echo_server(server, 1).await;
    let connector = MtlsConnector::new(Arc::new(client));
    // The client's own result does not matter here: the server decides.
    if let Ok((mut stream, _)) = connector.connect(addr).await {
        let _ = stream.write_all(b"ping").await;
        let mut buf = [0u8; 4];
        let _ = stream.read_exact(&mut buf).await;
    }
    rx.recv().await.unwrap()
}

/// The verification reason inside an error, or a panic naming the error.
pub fn reason(e: &workload_auth_core::Error) -> VerificationError {
    VerificationError::find(e)
        .cloned()
        .unwrap_or_else(|| panic!("no verification reason in {e}"))
}

/// Writes `s` to a file and returns its path.
pub fn write(dir: &Path, name: &str, s: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, s).unwrap();
    p
}
