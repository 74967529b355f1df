//! The running emulator: listener, connections, and the handle tests hold.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use workload_auth_core::{Error, ErrorKind, Result};

use crate::config::EmulatorConfig;
use crate::endpoint::Endpoint;
use crate::fault::Fault;
use crate::http_server::{self, Framing, ReadError};
use crate::mds_mtls::Transport;
use crate::record::RecordedRequest;
use crate::router::{self, ConnectionAction};
use crate::state::State;
use crate::tokens::IssuedToken;

/// How long in-flight requests may run on after shutdown before they are cut off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How long a closing connection's unread input is drained, so the client reads the last answer
/// instead of a reset.
const LINGER: Duration = Duration::from_millis(500);

/// A running emulator. Dropping it stops the server.
///
/// The emulator runs on the tokio runtime that started it ([`Emulator::start`]) or on a thread of
/// its own ([`Emulator::start_in_thread`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> workload_auth_core::Result<()> {
/// use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint, Fault};
///
/// let emu = Emulator::start(EmulatorConfig::default()).await?;
/// // Point a client at it with GCE_METADATA_HOST=emu.host(), or pass emu.url() explicitly.
/// emu.inject(Endpoint::Token, Fault::Status(503), Some(2));
/// assert_eq!(emu.requests(Endpoint::Token), 0);
/// emu.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct Emulator {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    /// The accept loop, when it runs on the caller's runtime.
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Starts the emulator on `listen` (what `workload-auth emulator --listen ADDR` runs).
///
/// Same as [`Emulator::start_on`]: the server runs until the returned handle is dropped or
/// [`Emulator::shutdown`] is awaited.
pub async fn serve(listen: SocketAddr, config: EmulatorConfig) -> Result<Emulator> {
    Emulator::start_on(listen, config).await
}

impl Emulator {
    /// Starts the emulator on `127.0.0.1` at a free port, on the current tokio runtime.
    pub async fn start(config: EmulatorConfig) -> Result<Self> {
        Self::start_on(loopback_any_port(), config).await
    }

    /// Starts the emulator on `listen`, on the current tokio runtime. It accepts connections as
    /// soon as this returns.
    pub async fn start_on(listen: SocketAddr, config: EmulatorConfig) -> Result<Self> {
        let state = Arc::new(State::new(config)?);
        let listener = bind(listen)?;
        let addr = local_addr(&listener, listen)?;
        let listener = TcpListener::from_std(listener).map_err(|e| bind_error(listen, e))?;
        let (shutdown, signal) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), signal));
        Ok(Self {
            addr,
            state,
            shutdown,
            task: Some(task),
        })
    }

    /// Starts the emulator on `127.0.0.1` at a free port, on a thread of its own with its own
    /// runtime: for tests and programs that have no tokio runtime (blocking clients, FFI tests).
    pub fn start_in_thread(config: EmulatorConfig) -> Result<Self> {
        let listen = loopback_any_port();
        let state = Arc::new(State::new(config)?);
        let listener = bind(listen)?;
        let addr = local_addr(&listener, listen)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| bind_error(listen, e))?;
        let (shutdown, signal) = watch::channel(false);
        let thread_state = Arc::clone(&state);
        std::thread::Builder::new()
            .name("workload-auth-emulator".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => accept_loop(listener, thread_state, signal).await,
                        Err(e) => tracing::error!("emulator listener failed: {e}"),
                    }
                });
            })
            .map_err(|e| bind_error(listen, e))?;
        Ok(Self {
            addr,
            state,
            shutdown,
            task: None,
        })
    }

    /// The address the emulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`: the value for `GCE_METADATA_HOST` (and google-auth's `GCE_METADATA_IP`).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/computeMetadata/v1/`.
    pub fn metadata_url(&self) -> String {
        format!("http://{}/computeMetadata/v1/", self.addr)
    }

    /// How many requests were attributed to `endpoint` (refused and faulted ones included).
    pub fn requests(&self, endpoint: Endpoint) -> u64 {
        self.state.counters.get(endpoint)
    }

    /// How many requests were parsed, over all endpoints. Requests too malformed to parse are
    /// not counted.
    pub fn total_requests(&self) -> u64 {
        self.state.counters.total()
    }

    /// Forgets every request seen so far: counters go to zero and the recent-request log empties.
    pub fn reset_counters(&self) {
        self.state.counters.reset();
        self.state.log.clear();
    }

    /// The most recent requests (up to 256), oldest first.
    pub fn recent_requests(&self) -> Vec<RecordedRequest> {
        self.state.log.snapshot()
    }

    /// Makes the next `times` requests to `endpoint` suffer `fault` (`None`: every request until
    /// [`Emulator::clear_faults`]). Faults injected on one endpoint apply one after the other.
    pub fn inject(&self, endpoint: Endpoint, fault: Fault, times: Option<u64>) {
        self.state.faults.inject(endpoint, fault, times);
    }

    /// Makes every request to `endpoints` suffer a fault drawn from `mix` (after any counted fault
    /// [`Emulator::inject`] queued), until [`Emulator::clear_faults`]. Replaces any earlier mix.
    pub fn inject_mix(&self, endpoints: &[Endpoint], mix: crate::FaultMix) {
        self.state.faults.set_mix(endpoints, mix);
    }

    /// How many requests drew each choice of the current mix, in the mix's order.
    pub fn mix_counts(&self) -> Vec<(Option<Fault>, u64)> {
        self.state.faults.mix_counts()
    }

    /// Removes every pending fault (and the mix).
    pub fn clear_faults(&self) {
        self.state.faults.clear(None);
    }

    /// Removes the pending faults of one endpoint.
    pub fn clear_faults_for(&self, endpoint: Endpoint) {
        self.state.faults.clear(Some(endpoint));
    }

    /// A snapshot of the configuration.
    pub fn config(&self) -> EmulatorConfig {
        EmulatorConfig::clone(&self.state.config())
    }

    /// Changes the configuration; requests that arrive afterwards see the change (limits apply to
    /// connections accepted afterwards). Concurrent updates may overwrite each other.
    pub fn update_config(&self, update: impl FnOnce(&mut EmulatorConfig)) {
        self.state.update_config(update);
    }

    /// What the emulator recorded about an access token it issued, if it did and the token has not
    /// expired.
    pub fn issued_token(&self, token: &str) -> Option<IssuedToken> {
        self.state.tokens.lookup(token)
    }

    /// The key id (`kid`) of the ID-token signing key.
    pub fn id_token_key_id(&self) -> &str {
        self.state.signer.kid()
    }

    /// The ID-token signing key's public half, as PKCS#1 `RSAPublicKey` DER (what
    /// `ring::signature::UnparsedPublicKey` with `RSA_PKCS1_2048_8192_SHA256` takes).
    pub fn id_token_public_key_der(&self) -> &[u8] {
        self.state.signer.public_key_der()
    }

    /// The JWKS served at `/oauth2/v3/certs`, as JSON text.
    pub fn id_token_jwks(&self) -> String {
        self.state.signer.jwks().to_string()
    }

    /// Serves this emulator's endpoints also over TLS without client certificates, on another
    /// loopback port: `https://` token endpoints, as Google's are, for clients that must speak
    /// TLS (through a proxy's `CONNECT` tunnel, say). Trust [`crate::MtlsListener::server_root_der`].
    pub async fn start_tls(&self) -> Result<crate::MtlsListener> {
        crate::identity::mtls::start_server_auth(Arc::clone(&self.state)).await
    }

    /// Serves this emulator's endpoints also over mutual TLS (TLS 1.3, a client certificate
    /// chaining to one of `client_roots` (DER) required), on another loopback port: the
    /// `sts.mtls.googleapis.com` of X.509 workload identity federation.
    pub async fn start_mtls(&self, client_roots: &[Vec<u8>]) -> Result<crate::MtlsListener> {
        crate::identity::mtls::start(Arc::clone(&self.state), client_roots).await
    }

    /// Serves the metadata endpoints also over mutual TLS on this emulator's port (plain HTTP
    /// keeps working, as on a Shielded VM), with a new [`MdsMtlsCa`](crate::mds_mtls::MdsMtlsCa):
    /// a client certificate valid for 48 hours is issued and written with the CA into `dir` as
    /// `root.crt` and `client.key`. Returns the CA, to issue further certificates (rotation,
    /// expiry) and write them with [`MdsMtlsCa::write_dir`](crate::mds_mtls::MdsMtlsCa::write_dir).
    pub fn enable_mds_mtls(&self, dir: &std::path::Path) -> Result<crate::mds_mtls::MdsMtlsCa> {
        let ca = crate::mds_mtls::MdsMtlsCa::new()?;
        let client = ca.issue_client(crate::mds_mtls::CLIENT_CERT_LIFETIME)?;
        ca.write_dir(dir, &client)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config()?));
        self.state.mds_mtls.acceptor.store(Some(Arc::new(acceptor)));
        Ok(ca)
    }

    /// Serves every endpoint also over server-authenticated TLS on this emulator's port (plain
    /// HTTP keeps working), with a certificate for `localhost` and `127.0.0.1` from a fresh CA,
    /// no client certificate asked: the emulator's Security Token Service or OAuth endpoint as
    /// clients really reach them, over HTTPS (`https://127.0.0.1:PORT/...`). Returns the CA
    /// certificate (DER) to trust. Replaces [`Emulator::enable_mds_mtls`]'s TLS, and the reverse.
    pub fn enable_tls(&self) -> Result<rustls::pki_types::CertificateDer<'static>> {
        let (root, config) = crate::mds_mtls::https_server()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        self.state.mds_mtls.acceptor.store(Some(Arc::new(acceptor)));
        Ok(root)
    }

    /// How many requests arrived over plain HTTP on this emulator's port.
    pub fn plain_http_requests(&self) -> u64 {
        self.state
            .mds_mtls
            .plain_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many requests arrived over mutual TLS (with a client certificate) on this
    /// emulator's port.
    pub fn mds_mtls_requests(&self) -> u64 {
        self.state
            .mds_mtls
            .mtls_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many requests arrived over TLS without a client certificate on this emulator's port
    /// (HTTPS after [`Emulator::enable_tls`]).
    pub fn https_requests(&self) -> u64 {
        self.state
            .mds_mtls
            .tls_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The client certificate (DER) of each mTLS connection to the metadata endpoints, oldest
    /// first (the last 64).
    pub fn mds_mtls_client_certs(&self) -> Vec<Vec<u8>> {
        self.state.mds_mtls.client_certs()
    }

    /// Stops accepting, lets in-flight requests finish (for up to two seconds), closes every
    /// connection and returns when the server is gone.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Emulator {
    /// Stops the server as [`Emulator::shutdown`] does, without waiting for it: the listener closes
    /// at once and in-flight requests finish in the background (if the runtime still runs).
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

fn loopback_any_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// Drops the header that names a mutual-TLS client certificate: on this plain listener any such
/// header is the client's invention.
fn without_client_certificate(mut request: http_server::Request) -> http_server::Request {
    request
        .headers
        .retain(|(name, _)| name != crate::identity::MTLS_CLIENT_CERT_HEADER);
    request
}

fn bind(listen: SocketAddr) -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(listen).map_err(|e| bind_error(listen, e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| bind_error(listen, e))?;
    Ok(listener)
}

fn local_addr(listener: &std::net::TcpListener, listen: SocketAddr) -> Result<SocketAddr> {
    listener.local_addr().map_err(|e| bind_error(listen, e))
}

fn bind_error(listen: SocketAddr, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, "the emulator cannot listen")
        .with_endpoint(listen.to_string())
        .with_hint("choose another address or free the port")
        .with_source(e)
}

/// Resolves once shutdown is requested (or the handle is gone).
async fn stopping(signal: &mut watch::Receiver<bool>) {
    let _ = signal.wait_for(|stop| *stop).await;
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut signal: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(state.config().limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            () = stopping(&mut signal) => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let (stream, _peer) = tokio::select! {
            () = stopping(&mut signal) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!("emulator accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let signal = signal.clone();
        connections.spawn(async move {
            let _permit = permit;
            serve_tcp(stream, &state, signal).await;
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, drain).await;
    // Dropping the set aborts what is still running.
}

async fn serve_tcp(mut stream: TcpStream, state: &State, signal: watch::Receiver<bool>) {
    if let Some(acceptor) = state.mds_mtls.acceptor.load_full()
        && starts_tls(&stream, state).await
    {
        serve_tls(stream, &acceptor, state, signal).await;
        return;
    }
    if serve_connection(&mut stream, state, signal, Transport::Plain).await == Ending::Reset {
        // A zero linger turns the close into a reset (RST) instead of an orderly FIN.
        let _ = stream.set_zero_linger();
    }
}

/// Whether the client's first byte starts a TLS handshake (a handshake record, 0x16), waiting
/// for it no longer than for a request's head.
async fn starts_tls(stream: &TcpStream, state: &State) -> bool {
    let mut first = [0u8; 1];
    let wait = state.config().limits.header_timeout;
    matches!(
        tokio::time::timeout(wait, stream.peek(&mut first)).await,
        Ok(Ok(1)) if first[0] == 0x16
    )
}

/// Serves one connection over mutual TLS (the handshake refuses clients without a certificate
/// from the MDS CA).
async fn serve_tls(
    stream: TcpStream,
    acceptor: &tokio_rustls::TlsAcceptor,
    state: &State,
    signal: watch::Receiver<bool>,
) {
    let wait = state.config().limits.header_timeout;
    let Ok(Ok(mut tls)) = tokio::time::timeout(wait, acceptor.accept(stream)).await else {
        return;
    };
    let transport = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        Some(leaf) => {
            state.mds_mtls.saw_client_cert(leaf.as_ref());
            Transport::MutualTls
        }
        None => Transport::Tls,
    };
    serve_connection(&mut tls, state, signal, transport).await;
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    Closed,
    /// The connection must be reset, not closed.
    Reset,
}

/// Serves requests on one connection until it closes; generic so TLS streams can be served too.
pub(crate) async fn serve_connection<S>(
    stream: &mut S,
    state: &State,
    mut signal: watch::Receiver<bool>,
    transport: Transport,
) -> Ending
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = state.config().limits.clone();
    let mut buf = Vec::new();
    loop {
        let read = tokio::select! {
            () = stopping(&mut signal) => return Ending::Closed,
            read = http_server::read_request(stream, &mut buf, &limits) => read,
        };
        let read = read.map(without_client_certificate);
        if read.is_ok() {
            state.mds_mtls.count(transport);
        }
        let (response, framing, close) = match read {
            Ok(request) => match router::respond(state, &request).await {
                ConnectionAction::Reset => return Ending::Reset,
                ConnectionAction::Send(response, framing) => {
                    let close =
                        !request.keep_alive() || framing == Framing::Truncated || *signal.borrow();
                    (response, framing, close)
                }
            },
            Err(ReadError::Closed) => return Ending::Closed,
            Err(ReadError::Reject(response)) => (response, Framing::Full, true),
        };
        let write = http_server::write_response(stream, &response, framing, close);
        if !matches!(
            tokio::time::timeout(limits.write_timeout, write).await,
            Ok(Ok(()))
        ) {
            return Ending::Closed;
        }
        if close {
            close_gracefully(stream).await;
            return Ending::Closed;
        }
    }
}

/// Sends FIN, then reads and discards what the client still sends for a moment: closing with
/// unread input would reset the connection and could destroy the answer just written.
async fn close_gracefully<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let _ = stream.shutdown().await;
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
