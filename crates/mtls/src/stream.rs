//! tokio-rustls helpers: connect and accept, returning the stream and the verified peer identity.

use std::fmt;
use std::io;
use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};
use workload_auth_core::{Error, ErrorKind, Result, Retry};

use crate::error::VerificationError;
use crate::spiffe_id::SpiffeId;
use crate::store::SvidStore;
use crate::tls::{MtlsConfig, check_private_key, peer_spiffe_id};

/// Opens mutual-TLS connections.
#[derive(Clone)]
pub struct MtlsConnector {
    connector: TlsConnector,
    /// The store of the config it was made from, checked for a hidden key before each handshake.
    store: Option<SvidStore>,
}

impl MtlsConnector {
    /// A connector using `config` (built by [`MtlsConfig::client_config`]).
    pub fn new(config: Arc<ClientConfig>) -> Self {
        Self {
            connector: TlsConnector::from(config),
            store: None,
        }
    }

    /// A connector from an [`MtlsConfig`]. Each handshake first checks that the SVID current
    /// then still has its private key (see [`MtlsConfig::check_private_key`]).
    pub fn from_config(config: &MtlsConfig) -> Result<Self> {
        let mut connector = Self::new(Arc::new(config.client_config()?));
        connector.store = Some(config.store().clone());
        Ok(connector)
    }

    /// Connects over TCP to `addr` and completes the handshake.
    ///
    /// With TLS 1.3 the server checks our certificate after our side of the handshake is done, so a
    /// refusal by the server shows up on the first read rather than here.
    pub async fn connect(
        &self,
        addr: impl ToSocketAddrs,
    ) -> Result<(client::TlsStream<TcpStream>, SpiffeId)> {
        // Refused before a packet is sent, not after the peer was dialled.
        if let Some(store) = &self.store {
            check_private_key(store)?;
        }
        let tcp = TcpStream::connect(addr).await.map_err(|e| {
            Error::new(ErrorKind::Transport, "cannot connect to the peer").with_source(e)
        })?;
        let peer = tcp.peer_addr().map_err(|e| {
            Error::new(ErrorKind::Transport, "connection lost before the handshake").with_source(e)
        })?;
        // SPIFFE peers are not named by DNS; an IP server name also means no SNI is sent.
        self.connect_stream(tcp, ServerName::IpAddress(peer.ip().into()))
            .await
    }

    /// Completes the handshake over an already connected stream.
    pub async fn connect_stream<IO>(
        &self,
        io: IO,
        server_name: ServerName<'static>,
    ) -> Result<(client::TlsStream<IO>, SpiffeId)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        if let Some(store) = &self.store {
            check_private_key(store)?;
        }
        let stream = self
            .connector
            .connect(server_name, io)
            .await
            .map_err(handshake_error)?;
        let id = peer_spiffe_id(stream.get_ref().1).ok_or_else(missing_peer_id)?;
        Ok((stream, id))
    }
}

impl fmt::Debug for MtlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MtlsConnector")
    }
}

/// Accepts mutual-TLS connections.
#[derive(Clone)]
pub struct MtlsAcceptor {
    acceptor: TlsAcceptor,
    /// The store of the config it was made from, checked for a hidden key before each handshake.
    store: Option<SvidStore>,
}

impl MtlsAcceptor {
    /// An acceptor using `config` (built by [`MtlsConfig::server_config`]).
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            acceptor: TlsAcceptor::from(config),
            store: None,
        }
    }

    /// An acceptor from an [`MtlsConfig`]. Each handshake first checks that the SVID current
    /// then still has its private key (see [`MtlsConfig::check_private_key`]).
    pub fn from_config(config: &MtlsConfig) -> Result<Self> {
        let mut acceptor = Self::new(Arc::new(config.server_config()?));
        acceptor.store = Some(config.store().clone());
        Ok(acceptor)
    }

    /// Completes the server side of the handshake. On a refused client the error carries the
    /// [`VerificationError`] (find it with [`VerificationError::find`]).
    pub async fn accept<IO>(&self, io: IO) -> Result<(server::TlsStream<IO>, SpiffeId)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        if let Some(store) = &self.store {
            check_private_key(store)?;
        }
        let stream = self.acceptor.accept(io).await.map_err(handshake_error)?;
        let id = peer_spiffe_id(stream.get_ref().1).ok_or_else(missing_peer_id)?;
        Ok((stream, id))
    }
}

impl fmt::Debug for MtlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MtlsAcceptor")
    }
}

fn missing_peer_id() -> Error {
    // Unreachable with this crate's verifiers; guards configs built by hand.
    Error::from(VerificationError::NoCertificate)
}

/// Turns a handshake failure into the workspace error, keeping the verification reason.
pub fn handshake_error(e: io::Error) -> Error {
    if let Some(reason) = VerificationError::find(&e) {
        return Error::from(reason.clone());
    }
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::NoCertificatesPresented) => {
            Error::from(VerificationError::NoCertificate)
        }
        Some(rustls::Error::AlertReceived(alert)) => Error::new(
            ErrorKind::Rejected,
            format!("the peer refused the handshake (TLS alert {alert:?})"),
        )
        .with_hint("the peer may not trust our trust domain or may not authorize our SPIFFE ID"),
        Some(other) => {
            Error::new(ErrorKind::Verification, "TLS handshake failed").with_source(other.clone())
        }
        None => Error::new(ErrorKind::Transport, "TLS handshake failed")
            .with_retry(Retry::Transient)
            .with_source(e),
    }
}
