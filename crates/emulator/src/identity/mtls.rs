//! The emulator's endpoints over mutual TLS, as `sts.mtls.googleapis.com` serves X.509 workload
//! identity federation: TLS 1.3, a client certificate required and verified against given roots.
//!
//! Requests arriving here carry the client's leaf certificate (base64 DER) in the
//! [`MTLS_CLIENT_CERT_HEADER`] header (any such header a client sends is dropped first), so the
//! STS can check that an `mtls` subject token names the certificate of the connection.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rcgen::SanType;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use workload_auth_core::{Error, ErrorKind, Result};

use crate::http_server::{self, ReadError};
use crate::router::{self, ConnectionAction};
use crate::state::State;

/// The header that carries the client certificate of a mutual TLS connection to the handlers.
pub const MTLS_CLIENT_CERT_HEADER: &str = "x-emulator-mtls-client-certificate";

/// A running mutual-TLS listener. Dropping it stops it.
pub struct MtlsListener {
    addr: SocketAddr,
    server_root_der: Vec<u8>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl fmt::Debug for MtlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsListener")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MtlsListener {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The root certificate (DER) of the listener's server certificate, which is valid for
    /// `127.0.0.1` and `localhost`: what a client must trust.
    pub fn server_root_der(&self) -> &[u8] {
        &self.server_root_der
    }
}

impl Drop for MtlsListener {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}

fn tls_error(what: &str, e: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("emulator mTLS: {what}: {e}"),
    )
}

/// A throwaway root and a server certificate for `127.0.0.1` and `localhost`.
fn server_identity() -> Result<(
    Vec<u8>,
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
)> {
    let sans = vec![
        SanType::IpAddress(Ipv4Addr::LOCALHOST.into()),
        SanType::DnsName("localhost".try_into().map_err(|e| tls_error("SAN", e))?),
    ];
    let (root_cert, _, leaf_cert, key) = crate::mds_mtls::root_and_server(
        "workload-auth emulator TLS root",
        "workload-auth emulator",
        sans,
    )
    .map_err(|(what, e)| tls_error(what, e))?;
    Ok((
        root_cert.der().to_vec(),
        vec![leaf_cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    ))
}

/// Starts serving `state`'s endpoints over mutual TLS on a free loopback port.
pub(crate) async fn start(state: Arc<State>, client_roots: &[Vec<u8>]) -> Result<MtlsListener> {
    let (server_root_der, chain, key) = server_identity()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for root in client_roots {
        roots
            .add(CertificateDer::from(root.clone()))
            .map_err(|e| tls_error("client root", e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .map_err(|e| tls_error("client verifier", e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("protocol versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_error("server certificate", e))?;
    listen(state, config, server_root_der, "emulator mTLS").await
}

/// Starts serving `state`'s endpoints over TLS (1.2 or 1.3, no client certificate) on a free
/// loopback port.
pub(crate) async fn start_server_auth(state: Arc<State>) -> Result<MtlsListener> {
    let (server_root_der, chain, key) = server_identity()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| tls_error("server certificate", e))?;
    listen(state, config, server_root_der, "emulator TLS").await
}

/// Serves `state` with `config` on a free loopback port; `label` starts the error messages.
async fn listen(
    state: Arc<State>,
    config: rustls::ServerConfig,
    server_root_der: Vec<u8>,
    label: &str,
) -> Result<MtlsListener> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("{label}: cannot listen")).with_source(e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::new(ErrorKind::Io, format!("{label}: no address")).with_source(e))?;
    let (shutdown, signal) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, acceptor, state, signal));
    Ok(MtlsListener {
        addr,
        server_root_der,
        shutdown,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<State>,
    mut signal: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = signal.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
            let Ok(Ok(mut tls)) = handshake.await else {
                return;
            };
            let client_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|leaf| base64::engine::general_purpose::STANDARD.encode(leaf.as_ref()));
            serve(&mut tls, &state, client_cert).await;
            let _ = tls.shutdown().await;
        });
    }
}

async fn serve<S>(stream: &mut S, state: &State, client_cert: Option<String>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let limits = state.config().limits.clone();
    let mut buf = Vec::new();
    loop {
        let (response, framing, close) =
            match http_server::read_request(stream, &mut buf, &limits).await {
                Ok(mut request) => {
                    request
                        .headers
                        .retain(|(name, _)| name != MTLS_CLIENT_CERT_HEADER);
                    if let Some(cert) = &client_cert {
                        request
                            .headers
                            .push((MTLS_CLIENT_CERT_HEADER.to_owned(), cert.clone()));
                    }
                    match router::respond(state, &request).await {
                        ConnectionAction::Reset => return,
                        ConnectionAction::Send(response, framing) => {
                            let close =
                                !request.keep_alive() || framing == http_server::Framing::Truncated;
                            (response, framing, close)
                        }
                    }
                }
                Err(ReadError::Closed) => return,
                Err(ReadError::Reject(response)) => (response, http_server::Framing::Full, true),
            };
        let write = http_server::write_response(stream, &response, framing, close);
        if !matches!(
            tokio::time::timeout(limits.write_timeout, write).await,
            Ok(Ok(()))
        ) || close
        {
            return;
        }
    }
}
