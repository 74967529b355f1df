//! Mutual TLS over a blocking [`std::net::TcpStream`], for programs without an async runtime:
//! threads-and-sockets code, and the C and Python bindings.
//!
//! ```no_run
//! # fn run() -> workload_auth::Result<()> {
//! use workload_auth::blocking::MtlsClient;
//! use workload_auth::WorkloadIdentity;
//! use workload_auth::mtls::Authorizer;
//!
//! let identity = WorkloadIdentity::from_directory(None)?;
//! let allow = Authorizer::from_policies(["td:prod.example"])?;
//! let client = MtlsClient::new(&identity, allow)?;
//! let tcp = std::net::TcpStream::connect("10.0.0.7:8443").map_err(|e| {
//!     workload_auth::Error::new(workload_auth::ErrorKind::Transport, "connect").with_source(e)
//! })?;
//! let stream = client.connect(tcp)?;
//! stream.write_all(b"ping")?;
//! let mut buf = [0u8; 64];
//! let n = stream.read(&mut buf)?;
//! println!("{} says {:?}", stream.peer_spiffe_id(), &buf[..n]);
//! stream.close()?;
//! # Ok(()) }
//! ```
//!
//! A [`MtlsStream`] is full duplex and shared by reference: one thread may block in
//! [`MtlsStream::read`] while another calls [`MtlsStream::write_all`]. The TLS state sits behind a
//! mutex held only while records are encrypted or decrypted, never while waiting on the socket.
//! Timeouts are the socket's own ([`TcpStream::set_read_timeout`] through [`MtlsStream::tcp`]).

use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use workload_auth_core::{Error, ErrorKind, Result, Retry};
use workload_auth_mtls::{
    Authorizer, ServerName, SpiffeId, VerificationError, handshake_error, peer_spiffe_id,
};

use crate::WorkloadIdentity;

/// The most plaintext encrypted per lock of the TLS state (one TLS record's worth).
const CHUNK: usize = 16 * 1024;

/// Opens mutual-TLS connections over blocking sockets.
#[derive(Clone)]
pub struct MtlsClient {
    config: Arc<ClientConfig>,
}

impl MtlsClient {
    /// A client presenting `identity` (and following its rotations) that accepts servers
    /// `authorizer` allows.
    pub fn new(identity: &WorkloadIdentity, authorizer: Authorizer) -> Result<Self> {
        Ok(Self::from_config(Arc::new(
            identity.mtls(authorizer).client_config()?,
        )))
    }

    /// A client using a rustls config (e.g. from [`crate::mtls::MtlsConfig::client_config`]).
    pub fn from_config(config: Arc<ClientConfig>) -> Self {
        Self { config }
    }

    /// Completes the client side of the handshake over `tcp`, which must be connected and in
    /// blocking mode. The server was verified and authorized when this returns; with TLS 1.3 a
    /// server that refuses *our* certificate says so on the first read.
    pub fn connect(&self, tcp: TcpStream) -> Result<MtlsStream> {
        // SPIFFE peers are not named by DNS: an IP server name sends no SNI and is never checked.
        let ip = tcp
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let conn =
            ClientConnection::new(Arc::clone(&self.config), ServerName::IpAddress(ip.into()))
                .map_err(|e| {
                    Error::new(ErrorKind::Setup, "cannot start a TLS client").with_source(e)
                })?;
        MtlsStream::handshake(rustls::Connection::Client(conn), tcp)
    }

    /// Connects over TCP to `addr`, then [`MtlsClient::connect`].
    pub fn connect_addr(&self, addr: impl ToSocketAddrs) -> Result<MtlsStream> {
        let tcp = TcpStream::connect(addr).map_err(|e| {
            Error::new(ErrorKind::Transport, "cannot connect to the peer").with_source(e)
        })?;
        self.connect(tcp)
    }
}

impl fmt::Debug for MtlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MtlsClient")
    }
}

/// Accepts mutual-TLS connections over blocking sockets (client certificates required).
#[derive(Clone)]
pub struct MtlsServer {
    config: Arc<ServerConfig>,
}

impl MtlsServer {
    /// A server presenting `identity` (and following its rotations) that accepts clients
    /// `authorizer` allows.
    pub fn new(identity: &WorkloadIdentity, authorizer: Authorizer) -> Result<Self> {
        Ok(Self::from_config(Arc::new(
            identity.mtls(authorizer).server_config()?,
        )))
    }

    /// A server using a rustls config (e.g. from [`crate::mtls::MtlsConfig::server_config`]).
    pub fn from_config(config: Arc<ServerConfig>) -> Self {
        Self { config }
    }

    /// Completes the server side of the handshake over an accepted `tcp` (blocking mode). A
    /// refused client gives [`ErrorKind::Verification`] with the [`VerificationError`] as source.
    pub fn accept(&self, tcp: TcpStream) -> Result<MtlsStream> {
        let conn = ServerConnection::new(Arc::clone(&self.config)).map_err(|e| {
            Error::new(ErrorKind::Setup, "cannot start a TLS server").with_source(e)
        })?;
        MtlsStream::handshake(rustls::Connection::Server(conn), tcp)
    }
}

impl fmt::Debug for MtlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MtlsServer")
    }
}

/// An established mutual-TLS connection with a verified, authorized peer.
///
/// Every method takes `&self`: share it between a reading and a writing thread (`Arc`), or
/// use it from one. Reads are serialized with reads and writes with writes.
pub struct MtlsStream {
    tcp: TcpStream,
    tls: Mutex<rustls::Connection>,
    /// Held through a whole read, so ciphertext reaches the TLS state in socket order.
    recv: Mutex<RecvBuffer>,
    /// Held through a whole write, so records leave in the order they were sealed.
    send: Mutex<Vec<u8>>,
    peer: SpiffeId,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave rustls half-updated in a way we could fix;
    // the next operation reports whatever state rustls is in.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn socket_error(what: &str, e: io::Error) -> Error {
    let retry = match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
            Retry::Transient
        }
        _ => Retry::Permanent,
    };
    Error::new(ErrorKind::Transport, what.to_owned())
        .with_retry(retry)
        .with_source(e)
}

fn tls_error(e: rustls::Error) -> Error {
    handshake_error(io::Error::new(io::ErrorKind::InvalidData, e))
}

impl MtlsStream {
    fn handshake(mut tls: rustls::Connection, tcp: TcpStream) -> Result<Self> {
        let mut io = NoSigPipe(&tcp);
        while tls.is_handshaking() {
            tls.complete_io(&mut io).map_err(handshake_error)?;
        }
        while tls.wants_write() {
            tls.write_tls(&mut io)
                .map_err(|e| socket_error("TLS handshake failed", e))?;
        }
        let peer =
            peer_spiffe_id(&tls).ok_or_else(|| Error::from(VerificationError::NoCertificate))?;
        Ok(Self {
            tcp,
            tls: Mutex::new(tls),
            recv: Mutex::new(RecvBuffer {
                buf: vec![0; CHUNK],
                start: 0,
                end: 0,
            }),
            send: Mutex::new(Vec::with_capacity(CHUNK + 256)),
            peer,
        })
    }

    /// The peer's SPIFFE ID, verified against the bundle of its trust domain and authorized.
    pub fn peer_spiffe_id(&self) -> &SpiffeId {
        &self.peer
    }

    /// The socket, for timeouts and addresses. Reading or writing it directly corrupts the
    /// TLS stream.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Reads decrypted bytes into `buf`, blocking until at least one is available. `Ok(0)` means
    /// the peer closed the connection cleanly (TLS `close_notify`); a close without it is an
    /// error ([`ErrorKind::Transport`]: the data may have been truncated).
    pub fn read(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut raw = lock(&self.recv);
        loop {
            let wants_write = {
                let mut tls = lock(&self.tls);
                match tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Err(socket_error(
                            "the peer closed the connection without TLS close_notify",
                            e,
                        ));
                    }
                    Err(e) => return Err(socket_error("TLS read failed", e)),
                }
                // Records rustls already holds but has not opened (the handshake may stop at
                // its last message with application data behind it), then one piece of what the
                // socket gave: rustls refuses ciphertext while plaintext piles up, so the caller
                // reads what each piece made before the next goes in.
                let mut consumed = 0;
                if !raw.is_empty() {
                    let mut rest = raw.pending();
                    let before = rest.len();
                    let result = tls.read_tls(&mut rest);
                    consumed = before - rest.len();
                    raw.consume(consumed);
                    result.map_err(|e| socket_error("TLS read failed", e))?;
                }
                let opened = match tls.process_new_packets() {
                    Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
                    Err(e) => {
                        drop(tls);
                        // Best effort: tell the peer why (the alert rustls queued).
                        let _ = self.flush_pending();
                        return Err(tls_error(e));
                    }
                };
                let wants_write = tls.wants_write();
                if consumed == 0 && !opened {
                    if !raw.is_empty() {
                        return Err(Error::new(
                            ErrorKind::MalformedResponse,
                            "the peer's TLS records cannot be buffered",
                        ));
                    }
                    // Nothing new: wait on the socket below.
                    wants_write
                } else {
                    drop(tls);
                    if wants_write {
                        self.flush_pending()?;
                    }
                    continue;
                }
            };
            if wants_write {
                self.flush_pending()?;
            }
            // Wait for ciphertext without holding the TLS state, so writers are not blocked.
            match raw.fill(&self.tcp) {
                Ok(0) => {
                    // Records end-of-stream; the next `reader().read` says whether it was clean.
                    let _ = lock(&self.tls).read_tls(&mut io::empty());
                }
                Ok(_) => {}
                Err(e) => return Err(socket_error("reading from the peer failed", e)),
            }
        }
    }

    /// Encrypts and sends all of `data`.
    pub fn write_all(&self, data: &[u8]) -> Result<()> {
        let mut out = lock(&self.send);
        for chunk in data.chunks(CHUNK) {
            out.clear();
            {
                let mut tls = lock(&self.tls);
                tls.writer()
                    .write_all(chunk)
                    .map_err(|e| socket_error("TLS write failed", e))?;
                drain(&mut tls, &mut out)?;
            }
            (&self.tcp)
                .write_all(&out)
                .map_err(|e| socket_error("writing to the peer failed", e))?;
        }
        Ok(())
    }

    /// Sends TLS `close_notify` and shuts the socket down for writing; the peer's reads then end
    /// cleanly. A peer that is already gone is not an error. The socket itself is closed when the
    /// stream is dropped.
    pub fn close(&self) -> Result<()> {
        let mut out = lock(&self.send);
        out.clear();
        {
            let mut tls = lock(&self.tls);
            tls.send_close_notify();
            drain(&mut tls, &mut out)?;
        }
        let peer_gone = |e: &io::Error| {
            matches!(
                e.kind(),
                io::ErrorKind::NotConnected
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
            )
        };
        match (&self.tcp).write_all(&out) {
            Ok(()) => {}
            Err(e) if peer_gone(&e) => return Ok(()),
            Err(e) => return Err(socket_error("writing to the peer failed", e)),
        }
        match self.tcp.shutdown(std::net::Shutdown::Write) {
            Ok(()) => Ok(()),
            Err(e) if peer_gone(&e) => Ok(()),
            Err(e) => Err(socket_error("shutting the connection down failed", e)),
        }
    }

    /// Sends records rustls queued on its own (alerts, key updates).
    fn flush_pending(&self) -> Result<()> {
        let mut out = lock(&self.send);
        out.clear();
        drain(&mut lock(&self.tls), &mut out)?;
        if out.is_empty() {
            return Ok(());
        }
        (&self.tcp)
            .write_all(&out)
            .map_err(|e| socket_error("writing to the peer failed", e))
    }
}

/// The socket as rustls's handshake I/O, writing with `send(MSG_NOSIGNAL)` (std's `write`) rather
/// than `writev`, so a peer that vanished mid-handshake is an error, not a `SIGPIPE` that kills
/// a C program which did not ignore it.
struct NoSigPipe<'a>(&'a TcpStream);

impl io::Read for NoSigPipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl io::Write for NoSigPipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Ciphertext read from the socket and not yet given to rustls.
struct RecvBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RecvBuffer {
    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Reads what the socket has (blocking until something or end-of-stream).
    fn fill(&mut self, mut tcp: &TcpStream) -> io::Result<usize> {
        loop {
            match tcp.read(&mut self.buf) {
                Ok(n) => {
                    self.start = 0;
                    self.end = n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn drain(tls: &mut rustls::Connection, out: &mut Vec<u8>) -> Result<()> {
    while tls.wants_write() {
        tls.write_tls(out)
            .map_err(|e| socket_error("TLS write failed", e))?;
    }
    Ok(())
}

impl fmt::Debug for MtlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsStream")
            .field("peer", &self.peer.as_str())
            .field("local", &self.tcp.local_addr().ok())
            .field("remote", &self.tcp.peer_addr().ok())
            .finish()
    }
}
