//! The HTTP-client glue the credential crates share: the reqwest client they build (rustls
//! configuration supplied by the caller, time limits, redirects never followed, the proxy the
//! caller chose), the body reader that refuses an answer as soon as it grows past a limit and
//! zeroes it on drop, and the mapping of reqwest's errors to transient
//! [`ErrorKind::Transport`] errors that say what failed without quoting the request.
//!
//! It lives here, behind the `http-client` feature, rather than in a crate of its own because
//! both users (`workload-auth-adc` and `workload-auth-metadata`) already depend on this crate and
//! it is a few hundred lines; without the feature this crate pulls in no HTTP client. What is
//! specific to one client stays there: the metadata client's `Metadata-Flavor` check, its
//! mTLS modes and its refusal of any proxy; the ADC client's proxy rules and URL policy.
//!
//! ```no_run
//! use std::time::Duration;
//! use workload_auth_core::http_client::{ClientOptions, Proxy, build_client, read_body, transport_error};
//!
//! # async fn f(tls: rustls::ClientConfig) -> workload_auth_core::Result<()> {
//! let timeout = Duration::from_secs(5);
//! let client = build_client(tls, ClientOptions::new(timeout).with_proxy(Proxy::None), |b| b)?;
//! let endpoint = "http://127.0.0.1:8080/token";
//! let mut response = client
//!     .get(endpoint)
//!     .send()
//!     .await
//!     .map_err(|e| transport_error(&e, None, endpoint, timeout))?;
//! let body = read_body(&mut response, 1 << 20, endpoint, |e| transport_error(e, None, endpoint, timeout)).await?;
//! # let _ = body; Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::{Error, ErrorKind, Result};

/// A response body read chunk by chunk and refused as soon as it grows past a limit.
///
/// The buffer is zeroed when dropped, and so is every buffer it outgrows, because token and key
/// answers pass through it. Reserving the declared size up front avoids most reallocations.
struct BoundedBody {
    buf: Zeroizing<Vec<u8>>,
    limit: usize,
    endpoint: String,
}

impl BoundedBody {
    /// An empty body of at most `limit` bytes from `endpoint`. `declared_len` is the
    /// Content-Length, if any: a larger one is refused at once.
    fn new(declared_len: Option<u64>, limit: usize, endpoint: &str) -> Result<Self> {
        let mut body = Self {
            buf: Zeroizing::new(Vec::new()),
            limit,
            endpoint: endpoint.to_owned(),
        };
        let capacity = match declared_len.map(usize::try_from) {
            Some(Ok(n)) if n <= limit => n,
            Some(_) => return Err(body.too_large()),
            None => 4096.min(limit),
        };
        body.buf = Zeroizing::new(Vec::with_capacity(capacity));
        Ok(body)
    }

    /// Appends `chunk`; an [`ErrorKind::MalformedResponse`] naming the endpoint once the body
    /// would be larger than the limit.
    fn push(&mut self, chunk: &[u8]) -> Result<()> {
        let needed = self.buf.len() + chunk.len();
        if needed > self.limit {
            return Err(self.too_large());
        }
        if needed > self.buf.capacity() {
            let capacity = needed.max(self.buf.capacity() * 2).min(self.limit);
            let mut bigger = Zeroizing::new(Vec::with_capacity(capacity));
            bigger.extend_from_slice(&self.buf);
            self.buf = bigger;
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    /// The whole body.
    fn finish(self) -> Zeroizing<Vec<u8>> {
        self.buf
    }

    fn too_large(&self) -> Error {
        Error::new(
            ErrorKind::MalformedResponse,
            format!("the response body is larger than {} bytes", self.limit),
        )
        .with_endpoint(self.endpoint.clone())
    }
}

impl fmt::Debug for BoundedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedBody")
            .field("len", &self.buf.len())
            .field("limit", &self.limit)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// How a request failed before a complete answer arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TransportFailure {
    /// No complete answer within the request's time limit.
    Timeout(Duration),
    /// No connection could be made.
    Connect,
    /// The connection failed while the body was read (truncated or reset).
    Body,
    /// Anything else: the connection was closed or reset before an answer.
    Other,
}

/// A transient [`ErrorKind::Transport`] error for `failure` of a request to `endpoint`.
///
/// `peer` names the server in the message (`Some("the metadata server")`), `cause` is the
/// client's error: its innermost source (what the socket reported) becomes the error's source,
/// as text; the client's own text, which may quote the URL, is not used.
fn failure_error(
    failure: TransportFailure,
    peer: Option<&str>,
    endpoint: &str,
    cause: &(dyn std::error::Error + 'static),
) -> Error {
    let (from, to) = match peer {
        Some(peer) => (format!(" from {peer}"), format!(" to {peer}")),
        None => (String::new(), String::new()),
    };
    let message = match failure {
        TransportFailure::Timeout(limit) => {
            format!("no complete answer{from} within {} ms", limit.as_millis())
        }
        TransportFailure::Connect => format!("could not connect{to}"),
        TransportFailure::Body => {
            "the connection failed while reading the response body (truncated or reset)".to_owned()
        }
        TransportFailure::Other => format!("the request{to} failed (connection closed or reset)"),
    };
    let mut innermost = None;
    let mut source = cause.source();
    while let Some(s) = source {
        innermost = Some(s);
        source = s.source();
    }
    let error = Error::new(ErrorKind::Transport, message).with_endpoint(endpoint.to_owned());
    match innermost.map(ToString::to_string) {
        Some(detail) if !detail.is_empty() => error.with_source(Cause(detail)),
        _ => error,
    }
}

/// The innermost cause of a transport failure, as text.
#[derive(Debug)]
struct Cause(String);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cause {}

/// Which proxy a client built by [`build_client`] sends its requests through.
#[derive(Clone, Debug, Default)]
pub enum Proxy {
    /// reqwest's reading of the process environment (`HTTPS_PROXY`, `NO_PROXY`, ...).
    #[default]
    Environment,
    /// None: every request connects directly, whatever the environment says.
    None,
    /// This proxy (with its own exceptions), the process environment ignored.
    Only(Box<reqwest::Proxy>),
}

/// The settings every client built here shares: time limits and proxy.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    timeout: Duration,
    connect_timeout: Duration,
    proxy: Proxy,
}

impl ClientOptions {
    /// Requests of at most `timeout` each, connect included; connecting takes at most
    /// `timeout` or 10 s, whichever is shorter; the proxy is the environment's.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            connect_timeout: timeout.min(Duration::from_secs(10)),
            proxy: Proxy::Environment,
        }
    }

    /// Connecting takes at most `limit`.
    pub fn with_connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// Requests go through `proxy`.
    pub fn with_proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = proxy;
        self
    }

    /// How long one request may take, connect included.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// A reqwest client on the TLS configuration `tls` (the caller's roots, verifier and client
/// certificate: this crate picks no crypto provider) with `options`, which never follows a
/// redirect: a credential must never be forwarded to a URL nobody checked.
///
/// `customize` may add what only one client needs (the metadata client pins a name to an
/// address and refuses plain HTTP on its mTLS client); pass `|b| b` otherwise.
pub fn build_client(
    tls: rustls::ClientConfig,
    options: ClientOptions,
    customize: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> Result<reqwest::Client> {
    let builder = match options.proxy {
        Proxy::Environment => reqwest::Client::builder(),
        Proxy::None => reqwest::Client::builder().no_proxy(),
        Proxy::Only(proxy) => reqwest::Client::builder().no_proxy().proxy(*proxy),
    };
    let builder = builder
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(options.timeout)
        .connect_timeout(options.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("workload-auth/", env!("CARGO_PKG_VERSION")));
    customize(builder)
        .build()
        .map_err(|e| Error::new(ErrorKind::Setup, "cannot build the HTTP client").with_source(e))
}

/// Reads the body of `response` from `endpoint`, refusing it (an [`ErrorKind::MalformedResponse`])
/// as soon as its declared or received length passes `limit`. The bytes are zeroed when dropped,
/// because token and key answers pass through here. A failure while reading becomes
/// `on_error(e)`, usually [`transport_error`] with the caller's hints.
pub async fn read_body(
    response: &mut reqwest::Response,
    limit: usize,
    endpoint: &str,
    on_error: impl Fn(&reqwest::Error) -> Error,
) -> Result<Zeroizing<Vec<u8>>> {
    let mut body = BoundedBody::new(response.content_length(), limit, endpoint)?;
    while let Some(chunk) = response.chunk().await.map_err(|e| on_error(&e))? {
        body.push(&chunk)?;
    }
    Ok(body.finish())
}

/// A transient [`ErrorKind::Transport`] error for a request to `endpoint` that failed with `e`
/// before a complete answer arrived: timeout (`timeout` is the limit the request had), connect,
/// truncated body, or anything else.
///
/// `peer` names the server in the message (`Some("the metadata server")`). The innermost source
/// of `e` (what the socket reported) becomes the error's source, as text; reqwest's own text,
/// which quotes the URL and so possibly a query, is not used.
pub fn transport_error(
    e: &reqwest::Error,
    peer: Option<&str>,
    endpoint: &str,
    timeout: Duration,
) -> Error {
    let failure = if e.is_timeout() {
        TransportFailure::Timeout(timeout)
    } else if e.is_connect() {
        TransportFailure::Connect
    } else if e.is_body() || e.is_decode() {
        TransportFailure::Body
    } else {
        TransportFailure::Other
    };
    failure_error(failure, peer, endpoint, e)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn read(declared: Option<u64>, limit: usize, chunks: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>> {
        let mut body = BoundedBody::new(declared, limit, "e")?;
        for chunk in chunks {
            body.push(chunk)?;
        }
        Ok(body.finish())
    }

    #[test]
    fn bodies_are_bounded_while_they_stream_in() {
        assert_eq!(&read(None, 6, &[b"abc", b"def"]).unwrap()[..], b"abcdef");
        assert_eq!(&read(Some(6), 6, &[b"abcdef"]).unwrap()[..], b"abcdef");
        assert_eq!(&read(Some(1), 6, &[b"abc", b"def"]).unwrap()[..], b"abcdef");
        assert!(read(None, 6, &[]).unwrap().is_empty());
        for (declared, chunks) in [
            (None, &[&b"abc"[..], b"defg"][..]),
            (Some(7), &[&b"a"[..]][..]),
            (Some(u64::MAX), &[][..]),
        ] {
            let err = read(declared, 6, chunks).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedResponse);
            assert_eq!(err.endpoint(), Some("e"));
            assert!(err.message().contains("larger than 6 bytes"), "{err}");
        }
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn transport_errors_are_transient_and_keep_the_innermost_cause() {
        let cause = Layer(
            "error sending request for url (http://127.0.0.1:1/?secret)",
            Some(Box::new(Layer(
                "client error",
                Some(Box::new(Layer("Connection refused (os error 111)", None))),
            ))),
        );
        let e = failure_error(
            TransportFailure::Connect,
            Some("the metadata server"),
            "e",
            &cause,
        );
        assert_eq!(e.kind(), ErrorKind::Transport);
        assert!(e.is_transient());
        assert_eq!(e.endpoint(), Some("e"));
        assert_eq!(e.message(), "could not connect to the metadata server");
        let shown = format!(
            "{e} {:?}",
            std::error::Error::source(&e).map(ToString::to_string)
        );
        assert!(shown.contains("Connection refused"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
        let e = failure_error(
            TransportFailure::Timeout(Duration::from_millis(200)),
            None,
            "e",
            &Layer("x", None),
        );
        assert_eq!(e.message(), "no complete answer within 200 ms");
        assert!(std::error::Error::source(&e).is_none());
        let e = failure_error(TransportFailure::Body, None, "e", &Layer("x", None));
        assert!(e.message().contains("truncated"), "{e}");
    }
}

/// The client, body reader and error mapping against a real server on a loopback socket, which
/// answers each connection with canned bytes and reports the request it received.
#[cfg(test)]
mod loopback_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;

    fn tls() -> rustls::ClientConfig {
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
    }

    fn client(timeout: Duration, proxy: Proxy) -> reqwest::Client {
        build_client(tls(), ClientOptions::new(timeout).with_proxy(proxy), |b| b).unwrap()
    }

    /// A server answering every connection with `answer` (then, if `hold`, keeping the
    /// connection open without a word for 10 s). Each request head it read is sent on the
    /// channel.
    async fn serve(answer: &'static [u8], hold: bool) -> (String, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                    let _ = socket.write_all(answer).await;
                    if hold {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                    }
                });
            }
        });
        (base, rx)
    }

    async fn get(client: &reqwest::Client, url: &str, limit: usize) -> Result<(u16, Vec<u8>)> {
        let timeout = Duration::from_secs(5);
        // As the callers do: errors name the URL without its query.
        let endpoint = url.split('?').next().unwrap_or_default();
        let mut response = client
            .get(url)
            .send()
            .await
            .map_err(|e| transport_error(&e, Some("the test server"), endpoint, timeout))?;
        let status = response.status().as_u16();
        let body = read_body(&mut response, limit, endpoint, |e| {
            transport_error(e, None, endpoint, timeout)
        })
        .await?;
        Ok((status, body.to_vec()))
    }

    #[tokio::test]
    async fn redirects_are_returned_not_followed() {
        let (base, mut requests) = serve(
            b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            false,
        )
        .await;
        let c = client(Duration::from_secs(5), Proxy::None);
        let (status, body) = get(&c, &format!("{base}/token"), 64).await.unwrap();
        assert_eq!(status, 302);
        assert!(body.is_empty());
        assert!(requests.recv().await.unwrap().starts_with("GET /token "));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(requests.try_recv().is_err(), "the redirect was followed");
    }

    #[tokio::test]
    async fn bodies_are_read_up_to_the_limit() {
        let (base, _) = serve(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n",
            false,
        )
        .await;
        let c = client(Duration::from_secs(5), Proxy::None);
        let (status, body) = get(&c, &base, 6).await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"abcdef"[..]));
        let e = get(&c, &base, 5).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MalformedResponse);
        assert!(e.message().contains("larger than 5 bytes"), "{e}");
        assert_eq!(e.endpoint(), Some(base.as_str()));
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let (base, _) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", true).await;
        let c = client(Duration::from_secs(5), Proxy::None);
        let e = get(&c, &base, 1024).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MalformedResponse);
        assert!(e.message().contains("larger than 1024 bytes"), "{e}");
    }

    #[tokio::test]
    async fn a_truncated_body_is_a_transient_transport_error() {
        let (base, _) = serve(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly this",
            false,
        )
        .await;
        let c = client(Duration::from_secs(5), Proxy::None);
        let e = get(&c, &base, 1024).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transport);
        assert!(e.is_transient());
        assert!(e.message().contains("truncated"), "{e}");
    }

    #[tokio::test]
    async fn connect_failures_and_timeouts_say_what_failed() {
        // A port nobody listens on: bind one, note it, close it.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            format!("http://{}/x?secret=1", l.local_addr().unwrap())
        };
        let c = client(Duration::from_secs(5), Proxy::None);
        let e = get(&c, &closed, 64).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transport);
        assert!(e.is_transient());
        assert_eq!(e.message(), "could not connect to the test server");
        let shown = format!(
            "{e} {:?}",
            std::error::Error::source(&e).map(ToString::to_string)
        );
        assert!(!shown.contains("secret"), "{shown}");

        let (base, _) = serve(b"", true).await;
        let c = client(Duration::from_millis(300), Proxy::None);
        let e = c
            .get(&base)
            .send()
            .await
            .map_err(|e| transport_error(&e, None, &base, Duration::from_millis(300)))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transport);
        assert_eq!(e.message(), "no complete answer within 300 ms");
    }

    #[tokio::test]
    async fn requests_go_through_the_proxy_given_and_only_that_one() {
        let (proxy, mut seen) = serve(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            false,
        )
        .await;
        let c = client(
            Duration::from_secs(5),
            Proxy::Only(Box::new(reqwest::Proxy::http(&proxy).unwrap())),
        );
        // The name does not resolve: only the proxy can have answered.
        let (status, body) = get(&c, "http://token.example.invalid/t", 64).await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"ok"[..]));
        let head = seen.recv().await.unwrap();
        assert!(
            head.starts_with("GET http://token.example.invalid/t HTTP/1.1"),
            "{head}"
        );
    }
}
