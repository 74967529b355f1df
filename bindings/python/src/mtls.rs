//! `WorkloadIdentity`, `MtlsClient`, `MtlsServer` and `MtlsStream`: mutual TLS over Python
//! sockets, with policies given as strings or as Python callables.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyFloat, PyInt, PyString, PyTuple};
use workload_auth::blocking::{
    MtlsClient as RustClient, MtlsServer as RustServer, MtlsStream as RustStream,
};
use workload_auth::mtls::{Authorizer, SpiffeId};
use workload_auth::{Error, ErrorKind};

use crate::errors::{
    IntoPy, invalid_argument, py_repr, stash_predicate_error, take_predicate_error,
};

/// The workload's X509-SVID and trust bundles, kept current as they rotate.
#[pyclass(module = "workload_auth", frozen)]
pub(crate) struct WorkloadIdentity {
    inner: workload_auth::WorkloadIdentity,
}

#[pymethods]
impl WorkloadIdentity {
    /// Loads the credentials directory, in any layout, and watches it for rotations while the
    /// object lives. Default: the directory `SPIFFE_CREDENTIAL_FOLDER` names, else
    /// `/var/run/secrets/workload-spiffe-credentials`.
    #[staticmethod]
    #[pyo3(signature = (path=None))]
    fn from_directory(py: Python<'_>, path: Option<PathBuf>) -> PyResult<Self> {
        let inner = py
            .detach(|| workload_auth::WorkloadIdentity::from_directory(path.as_deref()))
            .or_raise(py)?;
        Ok(Self { inner })
    }

    /// Warnings an operator should act on (e.g. a private key file readable by group or
    /// others); empty when all is well.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings()
    }

    // Alike `from_directory` above on purpose: each Python constructor needs its own
    // staticmethod, signature and docstring; the work is the facade's.

    /// Takes the identity from a SPIFFE Workload API (a SPIRE agent, or `workload-auth agent`):
    /// `endpoint` is `unix:///path` or `tcp://IP:port`, default `SPIFFE_ENDPOINT_SOCKET`. Waits for
    /// the first SVID, then keeps the stream open (reconnecting with backoff) while the object lives.
    #[staticmethod]
    #[pyo3(signature = (endpoint=None))]
    fn from_workload_api(py: Python<'_>, endpoint: Option<String>) -> PyResult<Self> {
        let inner = py
            .detach(|| workload_auth::WorkloadIdentity::from_workload_api(endpoint.as_deref()))
            .or_raise(py)?;
        Ok(Self { inner })
    }

    /// This workload's SPIFFE ID (of the current certificate).
    #[getter]
    fn spiffe_id(&self) -> String {
        self.inner.spiffe_id().as_str().to_owned()
    }

    /// The trust domain of the SPIFFE ID.
    #[getter]
    fn trust_domain(&self) -> String {
        self.inner.spiffe_id().trust_domain_name().to_owned()
    }

    /// Which files the certificate was read from: `gke`, `combined`, `spiffe-fs` or `no-key`;
    /// `None` for an identity from the Workload API.
    #[getter]
    fn layout(&self) -> Option<&'static str> {
        self.inner.layout().map(|l| l.name())
    }

    /// False when the platform keeps the private key hidden: `MtlsClient` and `MtlsServer` then
    /// raise `PrivateKeyHiddenError`.
    #[getter]
    fn has_private_key(&self) -> bool {
        self.inner.has_private_key()
    }

    fn __repr__(&self) -> String {
        format!(
            "WorkloadIdentity(spiffe_id={})",
            py_repr(self.inner.spiffe_id().as_str())
        )
    }
}

/// A name for a predicate in messages: its `__qualname__`, else its `repr()`.
fn callable_name(f: &Bound<'_, PyAny>) -> String {
    f.getattr("__qualname__")
        .and_then(|n| n.extract::<String>())
        .or_else(|_| f.repr().map(|r| r.to_string()))
        .unwrap_or_else(|_| "callable".to_owned())
}

/// A Python callable as an authorizer. An exception it raises refuses the peer; the exception
/// becomes the `__cause__` of the `VerificationError`.
fn predicate(f: Py<PyAny>, name: String) -> Authorizer {
    Authorizer::predicate(name, move |id: &SpiffeId| {
        Python::attach(|py| {
            match f
                .bind(py)
                .call1((id.as_str(),))
                .and_then(|answer| answer.is_truthy())
            {
                Ok(allowed) => allowed,
                Err(e) => {
                    stash_predicate_error(e);
                    false
                }
            }
        })
    })
}

/// `allow`: one policy or a sequence of them; each a string (`any`, a SPIFFE ID, `td:DOMAIN`,
/// `prefix:ID`) or a callable `(spiffe_id: str) -> bool`. A peer any of them allows is allowed.
fn authorizer(py: Python<'_>, allow: &Bound<'_, PyAny>) -> PyResult<Authorizer> {
    let items: Vec<Bound<'_, PyAny>> = if allow.is_instance_of::<PyString>() || allow.is_callable()
    {
        vec![allow.clone()]
    } else {
        allow
            .try_iter()
            .map_err(|_| {
                PyTypeError::new_err(
                    "allow must be a policy string, a callable, or a sequence of them",
                )
            })?
            .collect::<PyResult<_>>()?
    };
    let mut rules = Vec::with_capacity(items.len());
    for item in &items {
        if let Ok(policy) = item.cast::<PyString>() {
            let policy = policy.to_cow()?;
            rules.push(Authorizer::from_policies([policy.as_ref()]).or_raise(py)?);
        } else if item.is_callable() {
            rules.push(predicate(item.clone().unbind(), callable_name(item)));
        } else {
            return Err(PyTypeError::new_err(format!(
                "allow entries are policy strings or callables, not {}",
                item.get_type().name()?
            )));
        }
    }
    match rules.len() {
        0 => Err(invalid_argument(
            py,
            "allow is empty; write \"any\" to allow every peer whose certificate verifies",
        )),
        1 => Ok(rules.remove(0)),
        _ => Ok(Authorizer::any_of(rules)),
    }
}

/// The largest `bufsize` `MtlsStream.recv` accepts: a C `int`, as for `socket.recv`.
const MAX_RECV_BUFSIZE: i64 = i32::MAX as i64;

/// What one `recv` reads (and allocates) at most, whatever `bufsize` asks for: several TLS
/// records of plaintext. `recv` returns fewer bytes than asked whenever fewer are ready anyway.
const RECV_CHUNK: usize = 1 << 20;

/// The longest timeout accepted, in seconds (about 31 years): anything longer is a mistake, and
/// `1e300` seconds would overflow the conversion to a duration.
const MAX_TIMEOUT_SECS: f64 = 1e9;
const TIMEOUT_RANGE: &str = "a positive number of seconds, at most 1e9, or None";

/// A size or duration argument from Python as a number, or a `ValueError`
/// (`InvalidArgumentError`) naming the argument when it is out of any range (a huge `int`
/// raises `OverflowError` in the plain conversion); a non-number stays a `TypeError`.
fn number<'py, T: FromPyObjectOwned<'py>>(
    py: Python<'py>,
    value: &Bound<'py, PyAny>,
    name: &str,
    range: &str,
) -> PyResult<T> {
    if !(value.is_instance_of::<PyInt>() || value.is_instance_of::<PyFloat>()) {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a number, not {}",
            value.get_type().name()?
        )));
    }
    value
        .extract::<T>()
        .map_err(|_| invalid_argument(py, format!("{name} is out of range: {range}")))
}

/// Takes over a connected Python socket: detaches its descriptor (the socket object is then
/// closed for Python) and carries its timeout over.
fn take_socket(py: Python<'_>, sock: &Bound<'_, PyAny>) -> PyResult<TcpStream> {
    let socket_type: i32 = sock.getattr("type")?.extract()?;
    let stream_type: i32 = py.import("socket")?.getattr("SOCK_STREAM")?.extract()?;
    if socket_type != stream_type {
        return Err(invalid_argument(
            py,
            "mutual TLS needs a stream (SOCK_STREAM) socket",
        ));
    }
    let timeout: Option<f64> = sock.call_method0("gettimeout")?.extract()?;
    let timeout = timeout.map(|t| timeout_secs(py, t)).transpose()?;
    let fd: RawFd = sock.call_method0("detach")?.extract()?;
    if fd < 0 {
        return Err(invalid_argument(py, "the socket is closed"));
    }
    // SAFETY: `socket.detach()` handed over an open descriptor that nothing else owns now.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let tcp = TcpStream::from(owned);
    configure(&tcp, timeout).or_raise(py)?;
    Ok(tcp)
}

/// A timeout in seconds from Python: `None` (blocking) or a positive number of seconds up to
/// [`MAX_TIMEOUT_SECS`]; zero (non-blocking), negative, NaN, infinite or huge values are a
/// `ValueError` (`InvalidArgumentError`) that says which.
fn socket_timeout(
    py: Python<'_>,
    timeout: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<Duration>> {
    let Some(timeout) = timeout.filter(|t| !t.is_none()) else {
        return Ok(None);
    };
    timeout_secs(py, number(py, timeout, "timeout", TIMEOUT_RANGE)?).map(Some)
}

/// See [`socket_timeout`].
fn timeout_secs(py: Python<'_>, t: f64) -> PyResult<Duration> {
    if t == 0.0 {
        return Err(invalid_argument(
            py,
            "non-blocking sockets are not supported; use blocking mode or a positive timeout",
        ));
    }
    if !(t > 0.0 && t <= MAX_TIMEOUT_SECS) {
        // Also NaN, which compares false with everything.
        return Err(invalid_argument(
            py,
            format!("timeout {t} is out of range: {TIMEOUT_RANGE}"),
        ));
    }
    Duration::try_from_secs_f64(t)
        .map_err(|_| invalid_argument(py, format!("timeout {t} is out of range: {TIMEOUT_RANGE}")))
}

fn configure(tcp: &TcpStream, timeout: Option<Duration>) -> Result<(), Error> {
    let fail = |e: std::io::Error| {
        Error::new(ErrorKind::InvalidArgument, "cannot configure the socket").with_source(e)
    };
    tcp.set_nonblocking(false).map_err(fail)?;
    tcp.set_read_timeout(timeout).map_err(fail)?;
    tcp.set_write_timeout(timeout).map_err(fail)?;
    Ok(())
}

/// `("host", port)` or `"host:port"`.
fn addresses(py: Python<'_>, target: &Bound<'_, PyAny>) -> PyResult<Vec<SocketAddr>> {
    let text = if let Ok(tuple) = target.cast::<PyTuple>() {
        let (host, port): (String, Bound<'_, PyAny>) = tuple.extract()?;
        if port.is_instance_of::<PyFloat>() {
            return Err(PyTypeError::new_err("port must be an int, not float"));
        }
        let port: u16 = number(py, &port, "port", "0 to 65535")?;
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    } else if let Ok(s) = target.cast::<PyString>() {
        s.to_cow()?.into_owned()
    } else {
        return Err(PyTypeError::new_err(
            "connect() takes a connected socket, a (host, port) tuple or a \"host:port\" string",
        ));
    };
    py.detach(|| text.to_socket_addrs().map(Iterator::collect::<Vec<_>>))
        .map_err(|e| invalid_argument(py, format!("cannot resolve {text:?}: {e}")))
}

/// The client side of mutual TLS: presents `identity`, accepts servers `allow` allows.
#[pyclass(module = "workload_auth", frozen)]
pub(crate) struct MtlsClient {
    inner: RustClient,
}

#[pymethods]
impl MtlsClient {
    #[new]
    #[pyo3(signature = (identity, allow))]
    fn new(
        py: Python<'_>,
        identity: &WorkloadIdentity,
        allow: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let allow = authorizer(py, allow)?;
        let inner = RustClient::new(&identity.inner, allow).or_raise(py)?;
        Ok(Self { inner })
    }

    /// Completes the handshake over a connected socket (which the stream takes over), or
    /// connects to `(host, port)` / `"host:port"` first. `timeout` (seconds) applies to
    /// connecting and to each later read and write; a socket's own timeout is kept.
    #[pyo3(signature = (target, *, timeout=None))]
    fn connect(
        &self,
        py: Python<'_>,
        target: &Bound<'_, PyAny>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<MtlsStream> {
        let timeout = socket_timeout(py, timeout)?;
        let socket_class = py.import("socket")?.getattr("socket")?;
        let tcp = if target.is_instance(&socket_class)? {
            let tcp = take_socket(py, target)?;
            if timeout.is_some() {
                configure(&tcp, timeout).or_raise(py)?;
            }
            tcp
        } else {
            let addrs = addresses(py, target)?;
            py.detach(|| connect_any(&addrs, timeout)).or_raise(py)?
        };
        let client = &self.inner;
        take_predicate_error();
        let stream = py.detach(|| client.connect(tcp)).or_raise(py)?;
        Ok(MtlsStream::new(stream))
    }
}

fn connect_any(addrs: &[SocketAddr], timeout: Option<Duration>) -> Result<TcpStream, Error> {
    let mut last = None;
    for addr in addrs {
        let attempt = match timeout {
            Some(t) => TcpStream::connect_timeout(addr, t),
            None => TcpStream::connect(addr),
        };
        match attempt {
            Ok(tcp) => {
                configure(&tcp, timeout)?;
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    let error = Error::new(ErrorKind::Transport, "cannot connect to the peer");
    Err(match last {
        Some(e) => error.with_source(e),
        None => error.with_hint("the address resolved to nothing"),
    })
}

/// The server side of mutual TLS: presents `identity`, requires client certificates and
/// accepts clients `allow` allows.
#[pyclass(module = "workload_auth", frozen)]
pub(crate) struct MtlsServer {
    inner: RustServer,
}

#[pymethods]
impl MtlsServer {
    #[new]
    #[pyo3(signature = (identity, allow))]
    fn new(
        py: Python<'_>,
        identity: &WorkloadIdentity,
        allow: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let allow = authorizer(py, allow)?;
        let inner = RustServer::new(&identity.inner, allow).or_raise(py)?;
        Ok(Self { inner })
    }

    /// Completes the handshake over an accepted socket, which the stream takes over (it is
    /// closed if the handshake fails). A refused client raises `VerificationError`.
    fn accept(&self, py: Python<'_>, sock: &Bound<'_, PyAny>) -> PyResult<MtlsStream> {
        let socket_class = py.import("socket")?.getattr("socket")?;
        if !sock.is_instance(&socket_class)? {
            return Err(PyTypeError::new_err(
                "accept() takes an accepted socket.socket",
            ));
        }
        let tcp = take_socket(py, sock)?;
        let server = &self.inner;
        take_predicate_error();
        let stream = py.detach(|| server.accept(tcp)).or_raise(py)?;
        Ok(MtlsStream::new(stream))
    }
}

/// An established mutual-TLS connection. One thread may `recv` while another sends.
#[pyclass(module = "workload_auth", frozen)]
pub(crate) struct MtlsStream {
    inner: Mutex<Option<Arc<RustStream>>>,
    peer: String,
}

impl MtlsStream {
    fn new(stream: RustStream) -> Self {
        Self {
            peer: stream.peer_spiffe_id().as_str().to_owned(),
            inner: Mutex::new(Some(Arc::new(stream))),
        }
    }

    fn stream(&self, py: Python<'_>) -> PyResult<Arc<RustStream>> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| invalid_argument(py, "the stream is closed"))
    }
}

#[pymethods]
impl MtlsStream {
    /// The peer's verified, authorized SPIFFE ID.
    #[getter]
    fn peer_spiffe_id(&self) -> &str {
        &self.peer
    }

    /// Sends all of `data` (`bytes`, `bytearray` or `memoryview`); returns how many bytes that
    /// was.
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let copied;
        let bytes: &[u8] = if let Ok(b) = data.cast::<PyBytes>() {
            b.as_bytes()
        } else if let Ok(a) = data.cast::<PyByteArray>() {
            copied = a.to_vec();
            &copied
        } else if data.is_instance(&py.import("builtins")?.getattr("memoryview")?)? {
            copied = data
                .call_method0("tobytes")?
                .cast_into::<PyBytes>()?
                .as_bytes()
                .to_vec();
            &copied
        } else {
            let name = data
                .get_type()
                .name()
                .map_or_else(|_| "?".to_owned(), |n| n.to_string());
            return Err(PyTypeError::new_err(format!(
                "data must be bytes, bytearray or memoryview, not {name}"
            )));
        };
        let stream = self.stream(py)?;
        py.detach(|| stream.write_all(bytes)).or_raise(py)?;
        Ok(bytes.len())
    }

    /// Sends all of `data` (`bytes`, `bytearray` or `memoryview`).
    fn sendall(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        self.send(py, data).map(|_| ())
    }

    /// Up to `bufsize` bytes (0 to 2**31 - 1; at most 1 MiB are read at once), blocking until
    /// some arrive; `b""` when the peer closed cleanly. A negative or larger `bufsize` is a
    /// `ValueError` rather than an allocation that could abort the interpreter.
    fn recv<'py>(
        &self,
        py: Python<'py>,
        bufsize: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        const RANGE: &str = "0 to 2147483647";
        if bufsize.is_instance_of::<PyFloat>() {
            return Err(PyTypeError::new_err("bufsize must be an int, not float"));
        }
        let requested: i64 = number(py, bufsize, "bufsize", RANGE)?;
        if !(0..=MAX_RECV_BUFSIZE).contains(&requested) {
            return Err(invalid_argument(
                py,
                format!("bufsize {requested} is out of range: {RANGE}"),
            ));
        }
        let len = usize::try_from(requested).unwrap_or(0).min(RECV_CHUNK);
        let stream = self.stream(py)?;
        let mut buf = vec![0u8; len];
        let n = py.detach(|| stream.read(&mut buf)).or_raise(py)?;
        Ok(PyBytes::new(py, &buf[..n]))
    }

    /// Sends TLS close_notify and closes the connection. Closing twice does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match taken {
            Some(stream) => py.detach(|| stream.close()).or_raise(py),
            None => Ok(()),
        }
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (exc_type, _exc_value, _traceback))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let closed = self.close(py);
        // Leaving on an exception: that exception matters more than a failed goodbye.
        if exc_type.is_some() { Ok(()) } else { closed }
    }

    fn __repr__(&self) -> String {
        format!(
            "MtlsStream(peer_spiffe_id={}, closed={})",
            py_repr(&self.peer),
            if self.closed() { "True" } else { "False" }
        )
    }
}
